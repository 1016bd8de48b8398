//! Databases on the staging server, by name: create the new one a clone
//! loads into, swap it in for staging in one short critical section, swap
//! back, drop. Every statement here runs on a maintenance connection (to the
//! `postgres` database, never to one being renamed).
//!
//! The critical section: close staging to new connections, terminate the
//! ones it has, then, in one transaction, rename staging aside and the new
//! database to staging's name. Both renames commit at once: there is never
//! a moment without a database named staging, and a client sees the old
//! database or the new one, never a half-loaded one (a client connecting
//! during the transaction waits for it).

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::pg::connect::describe;
use crate::pg::ident::{quote_ident, quote_literal};
use crate::pg::wait::{self, Holder, Patience, backend_pid};

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
        "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        quote_ident(name),
        quote_literal(&locale.encoding),
        quote_literal(&locale.collate),
        quote_literal(&locale.ctype),
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

/// Drops `name`, terminating its sessions first. `WITH (FORCE)` refuses a
/// role that is not a superuser when autovacuum works in the database
/// (PostgreSQL 15 counts the worker as another role's session); then the
/// client sessions are ended by hand and a plain `DROP` lets the server
/// stop its own workers.
pub async fn drop_database(maintenance: &Client, name: &str) -> Result<(), SwapError> {
    let forced = maintenance
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await;
    match forced {
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            end_sessions(maintenance, name).await?;
            maintenance
                .batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(name)))
                .await
                .map_err(fail(format!("dropping database `{name}`")))
        }
        other => other.map_err(fail(format!("dropping database `{name}`"))),
    }
}

/// Ends the sessions connected to `name` that this role may end. One it
/// may not is skipped rather than failing: an autovacuum worker (which
/// PostgreSQL 15 counts as a superuser's session) is stopped by the server
/// itself before a rename or a drop; any other session still there makes
/// the rename fail with "being accessed by other users". Returns who the
/// skipped sessions are (`user (application)`), for that message.
async fn end_sessions(maintenance: &Client, name: &str) -> Result<Vec<String>, SwapError> {
    let rows = maintenance
        .query(
            "SELECT pid, coalesce(usename::text, '?'), coalesce(nullif(application_name, ''), '?') \
             FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .map_err(fail(format!("listing the sessions connected to `{name}`")))?;
    let mut skipped = Vec::new();
    for row in rows {
        let pid: i32 = row.get(0);
        match maintenance
            .query("SELECT pg_terminate_backend($1)", &[&pid])
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                skipped.push(format!(
                    "{} ({})",
                    row.get::<_, String>(1),
                    row.get::<_, String>(2)
                ));
            }
            Err(e) => return Err(fail(format!("terminating connections to `{name}`"))(e)),
        }
    }
    Ok(skipped)
}

/// Whether a database named `name` exists.
pub async fn exists(maintenance: &Client, name: &str) -> Result<bool, SwapError> {
    let row = maintenance
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .map_err(fail(format!("looking for database `{name}`")))?;
    Ok(row.get::<_, i64>(0) > 0)
}

/// How a previous staging database kept on purpose (`keep_old: true`) is
/// marked, so no later run takes it for a leftover.
const KEPT: &str = "flightpath: previous staging database, kept (keep_old)";

/// Marks `name` as kept on purpose.
pub async fn mark_kept(maintenance: &Client, name: &str) -> Result<(), SwapError> {
    maintenance
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS '{KEPT}'",
            quote_ident(name)
        ))
        .await
        .map_err(fail(format!("marking database `{name}` as kept")))
}

/// A database a run left on the staging server and did not clean up (it
/// was killed), by the name the run gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub name: String,
    pub kind: LeftoverKind,
    /// The run-id suffix in the name.
    pub run: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftoverKind {
    /// `…_fp_new_<run>`: a copy that was never swapped in; maybe incomplete.
    Unfinished,
    /// `…_fp_old_<run>`: staging as it was before that run's swap, which was
    /// neither confirmed nor undone: staging holds that run's copy.
    Previous,
    /// `…_fp_discard_<run>`: a copy already swapped back out.
    Discarded,
}

impl Leftover {
    /// What a run does with it, in words.
    pub fn fate(&self, staging: &str) -> String {
        match self.kind {
            LeftoverKind::Unfinished => {
                "a copy never swapped in (maybe incomplete): dropped before copying".into()
            }
            LeftoverKind::Discarded => "a copy already swapped out: dropped before copying".into(),
            LeftoverKind::Previous => format!(
                "`{staging}` as it was before that run's swap (`{staging}` now holds its \
                 unconfirmed copy): swapped back in before copying, the copy dropped"
            ),
        }
    }
}

/// The leftovers of interrupted runs for `staging`, oldest name first.
pub async fn leftovers(maintenance: &Client, staging: &str) -> Result<Vec<Leftover>, SwapError> {
    let rows = maintenance
        .query(
            "SELECT datname::text, coalesce(shobj_description(oid, 'pg_database'), '') \
             FROM pg_database WHERE datname LIKE '%\\_fp\\_%' ORDER BY 1",
            &[],
        )
        .await
        .map_err(fail("listing databases on the staging server"))?;
    let mut found = Vec::new();
    for row in rows {
        let (name, comment): (String, String) = (row.get(0), row.get(1));
        for (marker, kind) in [
            ("_fp_new_", LeftoverKind::Unfinished),
            ("_fp_old_", LeftoverKind::Previous),
            ("_fp_discard_", LeftoverKind::Discarded),
        ] {
            let Some((_, run)) = name.rsplit_once(marker) else {
                continue;
            };
            if run.is_empty() || derived_name(staging, &format!("{marker}{run}")) != name {
                continue;
            }
            if kind == LeftoverKind::Previous && comment == KEPT {
                continue;
            }
            found.push(Leftover {
                name: name.clone(),
                kind,
                run: run.to_string(),
            });
        }
    }
    Ok(found)
}

/// Cleans up after interrupted runs before a new copy: restores staging
/// from a previous one left aside (the interrupted run's copy is dropped),
/// drops unfinished and discarded copies. Returns a line per database, for
/// the report. Two previous databases at once are not guessed between.
pub async fn recover(
    maintenance: &Client,
    observer: Option<&Client>,
    staging: &str,
    on_wait: OnWait<'_>,
) -> Result<Vec<String>, SwapError> {
    let found = leftovers(maintenance, staging).await?;
    let previous: Vec<&Leftover> = found
        .iter()
        .filter(|l| l.kind == LeftoverKind::Previous)
        .collect();
    if previous.len() > 1 {
        return Err(SwapError {
            action: format!("recovering `{staging}`"),
            message: format!(
                "interrupted runs left several previous `{staging}` databases ({}); it is not \
                 clear which one staging should go back to: keep the right one (`ALTER \
                 DATABASE … RENAME TO …`), drop the others, then run again",
                previous
                    .iter()
                    .map(|l| format!("`{}`", l.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let mut done = Vec::new();
    // A swap killed before its renames leaves staging closed to connections.
    let closed = maintenance
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1 AND NOT datallowconn",
            &[&staging],
        )
        .await
        .map_err(fail(format!("reading the settings of `{staging}`")))?;
    if closed.get::<_, i64>(0) > 0 {
        set_allow_connections(maintenance, staging, true, &Patience::STAGING).await;
        done.push(format!(
            "`{staging}` took no connections (an interrupted swap had closed it): opened again"
        ));
    }
    // Discarded copies first: a swap-back below may need the name.
    for leftover in found.iter().filter(|l| l.kind != LeftoverKind::Previous) {
        drop_database(maintenance, &leftover.name).await?;
        let what = match leftover.kind {
            LeftoverKind::Unfinished => "a copy never swapped in",
            _ => "a copy already swapped out",
        };
        done.push(format!(
            "dropped `{}` ({what}), left by interrupted run …{}",
            leftover.name, leftover.run
        ));
    }
    for leftover in &previous {
        let swapped = Swapped {
            live: staging.to_string(),
            aside: leftover.name.clone(),
        };
        let discard = discard_name(&swapped);
        swap_back(maintenance, observer, &swapped, &discard, on_wait).await?;
        done.push(format!(
            "`{staging}` restored from `{}`, left by interrupted run …{} after its swap; \
             that run's unconfirmed copy was dropped",
            leftover.name, leftover.run
        ));
    }
    Ok(done)
}

/// A completed swap: `live` now holds the new data, `aside` the old.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swapped {
    pub live: String,
    pub aside: String,
}

/// Where a swap-back puts the copy it takes out: named after the run, like
/// the other two (`…_fp_old_<run>` → `…_fp_discard_<run>`).
pub fn discard_name(swapped: &Swapped) -> String {
    let run = swapped
        .aside
        .rsplit_once("_fp_old_")
        .map_or("", |(_, run)| run);
    derived_name(&swapped.live, &format!("_fp_discard_{run}"))
}

/// Where a swap says that it waits for another session's lock.
pub type OnWait<'a> = &'a (dyn Fn(&[Holder]) + Sync);

/// Puts `incoming` in place of `live`; the old `live` becomes `aside`. Both
/// renames commit together: there is no moment without a database named
/// `live`, and a crash anywhere leaves either the old names or the new.
/// `observer`, a second connection to the server, names who holds a lock
/// the swap waits for.
pub async fn swap(
    maintenance: &Client,
    observer: Option<&Client>,
    live: &str,
    incoming: &str,
    aside: &str,
    on_wait: OnWait<'_>,
) -> Result<Swapped, SwapError> {
    rename_together(
        maintenance,
        observer,
        &[(live, aside), (incoming, live)],
        &[live],
        on_wait,
    )
    .await?;
    Ok(Swapped {
        live: live.to_string(),
        aside: aside.to_string(),
    })
}

/// Undoes a swap: the new data goes aside under `discard` and the old comes
/// back, in one transaction; then `discard` is dropped.
pub async fn swap_back(
    maintenance: &Client,
    observer: Option<&Client>,
    swapped: &Swapped,
    discard: &str,
    on_wait: OnWait<'_>,
) -> Result<(), SwapError> {
    rename_together(
        maintenance,
        observer,
        &[
            (swapped.live.as_str(), discard),
            (swapped.aside.as_str(), swapped.live.as_str()),
        ],
        &[swapped.live.as_str(), swapped.aside.as_str()],
        on_wait,
    )
    .await?;
    drop_database(maintenance, discard).await
}

/// Renames databases that clients may be using, in one transaction
/// (`ALTER DATABASE … RENAME` may run inside one): close each to new
/// connections, terminate the ones it has, then rename them all and open
/// them again, under a `lock_timeout`. Retried a few times, since a client
/// can slip in between terminate and rename, and a lock can be held.
async fn rename_together(
    maintenance: &Client,
    observer: Option<&Client>,
    pairs: &[(&str, &str)],
    close: &[&str],
    on_wait: OnWait<'_>,
) -> Result<(), SwapError> {
    let patience = Patience::STAGING;
    // Superusers and the owner may; connection limits do not bind
    // superusers, but `ALLOW_CONNECTIONS false` does. Committed on its own
    // (a setting changed inside the transaction would not be seen by others
    // until the commit), and undone below if the renames do not happen.
    for name in close {
        set_allow_connections(maintenance, name, false, &patience).await;
    }
    let mut sql = format!("BEGIN; {}", patience.set_local());
    for (from, to) in pairs {
        sql.push_str(&format!(
            "; ALTER DATABASE {} RENAME TO {}",
            quote_ident(from),
            quote_ident(to)
        ));
    }
    // The final names take connections again, as part of the same commit.
    for (_, to) in pairs {
        sql.push_str(&format!(
            "; ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            quote_ident(to)
        ));
    }
    sql.push_str("; COMMIT");
    let action = pairs
        .iter()
        .map(|(from, to)| format!("`{from}` to `{to}`"))
        .collect::<Vec<_>>()
        .join(" and ");
    let action = format!("renaming {action}");
    let pid = match observer {
        Some(_) => backend_pid(maintenance).await.ok(),
        None => None,
    };
    let mut last: Option<SwapError> = None;
    let mut holders: Vec<Holder> = Vec::new();
    // Sessions this role may not end, as the last attempt found them.
    let mut skipped: Vec<String> = Vec::new();
    for _ in 0..patience.attempts {
        skipped.clear();
        for (from, _) in pairs {
            skipped.extend(end_sessions(maintenance, from).await?);
        }
        let (result, seen) = match (observer, pid) {
            (Some(observer), Some(pid)) => {
                wait::watched(observer, pid, maintenance.batch_execute(&sql), on_wait).await
            }
            _ => (maintenance.batch_execute(&sql).await, Vec::new()),
        };
        if !seen.is_empty() {
            holders = seen;
        }
        let err = match result {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // The transaction failed part-way: end it; nothing was renamed.
        let _ = maintenance.batch_execute("ROLLBACK").await;
        let retry = wait::is_lock_timeout(&err)
            || err.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE);
        last = Some(fail(action.clone())(err));
        if !retry {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for name in close {
        set_allow_connections(maintenance, name, true, &patience).await;
    }
    let mut error = last.unwrap_or_else(|| SwapError {
        action,
        message: "gave up".into(),
    });
    if !skipped.is_empty() {
        skipped.sort();
        skipped.dedup();
        let role = maintenance
            .query_one("SELECT current_user::text", &[])
            .await
            .map(|row| row.get::<_, String>(0))
            .unwrap_or_else(|_| "the role".into());
        error.message.push_str(&format!(
            "; the role `{role}` may not end the sessions of {}: end them as their role or a \
             superuser, or `GRANT pg_signal_backend TO {role}`, then run again",
            skipped.join(", ")
        ));
    }
    if !holders.is_empty() {
        error.message.push_str(&format!(
            "; waited about {} s in all for a lock held by {}: end that session \
             (`SELECT pg_terminate_backend(pid)`) or wait for it, then run again",
            patience.total().as_secs(),
            wait::describe(&holders)
        ));
    }
    Err(error)
}

/// `ALTER DATABASE … WITH ALLOW_CONNECTIONS …`, best effort: waits for a
/// lock no longer than one `lock_timeout`.
async fn set_allow_connections(maintenance: &Client, name: &str, allow: bool, patience: &Patience) {
    let sql = format!(
        "BEGIN; {}; ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}; COMMIT",
        patience.set_local(),
        quote_ident(name)
    );
    if maintenance.batch_execute(&sql).await.is_err() {
        let _ = maintenance.batch_execute("ROLLBACK").await;
    }
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
