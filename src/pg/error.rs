//! The PostgreSQL layer's error: what failed, on which target, with the
//! server's own text. Steps and the clone convert it at their boundary; it
//! never names a type of theirs.

/// A failure talking to a PostgreSQL target.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Cancelled (Ctrl-C, or the run was aborted) while connecting or waiting.
    #[error("cancelled")]
    Cancelled,
    /// Connecting, or a statement, failed on the target named `target`;
    /// `message` says what was being done and the server's text.
    #[error("postgres target `{target}`: {message}")]
    Target { target: String, message: String },
    /// No maintenance database could be reached: each attempt's reason
    /// (`via \`postgres\`: …; via \`template1\`: …`).
    #[error("{}", .reasons.join("; "))]
    NoMaintenanceDatabase { reasons: Vec<String> },
}

/// Results of the PostgreSQL layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
