//! `run`, `plan` and `resume`: load the workflow, hand it to the engine, print
//! the report (terminal, or JSON with `--json`), copy it to `--report-dir`
//! and, under GitHub Actions, to the job summary (with masks, annotations
//! and outputs: see `super::github`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::{self, EngineError, Exit, RunOptions};
use crate::progress::Progress;
use crate::redact::Redactor;
use crate::report::model::{Report, RunStatus};
use crate::steps::Interaction;
use crate::syntax::template::Vars;
use crate::workflow;

use super::github::{self, Actions};
use super::{
    EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_REFUSED, EXIT_STEP_FAILED, ExecArgs, OutputArgs,
    PlanArgs, ResumeArgs, RunArgs, print_load_error,
};

pub async fn run(workdir: &Path, args: RunArgs) -> i32 {
    let request = Request {
        workflow: args.workflow.workflow,
        vars: args.workflow.vars,
        dry_run: args.dry_run,
        exec: args.exec,
        output: args.output,
        resume: None,
    };
    execute(workdir, request).await
}

pub async fn plan(workdir: &Path, args: PlanArgs) -> i32 {
    let request = Request {
        workflow: args.workflow.workflow,
        vars: args.workflow.vars,
        dry_run: true,
        exec: ExecArgs {
            yes: false,
            yes_delete_many: false,
            jobs: 1,
            grace: Duration::from_secs(5),
        },
        output: args.output,
        resume: None,
    };
    execute(workdir, request).await
}

pub async fn resume(workdir: &Path, args: ResumeArgs) -> i32 {
    let actions = github::detect(args.output.json);
    let run_dir = engine::run_dir(workdir, &args.run_id);
    if !run_dir.is_dir() {
        let message = format!(
            "no run `{}` here (looked in {}); run ids are the folder names under .flightpath/runs/",
            args.run_id,
            Path::new(engine::STATE_DIR).join("runs").display()
        );
        return invalid(actions.as_ref(), "nothing to resume", &message);
    }
    let record = match engine::journal::read(&run_dir) {
        Ok(record) => record,
        Err(e) => {
            let message = crate::redact::mask_secrets(&e.to_string());
            return invalid(actions.as_ref(), "journal not read", &message);
        }
    };
    if record.dry_run {
        let message = format!(
            "run `{}` was a dry run; there is nothing to resume",
            record.run_id
        );
        return invalid(actions.as_ref(), "nothing to resume", &message);
    }
    if record.status == Some(RunStatus::Succeeded) {
        eprintln!(
            "run `{}` already succeeded; nothing to resume",
            record.run_id
        );
        // A job that resumes whatever the last run left still gets the
        // run's outputs, from the report it wrote.
        if let Some(actions) = &actions {
            let report = std::fs::read(run_dir.join("report.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Report>(&bytes).ok());
            let report_path = Path::new(engine::STATE_DIR)
                .join("runs")
                .join(&record.run_id)
                .join("report.md");
            match report {
                Some(report) => actions.run_outputs(
                    &report,
                    &report_path.display().to_string(),
                    &Redactor::new(Vec::new()),
                ),
                None => actions.status_output(github_status(Some(RunStatus::Succeeded))),
            }
        }
        return EXIT_OK;
    }
    let missing: Vec<&String> = record
        .vars
        .iter()
        .filter(|name| !args.vars.iter().any(|(n, _)| n == *name))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "note: the original run was given --var {}; values are not stored, so give them again if the workflow needs them",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", --var ")
        );
    }
    let request = Request {
        workflow: record.path.clone(),
        vars: args.vars,
        dry_run: false,
        exec: args.exec,
        output: args.output,
        resume: Some(record),
    };
    execute(workdir, request).await
}

/// Reports invalid input: on stderr, and under GitHub Actions as an
/// annotation and `status=invalid`. Returns the exit code.
fn invalid(actions: Option<&Actions>, title: &str, message: &str) -> i32 {
    eprintln!("error: {message}");
    if let Some(actions) = actions {
        actions.error(title, message);
        actions.status_output(github_status(None));
    }
    EXIT_INVALID
}

fn github_status(status: Option<RunStatus>) -> &'static str {
    crate::report::github::status_word(status)
}

struct Request {
    workflow: String,
    vars: Vec<(String, String)>,
    dry_run: bool,
    exec: ExecArgs,
    output: OutputArgs,
    resume: Option<engine::journal::RunRecord>,
}

async fn execute(workdir: &Path, request: Request) -> i32 {
    let json = request.output.json;
    let actions = github::detect(json);
    let not_loaded = |err: &workflow::LoadError| {
        print_load_error(err, json);
        if let Some(actions) = &actions {
            actions.status_output(github_status(None));
        }
        EXIT_INVALID
    };
    let path = match workflow::resolve(workdir, &request.workflow) {
        Ok(path) => path,
        Err(err) => return not_loaded(&err),
    };
    let var_names: Vec<String> = request.vars.iter().map(|(n, _)| n.clone()).collect();
    let vars = Vars::from_env(request.vars.into_iter().collect::<BTreeMap<_, _>>());
    let mut workflow = match workflow::load(&path, &super::shown(workdir, &path), &vars) {
        Ok(w) => w,
        Err(err) => return not_loaded(&err),
    };
    // `heroku://APP` endpoints become the app's values; the API key and
    // every value join `workflow.secrets` (also when this fails).
    let resolved = workflow::heroku::resolve(&mut workflow, &crate::heroku::Api::from_env()).await;

    // Masks first: under GitHub Actions every secret the redactor knows is
    // masked in the log before anything else of the run is printed.
    // Refusals and pre-run checks may name a target by its URL.
    let redactor = engine::redactor_for(&workflow);
    if let Some(actions) = &actions {
        actions.add_masks(&redactor);
    }
    if let Err(err) = resolved {
        return not_loaded(&err);
    }
    if let Some(record) = &request.resume
        && record.workflow != workflow.name
    {
        let message = format!(
            "run `{}` was of workflow `{}`, but {} is now workflow `{}`",
            record.run_id, record.workflow, request.workflow, workflow.name
        );
        return invalid(actions.as_ref(), "another workflow", &message);
    }

    let interrupt = CancellationToken::new();
    let (watcher, signalled) = watch_signals(interrupt.clone());
    let progress = Progress::detect(json);
    let options = RunOptions {
        dry_run: request.dry_run,
        interaction: Interaction {
            assume_yes: request.exec.yes,
            allow_many_deletes: request.exec.yes_delete_many,
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        },
        jobs: request.exec.jobs,
        grace: request.exec.grace,
        workdir: workdir.to_path_buf(),
        shown_path: request.workflow.clone(),
        var_names,
        resume: request.resume,
        progress: progress.clone(),
        interrupt,
    };
    let outcome = engine::run(&workflow, options).await;
    // Closes the last step's group and writes what waited.
    progress.finish();
    watcher.abort();
    let stopped = |prefix: &str, message: String, status: RunStatus, code: i32| {
        let message = redactor.redact(&message);
        eprintln!("error: {prefix}{message}");
        if let Some(actions) = &actions {
            let title = format!("run {}", github_status(Some(status)));
            actions.error(&title, &message);
            actions.status_output(github_status(Some(status)));
        }
        code
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(EngineError::Lock(e)) => {
            return stopped("refused: ", e.to_string(), RunStatus::Refused, EXIT_REFUSED);
        }
        Err(EngineError::Refused(reason)) => {
            return stopped("refused: ", reason, RunStatus::Refused, EXIT_REFUSED);
        }
        Err(e) => return stopped("", e.to_string(), RunStatus::Failed, EXIT_STEP_FAILED),
    };
    let report_path = outcome
        .run_dir
        .strip_prefix(workdir)
        .unwrap_or(&outcome.run_dir)
        .join("report.md")
        .display()
        .to_string();
    print_report(&outcome.report, json);
    if let Some(actions) = &actions {
        actions.annotate(&outcome.report);
    }
    let copied = copy_report(&outcome.report, &request.output, &report_path);
    if let Some(actions) = &actions {
        actions.run_outputs(&outcome.report, &report_path, &redactor);
    }
    if let Err(code) = copied {
        return code;
    }
    eprintln!("report: {report_path}");
    let code = exit_code(
        &outcome.report,
        &outcome.exit,
        signalled.load(Ordering::SeqCst),
        &redactor,
    );
    if let Some(actions) = &actions {
        annotate_exit(actions, &outcome.report, &outcome.exit, &redactor);
    }
    code
}

/// An annotation for how the whole run ended, when no failed step's own
/// annotation says it already: a refusal before any step failed (nobody
/// to confirm, not confirmed), or a cancellation.
fn annotate_exit(actions: &Actions, report: &Report, exit: &Exit, redactor: &Redactor) {
    let step_failed = report
        .steps
        .iter()
        .any(|s| s.status == crate::report::model::StepStatus::Failed);
    match exit {
        Exit::Refused(reason) if !step_failed => {
            actions.error("run refused", &redactor.redact(reason));
        }
        Exit::Cancelled(abandoned) => {
            let message = if abandoned.is_empty() {
                "interrupted".to_string()
            } else {
                format!(
                    "interrupted; still running when the grace period ended: {}",
                    abandoned.join(", ")
                )
            };
            actions.error("run cancelled", &message);
        }
        _ => {}
    }
}

fn exit_code(report: &Report, exit: &Exit, signal: i32, redactor: &Redactor) -> i32 {
    match exit {
        Exit::Success => EXIT_OK,
        Exit::StepFailed => {
            if !report.dry_run
                && report
                    .steps
                    .iter()
                    .any(|s| s.status == crate::report::model::StepStatus::Failed)
            {
                eprintln!(
                    "error: run failed; after fixing the cause, continue it with `flightpath resume {}`",
                    report.run_id
                );
            }
            EXIT_STEP_FAILED
        }
        Exit::Refused(reason) => {
            eprintln!("error: refused: {}", redactor.redact(reason));
            EXIT_REFUSED
        }
        Exit::Cancelled(abandoned) => {
            if abandoned.is_empty() {
                eprintln!("interrupted");
            } else {
                eprintln!(
                    "interrupted; still running when the grace period ended: {}",
                    abandoned.join(", ")
                );
            }
            cancelled_code(signal)
        }
    }
}

fn print_report(report: &Report, json: bool) {
    let text = if json {
        crate::report::json(report)
    } else {
        crate::report::terminal(report, super::use_color_on_stdout())
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error.
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// `--report-dir`, and `$GITHUB_STEP_SUMMARY` under GitHub Actions (cut to
/// fit GitHub's limit; `report_path` is where the whole report is).
fn copy_report(report: &Report, output: &OutputArgs, report_path: &str) -> Result<(), i32> {
    if let Some(dir) = &output.report_dir
        && let Err(e) = engine::write_reports(report, dir)
    {
        eprintln!("error: {e}");
        return Err(EXIT_STEP_FAILED);
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let appended = github::append_summary(Path::new(&summary), report, report_path);
        if let Err(e) = appended {
            eprintln!("warning: cannot append to GITHUB_STEP_SUMMARY: {e}");
        }
    }
    Ok(())
}

/// The signal that cancelled the run, as its number (0 while none did).
type Signalled = Arc<AtomicI32>;

/// The exit code of a run cancelled by `signal`: 128 + its number, as a
/// shell reports it (130 for SIGINT, 143 for SIGTERM).
fn cancelled_code(signal: i32) -> i32 {
    if signal == 0 {
        EXIT_INTERRUPTED
    } else {
        128 + signal
    }
}

/// The first SIGINT (Ctrl-C) or SIGTERM (CI cancellation, `timeout`, `kill`)
/// cancels the run: steps get the grace period, what they left is undone
/// and the report is written. A second one of either exits at once.
fn watch_signals(interrupt: CancellationToken) -> (tokio::task::JoinHandle<()>, Signalled) {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered here, before any step starts: a signal that arrives before
    // the task first runs must not fall through to the default handler
    // (which, for SIGTERM, kills the process with nothing cleaned up).
    let interrupts = signal(SignalKind::interrupt());
    let terminates = signal(SignalKind::terminate());
    let signalled: Signalled = Arc::new(AtomicI32::new(0));
    let seen = signalled.clone();
    let task = tokio::spawn(async move {
        let (Ok(mut interrupts), Ok(mut terminates)) = (interrupts, terminates) else {
            return;
        };
        let Some(first) = next_signal(&mut interrupts, &mut terminates).await else {
            return;
        };
        seen.store(first, Ordering::SeqCst);
        if first == SignalKind::terminate().as_raw_value() {
            eprintln!("terminated (SIGTERM): cancelling the run, as for Ctrl-C");
        }
        interrupt.cancel();
        if let Some(second) = next_signal(&mut interrupts, &mut terminates).await {
            eprintln!("signalled twice: exiting now");
            std::process::exit(cancelled_code(second));
        }
    });
    (task, signalled)
}

/// The number of the next SIGINT or SIGTERM; `None` when neither can come.
async fn next_signal(
    interrupts: &mut tokio::signal::unix::Signal,
    terminates: &mut tokio::signal::unix::Signal,
) -> Option<i32> {
    use tokio::signal::unix::SignalKind;
    tokio::select! {
        got = interrupts.recv() => got.map(|()| SignalKind::interrupt().as_raw_value()),
        got = terminates.recv() => got.map(|()| SignalKind::terminate().as_raw_value()),
    }
}
