//! The state of one run while it executes: the report being filled in, the
//! outputs steps produced, the journal. Every transition of a step goes
//! through here, so the report, the journal and the live lines on stderr
//! always agree. Everything recorded is redacted first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::progress::Progress;
use crate::report::model::{Report, StepReport, StepStatus};
use crate::steps::{Interaction, StepCtx, StepError, StepOutcome};
use crate::workflow::model::{Step, Target};

use super::journal::{Entry, Journal, JournalError};
use crate::redact::Redactor;

pub struct RunState {
    pub report: Report,
    /// Step id → index in `report.steps`.
    index: BTreeMap<String, usize>,
    /// Unredacted outputs, read by later steps' templates.
    outputs: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// What each step's plan kept for its run (`StepOutcome::for_run`).
    planned: BTreeMap<String, serde_json::Value>,
    journal: Option<Journal>,
    /// What finished steps left for the end of the run, in finishing order.
    pub after_run: Vec<(String, crate::steps::AfterRun)>,
    /// The first error writing the journal; the run fails with it at the end.
    pub journal_error: Option<JournalError>,
    pub redactor: Redactor,
    pub progress: Progress,
    targets: Arc<BTreeMap<String, Target>>,
    interaction: Interaction,
    workdir: PathBuf,
    handoffs: crate::steps::Handoffs,
}

pub struct StateParts {
    pub report: Report,
    pub journal: Option<Journal>,
    pub redactor: Redactor,
    pub progress: Progress,
    pub targets: Arc<BTreeMap<String, Target>>,
    pub interaction: Interaction,
    pub workdir: PathBuf,
}

impl RunState {
    pub fn new(parts: StateParts) -> Self {
        let index = parts
            .report
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        RunState {
            report: parts.report,
            index,
            outputs: BTreeMap::new(),
            planned: BTreeMap::new(),
            journal: parts.journal,
            after_run: Vec::new(),
            journal_error: None,
            redactor: parts.redactor,
            progress: parts.progress,
            targets: parts.targets,
            interaction: parts.interaction,
            workdir: parts.workdir,
            handoffs: Default::default(),
        }
    }

    fn entry(&mut self, id: &str) -> &mut StepReport {
        let i = self.index[id];
        &mut self.report.steps[i]
    }

    pub fn status(&self, id: &str) -> StepStatus {
        self.index
            .get(id)
            .map(|&i| self.report.steps[i].status)
            .unwrap_or(StepStatus::Pending)
    }

    pub fn journal(&mut self, entry: Entry) {
        if let Some(journal) = &mut self.journal
            && let Err(e) = journal.append(&entry)
        {
            self.journal_error.get_or_insert(e);
        }
    }

    /// A line on stderr, above any progress bars.
    pub fn announce(&self, line: &str) {
        self.progress.println(&self.redactor.redact(line));
    }

    pub fn step_ctx(&self, step: &Step, cancel: tokio_util::sync::CancellationToken) -> StepCtx {
        StepCtx {
            step_id: step.id.clone(),
            dry_run: self.report.dry_run,
            cancel,
            targets: self.targets.clone(),
            outputs: Arc::new(self.outputs.clone()),
            progress: self.progress.clone(),
            interaction: self.interaction,
            redactor: self.redactor.clone(),
            report: Arc::new(self.report.clone()),
            workdir: self.workdir.clone(),
            planned: self.planned.get(&step.id).cloned(),
            handoffs: self.handoffs.clone(),
        }
    }

    /// The workflow's targets.
    pub fn targets(&self) -> Arc<BTreeMap<String, Target>> {
        self.targets.clone()
    }

    /// Marks a step as reused from an earlier attempt (resume).
    pub fn reuse_step(
        &mut self,
        earlier: &StepReport,
        outputs: serde_json::Map<String, serde_json::Value>,
    ) {
        self.outputs.insert(earlier.id.clone(), outputs);
        let entry = self.entry(&earlier.id);
        entry.status = StepStatus::Reused;
        entry.started = earlier.started;
        entry.finished = earlier.finished;
        entry.duration_ms = earlier.duration_ms;
        entry.summary = earlier.summary.clone();
        entry.outputs = earlier.outputs.clone();
        entry.details = earlier.details.clone();
    }

    pub fn start_step(&mut self, step: &Step) {
        let now = Utc::now();
        let entry = self.entry(&step.id);
        entry.status = StepStatus::Running;
        entry.started = Some(now);
        self.journal(Entry::StepStarted {
            time: now,
            step: step.id.clone(),
        });
        self.progress.step_started(&step.id, step.kind());
        self.progress.step_line(
            &step.id,
            &self
                .redactor
                .redact(&format!("▶ {} ({})", step.id, step.kind())),
        );
    }

    /// Records a finished step (planned or run).
    pub fn finish_step(
        &mut self,
        step: &Step,
        started: DateTime<Utc>,
        elapsed: Duration,
        result: Result<StepOutcome, StepError>,
    ) {
        let dry_run = self.report.dry_run;
        let redactor = self.redactor.clone();
        let finished = Utc::now();
        let duration_ms = elapsed.as_millis() as u64;
        if let Ok(outcome) = &result {
            self.outputs
                .insert(step.id.clone(), outcome.outputs.clone());
            if !dry_run {
                for after in &outcome.after_run {
                    self.after_run.push((step.id.clone(), after.clone()));
                }
            }
        }
        let entry = self.entry(&step.id);
        entry.started = Some(started);
        entry.finished = Some(finished);
        entry.duration_ms = Some(duration_ms);
        match result {
            Ok(outcome) => {
                entry.status = if dry_run {
                    StepStatus::Planned
                } else {
                    StepStatus::Succeeded
                };
                entry.summary = Some(redactor.redact(&outcome.summary));
                entry.outputs = redact_map(&redactor, &outcome.outputs);
                entry.details = outcome
                    .details
                    .iter()
                    .map(|d| redact_detail(&redactor, d))
                    .collect();
                entry.error = None;
            }
            Err(err) => {
                entry.status = match err {
                    StepError::Cancelled => StepStatus::Cancelled,
                    _ => StepStatus::Failed,
                };
                entry.error = Some(redactor.redact(&err.to_string()));
                entry.details = err
                    .details()
                    .iter()
                    .map(|d| redact_detail(&redactor, d))
                    .collect();
            }
        }
        let record = entry.clone();
        self.journal(Entry::StepFinished {
            time: finished,
            step: record.clone(),
        });
        // What it left for the end of the run, right behind it: a run
        // killed from here on can still be finished by `resume`.
        let left: Vec<crate::steps::AfterRun> = self
            .after_run
            .iter()
            .filter(|(id, _)| *id == step.id)
            .map(|(_, after)| after.clone())
            .collect();
        if record.status == StepStatus::Succeeded {
            for after in left {
                self.journal(Entry::AfterRunLeft {
                    time: finished,
                    step: step.id.clone(),
                    after,
                });
            }
        }
        let took = crate::human::human_duration(elapsed.as_millis() as u64);
        let line = match (&record.status, &record.error) {
            (StepStatus::Failed, Some(e)) => format!("✗ {} failed after {took}: {e}", step.id),
            (StepStatus::Cancelled, _) => format!("⊘ {} cancelled after {took}", step.id),
            _ => format!(
                "✓ {} {took} — {}",
                step.id,
                record.summary.as_deref().unwrap_or("")
            ),
        };
        self.progress
            .step_finished(&step.id, step.kind(), &self.redactor.redact(&line));
    }

    /// Keeps a plan's outcome (real runs plan first; the plan is shown when
    /// asking for confirmation and replaced when the step runs).
    pub fn record_plan(&mut self, step: &Step, outcome: StepOutcome) {
        let redactor = self.redactor.clone();
        self.outputs
            .insert(step.id.clone(), outcome.outputs.clone());
        if let Some(kept) = &outcome.for_run {
            self.planned.insert(step.id.clone(), kept.clone());
        }
        let entry = self.entry(&step.id);
        entry.status = StepStatus::Planned;
        entry.summary = Some(redactor.redact(&outcome.summary));
        entry.details = outcome
            .details
            .iter()
            .map(|d| redact_detail(&redactor, d))
            .collect();
    }

    /// Adds a line to a step's details after it finished (what happened at
    /// the end of the run on its behalf).
    pub fn add_detail(&mut self, id: &str, detail: crate::report::model::Detail) {
        let redacted = redact_detail(&self.redactor.clone(), &detail);
        self.entry(id).details.push(redacted);
    }

    /// A step that did not stop within the grace period after Ctrl-C.
    pub fn abandon_step(&mut self, step: &Step) {
        let now = Utc::now();
        let entry = self.entry(&step.id);
        entry.status = StepStatus::Cancelled;
        entry.finished = Some(now);
        entry.duration_ms = entry
            .started
            .map(|s| (now - s).num_milliseconds().max(0) as u64);
        entry.error = Some("still running when the grace period ended; abandoned".into());
        let record = entry.clone();
        self.journal(Entry::StepFinished {
            time: now,
            step: record,
        });
    }

    pub fn skip_step(&mut self, step: &Step) {
        let entry = self.entry(&step.id);
        entry.status = StepStatus::Skipped;
        entry.summary = Some("not run: a step it needs did not succeed".into());
    }

    /// Forgets plan-time outputs before the real run starts.
    pub fn reset_for_execution(&mut self, steps: &[Step]) {
        for step in steps {
            if self.status(&step.id) == StepStatus::Reused {
                continue;
            }
            self.outputs.remove(&step.id);
            let entry = self.entry(&step.id);
            *entry = StepReport::pending(&entry.id, &entry.kind, &entry.needs, entry.on_failure);
        }
    }
}

fn redact_map(
    redactor: &Redactor,
    map: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    map.iter()
        .map(|(k, v)| (k.clone(), redactor.redact_json(v)))
        .collect()
}

fn redact_detail(
    redactor: &Redactor,
    detail: &crate::report::model::Detail,
) -> crate::report::model::Detail {
    use crate::report::model::Detail;
    match detail {
        Detail::Fact { label, value } => Detail::Fact {
            label: label.clone(),
            value: redactor.redact(value),
        },
        Detail::Block { title, text } => Detail::Block {
            title: title.clone(),
            text: redactor.redact(text),
        },
        Detail::Table {
            title,
            columns,
            rows,
        } => Detail::Table {
            title: title.clone(),
            columns: columns.clone(),
            rows: rows
                .iter()
                .map(|row| row.iter().map(|cell| redactor.redact(cell)).collect())
                .collect(),
        },
    }
}
