//! The named endpoints of a workflow (`targets:`), as steps see them.

use crate::syntax::yaml::Span;

use super::Facet;

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
    /// The S3 key pair of `media:` (without one, the AWS chain).
    pub media_credentials: Option<MediaCredentials>,
    /// Facets written as `heroku://APP`, resolved from Heroku's API
    /// before a run or a plan (until then `postgres` / `media` hold the
    /// `heroku://` form).
    pub heroku: Vec<HerokuUse>,
    /// May be read, never written.
    pub protected: bool,
    /// `same_server_as: <target>`: this target is another database on the
    /// server of that (protected) target, on purpose. Without it, writing a
    /// database on a protected target's server is refused.
    pub same_server_as: Option<String>,
    pub span: Span,
}

/// Where the S3 key pair of a `media:` target comes from.
#[derive(Clone, PartialEq)]
pub enum MediaCredentials {
    /// `access_key_env` / `secret_key_env`: the environment variables
    /// holding it, read when the store is opened.
    Env { access: String, secret: String },
    /// Resolved (from a Heroku app's Bucketeer add-on): the values, secrets
    /// registered with the redactor.
    Given { access: String, secret: String },
}

impl std::fmt::Debug for MediaCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaCredentials::Env { access, secret } => f
                .debug_struct("Env")
                .field("access", access)
                .field("secret", secret)
                .finish(),
            MediaCredentials::Given { .. } => f.write_str("Given(***)"),
        }
    }
}

/// A facet of a target given as `heroku://APP`.
#[derive(Debug, Clone, PartialEq)]
pub struct HerokuUse {
    pub facet: Facet,
    pub app: String,
    /// Where the `heroku://` value is written.
    pub span: Span,
}
