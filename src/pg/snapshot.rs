//! Read-only sessions on the source, all seeing one instant. A coordinator
//! opens a `REPEATABLE READ, READ ONLY` transaction and exports its snapshot;
//! every worker imports it, so every table (and pg_dump's schema) comes from
//! the same moment and foreign keys hold. Every source session also sets
//! `default_transaction_read_only = on`: production is never written.

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::pg::Error;
use crate::pg::connect::{connect, sql_error};
use crate::pg::ident::quote_literal;

/// Session settings for every source connection.
const READ_ONLY_SESSION: &str = "SET default_transaction_read_only = on; \
     SET statement_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; \
     SET lock_timeout = 0";

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// The coordinator: holds the exported snapshot open while workers use it.
pub struct Snapshot {
    pub client: Client,
    pub id: String,
}

/// Opens a read-only session on the source.
pub async fn read_only_session(
    target: &str,
    url: &str,
    cancel: &CancellationToken,
) -> Result<Client, Error> {
    let client = connect(target, url, cancel).await?;
    client
        // Also fixes the text forms of dates, times and floats, which the
        // anonymizer decodes on tables that travel in the text format.
        .batch_execute(&format!(
            "{READ_ONLY_SESSION}; {}",
            crate::pg::codec::TEXT_SESSION_SETTINGS
        ))
        .await
        .map_err(sql_error(target, "setting up a read-only session"))?;
    Ok(client)
}

impl Snapshot {
    pub async fn export(
        target: &str,
        url: &str,
        cancel: &CancellationToken,
    ) -> Result<Snapshot, Error> {
        let client = read_only_session(target, url, cancel).await?;
        client
            .batch_execute(BEGIN)
            .await
            .map_err(sql_error(target, "starting the snapshot transaction"))?;
        let row = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(sql_error(target, "exporting a snapshot"))?;
        Ok(Snapshot {
            client,
            id: row.get(0),
        })
    }

    /// A worker session on the source that sees this snapshot.
    pub async fn worker(
        &self,
        target: &str,
        url: &str,
        cancel: &CancellationToken,
    ) -> Result<Client, Error> {
        let client = read_only_session(target, url, cancel).await?;
        let import = format!(
            "{BEGIN}; SET TRANSACTION SNAPSHOT {}",
            quote_literal(&self.id)
        );
        client
            .batch_execute(&import)
            .await
            .map_err(sql_error(target, "importing the snapshot"))?;
        Ok(client)
    }
}
