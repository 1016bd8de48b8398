//! Rows of a staging table whose key production does not have: the QA
//! accounts and test users a reset would drop. Found by reading the key
//! columns of both sides sorted by their bytes (`COLLATE "C"` on the key's
//! text, the same order on any two servers) and merging the two streams,
//! so neither side is held in memory; only the staging-only keys are kept.
//!
//! Both sides are read in read-only transactions. Only keys leave this
//! module (and counts of the rows that point at them): never another
//! column, and never a production value — a key production has is by
//! definition not staging-only.

use futures_util::{Stream, StreamExt, TryStreamExt};
use tokio_postgres::{Client, Row};

use crate::pg::ident::quote_ident;

/// What to look for.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// As written by the user: `auth_user`, `public.auth_user`.
    pub table: String,
    /// The key's columns, one or more.
    pub key: Vec<String>,
    /// A condition on staging's rows (SQL), e.g. `email LIKE '%@ourcompany.test'`.
    pub filter: Option<String>,
    /// Compare keys ignoring case (also the case for `citext` columns).
    pub insensitive: bool,
    /// Tables whose rows point at a kept row, and through which column.
    pub include: Vec<Include>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub table: String,
    pub fk: String,
    /// A condition on the included table's rows (SQL). With it, `fk` may
    /// be a polymorphic column (Rails' `taggable_id` beside
    /// `taggable_type = 'User'`) that no foreign key declares: it then
    /// points at the kept table's primary key.
    pub filter: Option<String>,
}

impl Include {
    /// ` AND (<where>)` for a query on the included table, or nothing.
    pub fn and_filter(&self) -> String {
        self.filter
            .as_ref()
            .map(|f| format!(" AND ({f})"))
            .unwrap_or_default()
    }
}

/// What was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The table, schema-qualified.
    pub table: String,
    /// Each staging-only row's key, one text per key column, in key order.
    pub keys: Vec<Vec<String>>,
    /// Staging rows (matching the filter) with a NULL in the key: they
    /// match nothing, so they are counted and left out.
    pub null_keys: u64,
    /// Whether keys were compared ignoring case, and why.
    pub case: Case,
    /// Per `include`: the rows that point at a staging-only row.
    pub included: Vec<Included>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Sensitive,
    /// `key_case: insensitive`.
    Insensitive,
    /// Every key column is `citext`.
    Citext,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Included {
    pub table: String,
    pub fk: String,
    /// The column of the kept table `fk` references.
    pub references: String,
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StagingOnlyError {
    #[error("table `{table}` does not exist on {side}")]
    NoTable { side: Side, table: String },
    #[error("table `{table}` has no column `{column}` on {side}")]
    NoColumn {
        side: Side,
        table: String,
        column: String,
    },
    #[error(
        "include `{table}.{fk}`: no foreign key from `{table}.{fk}` to `{to}` on staging \
         (an included table must point at the kept rows through a foreign key; for a \
         polymorphic column, add the condition that picks the kept table's rows: \
         `where: \"{fk_type}\" = '…'`)",
        fk_type = polymorphic_type(.fk)
    )]
    NoForeignKey {
        table: String,
        fk: String,
        to: String,
    },
    #[error("reading {side}: {message}")]
    Query { side: Side, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "the source",
            Side::Target => "the target",
        })
    }
}

/// `taggable_id` → `taggable_type`, the column Rails pairs with it.
fn polymorphic_type(fk: &str) -> String {
    match fk.strip_suffix("_id") {
        Some(stem) => format!("{stem}_type"),
        None => "…_type".to_string(),
    }
}

fn query_error(side: Side) -> impl Fn(tokio_postgres::Error) -> StagingOnlyError {
    move |e| StagingOnlyError::Query {
        side,
        message: crate::pg::connect::describe(&e, None),
    }
}

/// A table as the server knows it: its oid, quoted qualified name, and
/// columns with their type names.
struct Resolved {
    oid: u32,
    qualified: String,
    columns: Vec<(String, String)>,
}

async fn resolve(client: &Client, side: Side, table: &str) -> Result<Resolved, StagingOnlyError> {
    let row = client
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
            &[&table],
        )
        .await
        .map_err(query_error(side))?
        .ok_or_else(|| StagingOnlyError::NoTable {
            side,
            table: table.to_string(),
        })?;
    let oid: u32 = row.get(0);
    let qualified = format!(
        "{}.{}",
        quote_ident(row.get::<_, String>(1).as_str()),
        quote_ident(row.get::<_, String>(2).as_str())
    );
    let columns = client
        .query(
            "SELECT a.attname::text, t.typname::text FROM pg_attribute a \
             JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(query_error(side))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Resolved {
        oid,
        qualified,
        columns,
    })
}

impl Resolved {
    fn check_columns<'a>(
        &self,
        side: Side,
        table: &str,
        columns: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), StagingOnlyError> {
        for column in columns {
            if !self.columns.iter().any(|(name, _)| name == column) {
                return Err(StagingOnlyError::NoColumn {
                    side,
                    table: table.to_string(),
                    column: column.clone(),
                });
            }
        }
        Ok(())
    }

    fn is_citext(&self, column: &str) -> bool {
        self.columns
            .iter()
            .any(|(name, ty)| name == column && ty == "citext")
    }
}

/// The staging-only rows of `lookup.table`: in `target` (staging) and
/// matching the filter, with a key `source` (production) does not have.
pub async fn find(
    source: &Client,
    target: &Client,
    lookup: &Lookup,
) -> Result<Found, StagingOnlyError> {
    crate::pg::readonly::begin(source)
        .await
        .map_err(|e| StagingOnlyError::Query {
            side: Side::Source,
            message: e.to_string(),
        })?;
    crate::pg::readonly::begin(target)
        .await
        .map_err(|e| StagingOnlyError::Query {
            side: Side::Target,
            message: e.to_string(),
        })?;
    let staging = resolve(target, Side::Target, &lookup.table).await?;
    let production = resolve(source, Side::Source, &lookup.table).await?;
    staging.check_columns(Side::Target, &lookup.table, &lookup.key)?;
    production.check_columns(Side::Source, &lookup.table, &lookup.key)?;
    let case = match lookup.insensitive {
        true => Case::Insensitive,
        false if lookup.key.iter().all(|k| staging.is_citext(k)) => Case::Citext,
        false => Case::Sensitive,
    };

    // What each include points at, resolved before any key is read.
    let mut targets = Vec::new();
    for include in &lookup.include {
        let referenced = referenced_column(target, &staging, include, &lookup.table).await?;
        targets.push(referenced);
    }
    let mut referenced: Vec<String> = targets.clone();
    referenced.sort();
    referenced.dedup();

    let compared = |column: &str| {
        let text = format!("{}::text", quote_ident(column));
        match case {
            Case::Sensitive => text,
            Case::Insensitive | Case::Citext => format!("lower({text})"),
        }
    };
    let compare: Vec<String> = lookup.key.iter().map(|k| compared(k)).collect();
    let order: Vec<String> = compare
        .iter()
        .map(|c| format!("{c} COLLATE \"C\""))
        .collect();
    let not_null: Vec<String> = lookup
        .key
        .iter()
        .map(|k| format!("{} IS NOT NULL", quote_ident(k)))
        .collect();
    let filter = lookup
        .filter
        .as_ref()
        .map(|f| format!(" AND ({f})"))
        .unwrap_or_default();

    let shown: Vec<String> = lookup
        .key
        .iter()
        .chain(&referenced)
        .map(|k| format!("{}::text", quote_ident(k)))
        .collect();
    let staging_sql = format!(
        "SELECT {}, {} FROM {} WHERE {}{filter} ORDER BY {}",
        compare.join(", "),
        shown.join(", "),
        staging.qualified,
        not_null.join(" AND "),
        order.join(", ")
    );
    let source_sql = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY {}",
        compare.join(", "),
        production.qualified,
        not_null.join(" AND "),
        order.join(", ")
    );
    let null_sql = format!(
        "SELECT count(*) FROM {} WHERE NOT ({}){filter}",
        staging.qualified,
        not_null.join(" AND ")
    );
    let null_keys: i64 = target
        .query_one(null_sql.as_str(), &[])
        .await
        .map_err(query_error(Side::Target))?
        .get(0);

    let width = compare.len();
    let staging_rows = stream(target, &staging_sql, Side::Target).await?;
    let source_rows = stream(source, &source_sql, Side::Source).await?;
    let only = merge(staging_rows, source_rows, width).await?;

    let keys: Vec<Vec<String>> = only
        .iter()
        .map(|row| row[width..width + lookup.key.len()].to_vec())
        .collect();
    let mut included = Vec::new();
    for (include, references) in lookup.include.iter().zip(&targets) {
        let at =
            width + lookup.key.len() + referenced.iter().position(|r| r == references).unwrap();
        let values: Vec<String> = only.iter().map(|row| row[at].clone()).collect();
        let table = resolve(target, Side::Target, &include.table).await?;
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {}::text = ANY($1){}",
            table.qualified,
            quote_ident(&include.fk),
            include.and_filter()
        );
        let rows: i64 = target
            .query_one(sql.as_str(), &[&values])
            .await
            .map_err(query_error(Side::Target))?
            .get(0);
        included.push(Included {
            table: include.table.clone(),
            fk: include.fk.clone(),
            references: references.clone(),
            rows: rows as u64,
        });
    }
    Ok(Found {
        table: staging.qualified,
        keys,
        null_keys: null_keys as u64,
        case,
        included,
    })
}

/// The column of `kept` that `include.fk` references through a one-column
/// foreign key on staging.
async fn referenced_column(
    target: &Client,
    kept: &Resolved,
    include: &Include,
    kept_name: &str,
) -> Result<String, StagingOnlyError> {
    let table = resolve(target, Side::Target, &include.table).await?;
    table.check_columns(Side::Target, &include.table, [&include.fk])?;
    let row = target
        .query_opt(
            "SELECT r.attname::text FROM pg_constraint c \
             JOIN pg_attribute f ON f.attrelid = c.conrelid AND f.attnum = c.conkey[1] \
             JOIN pg_attribute r ON r.attrelid = c.confrelid AND r.attnum = c.confkey[1] \
             WHERE c.contype = 'f' AND c.conrelid = $1 AND c.confrelid = $2 \
               AND cardinality(c.conkey) = 1 AND f.attname = $3 LIMIT 1",
            &[&table.oid, &kept.oid, &include.fk],
        )
        .await
        .map_err(query_error(Side::Target))?;
    if let Some(row) = row {
        return Ok(row.get(0));
    }
    let no_fk = || StagingOnlyError::NoForeignKey {
        table: include.table.clone(),
        fk: include.fk.clone(),
        to: kept_name.to_string(),
    };
    if include.filter.is_none() {
        return Err(no_fk());
    }
    // Polymorphic: the kept table's one-column primary key.
    let pk = target
        .query_opt(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = $1 AND i.indisprimary AND i.indnkeyatts = 1",
            &[&kept.oid],
        )
        .await
        .map_err(query_error(Side::Target))?
        .ok_or_else(no_fk)?;
    Ok(pk.get(0))
}

type Rows = std::pin::Pin<Box<dyn Stream<Item = Result<Vec<String>, StagingOnlyError>> + Send>>;

/// The rows of `sql` as texts, as they arrive.
async fn stream(client: &Client, sql: &str, side: Side) -> Result<Rows, StagingOnlyError> {
    let rows = client
        .query_raw(sql, std::iter::empty::<&str>())
        .await
        .map_err(query_error(side))?;
    Ok(Box::pin(rows.map_err(query_error(side)).map_ok(
        |row: Row| {
            (0..row.len())
                .map(|i| row.get::<_, Option<String>>(i).unwrap_or_default())
                .collect()
        },
    )))
}

/// The staging rows whose first `width` texts no source row has; both
/// streams sorted by those texts' bytes.
async fn merge(
    mut staging: Rows,
    mut source: Rows,
    width: usize,
) -> Result<Vec<Vec<String>>, StagingOnlyError> {
    let mut only = Vec::new();
    let mut current = source.next().await.transpose()?;
    while let Some(row) = staging.next().await.transpose()? {
        let key = &row[..width];
        while current.as_ref().is_some_and(|c| c.as_slice() < key) {
            current = source.next().await.transpose()?;
        }
        if current.as_deref() != Some(key) {
            only.push(row);
        }
    }
    Ok(only)
}

/// A key as a person reads it: the value, or `(a, b)` for several columns.
pub fn show_key(key: &[String]) -> String {
    match key {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    }
}
