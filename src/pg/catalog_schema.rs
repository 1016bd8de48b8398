//! The text of the source's schema objects that carry literals of their own
//! into staging: column defaults and generated expressions, enum labels,
//! function definitions, view and materialized view definitions, check
//! constraints (of tables and domains), domain defaults, row security
//! policies, index definitions and trigger definitions. Each comes with a
//! description of its object (never quoting the text), so the anonymizer
//! can look for personal data in it and a refusal can name where it is.
//!
//! User schemas only: `pg_catalog`, `information_schema`, temporary and
//! toast schemas and every extension-owned object (`pg_depend` deptype
//! `e`) are left out, as pg_dump leaves them out. Foreign tables are left
//! out too: a clone never recreates them as they are. Every query is a
//! read; run them inside the exported snapshot. This module never judges
//! what it reads.

use tokio_postgres::Client;

/// One object of the schema and the text that goes to staging with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaText {
    /// What it is and where: `default of column public.people.email`,
    /// `label of enum public.mood`, `function public.notify(text)`.
    pub object: String,
    /// The definition as the server prints it (holding the literals).
    pub text: String,
}

/// A schema that is the user's: not the system's, not temporary.
const USER_NAMESPACE: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' \
     AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// `alias.oid` of catalog `class` is not owned by an extension.
fn not_extension(class: &str, alias: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
         WHERE d.classid = 'pg_catalog.{class}'::regclass \
           AND d.objid = {alias}.oid AND d.deptype = 'e')"
    )
}

/// `schema.name` of relation `c` in namespace `n`, quoted where needed.
const RELATION: &str =
    "pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)";

/// Every [`SchemaText`] of the source, ordered by object.
pub async fn schema_texts(client: &Client) -> Result<Vec<SchemaText>, tokio_postgres::Error> {
    let user_relation = format!(
        "{USER_NAMESPACE} AND c.relkind <> 'f' AND c.relpersistence <> 't' AND {}",
        not_extension("pg_class", "c")
    );
    let user_type = format!("{USER_NAMESPACE} AND {}", not_extension("pg_type", "t"));
    let queries = [
        // Column defaults and generated columns.
        format!(
            "SELECT 'default of column ' || {RELATION} || '.' || pg_catalog.quote_ident(a.attname), \
                    pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) \
             FROM pg_catalog.pg_attrdef ad \
             JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum \
             WHERE {user_relation}"
        ),
        format!(
            "SELECT 'label of enum ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname), e.enumlabel::text \
             FROM pg_catalog.pg_enum e \
             JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
             WHERE {user_type}"
        ),
        format!(
            "SELECT 'default of domain ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname), \
                    pg_catalog.pg_get_expr(t.typdefaultbin, 0) \
             FROM pg_catalog.pg_type t \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
             WHERE t.typtype = 'd' AND t.typdefaultbin IS NOT NULL AND {user_type}"
        ),
        // Functions and procedures, their argument defaults included;
        // aggregates and window functions have no definition to print.
        format!(
            "SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END \
                    || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname) \
                    || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')', \
                    pg_catalog.pg_get_functiondef(p.oid) \
             FROM pg_catalog.pg_proc p \
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.prokind IN ('f', 'p') AND {USER_NAMESPACE} AND {}",
            not_extension("pg_proc", "p")
        ),
        format!(
            "SELECT CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END || {RELATION}, \
                    pg_catalog.pg_get_viewdef(c.oid) \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('v', 'm') AND {user_relation}"
        ),
        format!(
            "SELECT 'check constraint ' || pg_catalog.quote_ident(k.conname) || ' on ' || {RELATION}, \
                    pg_catalog.pg_get_constraintdef(k.oid) \
             FROM pg_catalog.pg_constraint k \
             JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype IN ('c', 'x') AND {user_relation}"
        ),
        format!(
            "SELECT 'check constraint ' || pg_catalog.quote_ident(k.conname) || ' on domain ' \
                    || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname), \
                    pg_catalog.pg_get_constraintdef(k.oid) \
             FROM pg_catalog.pg_constraint k \
             JOIN pg_catalog.pg_type t ON t.oid = k.contypid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
             WHERE k.contype = 'c' AND {user_type}"
        ),
        format!(
            "SELECT 'policy ' || pg_catalog.quote_ident(p.polname) || ' on ' || {RELATION}, \
                    concat_ws(' ', pg_catalog.pg_get_expr(p.polqual, p.polrelid), \
                              pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)) \
             FROM pg_catalog.pg_policy p \
             JOIN pg_catalog.pg_class c ON c.oid = p.polrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE {user_relation}"
        ),
        // Partial and expression indexes hold literals; plain ones do not.
        format!(
            "SELECT 'index ' || pg_catalog.quote_ident(n.nspname) || '.' \
                    || pg_catalog.quote_ident(i.relname), \
                    pg_catalog.pg_get_indexdef(x.indexrelid) \
             FROM pg_catalog.pg_index x \
             JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
             JOIN pg_catalog.pg_class c ON c.oid = x.indrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE (x.indpred IS NOT NULL OR x.indexprs IS NOT NULL) AND {user_relation}"
        ),
        format!(
            "SELECT 'trigger ' || pg_catalog.quote_ident(g.tgname) || ' on ' || {RELATION}, \
                    pg_catalog.pg_get_triggerdef(g.oid) \
             FROM pg_catalog.pg_trigger g \
             JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT g.tgisinternal AND {user_relation}"
        ),
        // Rewrite rules other than a view's own `_RETURN`: pg_dump copies
        // `CREATE RULE … DO ALSO INSERT … VALUES ('…')` as it is.
        format!(
            "SELECT 'rule ' || pg_catalog.quote_ident(r.rulename) || ' on ' || {RELATION}, \
                    pg_catalog.pg_get_ruledef(r.oid) \
             FROM pg_catalog.pg_rewrite r \
             JOIN pg_catalog.pg_class c ON c.oid = r.ev_class \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE r.rulename <> '_RETURN' AND {user_relation}"
        ),
        // An aggregate's initial state is a literal pg_get_functiondef
        // does not print.
        format!(
            "SELECT 'initial state of aggregate ' || pg_catalog.quote_ident(n.nspname) || '.' \
                    || pg_catalog.quote_ident(p.proname), a.agginitval \
             FROM pg_catalog.pg_aggregate a \
             JOIN pg_catalog.pg_proc p ON p.oid = a.aggfnoid \
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE {USER_NAMESPACE} AND {}",
            not_extension("pg_proc", "p")
        ),
    ];
    let sql = queries
        .iter()
        .map(|q| format!("({q})"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows = client
        .query(
            &format!("SELECT * FROM ({sql}) o(object, text) WHERE text IS NOT NULL ORDER BY 1, 2"),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| SchemaText {
            object: row.get(0),
            text: row.get(1),
        })
        .collect())
}
