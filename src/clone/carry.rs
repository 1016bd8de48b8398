//! Carrying staging-only rows over into the fresh clone (`preserve: true`
//! of `postgres.staging-only-rows`), in three parts:
//!
//! - [`check`] — the plan: the staging-only rows (and the included rows
//!   pointing at them) checked against production, which is what the new
//!   database will hold: columns production lacks, keys production already
//!   uses (renumbered later), unique values production already has (per
//!   `on_conflict`), and foreign keys to parents production does not have
//!   (refused). Read-only on both sides; staging's values are sent to
//!   production as query parameters and only yes/no comes back, so no
//!   production value is ever read.
//! - [`read`] — the run: the rows read from staging inside the read-only
//!   transaction the lookup opened, one JSON text per row, into an
//!   anonymous temporary file (deleted by the system when the last handle
//!   closes), so memory stays bounded whatever their number.
//! - [`insert`] — the clone, after its data, indexes, constraints and
//!   sequences and before its swap (or inside its in-place transaction):
//!   each table in dependency order into a temporary table, conflicts
//!   resolved, taken primary keys renumbered from the table's sequence and
//!   the included rows' foreign keys remapped to them, then inserted and
//!   the sequence moved past them. The database checks every constraint;
//!   any failure fails the clone before the swap.
//!
//! Carried rows come from staging, not production: the anonymizer never
//! sees them and coverage does not count them. Only keys (and counts)
//! leave this module, never another column's value.

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::staging_only::{Found, Lookup, show_key};
use crate::pg::ident::quote_ident;

/// What to do with a carried row whose value in a unique column (other
/// than the primary key) the new database already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Stop before anything is written, naming the row and the constraint.
    #[default]
    Error,
    /// Leave the row out (and the rows included with it), and say so.
    Skip,
    /// Delete the clone's row that holds the value; staging's row takes its place.
    Replace,
}

/// How an included table hangs on the kept one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The included table's column pointing at the kept row.
    pub fk: String,
    /// The kept table's column it references.
    pub references: String,
    /// The include's `where` (a polymorphic table's type condition).
    pub filter: Option<String>,
}

/// One table's carried rows.
#[derive(Debug, Clone)]
pub struct CarriedTable {
    /// As the user wrote it (`auth_user`), for messages and the report.
    pub name: String,
    /// Staging's columns, as read.
    pub columns: Vec<String>,
    /// The columns that name a row in messages: the step's key for the
    /// kept table, the primary key (else the link) for an included one.
    pub named_by: Vec<String>,
    /// `None` for the kept table (the first), the link for included ones.
    pub link: Option<Link>,
    pub rows: u64,
    /// Where its rows are in the file: one JSON text per line.
    start: u64,
    len: u64,
}

/// Rows read from staging, waiting for the clone of the same target.
#[derive(Debug)]
pub struct CarryOver {
    /// The step that read them, for messages and the report.
    pub step_id: String,
    pub on_conflict: OnConflict,
    /// The kept table first, then the included ones: dependency order.
    pub tables: Vec<CarriedTable>,
    file: std::fs::File,
}

/// What the plan found (counts and keys only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Rows per table, kept table first.
    pub rows: Vec<(String, u64)>,
    /// Kept rows whose primary key production already uses: they get a
    /// new one from the table's sequence.
    pub renumbered: u64,
    /// Kept rows whose unique value production already has (under
    /// `skip` or `replace`; `error` refuses instead).
    pub conflicts: Vec<Conflict>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub table: String,
    /// The row's key, as [`show_key`] writes it.
    pub key: String,
    pub constraint: String,
    pub columns: Vec<String>,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` row `{}` (`{}` on {})",
            self.table,
            self.key,
            self.constraint,
            self.columns.join(", ")
        )
    }
}

/// What was carried into one table of the new database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableCarried {
    pub name: String,
    pub rows: u64,
    /// Rows that came in under a new primary key.
    pub renumbered: u64,
    /// Keys of rows left out under `on_conflict: skip`.
    pub skipped: Vec<String>,
    /// Keys of rows that replaced the clone's under `on_conflict: replace`.
    pub replaced: Vec<String>,
    /// Included rows left out because the row they point at was.
    pub left_with_parent: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    #[error(
        "`{table}` has column{} {} on staging that production's table lacks, so the new database \
         has nowhere to put {}; add the column{} in production (run its migrations) or leave \
         `preserve` out",
        plural(.columns.len()), quoted(.columns), if .columns.len() == 1 { "it" } else { "them" },
        plural(.columns.len())
    )]
    MissingColumns { table: String, columns: Vec<String> },
    #[error(
        "`{table}` is not in production, so the new database will not have it to carry rows into"
    )]
    MissingTable { table: String },
    #[error(
        "carried {} with what the new database holds (`on_conflict: error`); nothing \
         was written:\n  - {}\nUse `on_conflict: skip` to leave {} out, or `on_conflict: replace` \
         to keep staging's",
        if .conflicts.len() == 1 { "row conflicts" } else { "rows conflict" },
        .conflicts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("\n  - "),
        if .conflicts.len() == 1 { "it" } else { "them" }
    )]
    Conflicts { conflicts: Vec<Conflict> },
    #[error(
        "`{table}.{column}` of {rows} carried row{} points at `{parent}` rows production does \
         not have, so the new database would have nothing for {} to point at (a foreign key is \
         never set to NULL, nor a row dropped, to make it fit); leave {} out with a `where` (on \
         the step or on the include), or create the `{parent}` rows in production first",
        plural(*.rows as usize), if *.rows == 1 { "it" } else { "them" },
        if *.rows == 1 { "it" } else { "them" }
    )]
    MissingParent {
        table: String,
        column: String,
        parent: String,
        rows: u64,
    },
    #[error(
        "{rows} carried row{} of `{table}` use{} a `{key}` production also uses, and `{table}.{key}` \
         has no sequence or identity to draw a new one from; carry rows whose key is free, or give \
         the column a sequence",
        plural(*.rows as usize), if *.rows == 1 { "s" } else { "" }
    )]
    NoNewKey {
        table: String,
        key: String,
        rows: u64,
    },
    #[error("reading staging's rows into a temporary file: {0}")]
    File(#[from] std::io::Error),
    #[error("{doing} `{table}`: {message}")]
    Sql {
        doing: &'static str,
        table: String,
        message: String,
    },
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sql(doing: &'static str, table: &str) -> impl FnOnce(tokio_postgres::Error) -> CarryError {
    let table = table.to_string();
    move |e| CarryError::Sql {
        doing,
        table,
        message: crate::pg::connect::describe(&e, None),
    }
}

/// A table as one server has it: what carrying rows into it needs to know.
#[derive(Debug, Clone)]
struct TableInfo {
    oid: u32,
    /// Quoted, schema-qualified.
    qualified: String,
    /// Name, type (`format_type`), generated.
    columns: Vec<(String, String, bool)>,
    /// A one-column primary key.
    pk: Option<String>,
    /// Unique indexes other than the primary key (plain columns, no
    /// predicate): name and columns.
    uniques: Vec<(String, Vec<String>)>,
    /// One-column foreign keys: column, parent (as `regclass` text),
    /// parent's oid, parent's column.
    fks: Vec<(String, String, u32, String)>,
    /// The sequence (serial or identity) behind `pk`.
    sequence: Option<String>,
}

impl TableInfo {
    fn type_of(&self, column: &str) -> &str {
        self.columns
            .iter()
            .find(|(name, _, _)| name == column)
            .map_or("text", |(_, ty, _)| ty.as_str())
    }

    fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|(name, _, _)| name == column)
    }
}

async fn table_info(client: &Client, name: &str) -> Result<Option<TableInfo>, CarryError> {
    let catalog = sql("reading the catalog for", name);
    let Some(row) = client
        .query_opt(
            "SELECT c.oid, c.oid::regclass::text FROM pg_class c \
             WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
            &[&name],
        )
        .await
        .map_err(catalog)?
    else {
        return Ok(None);
    };
    let oid: u32 = row.get(0);
    let regclass: String = row.get(1);
    let catalog = || sql("reading the catalog for", name);
    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '' \
             FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(catalog())?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let pk = client
        .query_opt(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = $1 AND i.indisprimary AND i.indnkeyatts = 1",
            &[&oid],
        )
        .await
        .map_err(catalog())?
        .map(|r| r.get::<_, String>(0));
    let uniques = client
        .query(
            "SELECT c.relname::text, array(SELECT a.attname::text \
                 FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o) \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n \
                 WHERE k.o <= i.indnkeyatts ORDER BY k.o) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = $1 AND i.indisunique AND NOT i.indisprimary \
               AND i.indpred IS NULL AND i.indexprs IS NULL ORDER BY 1",
            &[&oid],
        )
        .await
        .map_err(catalog())?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let fks = client
        .query(
            "SELECT f.attname::text, c.confrelid::regclass::text, c.confrelid, r.attname::text \
             FROM pg_constraint c \
             JOIN pg_attribute f ON f.attrelid = c.conrelid AND f.attnum = c.conkey[1] \
             JOIN pg_attribute r ON r.attrelid = c.confrelid AND r.attnum = c.confkey[1] \
             WHERE c.contype = 'f' AND c.conrelid = $1 AND cardinality(c.conkey) = 1 \
             ORDER BY c.conname",
            &[&oid],
        )
        .await
        .map_err(catalog())?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let sequence = match &pk {
        Some(pk) => client
            .query_one("SELECT pg_get_serial_sequence($1, $2)", &[&regclass, pk])
            .await
            .map_err(catalog())?
            .get::<_, Option<String>>(0),
        None => None,
    };
    let qualified = client
        .query_one(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
            &[&oid],
        )
        .await
        .map_err(catalog())?
        .get(0);
    Ok(Some(TableInfo {
        oid,
        qualified,
        columns,
        pk,
        uniques,
        fks,
        sequence,
    }))
}

/// The tables to carry as staging has them, and how to select their rows.
struct Tables {
    /// Kept table first, then the included ones, with their links.
    staging: Vec<(String, TableInfo, Option<Link>)>,
    /// The kept rows: a condition on the kept table (alias `t`) with the
    /// staging-only keys as parameters, one text array per key column.
    selection: String,
    keys: Vec<Vec<String>>,
}

impl Tables {
    async fn resolve(target: &Client, lookup: &Lookup, found: &Found) -> Result<Self, CarryError> {
        let mut staging = Vec::new();
        let kept =
            table_info(target, &lookup.table)
                .await?
                .ok_or_else(|| CarryError::MissingTable {
                    table: lookup.table.clone(),
                })?;
        staging.push((lookup.table.clone(), kept, None));
        for (include, included) in lookup.include.iter().zip(&found.included) {
            let info = table_info(target, &include.table).await?.ok_or_else(|| {
                CarryError::MissingTable {
                    table: include.table.clone(),
                }
            })?;
            let link = Link {
                fk: include.fk.clone(),
                references: included.references.clone(),
                filter: include.filter.clone(),
            };
            staging.push((include.table.clone(), info, Some(link)));
        }
        let columns: Vec<String> = lookup
            .key
            .iter()
            .map(|k| format!("t.{}::text", quote_ident(k)))
            .collect();
        let arrays: Vec<String> = (1..=lookup.key.len())
            .map(|i| format!("${i}::text[]"))
            .collect();
        let filter = lookup
            .filter
            .as_ref()
            .map(|f| format!(" AND ({f})"))
            .unwrap_or_default();
        let selection = format!(
            "({}) IN (SELECT * FROM unnest({})){filter}",
            columns.join(", "),
            arrays.join(", ")
        );
        let keys = (0..lookup.key.len())
            .map(|i| found.keys.iter().map(|k| k[i].clone()).collect())
            .collect();
        Ok(Tables {
            staging,
            selection,
            keys,
        })
    }

    /// `SELECT <what> FROM` the carried rows of table `i` (alias `t` for
    /// the kept table, `i` for an included one).
    fn select(&self, i: usize, what: &str) -> String {
        let kept = &self.staging[0].1.qualified;
        match &self.staging[i].2 {
            None => format!("SELECT {what} FROM {kept} t WHERE {}", self.selection),
            Some(link) => format!(
                "SELECT {what} FROM {} i WHERE i.{} IN (SELECT t.{} FROM {kept} t WHERE {}){}",
                self.staging[i].1.qualified,
                quote_ident(&link.fk),
                quote_ident(&link.references),
                self.selection,
                link.filter
                    .as_ref()
                    .map(|f| format!(" AND ({f})"))
                    .unwrap_or_default()
            ),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.keys.iter().map(|k| k as &(dyn ToSql + Sync)).collect()
    }

    /// The texts of `columns` of table `i`'s carried rows, row by row.
    async fn texts(
        &self,
        target: &Client,
        i: usize,
        columns: &[String],
    ) -> Result<Vec<Vec<Option<String>>>, CarryError> {
        let alias = if i == 0 { "t" } else { "i" };
        let what: Vec<String> = columns
            .iter()
            .map(|c| format!("{alias}.{}::text", quote_ident(c)))
            .collect();
        let rows = target
            .query(self.select(i, &what.join(", ")).as_str(), &self.params())
            .await
            .map_err(sql("reading the carried rows of", &self.staging[i].0))?;
        Ok(rows
            .iter()
            .map(|r| (0..columns.len()).map(|c| r.get(c)).collect())
            .collect())
    }

    fn named_by(&self, i: usize, lookup: &Lookup) -> Vec<String> {
        let (_, info, link) = &self.staging[i];
        match (link, &info.pk) {
            (None, _) => lookup.key.clone(),
            (Some(_), Some(pk)) => vec![pk.clone()],
            (Some(link), None) => vec![link.fk.clone()],
        }
    }
}

/// The plan of a carry-over: see the module header. `source` and `target`
/// are inside the read-only transactions [`super::staging_only::find`]
/// opened.
pub async fn check(
    source: &Client,
    target: &Client,
    lookup: &Lookup,
    found: &Found,
    on_conflict: OnConflict,
) -> Result<Checked, CarryError> {
    let tables = Tables::resolve(target, lookup, found).await?;
    let mut checked = Checked::default();
    let mut kept_oid = 0;
    for (i, (name, staging, link)) in tables.staging.iter().enumerate() {
        let production =
            table_info(source, name)
                .await?
                .ok_or_else(|| CarryError::MissingTable {
                    table: name.clone(),
                })?;
        if i == 0 {
            kept_oid = production.oid;
        }
        let missing: Vec<String> = staging
            .columns
            .iter()
            .filter(|(column, _, _)| !production.has(column))
            .map(|(column, _, _)| column.clone())
            .collect();
        if !missing.is_empty() {
            return Err(CarryError::MissingColumns {
                table: name.clone(),
                columns: missing,
            });
        }
        let count: i64 = target
            .query_one(tables.select(i, "count(*)").as_str(), &tables.params())
            .await
            .map_err(sql("counting the carried rows of", name))?
            .get(0);
        checked.rows.push((name.clone(), count as u64));

        for (column, parent, parent_oid, parent_column) in &production.fks {
            let is_link = link
                .as_ref()
                .is_some_and(|l| &l.fk == column && *parent_oid == kept_oid);
            if is_link {
                continue;
            }
            let values: Vec<Option<String>> = tables
                .texts(target, i, std::slice::from_ref(column))
                .await?
                .into_iter()
                .map(|mut r| r.remove(0))
                .collect();
            let sql_text = format!(
                "SELECT count(*) FROM unnest($1::text[]) AS v(x) WHERE x IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM {parent} p WHERE p.{} = v.x::{})",
                quote_ident(parent_column),
                production_type(source, *parent_oid, parent_column).await?
            );
            let absent: i64 = source
                .query_one(sql_text.as_str(), &[&values])
                .await
                .map_err(sql("checking the parents of", name))?
                .get(0);
            if absent > 0 {
                return Err(CarryError::MissingParent {
                    table: name.clone(),
                    column: column.clone(),
                    parent: parent.clone(),
                    rows: absent as u64,
                });
            }
        }

        if i > 0 {
            // An included row's key and unique values follow its parent's
            // new key; the insert checks them against the new database.
            continue;
        }
        let named_by = tables.named_by(i, lookup);
        if let Some(pk) = &production.pk {
            let values: Vec<Option<String>> = tables
                .texts(target, i, std::slice::from_ref(pk))
                .await?
                .into_iter()
                .map(|mut r| r.remove(0))
                .collect();
            let taken: i64 = source
                .query_one(
                    format!(
                        "SELECT count(*) FROM unnest($1::text[]) AS v(x) WHERE EXISTS \
                         (SELECT 1 FROM {} p WHERE p.{} = v.x::{})",
                        production.qualified,
                        quote_ident(pk),
                        production.type_of(pk)
                    )
                    .as_str(),
                    &[&values],
                )
                .await
                .map_err(sql("checking the keys of", name))?
                .get(0);
            if taken > 0 && production.sequence.is_none() {
                return Err(CarryError::NoNewKey {
                    table: name.clone(),
                    key: pk.clone(),
                    rows: taken as u64,
                });
            }
            checked.renumbered = taken as u64;
        }
        for (constraint, columns) in &production.uniques {
            let mut wanted = named_by.clone();
            wanted.extend(columns.iter().cloned());
            let rows = tables.texts(target, i, &wanted).await?;
            let n = named_by.len();
            let ordinals: Vec<i64> = (0..rows.len() as i64).collect();
            let mut arrays: Vec<Vec<Option<String>>> = vec![Vec::new(); columns.len()];
            for row in &rows {
                for (c, value) in row[n..].iter().enumerate() {
                    arrays[c].push(value.clone());
                }
            }
            let names: Vec<String> = (0..columns.len()).map(|c| format!("c{c}")).collect();
            let unnest: Vec<String> = (0..columns.len())
                .map(|c| format!("${}::text[]", c + 2))
                .collect();
            let matches: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(c, column)| {
                    format!(
                        "p.{} = u.c{c}::{}",
                        quote_ident(column),
                        production.type_of(column)
                    )
                })
                .collect();
            let sql_text = format!(
                "SELECT u.n FROM unnest($1::int8[], {}) AS u(n, {}) WHERE EXISTS \
                 (SELECT 1 FROM {} p WHERE {}) ORDER BY u.n",
                unnest.join(", "),
                names.join(", "),
                production.qualified,
                matches.join(" AND ")
            );
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&ordinals];
            params.extend(arrays.iter().map(|a| a as &(dyn ToSql + Sync)));
            let hits = source
                .query(sql_text.as_str(), &params)
                .await
                .map_err(sql("checking the unique values of", name))?;
            for hit in hits {
                let row = &rows[hit.get::<_, i64>(0) as usize];
                let key: Vec<String> = row[..n]
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect();
                checked.conflicts.push(Conflict {
                    table: name.clone(),
                    key: show_key(&key),
                    constraint: constraint.clone(),
                    columns: columns.clone(),
                });
            }
        }
    }
    if on_conflict == OnConflict::Error && !checked.conflicts.is_empty() {
        return Err(CarryError::Conflicts {
            conflicts: checked.conflicts,
        });
    }
    Ok(checked)
}

async fn production_type(source: &Client, table: u32, column: &str) -> Result<String, CarryError> {
    source
        .query_one(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = $1 AND a.attname = $2",
            &[&table, &column],
        )
        .await
        .map(|r| r.get(0))
        .map_err(sql("reading the catalog for", column))
}

/// Reads the carried rows from staging (`target`, inside the read-only
/// transaction the lookup opened) into a temporary file.
pub async fn read(
    target: &Client,
    lookup: &Lookup,
    found: &Found,
    step_id: &str,
    on_conflict: OnConflict,
) -> Result<CarryOver, CarryError> {
    let tables = Tables::resolve(target, lookup, found).await?;
    let file = tempfile::tempfile()?;
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(file.try_clone()?));
    let mut carried = Vec::new();
    let mut at = 0u64;
    for (i, (name, info, link)) in tables.staging.iter().enumerate() {
        let alias = if i == 0 { "t" } else { "i" };
        let select = tables.select(i, &format!("row_to_json({alias})::text"));
        let params = tables.params();
        let rows = target
            .query_raw(select.as_str(), params.iter().map(|p| *p as &dyn ToSql))
            .await
            .map_err(sql("reading the carried rows of", name))?;
        futures_util::pin_mut!(rows);
        let start = at;
        let mut count = 0u64;
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(sql("reading the carried rows of", name))?
        {
            let json: String = row.get(0);
            // COPY's text format: backslashes doubled, and the raw tabs,
            // newlines and carriage returns a `json` column keeps from its
            // input written as COPY's escapes, so each row is one line.
            let line = format!(
                "{}\n",
                json.replace('\\', "\\\\")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r")
                    .replace('\t', "\\t")
            );
            out.write_all(line.as_bytes()).await?;
            at += line.len() as u64;
            count += 1;
        }
        carried.push(CarriedTable {
            name: name.clone(),
            columns: info.columns.iter().map(|(c, _, _)| c.clone()).collect(),
            named_by: tables.named_by(i, lookup),
            link: link.clone(),
            rows: count,
            start,
            len: at - start,
        });
    }
    out.flush().await?;
    Ok(CarryOver {
        step_id: step_id.to_string(),
        on_conflict,
        tables: carried,
        file,
    })
}

/// Inserts a carry-over into the new database (`client`, connected to it):
/// see the module header. `in_transaction`: the caller's transaction
/// holds it (in place); otherwise it gets its own. `n` keeps the temporary
/// tables of several carry-overs apart.
pub async fn insert(
    client: &Client,
    carry: &CarryOver,
    n: usize,
    in_transaction: bool,
) -> Result<Vec<TableCarried>, CarryError> {
    let first = &carry.tables[0].name;
    // The schema's script left `search_path` empty; names resolve as the
    // step wrote them, against the default path.
    let begin = if in_transaction { "" } else { "BEGIN; " };
    client
        .batch_execute(&format!("{begin}SET search_path TO DEFAULT"))
        .await
        .map_err(sql("carrying rows into", first))?;
    let mut done = Vec::new();
    let mut infos: Vec<TableInfo> = Vec::new();
    for (i, table) in carry.tables.iter().enumerate() {
        let info =
            table_info(client, &table.name)
                .await?
                .ok_or_else(|| CarryError::MissingTable {
                    table: table.name.clone(),
                })?;
        let temp = format!("_fp_carry_{n}_{i}");
        load_temp(client, carry, table, &info, &temp).await?;
        let mut carried = TableCarried {
            name: table.name.clone(),
            ..Default::default()
        };
        if let Some(link) = &table.link {
            let parent = &infos[0];
            carried.left_with_parent = follow_parent(client, table, link, parent, n, &temp).await?;
        }
        if i > 0 {
            let skip = table.link.as_ref().map(|link| link.fk.as_str());
            remap_references(client, table, &info, &temp, &infos[0], n, skip).await?;
        }
        resolve_conflicts(client, carry, table, &info, &temp, &mut carried).await?;
        carried.renumbered = renumber(client, table, &info, &temp).await?;
        if i == 0 {
            // The kept rows' own references to each other (`invited_by_id`).
            let kept = info.clone();
            remap_references(client, table, &info, &temp, &kept, n, None).await?;
        }
        carried.rows = insert_rows(client, table, &info, &temp).await?;
        done.push(carried);
        infos.push(info);
    }
    if !in_transaction {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(sql("carrying rows into", first))?;
    }
    Ok(done)
}

/// The table's rows from the file into temporary table `temp`, typed as
/// the new database's table, with `_fp_old` holding the primary key as
/// staging had it.
async fn load_temp(
    client: &Client,
    carry: &CarryOver,
    table: &CarriedTable,
    info: &TableInfo,
    temp: &str,
) -> Result<(), CarryError> {
    let name = &table.name;
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE {temp}_raw (row jsonb) ON COMMIT DROP"
        ))
        .await
        .map_err(sql("preparing the carried rows of", name))?;
    let sink = client
        .copy_in::<_, Bytes>(format!("COPY {temp}_raw (row) FROM STDIN").as_str())
        .await
        .map_err(sql("loading the carried rows of", name))?;
    futures_util::pin_mut!(sink);
    let mut file = tokio::fs::File::from_std(carry.file.try_clone()?);
    file.seek(std::io::SeekFrom::Start(table.start)).await?;
    let mut left = file.take(table.len);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = left.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        sink.feed(Bytes::copy_from_slice(&buffer[..read]))
            .await
            .map_err(sql("loading the carried rows of", name))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(sql("loading the carried rows of", name))?;
    let old = match &info.pk {
        Some(pk) => format!(", r.{} AS _fp_old", quote_ident(pk)),
        None => String::new(),
    };
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE {temp} ON COMMIT DROP AS SELECT r.*{old} \
             FROM {temp}_raw, LATERAL jsonb_populate_record(NULL::{}, {temp}_raw.row) AS r",
            info.qualified
        ))
        .await
        .map_err(sql("preparing the carried rows of", name))?;
    Ok(())
}

/// An included table's rows follow the kept row they point at: left out
/// with it (counted), and pointed at its new key.
async fn follow_parent(
    client: &Client,
    table: &CarriedTable,
    link: &Link,
    parent: &TableInfo,
    n: usize,
    temp: &str,
) -> Result<u64, CarryError> {
    let kept = format!("_fp_carry_{n}_0");
    let fk = quote_ident(&link.fk);
    let renumbered = parent.pk.as_deref() == Some(link.references.as_str());
    let old = if renumbered {
        "_fp_old".to_string()
    } else {
        quote_ident(&link.references)
    };
    let left = client
        .execute(
            format!(
                "DELETE FROM {temp} c WHERE NOT EXISTS (SELECT 1 FROM {kept} p WHERE p.{old} = c.{fk})"
            )
            .as_str(),
            &[],
        )
        .await
        .map_err(sql("following the kept rows of", &table.name))?;
    if renumbered {
        client
            .execute(
                format!(
                    "UPDATE {temp} c SET {fk} = p.{} FROM {kept} p WHERE c.{fk} = p._fp_old",
                    quote_ident(&link.references)
                )
                .as_str(),
                &[],
            )
            .await
            .map_err(sql("remapping the keys of", &table.name))?;
    }
    Ok(left)
}

/// Every other one-column foreign key of `table` to the kept table's
/// primary key follows a kept row that came back under a new key, as the
/// include's link does: in staging such a value named the kept row, and
/// production's row under the old key is another one. `skip`: the link
/// column, which [`follow_parent`] already moved.
async fn remap_references(
    client: &Client,
    table: &CarriedTable,
    info: &TableInfo,
    temp: &str,
    kept: &TableInfo,
    n: usize,
    skip: Option<&str>,
) -> Result<(), CarryError> {
    let Some(pk) = &kept.pk else { return Ok(()) };
    let kept_temp = format!("_fp_carry_{n}_0");
    for (column, _, parent, parent_column) in &info.fks {
        if *parent != kept.oid || parent_column != pk || Some(column.as_str()) == skip {
            continue;
        }
        let column = quote_ident(column);
        client
            .execute(
                format!(
                    "UPDATE {temp} c SET {column} = p.{} FROM {kept_temp} p \
                     WHERE c.{column} = p._fp_old AND p.{} IS DISTINCT FROM p._fp_old",
                    quote_ident(pk),
                    quote_ident(pk)
                )
                .as_str(),
                &[],
            )
            .await
            .map_err(sql("remapping the keys of", &table.name))?;
    }
    Ok(())
}

/// Rows whose unique value (other than the primary key) the new database
/// already has, by `on_conflict`.
async fn resolve_conflicts(
    client: &Client,
    carry: &CarryOver,
    table: &CarriedTable,
    info: &TableInfo,
    temp: &str,
    carried: &mut TableCarried,
) -> Result<(), CarryError> {
    let named: Vec<String> = table
        .named_by
        .iter()
        .map(|c| format!("c.{}::text", quote_ident(c)))
        .collect();
    let mut conflicts = Vec::new();
    for (constraint, columns) in &info.uniques {
        if !columns.iter().all(|c| table.columns.contains(c)) {
            continue;
        }
        let matches: Vec<String> = columns
            .iter()
            .map(|c| format!("r.{0} = c.{0}", quote_ident(c)))
            .collect();
        let exists = format!(
            "EXISTS (SELECT 1 FROM {} r WHERE {})",
            info.qualified,
            matches.join(" AND ")
        );
        let rows = client
            .query(
                format!("SELECT {} FROM {temp} c WHERE {exists}", named.join(", ")).as_str(),
                &[],
            )
            .await
            .map_err(sql("checking the unique values of", &table.name))?;
        let keys: Vec<String> = rows
            .iter()
            .map(|r| {
                let key: Vec<String> = (0..named.len())
                    .map(|i| r.get::<_, Option<String>>(i).unwrap_or_default())
                    .collect();
                show_key(&key)
            })
            .collect();
        if keys.is_empty() {
            continue;
        }
        match carry.on_conflict {
            OnConflict::Error => {
                conflicts.extend(keys.into_iter().map(|key| Conflict {
                    table: table.name.clone(),
                    key,
                    constraint: constraint.clone(),
                    columns: columns.clone(),
                }));
            }
            OnConflict::Skip => {
                client
                    .execute(format!("DELETE FROM {temp} c WHERE {exists}").as_str(), &[])
                    .await
                    .map_err(sql("leaving out conflicting rows of", &table.name))?;
                carried.skipped.extend(keys);
            }
            OnConflict::Replace => {
                let theirs: Vec<String> = columns
                    .iter()
                    .map(|c| format!("c.{0} = r.{0}", quote_ident(c)))
                    .collect();
                client
                    .execute(
                        format!(
                            "DELETE FROM {} r WHERE EXISTS (SELECT 1 FROM {temp} c WHERE {})",
                            info.qualified,
                            theirs.join(" AND ")
                        )
                        .as_str(),
                        &[],
                    )
                    .await
                    .map_err(sql("replacing the clone's rows of", &table.name))?;
                carried.replaced.extend(keys);
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(CarryError::Conflicts { conflicts });
    }
    Ok(())
}

/// Rows whose primary key the new database already uses get a new one
/// from the table's sequence. How many did.
async fn renumber(
    client: &Client,
    table: &CarriedTable,
    info: &TableInfo,
    temp: &str,
) -> Result<u64, CarryError> {
    let Some(pk) = &info.pk else { return Ok(0) };
    let pk = quote_ident(pk);
    let taken = format!(
        "EXISTS (SELECT 1 FROM {} r WHERE r.{pk} = c.{pk})",
        info.qualified
    );
    let count: i64 = client
        .query_one(
            format!("SELECT count(*) FROM {temp} c WHERE {taken}").as_str(),
            &[],
        )
        .await
        .map_err(sql("checking the keys of", &table.name))?
        .get(0);
    if count == 0 {
        return Ok(0);
    }
    let Some(sequence) = &info.sequence else {
        return Err(CarryError::NoNewKey {
            table: table.name.clone(),
            key: info.pk.clone().unwrap_or_default(),
            rows: count as u64,
        });
    };
    // A sequence may lag behind its keys (rows inserted with explicit
    // ids): moved past them, and past the carried rows' own, first, so a
    // new key is never a taken one.
    advance_sequence(client, table, info, Some(temp)).await?;
    client
        .execute(
            format!("UPDATE {temp} c SET {pk} = nextval($1::text::regclass) WHERE {taken}")
                .as_str(),
            &[sequence],
        )
        .await
        .map_err(sql("renumbering the carried rows of", &table.name))?;
    Ok(count as u64)
}

/// The rows into the table, and its sequence moved past them.
async fn insert_rows(
    client: &Client,
    table: &CarriedTable,
    info: &TableInfo,
    temp: &str,
) -> Result<u64, CarryError> {
    let columns: Vec<String> = info
        .columns
        .iter()
        .filter(|(name, _, generated)| !generated && table.columns.contains(name))
        .map(|(name, _, _)| quote_ident(name))
        .collect();
    let list = columns.join(", ");
    let rows = client
        .execute(
            format!(
                "INSERT INTO {} ({list}) OVERRIDING SYSTEM VALUE SELECT {list} FROM {temp}",
                info.qualified
            )
            .as_str(),
            &[],
        )
        .await
        .map_err(sql("inserting the carried rows into", &table.name))?;
    advance_sequence(client, table, info, None).await?;
    Ok(rows)
}

/// Moves the table's sequence past its largest key, and the largest of
/// temporary table `also` (never back).
async fn advance_sequence(
    client: &Client,
    table: &CarriedTable,
    info: &TableInfo,
    also: Option<&str>,
) -> Result<(), CarryError> {
    let (Some(pk), Some(sequence)) = (&info.pk, &info.sequence) else {
        return Ok(());
    };
    let keys = match also {
        Some(temp) => format!(
            "SELECT {pk} FROM {} UNION ALL SELECT {pk} FROM {temp}",
            info.qualified,
            pk = quote_ident(pk)
        ),
        None => format!("SELECT {} FROM {}", quote_ident(pk), info.qualified),
    };
    client
        .execute(
            format!(
                "SELECT setval($1::text::regclass, m) FROM (SELECT max(k) AS m FROM ({keys}) AS k(k)) x \
                 WHERE m IS NOT NULL AND m >= (SELECT last_value FROM {seq})",
                seq = sequence
            )
            .as_str(),
            &[sequence],
        )
        .await
        .map_err(sql("moving the sequence past the keys of", &table.name))?;
    Ok(())
}

impl CarryOver {
    /// Rows per table, as read from staging.
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.tables
            .iter()
            .map(|t| (t.name.clone(), t.rows))
            .collect()
    }
}

/// What one carry-over put into the new database, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub step_id: String,
    pub tables: Vec<TableCarried>,
}

/// Every carry-over of `spec` into the new database, in order.
pub(super) async fn insert_all(
    spec: &super::CloneSpec,
    client: &Client,
    in_transaction: bool,
) -> super::error::Result<Vec<Carried>> {
    let mut all = Vec::new();
    for (n, carry) in spec.carry.iter().enumerate() {
        let tables = insert(client, carry, n, in_transaction)
            .await
            .map_err(|error| super::Error::Carry {
                step: carry.step_id.clone(),
                error,
            })?;
        all.push(Carried {
            step_id: carry.step_id.clone(),
            tables,
        });
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(key: &str) -> Conflict {
        Conflict {
            table: "auth_user".into(),
            key: key.into(),
            constraint: "auth_user_email_key".into(),
            columns: vec!["email".into()],
        }
    }

    #[test]
    fn a_conflict_names_the_row_by_its_key_and_the_constraint_never_the_value() {
        let one = CarryError::Conflicts {
            conflicts: vec![conflict("qa-two")],
        };
        assert_eq!(
            one.to_string(),
            "carried row conflicts with what the new database holds (`on_conflict: error`); \
             nothing was written:\n  - `auth_user` row `qa-two` (`auth_user_email_key` on email)\n\
             Use `on_conflict: skip` to leave it out, or `on_conflict: replace` to keep staging's"
        );
        let two = CarryError::Conflicts {
            conflicts: vec![conflict("qa-one"), conflict("qa-two")],
        };
        assert!(
            two.to_string()
                .starts_with("carried rows conflict with what the new database holds"),
            "{two}"
        );
    }

    #[test]
    fn a_missing_column_names_each_one() {
        let error = CarryError::MissingColumns {
            table: "auth_user".into(),
            columns: vec!["nickname".into(), "pronouns".into()],
        };
        assert!(
            error
                .to_string()
                .starts_with("`auth_user` has columns `nickname`, `pronouns` on staging"),
            "{error}"
        );
    }
}
