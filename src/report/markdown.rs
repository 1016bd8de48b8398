//! The Markdown report (`report.md`, GitHub step summaries): heading, run
//! line, summary table, a mermaid flowchart of the step graph coloured by
//! status, then one section per step with its facts, outputs, blocks, tables
//! and error. Pure; everything user-supplied is escaped for the place it lands.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::human::human_duration;

use super::model::{Detail, Report, RunStatus, StepReport, StepStatus};
use super::{failure_steps, main_steps, run_status_word, step_status_glyph, step_status_word};

/// Renders `report` as a Markdown document.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    heading(&mut out, report);
    summary_table(&mut out, report);
    flowchart(&mut out, report);
    out.push_str("## Steps\n\n");
    for step in &report.steps {
        step_section(&mut out, step);
    }
    // Every section ends with a blank line; the document ends with one newline.
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

fn heading(out: &mut String, report: &Report) {
    let status = match (report.dry_run, report.status) {
        (true, RunStatus::Planned | RunStatus::Succeeded) => "plan (dry run)".to_string(),
        (true, other) => format!("plan {} (dry run)", run_status_word(other)),
        (false, other) => run_status_word(other).to_string(),
    };
    let _ = writeln!(out, "# flightpath run {} — {status}\n", report.workflow);
    let mut facts = vec![
        format!("Run {}", inline_code(&report.run_id)),
        format!("started {}", rfc3339(&report.started)),
    ];
    if let Some(ms) = report.duration_ms {
        facts.push(format!("took {}", human_duration(ms)));
    }
    let _ = writeln!(out, "{}\n", facts.join(" · "));
    if report.dry_run {
        out.push_str("Dry run — nothing was changed; each step says what it would do.\n\n");
    }
    if let Some(description) = &report.description {
        let _ = writeln!(out, "{}\n", quote(description));
    }
}

fn rfc3339(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn summary_table(out: &mut String, report: &Report) {
    out.push_str("| Step | Kind | Status | Duration | Summary |\n");
    out.push_str("|---|---|---|---|---|\n");
    for step in &report.steps {
        let id = if step.on_failure {
            format!("{} (on failure)", step.id)
        } else {
            step.id.clone()
        };
        let cells = [
            cell(&id),
            cell(&inline_code(&step.kind)),
            cell(&status_label(step.status)),
            step.duration_ms.map(human_duration).unwrap_or_default(),
            cell(step.summary.as_deref().unwrap_or("")),
        ];
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn status_label(status: StepStatus) -> String {
    format!("{} {}", step_status_glyph(status), step_status_word(status))
}

/// The step graph: `a --> b` when b needs a; `on_failure` steps in their own
/// subgraph; one `classDef` per status present, colouring the nodes.
fn flowchart(out: &mut String, report: &Report) {
    let ids = NodeIds::of(report);
    out.push_str("```mermaid\nflowchart TD\n");
    for step in main_steps(report) {
        node(out, &ids, step, "  ");
    }
    let on_failure: Vec<&StepReport> = failure_steps(report).collect();
    if !on_failure.is_empty() {
        out.push_str("  subgraph on_failure [\"on failure\"]\n");
        for step in &on_failure {
            node(out, &ids, step, "    ");
        }
        out.push_str("  end\n");
    }
    for step in &report.steps {
        for need in &step.needs {
            if let (Some(from), Some(to)) = (ids.get(need), ids.get(&step.id)) {
                let _ = writeln!(out, "  {from} --> {to}");
            }
        }
    }
    status_classes(out, report, &ids);
    out.push_str("```\n\n");
}

fn node(out: &mut String, ids: &NodeIds, step: &StepReport, indent: &str) {
    if let Some(node_id) = ids.get(&step.id) {
        let label = format!(
            "{}<br/>{}",
            mermaid_text(&step.id),
            mermaid_text(&step.kind)
        );
        let _ = writeln!(out, "{indent}{node_id}[\"{label}\"]");
    }
}

fn status_classes(out: &mut String, report: &Report, ids: &NodeIds) {
    let mut by_status: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
    for step in &report.steps {
        if let Some(node_id) = ids.get(&step.id) {
            by_status
                .entry(step_status_word(step.status))
                .or_default()
                .push(node_id);
        }
    }
    for status in by_status.keys() {
        let _ = writeln!(out, "  classDef {status} {};", class_style(status));
    }
    for (status, nodes) in &by_status {
        let _ = writeln!(out, "  class {} {status};", nodes.join(","));
    }
}

/// Fill, stroke and text colour per status word.
fn class_style(status: &str) -> &'static str {
    match status {
        "succeeded" => "fill:#d3f9d8,stroke:#2b8a3e,color:#0b3d17",
        "failed" => "fill:#ffe3e3,stroke:#c92a2a,color:#5c0a0a",
        "planned" => "fill:#dbe4ff,stroke:#3b5bdb,color:#0c1f6b",
        "reused" => "fill:#c3fae8,stroke:#0c8599,color:#063b44",
        "cancelled" => "fill:#ffe8cc,stroke:#e8590c,color:#5c2300",
        "running" => "fill:#fff3bf,stroke:#f08c00,color:#4d3800",
        _ => "fill:#f1f3f5,stroke:#868e96,color:#343a40",
    }
}

/// Mermaid node ids for step ids: `s_` + the id with anything but ASCII
/// letters, digits and `_` replaced by `_`; a numeric suffix if two collide.
struct NodeIds(BTreeMap<String, String>);

impl NodeIds {
    fn of(report: &Report) -> Self {
        let mut taken = BTreeSet::new();
        let mut map = BTreeMap::new();
        for step in &report.steps {
            if map.contains_key(&step.id) {
                continue;
            }
            let base: String = "s_"
                .chars()
                .chain(step.id.chars().map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                }))
                .collect();
            let unique = (1..)
                .map(|n| {
                    if n == 1 {
                        base.clone()
                    } else {
                        format!("{base}_{n}")
                    }
                })
                .find(|candidate| !taken.contains(candidate))
                .unwrap_or(base);
            taken.insert(unique.clone());
            map.insert(step.id.clone(), unique);
        }
        NodeIds(map)
    }

    fn get(&self, step_id: &str) -> Option<&str> {
        self.0.get(step_id).map(String::as_str)
    }
}

/// Text inside a quoted mermaid label: quotes and markup become entities.
fn mermaid_text(text: &str) -> String {
    text.replace('&', "#amp;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn step_section(out: &mut String, step: &StepReport) {
    let _ = writeln!(out, "### {}\n", step.id);
    let mut line = vec![inline_code(&step.kind), status_label(step.status)];
    if step.on_failure {
        line.push("on failure".to_string());
    }
    if let Some(ms) = step.duration_ms {
        line.push(human_duration(ms));
    }
    if !step.needs.is_empty() {
        let needs: Vec<String> = step.needs.iter().map(|n| inline_code(n)).collect();
        line.push(format!("needs {}", needs.join(", ")));
    }
    let _ = writeln!(out, "{}\n", line.join(" · "));
    if let Some(summary) = &step.summary {
        let _ = writeln!(out, "{summary}\n");
    }
    if let Some(error) = &step.error {
        let _ = writeln!(out, "{}\n", quote(&format!("**Error:** {error}")));
    }
    details(out, &step.details);
    outputs(out, &step.outputs);
}

/// Details in order; consecutive facts form one bullet list.
fn details(out: &mut String, details: &[Detail]) {
    let mut in_list = false;
    for detail in details {
        if in_list && !matches!(detail, Detail::Fact { .. }) {
            out.push('\n');
            in_list = false;
        }
        match detail {
            Detail::Fact { label, value } => {
                let _ = writeln!(out, "- **{}:** {}", one_line(label), one_line(value));
                in_list = true;
            }
            Detail::Block { title, text } => block(out, title, text),
            Detail::Table {
                title,
                columns,
                rows,
            } => table(out, title, columns, rows),
        }
    }
    if in_list {
        out.push('\n');
    }
}

fn block(out: &mut String, title: &str, text: &str) {
    let fence = "`".repeat(longest_run(text, '`').max(2) + 1);
    let _ = writeln!(out, "**{}**\n", one_line(title));
    let _ = writeln!(out, "{fence}\n{}\n{fence}\n", text.trim_end_matches('\n'));
}

fn table(out: &mut String, title: &str, columns: &[String], rows: &[Vec<String>]) {
    let count = columns
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let row_line = |row: &[String]| {
        let cells: Vec<String> = (0..count)
            .map(|i| cell(row.get(i).map(String::as_str).unwrap_or("")))
            .collect();
        format!("| {} |", cells.join(" | "))
    };
    let _ = writeln!(out, "**{}**\n", one_line(title));
    let _ = writeln!(out, "{}", row_line(columns));
    let _ = writeln!(out, "|{}", "---|".repeat(count.max(1)));
    for row in rows {
        let _ = writeln!(out, "{}", row_line(row));
    }
    out.push('\n');
}

fn outputs(out: &mut String, outputs: &serde_json::Map<String, serde_json::Value>) {
    if outputs.is_empty() {
        return;
    }
    out.push_str("Outputs:\n\n");
    for (name, value) in outputs {
        let shown = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(out, "- {}: {}", inline_code(name), inline_code(&shown));
    }
    out.push('\n');
}

/// A table cell: `|` escaped, line breaks as `<br>`.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace('\n', "<br>")
}

/// A single-line value for a list item or bold title.
fn one_line(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join(" ")
}

/// A block quote, every line prefixed.
fn quote(text: &str) -> String {
    text.lines()
        .map(|line| format!("> {line}").trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Inline code that survives backticks inside the text.
fn inline_code(text: &str) -> String {
    let text = one_line(text);
    let run = longest_run(&text, '`');
    if run == 0 {
        return format!("`{text}`");
    }
    let ticks = "`".repeat(run + 1);
    format!("{ticks} {text} {ticks}")
}

fn longest_run(text: &str, ch: char) -> usize {
    let mut longest = 0;
    let mut current = 0;
    for c in text.chars() {
        current = if c == ch { current + 1 } else { 0 };
        longest = longest.max(current);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::{NodeIds, cell, inline_code, markdown};
    use crate::report::fixtures;

    #[test]
    fn succeeded_diamond() {
        insta::assert_snapshot!(markdown(&fixtures::succeeded_diamond()));
    }

    #[test]
    fn failed_with_restore() {
        insta::assert_snapshot!(markdown(&fixtures::failed_with_restore()));
    }

    #[test]
    fn dry_run() {
        insta::assert_snapshot!(markdown(&fixtures::dry_run()));
    }

    #[test]
    fn dry_run_never_says_did() {
        let text = markdown(&fixtures::dry_run());
        assert!(text.starts_with("# flightpath run reset-staging — plan (dry run)\n"));
        assert!(!text.contains("succeeded"), "{text}");
    }

    #[test]
    fn table_cells_escape_pipes_and_newlines() {
        assert_eq!(cell("a|b\nc"), "a\\|b<br>c");
    }

    #[test]
    fn inline_code_survives_backticks() {
        assert_eq!(inline_code("plain"), "`plain`");
        assert_eq!(inline_code("run `ls`"), "`` run `ls` ``");
    }

    #[test]
    fn node_ids_are_safe_and_distinct() {
        let mut report = fixtures::dry_run();
        report.steps[0].id = "media-sync".into();
        report.steps[1].id = "media_sync".into();
        report.steps[2].id = "end".into();
        let ids = NodeIds::of(&report);
        assert_eq!(ids.get("media-sync"), Some("s_media_sync"));
        assert_eq!(ids.get("media_sync"), Some("s_media_sync_2"));
        assert_eq!(ids.get("end"), Some("s_end"));
    }
}
