//! Under GitHub Actions (`GITHUB_ACTIONS=true`), `run`, `plan` and
//! `validate` speak the runner's workflow commands: masks before anything
//! else, a group per step, annotations located in the workflow file or
//! naming the failed step, coverage findings capped per step, the job
//! summary (cut below GitHub's 1 MiB), and outputs in `$GITHUB_OUTPUT`
//! following GitHub's file format. Secrets reach none of the streams, files
//! or run state.

use std::path::PathBuf;

use crate::secrets::files_under;
use crate::support::cli::{Output, Test};
use crate::support::pg::{execute, fresh_db_sync, staging_db};

/// GitHub's limit for one step's summary.
const SUMMARY_LIMIT: usize = 1024 * 1024;

/// The password of staging's URL (the test cluster trusts every local
/// connection, so it is never checked, only carried) and the anonymizer's
/// secret: neither may show anywhere.
const PASSWORD: &str = "St4ging-Pw-gh7x";
const ANON_SECRET: &str = "An0n-Secret-gh9q";

/// Where a test's GitHub files are.
struct Files {
    output: PathBuf,
    summary: PathBuf,
}

/// `test` run as a GitHub Actions step, with its output and summary files
/// in the test dir.
fn github(test: Test) -> (Test, Files) {
    let files = Files {
        output: test.dir().join("github-output"),
        summary: test.dir().join("github-summary.md"),
    };
    let test = test
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &files.output)
        .env("GITHUB_STEP_SUMMARY", &files.summary);
    (test, files)
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `$GITHUB_OUTPUT` read as the runner reads it: `name=value` lines, and
/// `name<<DELIMITER` blocks that end at a line that is the delimiter alone.
/// Panics on anything else (a block never closed, a line with neither).
fn parse_outputs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let heredoc = line
            .find("<<")
            .filter(|&at| line.find('=').is_none_or(|eq| at < eq));
        if let Some(at) = heredoc {
            let (name, delimiter) = (&line[..at], &line[at + 2..]);
            assert!(!delimiter.is_empty(), "empty delimiter in `{line}`");
            let mut value = Vec::new();
            loop {
                let next = lines
                    .next()
                    .unwrap_or_else(|| panic!("`{name}`: delimiter `{delimiter}` never closes"));
                if next == delimiter {
                    break;
                }
                value.push(next);
            }
            out.push((name.to_string(), value.join("\n")));
        } else {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not an output line: `{line}`"));
            out.push((name.to_string(), value.to_string()));
        }
    }
    out
}

fn output<'a>(outputs: &'a [(String, String)], name: &str) -> &'a str {
    outputs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no output `{name}` in {outputs:#?}"))
}

/// The workflow-command lines of a stream.
fn commands(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("::")).collect()
}

#[test]
fn workflow_problems_are_annotations_on_their_lines() {
    let test = Test::new().workflow(
        "bad",
        "
        name: bad
        steps:
          first:
            uses: shel
            with: { run: echo hi }
          second:
            uses: shell
            needs: [frist]
            with: { run: echo hi }
        ",
    );
    let (mut test, files) = github(test);
    let expected = [
        "::error title=flightpath%3A%3Auses%3A%3Aunknown,file=workflows/bad.yaml,line=4,col=11::\
         step `first` uses unknown kind `shel`%0Ahelp: did you mean `shell`?",
        "::error title=flightpath%3A%3Aneeds%3A%3Aunknown,file=workflows/bad.yaml,line=8,col=13::\
         step `second` needs unknown step `frist`%0Ahelp: did you mean `first`?",
    ];
    for args in [vec!["validate", "bad"], vec!["run", "bad", "--yes"]] {
        test = test.args(args.clone());
        let out = test.run();
        out.expect_code(2);
        assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected, "{args:?}");
        // The located rendering on stderr is unchanged.
        assert!(
            out.stderr.contains("╭─[workflows/bad.yaml:4:11]"),
            "{}",
            out.stderr
        );
    }
    // `validate` writes no outputs; the run that never loaded says so.
    assert_eq!(
        parse_outputs(&read(&files.output)),
        [("status".into(), "invalid".into())]
    );

    let test = test
        .workflow("broken", "name: broken\nsteps: [\n")
        .args(["plan", "broken"]);
    let out = test.run();
    out.expect_code(2);
    let annotations = commands(&out.stdout);
    assert_eq!(annotations.len(), 1, "{}", out.stdout);
    assert!(
        annotations[0].starts_with(
            "::error title=flightpath%3A%3Ayaml%3A%3Asyntax,file=workflows/broken.yaml,line=2,"
        ),
        "{}",
        annotations[0]
    );
}

/// Production: a small table of people, ruled by the anonymizer.
const PROD: &str = "
CREATE TABLE person (id integer PRIMARY KEY, email text NOT NULL, joined date NOT NULL);
INSERT INTO person SELECT n, 'person' || n || '.gh@mail.test', date '2024-01-01' + n FROM generate_series(1, 50) n;
ANALYZE;
";

const RULES: &str = "
secret: ${FLIGHTPATH_SECRET}
tables:
  person:
    columns:
      email: { fake: email, unique: true }
";

/// A clone of a fresh production into staging (whose URL carries
/// [`PASSWORD`]) with [`RULES`] keyed by [`ANON_SECRET`], a shell step
/// beside it and a notify step after both; `extra` steps appended.
fn run_workflow(staging_name: &str, extra: &str) -> Test {
    let prod = fresh_db_sync();
    execute(&prod.url, PROD);
    let staging =
        staging_db(staging_name).replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1);
    assert!(staging.contains(PASSWORD), "{staging}");
    Test::new()
        .file("anonymizers/site.yaml", RULES)
        .workflow(
            "reset",
            &format!(
                r#"
                name: reset
                targets:
                  prod: {{ postgres: "{prod}", protected: true }}
                  staging: {{ postgres: "{staging}" }}
                steps:
                  database:
                    uses: postgres.clone
                    with: {{ source: prod, target: staging, jobs: 1, anonymize: anonymizers/site.yaml }}
                  hello:
                    uses: shell
                    with: {{ run: "echo hello" }}
                  tell:
                    uses: notify
                    needs: [database, hello]
                    with: {{ message: "staging is ready", to: stdout }}
                {extra}
                "#,
                prod = prod.url,
            ),
        )
        .env("FLIGHTPATH_SECRET", ANON_SECRET)
}

/// Neither secret in the streams, the GitHub files or the run state.
#[track_caller]
fn assert_no_secrets(test: &Test, out: &Output, files: &Files) {
    let mut places = vec![
        ("stdout".to_string(), out.stdout.clone()),
        ("stderr".to_string(), out.stderr.clone()),
        ("the outputs file".to_string(), read(&files.output)),
        ("the summary".to_string(), read(&files.summary)),
    ];
    let state = files_under(&test.dir().join(".flightpath"));
    let names: Vec<&str> = state.iter().map(|(p, _)| p.as_str()).collect();
    for wanted in ["journal", "report.md", "report.json"] {
        assert!(
            names.iter().any(|n| n.contains(wanted)),
            "no {wanted} in {names:?}"
        );
    }
    places.extend(state);
    for (place, text) in &places {
        for secret in [PASSWORD, ANON_SECRET] {
            // The masks themselves are the one place: GitHub reads and hides them.
            let shown = text
                .lines()
                .filter(|l| !l.starts_with("::add-mask::"))
                .any(|l| l.contains(secret));
            assert!(!shown, "`{secret}` appears in {place}:\n{text}");
        }
    }
}

/// The lines between `::group::<title>` and the next `::endgroup::`;
/// asserts there is exactly one such group and no group opens inside it.
#[track_caller]
fn group<'a>(stdout: &'a str, title: &str) -> Vec<&'a str> {
    let opening = format!("::group::{title}");
    let lines: Vec<&str> = stdout.lines().collect();
    let starts: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == opening).collect();
    assert_eq!(starts.len(), 1, "one group `{title}` in:\n{stdout}");
    let body: Vec<&str> = lines[starts[0] + 1..]
        .iter()
        .take_while(|l| **l != "::endgroup::")
        .copied()
        .collect();
    assert!(
        starts[0] + 1 + body.len() < lines.len(),
        "group `{title}` never ends:\n{stdout}"
    );
    assert!(
        body.iter().all(|l| !l.starts_with("::group::")),
        "a group inside `{title}`:\n{stdout}"
    );
    body
}

#[test]
fn a_run_masks_first_groups_each_step_and_writes_summary_and_outputs() {
    let (test, files) = github(run_workflow("gha_run", ""));
    let test = test.args(["run", "reset", "--yes"]);
    let out = test.run();
    out.expect_code(0);

    // Masks before anything else.
    let lines: Vec<&str> = out.stdout.lines().collect();
    let masks: Vec<&str> = lines
        .iter()
        .take_while(|l| l.starts_with("::add-mask::"))
        .copied()
        .collect();
    for secret in [PASSWORD, ANON_SECRET] {
        assert!(
            masks.contains(&format!("::add-mask::{secret}").as_str()),
            "no mask for `{secret}` first:\n{}",
            out.stdout
        );
    }
    assert!(
        lines[masks.len()..]
            .iter()
            .all(|l| !l.starts_with("::add-mask::")),
        "{}",
        out.stdout
    );

    // A group per step, its lines inside, its status line last; groups
    // never nest or interleave.
    for (id, kind) in [
        ("database", "postgres.clone"),
        ("hello", "shell"),
        ("tell", "notify"),
    ] {
        let body = group(&out.stdout, &format!("{id} ({kind})"));
        assert_eq!(
            body.first(),
            Some(&format!("▶ {id} ({kind})").as_str()),
            "{body:?}"
        );
        assert!(
            body.last()
                .is_some_and(|l| l.starts_with(&format!("✓ {id} "))),
            "{body:?}"
        );
    }
    assert!(group(&out.stdout, "tell (notify)").contains(&"staging is ready"));
    let mut depth = 0;
    for line in &lines {
        if line.starts_with("::group::") {
            depth += 1;
        } else if *line == "::endgroup::" {
            depth -= 1;
        }
        assert!((0..=1).contains(&depth), "groups nest:\n{}", out.stdout);
    }
    assert_eq!(depth, 0, "{}", out.stdout);
    assert!(
        commands(&out.stdout)
            .iter()
            .all(|l| !l.starts_with("::error"))
    );

    // Outputs, as the runner parses them.
    let outputs = parse_outputs(&read(&files.output));
    let run_id = output(&outputs, "run-id");
    assert_eq!(
        test.runs(),
        [test.dir().join(".flightpath/runs").join(run_id)]
    );
    assert_eq!(output(&outputs, "status"), "succeeded");
    let report_path = output(&outputs, "report-path");
    assert_eq!(report_path, format!(".flightpath/runs/{run_id}/report.md"));
    assert_eq!(output(&outputs, "database-rows"), "50");
    assert_eq!(output(&outputs, "hello-exit_code"), "0");

    // The summary is the report.
    let summary = read(&files.summary);
    assert_eq!(summary, test.read(report_path));
    assert!(
        summary.starts_with("# flightpath run reset — succeeded\n"),
        "{summary}"
    );
    assert!(summary.contains("```mermaid\n"), "{summary}");

    assert_no_secrets(&test, &out, &files);
}

#[test]
fn a_failed_step_is_an_error_annotation_and_the_status_output_says_failed() {
    let extra = r#"
                  broken:
                    uses: shell
                    needs: [tell]
                    with: { run: "echo going; exit 7" }
                  after:
                    uses: shell
                    needs: [broken]
                    with: { run: "echo never" }"#;
    let (test, files) = github(run_workflow("gha_failed", extra));
    let test = test.args(["run", "reset", "--yes"]);
    let out = test.run();
    out.expect_code(1);
    let errors: Vec<&str> = commands(&out.stdout)
        .into_iter()
        .filter(|l| l.starts_with("::error"))
        .collect();
    assert_eq!(
        errors,
        ["::error title=step broken failed::`echo going; exit 7` exited with code 7"],
        "{}",
        out.stdout
    );
    let body = group(&out.stdout, "broken (shell)");
    assert!(
        body.last()
            .is_some_and(|l| l.starts_with("✗ broken failed after ")),
        "{body:?}"
    );
    let outputs = parse_outputs(&read(&files.output));
    assert_eq!(output(&outputs, "status"), "failed");
    assert!(output(&outputs, "report-path").ends_with("/report.md"));
    assert_no_secrets(&test, &out, &files);

    // Refused before anything ran (nobody can confirm): annotated, and
    // the outputs say so too.
    let test = test.args(["run", "reset"]);
    let out = test.run();
    out.expect_code(3);
    let refusal = commands(&out.stdout)
        .into_iter()
        .find(|l| l.starts_with("::error"))
        .unwrap_or_else(|| panic!("no refusal annotation:\n{}", out.stdout));
    assert!(
        refusal.starts_with("::error title=run refused::this run changes things"),
        "{refusal}"
    );
    let outputs = parse_outputs(&read(&files.output));
    let statuses: Vec<&str> = outputs
        .iter()
        .filter(|(n, _)| n == "status")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(statuses, ["failed", "refused"]);
}

#[test]
fn coverage_findings_are_ten_warnings_and_a_pointer_to_the_summary() {
    let prod = fresh_db_sync();
    let columns: Vec<String> = (1..=13).map(|i| format!("remark_{i:02}")).collect();
    execute(
        &prod.url,
        &format!(
            "CREATE TABLE feedback (id integer PRIMARY KEY, {}); \
             INSERT INTO feedback SELECT n{} FROM generate_series(1, 5) n; ANALYZE;",
            columns
                .iter()
                .map(|c| format!("{c} text"))
                .collect::<Vec<_>>()
                .join(", "),
            ", 'fine'".repeat(columns.len()),
        ),
    );
    let staging = staging_db("gha_coverage");
    let test = Test::new()
        .file("anonymizers/site.yaml", "unknown_columns: warn\ntables: {}\n")
        .workflow(
            "reset",
            &format!(
                r#"
                name: reset
                targets:
                  prod: {{ postgres: "{}", protected: true }}
                  staging: {{ postgres: "{staging}" }}
                steps:
                  database:
                    uses: postgres.clone
                    with: {{ source: prod, target: staging, jobs: 1, anonymize: anonymizers/site.yaml }}
                "#,
                prod.url
            ),
        );
    let (test, files) = github(test);
    let test = test.args(["plan", "reset"]);
    let out = test.run();
    out.expect_code(0);
    let warnings: Vec<&str> = commands(&out.stdout)
        .into_iter()
        .filter(|l| l.starts_with("::warning"))
        .collect();
    let uncovered: Vec<&str> = warnings
        .iter()
        .filter(|l| l.starts_with("::warning title=step database%3A column without a rule::"))
        .copied()
        .collect();
    assert_eq!(uncovered.len(), 10, "{warnings:#?}");
    assert!(
        uncovered[0].ends_with("::\"public\".\"feedback\".remark_01 (text): UNCOVERED: can hold text, and no rule covers it"),
        "{}",
        uncovered[0]
    );
    assert!(
        warnings.contains(
            &"::warning::3 more columns without a rule in step database — see the job summary"
        ),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(
            |l| l.starts_with("::warning title=step database%3A warning::")
                && l.contains("13 column(s) have no rule")
        ),
        "{warnings:#?}"
    );
    // The summary holds every one.
    let summary = read(&files.summary);
    for column in &columns {
        assert!(
            summary.contains(&format!("| {column} |")),
            "{column}:\n{summary}"
        );
    }
    let outputs = parse_outputs(&read(&files.output));
    assert_eq!(output(&outputs, "status"), "planned");
}

#[test]
fn a_summary_over_a_mebibyte_is_cut_with_a_note_where_the_report_is() {
    // Sixty steps, each planning a command of about 20 KiB: a report of
    // about 1.2 MiB.
    let command: String = (0..600)
        .map(|i| format!("        echo 'line {i:03} of a long maintenance script'\n"))
        .collect();
    let steps: String = (0..60)
        .map(|i| format!("  step_{i:02}:\n    uses: shell\n    with:\n      run: |\n{command}"))
        .collect();
    let test = Test::new().file("workflows/big.yaml", &format!("name: big\nsteps:\n{steps}"));
    let (test, files) = github(test);
    let test = test.args(["plan", "big"]);
    let out = test.run();
    out.expect_code(0);
    let outputs = parse_outputs(&read(&files.output));
    let report_path = output(&outputs, "report-path");
    let report = test.read(report_path);
    assert!(report.len() > SUMMARY_LIMIT, "{}", report.len());

    let summary = read(&files.summary);
    assert!(summary.len() <= SUMMARY_LIMIT, "{}", summary.len());
    assert!(
        summary.len() > SUMMARY_LIMIT - 64 * 1024,
        "{}",
        summary.len()
    );
    let (kept, note) = summary
        .rsplit_once("\n\n> **This summary was cut**")
        .unwrap_or_else(|| panic!("no note at the end:\n{}", &summary[summary.len() - 2000..]));
    assert!(
        note.contains(&format!("`{report_path}`")) && note.contains("`report-path` output"),
        "{note}"
    );
    // Whole lines of the report, with the one fence cut open closed again.
    let fence_lines = kept.lines().filter(|l| l.starts_with("```")).count();
    assert_eq!(
        fence_lines % 2,
        0,
        "an open fence:\n{}",
        &kept[kept.len() - 500..]
    );
    let (before_close, close) = kept.trim_end_matches('\n').rsplit_once('\n').unwrap();
    assert!(close.starts_with("```"), "{close}");
    assert!(report.starts_with(&format!("{before_close}\n")));
}

#[test]
fn resuming_a_run_that_succeeded_writes_its_outputs_again() {
    let test = Test::new().workflow(
        "hello",
        "
        name: hello
        steps:
          hello: { uses: shell, with: { run: echo hello } }
        ",
    );
    let (test, files) = github(test);
    let test = test.args(["run", "hello", "--yes"]);
    test.run().expect_code(0);
    let first = parse_outputs(&read(&files.output));
    let run_id = output(&first, "run-id").to_string();
    std::fs::remove_file(&files.output).unwrap();

    let test = test.args(["resume", &run_id]);
    let out = test.run();
    out.expect_code(0);
    assert!(out.stderr.contains("already succeeded"), "{}", out.stderr);
    let again = parse_outputs(&read(&files.output));
    assert_eq!(output(&again, "run-id"), run_id);
    assert_eq!(output(&again, "status"), "succeeded");
    assert_eq!(output(&again, "report-path"), output(&first, "report-path"));
}
