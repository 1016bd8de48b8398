//! One run at a time per workflow and set of written targets. The lock is an
//! OS file lock (`flock`) on `.flightpath/locks/<key>.lock`, so a crashed run
//! never leaves it held; the file's content names the holder for the error.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
}
