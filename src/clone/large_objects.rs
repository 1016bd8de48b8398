//! Large objects under `large_objects: copy`: copied from the snapshot into
//! the database being loaded, after its schema and before staging sees it
//! (the swap, or the in-place transaction's commit). Without the rule
//! nothing is copied and the plan and the report say how many were left
//! out. Reads the source only through `pg::large_objects`, inside the
//! snapshot's read-only transaction.

use tokio_postgres::Client;

use super::error::Result;
use super::spec::CloneSpec;
use crate::pg::connect::sql_error;
use crate::pg::large_objects::{self, Copied, LargeObjectError};

/// Copies the source's large objects into `target` when the rules say
/// `large_objects: copy` (`None` otherwise). `replace` first unlinks the
/// ones `target` holds (an in-place reload keeps the database, and large
/// objects belong to no schema it drops).
pub(crate) async fn copy_if_ruled(
    spec: &CloneSpec,
    source: &Client,
    target: &Client,
    replace: bool,
) -> Result<Option<Copied>> {
    if !spec.large_objects_copy() {
        return Ok(None);
    }
    let what = "copying large objects (`large_objects: copy`)";
    if replace {
        target
            .batch_execute(
                "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata",
            )
            .await
            .map_err(sql_error(&spec.target_name, what))?;
    }
    match large_objects::copy_all(source, target).await {
        Ok(copied) => Ok(Some(copied)),
        Err(e @ LargeObjectError::Read { .. }) => {
            let mapped = sql_error(&spec.source_name, format!("{what}, {e}"));
            Err(mapped(clone_error(e)).into())
        }
        Err(e @ LargeObjectError::Write { .. }) => {
            let mapped = sql_error(&spec.target_name, format!("{what}, {e}"));
            Err(mapped(clone_error(e)).into())
        }
    }
}

fn clone_error(e: LargeObjectError) -> tokio_postgres::Error {
    match e {
        LargeObjectError::Read { error, .. } | LargeObjectError::Write { error, .. } => error,
    }
}
