//! Databases on the staging server, by name: create the new one a clone
//! loads into, swap it in for staging in one short critical section, swap
//! back, drop. Every statement here runs on a maintenance connection (to the
//! `postgres` database, never to one being renamed).
//!
//! The critical section: close staging to new connections, terminate the
//! ones it has, rename staging aside, rename the new database to staging's
//! name. A client that connects in between gets "database does not exist"
//! for a moment, never a half-loaded database.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::pg::connect::describe;

#[derive(Debug, thiserror::Error)]
#[error("{action}: {message}")]
pub struct SwapError {
    pub action: String,
    pub message: String,
}

fn fail(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SwapError {
    let action = action.into();
    move |e| SwapError {
        action,
        message: describe(&e, None),
    }
}

/// `"name"`, with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A database name no longer than PostgreSQL's 63 bytes: `base` cut to fit
/// before `suffix`, on a character boundary.
pub fn derived_name(base: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len());
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &base[..cut])
}

/// Encoding and locale of a database, to create its copy alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseLocale {
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
}

pub async fn locale_of_current(client: &Client) -> Result<DatabaseLocale, SwapError> {
    let row = client
        .query_one(
            "SELECT pg_encoding_to_char(encoding), datcollate::text, datctype::text \
             FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(fail("reading the source database's encoding"))?;
    Ok(DatabaseLocale {
        encoding: row.get(0),
        collate: row.get(1),
        ctype: row.get(2),
    })
}

/// Creates `name` from template0 with the source's encoding and locale,
/// falling back to the server's defaults when that locale is not installed
/// there. Returns whether the source's locale was used.
pub async fn create_database(
    maintenance: &Client,
    name: &str,
    locale: &DatabaseLocale,
) -> Result<bool, SwapError> {
    let exact = format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING '{}' LC_COLLATE '{}' LC_CTYPE '{}'",
        quote_ident(name),
        locale.encoding.replace('\'', "''"),
        locale.collate.replace('\'', "''"),
        locale.ctype.replace('\'', "''"),
    );
    match maintenance.batch_execute(&exact).await {
        Ok(()) => return Ok(true),
        // Only a locale staging does not have falls back to the server's
        // default; any other refusal (privileges, a name taken) is the error.
        Err(e)
            if e.code().is_some_and(|c| {
                // 42809 "invalid locale name", 22023 encoding and locale
                // do not match, 42704 unknown encoding.
                *c == tokio_postgres::error::SqlState::WRONG_OBJECT_TYPE
                    || *c == tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE
                    || *c == tokio_postgres::error::SqlState::UNDEFINED_OBJECT
            }) => {}
        Err(e) => return Err(fail(format!("creating database `{name}`"))(e)),
    }
    let plain = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    maintenance
        .batch_execute(&plain)
        .await
        .map_err(fail(format!("creating database `{name}`")))?;
    Ok(false)
}

/// Drops `name`, terminating its sessions first.
pub async fn drop_database(maintenance: &Client, name: &str) -> Result<(), SwapError> {
    maintenance
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await
        .map_err(fail(format!("dropping database `{name}`")))
}

/// A completed swap: `live` now holds the new data, `aside` the old.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swapped {
    pub live: String,
    pub aside: String,
}

/// Puts `incoming` in place of `live`; the old `live` becomes `aside`.
pub async fn swap(
    maintenance: &Client,
    live: &str,
    incoming: &str,
    aside: &str,
) -> Result<Swapped, SwapError> {
    rename_over(maintenance, live, aside).await?;
    if let Err(mut e) = rename_over(maintenance, incoming, live).await {
        // Put staging back before reporting; if even that fails, say where
        // staging is now and how to get it back.
        if let Err(back) = rename_over(maintenance, aside, live).await {
            e.message.push_str(&format!(
                "; putting staging back failed too ({back}): it is now `{aside}`; \
                 `ALTER DATABASE {} RENAME TO {}` restores it",
                quote_ident(aside),
                quote_ident(live)
            ));
        }
        return Err(e);
    }
    Ok(Swapped {
        live: live.to_string(),
        aside: aside.to_string(),
    })
}

/// Undoes a swap: the new data goes aside under `discard`, the old comes back.
pub async fn swap_back(
    maintenance: &Client,
    swapped: &Swapped,
    discard: &str,
) -> Result<(), SwapError> {
    rename_over(maintenance, &swapped.live, discard).await?;
    // The aside database takes connections again since the swap: end them
    // too, or the rename back fails and nothing is called staging.
    if let Err(mut e) = rename_over(maintenance, &swapped.aside, &swapped.live).await {
        if rename_over(maintenance, discard, &swapped.live)
            .await
            .is_ok()
        {
            e.message
                .push_str("; the new copy was put back as staging, the previous one is still `");
            e.message.push_str(&swapped.aside);
            e.message.push('`');
        }
        return Err(e);
    }
    drop_database(maintenance, discard).await
}

/// Renames a database that clients may be using: refuse new connections,
/// terminate existing ones, rename. Retried a few times, since a client can
/// slip in between terminate and rename.
async fn rename_over(maintenance: &Client, from: &str, to: &str) -> Result<(), SwapError> {
    // Superusers and the owner may; connection limits do not bind superusers,
    // so termination below is what really empties it.
    let _ = maintenance
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            quote_ident(from)
        ))
        .await;
    let mut last = None;
    for _ in 0..5 {
        maintenance
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&from],
            )
            .await
            .map_err(fail(format!("terminating connections to `{from}`")))?;
        match rename_plain(maintenance, from, to).await {
            Ok(()) => {
                let _ = maintenance
                    .batch_execute(&format!(
                        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
                        quote_ident(to)
                    ))
                    .await;
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = maintenance
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            quote_ident(from)
        ))
        .await;
    Err(last.unwrap_or_else(|| SwapError {
        action: format!("renaming `{from}`"),
        message: "gave up".into(),
    }))
}

async fn rename_plain(maintenance: &Client, from: &str, to: &str) -> Result<(), SwapError> {
    maintenance
        .batch_execute(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(from),
            quote_ident(to)
        ))
        .await
        .map_err(fail(format!("renaming database `{from}` to `{to}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_fit_63_bytes() {
        assert_eq!(
            derived_name("staging", "_fp_new_1a2b"),
            "staging_fp_new_1a2b"
        );
        let long = "é".repeat(40);
        let name = derived_name(&long, "_fp_old_1a2b");
        assert!(name.len() <= 63, "{}", name.len());
        assert!(name.ends_with("_fp_old_1a2b"));
    }
}
