//! `run`, `plan` and `resume`: load the workflow, hand it to the engine, print
//! the report (terminal, or JSON with `--json`), copy it to `--report-dir`
//! and, under GitHub Actions, to the job summary.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::{self, EngineError, Exit, RunOptions};
use crate::progress::Progress;
use crate::report::model::{Report, RunStatus};
use crate::steps::Interaction;
use crate::syntax::template::Vars;
use crate::workflow;

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
    let run_dir = engine::run_dir(workdir, &args.run_id);
    if !run_dir.is_dir() {
        eprintln!(
            "error: no run `{}` here (looked in {}); run ids are the folder names under .flightpath/runs/",
            args.run_id,
            Path::new(engine::STATE_DIR).join("runs").display()
        );
        return EXIT_INVALID;
    }
    let record = match engine::journal::read(&run_dir) {
        Ok(record) => record,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    if record.dry_run {
        eprintln!(
            "error: run `{}` was a dry run; there is nothing to resume",
            record.run_id
        );
        return EXIT_INVALID;
    }
    if record.status == Some(RunStatus::Succeeded) {
        eprintln!(
            "run `{}` already succeeded; nothing to resume",
            record.run_id
        );
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

struct Request {
    workflow: String,
    vars: Vec<(String, String)>,
    dry_run: bool,
    exec: ExecArgs,
    output: OutputArgs,
    resume: Option<engine::journal::RunRecord>,
}

async fn execute(workdir: &Path, request: Request) -> i32 {
    let path = match workflow::resolve(workdir, &request.workflow) {
        Ok(path) => path,
        Err(err) => {
            print_load_error(&err);
            return EXIT_INVALID;
        }
    };
    let var_names: Vec<String> = request.vars.iter().map(|(n, _)| n.clone()).collect();
    let vars = Vars::from_env(request.vars.into_iter().collect::<BTreeMap<_, _>>());
    let workflow = match workflow::load(&path, &super::shown(workdir, &path), &vars) {
        Ok(w) => w,
        Err(err) => {
            print_load_error(&err);
            return EXIT_INVALID;
        }
    };
    if let Some(record) = &request.resume
        && record.workflow != workflow.name
    {
        eprintln!(
            "error: run `{}` was of workflow `{}`, but {} is now workflow `{}`",
            record.run_id, record.workflow, request.workflow, workflow.name
        );
        return EXIT_INVALID;
    }

    let interrupt = CancellationToken::new();
    let (watcher, signalled) = watch_signals(interrupt.clone());
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
        progress: Progress::detect(request.output.json),
        interrupt,
    };
    let outcome = engine::run(&workflow, options).await;
    watcher.abort();
    // Refusals and pre-run checks may name a target by its URL.
    let redactor = engine::redactor_for(&workflow);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(EngineError::Lock(e)) => {
            eprintln!("error: refused: {}", redactor.redact(&e.to_string()));
            return EXIT_REFUSED;
        }
        Err(EngineError::Refused(reason)) => {
            eprintln!("error: refused: {}", redactor.redact(&reason));
            return EXIT_REFUSED;
        }
        Err(e) => {
            eprintln!("error: {}", redactor.redact(&e.to_string()));
            return EXIT_STEP_FAILED;
        }
    };
    print_report(&outcome.report, request.output.json);
    if let Err(code) = copy_report(&outcome.report, &request.output) {
        return code;
    }
    let report_path = outcome
        .run_dir
        .strip_prefix(workdir)
        .unwrap_or(&outcome.run_dir)
        .join("report.md");
    write_github_outputs(&outcome.report, &report_path);
    eprintln!("report: {}", report_path.display());
    exit_code(
        &outcome.report,
        &outcome.exit,
        signalled.load(Ordering::SeqCst),
    )
}

fn exit_code(report: &Report, exit: &Exit, signal: i32) -> i32 {
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
            eprintln!("error: refused: {reason}");
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

/// `--report-dir`, and `$GITHUB_STEP_SUMMARY` under GitHub Actions.
fn copy_report(report: &Report, output: &OutputArgs) -> Result<(), i32> {
    if let Some(dir) = &output.report_dir
        && let Err(e) = engine::write_reports(report, dir)
    {
        eprintln!("error: {e}");
        return Err(EXIT_STEP_FAILED);
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&summary)
            .and_then(|mut f| f.write_all(crate::report::markdown(report).as_bytes()));
        if let Err(e) = appended {
            eprintln!("warning: cannot append to GITHUB_STEP_SUMMARY: {e}");
        }
    }
    Ok(())
}

/// `$GITHUB_OUTPUT` under GitHub Actions: the run's id, how it ended
/// (`planned`, `succeeded`, `failed`, `cancelled`, `refused`) and where its
/// report is, for later steps of the job (and the action's outputs).
fn write_github_outputs(report: &Report, report_path: &Path) {
    let Some(file) = std::env::var_os("GITHUB_OUTPUT") else {
        return;
    };
    let status = serde_json::to_value(report.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let outputs = [
        ("run-id", report.run_id.clone()),
        ("status", status),
        ("report-path", report_path.display().to_string()),
    ];
    let text: String = outputs
        .iter()
        .map(|(name, value)| github_output(name, value))
        .collect();
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&file)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = appended {
        eprintln!("warning: cannot append to GITHUB_OUTPUT: {e}");
    }
}

/// One output in GitHub's file format: `name=value`, or for a value with a
/// line break `name<<DELIMITER`, the value, `DELIMITER`, with a random
/// delimiter the value does not contain (so a value cannot end the block
/// early and set other outputs).
fn github_output(name: &str, value: &str) -> String {
    if !value.contains('\n') && !value.contains('\r') {
        return format!("{name}={value}\n");
    }
    let delimiter = loop {
        let candidate = format!("ghadelimiter_{:032x}", rand::random::<u128>());
        if !value.contains(&candidate) {
            break candidate;
        }
    };
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
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

#[cfg(test)]
mod tests {
    use super::github_output;

    #[test]
    fn a_single_line_output_is_name_equals_value() {
        assert_eq!(github_output("status", "failed"), "status=failed\n");
    }

    #[test]
    fn a_multi_line_output_is_fenced_by_a_random_delimiter_it_does_not_contain() {
        let value = "line one\nstatus=forged\nEOF";
        let text = github_output("message", value);
        let (head, rest) = text.split_once('\n').unwrap();
        let delimiter = head.strip_prefix("message<<").unwrap();
        assert!(delimiter.starts_with("ghadelimiter_") && delimiter.len() == 45);
        assert_eq!(rest, format!("{value}\n{delimiter}\n"));
        assert_ne!(
            text,
            github_output("message", value),
            "the delimiter is not random"
        );
    }
}
