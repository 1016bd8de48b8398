//! Git (git2): opening a repository target — a local path, or a URL cloned
//! bare into a cache under `.flightpath/git/` and fetched on each run —,
//! deciding which branches are merged where, and resetting a branch.
//!
//! Reading never moves a branch: a fetch updates remote-tracking refs (as
//! `git fetch` does) and nothing else. Only [`reset`] writes: it builds the
//! new commits without a working tree and moves one ref at the end (a push
//! with a lease, or the repository's own branch). Credentials come from the
//! SSH agent or from the environment variable a target names, are tried
//! once, and are never shown.

mod merged;
mod repo;
pub mod reset;

pub use merged::{Branch, Merged, Query, Status, merged_branches};
pub use repo::{Opened, RepoSpec, is_url, open};

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
    #[error(
        "git target `{target}`: merging `{branch}` into `{into}` conflicts in {}; nothing was \
         changed. Merge the reset's base into `{branch}` and resolve it there, or leave \
         `{branch}` out of `merge`",
        paths.join(", ")
    )]
    MergeConflict {
        target: String,
        branch: String,
        into: String,
        /// The conflicting files, sorted.
        paths: Vec<String>,
    },
    #[error(
        "git target `{target}`: `{branch}` moved since the plan (the plan read it at \
         {expected}, it is {found} now): someone pushed meanwhile, so nothing was pushed. \
         Run again to plan the reset against what it holds now"
    )]
    LeaseMoved {
        target: String,
        branch: String,
        /// The short id the plan read, or `absent`.
        expected: String,
        /// `at <short id>`, or `deleted`.
        found: String,
    },
    #[error(
        "git target `{target}`: {url} refused the update of `{branch}`: {why}; the remote's \
         branch was not changed. A reset pushes with force: allow force pushes to `{branch}` \
         for this account (branch protection, `receive.denyNonFastForwards`)"
    )]
    PushRefused {
        target: String,
        url: String,
        branch: String,
        why: String,
    },
    #[error("git target `{target}`: pushing to {url} failed: {message}")]
    Push {
        target: String,
        url: String,
        message: String,
    },
    #[error(
        "git target `{target}`: `{branch}` is checked out in `{location}`, and moving it would \
         leave that working tree behind; check out another branch there, or push the reset \
         instead (`push: true`)"
    )]
    CheckedOut {
        target: String,
        location: String,
        branch: String,
    },
    #[error("cancelled")]
    Cancelled,
}
