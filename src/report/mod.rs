//! The run report: one data model ([`model`]) rendered three ways — for the
//! terminal, as Markdown (summary table, per-step details, a mermaid graph
//! coloured by status) and as JSON. Renderers are pure functions of the model:
//! they never read the clock, the environment or the terminal.
//!
//! This module owns the vocabulary the renderers share (status words and
//! glyphs, human durations); each renderer owns its own layout.

pub mod github;
pub mod json;
pub mod markdown;
pub mod model;
pub mod terminal;

pub use json::json;
pub use markdown::markdown;
pub use terminal::terminal;

use model::{Report, RunStatus, StepReport, StepStatus};

/// The lower-case word for a step status, as in the JSON (`succeeded`, ...).
pub fn step_status_word(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "pending",
        StepStatus::Planned => "planned",
        StepStatus::Running => "running",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Reused => "reused",
        StepStatus::Failed => "failed",
        StepStatus::Cancelled => "cancelled",
        StepStatus::Skipped => "skipped",
    }
}

/// The one-character glyph for a step status.
pub fn step_status_glyph(status: StepStatus) -> char {
    match status {
        StepStatus::Succeeded => '✓',
        StepStatus::Failed => '✗',
        StepStatus::Skipped => '↷',
        StepStatus::Pending | StepStatus::Planned => '○',
        StepStatus::Reused => '⟳',
        StepStatus::Cancelled => '⊘',
        StepStatus::Running => '…',
    }
}

/// The lower-case word for a run status, as in the JSON.
pub fn run_status_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Planned => "planned",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
        RunStatus::Refused => "refused",
    }
}

/// The steps of the main graph (not `on_failure`), in report order.
fn main_steps(report: &Report) -> impl Iterator<Item = &StepReport> {
    report.steps.iter().filter(|s| !s.on_failure)
}

/// The `on_failure` steps, in report order.
fn failure_steps(report: &Report) -> impl Iterator<Item = &StepReport> {
    report.steps.iter().filter(|s| s.on_failure)
}

/// Reports with fixed timestamps, shared by the renderers' snapshot tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::{Map, Value, json};

    use super::model::{Detail, Report, RunStatus, SCHEMA_VERSION, StepReport, StepStatus};

    fn at(min: u32, sec: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, 9, min, sec)
            .single()
            .expect("fixed fixture time is valid")
    }

    fn outputs(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn step(id: &str, kind: &str, status: StepStatus, needs: &[&str]) -> StepReport {
        StepReport {
            id: id.to_string(),
            kind: kind.to_string(),
            status,
            needs: needs.iter().map(|n| n.to_string()).collect(),
            on_failure: false,
            started: None,
            finished: None,
            duration_ms: None,
            summary: None,
            outputs: Map::new(),
            details: Vec::new(),
            error: None,
        }
    }

    fn timed(mut step: StepReport, from: (u32, u32), to: (u32, u32), ms: u64) -> StepReport {
        step.started = Some(at(from.0, from.1));
        step.finished = Some(at(to.0, to.1));
        step.duration_ms = Some(ms);
        step
    }

    fn report(run_id: &str, dry_run: bool, status: RunStatus, steps: Vec<StepReport>) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.to_string(),
            workflow: "reset-staging".to_string(),
            description: Some("Reset staging from production, scrubbed of personal data.".into()),
            dry_run,
            status,
            started: at(0, 0),
            finished: Some(at(1, 4)),
            duration_ms: Some(64_250),
            steps,
        }
    }

    /// a → {b, c} → d, all succeeded, with every kind of detail.
    pub(crate) fn succeeded_diamond() -> Report {
        let mut a = timed(
            step(
                "branches",
                "git.merged-branches",
                StepStatus::Succeeded,
                &[],
            ),
            (0, 0),
            (0, 1),
            850,
        );
        a.summary = Some("2 branches are merged into staging but not main".into());
        a.outputs = outputs(json!({ "unmerged": ["feature/search", "fix-login"], "stale": [] }));
        a.details = vec![
            Detail::fact("repository", "."),
            Detail::fact("compared", "origin/staging..origin/main"),
        ];

        let mut b = timed(
            step(
                "database",
                "postgres.clone",
                StepStatus::Succeeded,
                &["branches"],
            ),
            (0, 1),
            (0, 59),
            58_400,
        );
        b.summary = Some("cloned prod into staging: 3 tables, 41,250 rows, 1.2 GiB".into());
        b.outputs = outputs(json!({ "tables": 3, "rows": 41250, "bytes": 1288490188u64 }));
        b.details = vec![
            Detail::fact("strategy", "swap"),
            Detail::Table {
                title: "Tables".into(),
                columns: vec!["table".into(), "rows".into(), "rule".into()],
                rows: vec![
                    vec!["auth_user".into(), "1,250".into(), "anonymized".into()],
                    vec!["orders".into(), "40,000".into(), "kept | raw".into()],
                    vec!["django_session".into(), "0".into(), "truncated".into()],
                ],
            },
        ];

        let mut c = timed(
            step(
                "media-sync",
                "media.sync",
                StepStatus::Succeeded,
                &["branches"],
            ),
            (0, 1),
            (0, 3),
            2_345,
        );
        c.summary = Some("copied 12 objects (4.5 MiB), 230 unchanged, deleted 1".into());
        c.outputs = outputs(json!({ "copied": 12, "skipped": 230, "deleted": 1 }));
        c.details = vec![Detail::block("Deleted", "original_images/old-banner.jpg\n")];

        let mut d = timed(
            step(
                "smoke",
                "http.check",
                StepStatus::Succeeded,
                &["database", "media-sync"],
            ),
            (0, 59),
            (1, 4),
            4_900,
        );
        d.summary = Some("GET https://staging.example.org/ returned 200".into());
        d.outputs = outputs(json!({ "status": 200 }));

        let mut restore = step("restore", "postgres.restore", StepStatus::Pending, &[]);
        restore.on_failure = true;

        report(
            "20250314T090000Z-7f3a",
            false,
            RunStatus::Succeeded,
            vec![a, b, c, d, restore],
        )
    }

    /// `migrate` failed with captured output, `smoke` was skipped, and the
    /// `on_failure` step `restore` succeeded.
    pub(crate) fn failed_with_restore() -> Report {
        let mut backup = timed(
            step("backup", "postgres.backup", StepStatus::Succeeded, &[]),
            (0, 0),
            (0, 12),
            12_030,
        );
        backup.summary =
            Some("backed up staging to ./backups/staging-20250314T090000Z.dump (84.0 MiB)".into());
        backup.outputs = outputs(json!({
            "path": "./backups/staging-20250314T090000Z.dump",
            "name": "staging-20250314T090000Z",
            "bytes": 88080384
        }));

        let mut migrate = timed(
            step("migrate", "shell", StepStatus::Failed, &["backup"]),
            (0, 12),
            (0, 40),
            28_100,
        );
        migrate.summary = Some("ran `./manage.py migrate --noinput`: exit code 1".into());
        migrate.error = Some("command exited with code 1".into());
        migrate.outputs = outputs(json!({ "exit_code": 1 }));
        let output: String = (1..=24)
            .map(|i| format!("  Applying app.{i:04}_change... OK\n"))
            .chain(std::iter::once(
                "django.db.utils.ProgrammingError: column \"legacy\" does not exist\n".to_string(),
            ))
            .collect();
        migrate.details = vec![
            Detail::fact("command", "./manage.py migrate --noinput"),
            Detail::block("Output", output),
        ];

        let smoke = step("smoke", "http.check", StepStatus::Skipped, &["migrate"]);

        let mut restore = timed(
            step("restore", "postgres.restore", StepStatus::Succeeded, &[]),
            (0, 40),
            (1, 4),
            24_000,
        );
        restore.on_failure = true;
        restore.summary = Some("restored staging from staging-20250314T090000Z".into());

        let mut report = report(
            "20250314T090000Z-b2c9",
            false,
            RunStatus::Failed,
            vec![backup, migrate, smoke, restore],
        );
        report.description = None;
        report
    }

    /// A dry run: every step planned, sentences say "would".
    pub(crate) fn dry_run() -> Report {
        let mut backup = timed(
            step("backup", "postgres.backup", StepStatus::Planned, &[]),
            (0, 0),
            (0, 0),
            140,
        );
        backup.summary = Some("would back up staging (about 84.0 MiB) to ./backups".into());
        backup.details = vec![Detail::fact("keep", "5 newest backups")];

        let mut sites = timed(
            step("sites", "postgres.sql", StepStatus::Planned, &["backup"]),
            (0, 0),
            (0, 1),
            35,
        );
        sites.summary = Some("would run `UPDATE wagtailcore_site …` on staging".into());
        sites.details = vec![Detail::block(
            "SQL",
            "UPDATE wagtailcore_site SET hostname = 'staging.example.org', port = 443",
        )];

        let mut restore = step("restore", "postgres.restore", StepStatus::Planned, &[]);
        restore.on_failure = true;
        restore.summary = Some("would restore staging from the backup of this run".into());

        let mut report = report(
            "20250314T090000Z-d41e",
            true,
            RunStatus::Planned,
            vec![backup, sites, restore],
        );
        report.finished = Some(at(0, 1));
        report.duration_ms = Some(1_210);
        report
    }
}
