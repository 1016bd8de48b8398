//! GitHub Actions' workflow commands, as text: the escaping GitHub requires,
//! `::add-mask::` lines for secrets, `::error`/`::warning` annotations (one
//! per failed step, per located problem, per finding of a step), the
//! `$GITHUB_OUTPUT` file format and a job summary cut to fit GitHub's limit.
//!
//! Pure: nothing here reads the environment or writes anywhere; the CLI
//! decides when GitHub Actions is on and where each line goes, and the
//! progress module groups the live lines. Callers hand in text already
//! redacted (the report is; messages are redacted before they get here),
//! because escaping changes how a secret is spelled (`a,b` → `a%2Cb`) and a
//! redactor run afterwards would miss it.

use std::fmt::Write as _;

use super::model::{Detail, Report, RunStatus, StepReport, StepStatus};
use super::run_status_word;

/// The environment variable GitHub sets to `true` on its runners.
pub const ACTIONS_VAR: &str = "GITHUB_ACTIONS";

/// GitHub's limit for one step's job summary: 1 MiB.
pub const SUMMARY_LIMIT: usize = 1024 * 1024;

/// Annotations of one kind shown per step; the rest are counted in one
/// more line that points at the job summary (which holds them all).
pub const ANNOTATIONS_PER_KIND: usize = 10;

/// A workflow command's message: `%`, `\r` and `\n` escaped.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as [`escape_data`], and `:` and
/// `,` too (they separate properties from the message and each other).
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `::name key=value,key=value::message`, everything escaped.
pub fn command(name: &str, properties: &[(&str, String)], message: &str) -> String {
    let mut line = format!("::{name}");
    for (i, (key, value)) in properties.iter().enumerate() {
        line.push(if i == 0 { ' ' } else { ',' });
        let _ = write!(line, "{key}={}", escape_property(value));
    }
    let _ = write!(line, "::{}", escape_data(message));
    line
}

/// `::group::title`.
pub fn group(title: &str) -> String {
    command("group", &[], title)
}

/// `::endgroup::`.
pub fn endgroup() -> String {
    "::endgroup::".to_string()
}

/// Shortest line of a secret worth masking: GitHub masks every occurrence
/// of a mask in the log, so a line of a multi-line secret as short as `ab`
/// would blank out unrelated text (the redactor ignores such secrets too).
const SHORTEST_MASK: usize = 4;

/// One `::add-mask::` line per line of every secret (GitHub matches masks
/// line by line, so a multi-line secret is masked by each of its lines),
/// in order, without repeats.
pub fn masks<'a>(secrets: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for secret in secrets {
        for line in secret.split(['\n', '\r']) {
            if line.trim().len() < SHORTEST_MASK || !seen.insert(line) {
                continue;
            }
            out.push(command("add-mask", &[], line));
        }
    }
    out
}

/// How serious an annotation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// A place in a file, for an annotation (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// As shown to the user: relative to the working directory.
    pub file: String,
    pub line: usize,
    pub column: usize,
}

/// `::error title=…,file=…,line=…,col=…::message` (or `::warning`).
pub fn annotation(
    level: Level,
    title: Option<&str>,
    location: Option<&Location>,
    message: &str,
) -> String {
    let mut properties = Vec::new();
    if let Some(title) = title {
        properties.push(("title", title.to_string()));
    }
    if let Some(at) = location {
        properties.push(("file", at.file.clone()));
        properties.push(("line", at.line.to_string()));
        properties.push(("col", at.column.to_string()));
    }
    let name = match level {
        Level::Error => "error",
        Level::Warning => "warning",
    };
    command(name, &properties, message)
}

/// One kind of finding a step's report holds, each shown as a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finding {
    /// A `warning:` fact.
    Warning,
    /// A row of the anonymizer's coverage table no rule covers.
    Uncovered,
    /// A git branch only on staging, or stale on staging.
    Branch,
    /// A row only on staging (`postgres.staging-only-rows`).
    StagingOnly,
}

impl Finding {
    fn title(self, step: &str) -> String {
        match self {
            Finding::Warning => format!("step {step}: warning"),
            Finding::Uncovered => format!("step {step}: column without a rule"),
            Finding::Branch => format!("step {step}: branch only on staging"),
            Finding::StagingOnly => format!("step {step}: row only on staging"),
        }
    }

    /// `N more …` for the line after the shown ones.
    fn more(self, n: usize) -> String {
        let plural = n != 1;
        let what = match (self, plural) {
            (Finding::Warning, false) => "warning",
            (Finding::Warning, true) => "warnings",
            (Finding::Uncovered, false) => "column without a rule",
            (Finding::Uncovered, true) => "columns without a rule",
            (Finding::Branch, false) => "branch only on staging",
            (Finding::Branch, true) => "branches only on staging",
            (Finding::StagingOnly, false) => "row only on staging",
            (Finding::StagingOnly, true) => "rows only on staging",
        };
        format!("{n} more {what}")
    }
}

/// The annotations for a finished run, step by step in report order: an
/// error for each failed step, then a warning per finding in its details
/// (`warning:` facts, uncovered columns of the anonymizer's coverage,
/// branches only or stale on staging, rows only on staging), at most
/// [`ANNOTATIONS_PER_KIND`] of each kind per step and then one line saying
/// how many more the job summary lists.
pub fn report_annotations(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for step in &report.steps {
        if step.status == StepStatus::Failed {
            let message = step.error.as_deref().unwrap_or("failed");
            let title = format!("step {} failed", step.id);
            out.push(annotation(Level::Error, Some(&title), None, message));
        }
        for kind in [
            Finding::Warning,
            Finding::Uncovered,
            Finding::Branch,
            Finding::StagingOnly,
        ] {
            let found = findings(step, kind);
            let title = kind.title(&step.id);
            for message in found.iter().take(ANNOTATIONS_PER_KIND) {
                out.push(annotation(Level::Warning, Some(&title), None, message));
            }
            let more = found.len().saturating_sub(ANNOTATIONS_PER_KIND);
            if more > 0 {
                let message = format!(
                    "{} in step {} — see the job summary",
                    kind.more(more),
                    step.id
                );
                out.push(annotation(Level::Warning, None, None, &message));
            }
        }
    }
    out
}

/// The messages of one kind of finding in a step's details.
fn findings(step: &StepReport, kind: Finding) -> Vec<String> {
    let mut out = Vec::new();
    for detail in &step.details {
        match (kind, detail) {
            (Finding::Warning, Detail::Fact { label, value }) if label == "warning" => {
                out.push(value.clone());
            }
            (Finding::Uncovered, Detail::Table { title, rows, .. })
                if title == "anonymizer coverage" =>
            {
                // table, column, type, coverage
                for row in rows {
                    if let [table, column, type_name, coverage] = row.as_slice()
                        && coverage.starts_with("UNCOVERED")
                    {
                        out.push(format!("{table}.{column} ({type_name}): {coverage}"));
                    }
                }
            }
            (Finding::Branch, Detail::Table { title, rows, .. }) if title == "branches" => {
                // branch, status, tip, last commit, author, ahead of main
                for row in rows {
                    if let [branch, status, tip, ..] = row.as_slice()
                        && (status == "on staging only" || status == "stale on staging")
                    {
                        out.push(format!("{branch} is {status} (at {tip})"));
                    }
                }
            }
            (Finding::StagingOnly, Detail::Block { title, text })
                if title == "staging-only keys" =>
            {
                out.extend(
                    text.lines()
                        // The report's own "… and N more" line is no key.
                        .filter(|line| !line.starts_with('…'))
                        .map(|key| format!("{key} exists only on staging")),
                );
            }
            _ => {}
        }
    }
    out
}

/// The word the `status` output takes: the run's status as the report
/// names it (`planned`, `succeeded`, `failed`, `cancelled`, `refused`), or
/// `invalid` when the workflow did not load and nothing ran.
pub fn status_word(status: Option<RunStatus>) -> &'static str {
    status.map_or("invalid", run_status_word)
}

/// The outputs of a run, in the order written: `run-id`, `status`,
/// `report-path`, then every step's outputs as `<step-id>-<output>` (text
/// as it is, other values as JSON).
pub fn run_outputs(report: &Report, report_path: &str) -> Vec<(String, String)> {
    let mut out = vec![
        ("run-id".to_string(), report.run_id.clone()),
        (
            "status".to_string(),
            status_word(Some(report.status)).to_string(),
        ),
        ("report-path".to_string(), report_path.to_string()),
    ];
    for step in &report.steps {
        for (name, value) in &step.outputs {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push((format!("{}-{name}", step.id), text));
        }
    }
    out
}

/// One entry of `$GITHUB_OUTPUT`: `name=value` on one line, or, for a value
/// with a line break, `name<<DELIMITER`, the value, `DELIMITER`, with a
/// delimiter from `delimiter` that occurs nowhere in the value (drawn again
/// until it does not).
pub fn output_entry(name: &str, value: &str, mut delimiter: impl FnMut() -> String) -> String {
    if !value.contains(['\n', '\r']) {
        return format!("{name}={value}\n");
    }
    let mut chosen = delimiter();
    while value.contains(&chosen) || name.contains(&chosen) {
        chosen = delimiter();
    }
    format!("{name}<<{chosen}\n{value}\n{chosen}\n")
}

/// A fresh delimiter: `ghadelimiter_` and 32 random hex digits, as
/// GitHub's own toolkit writes them.
pub fn random_delimiter() -> String {
    let bits: u128 = rand::random();
    format!("ghadelimiter_{bits:032x}")
}

/// `markdown` cut to fit in `limit` bytes, with `note` (one paragraph:
/// why, and where the whole report is) after the cut; `markdown` itself
/// when it fits. The cut is at a line boundary: never between a table's
/// header and its delimiter row, and never inside a mermaid block (a
/// truncated graph renders as an error; the cut moves to before it); any
/// other code fence left open is closed.
pub fn fit_summary(markdown: &str, limit: usize, note: &str) -> String {
    if markdown.len() <= limit {
        return markdown.to_string();
    }
    // Room for a closing fence and the blank lines around the note.
    let note_room = note.len() + 4;
    let longest_fence = longest_fence(markdown);
    let budget = limit.saturating_sub(note_room + longest_fence + 2);
    let mut keep = cut_point(markdown, budget);
    let mut tail = String::new();
    if let Some(open) = &keep.open_fence {
        if open.mermaid {
            keep = cut_point(markdown, open.start);
        } else {
            tail = format!("{}\n", open.marker);
        }
    }
    if let Some(table_start) = keep.short_table {
        keep = cut_point(markdown, table_start);
    }
    let mut out = String::with_capacity(limit);
    out.push_str(&markdown[..keep.end]);
    out.push_str(&tail);
    out.push('\n');
    out.push_str(note.trim_end());
    out.push('\n');
    out
}

/// Where to cut, and what is open there.
#[derive(Debug)]
struct Cut {
    /// Byte offset just after the last whole line kept.
    end: usize,
    open_fence: Option<OpenFence>,
    /// The start of a table cut before its delimiter row.
    short_table: Option<usize>,
}

#[derive(Debug, Clone)]
struct OpenFence {
    /// Offset of the opening line.
    start: usize,
    /// The backticks (or tildes) that close it.
    marker: String,
    mermaid: bool,
}

/// The last line boundary at or before `budget`, with the fence or table
/// open there.
fn cut_point(markdown: &str, budget: usize) -> Cut {
    let mut end = 0;
    let mut fence: Option<OpenFence> = None;
    // (start offset, rows seen) of the table being read.
    let mut table: Option<(usize, usize)> = None;
    for line in markdown.split_inclusive('\n') {
        let next = end + line.len();
        if next > budget {
            break;
        }
        let body = line.trim_end_matches(['\n', '\r']);
        match &fence {
            Some(open) => {
                if closes(body, &open.marker) {
                    fence = None;
                }
            }
            None => {
                if let Some(marker) = opens(body) {
                    table = None;
                    fence = Some(OpenFence {
                        start: end,
                        mermaid: body[marker.len()..].trim().starts_with("mermaid"),
                        marker,
                    });
                } else if body.starts_with('|') {
                    let (start, rows) = table.unwrap_or((end, 0));
                    table = Some((start, rows + 1));
                } else {
                    table = None;
                }
            }
        }
        end = next;
    }
    Cut {
        end,
        open_fence: fence,
        short_table: table.filter(|&(_, rows)| rows < 2).map(|(start, _)| start),
    }
}

/// The fence a line opens: three or more backticks or tildes at its start.
fn opens(line: &str) -> Option<String> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let first = trimmed.chars().next()?;
    if first != '`' && first != '~' {
        return None;
    }
    let run = trimmed.chars().take_while(|&c| c == first).count();
    (run >= 3).then(|| first.to_string().repeat(run))
}

/// Whether `line` closes a fence opened with `marker`.
fn closes(line: &str, marker: &str) -> bool {
    let trimmed = line.trim();
    let first = marker.chars().next().unwrap_or('`');
    trimmed.len() >= marker.len() && trimmed.chars().all(|c| c == first)
}

/// The length of the longest fence line, for the room a closing one needs.
fn longest_fence(markdown: &str) -> usize {
    markdown
        .lines()
        .filter_map(opens)
        .map(|marker| marker.len())
        .max()
        .unwrap_or(0)
}

/// The paragraph after a cut summary.
pub fn cut_note(report_path: &str, whole: usize) -> String {
    format!(
        "> **This summary was cut**: the report is {} and GitHub shows at most {} per step, \
         so only its beginning is here. The whole report is `{report_path}` in the working \
         directory (the `report-path` output of this step).",
        crate::human::human_bytes(whole as f64),
        crate::human::human_bytes(SUMMARY_LIMIT as f64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn data_and_properties_are_escaped_as_github_reads_them() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a: b, c%\n"), "a%3A b%2C c%25%0A");
        assert_eq!(
            command(
                "error",
                &[("title", "x: y".into()), ("line", "3".into())],
                "a:b,c"
            ),
            "::error title=x%3A y,line=3::a:b,c"
        );
        assert_eq!(group("db (postgres.clone)"), "::group::db (postgres.clone)");
    }

    #[test]
    fn a_multi_line_secret_is_masked_line_by_line() {
        let secrets = vec![
            "-----BEGIN KEY-----\nAbCd%Ef\r\nab\n-----END KEY-----\n".to_string(),
            "hunter22".to_string(),
            "AbCd%Ef".to_string(),
        ];
        assert_eq!(
            masks(&secrets),
            [
                "::add-mask::-----BEGIN KEY-----",
                "::add-mask::AbCd%25Ef",
                "::add-mask::-----END KEY-----",
                "::add-mask::hunter22",
            ]
        );
    }

    #[test]
    fn annotations_carry_title_and_location() {
        let at = Location {
            file: "workflows/reset, staging.yaml".into(),
            line: 12,
            column: 5,
        };
        assert_eq!(
            annotation(
                Level::Error,
                Some("needs"),
                Some(&at),
                "unknown step `x`\nhelp: y"
            ),
            "::error title=needs,file=workflows/reset%2C staging.yaml,line=12,col=5::unknown step `x`%0Ahelp: y"
        );
        assert_eq!(
            annotation(Level::Warning, None, None, "plain"),
            "::warning::plain"
        );
    }

    #[test]
    fn a_failed_step_is_an_error_annotation() {
        let lines = report_annotations(&fixtures::failed_with_restore());
        assert_eq!(
            lines,
            ["::error title=step migrate failed::command exited with code 1"]
        );
    }

    fn coverage_step(uncovered: usize) -> StepReport {
        let mut step = StepReport::pending("database", "postgres.clone", &[], false);
        step.status = StepStatus::Planned;
        let mut rows = vec![vec![
            "auth_user".to_string(),
            "id".to_string(),
            "integer".to_string(),
            "safe by type".to_string(),
        ]];
        rows.extend((1..=uncovered).map(|i| {
            vec![
                "people".to_string(),
                format!("note_{i}"),
                "text".to_string(),
                "UNCOVERED: can hold text, and no rule covers it".to_string(),
            ]
        }));
        step.details = vec![
            Detail::fact("warning", "the role cannot end other sessions"),
            Detail::Table {
                title: "anonymizer coverage".into(),
                columns: vec![
                    "table".into(),
                    "column".into(),
                    "type".into(),
                    "coverage".into(),
                ],
                rows,
            },
        ];
        step
    }

    #[test]
    fn findings_are_capped_per_kind_with_a_pointer_to_the_summary() {
        let mut report = fixtures::dry_run();
        report.steps = vec![coverage_step(13)];
        let lines = report_annotations(&report);
        assert_eq!(lines.len(), 1 + 10 + 1, "{lines:#?}");
        assert_eq!(
            lines[0],
            "::warning title=step database%3A warning::the role cannot end other sessions"
        );
        assert_eq!(
            lines[1],
            "::warning title=step database%3A column without a rule::people.note_1 (text): UNCOVERED: can hold text, and no rule covers it"
        );
        assert!(lines[10].contains("people.note_10 "), "{}", lines[10]);
        assert_eq!(
            lines[11],
            "::warning::3 more columns without a rule in step database — see the job summary"
        );
        report.steps = vec![coverage_step(10)];
        assert_eq!(report_annotations(&report).len(), 11);
    }

    #[test]
    fn branches_and_staging_only_rows_are_findings() {
        let mut step = StepReport::pending("preflight", "git.merged-branches", &[], false);
        step.details = vec![
            Detail::Table {
                title: "branches".into(),
                columns: vec![],
                rows: vec![
                    vec![
                        "feature/x".into(),
                        "on staging only".into(),
                        "abc1234".into(),
                    ],
                    vec!["main".into(), "in both".into(), "def5678".into()],
                ],
            },
            Detail::block(
                "staging-only keys",
                "qa@example.org\n… and 3 more (all in the output `keys`)",
            ),
        ];
        let mut report = fixtures::dry_run();
        report.steps = vec![step];
        assert_eq!(
            report_annotations(&report),
            [
                "::warning title=step preflight%3A branch only on staging::feature/x is on staging only (at abc1234)",
                "::warning title=step preflight%3A row only on staging::qa@example.org exists only on staging",
            ]
        );
    }

    #[test]
    fn outputs_are_named_lines_or_delimited_blocks() {
        assert_eq!(
            output_entry("status", "failed", random_delimiter),
            "status=failed\n"
        );
        let mut draws = vec!["EOF".to_string(), "EOF2".to_string()].into_iter();
        assert_eq!(
            output_entry("keys", "a\nEOF\nb", || draws.next().unwrap()),
            "keys<<EOF2\na\nEOF\nb\nEOF2\n"
        );
        let delimiter = random_delimiter();
        assert!(delimiter.starts_with("ghadelimiter_"), "{delimiter}");
        assert_eq!(delimiter.len(), "ghadelimiter_".len() + 32);
    }

    #[test]
    fn run_outputs_name_the_run_and_every_step_output() {
        let report = fixtures::succeeded_diamond();
        let outputs = run_outputs(&report, ".flightpath/runs/x/report.md");
        assert_eq!(
            outputs[0],
            ("run-id".into(), "20250314T090000Z-7f3a".into())
        );
        assert_eq!(outputs[1], ("status".into(), "succeeded".into()));
        assert_eq!(
            outputs[2],
            ("report-path".into(), ".flightpath/runs/x/report.md".into())
        );
        assert!(outputs.contains(&("database-rows".into(), "41250".into())));
        assert!(outputs.contains(&(
            "branches-unmerged".into(),
            r#"["feature/search","fix-login"]"#.into()
        )));
        assert_eq!(status_word(None), "invalid");
    }

    #[test]
    fn a_summary_that_fits_is_left_alone() {
        let text = "# t\n\nshort\n";
        assert_eq!(fit_summary(text, 100, "note"), text);
    }

    #[test]
    fn a_cut_inside_a_code_block_closes_it() {
        let body: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let text = format!("# t\n\n````\n{body}````\n\nafter\n");
        let cut = fit_summary(&text, 300, "> cut");
        assert!(cut.len() <= 300, "{}", cut.len());
        assert!(cut.ends_with("````\n\n> cut\n"), "{cut}");
        assert!(cut.starts_with("# t\n\n````\nline 0\n"), "{cut}");
        // Whole lines only.
        let kept: Vec<&str> = cut.lines().filter(|l| l.starts_with("line")).collect();
        assert!(
            kept.iter().all(|l| l[5..].parse::<u32>().is_ok()),
            "{kept:?}"
        );
    }

    #[test]
    fn a_cut_never_splits_a_mermaid_graph_or_a_table_header() {
        let graph: String = (0..50)
            .map(|i| format!("  s{i} --> s{}\n", i + 1))
            .collect();
        let text = format!("# t\n\nintro\n\n```mermaid\nflowchart TD\n{graph}```\n\nrest\n");
        let cut = fit_summary(&text, 200, "> cut");
        assert_eq!(cut, "# t\n\nintro\n\n\n> cut\n");

        let rows: String = (0..50).map(|i| format!("| r{i} | x |\n")).collect();
        let text = format!("intro\n\n| a | b |\n|---|---|\n{rows}");
        // Room for the header only: the table goes.
        let cut = fit_summary(&text, 10 + 6 + 4 + 12, "> cut");
        assert_eq!(cut, "intro\n\n\n> cut\n");
        // Room for rows: it ends at a row, and a blank line ends the table.
        let cut = fit_summary(&text, 120, "> cut");
        assert!(cut.contains("|---|---|\n| r0 | x |\n"), "{cut}");
        assert!(cut.ends_with(" | x |\n\n> cut\n"), "{cut}");
        assert!(cut.len() <= 120);
    }

    #[test]
    fn a_report_over_a_mebibyte_is_cut_below_the_limit() {
        let mut report = fixtures::succeeded_diamond();
        let rows: Vec<Vec<String>> = (0..40_000)
            .map(|i| vec![format!("table_{i:05}"), "1,000".into(), "anonymized".into()])
            .collect();
        report.steps[1].details.push(Detail::Table {
            title: "many tables".into(),
            columns: vec!["table".into(), "rows".into(), "rule".into()],
            rows,
        });
        let markdown = crate::report::markdown(&report);
        assert!(markdown.len() > SUMMARY_LIMIT, "{}", markdown.len());
        let note = cut_note(".flightpath/runs/x/report.md", markdown.len());
        let cut = fit_summary(&markdown, SUMMARY_LIMIT, &note);
        assert!(cut.len() <= SUMMARY_LIMIT, "{}", cut.len());
        assert!(cut.len() > SUMMARY_LIMIT - 4096, "{}", cut.len());
        assert!(cut.starts_with(&markdown[..1000]));
        assert!(
            cut.ends_with(&format!("\n\n{note}\n")),
            "{}",
            &cut[cut.len() - 500..]
        );
        assert!(note.contains("`.flightpath/runs/x/report.md`"), "{note}");
    }
}
