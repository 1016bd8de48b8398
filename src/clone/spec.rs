//! The resolved plan of one clone: which targets, how many workers, how
//! large tables split, and what happens to each table's rows on the way
//! (the anonymizer and its policy, or rules given as they are), and whether
//! foreign objects may be left out. Pure data: nothing here connects
//! anywhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::anonymize::bind::{Anonymizer, Binding};
use crate::anonymize::rules::UnknownColumns;
use crate::anonymize::transform::TableTransform;
use crate::pg::copy::{Format, RowTransform};

/// What happens to one table's rows on the way (from the anonymizer rules).
#[derive(Clone, Default)]
pub struct TableRule {
    /// A SQL predicate; only matching rows are copied.
    pub where_clause: Option<String>,
    /// Create the table empty.
    pub truncate: bool,
    /// By column position: an SQL expression the source computes instead of
    /// the column (a constant, or a `CASE` keeping `except` rows).
    pub expressions: BTreeMap<usize, String>,
    /// SQL expressions read after the columns, for the transform only
    /// (never written): an `except` predicate, a template's `id::text`.
    pub extras: Vec<String>,
    /// Builds the row transform for one COPY of this table.
    pub transform: Option<TransformFactory>,
}

impl std::fmt::Debug for TableRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableRule")
            .field("where_clause", &self.where_clause)
            .field("truncate", &self.truncate)
            .field("expressions", &self.expressions)
            .field("extras", &self.extras)
            .field("transform", &self.transform.is_some())
            .finish()
    }
}

/// Builds a table's row transform for one COPY in the given format.
pub type TransformFactory = Arc<dyn Fn(Format) -> Box<dyn RowTransform> + Send + Sync>;

/// The rules of a binding as the COPY statements and workers use them:
/// what the source reads per table, and a transform where a plan needs one.
/// Keyed by `Table::qualified`.
pub fn rules_of(binding: &Binding) -> BTreeMap<String, TableRule> {
    binding
        .rules
        .iter()
        .map(|(table, read)| {
            let transform = binding.plans.get(table).map(|plan| {
                let plan = plan.clone();
                let factory: TransformFactory = Arc::new(move |format| {
                    Box::new(TableTransform::new(plan.clone(), format)) as Box<dyn RowTransform>
                });
                factory
            });
            let rule = TableRule {
                where_clause: read.where_clause.clone(),
                truncate: read.truncate,
                expressions: read.expressions.clone(),
                extras: read.extras.clone(),
                transform,
            };
            (table.clone(), rule)
        })
        .collect()
}

#[derive(Clone)]
pub struct CloneSpec {
    pub source_name: String,
    pub source_url: String,
    pub target_name: String,
    pub target_url: String,
    /// Copy and index-build workers (see [`super::budget`]).
    pub workers: super::budget::Workers,
    /// Tables larger than this are split into ctid ranges.
    pub split_bytes: u64,
    /// Rules given as they are, keyed by `Table::qualified`; used when there
    /// is no `anonymizer`.
    pub rules: BTreeMap<String, TableRule>,
    /// Bound to the snapshot's own tables once they are known, before
    /// anything is written; replaces `rules`.
    pub anonymizer: Option<Arc<Anonymizer>>,
    /// `unknown_columns` in force (`None`: no rules files, nothing to cover).
    pub policy: Option<UnknownColumns>,
    /// Makes the temporary database names unique to this run.
    pub suffix: String,
    /// Staging-only rows read before the clone, inserted into the new
    /// database after its data and before the swap (or the commit).
    pub carry: Vec<Arc<super::carry::CarryOver>>,
}

impl CloneSpec {
    /// Whether the rules say `foreign: skip`.
    pub fn foreign_skip(&self) -> bool {
        self.anonymizer
            .as_ref()
            .is_some_and(|a| a.rules.foreign_skip)
    }

    /// `outside`'s foreign objects refused unless the rules say
    /// `foreign: skip`.
    pub(crate) fn check_foreign(
        &self,
        outside: &crate::pg::catalog::Outside,
    ) -> super::error::Result<()> {
        if outside.has_foreign() && !self.foreign_skip() {
            return Err(super::error::Error::Foreign {
                name: self.source_name.clone(),
                outside: Box::new(outside.clone()),
            });
        }
        Ok(())
    }

    /// Whether the rules say `large_objects: copy`.
    pub fn large_objects_copy(&self) -> bool {
        self.anonymizer
            .as_ref()
            .is_some_and(|a| a.rules.large_objects_copy)
    }

    /// Whether the rules say `schema: keep`.
    pub fn schema_keep(&self) -> bool {
        self.anonymizer
            .as_ref()
            .is_some_and(|a| a.rules.schema_keep)
    }

    /// The personal data found in the schema's `texts`, refused unless the
    /// rules say `schema: keep`. Without an anonymizer nothing is covered,
    /// as for columns.
    pub(crate) fn check_schema(
        &self,
        texts: &[crate::pg::catalog_schema::SchemaText],
    ) -> super::error::Result<SchemaCover> {
        if self.anonymizer.is_none() {
            return Ok(SchemaCover::default());
        }
        let findings = crate::anonymize::bind::schema_findings(texts);
        if !findings.is_empty() && !self.schema_keep() {
            return Err(super::error::Error::SchemaLiterals {
                name: self.source_name.clone(),
                findings,
            });
        }
        Ok(SchemaCover {
            findings,
            comments_redacted: None,
        })
    }
}

/// What the clone does with personal data in the schema itself, for the
/// plan and the report.
#[derive(Debug, Clone, Default)]
pub struct SchemaCover {
    /// Objects whose text holds personal data, kept under `schema: keep`
    /// (without it, the clone is refused).
    pub findings: Vec<crate::anonymize::bind::SchemaFinding>,
    /// How many comments had personal data redacted (`None` in the plan,
    /// which dumps no schema).
    pub comments_redacted: Option<usize>,
}

/// How the copy replaces staging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Load a new database, then swap it in for staging (needs CREATEDB).
    Swap,
    /// Drop and reload staging's schemas inside one transaction.
    InPlace,
}
