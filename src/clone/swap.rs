//! `strategy: swap`: load a new database on the staging server from the
//! snapshot — `jobs` workers with a source connection copy tables and
//! ranges, `index_jobs` more build each table's indexes as soon as its data
//! is in and then the foreign keys — then rename it in for staging in one short
//! critical section; and, at the run's end, drop (or keep) the database
//! swapped out, or swap it back. On a failure before the swap the new
//! database is dropped and staging was never touched; a failure to clean
//! up is reported with the error, never discarded. Never writes to the
//! source.
//!
//! Connections to the staging server, at most `jobs + index_jobs + 2` at
//! once: the maintenance connection for the whole clone; the one that
//! applies the schema (and the entries after the copy) while loading, or the
//! observer that names lock holders while recovering and swapping, never
//! both; and the workers, whose index builders go on to the foreign keys on
//! their own connections.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::post_data::{run_entry, set_sequences};
use super::queue::{Queue, Task};
use super::source::{Source, server_major};
use super::spec::CloneSpec;
use super::table::{Ends, TableCopied, copy_one, format_for, parts_of};
use crate::anonymize::bind::Binding;
use crate::pg::catalog::Table;
use crate::pg::connect::{connect, sql_error};
use crate::pg::copy::Format;
use crate::pg::large_objects::Copied;
use crate::pg::schema::Entry;
use crate::pg::swap::{self, SwapError, Swapped};
use crate::pg::url;
use crate::pg::wait::{self, Holder};
use crate::progress::{Bar, Progress, Unit};

/// What a clone with `strategy: swap` did.
pub struct Cloned {
    pub tables: Vec<TableCopied>,
    pub sequences: usize,
    pub swapped: Swapped,
    /// The maintenance database that worked (`postgres`, else `template1`),
    /// for what is left to do at the end of the run.
    pub maintenance_url: String,
    /// Time spent per phase, for the report.
    pub phases: Vec<(&'static str, Duration)>,
    /// False when the source's locale was not available on the staging server.
    pub same_locale: bool,
    /// What was cleaned up after interrupted runs before the copy.
    pub recovered: Vec<String>,
    /// The anonymizer bound to the snapshot's tables, for the report.
    pub binding: Option<Binding>,
    /// The foreign objects left out and how many large objects there are.
    pub outside: crate::pg::catalog::Outside,
    /// Personal data kept in the schema and comments redacted.
    pub schema: super::spec::SchemaCover,
    /// The large objects copied under `large_objects: copy`.
    pub large_objects: Option<Copied>,
    /// Staging-only rows carried into the new database before the swap.
    pub carried: Vec<super::carry::Carried>,
}

/// Runs the whole clone; see the module header.
pub async fn run(
    spec: CloneSpec,
    progress: &Progress,
    step_id: &str,
    cancel: &CancellationToken,
) -> Result<Cloned> {
    let mut phases = Vec::new();
    let began = Instant::now();
    let source = Source::open(&spec, cancel).await?;
    let spec = CloneSpec {
        rules: source.rules.clone(),
        ..spec
    };
    let locale = swap::locale_of_current(&source.snapshot.client)
        .await
        .map_err(|error| Error::Database {
            target: spec.source_name.clone(),
            database: url::database_of(&spec.source_url).unwrap_or_default(),
            error,
        })?;

    let staging_db = url::database_of(&spec.target_url).ok_or_else(|| Error::NoDatabaseInUrl {
        target: spec.target_name.clone(),
    })?;
    let on_staging = |database: &str| {
        let target = spec.target_name.clone();
        let database = database.to_string();
        move |error: SwapError| Error::Database {
            target,
            database,
            error,
        }
    };
    let (maintenance, maintenance_url) = maintenance_client(&spec, cancel).await?;
    let target_major = server_major(&maintenance, &spec.target_name).await?;
    // A second connection names whoever holds a lock the swap waits for;
    // it is closed while the load holds its own second connection.
    let observer = connect(&spec.target_name, &maintenance_url, cancel)
        .await
        .ok();
    let on_wait = |holders: &[Holder]| {
        progress.step_line(
            step_id,
            &format!(
                "{step_id}: the swap waits for a lock on the staging server held by {}",
                wait::describe(holders)
            ),
        );
    };
    // What interrupted runs left (this one's earlier attempt included) is
    // cleaned up first: staging is then exactly as it was before them.
    let recovered = swap::recover(&maintenance, observer.as_ref(), &staging_db, &on_wait)
        .await
        .map_err(on_staging(&staging_db))?;
    drop(observer);
    let new_db = swap::derived_name(&staging_db, &format!("_fp_new_{}", spec.suffix));
    let aside = swap::derived_name(&staging_db, &format!("_fp_old_{}", spec.suffix));
    let same_locale = swap::create_database(&maintenance, &new_db, &locale)
        .await
        .map_err(on_staging(&new_db))?;
    // The schema dump belongs to the schema phase, as the report has it.
    phases.push(("prepare", began.elapsed().saturating_sub(source.dump_time)));

    let new_url = url::with_database(&spec.target_url, &new_db);
    let source_major = source.major;
    let binding = source.binding;
    let outside = source.outside;
    let schema = source.schema;
    let loaded = load(
        &spec,
        Loaded {
            snapshot: source.snapshot,
            tables: source.tables,
            pre: source.pre,
            post: source.post,
            dump_time: source.dump_time,
        },
        &new_url,
        source_major == target_major,
        source_major,
        progress,
        step_id,
        cancel,
        &mut phases,
    )
    .await;
    // Staging was never touched on any of these failures: the half-built
    // database goes.
    let (tables, sequences, large_objects, carried) = match loaded {
        Ok(done) => done,
        Err(e) => return Err(dropped(&maintenance, &new_db, e).await),
    };
    // Cancelled while the last entries ran: nothing is swapped in.
    if cancel.is_cancelled() {
        return Err(dropped(&maintenance, &new_db, Error::Cancelled).await);
    }
    let swap_began = Instant::now();
    let observer = match connect(&spec.target_name, &maintenance_url, cancel).await {
        Ok(observer) => Some(observer),
        Err(e) => {
            // The swap goes on; it only cannot name who holds a lock.
            tracing::warn!("no observer for the swap, lock holders go unnamed: {e}");
            None
        }
    };
    let swapped = match swap::swap(
        &maintenance,
        observer.as_ref(),
        &staging_db,
        &new_db,
        &aside,
        &on_wait,
    )
    .await
    {
        Ok(swapped) => swapped,
        Err(e) => {
            let error = on_staging(&staging_db)(e);
            return Err(dropped(&maintenance, &new_db, error).await);
        }
    };
    phases.push(("swap", swap_began.elapsed()));
    Ok(Cloned {
        tables,
        sequences,
        swapped,
        maintenance_url,
        phases,
        same_locale,
        recovered,
        binding,
        outside,
        schema,
        large_objects,
        carried,
    })
}

/// Drops the half-built `database` after `error`; a failure to drop it is
/// added to the error, not discarded.
async fn dropped(maintenance: &Client, database: &str, error: Error) -> Error {
    match swap::drop_database(maintenance, database).await {
        Ok(()) => error,
        Err(cleanup) => Error::cleanup_failed(error, database, cleanup),
    }
}

/// A connection to the staging server's maintenance database.
pub async fn maintenance_client(
    spec: &CloneSpec,
    cancel: &CancellationToken,
) -> Result<(Client, String)> {
    crate::pg::connect::maintenance(&spec.target_name, &spec.target_url, cancel)
        .await
        .map_err(|e| match e {
            crate::pg::Error::Cancelled => Error::Cancelled,
            reasons => Error::NoMaintenance {
                target: spec.target_name.clone(),
                reasons,
            },
        })
}

/// The source's part of a load: the snapshot and what was read in it.
struct Loaded {
    snapshot: crate::pg::snapshot::Snapshot,
    tables: Vec<Table>,
    pre: String,
    post: crate::pg::schema::PostData,
    dump_time: Duration,
}

/// Everything the workers share, read-only (the queue has its own lock).
struct Job {
    spec: CloneSpec,
    tables: Vec<Table>,
    entries: Vec<Entry>,
    preamble: String,
    formats: Vec<Format>,
    queue: Queue,
    progress: Progress,
    step_id: String,
    overall: Bar,
}

#[allow(clippy::too_many_arguments)]
async fn load(
    spec: &CloneSpec,
    source: Loaded,
    new_url: &str,
    same_major: bool,
    source_major: u32,
    progress: &Progress,
    step_id: &str,
    cancel: &CancellationToken,
    phases: &mut Vec<(&'static str, Duration)>,
) -> Result<(
    Vec<TableCopied>,
    usize,
    Option<Copied>,
    Vec<super::carry::Carried>,
)> {
    let Loaded {
        snapshot,
        tables,
        pre,
        post,
        dump_time,
    } = source;
    let schema_began = Instant::now();
    let admin = connect(&spec.target_name, new_url, cancel).await?;
    crate::pg::schema::apply(&admin, &pre)
        .await
        .map_err(Error::Schema)?;
    // Before the rows, which may reference them by oid.
    let large_objects =
        super::large_objects::copy_if_ruled(spec, &snapshot.client, &admin, false).await?;
    phases.push(("schema", dump_time + schema_began.elapsed()));

    let (queue, leftover) = Queue::new(
        &tables,
        &post.entries,
        &spec.rules,
        spec.split_bytes,
        source_major,
    );
    let formats: Vec<Format> = tables.iter().map(|t| format_for(t, same_major)).collect();
    let total_bytes: u64 = tables.iter().map(|t| t.bytes.max(0) as u64).sum();
    let overall = progress.bar(step_id, "copying", Some(total_bytes), Unit::Bytes);
    let job = Arc::new(Job {
        spec: spec.clone(),
        queue,
        tables,
        entries: post.entries,
        preamble: post.preamble,
        formats,
        progress: progress.clone(),
        step_id: step_id.to_string(),
        overall,
    });

    let copy_began = Instant::now();
    // Stops every worker of this load: cancelled on the first error, and
    // with the run's token.
    let stop = cancel.child_token();
    let mut workers = JoinSet::new();
    for _ in 0..spec.workers.jobs {
        let source = snapshot
            .worker(&spec.source_name, &spec.source_url, cancel)
            .await?;
        let target = connect(&spec.target_name, new_url, cancel).await?;
        prepare_target_session(&target, &spec.target_name).await?;
        workers.spawn(worker(job.clone(), Some(source), target, stop.clone()));
    }
    // Workers for index builds only, so a table's indexes start as soon as
    // its data is in while the copies go on (2 cores stay busy through the
    // I/O waits of both).
    for _ in 0..spec.workers.index_jobs {
        let target = connect(&spec.target_name, new_url, cancel).await?;
        prepare_target_session(&target, &spec.target_name).await?;
        workers.spawn(worker(job.clone(), None, target, stop.clone()));
    }
    // The index builders hand their connections back for the foreign keys;
    // the copy workers' close as they end.
    let builders = first_error(&mut workers, &stop).await?;
    job.overall.finish();
    phases.push(("copy and indexes", copy_began.elapsed()));

    let rest_began = Instant::now();
    for &i in &leftover.later {
        run_entry(&admin, &job.preamble, &job.entries[i]).await?;
    }
    let mut foreign_keys = job.queue.leftover_foreign_keys();
    foreign_keys.extend(leftover.foreign_keys);
    let mut fk_workers = JoinSet::new();
    // Taken one at a time by the foreign-key workers; held only to pop.
    let fk_queue = Arc::new(Mutex::new(foreign_keys));
    for target in builders {
        let job = job.clone();
        let fk_queue = fk_queue.clone();
        let stop = stop.clone();
        fk_workers.spawn(async move {
            loop {
                let next = fk_queue.lock().expect("fk queue").pop();
                let Some(i) = next else { return Ok(None) };
                tokio::select! {
                    result = run_entry(&target, &job.preamble, &job.entries[i]) => result?,
                    () = stop.cancelled() => return Err(Error::Cancelled),
                }
            }
        });
    }
    first_error(&mut fk_workers, &stop).await?;
    for &i in &leftover.comments {
        run_entry(&admin, &job.preamble, &job.entries[i]).await?;
    }
    let sequences = set_sequences(&snapshot, &admin, spec).await?;
    // After the sequences (a renumbered row draws past production's keys)
    // and the constraints (the database checks every carried row); a
    // failure here drops the new database like any other.
    let carried = super::carry::insert_all(spec, &admin, false).await?;
    phases.push(("foreign keys, sequences", rest_began.elapsed()));

    let progress = job.queue.copied();
    let copied = job
        .tables
        .iter()
        .enumerate()
        .map(|(i, table)| {
            let progress = &progress[i];
            let rule = spec.rules.get(&table.qualified);
            TableCopied {
                qualified: table.qualified.clone(),
                rows: progress.as_ref().map_or(0, |p| p.rows),
                bytes: progress.as_ref().map_or(0, |p| p.bytes),
                duration: progress
                    .as_ref()
                    .map_or(Duration::ZERO, |p| p.finished.duration_since(p.started)),
                ranges: parts_of(table, rule, spec.split_bytes, source_major),
                format: job.formats[i],
                transformed: rule.is_some_and(|r| r.transform.is_some()),
                truncated: rule.is_some_and(|r| r.truncate),
            }
        })
        .collect();
    Ok((copied, sequences, large_objects, carried))
}

/// Waits for every worker; on the first error, stops the others and returns it.
/// Waits for every worker; the first real error wins (and stops the rest).
/// On success, the connections workers handed back, to use again.
async fn first_error(
    workers: &mut JoinSet<Result<Option<Client>>>,
    stop: &CancellationToken,
) -> Result<Vec<Client>> {
    let mut first: Option<Error> = None;
    let mut handed_back = Vec::new();
    while let Some(joined) = workers.join_next().await {
        match joined.unwrap_or_else(|e| Err(Error::WorkerPanicked(e.to_string()))) {
            Ok(client) => handed_back.extend(client),
            Err(e) => {
                stop.cancel();
                // The first real error wins over the cancellations it caused.
                if first.as_ref().is_none_or(Error::is_cancelled) {
                    first = Some(e);
                }
            }
        }
    }
    first.map_or(Ok(handed_back), Err)
}

async fn prepare_target_session(target: &Client, name: &str) -> Result<()> {
    target
        .batch_execute(
            "SET synchronous_commit = off; SET statement_timeout = 0; SET lock_timeout = 0; \
             SELECT set_config('maintenance_work_mem', '256MB', false) \
             WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < 256 * 1024 * 1024",
        )
        .await
        .map_err(sql_error(name, "setting up the session"))?;
    Ok(())
}

/// Takes tasks until the queue is done or `stop` is cancelled; a worker
/// without a `source` only builds, and hands its staging connection back
/// when the queue is done.
async fn worker(
    job: Arc<Job>,
    source: Option<Client>,
    target: Client,
    stop: CancellationToken,
) -> Result<Option<Client>> {
    loop {
        // A worker waiting for work must also notice that another failed.
        let next = tokio::select! {
            next = job.queue.next(source.is_none()) => next,
            () = stop.cancelled() => return Err(Error::Cancelled),
        };
        let Some(task) = next else { break };
        let work = async {
            match &task {
                Task::Copy { table, range } => {
                    let ends = Ends {
                        source: source.as_ref().expect("copies go to workers with a source"),
                        target: &target,
                        progress: &job.progress,
                        step_id: &job.step_id,
                        overall: &job.overall,
                    };
                    let (table, format) = (&job.tables[*table], job.formats[*table]);
                    copy_one(&job.spec, table, format, *range, &ends)
                        .await
                        .map(Some)
                }
                Task::Build { entry, .. } => {
                    run_entry(&target, &job.preamble, &job.entries[*entry])
                        .await
                        .map(|()| None)
                }
            }
        };
        let began = Instant::now();
        // Dropping `work` drops an unfinished COPY FROM sink, which aborts it.
        let result = tokio::select! {
            result = work => result,
            () = stop.cancelled() => Err(Error::Cancelled),
        };
        tracing::debug!(task = ?describe_task(&job, &task), seconds = began.elapsed().as_secs_f64(), "clone task done");
        match result {
            Ok(copied) => job.queue.done(&task, copied, true),
            Err(e) => {
                job.queue.done(&task, None, false);
                return Err(e);
            }
        }
    }
    Ok(source.is_none().then_some(target))
}

fn describe_task(job: &Job, task: &Task) -> String {
    match task {
        Task::Copy { table, range } => format!("copy {} {range:?}", job.tables[*table].qualified),
        Task::Build { entry, .. } => format!("build {}", job.entries[*entry].name),
    }
}

/// A maintenance connection to the staging server at `target_url`, on
/// `database` (the one that worked at the swap).
async fn maintenance_on(
    target: &str,
    target_url: &str,
    database: &str,
) -> Result<(Client, String)> {
    let url = url::with_database(target_url, database);
    let client = connect(target, &url, &CancellationToken::new()).await?;
    Ok((client, url))
}

/// The run succeeded: drop the database swapped out — or, with `keep_old`,
/// mark it kept so no later run takes it for a leftover. Says what it did.
pub async fn commit_swap(
    target: &str,
    target_url: &str,
    maintenance_database: &str,
    swapped: &Swapped,
    keep_old: bool,
) -> Result<String> {
    let (client, _) = maintenance_on(target, target_url, maintenance_database).await?;
    let on_aside = |error| Error::Database {
        target: target.to_string(),
        database: swapped.aside.clone(),
        error,
    };
    if keep_old {
        swap::mark_kept(&client, &swapped.aside)
            .await
            .map_err(on_aside)?;
        return Ok(format!(
            "kept the previous `{target}` database as `{}` (keep_old)",
            swapped.aside
        ));
    }
    swap::drop_database(&client, &swapped.aside)
        .await
        .map_err(on_aside)?;
    Ok(format!(
        "dropped the previous `{target}` database (`{}`)",
        swapped.aside
    ))
}

/// The run failed after the swap: put the previous staging database back.
pub async fn rollback_swap(
    target: &str,
    target_url: &str,
    maintenance_database: &str,
    swapped: &Swapped,
) -> Result<String> {
    let (client, url) = maintenance_on(target, target_url, maintenance_database).await?;
    let observer = connect(target, &url, &CancellationToken::new()).await.ok();
    let discard = swap::discard_name(swapped);
    let on_wait = |holders: &[Holder]| {
        tracing::warn!(
            "swapping `{}` back waits for a lock held by {}",
            swapped.live,
            wait::describe(holders)
        );
    };
    swap::swap_back(&client, observer.as_ref(), swapped, &discard, &on_wait)
        .await
        .map_err(|error| Error::Database {
            target: target.to_string(),
            database: swapped.live.clone(),
            error,
        })?;
    Ok(format!(
        "swapped back: `{}` is the previous staging database again",
        swapped.live
    ))
}

/// Whether the database swapped out is still there (a resumed run reuses
/// the clone only then).
pub async fn swap_still_in_place(
    target: &str,
    target_url: &str,
    maintenance_database: &str,
    swapped: &Swapped,
) -> bool {
    let Ok((client, _)) = maintenance_on(target, target_url, maintenance_database).await else {
        return false;
    };
    swap::exists(&client, &swapped.aside).await.unwrap_or(false)
}
