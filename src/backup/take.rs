//! Taking a backup: `pg_dump -Fc` of the database, its stdout streamed into
//! the store ([`Store::put_stream`]: never staged whole on local disk),
//! then the manifest beside it — written last, so only a complete dump is
//! ever a backup — then retention. Before the dump, uploads this
//! workflow's earlier runs left unfinished (a kill -9) are aborted.
//!
//! Cancelling (dropping the future, or the token) drops the store's upload
//! (aborted, nothing listed) and the dump (pg_dump killed). pg_dump only
//! reads: a backup of a protected target is allowed.

use chrono::Utc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::manifest::{self, Manifest, Source};
use super::process::{Dump, version_of};
use super::{Error, Result};
use crate::pg::connect::connect;
use crate::pg::schema::{PgDump, find_pg_dump};
use crate::progress::{Progress, Unit};
use crate::storage::Store;

/// What to back up, and for whom.
#[derive(Debug, Clone)]
pub struct BackupSpec {
    /// The target's name (for messages and the manifest).
    pub target: String,
    pub url: String,
    pub workflow: String,
    pub run_id: String,
    /// Retention: how many of this workflow's backups to keep, the new one
    /// included; `None` keeps all.
    pub keep: Option<usize>,
    /// The target is protected (production): its manifest says so, and no
    /// restore takes it.
    pub protected: bool,
}

/// What the database looks like before the dump (the plan shows it too).
#[derive(Debug, Clone)]
pub struct Survey {
    pub database: String,
    pub server_version: String,
    pub server_major: u32,
    /// `pg_database_size`: the dump is usually a fraction of it.
    pub size: u64,
    pub tables: u64,
    pub rows_estimate: u64,
    pub pg_dump: PgDump,
    /// `postgres://host:port/database`.
    pub url: String,
}

/// What retention and clean-up would do (plan) or did (run).
#[derive(Debug, Clone, Default)]
pub struct Housekeeping {
    /// Abandoned uploads of this workflow's prefix (what a kill -9 leaves).
    pub abandoned: Vec<String>,
    /// Backups beyond `keep`, oldest first (names).
    pub expired: Vec<String>,
}

/// A backup taken.
#[derive(Debug, Clone)]
pub struct Taken {
    pub manifest: Manifest,
    /// Where the dump is: the store's location joined with its key.
    pub path: String,
    pub housekeeping: Housekeeping,
    pub parts: u32,
}

/// Connects and reads what the plan and the manifest say of the database.
pub async fn survey(spec: &BackupSpec, cancel: &CancellationToken) -> Result<Survey> {
    let client = connect(&spec.target, &spec.url, cancel).await?;
    let facts = facts(&client, &spec.target).await?;
    let pg_dump = find_pg_dump(facts.major).map_err(|error| Error::Tool {
        target: spec.target.clone(),
        error,
    })?;
    Ok(Survey {
        database: facts.database.clone(),
        server_version: facts.version,
        server_major: facts.major,
        size: facts.size,
        tables: facts.tables,
        rows_estimate: facts.rows,
        pg_dump,
        url: public_url(&spec.url, &facts.database),
    })
}

struct Facts {
    database: String,
    version: String,
    major: u32,
    size: u64,
    tables: u64,
    rows: u64,
}

async fn facts(client: &Client, target: &str) -> Result<Facts> {
    let row = client
        .query_one(
            "SELECT current_database()::text, current_setting('server_version'), \
                    current_setting('server_version_num')::int, \
                    pg_database_size(current_database()), \
                    (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                        AND n.nspname NOT LIKE 'pg\\_toast%'), \
                    (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_class c \
                      JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                        AND n.nspname NOT LIKE 'pg\\_toast%')",
            &[],
        )
        .await
        .map_err(crate::pg::connect::sql_error(
            target,
            "reading the database's size and tables",
        ))?;
    Ok(Facts {
        database: row.get(0),
        version: row.get(1),
        major: (row.get::<_, i32>(2) / 10_000) as u32,
        size: row.get::<_, i64>(3).max(0) as u64,
        tables: row.get::<_, i64>(4).max(0) as u64,
        rows: row.get::<_, i64>(5).max(0) as u64,
    })
}

/// `postgres://host:port/database` of a connection string: no user,
/// password or parameters (a socket directory shows as the host).
pub fn public_url(url: &str, database: &str) -> String {
    let config = crate::pg::connect::split_tls_params(url)
        .ok()
        .and_then(|(_, rest)| rest.parse::<tokio_postgres::Config>().ok());
    let host = config
        .as_ref()
        .and_then(|c| c.get_hosts().first().cloned())
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name,
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config
        .as_ref()
        .and_then(|c| c.get_ports().first().copied())
        .unwrap_or(5432);
    format!("postgres://{host}:{port}/{database}")
}

/// What the run would clean up and expire: abandoned uploads under the
/// workflow's prefix, and the backups beyond `keep` once one more is
/// complete (`adding`: the plan counts the one it would take).
pub async fn housekeeping(store: &Store, spec: &BackupSpec, adding: bool) -> Result<Housekeeping> {
    let prefix = format!("{}/", manifest::workflow_segment(&spec.workflow));
    let abandoned = store
        .abandoned(&prefix)
        .await?
        .into_iter()
        .map(|a| a.key)
        .collect();
    let mut names = own_backups(store, &spec.workflow).await?;
    if adding {
        names.push("~the new one".into());
    }
    let expired = match spec.keep {
        Some(keep) => manifest::beyond(names, keep),
        None => Vec::new(),
    };
    Ok(Housekeeping { abandoned, expired })
}

/// The names of the workflow's own backups: keys shaped like its manifests,
/// and nothing else under its prefix.
async fn own_backups(store: &Store, workflow: &str) -> Result<Vec<String>> {
    let prefix = format!("{}/", manifest::workflow_segment(workflow));
    Ok(store
        .list(&prefix)
        .collect()
        .await?
        .into_iter()
        .filter(|m| manifest::is_manifest_of(&m.key, workflow))
        .filter_map(|m| {
            m.key
                .strip_suffix(manifest::MANIFEST_EXT)
                .map(str::to_string)
        })
        .collect())
}

/// Takes the backup; see the module header.
pub async fn take(
    store: &Store,
    spec: &BackupSpec,
    progress: &Progress,
    step_id: &str,
    cancel: &CancellationToken,
) -> Result<Taken> {
    let survey = survey(spec, cancel).await?;
    // What a killed earlier run left: never listed, but it holds space
    // (and S3 bills open multipart uploads). Only when no other backup of
    // this workflow is uploading now: its upload looks the same.
    let (in_flight, alone) = in_flight(spec, cancel).await?;
    let prefix = format!("{}/", manifest::workflow_segment(&spec.workflow));
    let mut aborted = Vec::new();
    if alone {
        for abandoned in store.abandoned(&prefix).await? {
            store.abort(&abandoned).await?;
            aborted.push(abandoned.key);
        }
    }
    // From here on only shared: another backup may start its upload.
    let _in_flight = share(in_flight, backup_lock_key(&spec.workflow), alone).await;
    let created = Utc::now();
    let name = manifest::name_for(&spec.workflow, created, &spec.run_id);
    let dump_key = manifest::dump_key(&name);
    let pg_dump_version = version_of(&survey.pg_dump.path).await;
    let bar = progress.bar(step_id, "dumping", Some(survey.size), Unit::Bytes);
    let (dump, failure) = Dump::start(&survey.pg_dump, &spec.url)?;
    // Dropping the upload on cancel aborts it, and drops the dump,
    // which kills pg_dump.
    let show = |n| bar.set_position(n);
    let written = tokio::select! {
        written = store.put_stream(&dump_key, dump, &show) => written,
        () = cancel.cancelled() => {
            abort_own(store, &dump_key).await;
            return Err(Error::Cancelled);
        }
    };
    bar.finish();
    let written = match (written, failure.get()) {
        (_, Some(failed)) => {
            return Err(Error::DumpFailed {
                target: spec.target.clone(),
                status: failed.status,
                stderr: failed.stderr,
            });
        }
        (Ok(written), None) => written,
        (Err(e), None) => return Err(e.into()),
    };
    let manifest = Manifest {
        format: manifest::FORMAT,
        name: name.clone(),
        workflow: spec.workflow.clone(),
        run_id: spec.run_id.clone(),
        created,
        source: Source {
            target: Some(spec.target.clone()),
            url: survey.url.clone(),
            database: survey.database.clone(),
            server_version: survey.server_version.clone(),
            protected: spec.protected,
        },
        pg_dump_version,
        pg_dump_major: survey.pg_dump.major,
        dump: dump_key.clone(),
        bytes: written.bytes,
        sha256: written.sha256.clone(),
        tables: survey.tables,
        rows_estimate: survey.rows_estimate,
    };
    if cancel.is_cancelled() {
        let _ = store.delete(&dump_key).await;
        return Err(Error::Cancelled);
    }
    if let Err(e) = store
        .put_bytes(&manifest::manifest_key(&name), manifest.to_json())
        .await
    {
        // A dump without its manifest is no backup: do not leave it.
        let _ = store.delete(&dump_key).await;
        return Err(e.into());
    }
    let expired = expire(store, spec, &name).await?;
    Ok(Taken {
        path: path_of(store, &dump_key),
        manifest,
        housekeeping: Housekeeping {
            abandoned: aborted,
            expired,
        },
        parts: written.parts,
    })
}

/// The two halves of the advisory lock that backups of one database by one
/// workflow share ("FPBK", and a hash of the workflow's name).
const BACKUP_LOCK_CLASS: i32 = 0x4650_424b;

fn backup_lock_key(workflow: &str) -> i32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(workflow.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x7fff_ffff
}

/// Marks this backup as in flight, on the backed-up database itself, so two
/// runs of one workflow (a schedule and a hand-started run, on two
/// machines) never take each other's upload for an abandoned one. The one
/// that finds no other holder gets the lock exclusively (`true`) and may
/// clean up what killed runs left while it holds it; then [`share`] turns
/// it into the shared lock every backup holds while it uploads, so a
/// second backup waits only for the first one's clean-up. The lock is the
/// session's: it ends with the connection, or with the process. A server
/// that refuses advisory locks (a standby) only means no clean-up.
async fn in_flight(
    spec: &BackupSpec,
    cancel: &CancellationToken,
) -> Result<(tokio_postgres::Client, bool)> {
    let client = connect(&spec.target, &spec.url, cancel).await?;
    let key = backup_lock_key(&spec.workflow);
    let alone = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&BACKUP_LOCK_CLASS, &key],
        )
        .await
        .map(|row| row.get::<_, bool>(0))
        .unwrap_or(false);
    Ok((client, alone))
}

/// The shared lock of an uploading backup (granted at once next to our own
/// exclusive one, which is then let go; otherwise waiting only for another
/// run's clean-up).
async fn share(client: tokio_postgres::Client, key: i32, alone: bool) -> tokio_postgres::Client {
    let _ = client
        .query_one(
            "SELECT pg_advisory_lock_shared($1, $2)",
            &[&BACKUP_LOCK_CLASS, &key],
        )
        .await;
    if alone {
        let _ = client
            .query_one(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&BACKUP_LOCK_CLASS, &key],
            )
            .await;
    }
    client
}

/// After a cancel dropped the upload (its drop starts the abort, which a
/// process about to exit may not finish): abort what is still open at
/// `key`, waiting a few seconds at most; what remains is the next
/// backup's to clean up.
async fn abort_own(store: &Store, key: &str) {
    let abort = async {
        let Ok(open) = store.abandoned(key).await else {
            return;
        };
        for upload in open.iter().filter(|upload| upload.key == key) {
            let _ = store.abort(upload).await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), abort).await;
}

/// Deletes this workflow's backups beyond `keep`, oldest first: the
/// manifest first (from then on it is no backup), then the dump its
/// manifest names when that is the dump beside it. The backup just taken
/// (`taken`) is one of the `keep` and never a candidate, whatever the
/// clock says of the others; and a backup is this workflow's only when its
/// manifest says so (two workflow names can share a key segment).
async fn expire(store: &Store, spec: &BackupSpec, taken: &str) -> Result<Vec<String>> {
    let Some(keep) = spec.keep else {
        return Ok(Vec::new());
    };
    let mut others = Vec::new();
    for name in own_backups(store, &spec.workflow).await? {
        if name == taken {
            continue;
        }
        let bytes = store.get_bytes(&manifest::manifest_key(&name)).await?;
        let ours = serde_json::from_slice::<manifest::Manifest>(&bytes)
            .is_ok_and(|m| m.workflow == spec.workflow);
        if ours {
            others.push(name);
        }
    }
    let expired = manifest::beyond(others, keep.saturating_sub(1));
    for name in &expired {
        store.delete(&manifest::manifest_key(name)).await?;
        store.delete(&manifest::dump_key(name)).await?;
    }
    Ok(expired)
}

/// `location/key`, with the key before any `?query` of the location.
pub fn path_of(store: &Store, key: &str) -> String {
    let location = store.location();
    match location.split_once('?') {
        Some((base, query)) => format!("{}/{key}?{query}", base.trim_end_matches('/')),
        None => format!("{}/{key}", location.trim_end_matches('/')),
    }
}
