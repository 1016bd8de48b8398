//! `backups list | verify | restore`: the backups in a store, outside any
//! workflow. `list` prints a table (or `--json`), newest first; an empty
//! store says so and is not an error. `verify` streams a dump, checks its
//! sha256 and that `pg_restore --list` reads it. `restore` asks first (or
//! `--yes`; refused with exit 3 when nobody can be asked), then restores
//! atomically like the `postgres.restore` step, and drops the database it
//! replaced once the swap is done.
//!
//! Exit codes: a missing name or an empty store for verify/restore is
//! invalid input (2); a corrupted or unreadable dump, or a failed restore,
//! is 1.

use std::io::IsTerminal;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::backup::{self, Manifest, Which, restore::RestoreSpec};
use crate::progress::Progress;
use crate::redact::mask_secrets;
use crate::storage::Store;

use super::{EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_REFUSED, EXIT_STEP_FAILED};

#[derive(Debug, Subcommand)]
pub(super) enum BackupsCommand {
    /// The backups in a store, newest first: name, time, size, database, workflow.
    List(ListArgs),
    /// Stream a backup's dump: check its sha256 against the manifest and that pg_restore reads it.
    Verify(VerifyArgs),
    /// Restore a backup in place of a database: into a new one, checked, then swapped in.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub(super) struct StoreArgs {
    /// The store: a directory, file:///dir, or s3://bucket/prefix?endpoint=…&region=…&path_style=true.
    #[arg(long, value_name = "URL")]
    store: String,
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only this workflow's backups.
    #[arg(long, value_name = "NAME")]
    workflow: Option<String>,
    /// Print the manifests as a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// The backup: its name (as `list` shows it), `latest`, or its dump's key or path.
    name: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
pub(super) struct RestoreArgs {
    /// The backup: its name (as `list` shows it), `latest`, or its dump's key or path.
    name: String,
    #[command(flatten)]
    store: StoreArgs,
    /// The database to replace, as a postgres:// URL (it must exist).
    #[arg(long, value_name = "POSTGRES_URL")]
    to: String,
    /// Do not ask (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

pub(super) async fn backups(command: BackupsCommand) -> i32 {
    match command {
        BackupsCommand::List(args) => list(args).await,
        BackupsCommand::Verify(args) => verify(args).await,
        BackupsCommand::Restore(args) => restore(args).await,
    }
}

async fn open(location: &str) -> Result<Store, i32> {
    Store::open(location).await.map_err(|e| {
        eprintln!("error: {}", mask_secrets(&e.to_string()));
        EXIT_INVALID
    })
}

/// Prints a backup layer error and returns its exit code.
fn fail(err: &backup::Error) -> i32 {
    eprintln!("error: {}", mask_secrets(&err.to_string()));
    match err {
        backup::Error::NotFound { .. } | backup::Error::NoBackups { .. } => EXIT_INVALID,
        e if e.is_cancelled() => EXIT_INTERRUPTED,
        backup::Error::Unscrubbed { .. } => EXIT_REFUSED,
        _ => EXIT_STEP_FAILED,
    }
}

async fn list(args: ListArgs) -> i32 {
    let store = match open(&args.store.store).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let found = match backup::catalog::list(&store, args.workflow.as_deref()).await {
        Ok(found) => found,
        Err(e) => return fail(&e),
    };
    if args.json {
        let json = serde_json::to_string_pretty(&found).expect("manifests serialize");
        println!("{json}");
        return EXIT_OK;
    }
    if found.is_empty() {
        match &args.workflow {
            Some(w) => println!("no backups of workflow `{w}` in {}", store.location()),
            None => println!("no backups in {}", store.location()),
        }
        return EXIT_OK;
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.created.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                human_bytes(m.bytes),
                m.source.url.clone(),
                m.workflow.clone(),
            ]
        })
        .collect();
    for line in table(&["name", "time", "size", "database", "workflow"], &rows) {
        println!("{line}");
    }
    EXIT_OK
}

async fn find(store: &Store, name: &str) -> Result<Manifest, i32> {
    backup::catalog::find(store, &Which::parse(name, None))
        .await
        .map_err(|e| fail(&e))
}

async fn verify(args: VerifyArgs) -> i32 {
    let store = match open(&args.store.store).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let manifest = match find(&store, &args.name).await {
        Ok(m) => m,
        Err(code) => return code,
    };
    let cancel = interrupt();
    match backup::restore::verify(&store, &manifest, &cancel).await {
        Ok(verified) => {
            println!(
                "backup `{}` is sound: {} bytes, sha256 {} as its manifest records; pg_restore reads its {} entries ({} of table data)",
                manifest.name,
                verified.bytes,
                verified.sha256,
                verified.entries,
                verified.table_data
            );
            EXIT_OK
        }
        Err(e) => fail(&e),
    }
}

async fn restore(args: RestoreArgs) -> i32 {
    if let Err(problem) = crate::pg::connect::check_connection_string(&args.to) {
        eprintln!("error: --to: {problem}");
        return EXIT_INVALID;
    }
    let store = match open(&args.store.store).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let manifest = match find(&store, &args.name).await {
        Ok(m) => m,
        Err(code) => return code,
    };
    let run_id = crate::engine::new_run_id();
    let spec = RestoreSpec {
        target: "--to".into(),
        url: args.to.clone(),
        suffix: format!(
            "{}r",
            run_id
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase()
        ),
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
    };
    if let Err(e) = backup::restore::refuse_unscrubbed(&manifest) {
        return fail(&e);
    }
    let cancel = interrupt();
    // The lock a run takes on each database it writes: a restore must not
    // recover (drop, swap back) what a running reset has in flight.
    let holder = crate::engine::lock::holder_name(
        &run_id,
        &crate::engine::lock::host_name(),
        std::process::id(),
    );
    let _lock = match crate::engine::lock::acquire_server("--to", &args.to, &holder, &cancel).await
    {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {}", mask_secrets(&e.to_string()));
            return EXIT_REFUSED;
        }
    };
    let replaced = match backup::restore::replaced(&spec, &cancel).await {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let question = format!(
        "This replaces database `{}` ({}, PostgreSQL {}) on {} with backup `{}` (taken {}, {}, of {}).\nProceed? [y/N] ",
        replaced.database,
        human_bytes(replaced.size),
        replaced.server_version,
        mask_secrets(&crate::redact::mask_whole_url(&args.to)),
        manifest.name,
        manifest.created.format("%Y-%m-%d %H:%M:%S UTC"),
        human_bytes(manifest.bytes),
        manifest.source.url,
    );
    if !args.yes {
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            eprintln!(
                "error: restoring replaces database `{}` and nobody can confirm it here: stdin is not a terminal; pass --yes",
                replaced.database
            );
            return EXIT_REFUSED;
        }
        let answer = tokio::task::spawn_blocking(move || crate::steps::approve::ask(&question))
            .await
            .ok()
            .flatten();
        if answer != Some(true) {
            eprintln!("not confirmed; nothing was changed");
            return EXIT_REFUSED;
        }
    }
    let progress = Progress::detect(false);
    let restored =
        match backup::restore::restore(&store, &manifest, &spec, &progress, "restore", &cancel)
            .await
        {
            Ok(r) => r,
            Err(e) => return fail(&e),
        };
    let dropped =
        backup::restore::drop_replaced(&spec.target, &restored.maintenance_url, &restored.swapped)
            .await;
    println!(
        "restored backup `{}` ({}) into `{}`; {}",
        manifest.name,
        human_bytes(restored.bytes),
        restored.swapped.live,
        match &dropped {
            Ok(done) => done.clone(),
            Err(e) => format!(
                "the database it replaced is still there as `{}` (dropping it failed: {})",
                restored.swapped.aside,
                mask_secrets(&e.to_string())
            ),
        }
    );
    EXIT_OK
}

/// Cancelled on Ctrl-C.
fn interrupt() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            child.cancel();
        }
    });
    token
}

fn human_bytes(n: u64) -> String {
    crate::human::human_bytes(n as f64)
}

/// Header and rows, columns padded to their widest cell.
fn table(columns: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let header: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let all: Vec<&Vec<String>> = std::iter::once(&header).chain(rows).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            all.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    all.iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect()
}
