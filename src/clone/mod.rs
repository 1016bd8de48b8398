//! The clone: production's database copied into a new database on the
//! staging server, then swapped in for staging.
//!
//! 1. A coordinator exports a snapshot; schema and data all come from it.
//! 2. `pg_dump --section=pre-data` is applied to the new database.
//! 3. `jobs` workers take tasks from one queue: copy a table (or one ctid
//!    range of a large table), and, as soon as all of a table's data is in,
//!    build its indexes, primary key, unique constraints and triggers — ahead
//!    of any further copy, so index builds overlap the copy of other tables.
//! 4. Then the rest of post-data in pg_dump's order, foreign keys last (in
//!    parallel), and sequences set from the source's values.
//! 5. The swap (see [`super::swap`]).
//!
//! On any failure before the swap the new database is dropped and staging
//! was never touched. Nothing here writes to the source.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::pg::catalog::{self, Table};
use crate::pg::connect::{connect, describe, sql_error};
use crate::pg::copy::{self, RowTransform};
use crate::pg::schema::{self, Entry, EntryKind, Section};
use crate::pg::snapshot::Snapshot;
use crate::pg::swap::{self, Swapped, quote_ident};
use crate::pg::url;
use crate::progress::{Progress, Unit};
use crate::steps::StepError;

/// What happens to one table's rows on the way (from the anonymizer rules).
#[derive(Clone, Default)]
pub struct TableRule {
    /// A SQL predicate; only matching rows are copied.
    pub where_clause: Option<String>,
    /// Create the table empty.
    pub truncate: bool,
    /// By column position: an SQL expression the source computes instead of
    /// the column (a constant, or a `CASE` keeping `except` rows).
    pub expressions: BTreeMap<usize, String>,
    /// SQL expressions read after the columns, for the transform only
    /// (never written): an `except` predicate, a template's `id::text`.
    pub extras: Vec<String>,
    /// Builds the row transform for one COPY of this table.
    pub transform: Option<TransformFactory>,
}

impl std::fmt::Debug for TableRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableRule")
            .field("where_clause", &self.where_clause)
            .field("truncate", &self.truncate)
            .field("expressions", &self.expressions)
            .field("extras", &self.extras)
            .field("transform", &self.transform.is_some())
            .finish()
    }
}

/// Builds a table's row transform for one COPY in the given format.
pub type TransformFactory = Arc<dyn Fn(Format) -> Box<dyn RowTransform> + Send + Sync>;

/// Decides the rules once the snapshot's tables are known, before anything
/// is written; an error stops the clone with staging untouched. Keyed by
/// `Table::qualified`.
pub type Binder =
    Arc<dyn Fn(&[Table]) -> Result<BTreeMap<String, TableRule>, StepError> + Send + Sync>;

#[derive(Clone)]
pub struct CloneSpec {
    pub source_name: String,
    pub source_url: String,
    pub target_name: String,
    pub target_url: String,
    pub jobs: usize,
    /// Tables larger than this are split into ctid ranges.
    pub split_bytes: u64,
    /// Keyed by `Table::qualified`; filled by `binder` when there is one.
    pub rules: BTreeMap<String, TableRule>,
    pub binder: Option<Binder>,
    /// Makes the temporary database names unique to this run.
    pub suffix: String,
}

impl CloneSpec {
    /// The spec with its rules bound to the snapshot's `tables`.
    pub(crate) fn bind(mut self, tables: &[Table]) -> Result<CloneSpec, StepError> {
        if let Some(binder) = &self.binder {
            self.rules = binder(tables)?;
        }
        Ok(self)
    }
}

pub mod budget;
pub mod in_place;

pub use crate::pg::copy::Format;

/// What was copied for one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCopied {
    pub qualified: String,
    pub rows: u64,
    pub bytes: u64,
    /// Wall time from the first range's start to the last range's end.
    pub duration: Duration,
    pub ranges: usize,
    pub format: Format,
    pub transformed: bool,
    pub truncated: bool,
}

#[derive(Debug, Clone)]
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
}

/// One unit of work for a worker.
#[derive(Debug, Clone)]
enum Task {
    /// Copy table `table` (index into the table list), optionally one ctid range.
    Copy {
        table: usize,
        range: Option<(i64, Option<i64>)>,
    },
    /// Run post-data entry `entry`, one of `table`'s builds when given.
    Build { entry: usize, table: Option<usize> },
}

/// A foreign key that can be added while other tables are still copying:
/// both of its tables are plain tables of this clone.
#[derive(Debug, Clone, Copy)]
struct ForeignKey {
    entry: usize,
    from: usize,
    to: usize,
}

/// The shared queue. Index builds and foreign keys go to the front as soon
/// as they can run (finishing tables first keeps the tail short); copies
/// wait in [`copy_order`].
struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
}

struct QueueState {
    tasks: VecDeque<Task>,
    /// Tasks taken and not yet done (they may enqueue more).
    running: usize,
    /// Per table: ranges not yet copied.
    ranges_left: Vec<usize>,
    /// Per table: the post-data entries to run once its data is in.
    builds: Vec<Vec<usize>>,
    /// Per table: builds queued or running.
    builds_left: Vec<usize>,
    /// Per table: data in and every build done.
    built: Vec<bool>,
    /// Foreign keys waiting for their tables.
    foreign_keys: Vec<ForeignKey>,
    copied: Vec<Option<TableProgress>>,
}

#[derive(Debug, Clone)]
struct TableProgress {
    rows: u64,
    bytes: u64,
    started: Instant,
    finished: Instant,
}

impl QueueState {
    /// A table's data and builds are done: queue the foreign keys it unblocks.
    fn mark_built(&mut self, table: usize) {
        self.built[table] = true;
        let (ready, waiting): (Vec<ForeignKey>, Vec<ForeignKey>) = self
            .foreign_keys
            .iter()
            .partition(|fk| self.built[fk.from] && self.built[fk.to]);
        self.foreign_keys = waiting;
        // Ahead of further copies: finishing tables first keeps the tail short.
        for fk in ready {
            self.tasks.push_front(Task::Build {
                entry: fk.entry,
                table: None,
            });
        }
    }

    fn copy_done(&mut self, table: usize, rows: u64, bytes: u64, started: Instant) {
        let now = Instant::now();
        let entry = self.copied[table].get_or_insert(TableProgress {
            rows: 0,
            bytes: 0,
            started,
            finished: now,
        });
        entry.rows += rows;
        entry.bytes += bytes;
        entry.started = entry.started.min(started);
        entry.finished = now;
        self.ranges_left[table] -= 1;
        if self.ranges_left[table] > 0 {
            return;
        }
        let builds = std::mem::take(&mut self.builds[table]);
        self.builds_left[table] = builds.len();
        if builds.is_empty() {
            self.mark_built(table);
        }
        for entry in builds.into_iter().rev() {
            self.tasks.push_front(Task::Build {
                entry,
                table: Some(table),
            });
        }
    }

    fn build_done(&mut self, table: usize) {
        self.builds_left[table] -= 1;
        if self.builds_left[table] == 0 {
            self.mark_built(table);
        }
    }
}

impl Queue {
    /// The next task, waiting while others may still produce one; `None`
    /// when all work is done.
    /// `builds_only` workers (no source connection) take index builds and
    /// foreign keys, never copies.
    async fn next(&self, builds_only: bool) -> Option<Task> {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.state.lock().expect("queue lock");
                let takes = match state.tasks.front() {
                    Some(Task::Copy { .. }) => !builds_only,
                    Some(Task::Build { .. }) => true,
                    None => false,
                };
                if takes {
                    state.running += 1;
                    return state.tasks.pop_front();
                }
                if state.running == 0 && state.tasks.is_empty() {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks a task done (successfully when `copied` or `built` says so) and
    /// queues what it unblocks.
    fn done(&self, task: &Task, copied: Option<(u64, u64, Instant)>, ok: bool) {
        let mut state = self.state.lock().expect("queue lock");
        state.running -= 1;
        match (task, copied) {
            (Task::Copy { table, .. }, Some((rows, bytes, started))) if ok => {
                state.copy_done(*table, rows, bytes, started)
            }
            (
                Task::Build {
                    table: Some(table), ..
                },
                _,
            ) if ok => state.build_done(*table),
            _ => {}
        }
        drop(state);
        self.notify.notify_waiters();
    }

    /// Foreign keys that never became ready (their tables failed or are not
    /// plain tables of this clone).
    fn leftover_foreign_keys(&self) -> Vec<usize> {
        let state = self.state.lock().expect("queue lock");
        state.foreign_keys.iter().map(|fk| fk.entry).collect()
    }
}

/// Everything the workers share, read-only.
struct Job {
    spec: CloneSpec,
    tables: Vec<Table>,
    entries: Vec<Entry>,
    preamble: String,
    formats: Vec<Format>,
    queue: Queue,
    progress: Progress,
    step_id: String,
    overall: crate::progress::Bar,
}

/// The format a table must travel in.
pub fn format_for(table: &Table, same_major: bool) -> Format {
    if same_major && table.binary_ok {
        Format::Binary
    } else {
        Format::Text
    }
}

/// Ctid block ranges for a table larger than `split_bytes` (PostgreSQL 14+
/// scans a TID range without reading the rest of the table).
pub fn ranges_for(table: &Table, split_bytes: u64, source_major: u32) -> Vec<(i64, Option<i64>)> {
    // The main fork's size is exact; relpages may be stale (or 0 before the
    // first VACUUM/ANALYZE).
    let pages = (table.bytes / 8192).max(table.pages);
    if source_major < 14 || split_bytes == 0 || pages < 2 {
        return Vec::new();
    }
    let parts = (table.bytes.max(0) as u64).div_ceil(split_bytes).min(16) as i64;
    if parts < 2 {
        return Vec::new();
    }
    let step = (pages + parts - 1) / parts;
    (0..parts)
        .map(|i| {
            let start = i * step;
            let end = (i + 1 < parts).then_some((i + 1) * step);
            (start, end)
        })
        .collect()
}

/// The source side of a clone: the snapshot (its coordinator stays open),
/// what is in it, and a pg_dump that can read it.
pub(crate) struct Source {
    pub snapshot: Snapshot,
    pub major: u32,
    pub tables: Vec<Table>,
    pub pg_dump: schema::PgDump,
}

impl Source {
    pub(crate) async fn open(
        spec: &CloneSpec,
        cancel: &CancellationToken,
    ) -> Result<Source, StepError> {
        let snapshot = Snapshot::export(&spec.source_name, &spec.source_url, cancel).await?;
        let major = server_major(&snapshot.client, &spec.source_name).await?;
        let tables = catalog::tables(&snapshot.client)
            .await
            .map_err(sql_error(&spec.source_name, "listing tables"))?;
        let pg_dump = schema::find_pg_dump(major).map_err(|e| StepError::failed(e.to_string()))?;
        Ok(Source {
            snapshot,
            major,
            tables,
            pg_dump,
        })
    }
}

/// pg_dump's pre-data and post-data sections, in the snapshot.
pub(crate) async fn dump_schema(
    pg_dump: &schema::PgDump,
    snapshot: &Snapshot,
    spec: &CloneSpec,
) -> Result<(String, String), StepError> {
    // Both sections at once: each pg_dump reads the whole catalog.
    let dump =
        |section| schema::dump_section(pg_dump, &spec.source_url, section, Some(&snapshot.id));
    tokio::try_join!(dump(Section::PreData), dump(Section::PostData))
        .map_err(|e| StepError::failed(e.to_string()))
}

/// The server's major version (15 for 15.4).
pub(crate) async fn server_major(client: &Client, target: &str) -> Result<u32, StepError> {
    let num = catalog::server_version_num(client)
        .await
        .map_err(sql_error(target, "reading the server version"))?;
    Ok((num / 10_000) as u32)
}

/// Runs the whole clone; see the module header.
pub async fn run(
    spec: CloneSpec,
    progress: &Progress,
    step_id: &str,
    cancel: &CancellationToken,
) -> Result<Cloned, StepError> {
    let mut phases = Vec::new();
    let began = Instant::now();
    let Source {
        snapshot,
        major: source_major,
        tables,
        pg_dump,
    } = Source::open(&spec, cancel).await?;
    // Rules are decided on the snapshot's own tables: a column added since
    // the plan is seen here, before anything is written.
    let spec = spec.bind(&tables)?;
    let locale = swap::locale_of_current(&snapshot.client)
        .await
        .map_err(|e| StepError::failed(e.to_string()))?;

    let staging_db = url::database_of(&spec.target_url).ok_or_else(|| {
        StepError::failed(format!(
            "target `{}`: the connection URL names no database; end it with the database to replace, e.g. postgres://user@host/staging",
            spec.target_name
        ))
    })?;
    let (maintenance, maintenance_url) = maintenance_client(&spec, cancel).await?;
    let target_major = server_major(&maintenance, &spec.target_name).await?;
    // A second connection names whoever holds a lock the swap waits for.
    let observer = connect(&spec.target_name, &maintenance_url, cancel)
        .await
        .ok();
    let on_wait = |holders: &[crate::pg::wait::Holder]| {
        progress.println(&format!(
            "{step_id}: the swap waits for a lock on the staging server held by {}",
            crate::pg::wait::describe(holders)
        ));
    };
    // What interrupted runs left (this one's earlier attempt included) is
    // cleaned up first: staging is then exactly as it was before them.
    let recovered = swap::recover(&maintenance, observer.as_ref(), &staging_db, &on_wait)
        .await
        .map_err(|e| StepError::failed(e.to_string()))?;
    let new_db = swap::derived_name(&staging_db, &format!("_fp_new_{}", spec.suffix));
    let aside = swap::derived_name(&staging_db, &format!("_fp_old_{}", spec.suffix));
    let same_locale = swap::create_database(&maintenance, &new_db, &locale)
        .await
        .map_err(|e| StepError::failed(e.to_string()))?;
    phases.push(("prepare", began.elapsed()));

    let new_url = url::with_database(&spec.target_url, &new_db);
    let loaded = load(
        &spec,
        &snapshot,
        &pg_dump,
        tables,
        &new_url,
        source_major == target_major,
        source_major,
        progress,
        step_id,
        cancel,
        &mut phases,
    )
    .await;
    drop(snapshot);
    let (tables, sequences) = match loaded {
        Ok(done) => done,
        Err(e) => {
            // Staging was never touched; the half-built database goes.
            let _ = swap::drop_database(&maintenance, &new_db).await;
            return Err(e);
        }
    };
    // Cancelled while the last entries ran: nothing is swapped in.
    if cancel.is_cancelled() {
        let _ = swap::drop_database(&maintenance, &new_db).await;
        return Err(StepError::Cancelled);
    }
    let swap_began = Instant::now();
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
            let _ = swap::drop_database(&maintenance, &new_db).await;
            return Err(StepError::failed(e.to_string()));
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
    })
}

/// A connection to the staging server's maintenance database.
pub async fn maintenance_client(
    spec: &CloneSpec,
    cancel: &CancellationToken,
) -> Result<(Client, String), StepError> {
    crate::pg::connect::maintenance(&spec.target_name, &spec.target_url, cancel)
        .await
        .map_err(|e| match e {
            crate::pg::Error::Cancelled => StepError::Cancelled,
            reasons => StepError::failed(format!(
                "no maintenance connection to the staging server: {reasons}"
            )),
        })
}

#[allow(clippy::too_many_arguments)]
async fn load(
    spec: &CloneSpec,
    snapshot: &Snapshot,
    pg_dump: &schema::PgDump,
    tables: Vec<Table>,
    new_url: &str,
    same_major: bool,
    source_major: u32,
    progress: &Progress,
    step_id: &str,
    cancel: &CancellationToken,
    phases: &mut Vec<(&'static str, Duration)>,
) -> Result<(Vec<TableCopied>, usize), StepError> {
    let schema_began = Instant::now();
    let (pre, post) = dump_schema(pg_dump, snapshot, spec).await?;
    let admin = connect(&spec.target_name, new_url, cancel).await?;
    schema::apply(&admin, &pre)
        .await
        .map_err(|e| StepError::failed(format!("applying the schema (pre-data): {e}")))?;
    let post = schema::split_post_data(&post);
    phases.push(("schema", schema_began.elapsed()));

    // Which post-data entries follow which table's data.
    let index: BTreeMap<&str, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.qualified.as_str(), i))
        .collect();
    let mut builds: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];
    let mut later: Vec<usize> = Vec::new();
    let mut early_foreign_keys: Vec<ForeignKey> = Vec::new();
    let mut late_foreign_keys: Vec<usize> = Vec::new();
    let mut comments: Vec<usize> = Vec::new();
    for (i, entry) in post.entries.iter().enumerate() {
        let table = entry.table.as_deref().and_then(|t| index.get(t)).copied();
        let references = entry
            .references
            .as_deref()
            .and_then(|t| index.get(t))
            .copied();
        match (&entry.kind, table, references) {
            (EntryKind::Index | EntryKind::Constraint | EntryKind::Trigger, Some(t), _) => {
                builds[t].push(i)
            }
            (EntryKind::ForeignKey, Some(from), Some(to)) => {
                early_foreign_keys.push(ForeignKey { entry: i, from, to })
            }
            (EntryKind::ForeignKey, _, _) => late_foreign_keys.push(i),
            // A comment may be on a foreign key added at the very end.
            (EntryKind::Other(kind), _, _) if kind == "COMMENT" => comments.push(i),
            _ => later.push(i),
        }
    }

    let mut tasks = VecDeque::new();
    let mut ranges_left = vec![0; tables.len()];
    let formats: Vec<Format> = tables.iter().map(|t| format_for(t, same_major)).collect();
    for i in copy_order(&tables, &builds, &early_foreign_keys) {
        let table = &tables[i];
        let rule = spec.rules.get(&table.qualified);
        if rule.is_some_and(|r| r.truncate) {
            ranges_left[i] = 1;
            tasks.push_back(Task::Copy {
                table: i,
                range: None,
            });
            continue;
        }
        let ranges = ranges_for(table, spec.split_bytes, source_major);
        if ranges.is_empty() {
            ranges_left[i] = 1;
            tasks.push_back(Task::Copy {
                table: i,
                range: None,
            });
        } else {
            ranges_left[i] = ranges.len();
            for range in ranges {
                tasks.push_back(Task::Copy {
                    table: i,
                    range: Some(range),
                });
            }
        }
    }
    let total_bytes: u64 = tables.iter().map(|t| t.bytes.max(0) as u64).sum();
    let overall = progress.bar(step_id, "copying", Some(total_bytes), Unit::Bytes);
    let job = Arc::new(Job {
        spec: spec.clone(),
        queue: Queue {
            state: Mutex::new(QueueState {
                tasks,
                running: 0,
                ranges_left,
                builds,
                builds_left: vec![0; tables.len()],
                built: vec![false; tables.len()],
                foreign_keys: early_foreign_keys,
                copied: vec![None; tables.len()],
            }),
            notify: Notify::new(),
        },
        tables,
        entries: post.entries,
        preamble: post.preamble,
        formats,
        progress: progress.clone(),
        step_id: step_id.to_string(),
        overall,
    });

    let copy_began = Instant::now();
    let stop = cancel.child_token();
    let mut workers = JoinSet::new();
    for _ in 0..spec.jobs.max(1) {
        let source = snapshot
            .worker(&spec.source_name, &spec.source_url, cancel)
            .await?;
        let target = connect(&spec.target_name, new_url, cancel).await?;
        prepare_target_session(&target, &spec.target_name).await?;
        workers.spawn(worker(job.clone(), Some(source), target, stop.clone()));
    }
    // As many again for index builds only, so a table's indexes start as
    // soon as its data is in while the copies go on (2 cores stay busy
    // through the I/O waits of both).
    for _ in 0..spec.jobs.max(1) {
        let target = connect(&spec.target_name, new_url, cancel).await?;
        prepare_target_session(&target, &spec.target_name).await?;
        workers.spawn(worker(job.clone(), None, target, stop.clone()));
    }
    first_error(&mut workers, &stop).await?;
    job.overall.finish();
    phases.push(("copy and indexes", copy_began.elapsed()));

    let rest_began = Instant::now();
    for &i in &later {
        run_entry(&admin, &job, i).await?;
    }
    let mut foreign_keys = job.queue.leftover_foreign_keys();
    foreign_keys.extend(late_foreign_keys);
    let mut fk_workers = JoinSet::new();
    let fk_queue = Arc::new(Mutex::new(foreign_keys));
    for _ in 0..spec.jobs.max(1) {
        let target = connect(&spec.target_name, new_url, cancel).await?;
        prepare_target_session(&target, &spec.target_name).await?;
        let job = job.clone();
        let fk_queue = fk_queue.clone();
        let stop = stop.clone();
        fk_workers.spawn(async move {
            loop {
                let next = fk_queue.lock().expect("fk queue").pop();
                let Some(i) = next else { return Ok(()) };
                tokio::select! {
                    result = run_entry(&target, &job, i) => result?,
                    () = stop.cancelled() => return Err(StepError::Cancelled),
                }
            }
        });
    }
    first_error(&mut fk_workers, &stop).await?;
    for &i in &comments {
        run_entry(&admin, &job, i).await?;
    }
    let sequences = set_sequences(snapshot, &admin, spec).await?;
    phases.push(("foreign keys, sequences", rest_began.elapsed()));

    let state = job.queue.state.lock().expect("queue lock");
    let copied = job
        .tables
        .iter()
        .enumerate()
        .map(|(i, table)| {
            let progress = state.copied[i].clone();
            let rule = spec.rules.get(&table.qualified);
            TableCopied {
                qualified: table.qualified.clone(),
                rows: progress.as_ref().map_or(0, |p| p.rows),
                bytes: progress.as_ref().map_or(0, |p| p.bytes),
                duration: progress
                    .as_ref()
                    .map_or(Duration::ZERO, |p| p.finished.duration_since(p.started)),
                ranges: if rule.is_some_and(|r| r.truncate) {
                    1
                } else {
                    ranges_for(table, spec.split_bytes, source_major)
                        .len()
                        .max(1)
                },
                format: job.formats[i],
                transformed: rule.is_some_and(|r| r.transform.is_some()),
                truncated: rule.is_some_and(|r| r.truncate),
            }
        })
        .collect();
    Ok((copied, sequences))
}

/// The order tables are copied in: heaviest first, where a table's weight is
/// its own size plus the size of every table whose foreign keys wait for it
/// (so a small `users` table that big tables reference is not left to the
/// end, holding their foreign keys back).
fn copy_order(tables: &[Table], builds: &[Vec<usize>], foreign_keys: &[ForeignKey]) -> Vec<usize> {
    // A table's own chain: copy, then its index builds, then validating its
    // foreign keys, each roughly proportional to its size.
    let mut weight: Vec<i64> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let fks = foreign_keys.iter().filter(|fk| fk.from == i).count();
            t.bytes.max(0) * (2 + builds[i].len() + fks) as i64
        })
        .collect();
    for fk in foreign_keys {
        if fk.from != fk.to {
            weight[fk.to] += tables[fk.from].bytes.max(0);
        }
    }
    let mut order: Vec<usize> = (0..tables.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight[i]));
    order
}

/// Waits for every worker; on the first error, stops the others and returns it.
async fn first_error(
    workers: &mut JoinSet<Result<(), StepError>>,
    stop: &CancellationToken,
) -> Result<(), StepError> {
    let mut first: Option<StepError> = None;
    while let Some(joined) = workers.join_next().await {
        let result = joined
            .unwrap_or_else(|e| Err(StepError::failed(format!("a clone worker panicked: {e}"))));
        if let Err(e) = result {
            stop.cancel();
            // The first real error wins over the cancellations it caused.
            if first.is_none() || matches!(first, Some(StepError::Cancelled)) {
                first = Some(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

async fn prepare_target_session(target: &Client, name: &str) -> Result<(), StepError> {
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

async fn worker(
    job: Arc<Job>,
    source: Option<Client>,
    target: Client,
    stop: CancellationToken,
) -> Result<(), StepError> {
    loop {
        // A worker waiting for work must also notice that another failed.
        let next = tokio::select! {
            next = job.queue.next(source.is_none()) => next,
            () = stop.cancelled() => return Err(StepError::Cancelled),
        };
        let Some(task) = next else { break };
        let work = async {
            match &task {
                Task::Copy { table, range } => {
                    let source = source.as_ref().expect("copies go to workers with a source");
                    copy_one(&job, source, &target, *table, *range)
                        .await
                        .map(Some)
                }
                Task::Build { entry, .. } => run_entry(&target, &job, *entry).await.map(|()| None),
            }
        };
        let began = Instant::now();
        let result = tokio::select! {
            result = work => result,
            () = stop.cancelled() => Err(StepError::Cancelled),
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
    Ok(())
}

fn describe_task(job: &Job, task: &Task) -> String {
    match task {
        Task::Copy { table, range } => format!("copy {} {range:?}", job.tables[*table].qualified),
        Task::Build { entry, .. } => format!("build {}", job.entries[*entry].name),
    }
}

/// Copies one table or range; returns (rows, bytes, started).
async fn copy_one(
    job: &Job,
    source: &Client,
    target: &Client,
    index: usize,
    range: Option<(i64, Option<i64>)>,
) -> Result<(u64, u64, Instant), StepError> {
    let started = Instant::now();
    let freeze = if range.is_some() {
        Freeze::No
    } else {
        Freeze::Truncate
    };
    let copied = copy_table(
        &job.spec,
        &job.tables[index],
        job.formats[index],
        range,
        freeze,
        source,
        target,
        &job.progress,
        &job.step_id,
        &job.overall,
    )
    .await?;
    Ok((copied.rows, copied.bytes, started))
}

/// The two COPY statements for a table (or one ctid range of it).
fn copy_statements(
    table: &Table,
    format: Format,
    rule: Option<&TableRule>,
    range: Option<(i64, Option<i64>)>,
    freeze: bool,
) -> (String, String) {
    let columns = table
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    // What the source reads: each column, or the expression replacing it,
    // then the extras the transform reads.
    let mut select: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| match rule.and_then(|r| r.expressions.get(&i)) {
            Some(expression) => format!("{expression} AS {}", quote_ident(&c.name)),
            None => quote_ident(&c.name),
        })
        .collect();
    if let Some(rule) = rule {
        select.extend(
            rule.extras
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{e} AS \"_fp_extra_{i}\"")),
        );
    }
    let plain = rule.is_none_or(|r| r.expressions.is_empty() && r.extras.is_empty());
    let mut filters = Vec::new();
    if let Some((from, to)) = range {
        filters.push(format!("ctid >= '({from},0)'::tid"));
        if let Some(to) = to {
            filters.push(format!("ctid < '({to},0)'::tid"));
        }
    }
    if let Some(predicate) = rule.and_then(|r| r.where_clause.as_deref()) {
        filters.push(format!("({predicate})"));
    }
    let copy_out = if filters.is_empty() && plain {
        format!(
            "COPY {} ({columns}) TO STDOUT (FORMAT {})",
            table.qualified,
            format.sql()
        )
    } else {
        format!(
            "COPY (SELECT {} FROM ONLY {}{}) TO STDOUT (FORMAT {})",
            select.join(", "),
            table.qualified,
            if filters.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", filters.join(" AND "))
            },
            format.sql()
        )
    };
    let copy_in = format!(
        "COPY {} ({columns}) FROM STDIN (FORMAT {}{})",
        table.qualified,
        format.sql(),
        if freeze { ", FREEZE" } else { "" }
    );
    (copy_out, copy_in)
}

/// How a table's rows are written: `COPY … FREEZE` writes them already
/// frozen and all-visible, so the index builds and staging's first VACUUM
/// do not rewrite every page again; it needs the table created or emptied
/// in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freeze {
    /// Several ranges load one table at once: plain COPY.
    No,
    /// `BEGIN; TRUNCATE; COPY … FREEZE; COMMIT` on the worker's connection.
    Truncate,
    /// The table was created in the caller's open transaction.
    InTransaction,
}

/// Streams one table (or range) from `source` into `target`, applying the
/// table's rule and transform, with a progress bar of its own.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn copy_table(
    spec: &CloneSpec,
    table: &Table,
    format: Format,
    range: Option<(i64, Option<i64>)>,
    freeze: Freeze,
    source: &Client,
    target: &Client,
    progress: &Progress,
    step_id: &str,
    overall: &crate::progress::Bar,
) -> Result<copy::Copied, StepError> {
    let rule = spec.rules.get(&table.qualified);
    if rule.is_some_and(|r| r.truncate) {
        return Ok(copy::Copied::default());
    }
    let (copy_out, copy_in) = copy_statements(table, format, rule, range, freeze != Freeze::No);
    if freeze == Freeze::Truncate {
        target
            .batch_execute(&format!("BEGIN; TRUNCATE ONLY {}", table.qualified))
            .await
            .map_err(|e| {
                StepError::failed(format!(
                    "emptying {}: {}",
                    table.qualified,
                    describe(&e, None)
                ))
            })?;
    }
    let transform = rule.and_then(|r| r.transform.as_ref()).map(|f| f(format));
    let label = match range {
        Some((from, _)) => format!("{} (from block {from})", table.qualified),
        None => table.qualified.clone(),
    };
    let bar = progress.bar(step_id, &label, None, Unit::Bytes);
    let copied = copy::pump(
        source,
        &copy_out,
        target,
        &copy_in,
        format,
        transform,
        |n| {
            bar.inc(n);
            overall.inc(n);
        },
    )
    .await
    .map_err(|e| StepError::failed(format!("copying {}: {e}", table.qualified)))?;
    if freeze == Freeze::Truncate {
        target.batch_execute("COMMIT").await.map_err(|e| {
            StepError::failed(format!(
                "committing {}: {}",
                table.qualified,
                describe(&e, None)
            ))
        })?;
    }
    bar.finish();
    Ok(copied)
}

async fn run_entry(target: &Client, job: &Job, index: usize) -> Result<(), StepError> {
    let entry = &job.entries[index];
    let sql = format!("{}\n{}", job.preamble, entry.sql);
    // Foreign keys between two tables that point at each other, added at
    // once, can deadlock (each locks both tables); the server picks one to
    // fail, and it succeeds when run again.
    let mut attempts = 0;
    loop {
        match schema::apply(target, &sql).await {
            Ok(()) => return Ok(()),
            Err(schema::SchemaError::Sql { deadlock: true, .. }) if attempts < 5 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempts)).await;
            }
            Err(e) => {
                return Err(StepError::failed(format!("building `{}`: {e}", entry.name)));
            }
        }
    }
}

/// Sets every sequence of the new database to the source's value.
pub(crate) async fn set_sequences(
    snapshot: &Snapshot,
    target: &Client,
    spec: &CloneSpec,
) -> Result<usize, StepError> {
    let sequences = catalog::sequences(&snapshot.client)
        .await
        .map_err(sql_error(&spec.source_name, "reading sequences"))?;
    for sequence in &sequences {
        target
            .execute(
                "SELECT pg_catalog.setval($1::text::regclass, $2, $3)",
                &[
                    &sequence.qualified,
                    &sequence.last_value,
                    &sequence.is_called,
                ],
            )
            .await
            .map_err(sql_error(
                &spec.target_name,
                format!("setting sequence {}", sequence.qualified),
            ))?;
    }
    Ok(sequences.len())
}
