//! The end-of-run summary printed on the terminal: a header line, one aligned
//! line per step, and — for failed and planned steps — the details that
//! explain them. ANSI colour only when asked; the layout is the same
//! without it. Pure: the caller decides whether its output wants colour.

use std::fmt::Write as _;

use crate::human::human_duration;

use super::model::{Detail, Report, RunStatus, StepReport, StepStatus};
use super::{failure_steps, main_steps, run_status_word, step_status_glyph, step_status_word};

/// Block details (captured output) show only their last lines on the terminal;
/// the Markdown report has them whole.
const BLOCK_TAIL_LINES: usize = 20;

/// Renders `report` for the terminal, with ANSI colour when `color` is true.
pub fn terminal(report: &Report, color: bool) -> String {
    let paint = Paint { color };
    let widths = Widths::of(report);
    let mut out = header(report, paint);
    out.push('\n');
    for step in main_steps(report) {
        step_lines(&mut out, step, &widths, paint);
    }
    let on_failure: Vec<&StepReport> = failure_steps(report).collect();
    if !on_failure.is_empty() {
        out.push('\n');
        out.push_str(&paint.bold("on failure:"));
        out.push('\n');
        for step in on_failure {
            step_lines(&mut out, step, &widths, paint);
        }
    }
    out
}

fn header(report: &Report, paint: Paint) -> String {
    let verb = if report.dry_run { "plan" } else { "run" };
    let status = paint.run_status(report.status, &header_status(report));
    let took = report
        .duration_ms
        .map(|ms| format!(" in {}", human_duration(ms)))
        .unwrap_or_default();
    let mut line = format!(
        "{} {} (run {}): {status}{took}",
        paint.bold(&format!("flightpath {verb}")),
        paint.bold(&report.workflow),
        report.run_id,
    );
    if report.dry_run {
        line.push_str(" · dry run — nothing was changed");
    }
    line.push('\n');
    line
}

/// The run's status in words; a dry run never claims to have done anything.
fn header_status(report: &Report) -> String {
    match (report.dry_run, report.status) {
        (true, RunStatus::Planned | RunStatus::Succeeded) => "planned".to_string(),
        (true, RunStatus::Refused) => "refused".to_string(),
        (true, other) => format!("plan {}", run_status_word(other)),
        (false, other) => run_status_word(other).to_string(),
    }
}

/// Column widths shared by the main and `on_failure` sections.
struct Widths {
    id: usize,
    kind: usize,
    duration: usize,
}

impl Widths {
    fn of(report: &Report) -> Self {
        let max = |f: &dyn Fn(&StepReport) -> usize| report.steps.iter().map(f).max().unwrap_or(0);
        Widths {
            id: max(&|s| s.id.chars().count()),
            kind: max(&|s| s.kind.chars().count()),
            duration: max(&|s| step_duration(s).chars().count()),
        }
    }
}

fn step_duration(step: &StepReport) -> String {
    step.duration_ms.map(human_duration).unwrap_or_default()
}

fn step_lines(out: &mut String, step: &StepReport, w: &Widths, paint: Paint) {
    let glyph = paint.step_status(step.status, &step_status_glyph(step.status).to_string());
    let id = pad(&step.id, w.id);
    let kind = pad(&step.kind, w.kind);
    let duration = format!("{:>width$}", step_duration(step), width = w.duration);
    let summary = step.summary.clone().unwrap_or_else(|| match step.status {
        StepStatus::Pending => "not run".to_string(),
        other => step_status_word(other).to_string(),
    });
    let line = format!(
        "  {glyph} {}  {}  {}  {summary}",
        paint.bold(&id),
        paint.dim(&kind),
        paint.dim(&duration)
    );
    out.push_str(line.trim_end());
    out.push('\n');
    if let Some(error) = &step.error {
        for (i, text) in error.lines().enumerate() {
            let label = if i == 0 { "error: " } else { "       " };
            let _ = writeln!(out, "      {}", paint.red(&format!("{label}{text}")));
        }
    }
    if shows_details(step) {
        for detail in &step.details {
            detail_lines(out, detail, paint);
        }
    }
}

/// Details explain failures; for a planned step (a dry run, or the plan shown
/// before confirming a real run) they are the plan itself.
fn shows_details(step: &StepReport) -> bool {
    matches!(step.status, StepStatus::Failed | StepStatus::Planned)
}

fn detail_lines(out: &mut String, detail: &Detail, paint: Paint) {
    const INDENT: &str = "      ";
    match detail {
        Detail::Fact { label, value } => {
            let _ = writeln!(out, "{INDENT}{} {value}", paint.dim(&format!("{label}:")));
        }
        Detail::Block { title, text } => {
            let lines: Vec<&str> = text.lines().collect();
            let shown = &lines[lines.len().saturating_sub(BLOCK_TAIL_LINES)..];
            let title = if shown.len() < lines.len() {
                format!("{title} (last {} of {} lines):", shown.len(), lines.len())
            } else {
                format!("{title}:")
            };
            let _ = writeln!(out, "{INDENT}{}", paint.dim(&title));
            for line in shown {
                let _ = writeln!(out, "{INDENT}  {}", line.trim_end());
            }
        }
        Detail::Table {
            title,
            columns,
            rows,
        } => {
            let _ = writeln!(out, "{INDENT}{}", paint.dim(&format!("{title}:")));
            for line in aligned_table(columns, rows) {
                let _ = writeln!(out, "{INDENT}  {line}");
            }
        }
    }
}

/// A plain table: header row and rows, columns padded to their widest cell.
fn aligned_table(columns: &[String], rows: &[Vec<String>]) -> Vec<String> {
    let count = columns
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            std::iter::once(columns)
                .chain(rows.iter().map(Vec::as_slice))
                .map(|row| cell(row, i).chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    std::iter::once(columns)
        .chain(rows.iter().map(Vec::as_slice))
        .map(|row| {
            let cells: Vec<String> = (0..count).map(|i| pad(&cell(row, i), widths[i])).collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// Left-aligns `text` in `width` characters (not bytes: ids and kinds are
/// ASCII, but table cells may not be).
fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(len)))
}

/// Wraps text in ANSI SGR codes, or leaves it alone when colour is off.
#[derive(Clone, Copy)]
struct Paint {
    color: bool,
}

impl Paint {
    fn sgr(self, code: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn bold(self, text: &str) -> String {
        self.sgr("1", text)
    }

    fn dim(self, text: &str) -> String {
        self.sgr("2", text)
    }

    fn red(self, text: &str) -> String {
        self.sgr("31", text)
    }

    fn step_status(self, status: StepStatus, text: &str) -> String {
        let code = match status {
            StepStatus::Succeeded => "32",
            StepStatus::Failed => "31",
            StepStatus::Planned => "34",
            StepStatus::Reused => "36",
            StepStatus::Cancelled | StepStatus::Running => "33",
            StepStatus::Pending | StepStatus::Skipped => "2",
        };
        self.sgr(code, text)
    }

    fn run_status(self, status: RunStatus, text: &str) -> String {
        let code = match status {
            RunStatus::Succeeded => "1;32",
            RunStatus::Planned => "1;34",
            RunStatus::Failed | RunStatus::Refused => "1;31",
            RunStatus::Cancelled => "1;33",
        };
        self.sgr(code, text)
    }
}

#[cfg(test)]
mod tests {
    use super::terminal;
    use crate::report::fixtures;

    #[test]
    fn succeeded_diamond() {
        insta::assert_snapshot!(terminal(&fixtures::succeeded_diamond(), false));
    }

    #[test]
    fn failed_with_restore() {
        insta::assert_snapshot!(terminal(&fixtures::failed_with_restore(), false));
    }

    #[test]
    fn dry_run() {
        insta::assert_snapshot!(terminal(&fixtures::dry_run(), false));
    }

    #[test]
    fn colour_wraps_the_same_layout() {
        let report = fixtures::failed_with_restore();
        let coloured = terminal(&report, true);
        assert!(coloured.contains("\x1b[31m✗\x1b[0m"), "{coloured}");
        assert_eq!(strip_ansi(&coloured), terminal(&report, false));
    }

    #[test]
    fn no_escape_codes_without_colour() {
        for report in [
            fixtures::succeeded_diamond(),
            fixtures::failed_with_restore(),
            fixtures::dry_run(),
        ] {
            assert!(!terminal(&report, false).contains('\x1b'));
        }
    }

    fn strip_ansi(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                chars.by_ref().find(|&c| c == 'm');
            } else {
                out.push(c);
            }
        }
        out
    }
}
