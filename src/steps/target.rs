//! The named endpoints of a workflow (`targets:`), as steps see them.

use crate::syntax::yaml::Span;

/// A named endpoint steps refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    /// A PostgreSQL connection URL.
    pub postgres: Option<String>,
    /// `s3://bucket/prefix?…` or a local directory.
    pub media: Option<String>,
    /// A path or URL of a git repository.
    pub git: Option<String>,
    /// `fetch: true`: a local `git:` path is fetched before it is read (a
    /// URL is always fetched into its cache).
    pub fetch: bool,
    /// `token_env: NAME`: the environment variable holding the token for an
    /// HTTPS `git:` URL (without it, the SSH agent is used).
    pub token_env: Option<String>,
    /// `access_key_env` / `secret_key_env`: the environment variables
    /// holding the S3 key pair of `media:` (without them, the AWS chain).
    pub media_credentials: Option<(String, String)>,
    /// May be read, never written.
    pub protected: bool,
    /// `same_server_as: <target>`: this target is another database on the
    /// server of that (protected) target, on purpose. Without it, writing a
    /// database on a protected target's server is refused.
    pub same_server_as: Option<String>,
    pub span: Span,
}
