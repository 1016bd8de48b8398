//! Copying large objects (`pg_largeobject`) from the source's snapshot into
//! a new database, for `large_objects: copy`: each object keeps its oid
//! (the rows that reference it hold the oid) and, as the schema does under
//! `pg_dump --no-owner --no-acl`, belongs to the role that writes it, with
//! no ACL of its own.
//!
//! The source is only read, with `lo_get(oid, offset, length)` in chunks of
//! [`CHUNK_BYTES`], inside the snapshot's read-only transaction: the
//! large-object ACLs are respected (an object the role may not read is an
//! error, not a gap), and a 1 GB object never sits in memory whole. This
//! module never decides whether to copy; the clone does.

use tokio_postgres::Client;

/// How much of a large object one round trip carries.
pub const CHUNK_BYTES: i32 = 1 << 20;

/// The side of the copy that failed, with the object's oid (0 before the
/// first object); the database error is its source.
#[derive(Debug, thiserror::Error)]
pub enum LargeObjectError {
    #[error("reading large object {oid}")]
    Read {
        oid: u32,
        #[source]
        error: tokio_postgres::Error,
    },
    #[error("writing large object {oid}")]
    Write {
        oid: u32,
        #[source]
        error: tokio_postgres::Error,
    },
}

/// How many large objects were copied, and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub objects: u64,
    pub bytes: u64,
}

/// Copies every large object of `source` (a session in the snapshot) into
/// `target` (the new database, which has none), oid for oid.
pub async fn copy_all(source: &Client, target: &Client) -> Result<Copied, LargeObjectError> {
    let oids: Vec<u32> = source
        .query(
            "SELECT oid FROM pg_catalog.pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .await
        .map_err(|error| LargeObjectError::Read { oid: 0, error })?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let read = source
        .prepare("SELECT pg_catalog.lo_get($1::oid, $2::int8, $3::int4)")
        .await
        .map_err(|error| LargeObjectError::Read { oid: 0, error })?;
    let create = target
        .prepare("SELECT pg_catalog.lo_create($1::oid)")
        .await
        .map_err(|error| LargeObjectError::Write { oid: 0, error })?;
    let write = target
        .prepare("SELECT pg_catalog.lo_put($1::oid, $2::int8, $3::bytea)")
        .await
        .map_err(|error| LargeObjectError::Write { oid: 0, error })?;
    let mut copied = Copied::default();
    for oid in oids {
        target
            .query_one(&create, &[&oid])
            .await
            .map_err(|error| LargeObjectError::Write { oid, error })?;
        let mut offset: i64 = 0;
        loop {
            let chunk: Vec<u8> = source
                .query_one(&read, &[&oid, &offset, &CHUNK_BYTES])
                .await
                .map_err(|error| LargeObjectError::Read { oid, error })?
                .get(0);
            if chunk.is_empty() {
                break;
            }
            target
                .query_one(&write, &[&oid, &offset, &chunk])
                .await
                .map_err(|error| LargeObjectError::Write { oid, error })?;
            offset += chunk.len() as i64;
            copied.bytes += chunk.len() as u64;
            if chunk.len() < CHUNK_BYTES as usize {
                break;
            }
        }
        copied.objects += 1;
    }
    Ok(copied)
}
