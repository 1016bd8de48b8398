//! `postgres.sql`: runs SQL on a named target inside one transaction, and
//! reports the rows affected. With `readonly: true` (the only way onto a
//! protected target) the SQL goes through [`crate::pg::readonly`]: only
//! queries, each statement alone, in a read-only transaction, no function
//! whose effects escape it; anything else is refused (exit 3) before a
//! statement is sent.
//!
//! The plan connects (proving the target is reachable and the credentials
//! work), warns when a protected target's role could write, and, for a
//! single statement the parser knows to be a query or plain DML, asks the
//! server for its `EXPLAIN` inside a read-only transaction that is rolled
//! back; it never executes the SQL. Cancelling sends the server a cancel
//! request; the open transaction is rolled back when the connection closes.

use std::future::Future;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::pg::connect::{connect, describe};
use crate::pg::readonly;
use crate::progress::Unit;
use crate::report::model::Detail;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;
use crate::syntax::yaml::Span;

use super::{Facet, Kind, StepCtx, StepError, StepOutcome, TargetUse};

#[derive(Debug, Clone)]
pub struct Params {
    /// The name of the target (under `targets:`) whose database to use.
    pub target: String,
    /// Where `target` is written, for validation errors.
    pub target_span: Span,
    /// The SQL: one statement or several, run in one transaction.
    pub sql: Template,
    /// Run in a `READ ONLY` transaction; allowed on protected targets.
    pub readonly: bool,
}

impl Kind for Params {
    const NAME: &'static str = "postgres.sql";
    const OUTPUTS: &'static [&'static str] = &["rows"];
    const DESTRUCTIVE: bool = true;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        // Read every key before giving up, so each one counts as known.
        let target_label = format!("{} `target`", with.what());
        let target = with
            .require(cx, "target")
            .and_then(|node| Some((cx.string(node, &target_label)?, node.span)));
        let sql =
            with.required_template_in(cx, "sql", crate::syntax::template::Quoting::SqlLiteral);
        let readonly = with.bool(cx, "readonly").unwrap_or(false);
        let (target, target_span) = target?;
        Some(Params {
            target,
            target_span,
            sql: sql?,
            readonly,
        })
    }

    fn templates(&self) -> Vec<&Template> {
        vec![&self.sql]
    }

    /// `readonly: true` runs in a read-only transaction after every
    /// statement was classified: nothing to confirm.
    fn destructive(&self) -> bool {
        !self.readonly
    }

    fn target_uses(&self) -> Vec<TargetUse> {
        vec![TargetUse {
            name: self.target.clone(),
            span: self.target_span,
            write: !self.readonly,
            facet: Facet::Postgres,
        }]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let rendered = ctx.render(&self.sql).ok();
        let shown = ctx.redactor.redact(&ctx.preview(&self.sql));
        // Refused before anything is sent; SQL that still waits for another
        // step's output is checked when the step runs.
        let statements = match (&rendered, self.readonly) {
            (Some(sql), true) => Some(self.read_only_statements(sql)?),
            _ => None,
        };
        let client = connect(&self.target, ctx.postgres_url(&self.target), &ctx.cancel).await?;

        let mut outcome = StepOutcome::new(format!("would run SQL on `{}`", self.target))
            .detail(Detail::block("sql", shown));
        if self.readonly {
            outcome = outcome.detail(Detail::fact("transaction", "read only"));
        }
        if ctx.target(&self.target).protected {
            let warning = readonly::write_access_warning(&client, &self.target);
            if let Some(warning) = cancellable(ctx, &client, self.guarded(warning)).await? {
                outcome = outcome.detail(Detail::fact("warning", warning));
            }
        }
        // The plan never executes the SQL: it explains one statement the
        // parser knows to be a query (or INSERT, UPDATE, DELETE, MERGE,
        // which EXPLAIN does not run), inside a read-only transaction.
        let explained = match (&rendered, &statements) {
            (_, Some(statements)) => {
                let checked = async {
                    readonly::begin_checked(&client, statements).await?;
                    Ok(match statements.as_slice() {
                        [one] if one.explainable() => explain(&client, &one.text).await,
                        _ => None,
                    })
                };
                cancellable(ctx, &client, self.guarded(checked)).await?
            }
            (Some(sql), None) => match readonly::explainable(sql) {
                Some(statement) => {
                    let explained = async {
                        readonly::begin(&client).await?;
                        Ok(explain(&client, &statement).await)
                    };
                    cancellable(ctx, &client, self.guarded(explained)).await?
                }
                None => None,
            },
            (None, None) => None,
        };
        if let Some(plan) = explained {
            outcome = outcome.detail(Detail::block("plan", ctx.redactor.redact(&plan)));
        }
        Ok(outcome)
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let sql = ctx.render(&self.sql)?;
        let statements = match self.readonly {
            true => Some(self.read_only_statements(&sql)?),
            false => None,
        };
        let client = connect(&self.target, ctx.postgres_url(&self.target), &ctx.cancel).await?;

        let bar = ctx.progress.bar(
            &ctx.step_id,
            &format!("running SQL on {}", self.target),
            None,
            Unit::Items,
        );
        let result = match &statements {
            Some(statements) => {
                let guarded = async {
                    readonly::begin_checked(&client, statements).await?;
                    readonly::execute(&client, statements).await
                };
                cancellable(ctx, &client, self.guarded(guarded)).await
            }
            None => cancellable(ctx, &client, self.execute(&client, &sql)).await,
        };
        bar.finish();
        // Errors are redacted where every step's are: when the engine records them.
        let rows = result?;

        let mut outcome = StepOutcome::new(format!(
            "ran SQL on `{}`: {rows} {}",
            self.target,
            if rows == 1 { "row" } else { "rows" }
        ))
        .output("rows", rows)
        .detail(Detail::block("sql", ctx.redactor.redact(&sql)));
        if self.readonly {
            outcome = outcome.detail(Detail::fact("transaction", "read only"));
        }
        Ok(outcome)
    }
}

impl Params {
    /// The statements of read-only SQL, or the refusal of the first that
    /// is not a query.
    fn read_only_statements(&self, sql: &str) -> Result<Vec<readonly::Statement>, StepError> {
        readonly::read_only_statements(sql).map_err(|refusal| self.refused(refusal))
    }

    fn refused(&self, refusal: readonly::Refusal) -> StepError {
        StepError::Refused(format!(
            "`postgres.sql` on `{}` is read-only (`readonly: true`): {refusal}",
            self.target
        ))
    }

    /// Runs work of the read-only guard, its errors as step errors.
    async fn guarded<T>(
        &self,
        work: impl Future<Output = Result<T, readonly::ReadOnlyError>>,
    ) -> Result<T, StepError> {
        work.await.map_err(|e| match e {
            readonly::ReadOnlyError::Refused(refusal) => self.refused(refusal),
            server @ readonly::ReadOnlyError::Server { .. } => StepError::Postgres {
                target: self.target.clone(),
                message: server.to_string(),
            },
        })
    }

    /// Runs `sql` (writable SQL) in one transaction as a simple query; the
    /// sum of the rows each statement reported. On error the transaction is
    /// left open and rolled back when the client is dropped.
    async fn execute(&self, client: &Client, sql: &str) -> Result<u64, StepError> {
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| self.error(&e, None))?;
        let messages = client
            .simple_query(sql)
            .await
            .map_err(|e| self.error(&e, Some(sql)))?;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| self.error(&e, None))?;
        Ok(rows_affected(&messages))
    }

    fn error(&self, err: &tokio_postgres::Error, sql: Option<&str>) -> StepError {
        StepError::Postgres {
            target: self.target.clone(),
            message: describe(err, sql),
        }
    }
}

/// Runs `work`, or on cancellation asks the server to cancel the running
/// query and returns [`StepError::Cancelled`].
async fn cancellable<T>(
    ctx: &StepCtx,
    client: &Client,
    work: impl Future<Output = Result<T, StepError>>,
) -> Result<T, StepError> {
    tokio::select! {
        result = work => result,
        _ = ctx.cancel.cancelled() => {
            let _ = client.cancel_token().cancel_query(NoTls).await;
            Err(StepError::Cancelled)
        }
    }
}

/// The server's plan for `statement` (first line and estimated rows), or
/// `None` when it cannot be explained. Runs inside the read-only
/// transaction [`readonly::begin`] opened, through the extended protocol
/// (one statement), and rolls it back.
async fn explain(client: &Client, statement: &str) -> Option<String> {
    let explained = client.query(&format!("EXPLAIN {statement}"), &[]).await;
    let _ = client.batch_execute("ROLLBACK").await;
    let lines: Vec<String> = explained
        .ok()?
        .iter()
        .filter_map(|row| row.try_get::<_, String>(0).ok())
        .collect();
    summarize_plan(&lines)
}

/// The first line of an `EXPLAIN` and its estimated rows. For `UPDATE`,
/// `DELETE`, `INSERT` and `MERGE` the top node estimates no rows of its own,
/// so the estimate comes from the node under it (the rows it will touch).
pub fn summarize_plan(lines: &[String]) -> Option<String> {
    let first = lines.first()?.trim();
    let modifies = ["Update on", "Delete on", "Insert on", "Merge on"]
        .iter()
        .any(|p| first.starts_with(p));
    let estimate_line = if modifies {
        lines.iter().skip(1).find(|l| estimated_rows(l).is_some())
    } else {
        lines.first()
    };
    let mut out = first.to_string();
    if let Some(rows) = estimate_line.and_then(|l| estimated_rows(l)) {
        out.push_str(&format!("\nestimated rows: {rows}"));
    }
    Some(out)
}

/// `N` from the first `rows=N` in a plan line.
fn estimated_rows(line: &str) -> Option<u64> {
    let rest = &line[line.find("rows=")? + "rows=".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The sum of the row counts in every `CommandComplete`.
fn rows_affected(messages: &[SimpleQueryMessage]) -> u64 {
    messages
        .iter()
        .map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => *n,
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn plan_of_an_update_estimates_the_rows_it_touches() {
        let plan = lines(
            "Update on t  (cost=0.00..35.50 rows=0 width=0)\n  ->  Seq Scan on t  (cost=0.00..35.50 rows=2550 width=10)",
        );
        assert_eq!(
            summarize_plan(&plan).unwrap(),
            "Update on t  (cost=0.00..35.50 rows=0 width=0)\nestimated rows: 2550"
        );
    }

    #[test]
    fn plan_of_a_select_uses_its_top_node() {
        let plan = lines("Seq Scan on t  (cost=0.00..1.01 rows=1 width=4)");
        assert_eq!(
            summarize_plan(&plan).unwrap(),
            "Seq Scan on t  (cost=0.00..1.01 rows=1 width=4)\nestimated rows: 1"
        );
        assert_eq!(summarize_plan(&[]), None);
    }
}
