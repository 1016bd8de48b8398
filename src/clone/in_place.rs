//! `strategy: in-place`, for providers where the staging role cannot create
//! databases: staging's own schemas are dropped and reloaded inside one
//! transaction on one connection. Other sessions keep seeing the old data
//! until the commit (they wait on the tables' locks meanwhile); a failure
//! rolls everything back, so staging is never half-loaded. Slower than the
//! swap — one connection loads every table in turn — and nothing to undo
//! afterwards: a later failure needs a backup to go back. Never writes to
//! the source, and never touches another database of the staging server.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::post_data::{run_entry, set_sequences};
use super::source::{Source, server_major};
use super::spec::CloneSpec;
use super::table::{Ends, Freeze, TableCopied, copy_table, format_for};
use crate::anonymize::bind::Binding;
use crate::pg::connect::{connect, sql_error};
use crate::pg::ident::quote_ident;
use crate::pg::schema;
use crate::pg::wait::{self, Patience};
use crate::progress::{Progress, Unit};

/// What an in-place reload did.
pub struct Reloaded {
    pub tables: Vec<TableCopied>,
    pub sequences: usize,
    /// The schemas dropped before the reload.
    pub dropped_schemas: Vec<String>,
    pub phases: Vec<(&'static str, Duration)>,
    /// The anonymizer bound to the snapshot's tables, for the report.
    pub binding: Option<Binding>,
    /// The foreign objects left out and how many large objects there are.
    pub outside: crate::pg::catalog::Outside,
    /// Personal data kept in the schema and comments redacted.
    pub schema: super::spec::SchemaCover,
    /// The large objects copied under `large_objects: copy`.
    pub large_objects: Option<crate::pg::large_objects::Copied>,
    /// Staging-only rows carried in, inside the same transaction.
    pub carried: Vec<super::carry::Carried>,
}

/// Reloads staging in place; see the module header.
pub async fn run(
    spec: CloneSpec,
    progress: &Progress,
    step_id: &str,
    cancel: &CancellationToken,
) -> Result<Reloaded> {
    let mut phases = Vec::new();
    let began = Instant::now();
    let Source {
        snapshot,
        major: source_major,
        tables,
        rules,
        binding,
        outside,
        schema,
        pre,
        post,
        ..
    } = Source::open(&spec, cancel).await?;
    let spec = CloneSpec { rules, ..spec };

    let target = connect(&spec.target_name, &spec.target_url, cancel).await?;
    let target_major = server_major(&target, &spec.target_name).await?;
    // Dropping the connection without COMMIT rolls all of this back.
    let dropped_schemas = begin_and_drop(&target, &spec, progress, step_id, cancel).await?;
    schema::apply(&target, &pre).await.map_err(Error::Schema)?;
    // Inside the transaction: staging's own large objects go with it.
    let large_objects =
        super::large_objects::copy_if_ruled(&spec, &snapshot.client, &target, true).await?;
    phases.push(("schema", began.elapsed()));

    let copy_began = Instant::now();
    let total: u64 = tables.iter().map(|t| t.bytes.max(0) as u64).sum();
    let overall = progress.bar(step_id, "reloading", Some(total), Unit::Bytes);
    let ends = Ends {
        source: &snapshot.client,
        target: &target,
        progress,
        step_id,
        overall: &overall,
    };
    let mut copied = Vec::with_capacity(tables.len());
    for table in &tables {
        let format = format_for(table, source_major == target_major);
        let rule = spec.rules.get(&table.qualified);
        let started = Instant::now();
        // Dropping the copy (and, on return, the connection) rolls the whole
        // reload back: Ctrl-C leaves staging as it was.
        let result = tokio::select! {
            result = copy_table(&spec, table, format, None, Freeze::InTransaction, &ends) => result?,
            () = cancel.cancelled() => return Err(Error::Cancelled),
        };
        copied.push(TableCopied {
            qualified: table.qualified.clone(),
            rows: result.rows,
            bytes: result.bytes,
            duration: started.elapsed(),
            ranges: 1,
            format,
            transformed: rule.is_some_and(|r| r.transform.is_some()),
            truncated: rule.is_some_and(|r| r.truncate),
        });
    }
    overall.finish();
    phases.push(("copy", copy_began.elapsed()));

    let rest_began = Instant::now();
    for entry in &post.entries {
        run_entry(&target, &post.preamble, entry).await?;
    }
    let sequences = set_sequences(&snapshot, &target, &spec).await?;
    let carried = super::carry::insert_all(&spec, &target, true).await?;
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    target
        .batch_execute("COMMIT")
        .await
        .map_err(sql_error(&spec.target_name, "committing the reload"))?;
    phases.push(("indexes, constraints, sequences", rest_began.elapsed()));
    Ok(Reloaded {
        tables: copied,
        sequences,
        dropped_schemas,
        phases,
        binding,
        outside,
        schema,
        large_objects,
        carried,
    })
}

/// Opens the reload transaction and drops staging's schemas in it. Dropping
/// needs every table's exclusive lock: each attempt waits at most one
/// `lock_timeout` (the application's queries queue behind a waiting
/// exclusive lock, so it gives way between attempts), a second session says
/// who holds what it waits for, and after the last attempt the step fails
/// naming them.
async fn begin_and_drop(
    target: &tokio_postgres::Client,
    spec: &CloneSpec,
    progress: &Progress,
    step_id: &str,
    cancel: &CancellationToken,
) -> Result<Vec<String>> {
    let name = &spec.target_name;
    let patience = Patience::STAGING;
    let observer = connect(name, &spec.target_url, cancel).await.ok();
    let pid = wait::backend_pid(target)
        .await
        .map_err(sql_error(name, "starting the reload transaction"))?;
    let on_wait = |holders: &[wait::Holder]| {
        progress.step_line(
            step_id,
            &format!(
                "{step_id}: waiting for locks on `{name}` held by {}",
                wait::describe(holders)
            ),
        );
    };
    let mut holders = Vec::new();
    for attempt in 1..=patience.attempts {
        target
            .batch_execute(&format!(
                "SET statement_timeout = 0; BEGIN; {}",
                patience.set_local()
            ))
            .await
            .map_err(sql_error(name, "starting the reload transaction"))?;
        let work = drop_user_schemas(target);
        let (result, seen) = match &observer {
            Some(observer) => wait::watched(observer, pid, work, &on_wait).await,
            None => (work.await, Vec::new()),
        };
        if !seen.is_empty() {
            holders = seen;
        }
        match result {
            Ok(dropped) => {
                // The reload itself creates what it locks: no more waits.
                target
                    .batch_execute("SET LOCAL lock_timeout = 0")
                    .await
                    .map_err(sql_error(name, "starting the reload transaction"))?;
                return Ok(dropped);
            }
            Err(e) if wait::is_lock_timeout(&e) && attempt < patience.attempts => {
                // A failed ROLLBACK leaves the connection unusable: the next
                // BEGIN says so, naming the target.
                if let Err(e) = target.batch_execute("ROLLBACK").await {
                    tracing::warn!("target `{name}`: rolling back a lock attempt failed: {e}");
                }
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) if wait::is_lock_timeout(&e) => {
                let who = if holders.is_empty() {
                    "other sessions".to_string()
                } else {
                    wait::describe(&holders)
                };
                return Err(Error::Pg(crate::pg::Error::Target {
                    target: name.clone(),
                    message: format!(
                        "could not lock staging's tables for the reload: waited about {} s over {} \
                         attempts for locks held by {who}; end those sessions (`SELECT \
                         pg_terminate_backend(pid)`) or let them finish, then run again; nothing \
                         was changed",
                        patience.total().as_secs(),
                        patience.attempts
                    ),
                }));
            }
            Err(e) => return Err(sql_error(name, "dropping staging's schemas")(e).into()),
        }
    }
    unreachable!("the last attempt returns")
}

/// Drops every schema but the system's, then recreates an empty `public`.
async fn drop_user_schemas(
    target: &tokio_postgres::Client,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = target
        .query(
            "SELECT nspname::text FROM pg_namespace \
             WHERE nspname NOT IN ('pg_catalog', 'information_schema') \
               AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%' \
             ORDER BY 1",
            &[],
        )
        .await?;
    let schemas: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for schema in &schemas {
        target
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", quote_ident(schema)))
            .await?;
    }
    // pg_dump leaves `public` out when it is as initdb made it, so put it
    // back exactly so: owner, comment and privileges of this server version.
    let major = crate::pg::catalog::server_version_num(target).await? / 10_000;
    let public = if major >= 15 {
        "CREATE SCHEMA public AUTHORIZATION pg_database_owner; \
         GRANT USAGE ON SCHEMA public TO PUBLIC"
    } else {
        "CREATE SCHEMA public; GRANT ALL ON SCHEMA public TO PUBLIC"
    };
    target
        .batch_execute(&format!(
            "{public}; COMMENT ON SCHEMA public IS 'standard public schema'"
        ))
        .await?;
    Ok(schemas)
}
