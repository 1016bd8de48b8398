//! Restoring a backup, atomically, and verifying one.
//!
//! Restore: what interrupted runs left on the server is cleaned up first
//! ([`swap::recover`], as the clone does); then a new database is created
//! with the encoding and locale of the one it replaces, `pg_restore` loads
//! it — reading the dump file itself with `-j` when the store is a
//! directory, else fed from the store's stream through its stdin — while
//! the dump's sha256 is computed from the same bytes. Only when both the
//! restore and the check passed is the new database swapped in (one
//! transaction, [`swap::swap`]); the one it replaced stays aside until the
//! caller confirms (drops it) or undoes the swap. Any failure, or a
//! cancel, before the swap drops the new database: the target is as it
//! was.
//!
//! Verify: the dump's bytes are streamed once, hashed, and fed to
//! `pg_restore --list` (which reads the table of contents and stops; the
//! rest is hashed only).

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::manifest::Manifest;
use super::process::{Failure, Restore, RestoreMode, pg_restore_beside};
use super::{Error, Result};
use crate::pg::connect::connect;
use crate::pg::schema::find_pg_dump;
use crate::pg::swap::{self, SwapError, Swapped};
use crate::pg::url;
use crate::pg::wait::{self, Holder};
use crate::progress::{Progress, Unit};
use crate::storage::Store;

/// Where to restore.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    pub target: String,
    pub url: String,
    /// Names the new and the old database (`…_fp_new_<suffix>`,
    /// `…_fp_old_<suffix>`), so interrupted runs are recognised.
    pub suffix: String,
    /// pg_restore jobs when it reads a file.
    pub jobs: usize,
}

/// A restore done and swapped in, not yet confirmed.
#[derive(Debug, Clone)]
pub struct Restored {
    pub swapped: Swapped,
    /// The maintenance database that worked (`postgres`, else `template1`).
    pub maintenance_url: String,
    /// What was cleaned up after interrupted runs first.
    pub recovered: Vec<String>,
    pub bytes: u64,
    /// `Some(jobs)` when pg_restore read the file itself.
    pub parallel: Option<usize>,
    pub same_locale: bool,
    pub duration: Duration,
}

/// A backup checked whole.
#[derive(Debug, Clone)]
pub struct Verified {
    pub bytes: u64,
    pub sha256: String,
    /// Entries of the dump's table of contents, and of them table data.
    pub entries: usize,
    pub table_data: usize,
}

/// What a restore would replace (for the plan).
#[derive(Debug, Clone)]
pub struct Replaced {
    pub database: String,
    pub size: u64,
    pub server_version: String,
}

/// Reads what a restore into `spec` would replace; an absent database is
/// an error (a restore replaces one).
pub async fn replaced(spec: &RestoreSpec, cancel: &CancellationToken) -> Result<Replaced> {
    let database = url::database_of(&spec.url).ok_or_else(|| Error::NoDatabaseInUrl {
        target: spec.target.clone(),
    })?;
    let (maintenance, _) = maintenance(spec, cancel).await?;
    let row = maintenance
        .query_opt(
            "SELECT pg_database_size(datname), current_setting('server_version') \
             FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(crate::pg::connect::sql_error(
            &spec.target,
            "reading the database to replace",
        ))?;
    let Some(row) = row else {
        return Err(Error::NoSuchDatabase {
            target: spec.target.clone(),
            database,
        });
    };
    Ok(Replaced {
        database,
        size: row.get::<_, i64>(0).max(0) as u64,
        server_version: row.get(1),
    })
}

async fn maintenance(spec: &RestoreSpec, cancel: &CancellationToken) -> Result<(Client, String)> {
    crate::pg::connect::maintenance(&spec.target, &spec.url, cancel)
        .await
        .map_err(|e| match e {
            crate::pg::Error::Cancelled => Error::Cancelled,
            reasons => Error::NoMaintenance {
                target: spec.target.clone(),
                reasons,
            },
        })
}

/// Restores `backup` from `store` in place of `spec`'s database; see the
/// module header.
/// Refuses a backup of a protected target (production): personal data
/// reaches staging only through the anonymizer, never through a restore.
pub fn refuse_unscrubbed(backup: &Manifest) -> Result<()> {
    match backup.source.protected {
        true => Err(Error::Unscrubbed {
            backup: backup.name.clone(),
            source_target: backup.source.target.clone().unwrap_or_default(),
        }),
        false => Ok(()),
    }
}

pub async fn restore(
    store: &Store,
    backup: &Manifest,
    spec: &RestoreSpec,
    progress: &Progress,
    step_id: &str,
    cancel: &CancellationToken,
) -> Result<Restored> {
    refuse_unscrubbed(backup)?;
    let began = Instant::now();
    let live = url::database_of(&spec.url).ok_or_else(|| Error::NoDatabaseInUrl {
        target: spec.target.clone(),
    })?;
    let on = |database: &str| {
        let target = spec.target.clone();
        let database = database.to_string();
        move |error: SwapError| Error::Database {
            target,
            database,
            error,
        }
    };
    let (maintenance, maintenance_url) = maintenance(spec, cancel).await?;
    let observer = connect(&spec.target, &maintenance_url, cancel).await.ok();
    let on_wait = |holders: &[Holder]| {
        progress.step_line(
            step_id,
            &format!(
                "{step_id}: the swap waits for a lock held by {}",
                wait::describe(holders)
            ),
        );
    };
    let recovered = swap::recover(&maintenance, observer.as_ref(), &live, &on_wait)
        .await
        .map_err(on(&live))?;
    if !swap::exists(&maintenance, &live).await.map_err(on(&live))? {
        return Err(Error::NoSuchDatabase {
            target: spec.target.clone(),
            database: live,
        });
    }
    let server_major: i32 = maintenance
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(crate::pg::connect::sql_error(
            &spec.target,
            "reading the server version",
        ))?
        .get(0);
    // A pg_restore as new as the server and as the pg_dump that wrote it.
    let tool = find_pg_dump((server_major as u32 / 10_000).max(backup.pg_dump_major)).map_err(
        |error| Error::Tool {
            target: spec.target.clone(),
            error,
        },
    )?;
    let pg_restore = pg_restore_beside(&tool);
    let locale = {
        let client = connect(&spec.target, &spec.url, cancel).await?;
        swap::locale_of_current(&client).await.map_err(on(&live))?
    };
    let new_db = swap::derived_name(&live, &format!("_fp_new_{}", spec.suffix));
    let aside = swap::derived_name(&live, &format!("_fp_old_{}", spec.suffix));
    let same_locale = swap::create_database(&maintenance, &new_db, &locale)
        .await
        .map_err(on(&new_db))?;
    let new_url = url::with_database(&spec.url, &new_db);
    let loading = load(
        store,
        backup,
        spec,
        &pg_restore,
        &new_url,
        progress,
        step_id,
    );
    let loaded = tokio::select! {
        loaded = loading => loaded,
        () = cancel.cancelled() => Err(Error::Cancelled),
    };
    let (bytes, parallel) = match loaded {
        Ok(done) => done,
        Err(e) => return Err(dropped(&maintenance, &new_db, e).await),
    };
    if cancel.is_cancelled() {
        return Err(dropped(&maintenance, &new_db, Error::Cancelled).await);
    }
    let swapped = match swap::swap(
        &maintenance,
        observer.as_ref(),
        &live,
        &new_db,
        &aside,
        &on_wait,
    )
    .await
    {
        Ok(swapped) => swapped,
        Err(e) => return Err(dropped(&maintenance, &new_db, on(&live)(e)).await),
    };
    Ok(Restored {
        swapped,
        maintenance_url,
        recovered,
        bytes,
        parallel,
        same_locale,
        duration: began.elapsed(),
    })
}

/// Loads the new database and checks the dump's sha256 on the way.
#[allow(clippy::too_many_arguments)]
async fn load(
    store: &Store,
    backup: &Manifest,
    spec: &RestoreSpec,
    pg_restore: &Path,
    new_url: &str,
    progress: &Progress,
    step_id: &str,
) -> Result<(u64, Option<usize>)> {
    let bar = progress.bar(step_id, "restoring", Some(backup.bytes), Unit::Bytes);
    let failed = |failure: Failure| Error::RestoreFailed {
        target: spec.target.clone(),
        name: backup.name.clone(),
        database: url::database_of(&spec.url).unwrap_or_default(),
        status: failure.status,
        stderr: failure.stderr,
    };
    let local = store.local_path(&backup.dump).filter(|path| path.is_file());
    let show = |n| bar.set_position(n);
    let (hashed, restored, parallel) = match local {
        // pg_restore reads the file itself, several tables at once; the
        // same bytes are hashed meanwhile.
        Some(path) if spec.jobs > 1 => {
            let restore = Restore::start(
                pg_restore,
                RestoreMode::File {
                    url: new_url,
                    path: &path,
                    jobs: spec.jobs,
                },
            )?;
            let reader = store.get(&backup.dump).await?;
            let (hashed, restored) = tokio::join!(hash(reader, None, &show), restore.wait());
            (hashed, restored, Some(spec.jobs))
        }
        _ => {
            let mut restore = Restore::start(pg_restore, RestoreMode::Stream { url: new_url })?;
            let reader = store.get(&backup.dump).await?;
            let stdin = restore.stdin.take();
            let hashed = hash(reader, stdin, &show).await;
            (hashed, restore.wait().await, None)
        }
    };
    bar.finish();
    let (sha256, bytes) = hashed.map_err(|e| store_read_error(store, backup, e))?;
    check(store, backup, &sha256, bytes)?;
    restored.map_err(failed)?;
    Ok((bytes, parallel))
}

fn store_read_error(store: &Store, backup: &Manifest, e: std::io::Error) -> Error {
    Error::Unreadable {
        name: backup.name.clone(),
        location: store.location(),
        status: format!("reading it from the store failed: {e}"),
        stderr: String::new(),
    }
}

fn check(store: &Store, backup: &Manifest, sha256: &str, bytes: u64) -> Result<()> {
    if sha256 == backup.sha256 && bytes == backup.bytes {
        return Ok(());
    }
    Err(Error::Corrupted {
        name: backup.name.clone(),
        location: store.location(),
        expected: backup.sha256.clone(),
        found: sha256.to_string(),
        expected_bytes: backup.bytes,
        found_bytes: bytes,
    })
}

/// Reads `reader` to its end, hashing every byte, and writes each chunk to
/// `sink` while it takes them (a sink that closes early — `pg_restore
/// --list`, or one that failed — is written no more; its own status tells).
async fn hash(
    mut reader: Box<dyn AsyncRead + Unpin + Send>,
    mut sink: Option<ChildStdin>,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        progress(total);
        if let Some(stdin) = sink.as_mut()
            && stdin.write_all(&buf[..n]).await.is_err()
        {
            sink = None;
        }
    }
    if let Some(mut stdin) = sink {
        let _ = stdin.shutdown().await;
    }
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), total))
}

/// Drops the half-restored `database` after `error`; a failure to drop it
/// is added to the error.
async fn dropped(maintenance: &Client, database: &str, error: Error) -> Error {
    match swap::drop_database(maintenance, database).await {
        Ok(()) => error,
        Err(cleanup) => Error::CleanupFailed {
            error: Box::new(error),
            database: database.to_string(),
            cleanup,
        },
    }
}

/// Streams the backup's dump once: its sha256 against the manifest, and
/// `pg_restore --list` must read it.
pub async fn verify(
    store: &Store,
    backup: &Manifest,
    cancel: &CancellationToken,
) -> Result<Verified> {
    let tool = find_pg_dump(backup.pg_dump_major).map_err(|error| Error::Tool {
        target: backup.source.database.clone(),
        error,
    })?;
    let work = async {
        let mut list = Restore::start(&pg_restore_beside(&tool), RestoreMode::List)?;
        let reader = store.get(&backup.dump).await?;
        let stdin = list.stdin.take();
        let hashed = hash(reader, stdin, &|_| {}).await;
        let listed = list.wait().await;
        let (sha256, bytes) = hashed.map_err(|e| store_read_error(store, backup, e))?;
        check(store, backup, &sha256, bytes)?;
        let toc = listed.map_err(|failure| Error::Unreadable {
            name: backup.name.clone(),
            location: store.location(),
            status: failure.status,
            stderr: failure.stderr,
        })?;
        let toc = String::from_utf8_lossy(&toc);
        let entries: Vec<&str> = toc
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .collect();
        Ok(Verified {
            bytes,
            sha256,
            entries: entries.len(),
            table_data: entries
                .iter()
                .filter(|l| l.contains(" TABLE DATA "))
                .count(),
        })
    };
    tokio::select! {
        verified = work => verified,
        () = cancel.cancelled() => Err(Error::Cancelled),
    }
}

/// Confirms a restore: drops the database it replaced (the CLI's restore,
/// which is its own run; a workflow's step leaves this to the end of the
/// run). Says what it did.
pub async fn drop_replaced(
    target: &str,
    maintenance_url: &str,
    swapped: &Swapped,
) -> Result<String> {
    let client = connect(target, maintenance_url, &CancellationToken::new()).await?;
    swap::drop_database(&client, &swapped.aside)
        .await
        .map_err(|error| Error::Database {
            target: target.to_string(),
            database: swapped.aside.clone(),
            error,
        })?;
    Ok(format!(
        "dropped the database it replaced (`{}`)",
        swapped.aside
    ))
}
