//! Media sync: an incremental copy between two stores (S3 buckets,
//! directories) on the storage layer backups also use — server-side inside
//! one S3 service, streamed otherwise — with the fail-closed rule for
//! files: a document arrives in staging as a placeholder unless a `copy:`
//! glob names it.
//!
//! [`select`] decides which keys and what treatment, [`placeholder`] makes
//! the stand-ins, [`cache`] remembers a directory's MD5s, [`sync`] merges
//! the two listings and does the work. Never prints, never names a step.

pub mod cache;
mod digest;
pub mod placeholder;
pub mod select;
pub mod sync;

pub use sync::{Action, Counts, Outcome, Sides, SyncSpec, sync};

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A listing failed part-way: nothing is deleted, whatever was copied
    /// stays.
    #[error("{error}; nothing was deleted")]
    Listing { error: StorageError },
    #[error(
        "{count} objects would be deleted from {target} ({target_objects} there in all), more than \
         `max_delete` allows ({limit}); check the prefixes and the include/exclude globs, then raise \
         `max_delete` or run with --yes-delete-many"
    )]
    TooManyDeletes {
        count: u64,
        limit: u64,
        target_objects: u64,
        target: String,
    },
    #[error("cancelled")]
    Cancelled,
}
