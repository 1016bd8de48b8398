//! The storage layer's error: which store (its secret-free location), which
//! key, what failed and how to fix it. Messages from the AWS SDK are kept
//! (they say what the server answered) but masked; the callers above
//! convert this type at their boundary.

/// A failure of a [`crate::storage::Store`].
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The location is not a store URL or directory this layer can open.
    #[error("store `{location}`: {problem}")]
    InvalidLocation { location: String, problem: String },
    /// A key (or listing prefix) that could escape the store or is not a
    /// plain `/`-separated path.
    #[error(
        "store `{location}`: key `{key}` {problem}; keys are `/`-separated relative paths without empty, `.` or `..` segments"
    )]
    InvalidKey {
        location: String,
        key: String,
        problem: String,
    },
    #[error("store `{location}`: no object `{key}` (list the store to see what it holds)")]
    NotFound { location: String, key: String },
    /// A local file operation failed.
    #[error("store `{location}`: {action} `{key}` failed: {source}")]
    Io {
        location: String,
        key: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "store `{location}`: bucket `{bucket}` does not exist (check the bucket name in the URL, and `endpoint=`/`region=` if it lives elsewhere)"
    )]
    NoSuchBucket { location: String, bucket: String },
    #[error(
        "store `{location}`: {action} `{key}` was refused: {message} (check the credentials of the AWS chain — AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE — and that they may use this bucket)"
    )]
    AccessDenied {
        location: String,
        key: String,
        action: &'static str,
        message: String,
    },
    /// No AWS credentials could be found.
    #[error(
        "store `{location}`: {action} `{key}`: no AWS credentials: {message} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    )]
    NoCredentials {
        location: String,
        key: String,
        action: &'static str,
        message: String,
    },
    /// The endpoint could not be reached (wrong host or port, server down,
    /// TLS failure, timeout).
    #[error(
        "store `{location}`: {action} `{key}`: could not reach {endpoint}: {message} (check `endpoint=` in the store URL and that the server is running)"
    )]
    Unreachable {
        location: String,
        key: String,
        action: &'static str,
        endpoint: String,
        message: String,
    },
    /// Any other answer of the S3 server.
    #[error("store `{location}`: {action} `{key}` failed: {message}")]
    S3 {
        location: String,
        key: String,
        action: &'static str,
        message: String,
    },
    /// A stream longer than 10,000 parts of the multipart schedule hold.
    #[error(
        "store `{location}`: `{key}` is larger than a multipart upload can hold ({limit} bytes in 10,000 parts); split the object"
    )]
    TooLarge {
        location: String,
        key: String,
        limit: u64,
    },
    /// An operation this pair of stores cannot do (a programming error of
    /// the caller, who asks [`crate::storage::Store::same_service`] first).
    #[error("store `{location}`: {what} is not possible here")]
    Unsupported { location: String, what: String },
}

impl StorageError {
    /// Whether this is [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}
