//! The backup layer's error: what failed (dumping, storing, finding,
//! checking, restoring, swapping), with the backup's name, the store's
//! printable location and the target, and the lower layer's error inside.
//! Secret-free: stores print their location without credentials, pg_dump's
//! and pg_restore's output is masked before it gets here.

use crate::pg;
use crate::pg::schema::SchemaError;
use crate::pg::swap::SwapError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pg(#[from] pg::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Cancelled (Ctrl-C, or another step failed): nothing half-written
    /// is left listed, nothing was swapped in.
    #[error("cancelled")]
    Cancelled,
    /// A backup of production: restoring it would put personal data that
    /// was never anonymized into the target.
    #[error(
        "backup `{backup}` was taken of the protected target `{source_target}`: its rows were never anonymized, so it is never restored (restore a backup of staging instead, or reset staging from production with `postgres.clone` and `anonymize:`)"
    )]
    Unscrubbed {
        backup: String,
        source_target: String,
    },
    #[error(
        "target `{target}`: the connection URL names no database; end it with the database, e.g. postgres://user@host/staging"
    )]
    NoDatabaseInUrl { target: String },
    #[error("no maintenance connection to the server of `{target}`: {reasons}")]
    NoMaintenance { target: String, reasons: pg::Error },
    /// Finding pg_dump (and pg_restore beside it).
    #[error("target `{target}`: {error}")]
    Tool { target: String, error: SchemaError },
    #[error("could not run {program}: {message}")]
    Spawn { program: String, message: String },
    /// pg_dump ended with an error; the upload was aborted.
    #[error(
        "target `{target}`: pg_dump failed ({status}); nothing was stored{}",
        quote(.stderr)
    )]
    DumpFailed {
        target: String,
        status: String,
        stderr: String,
    },
    /// pg_restore ended with an error; the new database was dropped.
    #[error(
        "target `{target}`: pg_restore of backup `{name}` into `{database}` failed ({status}); \
         the database it was to replace is untouched{}",
        quote(.stderr)
    )]
    RestoreFailed {
        target: String,
        name: String,
        database: String,
        status: String,
        stderr: String,
    },
    /// `pg_restore --list` could not read the dump.
    #[error("backup `{name}` in {location} is not a dump pg_restore can read ({status}){}", quote(.stderr))]
    Unreadable {
        name: String,
        location: String,
        status: String,
        stderr: String,
    },
    /// The store holds no backup at all (of the workflow, when given).
    #[error("no backups in {location}{}; take one with a `postgres.backup` step", .workflow.as_ref().map(|w| format!(" of workflow `{w}`")).unwrap_or_default())]
    NoBackups {
        location: String,
        workflow: Option<String>,
    },
    /// No manifest under that name.
    #[error("no backup `{name}` in {location}{}", suggest(.known))]
    NotFound {
        name: String,
        location: String,
        /// Names that do exist, closest first (at most a few).
        known: Vec<String>,
    },
    #[error("backup `{name}` in {location}: its manifest `{key}` cannot be read: {message}")]
    BadManifest {
        name: String,
        location: String,
        key: String,
        message: String,
    },
    /// The dump's bytes are not those its manifest recorded.
    #[error(
        "backup `{name}` in {location} is corrupted: its manifest records sha256 {expected} \
         ({expected_bytes} bytes), the stored dump has sha256 {found} ({found_bytes} bytes); \
         nothing was restored from it"
    )]
    Corrupted {
        name: String,
        location: String,
        expected: String,
        found: String,
        expected_bytes: u64,
        found_bytes: u64,
    },
    /// Creating, renaming, dropping or inspecting a database failed.
    #[error("postgres target `{target}`: database `{database}`: {error}")]
    Database {
        target: String,
        database: String,
        error: SwapError,
    },
    #[error(
        "target `{target}`: database `{database}` does not exist on its server; a restore replaces \
         an existing database: create it first (`createdb {database}`)"
    )]
    NoSuchDatabase { target: String, database: String },
    /// `error`, after which dropping the half-restored database failed too.
    #[error("{error}; also: dropping database `{database}` failed: {cleanup}")]
    CleanupFailed {
        error: Box<Error>,
        database: String,
        cleanup: SwapError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn is_cancelled(&self) -> bool {
        match self {
            Error::Cancelled | Error::Pg(pg::Error::Cancelled) => true,
            Error::CleanupFailed { error, .. } => error.is_cancelled(),
            _ => false,
        }
    }
}

fn quote(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", stderr.trim_end())
    }
}

fn suggest(known: &[String]) -> String {
    match known {
        [] => String::new(),
        [one] => format!("; did you mean `{one}`?"),
        many => format!(
            "; backups there include {} (`flightpath backups list` shows them all)",
            many.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
