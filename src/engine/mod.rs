//! The engine: runs a validated workflow. In order: take the locks (real
//! runs: a file lock here, an advisory lock on each written database's server),
//! open the run folder and journal, plan every step (the read-only half),
//! stop there for a dry run; otherwise confirm, execute the step graph,
//! settle what the steps left for the end of the run (confirm, or undo on
//! failure), run `on_failure` when something failed and settle what those
//! steps left in turn, and write the report.
//!
//! The engine never parses YAML and never renders anything but the live
//! status lines; the CLI decides what to print at the end.
//!
//! Layer: below the CLI, above the workflow model and the steps; it calls
//! what steps leave for the end of the run but never knows what they are.

pub mod journal;
pub mod lock;
pub mod safety;
pub mod scheduler;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::report::model::{Report, RunStatus, SCHEMA_VERSION, StepReport, StepStatus};
use crate::steps::Interaction;
use crate::steps::StepError;
use crate::workflow::model::{Step, Target, Workflow};

use crate::redact::Redactor;
use journal::{Entry, Journal, JournalError, RunRecord};
use lock::{Holder, LockError};
use scheduler::{GroupEnd, Scheduler};
use state::{RunState, StateParts};

/// Where runs keep their state, under the working directory.
pub const STATE_DIR: &str = ".flightpath";

pub struct RunOptions {
    pub dry_run: bool,
    pub interaction: Interaction,
    /// Steps running at once.
    pub jobs: usize,
    /// How long cancelled steps get to stop after Ctrl-C.
    pub grace: Duration,
    /// The working directory: `.flightpath/` lives here; relative paths resolve here.
    pub workdir: PathBuf,
    /// The workflow file as the user named it (recorded for `resume`).
    pub shown_path: String,
    /// Names of `--var` values (recorded; values are not).
    pub var_names: Vec<String>,
    /// Continue this earlier run instead of starting a new one.
    pub resume: Option<RunRecord>,
    pub progress: Progress,
    /// Cancelled on Ctrl-C.
    pub interrupt: CancellationToken,
}

/// How the run ended, for the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Success,
    StepFailed,
    /// Refused for safety; the reason is for the person running it.
    Refused(String),
    /// Ctrl-C; the steps abandoned after the grace period.
    Cancelled(Vec<String>),
}

#[derive(Debug)]
pub struct RunOutcome {
    pub report: Report,
    pub run_dir: PathBuf,
    pub exit: Exit,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Refused before any step ran (exit code 3).
    #[error("{0}")]
    Refused(String),
    /// A pre-run check could not reach a server.
    #[error("{0}")]
    Unreachable(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The redactor for a workflow: secret variables and URL passwords.
pub fn redactor_for(workflow: &Workflow) -> Redactor {
    let mut redactor = Redactor::new(workflow.secrets.iter().cloned());
    for target in workflow.targets.values() {
        for url in [&target.postgres, &target.media, &target.git]
            .into_iter()
            .flatten()
        {
            redactor = redactor.with_url_password(url);
        }
    }
    redactor
}

/// A sortable, unique-enough id: `20261125T105503Z-3fa9`.
pub fn new_run_id() -> String {
    let suffix: u16 = rand::random();
    format!("{}-{suffix:04x}", Utc::now().format("%Y%m%dT%H%M%SZ"))
}

pub fn run_dir(workdir: &Path, run_id: &str) -> PathBuf {
    workdir.join(STATE_DIR).join("runs").join(run_id)
}

pub async fn run(workflow: &Workflow, opts: RunOptions) -> Result<RunOutcome, EngineError> {
    let began = Instant::now();
    safety::check_distinct_databases(workflow, &opts.interrupt)
        .await
        .map_err(|e| match e {
            safety::SafetyError::SameDatabase { .. } | safety::SafetyError::SameServer { .. } => {
                EngineError::Refused(e.to_string())
            }
            safety::SafetyError::Unreachable(message) => EngineError::Unreachable(message),
        })?;
    let redactor = redactor_for(workflow);
    let run_id = match &opts.resume {
        Some(record) => record.run_id.clone(),
        None => new_run_id(),
    };
    let _lock = if opts.dry_run {
        None
    } else {
        let mut written: Vec<String> = workflow
            .written_targets()
            .into_iter()
            .map(|name| target_identity(workflow, &name))
            .collect();
        written.sort();
        let holder = Holder {
            run_id: run_id.clone(),
            pid: std::process::id(),
            workflow: workflow.name.clone(),
            started: Utc::now(),
        };
        let locks = opts.workdir.join(STATE_DIR).join("locks");
        Some(lock::acquire(
            &locks,
            &lock::key(&workflow.name, &written),
            &holder,
        )?)
    };
    // Held (connections open) until this function returns, after the report.
    let _server_locks = if opts.dry_run {
        Vec::new()
    } else {
        lock_written_databases(workflow, &run_id, &opts.interrupt).await?
    };
    let run_dir = run_dir(&opts.workdir, &run_id);
    std::fs::create_dir_all(&run_dir).map_err(|source| EngineError::Write {
        path: run_dir.clone(),
        source,
    })?;
    let mut journal = Journal::open(&run_dir)?;
    if opts.resume.is_none() {
        journal.append(&Entry::RunStarted {
            time: Utc::now(),
            run_id: run_id.clone(),
            workflow: workflow.name.clone(),
            path: opts.shown_path.clone(),
            dry_run: opts.dry_run,
            vars: opts.var_names.clone(),
        })?;
    }

    let mut state = RunState::new(StateParts {
        report: initial_report(workflow, &run_id, opts.dry_run),
        journal: Some(journal),
        redactor,
        progress: opts.progress.clone(),
        targets: Arc::new(workflow.targets.clone()),
        interaction: opts.interaction,
        workdir: opts.workdir.clone(),
    });
    if let Some(record) = &opts.resume {
        reuse_succeeded(&mut state, workflow, record).await;
        // The steps actually reused: not those that succeeded but must run
        // again (undone, no longer in place, or after one that runs again).
        let reused = workflow
            .steps
            .iter()
            .filter(|s| state.status(&s.id) == StepStatus::Reused)
            .map(|s| s.id.clone())
            .collect();
        state.journal(Entry::RunResumed {
            time: Utc::now(),
            reused,
        });
    }

    let exit = execute(workflow, &opts, &mut state).await;
    finish(state, &run_dir, began, exit)
}

/// Takes the server-side lock of every postgres database the run writes
/// (see [`lock`]); held until the returned locks are dropped.
async fn lock_written_databases(
    workflow: &Workflow,
    run_id: &str,
    cancel: &CancellationToken,
) -> Result<Vec<lock::ServerLock>, EngineError> {
    let written: std::collections::BTreeSet<String> = workflow
        .all_steps()
        .flat_map(|s| s.params.target_uses())
        .filter(|u| u.write && u.facet == crate::steps::Facet::Postgres)
        .map(|u| u.name)
        .collect();
    let holder = lock::holder_name(run_id, &lock::host_name(), std::process::id());
    let mut locks = Vec::with_capacity(written.len());
    for name in written {
        let Some(url) = workflow.targets[&name].postgres.as_deref() else {
            continue;
        };
        match lock::acquire_server(&name, url, &holder, cancel).await {
            Ok(held) => locks.push(held),
            Err(e @ LockError::Server { .. }) => {
                return Err(EngineError::Unreachable(e.to_string()));
            }
            Err(e) => return Err(EngineError::Lock(e)),
        }
    }
    Ok(locks)
}

/// Plans, confirms, executes; returns how the run ended.
async fn execute(workflow: &Workflow, opts: &RunOptions, state: &mut RunState) -> Exit {
    let to_run: Vec<&Step> = workflow
        .steps
        .iter()
        .filter(|s| state.status(&s.id) != StepStatus::Reused)
        .collect();
    let mut to_plan = to_run.clone();
    if opts.dry_run {
        to_plan.extend(workflow.on_failure.iter());
    }
    let planned = plan_steps(state, &to_plan, &opts.interrupt).await;
    if opts.dry_run {
        return match planned {
            PlanEnd::Planned => Exit::Success,
            PlanEnd::Failed => Exit::StepFailed,
            PlanEnd::Refused(reason) => Exit::Refused(reason),
            PlanEnd::Interrupted => Exit::Cancelled(Vec::new()),
        };
    }
    match planned {
        PlanEnd::Planned => {}
        PlanEnd::Failed => {
            state.announce("planning failed; nothing was changed");
            return Exit::StepFailed;
        }
        PlanEnd::Refused(reason) => {
            state.announce("planning refused; nothing was changed");
            return Exit::Refused(reason);
        }
        PlanEnd::Interrupted => return Exit::Cancelled(Vec::new()),
    }
    let recovery: Vec<&Step> = workflow.on_failure.iter().collect();
    let steps = Confirming {
        main: &to_run,
        on_failure: &recovery,
    };
    if let Err(reason) = confirm(state, steps, &workflow.targets, opts.interaction).await {
        return Exit::Refused(reason);
    }
    state.reset_for_execution(&workflow.steps);

    let main = Scheduler {
        steps: &workflow.steps,
        jobs: opts.jobs,
        grace: opts.grace,
        interrupt: opts.interrupt.clone(),
    };
    let end = main.execute(state).await;
    settle(state, end == GroupEnd::Succeeded).await;
    match end {
        GroupEnd::Succeeded => Exit::Success,
        GroupEnd::Cancelled { abandoned } => Exit::Cancelled(abandoned),
        GroupEnd::Failed { refused } => {
            let refusal = refused.then(|| first_error(&state.report));
            if !workflow.on_failure.is_empty() {
                state.announce("a step failed: running on_failure steps");
                let recovery = Scheduler {
                    steps: &workflow.on_failure,
                    jobs: opts.jobs,
                    grace: opts.grace,
                    interrupt: opts.interrupt.clone(),
                };
                let recovered = recovery.execute(state).await;
                // What the recovery steps left (a restore's swap) is theirs
                // to settle: confirmed when they all succeeded, else undone.
                settle(state, recovered == GroupEnd::Succeeded).await;
                if let GroupEnd::Cancelled { abandoned } = recovered {
                    return Exit::Cancelled(abandoned);
                }
            }
            match refusal {
                Some(reason) => Exit::Refused(reason),
                None => Exit::StepFailed,
            }
        }
    }
}

/// Confirms (on success) or undoes (on failure, newest first) what steps
/// left for the end of the run, e.g. a database swap.
async fn settle(state: &mut RunState, success: bool) {
    let mut pending = std::mem::take(&mut state.after_run);
    if !success {
        pending.reverse();
    }
    let targets = state.targets();
    for (step, after) in pending {
        // Journaled before it is done: a resumed run must know the work
        // may have been undone (or confirmed) even if this is killed.
        state.journal(Entry::Settling {
            time: Utc::now(),
            step: step.clone(),
            undo: !success,
        });
        let (label, result) = if success {
            ("after the run", after.commit(&targets).await)
        } else {
            ("undone", after.rollback(&targets).await)
        };
        state.journal(Entry::Settled {
            time: Utc::now(),
            step: step.clone(),
            undo: !success,
            ok: result.is_ok(),
        });
        let line = match &result {
            Ok(done) => format!("{step}: {done}"),
            Err(e) => format!("{step}: could not finish ({label}): {e}"),
        };
        state.announce(&line);
        let text = result.unwrap_or_else(|e| format!("FAILED: {e}"));
        state.add_detail(&step, crate::report::model::Detail::fact(label, text));
    }
}

enum PlanEnd {
    Planned,
    Failed,
    /// A plan refused for safety (exit code 3): its reason.
    Refused(String),
    Interrupted,
}

/// The read-only half of every step, one after the other (plans are quick
/// and their order makes the dry-run report read top to bottom).
async fn plan_steps(
    state: &mut RunState,
    steps: &[&Step],
    interrupt: &CancellationToken,
) -> PlanEnd {
    let mut failed = false;
    let mut refused = None;
    let dry_run = state.report.dry_run;
    for step in steps {
        if dry_run {
            // The plan is all a dry run does: its lines are the step's.
            state.progress.step_started(&step.id, step.kind());
        }
        let ctx = state.step_ctx(step, interrupt.child_token());
        let started = Utc::now();
        let began = Instant::now();
        let Some(result) = scheduler::or_interrupt(interrupt, step.params.plan(&ctx)).await else {
            return PlanEnd::Interrupted;
        };
        failed |= result.is_err();
        if let Err(StepError::Refused(reason)) = &result {
            refused.get_or_insert_with(|| reason.clone());
        }
        if dry_run {
            state.finish_step(step, started, began.elapsed(), result);
        } else {
            match result {
                Ok(outcome) => state.record_plan(step, outcome),
                Err(err) => {
                    state.finish_step(step, started, began.elapsed(), Err(err));
                    return match refused {
                        Some(reason) => PlanEnd::Refused(reason),
                        None => PlanEnd::Failed,
                    };
                }
            }
        }
    }
    if let Some(reason) = refused {
        PlanEnd::Refused(reason)
    } else if failed {
        PlanEnd::Failed
    } else {
        PlanEnd::Planned
    }
}

/// Asks once before the first destructive step; refuses when no one can be
/// asked. A run that writes a Heroku app asks for the app's name to be
/// typed instead of `y`, as `heroku pg:copy` does.
/// The steps a confirmation is about: those this run runs, and those it
/// would run should one of them fail (they change things too).
struct Confirming<'a> {
    main: &'a [&'a Step],
    on_failure: &'a [&'a Step],
}

async fn confirm(
    state: &RunState,
    steps: Confirming<'_>,
    targets: &BTreeMap<String, Target>,
    interaction: Interaction,
) -> Result<(), String> {
    fn changing<'a>(list: &[&'a Step]) -> Vec<&'a Step> {
        list.iter()
            .copied()
            .filter(|s| s.params.destructive())
            .collect()
    }
    let (main, recovery) = (changing(steps.main), changing(steps.on_failure));
    if (main.is_empty() && recovery.is_empty()) || interaction.assume_yes {
        return Ok(());
    }
    let listed = main
        .iter()
        .map(|s| format!("`{}`", s.id))
        .chain(recovery.iter().map(|s| format!("`{}` (on failure)", s.id)))
        .collect::<Vec<_>>()
        .join(", ");
    let destructive: Vec<&Step> = main.iter().chain(&recovery).copied().collect();
    let apps = heroku_apps_written(&destructive, targets);
    if !interaction.interactive {
        let writes = match apps.as_slice() {
            [] => String::new(),
            apps => format!(", writing Heroku app {},", quoted(apps)),
        };
        return Err(format!(
            "this run changes things (steps {listed}){writes} and nobody can confirm it here: \
             stdin is not a terminal. Review it with `flightpath plan`, then pass --yes"
        ));
    }
    let plan = crate::report::terminal(&state.report, false);
    let mut question = format!("{plan}\nThese steps change things: {listed}. ");
    if apps.is_empty() {
        question.push_str("Proceed? [y/N] ");
        let answer = ask(state, question, crate::steps::approve::ask).await;
        return match answer {
            Some(true) => Ok(()),
            _ => Err("not confirmed; nothing was changed".to_string()),
        };
    }
    for app in &apps {
        question.push_str(&format!(
            "They write Heroku app `{app}`. To proceed, type the app's name: "
        ));
        let typed = ask(state, question, crate::steps::approve::ask_line).await;
        match typed {
            Some(typed) if typed.trim() == app => {}
            Some(typed) if !typed.trim().is_empty() => {
                return Err(format!(
                    "`{}` is not `{app}`; not confirmed; nothing was changed",
                    typed.trim()
                ));
            }
            _ => return Err("not confirmed; nothing was changed".to_string()),
        }
        question = String::new();
    }
    Ok(())
}

/// Asks `question` on the terminal, with the bars held.
async fn ask<T: Send + 'static>(
    state: &RunState,
    question: String,
    read: fn(&str) -> Option<T>,
) -> Option<T> {
    let progress = state.progress.clone();
    tokio::task::spawn_blocking(move || progress.suspend(|| read(&question)))
        .await
        .ok()
        .flatten()
}

/// The Heroku apps the steps write (a `heroku://` target they write).
fn heroku_apps_written(steps: &[&Step], targets: &BTreeMap<String, Target>) -> Vec<String> {
    let mut apps: Vec<String> = steps
        .iter()
        .flat_map(|s| s.params.target_uses())
        .filter(|u| u.write)
        .filter_map(|u| targets.get(&u.name).map(|t| (t, u.facet)))
        .flat_map(|(t, facet)| {
            t.heroku
                .iter()
                .filter(move |h| h.facet == facet)
                .map(|h| h.app.clone())
        })
        .collect();
    apps.sort();
    apps.dedup();
    apps
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reuses what an earlier attempt did, where it still holds: a step that
/// succeeded, whose work the end of that run did not (set out to) undo,
/// whose work left for the end of the run is still in place, and all of
/// whose `needs` are reused too (a step that runs again invalidates what
/// was done after it). What reused steps left for the end of the run is
/// taken over, so this run confirms or undoes it.
async fn reuse_succeeded(state: &mut RunState, workflow: &Workflow, record: &RunRecord) {
    let succeeded = record.succeeded();
    let targets = state.targets();
    let mut reused: BTreeSet<&str> = BTreeSet::new();
    let mut gone: BTreeSet<&str> = BTreeSet::new();
    // Steps are reused in dependency order; repeat until nothing changes.
    loop {
        let mut changed = false;
        for step in &workflow.steps {
            if reused.contains(step.id.as_str())
                || gone.contains(step.id.as_str())
                || record.undone.contains(&step.id)
            {
                continue;
            }
            let Some(earlier) = succeeded.get(&step.id) else {
                continue;
            };
            if earlier.kind != step.kind()
                || step.params.hands_off()
                || !step.needs.iter().all(|n| reused.contains(n.as_str()))
            {
                continue;
            }
            let left = record.after_run.get(&step.id).cloned().unwrap_or_default();
            let mut in_place = true;
            for after in &left {
                // Confirming may have dropped what it checks; it is redone as is.
                if !record.confirming.contains(&step.id) && !after.still_in_place(&targets).await {
                    in_place = false;
                }
            }
            if !in_place {
                gone.insert(step.id.as_str());
                state.announce(&format!(
                    "{}: what it did is no longer in place; running it again",
                    step.id
                ));
                continue;
            }
            state.reuse_step(earlier, earlier.outputs.clone());
            for after in left {
                state.after_run.push((step.id.clone(), after));
            }
            reused.insert(step.id.as_str());
            changed = true;
        }
        if !changed {
            break;
        }
    }
}

fn first_error(report: &Report) -> String {
    report
        .steps
        .iter()
        .find_map(|s| s.error.clone())
        .unwrap_or_else(|| "a step refused to continue".into())
}

fn initial_report(workflow: &Workflow, run_id: &str, dry_run: bool) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.to_string(),
        workflow: workflow.name.clone(),
        description: workflow.description.clone(),
        dry_run,
        status: if dry_run {
            RunStatus::Planned
        } else {
            RunStatus::Succeeded
        },
        started: Utc::now(),
        finished: None,
        duration_ms: None,
        steps: workflow
            .all_steps()
            .map(|step| StepReport::pending(&step.id, step.kind(), &step.needs, step.on_failure))
            .collect(),
    }
}

/// What the lock is keyed on for a written target: its name and endpoints.
fn target_identity(workflow: &Workflow, name: &str) -> String {
    let target = &workflow.targets[name];
    format!(
        "{name}|{}|{}|{}",
        target.postgres.as_deref().unwrap_or(""),
        target.media.as_deref().unwrap_or(""),
        target.git.as_deref().unwrap_or("")
    )
}

fn finish(
    mut state: RunState,
    run_dir: &Path,
    began: Instant,
    exit: Exit,
) -> Result<RunOutcome, EngineError> {
    let status = match (&exit, state.report.dry_run) {
        (Exit::Success, true) => RunStatus::Planned,
        (Exit::Success, false) => RunStatus::Succeeded,
        (Exit::StepFailed, _) => RunStatus::Failed,
        (Exit::Refused(_), _) => RunStatus::Refused,
        (Exit::Cancelled(_), _) => RunStatus::Cancelled,
    };
    state.report.status = status;
    state.report.finished = Some(Utc::now());
    state.report.duration_ms = Some(began.elapsed().as_millis() as u64);
    state.journal(Entry::RunFinished {
        time: Utc::now(),
        status,
    });
    if let Some(err) = state.journal_error.take() {
        return Err(err.into());
    }
    write_reports(&state.report, run_dir)?;
    Ok(RunOutcome {
        report: state.report,
        run_dir: run_dir.to_path_buf(),
        exit,
    })
}

/// Writes `report.md` and `report.json` into `dir`.
pub fn write_reports(report: &Report, dir: &Path) -> Result<(), EngineError> {
    let files: BTreeMap<&str, String> = BTreeMap::from([
        ("report.md", crate::report::markdown(report)),
        ("report.json", crate::report::json(report)),
    ]);
    std::fs::create_dir_all(dir).map_err(|source| EngineError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|source| EngineError::Write { path, source })?;
    }
    Ok(())
}
