//! Git pre-flight (git2): opening a repository target — a local path, or a
//! URL cloned bare into a cache under `.flightpath/git/` and fetched on each
//! run — and deciding which branches are merged where.
//!
//! It only reads the history. A fetch updates remote-tracking refs (as
//! `git fetch` does) and nothing else; no branch is moved and nothing is
//! pushed. Credentials come from the SSH agent or from the environment
//! variable a target names, are tried once, and are never shown.

mod merged;
mod repo;

pub use merged::{Branch, Merged, Query, Status, merged_branches};
pub use repo::{Opened, RepoSpec, open};

/// What went wrong with a repository. Every message names the target and
/// says how to fix it; none holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("git target `{target}`: `{location}` is not a git repository: {message}")]
    NotARepository {
        target: String,
        location: String,
        message: String,
    },
    #[error(
        "git target `{target}`: `{location}` is a shallow clone, and which branches are merged \
         cannot be decided without the whole history; fetch all of it (`git fetch --unshallow`, \
         or `fetch-depth: 0` on `actions/checkout` in GitHub Actions)"
    )]
    Shallow { target: String, location: String },
    #[error(
        "git target `{target}`: environment variable `{name}` (`token_env`) is not set; \
         export the token in it, or remove `token_env` to use the SSH agent"
    )]
    TokenMissing { target: String, name: String },
    #[error("git target `{target}`: {url} refused the credentials: {why}")]
    Credentials {
        target: String,
        url: String,
        why: String,
    },
    #[error("git target `{target}`: fetching from {url} failed: {message}")]
    Fetch {
        target: String,
        url: String,
        message: String,
    },
    #[error("git target `{target}`: the cache {path} could not be prepared: {message}")]
    Cache {
        target: String,
        path: String,
        message: String,
    },
    #[error(
        "git target `{target}`: no branch or commit `{name}`{hint}; \
         fetch first (`fetch: true`) if it exists on the remote"
    )]
    UnknownRef {
        target: String,
        name: String,
        /// ` (did you mean `origin/staging`?)`, or empty.
        hint: String,
    },
    #[error("git target `{target}`: {message}")]
    Read { target: String, message: String },
    #[error("cancelled")]
    Cancelled,
}
