//! Executes one group of steps (the main graph, or `on_failure`) as a DAG:
//! every step whose needs succeeded starts, at most `jobs` at a time, in
//! execution order. A failure stops new starts; steps already running finish.
//! Ctrl-C cancels every running step through its token, waits `grace`, then
//! abandons and names what is still running.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::report::model::StepStatus;
use crate::steps::{StepCtx, StepError, StepOutcome};
use crate::workflow::model::Step;

use super::state::RunState;

/// How a group ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEnd {
    Succeeded,
    /// A step failed; `refused` when a step refused for safety.
    Failed {
        refused: bool,
    },
    /// Ctrl-C; the steps still running after the grace period.
    Cancelled {
        abandoned: Vec<String>,
    },
}

pub struct Scheduler<'a> {
    pub steps: &'a [Step],
    pub jobs: usize,
    pub grace: Duration,
    /// Cancelled by Ctrl-C (or by a test).
    pub interrupt: CancellationToken,
}

/// What a finished task hands back: the step's index, when it started, and the result.
type Finished = (
    usize,
    chrono::DateTime<Utc>,
    Instant,
    Result<StepOutcome, StepError>,
);

impl Scheduler<'_> {
    pub async fn execute(&self, state: &mut RunState) -> GroupEnd {
        let mut running: JoinSet<Finished> = JoinSet::new();
        // Which steps are in flight, by task id, to name them on cancellation.
        let mut in_flight: BTreeMap<usize, String> = BTreeMap::new();
        let mut failed = false;
        let mut refused = false;
        let cancel = self.interrupt.child_token();
        loop {
            if !failed && !cancel.is_cancelled() {
                self.start_ready(state, &mut running, &mut in_flight, &cancel);
            }
            if running.is_empty() {
                break;
            }
            // Biased: once Ctrl-C is in, it wins over steps that finish
            // because of it (their tokens are children of `interrupt`).
            tokio::select! {
                biased;
                () = self.interrupt.cancelled() => {
                    let names: Vec<&str> = in_flight.values().map(String::as_str).collect();
                    state.announce(&format!(
                        "interrupted: cancelling {} (waiting up to {}s)",
                        if names.is_empty() { "nothing".to_string() } else { names.join(", ") },
                        self.grace.as_secs()
                    ));
                    let abandoned = self.drain(state, &mut running, &mut in_flight).await;
                    self.mark_not_started(state);
                    return GroupEnd::Cancelled { abandoned };
                }
                joined = running.join_next() => {
                    let Some(joined) = joined else { break };
                    let (index, started, began, result) = match joined {
                        Ok(finished) => finished,
                        Err(e) => panic!("a step task panicked: {e}"),
                    };
                    in_flight.remove(&index);
                    if let Err(err) = &result {
                        failed = true;
                        refused |= matches!(err, StepError::Refused(_));
                    }
                    state.finish_step(&self.steps[index], started, began.elapsed(), result);
                }
            }
        }
        self.mark_not_started(state);
        if failed {
            GroupEnd::Failed { refused }
        } else {
            GroupEnd::Succeeded
        }
    }

    /// Starts every step that is pending and whose needs all succeeded,
    /// while fewer than `jobs` run.
    fn start_ready(
        &self,
        state: &mut RunState,
        running: &mut JoinSet<Finished>,
        in_flight: &mut BTreeMap<usize, String>,
        cancel: &CancellationToken,
    ) {
        for (index, step) in self.steps.iter().enumerate() {
            if in_flight.len() >= self.jobs.max(1) {
                return;
            }
            if state.status(&step.id) != StepStatus::Pending {
                continue;
            }
            let ready = step.needs.iter().all(|need| {
                matches!(
                    state.status(need),
                    StepStatus::Succeeded | StepStatus::Reused
                )
            });
            if !ready {
                continue;
            }
            let ctx: StepCtx = state.step_ctx(step, cancel.child_token());
            state.start_step(step);
            let params = step.params.clone();
            in_flight.insert(index, step.id.clone());
            running.spawn(async move {
                let started = Utc::now();
                let began = Instant::now();
                let result = params.run(&ctx).await;
                (index, started, began, result)
            });
        }
    }

    /// After cancellation: collects steps that stop within the grace period;
    /// returns the ids of those that did not.
    async fn drain(
        &self,
        state: &mut RunState,
        running: &mut JoinSet<Finished>,
        in_flight: &mut BTreeMap<usize, String>,
    ) -> Vec<String> {
        let deadline = tokio::time::sleep(self.grace);
        tokio::pin!(deadline);
        while !running.is_empty() {
            tokio::select! {
                joined = running.join_next() => {
                    if let Some(Ok((index, started, began, result))) = joined {
                        in_flight.remove(&index);
                        state.finish_step(&self.steps[index], started, began.elapsed(), result);
                    }
                }
                () = &mut deadline => break,
            }
        }
        running.abort_all();
        let abandoned: Vec<String> = in_flight.values().cloned().collect();
        for id in &abandoned {
            if let Some(step) = self.steps.iter().find(|s| &s.id == id) {
                state.abandon_step(step);
            }
        }
        abandoned
    }

    /// Steps that never started: skipped when a need did not succeed.
    fn mark_not_started(&self, state: &mut RunState) {
        for step in self.steps {
            if state.status(&step.id) != StepStatus::Pending {
                continue;
            }
            let blocked = step.needs.iter().any(|need| {
                matches!(
                    state.status(need),
                    StepStatus::Failed | StepStatus::Skipped | StepStatus::Cancelled
                )
            });
            if blocked {
                state.skip_step(step);
            }
        }
    }
}

/// Waits for `future`, or for `interrupt`; used around planning.
pub async fn or_interrupt<T>(
    interrupt: &CancellationToken,
    future: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = interrupt.cancelled() => None,
        value = future => Some(value),
    }
}
