//! What a clone copies, read from the source's catalogs: the tables that hold
//! data (with their columns, size and whether binary COPY can carry them),
//! the sequences and their values, the server version, and what it holds
//! that a clone must not recreate as it is or cannot carry: foreign servers,
//! user mappings and foreign tables (never their options), and large objects.
//!
//! Every query here is a read; run them on a session inside the exported
//! snapshot so the list matches the data. This module must not write, and
//! must not decide how a table is copied — it only describes.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::pg::ident::quote_ident;

/// Type OIDs below this are built in and equal in every database of a major
/// version (`FirstNormalObjectId`); user and extension types get OIDs from
/// here up, different in each database.
const FIRST_NORMAL_OID: u32 = 16384;

/// How many sequences one `UNION ALL` query reads.
const SEQUENCES_PER_QUERY: usize = 500;

/// A table whose rows are copied: an ordinary table or a leaf partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `"schema"."name"`, both parts always double-quoted (see
    /// [`quote_ident`](crate::pg::ident::quote_ident)).
    pub qualified: String,
    /// In column order, without generated and dropped columns (generated
    /// columns are computed by the target, never copied).
    pub columns: Vec<Column>,
    /// Size of the main fork, in bytes.
    pub bytes: i64,
    /// `relpages`, as of the last VACUUM/ANALYZE: the basis of ctid ranges.
    pub pages: i64,
    /// `reltuples`; 0 when the table was never analyzed.
    pub rows_estimate: i64,
    /// Column names of the primary key, in key order; empty without one.
    pub primary_key: Vec<String>,
    /// Whether every column can go through binary COPY between two
    /// databases (see [`Column::binary_ok`]).
    pub binary_ok: bool,
    /// For a leaf partition, the partitioned tables above it as
    /// `schema.name` (unquoted), nearest first: `events_2024_01`,
    /// then `events`. Empty for an ordinary table.
    pub partition_of: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// As `format_type` spells it, but qualified whatever the search path
    /// (built-in types excepted): `character varying(20)`, `public.mood[]`.
    pub type_name: String,
    pub type_oid: u32,
    /// False when the type has no binary send/receive functions, is a
    /// composite (its binary form embeds column type OIDs), is an array whose
    /// element type is not built in (the element's OID is embedded and differs
    /// in the new database), or is a domain or range over such a type.
    pub binary_ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// `"schema"."name"`, always quoted.
    pub qualified: String,
    pub last_value: i64,
    pub is_called: bool,
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// `server_version_num`, e.g. 150018 for 15.18.
pub async fn server_version_num(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await?;
    Ok(row.get(0))
}

/// Schemas whose tables and sequences are never user data. `n` is the
/// alias of `pg_namespace`, `c` of `pg_class`.
const USER_RELATION: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' \
     AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
     AND c.relpersistence <> 't' \
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                     WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                       AND d.objid = c.oid AND d.deptype = 'e')";

/// Ordinary tables and leaf partitions (not partitioned parents, views,
/// foreign tables, system or extension-owned tables), largest first, then
/// by qualified name.
pub async fn tables(client: &Client) -> Result<Vec<Table>, tokio_postgres::Error> {
    let version = server_version_num(client).await?;
    let sql = format!(
        "SELECT c.oid, n.nspname, c.relname, pg_catalog.pg_relation_size(c.oid), \
                c.relpages::int8, c.reltuples::float8 \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND {USER_RELATION}"
    );
    let mut tables: Vec<Table> = client
        .query(&sql, &[])
        .await?
        .iter()
        .map(|row| {
            let schema: String = row.get(1);
            let name: String = row.get(2);
            let reltuples: f64 = row.get(5);
            Table {
                oid: row.get(0),
                qualified: qualified(&schema, &name),
                schema,
                name,
                columns: Vec::new(),
                bytes: row.get(3),
                pages: row.get(4),
                // -1 means "never analyzed" (PostgreSQL 14+).
                rows_estimate: reltuples.max(0.0) as i64,
                primary_key: Vec::new(),
                binary_ok: true,
                partition_of: Vec::new(),
            }
        })
        .collect();
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    let mut columns = columns_of(client, &oids, version).await?;
    let mut keys = primary_keys_of(client, &oids, version).await?;
    let mut parents = partition_parents_of(client, &oids).await?;
    for table in &mut tables {
        table.columns = columns.remove(&table.oid).unwrap_or_default();
        table.primary_key = keys.remove(&table.oid).unwrap_or_default();
        table.partition_of = parents.remove(&table.oid).unwrap_or_default();
        table.binary_ok = table.columns.iter().all(|c| c.binary_ok);
    }
    tables.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.qualified.cmp(&b.qualified))
    });
    Ok(tables)
}

/// Copyable columns of each table, in column order, with `binary_ok` set.
async fn columns_of(
    client: &Client,
    oids: &[u32],
    version: i32,
) -> Result<HashMap<u32, Vec<Column>>, tokio_postgres::Error> {
    // Generated columns exist from PostgreSQL 12.
    let not_generated = if version >= 120_000 {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let sql = format!(
        "SELECT a.attrelid, a.attname, \
                CASE WHEN t.typnamespace <> 'pg_catalog'::regnamespace \
                          AND pg_catalog.pg_type_is_visible(t.oid) \
                     THEN pg_catalog.quote_ident(n.nspname) || '.' \
                     ELSE '' \
                END || pg_catalog.format_type(a.atttypid, a.atttypmod), \
                a.atttypid \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
         WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped {not_generated} \
         ORDER BY a.attrelid, a.attnum"
    );
    let rows = client.query(&sql, &[&oids]).await?;
    let type_oids: Vec<u32> = rows.iter().map(|row| row.get(3)).collect();
    let binary = binary_io(client, &type_oids).await?;
    let mut columns: HashMap<u32, Vec<Column>> = HashMap::new();
    for row in &rows {
        let type_oid: u32 = row.get(3);
        columns.entry(row.get(0)).or_default().push(Column {
            name: row.get(1),
            type_name: row.get(2),
            type_oid,
            binary_ok: binary.get(&type_oid).copied().unwrap_or(false),
        });
    }
    Ok(columns)
}

/// The partitioned tables above each leaf partition, nearest first, as
/// `schema.name`. A walk up `pg_inherits` (there since PostgreSQL 10, where
/// `pg_partition_ancestors` came in 12) that follows only partitioned
/// parents, so plain inheritance children keep their own rules.
async fn partition_parents_of(
    client: &Client,
    oids: &[u32],
) -> Result<HashMap<u32, Vec<String>>, tokio_postgres::Error> {
    let sql = "WITH RECURSIVE up(leaf, parent, level) AS ( \
             SELECT i.inhrelid, i.inhparent, 1 FROM pg_catalog.pg_inherits i \
             JOIN pg_catalog.pg_class p ON p.oid = i.inhparent AND p.relkind = 'p' \
             WHERE i.inhrelid = ANY($1) \
           UNION ALL \
             SELECT up.leaf, i.inhparent, up.level + 1 FROM up \
             JOIN pg_catalog.pg_inherits i ON i.inhrelid = up.parent \
             JOIN pg_catalog.pg_class p ON p.oid = i.inhparent AND p.relkind = 'p' \
             WHERE up.level < 64) \
         SELECT up.leaf, n.nspname, c.relname FROM up \
         JOIN pg_catalog.pg_class c ON c.oid = up.parent \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         ORDER BY up.leaf, up.level";
    let mut parents: HashMap<u32, Vec<String>> = HashMap::new();
    for row in client.query(sql, &[&oids]).await? {
        let schema: &str = row.get(1);
        let name: &str = row.get(2);
        parents
            .entry(row.get(0))
            .or_default()
            .push(format!("{schema}.{name}"));
    }
    Ok(parents)
}

/// Primary key column names per table, in key order (without `INCLUDE`d
/// columns).
async fn primary_keys_of(
    client: &Client,
    oids: &[u32],
    version: i32,
) -> Result<HashMap<u32, Vec<String>>, tokio_postgres::Error> {
    // `indnkeyatts` (key columns before INCLUDE ones) exists from 11.
    let key_columns = if version >= 110_000 {
        "i.indnkeyatts"
    } else {
        "i.indnatts"
    };
    let sql = format!(
        "SELECT i.indrelid, a.attname \
         FROM pg_catalog.pg_index i \
         CROSS JOIN LATERAL pg_catalog.generate_series(0, {key_columns} - 1) AS k(pos) \
         JOIN pg_catalog.pg_attribute a \
           ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.pos] \
         WHERE i.indisprimary AND i.indrelid = ANY($1) \
         ORDER BY i.indrelid, k.pos"
    );
    let mut keys: HashMap<u32, Vec<String>> = HashMap::new();
    for row in client.query(&sql, &[&oids]).await? {
        keys.entry(row.get(0)).or_default().push(row.get(1));
    }
    Ok(keys)
}

/// One row of `pg_type`, as far as binary COPY cares.
#[derive(Debug, Clone, Copy)]
struct TypeIo {
    has_send_and_receive: bool,
    composite: bool,
    /// The element of a true array type (varlena with an element type).
    array_of: Option<u32>,
    /// The base of a domain, the subtype of a range, the range of a
    /// multirange: a type whose binary form this one reuses.
    wraps: Option<u32>,
}

/// Whether each of `type_oids` survives binary COPY into another database.
async fn binary_io(
    client: &Client,
    type_oids: &[u32],
) -> Result<HashMap<u32, bool>, tokio_postgres::Error> {
    // The closure of the column types over domain bases, array elements,
    // range subtypes and multirange ranges.
    let sql = "WITH RECURSIVE closure(oid) AS ( \
             SELECT DISTINCT unnest($1::oid[]) \
           UNION \
             SELECT next.oid FROM closure \
             JOIN pg_catalog.pg_type t ON t.oid = closure.oid \
             LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid \
             LEFT JOIN pg_catalog.pg_range mr ON mr.rngmultitypid = t.oid \
             CROSS JOIN LATERAL (VALUES \
               (CASE WHEN t.typtype = 'd' THEN t.typbasetype END), \
               (CASE WHEN t.typlen = -1 AND t.typelem <> 0 THEN t.typelem END), \
               (r.rngsubtype), \
               (mr.rngtypid)) AS next(oid) \
             WHERE next.oid IS NOT NULL AND next.oid <> 0 \
         ) \
         SELECT t.oid, t.typsend <> 0 AND t.typreceive <> 0, t.typtype = 'c', \
                CASE WHEN t.typlen = -1 AND t.typelem <> 0 THEN t.typelem END, \
                CASE WHEN t.typtype = 'd' THEN t.typbasetype END, r.rngsubtype, mr.rngtypid \
         FROM closure JOIN pg_catalog.pg_type t ON t.oid = closure.oid \
         LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid \
         LEFT JOIN pg_catalog.pg_range mr ON mr.rngmultitypid = t.oid";
    let mut types = HashMap::new();
    for row in client.query(sql, &[&type_oids]).await? {
        let base: Option<u32> = row.get(4);
        let subtype: Option<u32> = row.get(5);
        let range: Option<u32> = row.get(6);
        types.insert(
            row.get::<_, u32>(0),
            TypeIo {
                has_send_and_receive: row.get(1),
                composite: row.get(2),
                array_of: row.get(3),
                wraps: base.or(subtype).or(range),
            },
        );
    }
    Ok(type_oids
        .iter()
        .map(|&oid| (oid, binary_ok(oid, &types, 0)))
        .collect())
}

/// See [`Column::binary_ok`]. `depth` guards against a malformed catalog.
fn binary_ok(oid: u32, types: &HashMap<u32, TypeIo>, depth: u32) -> bool {
    let Some(io) = types.get(&oid) else {
        return false;
    };
    if !io.has_send_and_receive || io.composite || depth > 16 {
        return false;
    }
    if let Some(element) = io.array_of
        && (element >= FIRST_NORMAL_OID || !binary_ok(element, types, depth + 1))
    {
        return false;
    }
    io.wraps
        .is_none_or(|inner| binary_ok(inner, types, depth + 1))
}

/// Every sequence not owned by an extension (identity and serial ones
/// included), with the values read from the sequence itself.
pub async fn sequences(client: &Client) -> Result<Vec<Sequence>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT n.nspname, c.relname \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'S' AND {USER_RELATION} \
         ORDER BY n.nspname, c.relname"
    );
    let names: Vec<String> = client
        .query(&sql, &[])
        .await?
        .iter()
        .map(|row| qualified(row.get(0), row.get(1)))
        .collect();
    let mut sequences = Vec::with_capacity(names.len());
    for chunk in names.chunks(SEQUENCES_PER_QUERY) {
        // One round trip per chunk instead of one per sequence.
        let sql = chunk
            .iter()
            .enumerate()
            .map(|(i, name)| format!("SELECT {i}::int4, last_value, is_called FROM {name}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut rows = client.query(&sql, &[]).await?;
        rows.sort_by_key(|row| row.get::<_, i32>(0));
        for (name, row) in chunk.iter().zip(&rows) {
            sequences.push(Sequence {
                qualified: name.clone(),
                last_value: row.get(1),
                is_called: row.get(2),
            });
        }
    }
    Ok(sequences)
}

/// What the source holds outside the tables a clone copies: objects that
/// reach another server (recreated as they are, staging would read
/// production through them and show the mapping's password), and large
/// objects, which no table COPY carries. Names only, never options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outside {
    /// Foreign servers, by name, with their wrapper: `prod_link (postgres_fdw)`.
    pub servers: Vec<String>,
    /// User mappings, as `user on server` (`PUBLIC` for the public mapping).
    pub user_mappings: Vec<String>,
    /// Foreign tables, qualified like [`Table::qualified`].
    pub foreign_tables: Vec<String>,
    /// Views and materialized views that read a foreign table, directly or
    /// through another view (same form): left out with it, since they
    /// could not be created without it.
    pub foreign_views: Vec<String>,
    /// How many large objects `pg_largeobject_metadata` holds.
    pub large_objects: i64,
}

impl Outside {
    /// The foreign tables and the views that read them: what pg_dump is
    /// told to leave out under `foreign: skip`.
    pub fn left_out_relations(&self) -> Vec<String> {
        self.foreign_tables
            .iter()
            .chain(&self.foreign_views)
            .cloned()
            .collect()
    }

    /// Whether there is any foreign server, user mapping or foreign table.
    pub fn has_foreign(&self) -> bool {
        !(self.servers.is_empty()
            && self.user_mappings.is_empty()
            && self.foreign_tables.is_empty())
    }
}

/// Foreign servers, user mappings and foreign tables not owned by an
/// extension, and the number of large objects. Reads `pg_user_mappings`'
/// names only: its `umoptions` (the password) is never selected.
pub async fn outside(client: &Client) -> Result<Outside, tokio_postgres::Error> {
    let not_extension = |class: &str, alias: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
             WHERE d.classid = 'pg_catalog.{class}'::regclass \
               AND d.objid = {alias}.oid AND d.deptype = 'e')"
        )
    };
    let servers = client
        .query(
            &format!(
                "SELECT s.srvname || ' (' || w.fdwname || ')' \
                 FROM pg_catalog.pg_foreign_server s \
                 JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw \
                 WHERE {} ORDER BY s.srvname",
                not_extension("pg_foreign_server", "s")
            ),
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // The view shows every mapping's names to every role (the catalog
    // `pg_user_mapping` only to superusers, and an error would end the
    // snapshot's transaction); its options are not selected.
    let user_mappings = client
        .query(
            "SELECT CASE WHEN umuser = 0 THEN 'PUBLIC' \
                    ELSE pg_catalog.quote_ident(usename::text) END || ' on ' || srvname \
             FROM pg_catalog.pg_user_mappings ORDER BY srvname, 1",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let foreign_tables = client
        .query(
            &format!(
                "SELECT n.nspname, c.relname \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'f' AND {USER_RELATION} \
                 ORDER BY n.nspname, c.relname"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|row| qualified(row.get(0), row.get(1)))
        .collect();
    let foreign_views = client
        .query(
            "WITH RECURSIVE reads(oid) AS ( \
                 SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind = 'f' \
                 UNION \
                 SELECT r.ev_class FROM pg_catalog.pg_depend d \
                 JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
                 JOIN reads ON reads.oid = d.refobjid \
                 WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass \
                   AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                   AND r.ev_class <> d.refobjid) \
             SELECT n.nspname, c.relname FROM reads \
             JOIN pg_catalog.pg_class c ON c.oid = reads.oid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('v', 'm') \
             ORDER BY n.nspname, c.relname",
            &[],
        )
        .await?
        .iter()
        .map(|row| qualified(row.get(0), row.get(1)))
        .collect();
    let large_objects = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata",
            &[],
        )
        .await?
        .get(0);
    Ok(Outside {
        servers,
        user_mappings,
        foreign_tables,
        foreign_views,
        large_objects,
    })
}

/// What a scan weighs besides the values: which tables other tables
/// point at (reference data), and which columns refuse NULL (a rule that
/// writes NULL there would fail the copy).
#[derive(Debug, Clone, Default)]
pub struct ColumnFacts {
    /// Table OID → foreign keys of *other* tables that reference it.
    pub referenced_by: HashMap<u32, u32>,
    /// `(table OID, column name)` of every `NOT NULL` column.
    pub not_null: std::collections::HashSet<(u32, String)>,
}

/// Reads [`ColumnFacts`] for the user's tables.
pub async fn column_facts(client: &Client) -> Result<ColumnFacts, tokio_postgres::Error> {
    let mut facts = ColumnFacts::default();
    for row in client
        .query(
            "SELECT confrelid, count(*)::int8 FROM pg_catalog.pg_constraint \
             WHERE contype = 'f' AND conrelid <> confrelid GROUP BY confrelid",
            &[],
        )
        .await?
    {
        let count: i64 = row.get(1);
        facts
            .referenced_by
            .insert(row.get(0), u32::try_from(count).unwrap_or(u32::MAX));
    }
    let sql = format!(
        "SELECT a.attrelid, a.attname::text FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE a.attnotnull AND a.attnum > 0 AND NOT a.attisdropped \
           AND c.relkind = 'r' AND {USER_RELATION}"
    );
    for row in client.query(&sql, &[]).await? {
        facts.not_null.insert((row.get(0), row.get(1)));
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_quote_both_parts() {
        assert_eq!(qualified("Sales Dept", "order"), r#""Sales Dept"."order""#);
    }

    fn io(send: bool, composite: bool, array_of: Option<u32>, wraps: Option<u32>) -> TypeIo {
        TypeIo {
            has_send_and_receive: send,
            composite,
            array_of,
            wraps,
        }
    }

    #[test]
    fn binary_io_follows_arrays_domains_and_ranges() {
        const INT4: u32 = 23;
        const INT4_ARRAY: u32 = 1007;
        const ENUM: u32 = 16400;
        const ENUM_ARRAY: u32 = 16399;
        const DOMAIN_OVER_ENUM_ARRAY: u32 = 16500;
        const COMPOSITE: u32 = 16600;
        const NO_SEND: u32 = 16700;
        const RANGE_OVER_NO_SEND: u32 = 16800;
        let types = HashMap::from([
            (INT4, io(true, false, None, None)),
            (INT4_ARRAY, io(true, false, Some(INT4), None)),
            (ENUM, io(true, false, None, None)),
            (ENUM_ARRAY, io(true, false, Some(ENUM), None)),
            (
                DOMAIN_OVER_ENUM_ARRAY,
                io(true, false, None, Some(ENUM_ARRAY)),
            ),
            (COMPOSITE, io(true, true, None, None)),
            (NO_SEND, io(false, false, None, None)),
            (RANGE_OVER_NO_SEND, io(true, false, None, Some(NO_SEND))),
        ]);
        let ok = |oid| binary_ok(oid, &types, 0);
        assert!(ok(INT4) && ok(INT4_ARRAY) && ok(ENUM));
        assert!(
            !ok(ENUM_ARRAY),
            "the element's OID is in the array's binary form"
        );
        assert!(!ok(DOMAIN_OVER_ENUM_ARRAY));
        assert!(!ok(COMPOSITE) && !ok(NO_SEND) && !ok(RANGE_OVER_NO_SEND));
        assert!(!ok(99_999), "an unknown type is not assumed safe");
    }
}
