//! One run at a time per written database, wherever the runs start.
//!
//! The lock that counts is on the server: for every postgres target a run
//! writes, one connection to that server's maintenance database (`postgres`,
//! else `template1`) holds a session-level advisory lock keyed by the
//! written database's name ([`server_key`]) for the life of the run. Two
//! workflows, two directories or two machines writing the same staging
//! meet on that lock; a run that dies closes its connection and the server
//! releases the lock. The lock connection's `application_name` names the
//! run (`flightpath run <run-id> on <host> pid <pid>`), so a refused run can
//! say who holds it (`pg_locks` joined to `pg_stat_activity`).
//!
//! The lock is not taken on the staging database itself: the clone's swap
//! ends every session there, which would end the lock with it.
//!
//! Dry runs take no lock and are not blocked by one: a plan only reads, so
//! it cannot undo another run's work, and a plan during a run must not make
//! that run's next attempt fail.
//!
//! Besides, an OS file lock (`flock`) on `.flightpath/locks/<key>.lock`
//! keeps two runs of one workflow in one directory apart even when they
//! write no database (media, git); the file's content names the holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::pg::url;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub run_id: String,
    pub pid: u32,
    pub workflow: String,
    pub started: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another run of workflow `{}` against the same targets is in progress: run {} (pid {}, started {})",
        holder.workflow, holder.run_id, holder.pid, holder.started.format("%Y-%m-%d %H:%M:%S UTC")
    )]
    Held { holder: Holder },
    #[error("another run holds the lock {path} (holder unknown)")]
    HeldUnknown { path: PathBuf },
    #[error(
        "another run is writing database `{database}` (target `{target}`) on its server: {holder}; \
         wait for it to end"
    )]
    ServerHeld {
        target: String,
        database: String,
        /// The holding session's `application_name` ("flightpath run … on … pid …").
        holder: String,
    },
    /// The lock could not be taken (no connection, no permission).
    #[error("cannot take the run lock for target `{target}` on its server: {message}")]
    Server { target: String, message: String },
    #[error("cannot create the lock file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held for the life of the run; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// The lock key: the workflow name and the identity of what it writes.
pub fn key(workflow: &str, written: &[String]) -> String {
    let safe: String = workflow
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{:016x}", fnv1a(written.join("\n").as_bytes()))
}

pub fn acquire(locks_dir: &Path, key: &str, holder: &Holder) -> Result<RunLock, LockError> {
    let path = locks_dir.join(format!("{key}.lock"));
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(locks_dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut content = String::new();
            let _ = file.read_to_string(&mut content);
            return Err(match serde_json::from_str(&content) {
                Ok(holder) => LockError::Held { holder },
                Err(_) => LockError::HeldUnknown { path },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let content = serde_json::to_string(holder).expect("holder serializes");
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(content.as_bytes()))
        .and_then(|()| file.flush())
        .map_err(io)?;
    Ok(RunLock { _file: file })
}

/// The first half of every flightpath advisory lock key ("FPLK"), so its
/// locks are told apart from the application's own.
pub const LOCK_CLASS: i32 = 0x4650_4c4b;

/// Held for the life of the run; dropping it closes the connection, and the
/// server releases the lock.
pub struct ServerLock {
    _client: Option<Client>,
}

/// The second half of the advisory lock key of a written database: a stable
/// hash of its name (31 bits, so it reads the same as `int4` and as `oid`).
pub fn server_key(database: &str) -> i32 {
    (fnv1a(database.as_bytes()) & 0x7fff_ffff) as i32
}

/// `flightpath run <run-id> on <host> pid <pid>`, within the 63 bytes the
/// server keeps of an `application_name` (a long host name is cut, never
/// the run id or the pid).
pub fn holder_name(run_id: &str, host: &str, pid: u32) -> String {
    let prefix = format!("flightpath run {run_id} on ");
    let suffix = format!(" pid {pid}");
    let room = 63usize.saturating_sub(prefix.len() + suffix.len());
    let mut host = host.to_string();
    while host.len() > room {
        host.pop();
    }
    format!("{prefix}{host}{suffix}")
}

/// This machine's name, for telling people where a run is.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "an unknown host".into())
}

/// The database a connection string names: its `dbname`, else (as libpq
/// does) the user's name.
fn database_name(url_text: &str) -> String {
    if let Some(db) = url::database_of(url_text) {
        return db;
    }
    crate::pg::connect::split_tls_params(url_text)
        .ok()
        .and_then(|(_, rest)| rest.parse::<tokio_postgres::Config>().ok())
        .and_then(|config| config.get_user().map(str::to_string))
        .unwrap_or_else(|| "postgres".into())
}

/// Takes the advisory lock for the database of `target` (at `target_url`)
/// on its server, as `holder` ([`holder_name`]). Refused when another
/// session holds it; a lock this run already holds (two target names for
/// one database) is not taken twice.
pub async fn acquire_server(
    target: &str,
    target_url: &str,
    holder: &str,
    cancel: &CancellationToken,
) -> Result<ServerLock, LockError> {
    let failed = |message: String| LockError::Server {
        target: target.to_string(),
        message,
    };
    let database = database_name(target_url);
    let key = server_key(&database);
    let client = maintenance(target, target_url, cancel)
        .await
        .map_err(failed)?;
    let sql_failed = |e: tokio_postgres::Error| failed(crate::pg::connect::describe(&e, None));
    client
        .query_one(
            "SELECT set_config('application_name', $1, false)",
            &[&holder],
        )
        .await
        .map_err(sql_failed)?;
    let taken: bool = client
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
        .await
        .map_err(sql_failed)?
        .get(0);
    if taken {
        return Ok(ServerLock {
            _client: Some(client),
        });
    }
    let holders = client
        .query(
            "SELECT a.pid, a.application_name FROM pg_locks l \
             LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
               AND l.classid = $1 AND l.objid = $2 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&(LOCK_CLASS as u32), &(key as u32)],
        )
        .await
        .map_err(sql_failed)?;
    let names: Vec<String> = holders
        .iter()
        .map(|row| {
            let pid: Option<i32> = row.get(0);
            match row.get::<_, Option<String>>(1) {
                Some(name) if !name.is_empty() => name,
                _ => format!(
                    "a session the server does not show to this role (pid {})",
                    pid.map_or("unknown".into(), |p| p.to_string())
                ),
            }
        })
        .collect();
    if names.iter().any(|name| name == holder) {
        // This run already holds it, under another target's name.
        return Ok(ServerLock { _client: None });
    }
    Err(LockError::ServerHeld {
        target: target.to_string(),
        database,
        holder: if names.is_empty() {
            "a session that has just ended; try again".into()
        } else {
            names.join(", ")
        },
    })
}

/// A connection to the maintenance database of `target_url`'s server.
async fn maintenance(
    target: &str,
    target_url: &str,
    cancel: &CancellationToken,
) -> Result<Client, String> {
    match crate::pg::connect::maintenance(target, target_url, cancel).await {
        Ok((client, _)) => Ok(client),
        Err(crate::pg::Error::Cancelled) => Err("cancelled".into()),
        Err(reasons) => Err(reasons.to_string()),
    }
}

/// FNV-1a: a stable hash for file names (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let holder = Holder {
            run_id: "run-1".into(),
            pid: 42,
            workflow: "reset".into(),
            started: chrono::Utc::now(),
        };
        let k = key("reset", &["staging".into()]);
        let lock = acquire(dir.path(), &k, &holder).unwrap();
        let err = acquire(
            dir.path(),
            &k,
            &Holder {
                run_id: "run-2".into(),
                ..holder.clone()
            },
        )
        .unwrap_err();
        match err {
            LockError::Held { holder: h } => assert_eq!(h.run_id, "run-1"),
            other => panic!("unexpected {other}"),
        }
        drop(lock);
        assert!(acquire(dir.path(), &k, &holder).is_ok());
    }

    #[test]
    fn holder_name_cuts_the_host_never_the_run_or_the_pid() {
        let name = holder_name("20261201T213000Z-3fa9", &"h".repeat(100), 4_194_304);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with("flightpath run 20261201T213000Z-3fa9 on hhh"));
        assert!(name.ends_with("h pid 4194304"));
        assert_eq!(
            holder_name("r-1", "ci-7", 42),
            "flightpath run r-1 on ci-7 pid 42"
        );
    }

    #[test]
    fn server_key_is_fixed_across_versions() {
        // Runs of two flightpath versions must meet on the same key.
        assert_eq!(server_key("staging"), 96_461_222);
        assert!(server_key("a database with a long name") >= 0);
    }
}
