//! The source side of a clone, shared by both strategies: one exported
//! snapshot (its coordinator stays open while workers import it), the
//! tables in it, the rules bound to exactly those tables, and pg_dump's
//! pre-data and post-data sections read in the same snapshot, without
//! foreign servers, user mappings and foreign tables (refused unless the
//! rules say `foreign: skip`), with every comment's personal data redacted;
//! personal data in the schema's other objects is refused unless the rules
//! say `schema: keep`. Only ever reads the source; never connects to
//! staging.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::error::{Error, Result};
use super::spec::{CloneSpec, SchemaCover, TableRule, rules_of};
use crate::anonymize::bind::Binding;
use crate::pg::catalog::{self, Table};
use crate::pg::catalog_schema;
use crate::pg::connect::sql_error;
use crate::pg::schema::{self, PostData, Section};
use crate::pg::snapshot::Snapshot;

/// What the snapshot holds, and what a strategy needs to load it.
pub(crate) struct Source {
    pub snapshot: Snapshot,
    pub major: u32,
    pub tables: Vec<Table>,
    /// Per table, what happens to its rows: the anonymizer bound to
    /// `tables`, else the spec's own rules.
    pub rules: BTreeMap<String, TableRule>,
    /// The anonymizer bound to `tables`, for the report.
    pub binding: Option<Binding>,
    /// Foreign objects (left out: a source with them and no `foreign: skip`
    /// is refused here) and how many large objects there are, for the
    /// report.
    pub outside: catalog::Outside,
    /// Personal data kept in the schema (`schema: keep`; else refused
    /// here) and the comments redacted, for the report.
    pub schema: SchemaCover,
    /// pg_dump's pre-data section (create tables, types, functions).
    pub pre: String,
    /// pg_dump's post-data section, split into entries.
    pub post: PostData,
    /// How long reading both sections took, for the report's schema phase.
    pub dump_time: Duration,
}

impl Source {
    /// The source prelude: export the snapshot, list its tables, bind the
    /// rules to them and dump the schema. Rules are decided on the
    /// snapshot's own tables, so a column added since the plan is seen here
    /// and refused before anything is written.
    pub(crate) async fn open(spec: &CloneSpec, cancel: &CancellationToken) -> Result<Source> {
        let name = &spec.source_name;
        let snapshot = Snapshot::export(name, &spec.source_url, cancel).await?;
        let major = server_major(&snapshot.client, name).await?;
        let tables = catalog::tables(&snapshot.client)
            .await
            .map_err(sql_error(name, "listing tables"))?;
        let pg_dump = schema::find_pg_dump(major).map_err(|error| Error::PgDump {
            name: name.clone(),
            error,
        })?;
        let outside = catalog::outside(&snapshot.client)
            .await
            .map_err(sql_error(name, "listing foreign objects and large objects"))?;
        spec.check_foreign(&outside)?;
        let texts = catalog_schema::schema_texts(&snapshot.client)
            .await
            .map_err(sql_error(
                name,
                "reading the schema's defaults, functions and views",
            ))?;
        let mut cover = spec.check_schema(&texts)?;
        let (rules, binding) = bind(spec, &tables)?;
        // Both sections at once: each pg_dump reads the whole catalog.
        // Foreign tables and the views reading them (with what depends on
        // them) are left out by pg_dump itself, servers and user mappings
        // by their entries.
        let dump_began = Instant::now();
        let left_out = outside.left_out_relations();
        let dump = |section| {
            schema::dump_section_excluding(
                &pg_dump,
                &spec.source_url,
                section,
                Some(&snapshot.id),
                &left_out,
            )
        };
        let (pre, post) = tokio::try_join!(dump(Section::PreData), dump(Section::PostData))
            .map_err(|error| Error::PgDump {
                name: name.clone(),
                error,
            })?;
        let (pre, _) = schema::without_foreign(&pre);
        let (post, _) = schema::without_foreign(&post);
        // Comments pass through the redactor of every kind, keyed like the
        // rows: no comment reaches staging with the production's text.
        let (pre, post) = match &spec.anonymizer {
            Some(anonymizer) => {
                let (pre, in_pre) = schema::map_comments(&pre, |t| anonymizer.redact_comment(t));
                let (post, in_post) = schema::map_comments(&post, |t| anonymizer.redact_comment(t));
                cover.comments_redacted = Some(in_pre + in_post);
                (pre, post)
            }
            None => (pre, post),
        };
        Ok(Source {
            snapshot,
            major,
            tables,
            rules,
            binding,
            outside,
            schema: cover,
            pre,
            post: schema::split_post_data(&post),
            dump_time: dump_began.elapsed(),
        })
    }
}

/// The rules for `tables`: the spec's anonymizer bound to them (refused when
/// it does not cover them), else the spec's own rules.
fn bind(
    spec: &CloneSpec,
    tables: &[Table],
) -> Result<(BTreeMap<String, TableRule>, Option<Binding>)> {
    let Some(anonymizer) = &spec.anonymizer else {
        return Ok((spec.rules.clone(), None));
    };
    let binding = anonymizer.bind(tables);
    binding
        .check(spec.policy)
        .map_err(|refusal| Error::Uncovered {
            name: spec.source_name.clone(),
            refusal,
        })?;
    Ok((rules_of(&binding), Some(binding)))
}

/// The server's major version (15 for 15.4).
pub(crate) async fn server_major(client: &Client, target: &str) -> Result<u32> {
    let num = catalog::server_version_num(client)
        .await
        .map_err(sql_error(target, "reading the server version"))?;
    Ok((num / 10_000) as u32)
}
