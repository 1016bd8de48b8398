//! GitHub Actions, the CLI's side: when `GITHUB_ACTIONS=true`, `run`,
//! `plan`, `resume` and `validate` speak the runner's workflow commands.
//! What is written, in order:
//!
//! 1. `::add-mask::` for every secret the workflow resolved (the
//!    redactor's list), before anything else of the run;
//! 2. the live lines, one `::group::` per step (the progress module);
//! 3. `::error`/`::warning` annotations: each located problem of a workflow
//!    that does not load (with `file`, `line`, `col`), each failed step, the
//!    findings of each step (see [`crate::report::github`]), and a refusal
//!    or cancellation of the whole run;
//! 4. the Markdown report appended to `$GITHUB_STEP_SUMMARY`, cut below
//!    GitHub's 1 MiB limit with a note where the whole report is;
//! 5. `$GITHUB_OUTPUT`: `run-id`, `status`, `report-path` and every step's
//!    outputs as `<step-id>-<output>` — also when the run failed or was
//!    refused. `status` is the report's word for the run (`planned`,
//!    `succeeded`, `failed`, `cancelled`, `refused`), or `invalid` when the
//!    workflow did not load (then it is the only output).
//!
//! Commands go to stdout (under `--json`, where stdout is the JSON report,
//! to stderr: the runner reads commands from both). Everything is redacted
//! before it is formatted. The formatting itself is pure and lives in
//! `report::github`; this module only decides when and where.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::redact::Redactor;
use crate::report::github::{self as format, Level, Location};
use crate::report::model::Report;

/// GitHub Actions is on for this process; where its files are.
#[derive(Debug)]
pub struct Actions {
    /// Commands go to stderr (`--json`) instead of stdout.
    to_stderr: bool,
    outputs: Option<PathBuf>,
}

/// `Some` when `GITHUB_ACTIONS=true`.
pub fn detect(json: bool) -> Option<Actions> {
    let on = std::env::var_os(format::ACTIONS_VAR).is_some_and(|v| v == "true");
    on.then(|| Actions {
        to_stderr: json,
        outputs: std::env::var_os("GITHUB_OUTPUT")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    })
}

impl Actions {
    /// Writes workflow commands, one a line.
    pub fn print(&self, lines: impl IntoIterator<Item = String>) {
        let text: String = lines.into_iter().map(|l| l + "\n").collect();
        if text.is_empty() {
            return;
        }
        // A closed stream leaves nowhere to say so.
        if self.to_stderr {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
    }

    /// `::add-mask::` for every secret `redactor` knows.
    pub fn add_masks(&self, redactor: &Redactor) {
        self.print(format::masks(redactor.secrets()));
    }

    /// One error annotation per problem of a workflow that did not load,
    /// located in its file.
    pub fn load_error(&self, err: &crate::workflow::LoadError) {
        use crate::workflow::LoadError;
        let lines = match err {
            LoadError::Invalid { problems, .. } => problems
                .iter()
                .map(|located| {
                    let problem = &located.problem;
                    let mut message = crate::redact::mask_secrets(&problem.message);
                    if let Some(help) = &problem.help {
                        message.push_str("\nhelp: ");
                        message.push_str(&crate::redact::mask_secrets(help));
                    }
                    format::annotation(
                        Level::Error,
                        Some(problem.code),
                        Some(&location(located)),
                        &message,
                    )
                })
                .collect(),
            other => vec![format::annotation(
                Level::Error,
                Some("workflow not loaded"),
                None,
                &crate::redact::mask_secrets(&other.to_string()),
            )],
        };
        self.print(lines);
    }

    /// `::error title=…::message` (`message` redacted by the caller).
    pub fn error(&self, title: &str, message: &str) {
        self.print([format::annotation(Level::Error, Some(title), None, message)]);
    }

    /// The annotations of a finished run: failed steps and findings.
    pub fn annotate(&self, report: &Report) {
        self.print(format::report_annotations(report));
    }

    /// Appends the run's outputs to `$GITHUB_OUTPUT`.
    pub fn run_outputs(&self, report: &Report, report_path: &str, redactor: &Redactor) {
        let outputs = format::run_outputs(report, report_path)
            .into_iter()
            .map(|(name, value)| (redactor.redact(&name), redactor.redact(&value)))
            .collect::<Vec<_>>();
        self.write_outputs(&outputs);
    }

    /// `status` alone, for a run that never started (no run id, no report).
    pub fn status_output(&self, status: &str) {
        self.write_outputs(&[("status".to_string(), status.to_string())]);
    }

    fn write_outputs(&self, outputs: &[(String, String)]) {
        let Some(path) = &self.outputs else {
            return;
        };
        let text: String = outputs
            .iter()
            .map(|(name, value)| format::output_entry(name, value, format::random_delimiter))
            .collect();
        if let Err(e) = append(path, &text) {
            eprintln!("warning: cannot append to GITHUB_OUTPUT: {e}");
        }
    }
}

/// Where a problem is: its file as shown, 1-based line and column.
fn location(located: &crate::syntax::diagnostics::Located) -> Location {
    let source = located.source.inner();
    let offset = located.problem.span.offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        file: located.source.name().to_string(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// Appends the Markdown report to the job summary at `path`, cut so the
/// file stays within GitHub's limit (what is already in it counts).
pub fn append_summary(path: &Path, report: &Report, report_path: &str) -> std::io::Result<()> {
    let markdown = crate::report::markdown(report);
    let already = std::fs::metadata(path).map_or(0, |m| m.len() as usize);
    let room = format::SUMMARY_LIMIT.saturating_sub(already);
    let note = format::cut_note(report_path, markdown.len());
    append(path, &format::fit_summary(&markdown, room, &note))
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
}
