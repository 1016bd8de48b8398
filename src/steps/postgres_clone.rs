//! `postgres.clone`: production's database into staging, from one snapshot,
//! over parallel COPY, loaded into a new database and swapped in. Thin: this
//! file parses the step's parameters, hands [`crate::clone`] its spec, and
//! turns what the clone found or did into the step's outcome (the plan's
//! and the report's details), and its errors into [`StepError`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::anonymize::bind::{Anonymizer, Binding, Class, Rewrite, RewriteScope};
use crate::anonymize::keyed::Keyed;
use crate::anonymize::rewrite::Rewriter;
use crate::anonymize::rules::{self, RuleSet, RulesError, UnknownColumns};
use crate::anonymize::transform::load;
use crate::clone::{self, CloneSpec, Format};
use crate::pg::swap::Swapped;
use crate::pg::url;
use crate::report::model::Detail;
use crate::syntax::diagnostics::Problem;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;

use super::{AfterRun, Facet, Kind, StepCtx, StepError, StepOutcome, Target, TargetUse};

/// Tables larger than this are copied as several ctid ranges at once.
pub const DEFAULT_SPLIT_BYTES: u64 = 256 * 1024 * 1024;

pub use crate::clone::Strategy;

#[derive(Debug, Clone)]
pub struct Params {
    /// The target to copy from; only ever read.
    pub source: String,
    pub source_span: crate::syntax::yaml::Span,
    /// The target to replace.
    pub target: String,
    pub target_span: crate::syntax::yaml::Span,
    pub strategy: Strategy,
    /// `jobs:` as written: copy workers (default: the number of cores, at
    /// most 8; resolved in [`clone::budget::Workers::resolve`]).
    pub jobs: Option<usize>,
    /// `index_jobs:` as written: index-build workers (default: as many as
    /// `jobs`).
    pub index_jobs: Option<usize>,
    /// Keep the old staging database after a successful run.
    pub keep_old: bool,
    pub split_bytes: u64,
    /// The merged rules of `anonymize:`.
    pub anonymize: Option<RuleSet>,
    /// `rewrite:`.
    pub rewrite: Option<Rewrite>,
}

impl Kind for Params {
    const NAME: &'static str = "postgres.clone";
    const OUTPUTS: &'static [&'static str] = &["tables", "rows", "bytes", "anonymized_values"];
    const DESTRUCTIVE: bool = true;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        let source_node = with.require(cx, "source");
        let target_node = with.require(cx, "target");
        let source = source_node.and_then(|n| cx.string(n, "`source`"));
        let target = target_node.and_then(|n| cx.string(n, "`target`"));
        let strategy = match with.get("strategy") {
            None => Some(Strategy::Swap),
            Some(node) => match cx.string(node, "`strategy`").as_deref() {
                Some("swap") => Some(Strategy::Swap),
                Some("in-place") => Some(Strategy::InPlace),
                Some(other) => {
                    cx.push(
                        Problem::new(
                            "flightpath::clone::strategy",
                            format!("unknown strategy `{other}`"),
                            node.span,
                            "not a strategy",
                        )
                        .suggest(other, ["swap", "in-place"])
                        .help_if_none("use `swap` (needs CREATEDB on staging) or `in-place`"),
                    );
                    None
                }
                None => None,
            },
        };
        let jobs = workers(with, cx, "jobs");
        let index_jobs = workers(with, cx, "index_jobs");
        let keep_old = with.bool(cx, "keep_old").unwrap_or(false);
        let split_bytes = with.u64(cx, "split_bytes").unwrap_or(DEFAULT_SPLIT_BYTES);
        let anonymize = with
            .get("anonymize")
            .and_then(|node| read_anonymize(cx, node));
        let rewrite = with.get("rewrite").and_then(|node| read_rewrite(cx, node));
        Some(Params {
            source: source?,
            source_span: source_node?.span,
            target: target?,
            target_span: target_node?.span,
            strategy: strategy?,
            jobs,
            index_jobs,
            keep_old,
            split_bytes,
            anonymize,
            rewrite,
        })
    }

    fn templates(&self) -> Vec<&Template> {
        Vec::new()
    }

    fn target_uses(&self) -> Vec<TargetUse> {
        vec![
            TargetUse {
                name: self.source.clone(),
                span: self.source_span,
                write: false,
                facet: Facet::Postgres,
            },
            TargetUse {
                name: self.target.clone(),
                span: self.target_span,
                write: true,
                facet: Facet::Postgres,
            },
        ]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let spec = self.spec(ctx);
        let protected = ctx.target(&self.source).protected;
        let clone::plan::Survey {
            source_version,
            target_version,
            pg_dump,
            tables,
            outside,
            schema,
            staging_db,
            source_warning,
            privilege_warning: warning,
            sessions,
            limits,
            leftovers,
            binding,
            rows,
        } = clone::plan::survey(&spec, self.strategy, protected, &ctx.cancel).await?;
        let total_bytes: i64 = tables.iter().map(|t| t.bytes).sum();
        let total_rows: i64 = tables.iter().map(|t| t.rows_estimate).sum();
        let aside = if self.keep_old {
            "kept as the old database"
        } else {
            "dropped after the run succeeds"
        };
        let how = match self.strategy {
            Strategy::Swap => format!("into a new database and swap it in for `{}`", self.target),
            Strategy::InPlace => format!(
                "into `{}`, reloaded in place in one transaction",
                self.target
            ),
        };
        let summary = format!(
            "would copy {} tables (about {} rows, {}) from `{}` {how}",
            tables.len(),
            crate::human::thousands(total_rows.max(0) as u64),
            human_bytes(total_bytes.max(0) as u64),
            self.source,
        );
        let mut outcome = StepOutcome::new(summary)
            .detail(Detail::fact("source", format!("{} (PostgreSQL {})", self.source, pretty_version(source_version))))
            .detail(Detail::fact("target", format!("{} (PostgreSQL {})", self.target, pretty_version(target_version))))
            .detail(Detail::fact("strategy", match self.strategy {
                Strategy::Swap => format!(
                    "swap: load a new database, then rename it to `{staging_db}`; the old one is {aside}"
                ),
                Strategy::InPlace => format!(
                    "in-place: drop and reload every schema of `{staging_db}` in one transaction (one connection)"
                ),
            }))
            .detail(Detail::fact("workers", match self.strategy {
                Strategy::Swap => spec.workers.describe(cores()),
                Strategy::InPlace => "none: one transaction on one connection (`jobs` and `index_jobs` apply to `strategy: swap`)".to_string(),
            }))
            .detail(Detail::fact("staging connections", match &limits {
                Some(limits) => clone::budget::connections_phrase(&spec.workers, limits),
                None => "at most 2 (the transaction, and one that names who holds a lock it waits for)".to_string(),
            }))
            .detail(Detail::fact("pg_dump", format!("{} (major {})", pg_dump.path.display(), pg_dump.major)))
            .detail(Detail::Table {
                title: "tables".into(),
                columns: ["table", "rows (est.)", "size", "format", "transform", "ranges"]
                    .map(String::from)
                    .to_vec(),
                rows,
            });
        if !leftovers.is_empty() {
            outcome = outcome.detail(Detail::Table {
                title: "left by interrupted runs".into(),
                columns: ["database", "left by run", "what this run does"]
                    .map(String::from)
                    .to_vec(),
                rows: leftovers
                    .iter()
                    .map(|l| vec![l.name.clone(), format!("…{}", l.run), l.fate(&staging_db)])
                    .collect(),
            });
        }
        if let Some(warning) = limits
            .as_ref()
            .and_then(|limits| clone::budget::tight_warning(&self.target, &spec.workers, limits))
        {
            outcome = outcome.detail(Detail::fact("warning", warning));
        }
        if let Some(sessions) = sessions {
            outcome = outcome.detail(Detail::fact("sessions ended at the swap", sessions));
        }
        let copy = spec.large_objects_copy().then_some(None);
        outcome = outside_details(outcome, &outside, "are", copy);
        outcome = schema_details(outcome, &schema, "are");
        for warning in [source_warning, warning].into_iter().flatten() {
            outcome = outcome.detail(Detail::fact("warning", warning));
        }
        if let Some(binding) = &binding {
            outcome = outcome.detail(coverage_detail(binding));
            if let Some(rules) = &self.anonymize {
                outcome = outcome.detail(Detail::fact("secret", rules.secret_from.describe()));
            }
            if let Some(warning) = self.secret_warning() {
                outcome = outcome.detail(Detail::fact("warning", warning));
            }
            if let Err(refusal) = binding.check(self.policy()) {
                return Err(clone::Error::Uncovered {
                    name: self.source.clone(),
                    refusal,
                }
                .into());
            }
            let uncovered = binding.uncovered().count();
            if uncovered > 0 {
                outcome = outcome.detail(Detail::fact(
                    "warning",
                    format!("{uncovered} column(s) have no rule and will be copied as they are (`unknown_columns: warn`)"),
                ));
            }
        }
        Ok(outcome)
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let spec = CloneSpec {
            // What `preserve: true` steps read from this target before it.
            carry: ctx.handoffs.take(&self.target),
            ..self.spec(ctx)
        };
        if self.strategy == Strategy::InPlace {
            return self.run_in_place(spec, ctx).await;
        }
        let cloned = clone::run(spec, &ctx.progress, &ctx.step_id, &ctx.cancel).await?;
        let total_rows: u64 = cloned.tables.iter().map(|t| t.rows).sum();
        let total_bytes: u64 = cloned.tables.iter().map(|t| t.bytes).sum();
        let mut outcome = StepOutcome::new(format!(
            "cloned {} tables ({} rows, {}) from `{}` and swapped them into `{}`",
            cloned.tables.len(),
            crate::human::thousands(total_rows),
            human_bytes(total_bytes),
            self.source,
            self.target
        ))
        .output("tables", cloned.tables.len())
        .output("rows", total_rows)
        .output("bytes", total_bytes)
        .detail(Detail::fact(
            "swapped",
            format!(
                "`{}` now holds the copy; the previous staging database is `{}` {}",
                cloned.swapped.live,
                cloned.swapped.aside,
                if self.keep_old {
                    "(kept after the run: `keep_old: true`)"
                } else {
                    "until the run ends"
                }
            ),
        ))
        .detail(Detail::fact("sequences set", cloned.sequences.to_string()))
        .detail(Detail::fact("phases", phases_text(&cloned.phases)))
        .detail(tables_detail(&cloned.tables));
        if !cloned.recovered.is_empty() {
            outcome = outcome.detail(Detail::fact(
                "cleaned up after interrupted runs",
                cloned.recovered.join("; "),
            ));
        }
        if !cloned.same_locale {
            outcome = outcome.detail(Detail::fact(
                "locale",
                "the source's locale is not installed on the staging server; the server's default was used",
            ));
        }
        let copy = cloned.large_objects.map(Some);
        outcome = outside_details(outcome, &cloned.outside, "were", copy);
        outcome = schema_details(outcome, &cloned.schema, "were");
        outcome = self.anonymized_details(outcome, cloned.binding.as_ref());
        outcome = carried_details(outcome, &cloned.carried);
        outcome.after_run.push(AfterRun::PostgresSwap {
            target: self.target.clone(),
            maintenance_database: url::database_of(&cloned.maintenance_url)
                .unwrap_or_else(|| "postgres".into()),
            swapped: cloned.swapped,
            keep_old: self.keep_old,
        });
        Ok(outcome)
    }
}

/// The staging-only rows carried into the new database, per step and
/// table: counts, and the keys of rows left out or replaced — never
/// another value. They came from staging: not anonymized, not in coverage.
fn carried_details(mut outcome: StepOutcome, carried: &[clone::carry::Carried]) -> StepOutcome {
    for carry in carried {
        let tables: Vec<String> = carry
            .tables
            .iter()
            .map(|t| {
                let mut notes = Vec::new();
                if t.renumbered > 0 {
                    notes.push(format!("{} under a new key", t.renumbered));
                }
                if t.left_with_parent > 0 {
                    notes.push(format!("{} left out with their row", t.left_with_parent));
                }
                match notes.is_empty() {
                    true => format!("{} {}", t.name, t.rows),
                    false => format!("{} {} ({})", t.name, t.rows, notes.join(", ")),
                }
            })
            .collect();
        outcome = outcome.detail(Detail::fact(
            format!("carried over from `{}`", carry.step_id),
            format!(
                "{} (staging's rows: not anonymized, not counted in coverage)",
                tables.join(", ")
            ),
        ));
        for t in &carry.tables {
            if !t.skipped.is_empty() {
                outcome = outcome.detail(Detail::fact(
                    format!("left out of {} (`on_conflict: skip`)", t.name),
                    t.skipped.join(", "),
                ));
            }
            if !t.replaced.is_empty() {
                outcome = outcome.detail(Detail::fact(
                    format!(
                        "replaced in {} by staging's (`on_conflict: replace`)",
                        t.name
                    ),
                    t.replaced.join(", "),
                ));
            }
        }
    }
    outcome
}

/// Personal data in the schema, in the plan (`are`) and the run (`were`):
/// the objects `schema: keep` copies as they are (a source with them and no
/// such rule is refused before this), and the comments redacted (counted
/// in the run only: the plan dumps no schema). Objects and kinds only,
/// never the text.
fn schema_details(
    mut outcome: StepOutcome,
    schema: &crate::clone::spec::SchemaCover,
    verb: &str,
) -> StepOutcome {
    if !schema.findings.is_empty() {
        let objects: Vec<String> = schema.findings.iter().map(|f| f.describe()).collect();
        outcome = outcome.detail(Detail::fact(
            "schema",
            format!(
                "kept (`schema: keep`): these objects {verb} copied as they are, with what looks like personal data: {}",
                objects.join("; ")
            ),
        ));
    }
    match schema.comments_redacted {
        Some(0) | None => {}
        Some(n) => {
            outcome = outcome.detail(Detail::fact(
                "comments",
                format!(
                    "{n} comment{} redacted (e-mails, phones, IPs, cards, IBANs replaced by fakes)",
                    if n == 1 { "" } else { "s" }
                ),
            ))
        }
    }
    outcome
}

/// What the source holds outside its tables, in the plan (`are`) and the
/// run (`were`): the foreign objects `foreign: skip` leaves out (a source
/// with them and no such rule is refused before this), and the large
/// objects: left out, or under `large_objects: copy` (`copy` is `Some`,
/// with what was copied in the run) copied as they are. Names only, never
/// a server's options.
fn outside_details(
    mut outcome: StepOutcome,
    outside: &crate::pg::catalog::Outside,
    verb: &str,
    copy: Option<Option<crate::pg::large_objects::Copied>>,
) -> StepOutcome {
    if outside.has_foreign() {
        let mut names: Vec<String> = Vec::new();
        names.extend(outside.servers.iter().map(|s| format!("server {s}")));
        names.extend(
            outside
                .user_mappings
                .iter()
                .map(|m| format!("user mapping for {m}")),
        );
        names.extend(
            outside
                .foreign_tables
                .iter()
                .map(|t| format!("foreign table {t}")),
        );
        names.extend(
            outside
                .foreign_views
                .iter()
                .map(|v| format!("view {v}, which reads a foreign table")),
        );
        outcome = outcome.detail(Detail::fact(
            "foreign objects",
            format!(
                "left out (`foreign: skip`): {}; they {verb} not recreated in staging and no foreign table's rows {verb} copied",
                names.join("; ")
            ),
        ));
    }
    if let Some(copied) = copy {
        let (objects, bytes) = match copied {
            Some(c) => (
                c.objects,
                format!(", {}", crate::human::human_bytes(c.bytes as f64)),
            ),
            None => (outside.large_objects.max(0) as u64, String::new()),
        };
        if objects > 0 {
            outcome = outcome
                .output("large_objects_copied", objects)
                .detail(Detail::fact(
                    "large objects",
                    format!(
                        "{} large object{}{bytes}: copied as they are (`large_objects: copy`)",
                        crate::human::thousands(objects),
                        if objects == 1 { "" } else { "s" }
                    ),
                ));
        }
    } else if outside.large_objects > 0 {
        outcome = outcome
            .output("large_objects_left_out", outside.large_objects)
            .detail(Detail::fact(
                "large objects",
                format!(
                    "{} large object{}: left out (staging has none; `large_objects: copy` in the rules copies them as they are)",
                    crate::human::thousands(outside.large_objects as u64),
                    if outside.large_objects == 1 { "" } else { "s" }
                ),
            ));
    }
    outcome
}

impl Params {
    fn spec(&self, ctx: &StepCtx) -> CloneSpec {
        CloneSpec {
            source_name: self.source.clone(),
            source_url: ctx.postgres_url(&self.source).to_string(),
            target_name: self.target.clone(),
            target_url: ctx.postgres_url(&self.target).to_string(),
            workers: self.workers(),
            split_bytes: self.split_bytes,
            rules: BTreeMap::new(),
            anonymizer: self.anonymizer(),
            policy: self.policy(),
            suffix: run_suffix(&ctx.report.run_id),
            carry: Vec::new(),
        }
    }

    /// The worker counts, defaults filled in: the one place they are decided.
    fn workers(&self) -> clone::budget::Workers {
        clone::budget::Workers::resolve(self.jobs, self.index_jobs, cores())
    }

    /// The anonymizer of this clone, when it has rules or rewrites.
    fn anonymizer(&self) -> Option<Arc<Anonymizer>> {
        if self.anonymize.is_none() && self.rewrite.is_none() {
            return None;
        }
        let rules = self.anonymize.clone().unwrap_or_default();
        let keyed = Keyed::new(rules.secret.as_deref());
        Some(Arc::new(Anonymizer {
            rules,
            rewrite: self.rewrite.clone(),
            keyed,
        }))
    }

    /// `unknown_columns` in force: without rules files (a rewrite alone)
    /// nothing is checked.
    fn policy(&self) -> Option<UnknownColumns> {
        self.anonymize.as_ref().map(|r| r.unknown_columns)
    }

    async fn run_in_place(&self, spec: CloneSpec, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let reloaded =
            crate::clone::in_place::run(spec, &ctx.progress, &ctx.step_id, &ctx.cancel).await?;
        let total_rows: u64 = reloaded.tables.iter().map(|t| t.rows).sum();
        let total_bytes: u64 = reloaded.tables.iter().map(|t| t.bytes).sum();
        let outcome = StepOutcome::new(format!(
            "reloaded `{}` in place from `{}`: {} tables ({} rows, {})",
            self.target,
            self.source,
            reloaded.tables.len(),
            crate::human::thousands(total_rows),
            human_bytes(total_bytes)
        ))
        .output("tables", reloaded.tables.len())
        .output("rows", total_rows)
        .output("bytes", total_bytes)
        .detail(Detail::fact(
            "replaced schemas",
            reloaded.dropped_schemas.join(", "),
        ))
        .detail(Detail::fact(
            "sequences set",
            reloaded.sequences.to_string(),
        ))
        .detail(Detail::fact("phases", phases_text(&reloaded.phases)))
        .detail(tables_detail(&reloaded.tables));
        let copy = reloaded.large_objects.map(Some);
        let outcome = outside_details(outcome, &reloaded.outside, "were", copy);
        let outcome = schema_details(outcome, &reloaded.schema, "were");
        let outcome = self.anonymized_details(outcome, reloaded.binding.as_ref());
        Ok(carried_details(outcome, &reloaded.carried))
    }

    fn secret_warning(&self) -> Option<String> {
        let rules = self.anonymize.as_ref()?;
        rules.secret.is_none().then(|| {
            "the anonymizer rules set no `secret`: fake values are random per run (consistent within it). \
             Set `secret: ${FLIGHTPATH_SECRET}` for the same staging data on every run"
                .to_string()
        })
    }

    /// Per ruled column: rows, values changed; rows kept by `except`; URL
    /// rewrites per column.
    fn anonymized_details(
        &self,
        mut outcome: StepOutcome,
        binding: Option<&Binding>,
    ) -> StepOutcome {
        let Some(binding) = binding else {
            return outcome;
        };
        let mut columns = Vec::new();
        let mut rewrites = Vec::new();
        let mut excepted = Vec::new();
        let mut total_changed = 0;
        for (table, plan) in &binding.plans {
            for c in &plan.stats.columns {
                let changed = load(&c.changed);
                total_changed += changed;
                let replacements = load(&c.replacements);
                columns.push(vec![
                    table.clone(),
                    c.name.clone(),
                    c.rule.clone(),
                    crate::human::thousands(load(&c.rows)),
                    crate::human::thousands(changed),
                    if replacements > 0 {
                        crate::human::thousands(replacements)
                    } else {
                        String::new()
                    },
                ]);
            }
            for (column, n) in &plan.stats.rewrites {
                let n = load(n);
                if n > 0 {
                    rewrites.push(vec![
                        table.clone(),
                        column.clone(),
                        crate::human::thousands(n),
                    ]);
                }
            }
            let e = load(&plan.stats.excepted);
            if e > 0 {
                excepted.push(format!("{table}: {}", crate::human::thousands(e)));
            }
        }
        let nanos: u64 = binding.plans.values().map(|p| load(&p.stats.nanos)).sum();
        outcome = outcome.output("anonymized_values", total_changed);
        if !binding.plans.is_empty() {
            outcome = outcome.detail(Detail::fact(
                "time in transforms",
                format!(
                    "{:.2} s over {} tables (decoding, rules, encoding; spread over the workers)",
                    nanos as f64 / 1e9,
                    binding.plans.len()
                ),
            ));
        }
        if !columns.is_empty() {
            outcome = outcome.detail(Detail::Table {
                title: "anonymized columns".into(),
                columns: ["table", "column", "rule", "rows", "changed", "found inside"]
                    .map(String::from)
                    .to_vec(),
                rows: columns,
            });
        }
        let constants: Vec<Vec<String>> = binding
            .coverage
            .iter()
            .filter_map(|c| match &c.class {
                Class::Ruled(rule) if rule.starts_with("set") || rule == "null" => {
                    Some(vec![c.table.clone(), c.column.clone(), rule.clone()])
                }
                _ => None,
            })
            .collect();
        if !constants.is_empty() {
            outcome = outcome.detail(Detail::Table {
                title: "columns set by the source query".into(),
                columns: ["table", "column", "rule"].map(String::from).to_vec(),
                rows: constants,
            });
        }
        if !excepted.is_empty() {
            outcome = outcome.detail(Detail::fact(
                "rows copied unchanged by `except`",
                excepted.join(", "),
            ));
        }
        if !rewrites.is_empty() {
            outcome = outcome.detail(Detail::Table {
                title: "URL rewrites".into(),
                columns: ["table", "column", "replacements"]
                    .map(String::from)
                    .to_vec(),
                rows: rewrites,
            });
        }
        if let Some(rules) = &self.anonymize {
            outcome = outcome.detail(Detail::fact("secret", rules.secret_from.describe()));
        }
        if let Some(warning) = self.secret_warning() {
            outcome = outcome.detail(Detail::fact("warning", warning));
        }
        outcome
    }
}

/// Coverage of every column: ruled, kept, safe by type, truncated, or
/// uncovered with its evidence.
fn coverage_detail(binding: &Binding) -> Detail {
    let rows = binding
        .coverage
        .iter()
        .map(|c| {
            let class = c.class.describe();
            vec![
                c.table.clone(),
                c.column.clone(),
                c.type_name.clone(),
                class,
            ]
        })
        .collect();
    Detail::Table {
        title: "anonymizer coverage".into(),
        columns: ["table", "column", "type", "coverage"]
            .map(String::from)
            .to_vec(),
        rows,
    }
}

fn phases_text(phases: &[(&str, std::time::Duration)]) -> String {
    phases
        .iter()
        .map(|(name, d)| format!("{name} {:.1}s", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per table: rows, bytes, time, throughput and how it travelled.
fn tables_detail(tables: &[clone::TableCopied]) -> Detail {
    let rows = tables
        .iter()
        .map(|t| {
            let secs = t.duration.as_secs_f64();
            let rate = if secs > 0.0 {
                format!("{:.1}", t.bytes as f64 / secs / 1_048_576.0)
            } else {
                "-".into()
            };
            vec![
                t.qualified.clone(),
                crate::human::thousands(t.rows),
                human_bytes(t.bytes),
                format!("{secs:.1}s"),
                rate,
                notes(t),
            ]
        })
        .collect();
    Detail::Table {
        title: "tables".into(),
        columns: ["table", "rows", "bytes", "time", "MB/s", "notes"]
            .map(String::from)
            .to_vec(),
        rows,
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A worker count (`jobs`, `index_jobs`) as written: a whole number, at
/// least 1.
fn workers(with: &mut MapReader, cx: &mut LoadCtx, key: &'static str) -> Option<usize> {
    let node = with.get(key)?;
    let value = with.u64(cx, key)?;
    if value == 0 {
        cx.push(
            Problem::new(
                "flightpath::clone::workers",
                format!("`{key}` must be at least 1"),
                node.span,
                "no workers",
            )
            .help(match key {
                "jobs" => "leave it out for the default (the number of cores, at most 8)",
                _ => "leave it out for the default (as many as `jobs`)",
            }),
        );
        return None;
    }
    Some(value as usize)
}

/// A short, name-safe suffix from the run id (`…-3fa9` → `3fa9…`).
pub(super) fn run_suffix(run_id: &str) -> String {
    let cleaned: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let tail = cleaned.len().saturating_sub(12);
    cleaned[tail..].to_string()
}

fn pretty_version(num: u32) -> String {
    format!("{}.{}", num / 10_000, num % 10_000)
}

fn notes(t: &clone::TableCopied) -> String {
    let mut notes = Vec::new();
    if t.truncated {
        notes.push("created empty".to_string());
    }
    if t.ranges > 1 {
        notes.push(format!("{} ranges", t.ranges));
    }
    if t.format == Format::Text {
        notes.push("text format".into());
    }
    if t.transformed {
        notes.push("transformed".into());
    }
    notes.join(", ")
}

fn human_bytes(n: u64) -> String {
    crate::human::human_bytes(n as f64)
}

/// `anonymize: file` or `anonymize: [file, preset:name, …]`: read and merged
/// now, so `validate` reports every problem in the rules files too.
fn read_anonymize(cx: &mut LoadCtx, node: &crate::syntax::yaml::Node) -> Option<RuleSet> {
    let files = cx.string_list(node, "`anonymize`")?;
    if files.is_empty() {
        return None;
    }
    let references: Vec<String> = files.iter().map(|(f, _)| f.clone()).collect();
    // Paths are relative to where flightpath runs (the project's root), or
    // else to the workflow file.
    let bases: Vec<std::path::PathBuf> = std::env::current_dir()
        .ok()
        .into_iter()
        .chain(cx.dir.clone())
        .collect();
    match rules::load(&references, &bases, cx.vars) {
        Ok(set) => {
            // The one place the variable is read: the anonymizer takes the
            // secret as a value, and the plan says where it came from.
            let set = set.with_secret_variable(cx.vars.get(rules::SECRET_VAR));
            cx.secrets.extend(set.secrets.iter().cloned());
            Some(set)
        }
        Err(RulesError {
            unreadable,
            problems,
        }) => {
            for (path, error) in unreadable {
                let span = files
                    .iter()
                    .find(|(f, _)| *f == path)
                    .map_or(node.span, |(_, s)| *s);
                cx.push(
                    Problem::new("flightpath::anonymize::read", error, span, "cannot be read").help(
                        format!(
                            "paths are relative to the directory flightpath runs in, or to the workflow's own; the shipped presets are {}",
                            rules::preset_names()
                        ),
                    ),
                );
            }
            if !problems.is_empty() {
                cx.push(
                    Problem::new(
                        "flightpath::anonymize::invalid",
                        format!("{} problem(s) in the anonymizer rules", problems.len()),
                        node.span,
                        "rules with problems",
                    )
                    .help("each is shown below, in its own file"),
                );
                cx.external.extend(problems);
            }
            None
        }
    }
}

/// `rewrite: { replace: { from: to, "regex:…": to }, tables: all | [t, t.col] }`.
fn read_rewrite(cx: &mut LoadCtx, node: &crate::syntax::yaml::Node) -> Option<Rewrite> {
    let mut reader = MapReader::new(cx, node, "`rewrite`")?;
    let replace_node = reader.require(cx, "replace");
    let tables_node = reader.get("tables");
    reader.finish(cx);
    let replace = replace_node.and_then(|n| cx.template_map(n, "`rewrite.replace`"))?;
    let mut pairs = Vec::new();
    for (from, to) in replace {
        let Some(to) = to.as_literal() else {
            cx.push(Problem::new(
                "flightpath::interpolation::not-allowed",
                format!("`rewrite.replace.{from}` cannot use step outputs"),
                replace_node.map_or(node.span, |n| n.span),
                "must be known before the run starts",
            ));
            return None;
        };
        pairs.push((from, to.to_string()));
    }
    let rewriter = match Rewriter::new(&pairs) {
        Ok(r) => r,
        Err(e) => {
            cx.push(Problem::new(
                "flightpath::clone::rewrite",
                format!("`rewrite.replace`: {e}"),
                replace_node.map_or(node.span, |n| n.span),
                "invalid rule",
            ));
            return None;
        }
    };
    let scope = match tables_node {
        None => RewriteScope::All,
        Some(n) if n.as_str() == Some("all") => RewriteScope::All,
        Some(n) => RewriteScope::Listed(
            cx.string_list(n, "`rewrite.tables`")?
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
        ),
    };
    Some(Rewrite {
        rewriter: std::sync::Arc::new(rewriter),
        scope,
    })
}

/// The URL of `target` among the run's targets.
fn target_url<'a>(targets: &'a BTreeMap<String, Target>, target: &str) -> Result<&'a str, String> {
    targets
        .get(target)
        .and_then(|t| t.postgres.as_deref())
        .ok_or_else(|| format!("target `{target}` has no `postgres:` URL"))
}

/// The run succeeded: the database the swap took out goes (or is kept).
pub(super) async fn commit_swap(
    targets: &BTreeMap<String, Target>,
    target: &str,
    maintenance_database: &str,
    swapped: &Swapped,
    keep_old: bool,
) -> Result<String, String> {
    let url = target_url(targets, target)?;
    clone::swap::commit_swap(target, url, maintenance_database, swapped, keep_old)
        .await
        .map_err(|e| StepError::from(e).to_string())
}

/// The run failed after the swap: staging's previous database comes back.
pub(super) async fn rollback_swap(
    targets: &BTreeMap<String, Target>,
    target: &str,
    maintenance_database: &str,
    swapped: &Swapped,
) -> Result<String, String> {
    let url = target_url(targets, target)?;
    clone::swap::rollback_swap(target, url, maintenance_database, swapped)
        .await
        .map_err(|e| StepError::from(e).to_string())
}

/// Whether the database the swap took out is still there.
pub(super) async fn swap_still_in_place(
    targets: &BTreeMap<String, Target>,
    target: &str,
    maintenance_database: &str,
    swapped: &Swapped,
) -> bool {
    match target_url(targets, target) {
        Ok(url) => {
            clone::swap::swap_still_in_place(target, url, maintenance_database, swapped).await
        }
        Err(_) => false,
    }
}

impl From<clone::Error> for StepError {
    fn from(err: clone::Error) -> Self {
        use clone::Error;
        match err {
            Error::Pg(e) => e.into(),
            Error::Cancelled => StepError::Cancelled,
            refused @ (Error::RuleRefused { .. }
            | Error::Uncovered { .. }
            | Error::Foreign { .. }
            | Error::SchemaLiterals { .. }
            | Error::TooManyConnections { .. }) => StepError::Refused(refused.to_string()),
            Error::Database {
                target,
                database,
                error,
            } => StepError::Postgres {
                target,
                message: format!("database `{database}`: {error}"),
            },
            Error::CleanupFailed {
                error,
                database,
                cleanup,
            } => {
                let also = format!("; also: cleaning up database `{database}` failed: {cleanup}");
                match StepError::from(*error) {
                    StepError::Failed { message, details } => StepError::Failed {
                        message: message + &also,
                        details,
                    },
                    StepError::Refused(message) => StepError::Refused(message + &also),
                    StepError::Postgres { target, message } => StepError::Postgres {
                        target,
                        message: message + &also,
                    },
                    // Logged by the clone; a cancelled step says only that.
                    other => other,
                }
            }
            other => StepError::failed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anonymize::bind::Refusal;
    use crate::pg::swap::SwapError;

    fn swap_error(action: &str) -> SwapError {
        SwapError {
            action: action.into(),
            message: "ERROR: boom (SQLSTATE XX000)".into(),
        }
    }

    #[test]
    fn an_uncovered_column_is_a_refusal_that_names_the_source() {
        let err = StepError::from(clone::Error::Uncovered {
            name: "prod".into(),
            refusal: Refusal {
                lines: vec!["column a".into(), "column b".into()],
            },
        });
        let StepError::Refused(message) = err else {
            panic!("not a refusal: {err:?}");
        };
        assert_eq!(
            message,
            "the anonymizer does not cover `prod`; nothing was written:\n  - column a\n  - column b\n\
             Add a rule or a `keep:` entry for each column (run `flightpath scan` for a starter file), \
             or set `unknown_columns: warn` to copy uncovered columns as they are"
        );
    }

    #[test]
    fn a_rule_the_source_rejects_is_a_refusal() {
        let err = StepError::from(clone::Error::RuleRefused {
            name: "prod".into(),
            table: "\"public\".\"site\"".into(),
            why: "no such column".into(),
        });
        assert!(matches!(err, StepError::Refused(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "source `prod`: a rule for table \"public\".\"site\" does not work there: no such column"
        );
    }

    #[test]
    fn a_database_failure_names_the_target_and_the_database() {
        let err = StepError::from(clone::Error::Database {
            target: "staging".into(),
            database: "staging_fp_new_1".into(),
            error: swap_error("creating database staging_fp_new_1"),
        });
        assert!(matches!(err, StepError::Postgres { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "postgres target `staging`: database `staging_fp_new_1`: creating database \
             staging_fp_new_1: ERROR: boom (SQLSTATE XX000)"
        );
    }

    #[test]
    fn a_failed_clean_up_is_told_after_the_error_it_followed() {
        let copy = clone::Error::Pg(crate::pg::Error::Target {
            target: "staging".into(),
            message: "setting up the session: gone".into(),
        });
        let err = StepError::from(clone::Error::CleanupFailed {
            error: Box::new(copy),
            database: "staging_fp_new_1".into(),
            cleanup: swap_error("dropping database staging_fp_new_1"),
        });
        assert!(matches!(err, StepError::Postgres { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "postgres target `staging`: setting up the session: gone; also: cleaning up database \
             `staging_fp_new_1` failed: dropping database staging_fp_new_1: ERROR: boom (SQLSTATE XX000)"
        );
        // A cancelled clone stays a cancellation (the clean-up is logged).
        let err = StepError::from(clone::Error::CleanupFailed {
            error: Box::new(clone::Error::Cancelled),
            database: "staging_fp_new_1".into(),
            cleanup: swap_error("dropping database staging_fp_new_1"),
        });
        assert!(matches!(err, StepError::Cancelled), "{err:?}");
    }

    #[test]
    fn other_failures_keep_their_text() {
        let err = StepError::from(clone::Error::WorkerPanicked("task 3 panicked".into()));
        assert!(matches!(err, StepError::Failed { .. }), "{err:?}");
        assert_eq!(err.to_string(), "a clone worker panicked: task 3 panicked");
        let err = StepError::from(clone::Error::Cancelled);
        assert!(matches!(err, StepError::Cancelled));
        let err = StepError::from(clone::Error::NoDatabaseInUrl {
            target: "staging".into(),
        });
        assert_eq!(
            err.to_string(),
            "target `staging`: the connection URL names no database; end it with the database to \
             replace, e.g. postgres://user@host/staging"
        );
    }
}
