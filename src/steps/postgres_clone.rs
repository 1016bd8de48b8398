//! `postgres.clone`: production's database into staging, from one snapshot,
//! over parallel COPY, loaded into a new database and swapped in. The
//! mechanics are in [`crate::pg::clone`]; this file owns the step's
//! parameters, its plan (what would be copied, and whether the staging role
//! may do it) and its report.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::pg::catalog::{self, Table};
use crate::pg::clone::{self, CloneSpec, Format};
use crate::pg::connect::{connect, sql_error};
use crate::pg::snapshot::read_only_session;
use crate::pg::url;
use crate::report::model::Detail;
use crate::workflow::diagnostics::Problem;
use crate::workflow::reader::{LoadCtx, MapReader};
use crate::workflow::template::Template;

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
    pub source_span: crate::workflow::yaml::Span,
    /// The target to replace.
    pub target: String,
    pub target_span: crate::workflow::yaml::Span,
    pub strategy: Strategy,
    /// Tables copied at once (default: the number of cores, at least 2).
    pub jobs: usize,
    /// Keep the old staging database after a successful run.
    pub keep_old: bool,
    pub split_bytes: u64,
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
        for later in ["anonymize", "rewrite"] {
            if let Some(node) = with.get(later) {
                cx.push(
                    Problem::new(
                        "flightpath::clone::unavailable",
                        format!("`{later}` is not available in this version of flightpath"),
                        node.span,
                        "not available yet",
                    )
                    .help("remove it for a plain clone; in-flight anonymization comes with the anonymizers"),
                );
            }
        }
        Some(Params {
            source: source?,
            source_span: source_node?.span,
            target: target?,
            target_span: target_node?.span,
            strategy: strategy?,
            jobs,
            keep_old,
            split_bytes,
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
            transforms: None,
            suffix: run_suffix(&ctx.report.run_id),
        }
    }

    pub async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let spec = self.spec(ctx);
        let source = read_only_session(&self.source, &spec.source_url, &ctx.cancel).await?;
        let source_version = version(&source, &self.source).await?;
        let tables = catalog::tables(&source)
            .await
            .map_err(sql_error(&self.source, "listing tables"))?;
        let pg_dump = crate::pg::schema::find_pg_dump(source_version / 10_000)
            .map_err(|e| StepError::failed(e.to_string()))?;
        let staging_db = url::database_of(&spec.target_url).unwrap_or_default();
        // In place needs nothing but staging itself (managed providers often
        // refuse connections to their other databases).
        let (target_version, warning) = match self.strategy {
            Strategy::Swap => {
                let maintenance = clone::maintenance_client(&spec, &ctx.cancel).await?;
                let warning = check_privileges(&maintenance, &self.target, &staging_db).await?;
                (version(&maintenance, &self.target).await?, warning)
            }
            Strategy::InPlace => {
                let staging = connect(&self.target, &spec.target_url, &ctx.cancel).await?;
                (version(&staging, &self.target).await?, None)
            }
        };

        let same_major = source_version / 10_000 == target_version / 10_000;
        let rows: Vec<Vec<String>> = tables
            .iter()
            .map(|t| table_plan_row(t, same_major, &spec, source_version / 10_000))
            .collect();
        let total_bytes: i64 = tables.iter().map(|t| t.bytes).sum();
        let total_rows: i64 = tables.iter().map(|t| t.rows_estimate).sum();
        let aside = if self.keep_old {
            "kept as the old database"
        } else {
            "dropped after the run succeeds"
        };
        let summary = format!(
            "would copy {} tables (about {} rows, {}) from `{}` into a new database and swap it in for `{}`",
            tables.len(),
            crate::report::thousands(total_rows.max(0) as u64),
            human_bytes(total_bytes.max(0) as u64),
            self.source,
            self.target,
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
        if let Some(warning) = warning {
            outcome = outcome.detail(Detail::fact("warning", warning));
        }
        Ok(outcome)
    }

    pub async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let spec = self.spec(ctx);
        let maintenance_url = url::with_database(&spec.target_url, "postgres");
        if self.strategy == Strategy::InPlace {
            return self.run_in_place(spec, ctx).await;
        }
        let cloned = clone::run(spec, &ctx.progress, &ctx.step_id, &ctx.cancel).await?;
        let total_rows: u64 = cloned.tables.iter().map(|t| t.rows).sum();
        let total_bytes: u64 = cloned.tables.iter().map(|t| t.bytes).sum();
        let mut outcome = StepOutcome::new(format!(
            "cloned {} tables ({} rows, {}) from `{}` and swapped them into `{}`",
            cloned.tables.len(),
            crate::report::thousands(total_rows),
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
                "`{}` now holds the copy; the previous staging database is `{}` until the run ends",
                cloned.swapped.live, cloned.swapped.aside
            ),
        ))
        .detail(Detail::fact("sequences set", cloned.sequences.to_string()))
        .detail(Detail::fact("phases", phases_text(&cloned.phases)))
        .detail(tables_detail(&cloned.tables));
        if !cloned.same_locale {
            outcome = outcome.detail(Detail::fact(
                "locale",
                "the source's locale is not installed on the staging server; the server's default was used",
            ));
        }
        outcome.after_run.push(AfterRun::PostgresSwap {
            target: self.target.clone(),
            maintenance_url,
            swapped: cloned.swapped,
            keep_old: self.keep_old,
        });
        Ok(outcome)
    }
}

impl Params {
    async fn run_in_place(&self, spec: CloneSpec, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let reloaded =
            crate::pg::in_place::run(spec, &ctx.progress, &ctx.step_id, &ctx.cancel).await?;
        let total_rows: u64 = reloaded.tables.iter().map(|t| t.rows).sum();
        let total_bytes: u64 = reloaded.tables.iter().map(|t| t.bytes).sum();
        Ok(StepOutcome::new(format!(
            "reloaded `{}` in place from `{}`: {} tables ({} rows, {})",
            self.target,
            self.source,
            reloaded.tables.len(),
            crate::report::thousands(total_rows),
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
        .detail(tables_detail(&reloaded.tables)))
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
                crate::report::thousands(t.rows),
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
        .map_err(sql_error(target, "reading the server version"))
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

fn table_plan_row(
    table: &Table,
    same_major: bool,
    spec: &CloneSpec,
    source_major: u32,
) -> Vec<String> {
    let format = match clone::format_for(table, same_major) {
        Format::Binary => "binary".to_string(),
        Format::Text if !same_major => "text (server versions differ)".to_string(),
        Format::Text => "text (a column type has no portable binary form)".to_string(),
    };
    let ranges = clone::ranges_for(table, spec.split_bytes, source_major)
        .len()
        .max(1);
    vec![
        table.qualified.clone(),
        crate::report::thousands(table.rows_estimate.max(0) as u64),
        human_bytes(table.bytes.max(0) as u64),
        format,
        "none".into(),
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
    crate::report::human_bytes(n as f64)
}
