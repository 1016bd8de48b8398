//! `postgres.clone`: production's database into staging, from one snapshot,
//! over parallel COPY, loaded into a new database and swapped in. The
//! mechanics are in [`crate::clone`]; this file owns the step's
//! parameters, its plan (what would be copied, and whether the staging role
//! may do it) and its report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_postgres::Client;

use crate::anonymize::bind::{Anonymizer, Binding, Class, Rewrite, RewriteScope};
use crate::anonymize::keyed::Keyed;
use crate::anonymize::rewrite::Rewriter;
use crate::anonymize::rules::{self, RuleSet, RulesError, UnknownColumns};
use crate::anonymize::transform::load;
use crate::clone::{self, CloneSpec, Format};
use crate::pg::catalog::{self, Table};
use crate::pg::connect::{connect, sql_error};
use crate::pg::readonly;
use crate::pg::snapshot::read_only_session;
use crate::pg::url;
use crate::report::model::Detail;
use crate::syntax::diagnostics::Problem;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;

use super::{AfterRun, Facet, StepCtx, StepError, StepOutcome, TargetUse};

/// Tables larger than this are copied as several ctid ranges at once.
pub const DEFAULT_SPLIT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Load a new database, then swap it in for staging (needs CREATEDB).
    Swap,
    /// Drop and reload staging's schemas inside one transaction.
    InPlace,
}

#[derive(Debug, Clone)]
pub struct Params {
    /// The target to copy from; only ever read.
    pub source: String,
    pub source_span: crate::syntax::yaml::Span,
    /// The target to replace.
    pub target: String,
    pub target_span: crate::syntax::yaml::Span,
    pub strategy: Strategy,
    /// Tables copied at once (default: the number of cores, at least 2).
    pub jobs: usize,
    /// Keep the old staging database after a successful run.
    pub keep_old: bool,
    pub split_bytes: u64,
    /// The merged rules of `anonymize:`.
    pub anonymize: Option<RuleSet>,
    /// `rewrite:`.
    pub rewrite: Option<Rewrite>,
}

impl Params {
    pub fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
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
        let jobs = with
            .u64(cx, "jobs")
            .map(|j| j.max(1) as usize)
            .unwrap_or_else(default_jobs);
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
            keep_old,
            split_bytes,
            anonymize,
            rewrite,
        })
    }

    pub fn templates(&self) -> Vec<&Template> {
        Vec::new()
    }

    pub fn target_uses(&self) -> Vec<TargetUse> {
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

    fn spec(&self, ctx: &StepCtx) -> CloneSpec {
        CloneSpec {
            source_name: self.source.clone(),
            source_url: ctx.postgres_url(&self.source).to_string(),
            target_name: self.target.clone(),
            target_url: ctx.postgres_url(&self.target).to_string(),
            jobs: self.jobs,
            split_bytes: self.split_bytes,
            rules: BTreeMap::new(),
            binder: None,
            suffix: run_suffix(&ctx.report.run_id),
        }
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

    /// A spec whose binder applies the anonymizer to the snapshot's tables
    /// and refuses to go on when a rule does not fit or a column is
    /// uncovered; the binding is left in the returned slot for the report.
    fn bound_spec(&self, ctx: &StepCtx) -> (CloneSpec, Arc<Mutex<Option<Binding>>>) {
        let mut spec = self.spec(ctx);
        let slot: Arc<Mutex<Option<Binding>>> = Arc::default();
        if let Some(anonymizer) = self.anonymizer() {
            let policy = self.policy();
            let source = self.source.clone();
            let keep = slot.clone();
            spec.binder = Some(Arc::new(move |tables: &[Table]| {
                let binding = anonymizer.bind(tables);
                let blocking = binding.blocking(policy);
                if !blocking.is_empty() {
                    return Err(refusal(&source, &blocking));
                }
                let rules = binding.rules.clone();
                *keep.lock().expect("binding slot") = Some(binding);
                Ok(rules)
            }));
        }
        (spec, slot)
    }

    pub async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let spec = self.spec(ctx);
        let source = read_only_session(&self.source, &spec.source_url, &ctx.cancel).await?;
        let source_version = version(&source, &self.source).await?;
        let source_warning = match ctx.target(&self.source).protected {
            true => readonly::write_access_warning(&source, &self.source)
                .await
                .map_err(|e| StepError::Postgres {
                    target: self.source.clone(),
                    message: e.to_string(),
                })?,
            false => None,
        };
        let tables = catalog::tables(&source)
            .await
            .map_err(sql_error(&self.source, "listing tables"))?;
        let pg_dump = crate::pg::schema::find_pg_dump(source_version / 10_000)
            .map_err(|e| StepError::failed(e.to_string()))?;
        let staging_db = url::database_of(&spec.target_url).unwrap_or_default();
        // In place needs nothing but staging itself (managed providers often
        // refuse connections to their other databases).
        let mut leftovers = Vec::new();
        let (target_version, warning, sessions) = match self.strategy {
            Strategy::Swap => {
                let (maintenance, _) = clone::maintenance_client(&spec, &ctx.cancel).await?;
                let warning = check_privileges(&maintenance, &self.target, &staging_db).await?;
                let sessions = sessions_to_end(&maintenance, &self.target, &staging_db).await?;
                leftovers = crate::pg::swap::leftovers(&maintenance, &staging_db)
                    .await
                    .map_err(|e| StepError::failed(e.to_string()))?;
                (
                    version(&maintenance, &self.target).await?,
                    warning,
                    Some(sessions),
                )
            }
            Strategy::InPlace => {
                let staging = connect(&self.target, &spec.target_url, &ctx.cancel).await?;
                (version(&staging, &self.target).await?, None, None)
            }
        };

        let same_major = source_version / 10_000 == target_version / 10_000;
        let binding = match self.anonymizer() {
            Some(anonymizer) => {
                let mut binding = anonymizer.bind(&tables);
                binding.sample(&source, &tables).await.map_err(|e| {
                    StepError::failed(format!("sampling `{}` for coverage: {e}", self.source))
                })?;
                check_expressions(&source, &self.source, &tables, &binding).await?;
                Some(binding)
            }
            None => None,
        };
        let rows: Vec<Vec<String>> = tables
            .iter()
            .map(|t| {
                table_plan_row(
                    t,
                    same_major,
                    &spec,
                    source_version / 10_000,
                    binding.as_ref(),
                )
            })
            .collect();
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
            .detail(Detail::fact("workers", self.jobs.to_string()))
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
        if let Some(sessions) = sessions {
            outcome = outcome.detail(Detail::fact("sessions ended at the swap", sessions));
        }
        for warning in [source_warning, warning].into_iter().flatten() {
            outcome = outcome.detail(Detail::fact("warning", warning));
        }
        if let Some(binding) = &binding {
            outcome = outcome.detail(coverage_detail(binding));
            if let Some(warning) = self.secret_warning() {
                outcome = outcome.detail(Detail::fact("warning", warning));
            }
            let blocking = binding.blocking(self.policy());
            if !blocking.is_empty() {
                return Err(refusal(&self.source, &blocking));
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

    pub async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let (spec, binding) = self.bound_spec(ctx);
        if self.strategy == Strategy::InPlace {
            return self.run_in_place(spec, binding, ctx).await;
        }
        let cloned = clone::run(spec, &ctx.progress, &ctx.step_id, &ctx.cancel).await?;
        let binding = binding.lock().expect("binding slot").take();
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
        outcome = self.anonymized_details(outcome, binding.as_ref());
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

impl Params {
    async fn run_in_place(
        &self,
        spec: CloneSpec,
        binding: Arc<Mutex<Option<Binding>>>,
        ctx: &StepCtx,
    ) -> Result<StepOutcome, StepError> {
        let reloaded =
            crate::clone::in_place::run(spec, &ctx.progress, &ctx.step_id, &ctx.cancel).await?;
        let binding = binding.lock().expect("binding slot").take();
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
        Ok(self.anonymized_details(outcome, binding.as_ref()))
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
        if let Some(warning) = self.secret_warning() {
            outcome = outcome.detail(Detail::fact("warning", warning));
        }
        outcome
    }
}

/// The refusal when rules do not fit or columns are uncovered: nothing has
/// been written.
fn refusal(source: &str, lines: &[String]) -> StepError {
    StepError::Refused(format!(
        "the anonymizer does not cover `{source}`; nothing was written:\n  - {}\n\
         Add a rule or a `keep:` entry for each column (run `flightpath scan` for a starter file), \
         or set `unknown_columns: warn` to copy uncovered columns as they are",
        lines.join("\n  - ")
    ))
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

/// Every constant a rule sets must cast to its column's type, and every
/// `where`/`except` must be a predicate the source accepts: checked by the
/// source server now (the query reads no rows), not halfway through the
/// copy. The SQL the rules add is sent to production, so it passes the
/// read-only guard first: one query, no function whose effects escape a
/// read-only transaction, sent alone through the extended protocol.
async fn check_expressions(
    source: &Client,
    name: &str,
    tables: &[Table],
    binding: &Binding,
) -> Result<(), StepError> {
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
        let refused = |why: String| {
            StepError::Refused(format!(
                "source `{name}`: a rule for table {} does not work there: {why}",
                table.qualified
            ))
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
            return Err(refused(crate::pg::connect::describe(&e, None)));
        }
    }
    Ok(())
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

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// A short, name-safe suffix from the run id (`…-3fa9` → `3fa9…`).
fn run_suffix(run_id: &str) -> String {
    let cleaned: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let tail = cleaned.len().saturating_sub(12);
    cleaned[tail..].to_string()
}

async fn version(client: &Client, target: &str) -> Result<u32, StepError> {
    catalog::server_version_num(client)
        .await
        .map(|v| v as u32)
        .map_err(|e| sql_error(target, "reading the server version")(e).into())
}

fn pretty_version(num: u32) -> String {
    format!("{}.{}", num / 10_000, num % 10_000)
}

/// Refuses early, with the fix, when the staging role cannot do a swap;
/// returns a warning when the swap may fail on other roles' sessions.
async fn check_privileges(
    maintenance: &Client,
    target: &str,
    database: &str,
) -> Result<Option<String>, StepError> {
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
        return Err(StepError::failed(format!(
            "target `{target}`: database `{database}` does not exist on the staging server; create it first (`createdb {database}`)"
        )));
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
        return Err(StepError::failed(format!(
            "target `{target}`: `strategy: swap` needs more privileges: {}; or use `strategy: in-place`",
            missing.join("; ")
        )));
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
async fn sessions_to_end(
    maintenance: &Client,
    target: &str,
    database: &str,
) -> Result<String, StepError> {
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

fn table_plan_row(
    table: &Table,
    same_major: bool,
    spec: &CloneSpec,
    source_major: u32,
    binding: Option<&Binding>,
) -> Vec<String> {
    let rule = binding.and_then(|b| b.rules.get(&table.qualified));
    let transform = match rule {
        None => "none".to_string(),
        Some(r) if r.truncate => "created empty".to_string(),
        Some(r) => {
            let mut parts = Vec::new();
            let ruled = binding
                .and_then(|b| b.plans.get(&table.qualified))
                .map_or(0, |p| p.columns.len())
                + r.expressions.len();
            if ruled > 0 {
                parts.push(format!("{ruled} column(s) anonymized"));
            }
            if binding
                .and_then(|b| b.plans.get(&table.qualified))
                .is_some_and(|p| !p.rewrite.is_empty())
            {
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
    let format = match clone::format_for(table, same_major) {
        Format::Binary => "binary".to_string(),
        Format::Text if !same_major => "text (server versions differ)".to_string(),
        Format::Text => "text (a column type has no portable binary form)".to_string(),
    };
    let ranges = if rule.is_some_and(|r| r.truncate) {
        1
    } else {
        clone::ranges_for(table, spec.split_bytes, source_major)
            .len()
            .max(1)
    };
    vec![
        table.qualified.clone(),
        crate::human::thousands(table.rows_estimate.max(0) as u64),
        human_bytes(table.bytes.max(0) as u64),
        format,
        transform,
        ranges.to_string(),
    ]
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
