//! The clone's error: what failed, with the target, database, table or
//! post-data entry it failed on, and the lower layer's own error inside.
//! The step converts it to its own error at its boundary (message and exit
//! code); nothing here names a step's type or formats for the terminal.

use crate::pg;
use crate::pg::copy::CopyError;
use crate::pg::schema::SchemaError;
use crate::pg::swap::SwapError;

/// A failure of a clone, its plan or its end-of-run work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting, or a statement, failed on a named target.
    #[error(transparent)]
    Pg(#[from] pg::Error),
    /// Cancelled (Ctrl-C, or another step failed): nothing was swapped in.
    #[error("cancelled")]
    Cancelled,
    /// A worker task panicked; the others were stopped.
    #[error("a clone worker panicked: {0}")]
    WorkerPanicked(String),
    /// Neither maintenance database of the staging server could be reached.
    #[error("no maintenance connection to the staging server: {reasons}")]
    NoMaintenance { target: String, reasons: pg::Error },
    /// The staging URL ends in no database name.
    #[error(
        "target `{target}`: the connection URL names no database; end it with the database to replace, e.g. postgres://user@host/staging"
    )]
    NoDatabaseInUrl { target: String },
    /// Creating, renaming, dropping or inspecting a database of the staging
    /// server failed.
    #[error("postgres target `{target}`: database `{database}`: {error}")]
    Database {
        target: String,
        database: String,
        error: SwapError,
    },
    /// Finding or running the pg_dump that reads the source's schema.
    #[error("source `{name}`: {error}")]
    PgDump { name: String, error: SchemaError },
    /// The pre-data section did not apply to the new database.
    #[error("applying the schema (pre-data): {0}")]
    Schema(SchemaError),
    /// One table's COPY failed (reading, transforming or writing).
    #[error("copying {table}: {error}")]
    Copy { table: String, error: CopyError },
    /// The transaction around one table's `COPY … FREEZE`.
    #[error("{doing} {table}: {message}")]
    Freeze {
        doing: &'static str,
        table: String,
        message: String,
    },
    /// A post-data entry (index, constraint, trigger, foreign key…).
    #[error("building `{entry}`: {error}")]
    Build { entry: String, error: SchemaError },
    /// The staging database a swap replaces is not there.
    #[error(
        "target `{target}`: database `{database}` does not exist on the staging server; create it first (`createdb {database}`)"
    )]
    NoSuchDatabase { target: String, database: String },
    /// The staging role lacks what `strategy: swap` needs; each entry says
    /// the grant that fixes it.
    #[error(
        "target `{target}`: `strategy: swap` needs more privileges: {}; or use `strategy: in-place`",
        .missing.join("; ")
    )]
    Privileges {
        target: String,
        missing: Vec<String>,
    },
    /// Sampling values for coverage evidence failed.
    #[error("sampling `{name}` for coverage: {message}")]
    Sampling { name: String, message: String },
    /// A rule's SQL (`where`, `except`, a constant) does not work on the
    /// source, or is not a plain read-only expression: refused.
    #[error("source `{name}`: a rule for table {table} does not work there: {why}")]
    RuleRefused {
        name: String,
        table: String,
        why: String,
    },
    /// Rules that do not fit the source, or uncovered columns under
    /// `unknown_columns: error`: refused before anything is written.
    #[error(
        "the anonymizer does not cover `{name}`; nothing was written:\n  - {}\n\
         Add a rule or a `keep:` entry for each column (run `flightpath scan` for a starter file), \
         or set `unknown_columns: warn` to copy uncovered columns as they are",
        .refusal.lines.join("\n  - ")
    )]
    Uncovered {
        name: String,
        refusal: crate::anonymize::bind::Refusal,
    },
    /// The source has foreign servers, user mappings or foreign tables and
    /// the rules do not say `foreign: skip`: refused before anything is
    /// written, naming each (never their options).
    #[error("{}", foreign_refusal(.name, .outside))]
    Foreign {
        name: String,
        outside: Box<crate::pg::catalog::Outside>,
    },
    /// Personal data in the text of schema objects (defaults, enum labels,
    /// functions, views, …) and the rules do not say `schema: keep`:
    /// refused before anything is written, naming each object and the
    /// kinds found (never the text).
    #[error("{}", schema_refusal(.name, .findings))]
    SchemaLiterals {
        name: String,
        findings: Vec<crate::anonymize::bind::SchemaFinding>,
    },
    /// More connections than the staging server allows: refused at plan
    /// time, before anything is written.
    #[error("{}", super::budget::too_many(.target, .workers, .limits))]
    TooManyConnections {
        target: String,
        workers: super::budget::Workers,
        limits: super::budget::ServerLimits,
    },
    /// Staging-only rows (`preserve: true`) could not be put into the new
    /// database; nothing was swapped in.
    #[error("carrying over the rows step `{step}` kept: {error}")]
    Carry {
        step: String,
        error: super::carry::CarryError,
    },
    /// The clone failed, and so did removing what it had created.
    #[error("{error}; also: cleaning up database `{database}` failed: {cleanup}")]
    CleanupFailed {
        error: Box<Error>,
        database: String,
        cleanup: SwapError,
    },
}

fn schema_refusal(name: &str, findings: &[crate::anonymize::bind::SchemaFinding]) -> String {
    let lines: Vec<String> = findings.iter().map(|f| f.describe()).collect();
    format!(
        "source `{name}`'s schema holds what looks like personal data, which pg_dump would copy \
         into staging as it is; nothing was written:\n  - {}\n\
         Change these objects in production so they name no one, or, if this is not personal data \
         (a shared support address, a documentation IP), add `schema: keep` to the rules \
         (`anonymize:`) to copy them as they are; comments are redacted either way",
        lines.join("\n  - ")
    )
}

fn foreign_refusal(name: &str, outside: &crate::pg::catalog::Outside) -> String {
    let mut lines: Vec<String> = Vec::new();
    lines.extend(
        outside
            .servers
            .iter()
            .map(|s| format!("foreign server {s}")),
    );
    lines.extend(
        outside
            .user_mappings
            .iter()
            .map(|m| format!("user mapping for {m}")),
    );
    lines.extend(
        outside
            .foreign_tables
            .iter()
            .map(|t| format!("foreign table {t}")),
    );
    lines.extend(
        outside
            .foreign_views
            .iter()
            .map(|v| format!("view {v}, which reads a foreign table (left out with it)")),
    );
    format!(
        "source `{name}` reaches other servers through objects a clone never recreates as they are \
         (staging would read the remote, and `pg_user_mappings` would show the mapping's password); \
         nothing was written:\n  - {}\n\
         Add `foreign: skip` to the rules (`anonymize:`) to leave them out of staging; \
         a foreign table's rows are never copied",
        lines.join("\n  - ")
    )
}

impl Error {
    /// `error`, with the failure to clean up after it (also logged).
    pub(crate) fn cleanup_failed(error: Error, database: &str, cleanup: SwapError) -> Error {
        tracing::warn!("cleaning up database `{database}` after a failed clone failed: {cleanup}");
        Error::CleanupFailed {
            error: Box::new(error),
            database: database.to_string(),
            cleanup,
        }
    }

    /// Whether this is (or wraps) a cancellation.
    pub fn is_cancelled(&self) -> bool {
        match self {
            Error::Cancelled | Error::Pg(pg::Error::Cancelled) => true,
            Error::CleanupFailed { error, .. } => error.is_cancelled(),
            _ => false,
        }
    }
}

/// Results of the clone.
pub type Result<T, E = Error> = std::result::Result<T, E>;
