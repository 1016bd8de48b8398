//! Under GitHub Actions: the run's id, status and report path land in
//! `$GITHUB_OUTPUT` (which the action's outputs read) and the Markdown
//! report in `$GITHUB_STEP_SUMMARY`, for a run that succeeds and for one
//! that fails.

use crate::support::cli::Test;

const WORKFLOW: &str = "
    name: actions
    steps:
      hello:
        uses: notify
        with: { to: stdout, message: 'hello from {workflow}' }
      check:
        uses: shell
        needs: [hello]
        with: { run: 'exit ${EXIT_WITH:-0}' }
";

/// `name=value` lines and `name<<DELIMITER` blocks, as GitHub reads them.
fn outputs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            out.push((name.to_string(), value.join("\n")));
        } else if let Some((name, value)) = line.split_once('=') {
            out.push((name.to_string(), value.to_string()));
        } else {
            panic!("not an output line: {line:?}");
        }
    }
    out
}

fn under_actions(exit_with: &str) -> (Test, crate::support::cli::Output) {
    let test = Test::new().workflow("actions", WORKFLOW);
    let dir = test.dir().to_path_buf();
    let test = test
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", dir.join("github-output"))
        .env("GITHUB_STEP_SUMMARY", dir.join("github-summary.md"))
        .env("EXIT_WITH", exit_with)
        .args(["run", "actions", "--yes"]);
    let out = test.run();
    (test, out)
}

#[test]
fn a_run_writes_its_id_status_and_report_path_to_the_outputs_and_its_report_to_the_summary() {
    let (test, out) = under_actions("0");
    out.expect_code(0);
    let runs = test.runs();
    assert_eq!(runs.len(), 1);
    let run_id = runs[0].file_name().unwrap().to_str().unwrap().to_string();
    let report_path = format!(".flightpath/runs/{run_id}/report.md");
    assert_eq!(
        outputs(&test.read("github-output")),
        [
            ("run-id".to_string(), run_id.clone()),
            ("status".to_string(), "succeeded".to_string()),
            ("report-path".to_string(), report_path.clone()),
        ]
    );
    let summary = test.read("github-summary.md");
    assert_eq!(
        summary,
        test.read(&report_path),
        "the summary is the report"
    );
    assert!(
        summary.contains("hello") && summary.contains(&run_id),
        "{summary}"
    );
}

#[test]
fn a_failed_run_says_so_in_the_outputs() {
    let (test, out) = under_actions("3");
    out.expect_code(1);
    let outputs = outputs(&test.read("github-output"));
    assert_eq!(outputs[1], ("status".to_string(), "failed".to_string()));
    assert!(
        test.dir().join(&outputs[2].1).is_file(),
        "{outputs:?} names no report"
    );
}
