//! The report's data model: what happened (or, in a dry run, what would
//! happen) in one run. Built by the engine, rendered by the pure functions in
//! the sibling modules; it holds no rendering logic itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Bumped whenever a field of the JSON rendering changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub run_id: String,
    /// The workflow's `name:`.
    pub workflow: String,
    pub description: Option<String>,
    /// True for `--dry-run` / `plan`: every sentence says "would".
    pub dry_run: bool,
    pub status: RunStatus,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    /// Main steps first (in execution order), then `on_failure` steps.
    pub steps: Vec<StepReport>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A dry run that planned every step without error.
    Planned,
    Succeeded,
    Failed,
    Cancelled,
    /// Stopped before any step ran (safety refusal, lock held, ...).
    Refused,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub id: String,
    /// The `uses:` kind, e.g. `postgres.sql`.
    pub kind: String,
    pub status: StepStatus,
    /// Ids of the steps this one waits for (edges of the step graph).
    pub needs: Vec<String>,
    /// True for steps declared under `on_failure:`.
    pub on_failure: bool,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    /// One sentence: "ran `UPDATE …` on staging: 3 rows" or, in a dry run,
    /// "would run `UPDATE …` on staging".
    pub summary: Option<String>,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    pub details: Vec<Detail>,
    /// Why the step failed, already redacted.
    pub error: Option<String>,
}

impl StepReport {
    /// A step that has not started.
    pub fn pending(id: &str, kind: &str, needs: &[String], on_failure: bool) -> Self {
        StepReport {
            id: id.to_string(),
            kind: kind.to_string(),
            status: StepStatus::Pending,
            needs: needs.to_vec(),
            on_failure,
            started: None,
            finished: None,
            duration_ms: None,
            summary: None,
            outputs: Default::default(),
            details: Vec::new(),
            error: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started (the run stopped first, or an `on_failure` step of a run that succeeded).
    Pending,
    /// Planned in a dry run.
    Planned,
    Running,
    Succeeded,
    /// Succeeded in an earlier run; outputs reused by `resume`.
    Reused,
    Failed,
    Cancelled,
    /// Not run because a step it needs did not succeed.
    Skipped,
}

/// One piece of a step's details, rendered under the step's heading.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Detail {
    /// `label: value`, e.g. `target: staging`.
    Fact { label: String, value: String },
    /// A titled block of verbatim text: SQL, a command, captured output.
    Block { title: String, text: String },
    /// A table, e.g. per-table row counts of a clone.
    Table {
        title: String,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
}

impl Detail {
    pub fn fact(label: impl Into<String>, value: impl Into<String>) -> Self {
        Detail::Fact {
            label: label.into(),
            value: value.into(),
        }
    }

    pub fn block(title: impl Into<String>, text: impl Into<String>) -> Self {
        Detail::Block {
            title: title.into(),
            text: text.into(),
        }
    }
}
