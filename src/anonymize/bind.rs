//! Rules meet the live schema: every rule is matched to a table and column
//! of the source (a rule for something that no longer exists is an error),
//! checked against the column's type, and every column of every copied table
//! is classified for coverage. The result is, per table, what the clone's
//! COPY reads (expressions, extras) and the plan of the transform it runs;
//! a binding that must stop the run says so as a [`Refusal`]. The text of
//! the schema's own objects (defaults, enum labels, functions, views, …) is
//! covered too: personal data in it is a [`SchemaFinding`], and schema
//! comments are redacted. Pure: the values sampled for evidence and the
//! schema's text are read by the caller and handed in.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::apply::{Compiled, check_type};
use super::detect;
use super::fakes::FakeKind;
use super::keyed::Keyed;
use super::patterns::{self, PiiKind};
use super::redact::Redactor;
use super::rewrite::Rewriter;
use super::rules::{Keep, Origin, RuleSet, Strategy, UnknownColumns, split_table_name};
use super::transform::{ColumnStats, RuledColumn, Source, TablePlan, TableStats};
use crate::pg::catalog::{Column, Table};
use crate::pg::catalog_schema::SchemaText;
use crate::pg::codec::FieldType;
use crate::pg::ident::{quote_ident, quote_literal};
use crate::syntax::diagnostics::did_you_mean;

/// Which tables and columns `rewrite:` reaches.
#[derive(Debug, Clone)]
pub enum RewriteScope {
    All,
    /// `table` or `table.column` (a table may be `schema.table`).
    Listed(Vec<String>),
}

/// `rewrite:` of a clone, compiled.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub rewriter: Arc<Rewriter>,
    pub scope: RewriteScope,
}

/// The anonymizer of one clone: merged rules, the key, the rewrite.
#[derive(Debug, Clone)]
pub struct Anonymizer {
    pub rules: RuleSet,
    pub rewrite: Option<Rewrite>,
    pub keyed: Keyed,
}

/// How a column is covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A rule writes it: the rule's description.
    Ruled(String),
    Kept,
    /// Its type cannot hold personal data and its name does not suggest any.
    SafeByType,
    /// The whole table is created empty.
    Truncated,
    /// Nothing covers it; why it is a finding.
    Uncovered(Evidence),
}

impl Class {
    /// The coverage column of the plan and of `scan`.
    pub fn describe(&self) -> String {
        match self {
            Class::Ruled(rule) => format!("ruled: {rule}"),
            Class::Kept => "kept".into(),
            Class::SafeByType => "safe by type".into(),
            Class::Truncated => "table created empty".into(),
            Class::Uncovered(e) => format!("UNCOVERED: {}", e.describe()),
        }
    }

    /// Position in the summary counts: ruled, kept, safe, emptied, uncovered.
    pub fn slot(&self) -> usize {
        match self {
            Class::Ruled(_) => 0,
            Class::Kept => 1,
            Class::SafeByType => 2,
            Class::Truncated => 3,
            Class::Uncovered(_) => 4,
        }
    }
}

/// Why an uncovered column is a finding: never the values themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The personal-data word its name contains.
    pub name_hint: Option<&'static str>,
    /// Whether it is of a type that can hold text.
    pub textual: bool,
    /// Filled by sampling: values looked at, and matches per kind.
    pub sampled: u64,
    pub matches: Vec<(String, u64)>,
}

impl Evidence {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(word) = self.name_hint {
            parts.push(format!("name contains `{word}`"));
        }
        for (kind, n) in &self.matches {
            parts.push(format!(
                "{n} of {} sampled values look like {kind}",
                self.sampled
            ));
        }
        if parts.is_empty() {
            parts.push(if self.textual {
                "can hold text, and no rule covers it".to_string()
            } else {
                "no rule covers it".to_string()
            });
        }
        parts.join("; ")
    }
}

#[derive(Debug, Clone)]
pub struct Coverage {
    /// `Table::qualified`.
    pub table: String,
    pub column: String,
    pub type_name: String,
    pub class: Class,
}

/// A rule that does not fit the source.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub origin: Origin,
    pub message: String,
    pub help: Option<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin.location(), self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

/// What the source's COPY of one table reads instead of the plain table.
#[derive(Debug, Clone, Default)]
pub struct TableRead {
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
}

/// Why a binding must stop the run before anything is written: one line
/// per rule or rewrite entry that does not fit the source, and per
/// uncovered column under `unknown_columns: error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the anonymizer does not cover the source: {}", .lines.join("; "))]
pub struct Refusal {
    pub lines: Vec<String>,
}

/// The rules bound to one list of tables.
pub struct Binding {
    /// Per table (`Table::qualified`) that is not copied as it is; a table
    /// with a transform also has an entry in `plans`.
    pub rules: BTreeMap<String, TableRead>,
    /// The plans behind the transforms, for the report's counts.
    pub plans: BTreeMap<String, Arc<TablePlan>>,
    pub coverage: Vec<Coverage>,
    pub mismatches: Vec<Mismatch>,
    /// `rewrite.tables` entries that name no table or column of the source.
    pub unreached: Vec<String>,
}

impl Binding {
    pub fn uncovered(&self) -> impl Iterator<Item = &Coverage> {
        self.coverage
            .iter()
            .filter(|c| matches!(c.class, Class::Uncovered(_)))
    }

    /// Everything that must stop the run, one line each: rules and rewrite
    /// entries that do not fit the source always; uncovered columns under
    /// `unknown_columns: error` (`None`: no rules files, nothing to cover).
    pub fn blocking(&self, policy: Option<UnknownColumns>) -> Vec<String> {
        let mut out: Vec<String> = self.mismatches.iter().map(|m| m.to_string()).collect();
        out.extend(self.unreached.iter().cloned());
        if policy == Some(UnknownColumns::Error) {
            out.extend(self.uncovered().map(uncovered_line));
        }
        out
    }

    /// `Err` when something in [`Binding::blocking`] must stop the run.
    pub fn check(&self, policy: Option<UnknownColumns>) -> Result<(), Refusal> {
        let lines = self.blocking(policy);
        if lines.is_empty() {
            Ok(())
        } else {
            Err(Refusal { lines })
        }
    }
}

/// `"public"."users".email (text): name contains `email``.
pub fn uncovered_line(c: &Coverage) -> String {
    let Class::Uncovered(evidence) = &c.class else {
        return String::new();
    };
    format!(
        "column {}.{} ({}) has no rule: {}",
        c.table,
        quote_ident(&c.column),
        c.type_name,
        evidence.describe()
    )
}

/// Whether a `rewrite.tables` entry (`table`, `table.column`,
/// `schema.table`, `schema.table.column`) names `table` (and `column`, when
/// given).
fn item_reaches(item: &str, table: &Table, column: Option<&str>) -> bool {
    let parts: Vec<&str> = item.split('.').collect();
    let (schema, name, col) = match parts.as_slice() {
        [t] => ("public", *t, None),
        [a, b] if table.columns.iter().any(|c| c.name == *b) && *a == table.name => {
            ("public", *a, Some(*b))
        }
        [s, t] => (*s, *t, None),
        [s, t, c] => (*s, *t, Some(*c)),
        _ => return false,
    };
    schema == table.schema
        && name == table.name
        && match (col, column) {
            (None, _) => true,
            (Some(c), Some(column)) => c == column,
            (Some(c), None) => table.columns.iter().any(|t| t.name == c),
        }
}

/// The source's expression for a `set` column: the constant in the
/// column's type, or the column itself on rows `except` keeps.
fn set_expression(column: &Column, value: Option<&str>, except: Option<&str>) -> String {
    let constant = match value {
        Some(v) => format!("CAST({} AS {})", quote_literal(v), column.type_name),
        None => format!("CAST(NULL AS {})", column.type_name),
    };
    match except {
        Some(predicate) => format!(
            "CASE WHEN COALESCE(({predicate}), false) THEN {} ELSE {constant} END",
            quote_ident(&column.name)
        ),
        None => constant,
    }
}

/// `character varying(20)` → 20; `character(2)` → 2.
pub fn max_chars(type_name: &str) -> Option<usize> {
    // `character varying(20)[]`: the limit of each element.
    let type_name = type_name.trim_end_matches("[]");
    let rest = type_name
        .strip_prefix("character varying(")
        .or_else(|| type_name.strip_prefix("character("))?;
    rest.strip_suffix(')')?.parse().ok()
}

/// The narrowest `character varying(n)` a strategy's values may be cut to
/// safely: e-mail addresses and URLs must stay whole (their reserved
/// domain), and unique values must keep their suffix. Every e-mail fake
/// fits in 64 characters and every username in 40 (`fakes` cuts the name
/// part to make room for the keyed part).
fn min_width(strategy: &Strategy) -> Option<usize> {
    match strategy {
        Strategy::Fake {
            kind: FakeKind::Email | FakeKind::SafeEmail | FakeKind::Url,
            ..
        } => Some(64),
        Strategy::Fake { unique: true, .. } => Some(40),
        _ => None,
    }
}

impl Anonymizer {
    /// Binds the rules to `tables` (the source's copied tables).
    pub fn bind(&self, tables: &[Table]) -> Binding {
        let mut binding = Binding {
            rules: BTreeMap::new(),
            plans: BTreeMap::new(),
            coverage: Vec::new(),
            mismatches: Vec::new(),
            unreached: Vec::new(),
        };
        // A partitioned table holds no rows of its own: its rules reach the
        // partitions, so its name is known as much as theirs.
        let by_key: BTreeMap<String, &Table> = tables
            .iter()
            .flat_map(|t| {
                std::iter::once(format!("{}.{}", t.schema, t.name))
                    .chain(t.partition_of.iter().cloned())
                    .map(move |key| (key, t))
            })
            .collect();
        // Rules for tables that are not there.
        for (key, rules) in &self.rules.tables {
            if by_key.contains_key(key) || rules.optional {
                continue;
            }
            let (schema, name) = split_table_name(&rules.name);
            let candidates: Vec<String> = tables
                .iter()
                .map(|t| {
                    if schema == "public" && t.schema == "public" {
                        t.name.clone()
                    } else {
                        format!("{}.{}", t.schema, t.name)
                    }
                })
                .collect();
            let wanted = if schema == "public" {
                name.to_string()
            } else {
                key.clone()
            };
            binding.mismatches.push(Mismatch {
                origin: rules.origin.clone(),
                message: format!("table `{}` does not exist in the source database", rules.name),
                help: Some(
                    did_you_mean(&wanted, candidates.iter().map(String::as_str))
                        .map(|best| format!("did you mean `{best}`?"))
                        .unwrap_or_else(|| {
                            "remove its rules, or add `optional: true` if it exists only in some databases".into()
                        }),
                ),
            });
        }
        for table in tables {
            self.bind_table(table, &mut binding);
        }
        if let Some(Rewrite {
            scope: RewriteScope::Listed(items),
            ..
        }) = &self.rewrite
        {
            for item in items {
                if !tables.iter().any(|t| item_reaches(item, t, None)) {
                    let names = tables.iter().map(|t| t.name.as_str());
                    binding.unreached.push(format!(
                        "`rewrite.tables` names `{item}`, which is no table or column of the source{}",
                        did_you_mean(item, names)
                            .map(|b| format!(" (did you mean `{b}`?)"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        binding
    }

    fn rewrite_reaches(&self, table: &Table, column: &str) -> bool {
        let Some(rewrite) = &self.rewrite else {
            return false;
        };
        match &rewrite.scope {
            RewriteScope::All => true,
            RewriteScope::Listed(items) => items
                .iter()
                .any(|item| item_reaches(item, table, Some(column))),
        }
    }

    fn bind_table(&self, table: &Table, binding: &mut Binding) {
        // A partition's own rules, else those of the nearest partitioned
        // table above it: one rule for `events` covers every month of it.
        let key = format!("{}.{}", table.schema, table.name);
        let rules = std::iter::once(&key)
            .chain(&table.partition_of)
            .find_map(|key| self.rules.tables.get(key));
        let mut rule = TableRead::default();
        let mut columns: Vec<RuledColumn> = Vec::new();
        let mut stats = TableStats::default();
        let mut sources: Vec<(String, Source)> = Vec::new();
        let mut extras: Vec<String> = Vec::new();
        let mut except_extra = None;
        let mut key_extras = Vec::new();
        let column_names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();

        if let Some(rules) = rules {
            // Stale column rules and keeps.
            let ruled = rules.columns.iter().map(|(n, r)| (n, &r.origin));
            for (name, origin) in ruled.chain(rules.kept.iter()) {
                let message = format!(
                    "column `{}.{name}` does not exist in the source database",
                    rules.name
                );
                // Said once for a partitioned table, not once per partition.
                let said = binding.mismatches.iter().any(|m| m.message == message);
                if !column_names.contains(&name.as_str())
                    && !rules.optional_columns.contains(name)
                    && !said
                {
                    binding.mismatches.push(Mismatch {
                        origin: origin.clone(),
                        message,
                        help: Some(
                            did_you_mean(name, column_names.iter().copied())
                                .map(|b| format!("did you mean `{b}`?"))
                                .unwrap_or_else(|| "remove the rule: the column is gone".into()),
                        ),
                    });
                }
            }
            rule.truncate = rules.truncates();
            rule.where_clause = rules.where_clause.as_ref().map(|(w, _)| w.clone());
            if let Some((predicate, _)) = &rules.except {
                except_extra = Some(extras.len());
                extras.push(format!("COALESCE(({predicate}), false)"));
            }
        }
        let truncated = rule.truncate;

        for (index, column) in table.columns.iter().enumerate() {
            let ty = FieldType::from_pg(&column.type_name);
            let ruled = rules.and_then(|r| r.columns.get(&column.name));
            let kept = rules.is_some_and(|r| {
                r.kept.contains_key(&column.name) || matches!(r.keep, Keep::All(_))
            });
            let class = if truncated {
                Class::Truncated
            } else if let Some(ruled) = ruled {
                let strategy = &ruled.strategy;
                let mismatch = |message: String, help: Option<String>| Mismatch {
                    origin: ruled.origin.clone(),
                    message,
                    help,
                };
                match strategy {
                    Strategy::Keep => {}
                    Strategy::Set(value) => {
                        let except = rules.and_then(|r| r.except.as_ref()).map(|(p, _)| p.as_str());
                        rule.expressions.insert(index, set_expression(column, value.as_deref(), except));
                    }
                    _ => match ty {
                        None => binding.mismatches.push(mismatch(
                            format!(
                                "column `{}.{}` is of type {}, which `{}` cannot transform",
                                table.name,
                                column.name,
                                column.type_name,
                                strategy.describe()
                            ),
                            Some("rules transform text, json/jsonb, inet/cidr, dates, timestamps and text arrays; for other types use `set`, `null` or `keep`".into()),
                        )),
                        Some(ty) => {
                            if let Err(e) = check_type(strategy, ty) {
                                binding.mismatches.push(mismatch(
                                    format!("column `{}.{}`: {e}", table.qualified, column.name),
                                    None,
                                ));
                            } else {
                                let limit = max_chars(&column.type_name);
                                if let (Some(n), Some(needs)) = (limit, min_width(strategy))
                                    && n < needs
                                {
                                    binding.mismatches.push(mismatch(
                                        format!(
                                            "column `{}.{}` holds at most {n} characters, too few for `{}` (cut, it could lose its reserved domain or its unique suffix)",
                                            rules.map_or(table.name.as_str(), |r| r.name.as_str()),
                                            column.name,
                                            strategy.describe()
                                        ),
                                        Some(format!("use `{{ hash: {n} }}` or a `template` that fits")),
                                    ));
                                }
                                for read in strategy.reads() {
                                    if sources.iter().any(|(n, _)| n == read) {
                                        continue;
                                    }
                                    let Some(i) = column_names.iter().position(|c| c == &read) else {
                                        binding.mismatches.push(mismatch(
                                            format!("column `{}.{}`: the template reads `{{{read}}}`, which is not a column of the table", table.name, column.name),
                                            did_you_mean(read, column_names.iter().copied()).map(|b| format!("did you mean `{b}`?")),
                                        ));
                                        continue;
                                    };
                                    // A `set` column reads as its constant, like
                                    // staging gets it, never as the original.
                                    let set = rules.and_then(|r| r.columns.get(read)).and_then(|c| match &c.strategy {
                                        Strategy::Set(value) => Some(value.as_deref()),
                                        _ => None,
                                    });
                                    let direct = FieldType::from_pg(&table.columns[i].type_name)
                                        == Some(FieldType::Text)
                                        && set.is_none();
                                    let source = if direct {
                                        Source::Field(i)
                                    } else {
                                        extras.push(match set {
                                            Some(value) => {
                                                let except = rules.and_then(|r| r.except.as_ref()).map(|(p, _)| p.as_str());
                                                format!("({})::text", set_expression(&table.columns[i], value, except))
                                            }
                                            None => format!("{}::text", quote_ident(read)),
                                        });
                                        Source::Extra(extras.len() - 1)
                                    };
                                    sources.push((read.to_string(), source));
                                }
                                // A row key for the errors a value can cause: JSON in a text
                                // column that does not parse, JSON keys that `redact` makes one,
                                // bytea that is not UTF-8.
                                let can_fail = match ty {
                                    FieldType::Text => matches!(strategy, Strategy::Json(_)),
                                    FieldType::Json | FieldType::Jsonb => {
                                        matches!(strategy, Strategy::Json(_) | Strategy::Redact(_))
                                    }
                                    // Bytes that are not UTF-8 cannot be redacted.
                                    FieldType::Bytea => true,
                                    _ => false,
                                };
                                if can_fail && key_extras.is_empty() {
                                    for pk in &table.primary_key {
                                        extras.push(format!("{}::text", quote_ident(pk)));
                                        key_extras.push((pk.clone(), extras.len() - 1));
                                    }
                                }
                                stats.columns.push(ColumnStats {
                                    name: column.name.clone(),
                                    rule: strategy.describe(),
                                    ..Default::default()
                                });
                                columns.push(RuledColumn {
                                    name: column.name.clone(),
                                    index,
                                    ty,
                                    rule: Compiled::new(strategy.clone(), self.rules.locale, limit),
                                });
                            }
                        }
                    },
                }
                if matches!(strategy, Strategy::Keep) {
                    Class::Kept
                } else {
                    Class::Ruled(strategy.describe())
                }
            } else if kept {
                Class::Kept
            } else {
                let hint = detect::name_hint(&column.name);
                if hint.is_none() && detect::safe_by_type(&column.type_name) {
                    Class::SafeByType
                } else {
                    Class::Uncovered(Evidence {
                        name_hint: hint,
                        textual: ty.is_some_and(FieldType::holds_text),
                        ..Default::default()
                    })
                }
            };
            binding.coverage.push(Coverage {
                table: table.qualified.clone(),
                column: column.name.clone(),
                type_name: column.type_name.clone(),
                class,
            });
        }
        if truncated {
            binding.rules.insert(table.qualified.clone(), rule);
            return;
        }

        // URL rewrites: every textual column the scope reaches, unless a
        // constant replaces it.
        let mut rewrite = Vec::new();
        if self.rewrite.is_some() {
            for (index, column) in table.columns.iter().enumerate() {
                let Some(ty) = FieldType::from_pg(&column.type_name) else {
                    continue;
                };
                if !ty.holds_text()
                    || rule.expressions.contains_key(&index)
                    || !self.rewrite_reaches(table, &column.name)
                {
                    continue;
                }
                rewrite.push((index, ty));
                stats
                    .rewrites
                    .push((column.name.clone(), Default::default()));
            }
        }
        if !columns.is_empty() || !rewrite.is_empty() || except_extra.is_some() {
            let plan = Arc::new(TablePlan {
                table: table.qualified.clone(),
                keyed: self.keyed.clone(),
                columns,
                sources,
                except: except_extra,
                key: key_extras,
                rewriter: self.rewrite.as_ref().map(|r| r.rewriter.clone()),
                rewrite,
                extras: extras.len(),
                stats: Arc::new(stats),
            });
            binding.plans.insert(table.qualified.clone(), plan);
        }
        rule.extras = extras;
        let plain = rule.where_clause.is_none()
            && rule.expressions.is_empty()
            && !binding.plans.contains_key(&table.qualified);
        if !plain {
            binding.rules.insert(table.qualified.clone(), rule);
        }
    }
}

/// Personal data found in the text of a schema object (a default, an enum
/// label, a function, a view, a constraint, a policy, …), which pg_dump
/// copies into staging as it is: names the object and what kinds were
/// found, never the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFinding {
    /// As [`SchemaText::object`]: `default of column public.people.email`.
    pub object: String,
    /// The kinds found, in [`PiiKind`] order, each once.
    pub kinds: Vec<PiiKind>,
}

impl SchemaFinding {
    /// `default of column public.people.email: email`.
    pub fn describe(&self) -> String {
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
        format!("{}: {}", self.object, kinds.join(", "))
    }
}

/// The objects among `texts` whose text holds personal data of any kind
/// `patterns` finds. Under `schema: error` each is a coverage finding that
/// stops the clone; under `schema: keep` they are listed as kept.
pub fn schema_findings(texts: &[SchemaText]) -> Vec<SchemaFinding> {
    let mut findings: Vec<SchemaFinding> = Vec::new();
    for text in texts {
        let mut kinds: Vec<PiiKind> = patterns::find(&text.text, &PiiKind::ALL)
            .into_iter()
            .map(|f| f.kind)
            .collect();
        if kinds.is_empty() {
            continue;
        }
        kinds.sort();
        kinds.dedup();
        match findings.last_mut() {
            // Labels of one enum, say: one line per object.
            Some(last) if last.object == text.object => {
                last.kinds.extend(kinds);
                last.kinds.sort();
                last.kinds.dedup();
            }
            _ => findings.push(SchemaFinding {
                object: text.object.clone(),
                kinds,
            }),
        }
    }
    findings
}

impl Anonymizer {
    /// A schema comment's text with the personal data of every kind
    /// replaced, keyed like every other value (an address gets the fake it
    /// gets in the tables); `None` when there is nothing to replace.
    pub fn redact_comment(&self, text: &str) -> Option<String> {
        Redactor::new(&PiiKind::ALL, self.rules.locale)
            .redact(&self.keyed, text)
            .map(|(redacted, _)| redacted)
    }
}

/// Rows read per table for coverage evidence.
pub const SAMPLE_ROWS: u32 = 1000;

impl Binding {
    /// The columns of `table` whose values are worth sampling: uncovered
    /// ones (for evidence) and those safe by type (a bigint of card numbers
    /// is still a finding).
    pub fn columns_to_sample(&self, table: &Table) -> Vec<String> {
        self.coverage
            .iter()
            .filter(|c| {
                c.table == table.qualified
                    && matches!(c.class, Class::Uncovered(_) | Class::SafeByType)
            })
            .map(|c| c.column.clone())
            .collect()
    }

    /// Adds the values sampled from `table` as evidence to its uncovered
    /// columns, and turns a column that is safe by type into a finding when
    /// its values look personal. The values are counted, never kept.
    pub fn add_samples(&mut self, table: &Table, samples: &BTreeMap<String, detect::Sample>) {
        for coverage in self
            .coverage
            .iter_mut()
            .filter(|c| c.table == table.qualified)
        {
            let Some(sample) = samples.get(&coverage.column) else {
                continue;
            };
            let matches: Vec<(String, u64)> = sample
                .matches
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(kind, n)| (kind.name().to_string(), *n))
                .collect();
            match &mut coverage.class {
                Class::Uncovered(evidence) => {
                    evidence.sampled = sample.sampled;
                    evidence.matches = matches;
                }
                Class::SafeByType if !matches.is_empty() => {
                    coverage.class = Class::Uncovered(Evidence {
                        sampled: sample.sampled,
                        matches,
                        ..Default::default()
                    });
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anonymize::patterns::PiiKind;

    fn coverage(column: &str, class: Class) -> Coverage {
        Coverage {
            table: "\"public\".\"users\"".into(),
            column: column.into(),
            type_name: "text".into(),
            class,
        }
    }

    fn binding(coverage: Vec<Coverage>) -> Binding {
        Binding {
            rules: BTreeMap::new(),
            plans: BTreeMap::new(),
            coverage,
            mismatches: Vec::new(),
            unreached: Vec::new(),
        }
    }

    fn users() -> Table {
        Table {
            oid: 1,
            schema: "public".into(),
            name: "users".into(),
            qualified: "\"public\".\"users\"".into(),
            columns: Vec::new(),
            bytes: 0,
            pages: 0,
            rows_estimate: 0,
            primary_key: Vec::new(),
            binary_ok: true,
            partition_of: Vec::new(),
        }
    }

    #[test]
    fn uncovered_columns_refuse_only_under_unknown_columns_error() {
        let b = binding(vec![
            coverage("id", Class::SafeByType),
            coverage("notes", Class::Uncovered(Evidence::default())),
        ]);
        assert!(b.check(None).is_ok());
        assert!(b.check(Some(UnknownColumns::Warn)).is_ok());
        let refusal = b.check(Some(UnknownColumns::Error)).unwrap_err();
        assert_eq!(
            refusal.lines,
            ["column \"public\".\"users\".\"notes\" (text) has no rule: no rule covers it"]
        );
    }

    #[test]
    fn a_rewrite_entry_that_reaches_nothing_always_refuses() {
        let mut b = binding(Vec::new());
        b.unreached.push("`rewrite.tables` names `gone`".into());
        assert_eq!(
            b.check(None).unwrap_err().lines,
            ["`rewrite.tables` names `gone`"]
        );
    }

    #[test]
    fn schema_findings_name_objects_and_kinds_once_and_never_the_text() {
        let text = |object: &str, text: &str| SchemaText {
            object: object.into(),
            text: text.into(),
        };
        let findings = schema_findings(&[
            text("default of column public.t.a", "'nobody'::text"),
            text("label of enum mood", "ops@mail.test"),
            text("label of enum mood", "+44 7700 900123"),
            text("label of enum mood", "calm"),
            text(
                "function f()",
                "BEGIN RETURN 'a@mail.test' || 'b@mail.test' || '192.0.2.7'; END",
            ),
        ]);
        let described: Vec<String> = findings.iter().map(SchemaFinding::describe).collect();
        assert_eq!(
            described,
            [
                "label of enum mood: email, phone",
                "function f(): email, ip"
            ]
        );
        assert!(schema_findings(&[text("view v", "SELECT 1 WHERE x > 100")]).is_empty());
    }

    #[test]
    fn samples_add_evidence_and_unmask_a_column_safe_by_type() {
        let mut b = binding(vec![
            coverage("card", Class::SafeByType),
            coverage("id", Class::SafeByType),
            coverage("notes", Class::Uncovered(Evidence::default())),
            coverage("email", Class::Ruled("fake: email".into())),
        ]);
        assert_eq!(b.columns_to_sample(&users()), ["card", "id", "notes"]);
        let samples = BTreeMap::from([
            (
                "card".to_string(),
                detect::Sample {
                    sampled: 10,
                    matches: BTreeMap::from([(PiiKind::Card, 9)]),
                },
            ),
            (
                "id".to_string(),
                detect::Sample {
                    sampled: 10,
                    matches: BTreeMap::new(),
                },
            ),
            (
                "notes".to_string(),
                detect::Sample {
                    sampled: 10,
                    matches: BTreeMap::from([(PiiKind::Email, 2), (PiiKind::Phone, 0)]),
                },
            ),
        ]);
        b.add_samples(&users(), &samples);
        let classes: Vec<String> = b.coverage.iter().map(|c| c.class.describe()).collect();
        assert_eq!(
            classes,
            [
                "UNCOVERED: 9 of 10 sampled values look like card",
                "safe by type",
                "UNCOVERED: 2 of 10 sampled values look like email",
                "ruled: fake: email",
            ]
        );
    }
}
