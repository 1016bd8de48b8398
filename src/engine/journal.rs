//! The run journal: `.flightpath/runs/<run-id>/journal.jsonl`, one JSON
//! object per line, appended as the run goes (run started, each step's start
//! and end with its outputs, what a step left for the end of the run, the
//! end of the run before it is done, run finished). Everything written is
//! already redacted by the caller (what steps leave holds database names,
//! never URLs). `resume` reads it back to learn which steps succeeded, what
//! they produced, and which of them the end of the run undid.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::report::model::{RunStatus, StepReport, StepStatus};
use crate::steps::AfterRun;

pub const JOURNAL_FILE: &str = "journal.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Entry {
    RunStarted {
        time: DateTime<Utc>,
        run_id: String,
        workflow: String,
        /// The workflow file as the user named it, relative to the working directory.
        path: String,
        dry_run: bool,
        /// Names of `--var` values given (values are not kept: they may be secret).
        vars: Vec<String>,
    },
    RunResumed {
        time: DateTime<Utc>,
        reused: Vec<String>,
    },
    StepStarted {
        time: DateTime<Utc>,
        step: String,
    },
    StepFinished {
        time: DateTime<Utc>,
        step: StepReport,
    },
    RunFinished {
        time: DateTime<Utc>,
        status: RunStatus,
    },
    /// A step that succeeded left work for the end of the run (a swap to
    /// confirm or undo); written right after its `step_finished`, so a
    /// resumed run can finish it.
    AfterRunLeft {
        time: DateTime<Utc>,
        step: String,
        after: AfterRun,
    },
    /// The end of the run is about to confirm (`undo: false`) or undo a
    /// step's work; written before doing it, so a resumed run knows it may
    /// have happened.
    Settling {
        time: DateTime<Utc>,
        step: String,
        undo: bool,
    },
    /// What the end of the run did for a step.
    Settled {
        time: DateTime<Utc>,
        step: String,
        undo: bool,
        ok: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the run journal {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the run journal {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run journal {path} is damaged at line {line}: {message}")]
    Damaged {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Appends entries to a run's journal, flushing each line.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    pub fn open(run_dir: &Path) -> Result<Journal, JournalError> {
        let path = run_dir.join(JOURNAL_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| JournalError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(Journal { path, file })
    }

    pub fn append(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let mut line = serde_json::to_string(entry).expect("journal entries serialize");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| JournalError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// What a journal says about a run, for `resume`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: String,
    pub workflow: String,
    pub path: String,
    pub dry_run: bool,
    pub vars: Vec<String>,
    /// The last status recorded for the run, if it finished.
    pub status: Option<RunStatus>,
    /// The latest report of each step that finished, by id.
    pub steps: BTreeMap<String, StepReport>,
    /// What each step left for the end of the run, since it last finished.
    pub after_run: BTreeMap<String, Vec<AfterRun>>,
    /// Steps whose work the end of the run set out to undo (it may have):
    /// they run again rather than being reused.
    pub undone: BTreeSet<String>,
    /// Steps whose work the end of the run set out to confirm.
    pub confirming: BTreeSet<String>,
}

impl RunRecord {
    /// Steps whose latest record is a success (or an earlier reuse).
    pub fn succeeded(&self) -> BTreeMap<String, StepReport> {
        self.steps
            .iter()
            .filter(|(_, s)| {
                !s.on_failure && matches!(s.status, StepStatus::Succeeded | StepStatus::Reused)
            })
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }
}

pub fn read(run_dir: &Path) -> Result<RunRecord, JournalError> {
    let path = run_dir.join(JOURNAL_FILE);
    let file = File::open(&path).map_err(|source| JournalError::Read {
        path: path.clone(),
        source,
    })?;
    let mut record: Option<RunRecord> = None;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| JournalError::Read {
            path: path.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(&line).map_err(|e| JournalError::Damaged {
            path: path.clone(),
            line: n + 1,
            message: e.to_string(),
        })?;
        match (entry, record.as_mut()) {
            (
                Entry::RunStarted {
                    run_id,
                    workflow,
                    path,
                    dry_run,
                    vars,
                    ..
                },
                _,
            ) => {
                record = Some(RunRecord {
                    run_id,
                    workflow,
                    path,
                    dry_run,
                    vars,
                    status: None,
                    steps: BTreeMap::new(),
                    after_run: BTreeMap::new(),
                    undone: BTreeSet::new(),
                    confirming: BTreeSet::new(),
                })
            }
            (Entry::StepFinished { step, .. }, Some(r)) => {
                // Ran again: what an earlier attempt left is settled or
                // replaced by what this one leaves.
                r.after_run.remove(&step.id);
                r.undone.remove(&step.id);
                r.confirming.remove(&step.id);
                r.steps.insert(step.id.clone(), step);
            }
            (Entry::AfterRunLeft { step, after, .. }, Some(r)) => {
                r.after_run.entry(step).or_default().push(after);
            }
            (Entry::Settling { step, undo, .. }, Some(r)) => {
                if undo {
                    r.undone.insert(step);
                } else {
                    r.confirming.insert(step);
                }
            }
            (Entry::Settled { .. }, Some(_)) => {}
            (Entry::RunFinished { status, .. }, Some(r)) => r.status = Some(status),
            (Entry::RunResumed { .. }, Some(r)) => r.status = None,
            (Entry::StepStarted { .. }, _) => {}
            (_, None) => {
                return Err(JournalError::Damaged {
                    path: path.clone(),
                    line: n + 1,
                    message: "the first entry is not `run_started`".into(),
                });
            }
        }
    }
    record.ok_or(JournalError::Damaged {
        path,
        line: 1,
        message: "the journal is empty".into(),
    })
}
