//! The dry run of a clone, read-only on both servers: what the source
//! holds, whether the staging role may do a swap (and whose sessions it
//! ends), the anonymizer bound to the source's tables with sampled
//! evidence, every rule's SQL tried on the source, one plan row per table,
//! and what the source holds outside its tables: foreign servers, user
//! mappings and foreign tables (refused unless the rules say
//! `foreign: skip`), large objects (copied only under
//! `large_objects: copy`), and personal data in the schema's defaults,
//! enum labels, functions, views and constraints (refused unless the rules
//! say `schema: keep`). Writes nothing anywhere; rendering the plan is the
//! step's job.
//!
//! The sampling queries run here: the anonymizer has no I/O of its own, so
//! `anonymize::detect` only builds them and counts the values read.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::budget::{self, Fit, ServerLimits};
use super::error::{Error, Result};
use super::spec::{CloneSpec, Strategy};
use super::table::{format_for, ranges_for};
use crate::anonymize::bind::Binding;
use crate::anonymize::detect;
use crate::pg::catalog::{self, Table};
use crate::pg::connect::{connect, describe, sql_error};
use crate::pg::copy::Format;
use crate::pg::readonly;
use crate::pg::schema::{self, PgDump};
use crate::pg::snapshot::read_only_session;
use crate::pg::swap::{self, Leftover};
use crate::pg::url;

/// What a clone would do, as found on the two servers now.
pub struct Survey {
    /// `server_version_num` of each side (150004 for 15.4).
    pub source_version: u32,
    pub target_version: u32,
    /// The pg_dump that would read the source's schema.
    pub pg_dump: PgDump,
    pub tables: Vec<Table>,
    /// Foreign objects (left out under `foreign: skip`, else refused by
    /// [`survey`]) and large objects (copied under `large_objects: copy`).
    pub outside: catalog::Outside,
    /// Personal data in the schema, kept under `schema: keep` (else
    /// refused by [`survey`]).
    pub schema: super::spec::SchemaCover,
    /// The database the clone replaces.
    pub staging_db: String,
    /// When the source is protected and its role could write to it.
    pub source_warning: Option<String>,
    /// When the swap may fail on other roles' sessions.
    pub privilege_warning: Option<String>,
    /// The sessions a swap would end (`None` in place).
    pub sessions: Option<String>,
    /// What the staging server allows (`None` in place, which uses one
    /// connection); a swap that needs more is refused by [`survey`].
    pub limits: Option<ServerLimits>,
    /// What interrupted runs left on the staging server.
    pub leftovers: Vec<Leftover>,
    /// The anonymizer bound to `tables`, sampled, its SQL checked.
    pub binding: Option<Binding>,
    /// One row per table: see [`table_plan_row`].
    pub rows: Vec<Vec<String>>,
}

/// Looks at both servers for the plan; refuses early, with the fix, what
/// would fail later (privileges, a rule's SQL the source rejects).
pub async fn survey(
    spec: &CloneSpec,
    strategy: Strategy,
    source_protected: bool,
    cancel: &CancellationToken,
) -> Result<Survey> {
    let name = &spec.source_name;
    let source = read_only_session(name, &spec.source_url, cancel).await?;
    let source_version = version(&source, name).await?;
    let source_warning = match source_protected {
        true => readonly::write_access_warning(&source, name)
            .await
            .map_err(|e| crate::pg::Error::Target {
                target: name.clone(),
                message: e.to_string(),
            })?,
        false => None,
    };
    let tables = catalog::tables(&source)
        .await
        .map_err(sql_error(name, "listing tables"))?;
    let outside = catalog::outside(&source)
        .await
        .map_err(sql_error(name, "listing foreign objects and large objects"))?;
    spec.check_foreign(&outside)?;
    let texts = crate::pg::catalog_schema::schema_texts(&source)
        .await
        .map_err(sql_error(
            name,
            "reading the schema's defaults, functions and views",
        ))?;
    let schema = spec.check_schema(&texts)?;
    let pg_dump = schema::find_pg_dump(source_version / 10_000).map_err(|error| Error::PgDump {
        name: name.clone(),
        error,
    })?;
    let staging_db = url::database_of(&spec.target_url).unwrap_or_default();
    let target = &spec.target_name;
    // In place needs nothing but staging itself (managed providers often
    // refuse connections to their other databases).
    let mut leftovers = Vec::new();
    let mut limits = None;
    let (target_version, privilege_warning, sessions) = match strategy {
        Strategy::Swap => {
            let (maintenance, _) = super::maintenance_client(spec, cancel).await?;
            let found = server_limits(&maintenance, target).await?;
            if budget::fit(&spec.workers, &found) == Fit::TooMany {
                return Err(Error::TooManyConnections {
                    target: target.clone(),
                    workers: spec.workers,
                    limits: found,
                });
            }
            limits = Some(found);
            let warning = check_privileges(&maintenance, target, &staging_db).await?;
            let sessions = sessions_to_end(&maintenance, target, &staging_db).await?;
            leftovers = swap::leftovers(&maintenance, &staging_db)
                .await
                .map_err(|error| Error::Database {
                    target: target.clone(),
                    database: staging_db.clone(),
                    error,
                })?;
            (
                version(&maintenance, target).await?,
                warning,
                Some(sessions),
            )
        }
        Strategy::InPlace => {
            let staging = connect(target, &spec.target_url, cancel).await?;
            (version(&staging, target).await?, None, None)
        }
    };

    let binding = match &spec.anonymizer {
        Some(anonymizer) => {
            let mut binding = anonymizer.bind(&tables);
            sample(
                &mut binding,
                &source,
                &tables,
                detect::Depth::Sample(SAMPLE_ROWS),
            )
            .await
            .map_err(|message| Error::Sampling {
                name: name.clone(),
                message,
            })?;
            check_expressions(&source, name, &tables, &binding).await?;
            Some(binding)
        }
        None => None,
    };
    let same_major = source_version / 10_000 == target_version / 10_000;
    let rows = tables
        .iter()
        .map(|t| {
            table_plan_row(
                t,
                same_major,
                spec.split_bytes,
                source_version / 10_000,
                binding.as_ref(),
            )
        })
        .collect();
    Ok(Survey {
        source_version,
        target_version,
        pg_dump,
        tables,
        outside,
        schema,
        staging_db,
        source_warning,
        privilege_warning,
        sessions,
        limits,
        leftovers,
        binding,
        rows,
    })
}

async fn version(client: &Client, target: &str) -> Result<u32> {
    let num = catalog::server_version_num(client)
        .await
        .map_err(sql_error(target, "reading the server version"))?;
    Ok(num as u32)
}

/// What the staging server allows the clone's role, and its sessions now.
async fn server_limits(client: &Client, target: &str) -> Result<ServerLimits> {
    let row = client
        .query_one(budget::LIMITS_SQL, &[])
        .await
        .map_err(sql_error(target, "reading max_connections"))?;
    let count = |i: usize| row.get::<_, i32>(i).max(0) as usize;
    Ok(ServerLimits {
        max_connections: count(0),
        reserved: count(1),
        superuser: row.get::<_, Option<bool>>(2).unwrap_or(false),
        in_use: count(3),
    })
}

/// Rows read per table for coverage evidence.
pub const SAMPLE_ROWS: u32 = crate::anonymize::bind::SAMPLE_ROWS;

/// Adds sampled evidence to the binding's uncovered columns, and turns a
/// column that is safe by type into a finding when its values look
/// personal (a bigint of card numbers): one bounded, read-only query per
/// table (every row at [`detect::Depth::Full`]); the values are counted,
/// never kept. Returns how much of each table (by `Table::qualified`) was
/// read. The error names the table.
pub async fn sample(
    binding: &mut Binding,
    source: &Client,
    tables: &[Table],
    depth: detect::Depth,
) -> Result<BTreeMap<String, detect::Sampled>, String> {
    let mut read = BTreeMap::new();
    for table in tables {
        let columns = binding.columns_to_sample(table);
        if columns.is_empty() {
            continue;
        }
        let (samples, sampled) = sample_table(source, table, &columns, depth)
            .await
            .map_err(|e| format!("{}: {}", table.qualified, describe(&e, None)))?;
        binding.add_samples(table, &samples);
        read.insert(table.qualified.clone(), sampled);
    }
    Ok(read)
}

/// Samples `columns` of `table` for about `limit` rows: see
/// [`sample_table`]; only the counts.
pub async fn sample_columns(
    client: &Client,
    table: &Table,
    columns: &[String],
    limit: u32,
) -> Result<BTreeMap<String, detect::Sample>, tokio_postgres::Error> {
    Ok(
        sample_table(client, table, columns, detect::Depth::Sample(limit))
            .await?
            .0,
    )
}

/// Samples `columns` of `table`, each value's prefix cast to text (or
/// decoded from `bytea` when it is UTF-8) and counted by
/// [`detect::sample_value`]. Every requested column has an entry,
/// `sampled: 0` when it held only NULLs.
///
/// How much is read is [`detect::read_for`]'s choice: a table of up to
/// 100,000 rows and 64 MiB is read whole, so a finding in any of its rows
/// is found; a larger one by `TABLESAMPLE SYSTEM … REPEATABLE`, whole
/// pages from all over the table (not its first rows, the oldest, which
/// can all look alike), the same pages every time while the table is
/// unchanged. When its statistics were so stale that the page sample
/// returns fewer than half the rows wanted, the table is smaller than they
/// said, and its first 100,000 rows are read instead. `Full` reads every
/// row. Rows are streamed and counted, never kept, whatever the table's
/// size.
///
/// Only reads; run it inside the clone's snapshot to sample what is copied.
pub async fn sample_table(
    client: &Client,
    table: &Table,
    columns: &[String],
    depth: detect::Depth,
) -> Result<(BTreeMap<String, detect::Sample>, detect::Sampled), tokio_postgres::Error> {
    let mut unique: Vec<String> = Vec::with_capacity(columns.len());
    for column in columns {
        if !unique.contains(column) {
            unique.push(column.clone());
        }
    }
    let empty = || -> BTreeMap<String, detect::Sample> {
        unique
            .iter()
            .map(|c| (c.clone(), detect::Sample::default()))
            .collect()
    };
    let mut sampled = detect::Sampled {
        estimate: table.rows_estimate,
        ..Default::default()
    };
    if unique.is_empty() || depth == detect::Depth::Sample(0) {
        return Ok((empty(), sampled));
    }
    let read = detect::read_for(table, depth);
    let mut samples = empty();
    let bytea: Vec<bool> = unique
        .iter()
        .map(|c| {
            table
                .columns
                .iter()
                .any(|t| t.name == *c && detect::is_bytea(&t.type_name))
        })
        .collect();
    let mut rows = read_sample(
        client,
        &detect::sample_sql(table, &unique, read),
        &unique,
        &bytea,
        &mut samples,
    )
    .await?;
    sampled.whole = read == detect::Read::Whole;
    if let (detect::Read::Pages { .. }, detect::Depth::Sample(limit)) = (read, depth)
        && rows < u64::from(limit / 2)
    {
        samples = empty();
        let sql = format!(
            "{} LIMIT {}",
            detect::sample_sql(table, &unique, detect::Read::Whole),
            detect::WHOLE_TABLE_ROWS
        );
        rows = read_sample(client, &sql, &unique, &bytea, &mut samples).await?;
        sampled.whole = rows < detect::WHOLE_TABLE_ROWS as u64;
    }
    sampled.rows = rows;
    Ok((samples, sampled))
}

/// Streams the rows of `sql`, adding each column's value to its sample;
/// returns how many rows there were. Rows are not kept: the connection
/// reads the next only when this one was counted.
async fn read_sample(
    client: &Client,
    sql: &str,
    columns: &[String],
    bytea: &[bool],
    samples: &mut BTreeMap<String, detect::Sample>,
) -> Result<u64, tokio_postgres::Error> {
    let rows = client.query_raw(sql, std::iter::empty::<&str>()).await?;
    futures_util::pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        count += 1;
        for (i, column) in columns.iter().enumerate() {
            let sample = samples.get_mut(column).expect("one sample per column");
            if bytea[i] {
                if let Some(value) = row.try_get::<_, Option<&[u8]>>(i)? {
                    detect::sample_bytes(sample, value);
                }
            } else if let Some(value) = row.try_get::<_, Option<&str>>(i)? {
                detect::sample_value(sample, value);
            }
        }
    }
    Ok(count)
}

/// Every constant a rule sets must cast to its column's type, and every
/// `where`/`except` must be a predicate the source accepts: checked by the
/// source server now (the query reads no rows), not halfway through the
/// copy. The SQL the rules add is sent to production, so it passes the
/// read-only guard first: one query, no function whose effects escape a
/// read-only transaction, sent alone through the extended protocol.
pub async fn check_expressions(
    source: &Client,
    name: &str,
    tables: &[Table],
    binding: &Binding,
) -> Result<()> {
    for table in tables {
        let Some(rule) = binding.rules.get(&table.qualified) else {
            continue;
        };
        if rule.expressions.is_empty() && rule.extras.is_empty() && rule.where_clause.is_none() {
            continue;
        }
        let mut select: Vec<String> = rule.expressions.values().cloned().collect();
        select.extend(rule.extras.iter().cloned());
        if select.is_empty() {
            select.push("1".into());
        }
        let sql = format!(
            "SELECT {} FROM ONLY {} WHERE {} LIMIT 0",
            select.join(", "),
            table.qualified,
            rule.where_clause.as_deref().unwrap_or("true")
        );
        let refused = |why: String| Error::RuleRefused {
            name: name.to_string(),
            table: table.qualified.clone(),
            why,
        };
        let statements = readonly::read_only_statements(&sql).map_err(|r| {
            refused(format!(
                "its SQL (`where`, `except` and constants) must be plain expressions, read-only on the source: it {}",
                r.reason()
            ))
        })?;
        let [statement] = statements.as_slice() else {
            return Err(refused(
                "its SQL (`where`, `except` and constants) must not end the statement".into(),
            ));
        };
        readonly::check_functions(source, &statements)
            .await
            .map_err(|e| match e {
                readonly::ReadOnlyError::Refused(r) => refused(r.reason().to_string()),
                server => refused(server.to_string()),
            })?;
        if let Err(e) = source.query(statement.text.as_str(), &[]).await {
            return Err(refused(describe(&e, None)));
        }
    }
    Ok(())
}

/// Refuses early, with the fix, when the staging role cannot do a swap;
/// returns a warning when the swap may fail on other roles' sessions.
pub async fn check_privileges(
    maintenance: &Client,
    target: &str,
    database: &str,
) -> Result<Option<String>> {
    let row = maintenance
        .query_one(
            "SELECT r.rolsuper, r.rolcreatedb, \
                    pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'), \
                    (SELECT pg_get_userbyid(d.datdba) = current_user FROM pg_database d WHERE d.datname = $1), \
                    current_user::text \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[&database],
        )
        .await
        .map_err(sql_error(target, "checking privileges"))?;
    let (superuser, createdb, signal, owner, role): (bool, bool, bool, Option<bool>, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let Some(owner) = owner else {
        return Err(Error::NoSuchDatabase {
            target: target.to_string(),
            database: database.to_string(),
        });
    };
    let mut missing = Vec::new();
    if !superuser && !createdb {
        missing.push(format!(
            "role `{role}` cannot create databases: grant it with `ALTER ROLE {role} CREATEDB`"
        ));
    }
    if !superuser && !owner {
        missing.push(format!(
            "role `{role}` does not own database `{database}`, so it cannot rename it: `ALTER DATABASE {database} OWNER TO {role}`"
        ));
    }
    if !missing.is_empty() {
        return Err(Error::Privileges {
            target: target.to_string(),
            missing,
        });
    }
    // Ending other roles' sessions is only a warning: many setups use one role.
    Ok((!superuser && !signal).then(|| {
        format!(
            "role `{role}` may not end other roles' sessions on `{database}`; if another role is connected at the swap, it fails: `GRANT pg_signal_backend TO {role}`"
        )
    }))
}

/// The sessions connected to staging now, which the swap will end: how
/// many, whose, from which applications (never what they run).
pub async fn sessions_to_end(maintenance: &Client, target: &str, database: &str) -> Result<String> {
    let row = maintenance
        .query_one(
            "SELECT count(*), \
                    coalesce(string_agg(DISTINCT usename::text, ', '), ''), \
                    coalesce(string_agg(DISTINCT nullif(application_name, ''), ', '), '') \
             FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .map_err(sql_error(target, "listing the sessions on staging"))?;
    let (count, users, applications): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    Ok(sessions_phrase(database, count, &users, &applications))
}

fn sessions_phrase(database: &str, count: i64, users: &str, applications: &str) -> String {
    if count == 0 {
        return format!(
            "none connected to `{database}` now; any that connect before the swap are ended"
        );
    }
    let applications = if applications.is_empty() {
        "no application_name".to_string()
    } else {
        format!("applications {applications}")
    };
    format!(
        "{count} session(s) connected to `{database}` now (users {users}; {applications}) \
         will be ended, and any that connect before the swap"
    )
}

/// One row of the plan's tables: name, estimated rows, size, the format it
/// travels in (and why text), what its rules do, and how many ranges.
pub fn table_plan_row(
    table: &Table,
    same_major: bool,
    split_bytes: u64,
    source_major: u32,
    binding: Option<&Binding>,
) -> Vec<String> {
    let rule = binding.and_then(|b| b.rules.get(&table.qualified));
    let plan = binding.and_then(|b| b.plans.get(&table.qualified));
    let transform = match rule {
        None => "none".to_string(),
        Some(r) if r.truncate => "created empty".to_string(),
        Some(r) => {
            let mut parts = Vec::new();
            let ruled = plan.map_or(0, |p| p.columns.len()) + r.expressions.len();
            if ruled > 0 {
                parts.push(format!("{ruled} column(s) anonymized"));
            }
            if plan.is_some_and(|p| !p.rewrite.is_empty()) {
                parts.push("URLs rewritten".into());
            }
            if r.where_clause.is_some() {
                parts.push("filtered".into());
            }
            if parts.is_empty() {
                "none".into()
            } else {
                parts.join(", ")
            }
        }
    };
    let format = match format_for(table, same_major) {
        Format::Binary => "binary".to_string(),
        Format::Text if !same_major => "text (server versions differ)".to_string(),
        Format::Text => "text (a column type has no portable binary form)".to_string(),
    };
    let ranges = if rule.is_some_and(|r| r.truncate) {
        1
    } else {
        ranges_for(table, split_bytes, source_major).len().max(1)
    };
    vec![
        table.qualified.clone(),
        crate::human::thousands(table.rows_estimate.max(0) as u64),
        crate::human::human_bytes(table.bytes.max(0) as u64 as f64),
        format,
        transform,
        ranges.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anonymize::bind::Anonymizer;
    use crate::anonymize::keyed::Keyed;
    use crate::pg::catalog::{Column, qualified};
    use crate::syntax::template::Vars;

    const MB: i64 = 1024 * 1024;

    fn column(name: &str, type_name: &str, binary_ok: bool) -> Column {
        Column {
            name: name.into(),
            type_name: type_name.into(),
            type_oid: 0,
            binary_ok,
        }
    }

    fn table(name: &str, bytes: i64, columns: Vec<Column>) -> Table {
        Table {
            oid: 1,
            schema: "public".into(),
            name: name.into(),
            qualified: qualified("public", name),
            binary_ok: columns.iter().all(|c| c.binary_ok),
            columns,
            bytes,
            pages: bytes / 8192,
            rows_estimate: 12_345,
            primary_key: vec!["id".into()],
            partition_of: Vec::new(),
        }
    }

    fn tables() -> Vec<Table> {
        vec![
            table(
                "users",
                MB,
                vec![
                    column("id", "integer", true),
                    column("email", "text", true),
                    column("password", "text", true),
                ],
            ),
            table("sessions", 1024 * MB, vec![column("data", "text", true)]),
            table(
                "events",
                1024 * MB,
                vec![
                    column("id", "integer", true),
                    column("kind", "public.mood", false),
                ],
            ),
        ]
    }

    /// The rules bound to [`tables`]: a real rules file, read and bound.
    fn binding(tables: &[Table]) -> Binding {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rules.yaml"),
            r#"
secret: fixed
tables:
  users:
    columns:
      email: { fake: email }
      password: { set: "!" }
    keep: [id]
    where: "id > 0"
  sessions: { truncate: true }
  events: { keep: all }
"#,
        )
        .unwrap();
        let rules = crate::anonymize::rules::load(
            &["rules.yaml".to_string()],
            &[dir.path().to_path_buf()],
            &Vars::only(Default::default()),
        )
        .unwrap_or_else(|e| panic!("{:?}", e.lines()));
        let anonymizer = Anonymizer {
            keyed: Keyed::new(rules.secret.as_deref()),
            rules,
            rewrite: None,
        };
        let binding = anonymizer.bind(tables);
        assert!(binding.check(None).is_ok(), "{:?}", binding.blocking(None));
        binding
    }

    #[test]
    fn plan_rows_say_how_each_table_travels_and_what_its_rules_do() {
        let tables = tables();
        let binding = binding(&tables);
        let rows: Vec<Vec<String>> = tables
            .iter()
            .map(|t| table_plan_row(t, true, 256 * MB as u64, 16, Some(&binding)))
            .collect();
        assert_eq!(
            rows,
            [
                [
                    "\"public\".\"users\"",
                    "12,345",
                    "1.0 MiB",
                    "binary",
                    "2 column(s) anonymized, filtered",
                    "1",
                ],
                [
                    "\"public\".\"sessions\"",
                    "12,345",
                    "1.0 GiB",
                    "binary",
                    "created empty",
                    "1",
                ],
                [
                    "\"public\".\"events\"",
                    "12,345",
                    "1.0 GiB",
                    "text (a column type has no portable binary form)",
                    "none",
                    "4",
                ],
            ]
        );
    }

    #[test]
    fn plan_rows_without_rules_or_across_versions() {
        let tables = tables();
        let row = table_plan_row(&tables[0], false, 256 * MB as u64, 16, None);
        assert_eq!(
            row,
            [
                "\"public\".\"users\"",
                "12,345",
                "1.0 MiB",
                "text (server versions differ)",
                "none",
                "1",
            ]
        );
        // Before PostgreSQL 14 a large table is one range.
        let row = table_plan_row(&tables[1], true, 256 * MB as u64, 13, None);
        assert_eq!(row[5], "1");
    }

    #[test]
    fn the_sessions_a_swap_ends_are_counted_and_named() {
        assert_eq!(
            sessions_phrase("staging", 0, "", ""),
            "none connected to `staging` now; any that connect before the swap are ended"
        );
        assert_eq!(
            sessions_phrase("staging", 3, "app, web", "puma"),
            "3 session(s) connected to `staging` now (users app, web; applications puma) \
             will be ended, and any that connect before the swap"
        );
        assert_eq!(
            sessions_phrase("staging", 1, "app", ""),
            "1 session(s) connected to `staging` now (users app; no application_name) \
             will be ended, and any that connect before the swap"
        );
    }
}
