//! After (or alongside) the data: one post-data entry of pg_dump (index,
//! constraint, trigger, foreign key, comment…) run on a target connection,
//! and every sequence set from the source's value in the snapshot. Never
//! writes to the source; which entry runs when is the queue's business.

use std::time::Duration;

use tokio_postgres::Client;

use super::error::{Error, Result};
use super::spec::CloneSpec;
use crate::pg::catalog;
use crate::pg::connect::sql_error;
use crate::pg::schema::{self, Entry};
use crate::pg::snapshot::Snapshot;

/// Runs one post-data entry after the `preamble` its section needs.
pub(crate) async fn run_entry(target: &Client, preamble: &str, entry: &Entry) -> Result<()> {
    let sql = format!("{preamble}\n{}", entry.sql);
    // Foreign keys between two tables that point at each other, added at
    // once, can deadlock (each locks both tables); the server picks one to
    // fail, and it succeeds when run again.
    let mut attempts = 0;
    loop {
        match schema::apply(target, &sql).await {
            Ok(()) => return Ok(()),
            Err(schema::SchemaError::Sql { deadlock: true, .. }) if attempts < 5 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempts)).await;
            }
            Err(error) => {
                return Err(Error::Build {
                    entry: entry.name.clone(),
                    error,
                });
            }
        }
    }
}

/// Sets every sequence of the new database to the source's value.
pub(crate) async fn set_sequences(
    snapshot: &Snapshot,
    target: &Client,
    spec: &CloneSpec,
) -> Result<usize> {
    let sequences = catalog::sequences(&snapshot.client)
        .await
        .map_err(sql_error(&spec.source_name, "reading sequences"))?;
    for sequence in &sequences {
        target
            .execute(
                "SELECT pg_catalog.setval($1::text::regclass, $2, $3)",
                &[
                    &sequence.qualified,
                    &sequence.last_value,
                    &sequence.is_called,
                ],
            )
            .await
            .map_err(sql_error(
                &spec.target_name,
                format!("setting sequence {}", sequence.qualified),
            ))?;
    }
    Ok(sequences.len())
}
