//! The command line, the top layer: argument parsing (clap), one module per
//! subcommand, and the single mapping from outcomes to exit codes:
//! `0` success, `1` a step failed, `2` invalid input, `3` refused for safety,
//! `130` interrupted.

mod backups;
mod github;
mod list;
mod run;
mod scan;
mod validate;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const EXIT_OK: i32 = 0;
pub const EXIT_STEP_FAILED: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
pub const EXIT_REFUSED: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;

/// Threads for blocking work: as many as a media sync's default copies in
/// flight (file I/O waits its turn beyond that, briefly).
const BLOCKING_THREADS: usize = 32;

#[derive(Debug, Parser)]
#[command(
    name = "flightpath",
    version,
    about = "Reset a staging environment from production, with personal data scrubbed while it streams.",
    long_about = "Reset a staging environment from production, with personal data scrubbed while it streams.\n\n\
        A workflow is a YAML file of steps (workflows/<name>.yaml). `plan` shows what a run would do \
        without changing anything; `run` does it; `resume` continues a failed run.\n\n\
        Exit codes: 0 success, 1 a step failed, 2 invalid input, 3 refused for safety, 130 interrupted.\n\n\
        Environment: FLIGHTPATH_SECRET keys the anonymizer's fakes; HEROKU_API_KEY reads the config vars \
        of `heroku://APP` targets; GITHUB_ACTIONS=true turns on GitHub Actions mode (masks, groups, \
        annotations, job summary, step outputs). Docs: docs/ in the repository.",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow: plan every step, confirm, then execute the step graph.
    Run(RunArgs),
    /// Show what a run would do, touching nothing (same as `run --dry-run`).
    Plan(PlanArgs),
    /// Check a workflow offline: YAML, keys, step graph, variables. Connects to nothing.
    Validate(ValidateArgs),
    /// Continue a failed run from its first step that did not succeed.
    Resume(ResumeArgs),
    /// List the workflows under ./workflows.
    List,
    /// Show how the anonymizer covers a live database: every column ruled, kept, safe by type, or uncovered with its evidence.
    #[command(long_about = "Show how the anonymizer covers a live database.\n\n\
        Every column of every table is listed as ruled, kept, safe by type (integers, booleans, numbers, \
        timestamps, uuids) or UNCOVERED, with the evidence: a name that suggests personal data, or how many \
        of the values read look like e-mails, phone numbers, IPs, card numbers or IBANs \
        (the values themselves are never printed). Tables of up to 100,000 rows are read whole, larger \
        ones by a repeatable sample of pages from all over the table; `--full` reads every row. \
        Each table says how many of its rows were read. Connects read-only.\n\n\
        Without --anonymize, the shipped presets whose tables exist are named with what they would \
        cover, and --write extends them.\n\n\
        Exit code 0 when every column is covered, 1 when some are not (or a rule does not fit the database).")]
    Scan(ScanArgs),
    /// The backups in a store: list them, verify one, restore one in place of a database.
    #[command(subcommand)]
    Backups(backups::BackupsCommand),
}

#[derive(Debug, Args)]
struct ScanArgs {
    /// The database to scan, as a postgres:// URL (only read).
    #[arg(long, value_name = "URL")]
    source: String,
    /// Rules files (or preset:<name>) whose coverage to check; repeat for several.
    #[arg(long, value_name = "FILE")]
    anonymize: Vec<String>,
    /// Write a starter rules file with a suggested rule for every uncovered column (extending the presets that apply).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Read every row of every table for evidence, not a sample (values are counted, never kept).
    #[arg(long)]
    full: bool,
}

#[derive(Debug, Args)]
struct WorkflowArgs {
    /// A workflow file, or a name resolved as workflows/<name>.yaml (or .yml).
    workflow: String,
    /// Set a variable for ${NAME} in the workflow (takes precedence over the environment).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
}

#[derive(Debug, Args)]
struct OutputArgs {
    /// Also write report.md and report.json into this directory (they always go to .flightpath/runs/<id>/).
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Print only the JSON report on stdout; logs and progress go to stderr.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// Approve every confirmation and `approve` step without asking, typing a Heroku app's name included (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Let `media.sync` delete more objects than its `max_delete` allows (by default 1,000 or
    /// 10 % of the target, whichever is larger).
    #[arg(long)]
    yes_delete_many: bool,
    /// How many steps may run at the same time (a clone's own workers are its
    /// `jobs:` and `index_jobs:`).
    #[arg(
        long = "parallel-steps",
        alias = "jobs",
        default_value_t = 4,
        value_name = "N",
        value_parser = parse_jobs
    )]
    jobs: usize,
    /// After Ctrl-C, how long running steps get to stop before they are abandoned (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    grace: std::time::Duration,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    workflow: WorkflowArgs,
    /// Plan every step against the real systems, read-only, and report what would happen.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    workflow: WorkflowArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    #[command(flatten)]
    workflow: WorkflowArgs,
}

#[derive(Debug, Args)]
struct ResumeArgs {
    /// The run id, as printed by `run` (the folder name under .flightpath/runs/).
    run_id: String,
    /// Set a variable again (`--var` values are not stored with the run).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    output: OutputArgs,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least one step must be able to run: use 1 or more".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::syntax::reader::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration (try 30s, 2m)"))
}

/// Runs the command line `args` (including the program name) and returns the
/// process exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                EXIT_INVALID
            } else {
                EXIT_OK
            };
            let _ = err.print();
            return code;
        }
    };
    init_tracing();
    // Blocking work (file I/O, libgit2, waiting on a child) is bounded by
    // the steps' own concurrency; tokio's default of 512 threads only
    // spreads allocations over more arenas and stacks.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_STEP_FAILED;
        }
    };
    let workdir = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: cannot read the current directory: {e}");
            return EXIT_INVALID;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(&workdir, args).await,
            Command::Plan(args) => run::plan(&workdir, args).await,
            Command::Resume(args) => run::resume(&workdir, args).await,
            Command::Validate(args) => validate::validate(&workdir, &args),
            Command::List => list::list(&workdir),
            Command::Scan(args) => scan::scan(&workdir, args).await,
            Command::Backups(command) => backups::backups(command).await,
        }
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLIGHTPATH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_color_on_stderr())
        .try_init();
}

/// Colour on stdout: a terminal, and `NO_COLOR` unset.
pub fn use_color_on_stdout() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

pub fn use_color_on_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// Prints workflow problems to stderr with their located snippets; under
/// GitHub Actions, also one annotation each (on stderr under `--json`).
fn print_load_error(err: &crate::workflow::LoadError, json: bool) {
    use crate::workflow::LoadError;
    match err {
        LoadError::Invalid { problems, path: _ } => {
            let rendered = crate::syntax::diagnostics::render(problems, use_color_on_stderr());
            eprint!("{rendered}");
            eprintln!(
                "error: {} problem{} found; nothing was run",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
        }
        other => eprintln!("error: {}", crate::redact::mask_secrets(&other.to_string())),
    }
    if let Some(actions) = github::detect(json) {
        actions.load_error(err);
    }
}

/// A path as shown in messages: relative to the working directory when inside it.
fn shown(workdir: &std::path::Path, path: &std::path::Path) -> String {
    path.strip_prefix(workdir)
        .unwrap_or(path)
        .display()
        .to_string()
}
