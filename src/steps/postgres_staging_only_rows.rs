//! `postgres.staging-only-rows`: the rows of a staging table whose key
//! production does not have — the QA accounts a reset would drop — listed
//! by key before anything is written, with how many rows of other tables
//! point at them. It only reads (both sides in read-only transactions),
//! so its dry run and its run do the same; the report holds keys and
//! counts, never another column's value.
//!
//! Carrying the rows over into the new database (`preserve: true`) is
//! refused for now with the way round it, rather than accepted and not
//! done.

use crate::clone::staging_only::{self, Case, Found, Include, Lookup, show_key};
use crate::pg::connect::connect;
use crate::report::model::Detail;
use crate::syntax::diagnostics::Problem;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;
use crate::syntax::yaml::{Span, Value};

use super::{Facet, Kind, StepCtx, StepError, StepOutcome, TargetUse};

/// How many keys the report lists; the output `keys` has them all.
const SHOWN_KEYS: usize = 50;

#[derive(Debug, Clone)]
pub struct Params {
    /// The production target (read only).
    pub source: String,
    pub source_span: Span,
    /// The staging target whose rows are looked at.
    pub target: String,
    pub target_span: Span,
    /// The table: `auth_user`, `public.users`.
    pub table: String,
    /// The key: one column or a list (`[provider, uid]`).
    pub key: Vec<String>,
    /// Only staging rows matching this SQL condition are considered.
    pub filter: Option<String>,
    /// Compare keys ignoring case.
    pub insensitive: bool,
    /// Rows of other tables pointing at a staging-only row.
    pub include: Vec<Include>,
}

impl Kind for Params {
    const NAME: &'static str = "postgres.staging-only-rows";
    const OUTPUTS: &'static [&'static str] = &["keys", "count", "carried"];
    const DESTRUCTIVE: bool = false;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        // Read every key before giving up, so each one counts as known.
        let source_node = with.require(cx, "source");
        let target_node = with.require(cx, "target");
        let source = source_node.and_then(|n| cx.string(n, "`source`"));
        let target = target_node.and_then(|n| cx.string(n, "`target`"));
        let table = with.required_string(cx, "table");
        let key = with.require(cx, "key").and_then(|node| {
            let key = cx.string_list(node, "`key`")?;
            if key.is_empty() {
                cx.push(
                    Problem::new(
                        "flightpath::staging_only::key",
                        "`key` names no column",
                        node.span,
                        "empty",
                    )
                    .help("name the column (or columns) that identify a row: `key: email`"),
                );
                return None;
            }
            Some(key.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
        });
        let filter = with.string(cx, "where");
        let insensitive = match with.get("key_case") {
            None => Some(false),
            Some(node) => match cx.string(node, "`key_case`").as_deref() {
                Some("sensitive") => Some(false),
                Some("insensitive") => Some(true),
                Some(other) => {
                    cx.push(
                        Problem::new(
                            "flightpath::staging_only::key_case",
                            format!("unknown `key_case` `{other}`"),
                            node.span,
                            "not a key case",
                        )
                        .suggest(other, ["sensitive", "insensitive"])
                        .help_if_none("use `sensitive` (the default) or `insensitive`"),
                    );
                    None
                }
                None => None,
            },
        };
        let include = match with.get("include") {
            None => Some(Vec::new()),
            Some(node) => read_include(cx, node),
        };
        // Read (and checked) already; it decides what a carry-over does.
        if let Some(node) = with.get("on_conflict")
            && let Some(value) = cx.string(node, "`on_conflict`")
            && !["error", "skip", "replace"].contains(&value.as_str())
        {
            {
                cx.push(
                    Problem::new(
                        "flightpath::staging_only::on_conflict",
                        format!("unknown `on_conflict` `{value}`"),
                        node.span,
                        "not a choice",
                    )
                    .suggest(&value, ["error", "skip", "replace"])
                    .help_if_none("use `error` (the default), `skip` or `replace`"),
                );
            }
        }
        if let Some(node) = with.get("preserve")
            && cx.bool(node, "`preserve`") == Some(true)
        {
            cx.push(
                Problem::new(
                    "flightpath::staging_only::preserve",
                    "`preserve: true` is not available yet: this version lists the staging-only \
                     rows but cannot carry them into the clone",
                    node.span,
                    "not available yet",
                )
                .help(
                    "leave `preserve` out to list them before the reset, and recreate them \
                     afterwards from the report's keys (the rows are in the backup)",
                ),
            );
        }
        Some(Params {
            source: source?,
            source_span: source_node?.span,
            target: target?,
            target_span: target_node?.span,
            table: table?,
            key: key?,
            filter,
            insensitive: insensitive?,
            include: include?,
        })
    }

    fn templates(&self) -> Vec<&Template> {
        Vec::new()
    }

    fn target_uses(&self) -> Vec<TargetUse> {
        [
            (&self.source, self.source_span),
            (&self.target, self.target_span),
        ]
        .into_iter()
        .map(|(name, span)| TargetUse {
            name: name.clone(),
            span,
            write: false,
            facet: Facet::Postgres,
        })
        .collect()
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        self.look(ctx, "would carry over nothing").await
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        self.look(ctx, "carried over nothing").await
    }
}

fn read_include(cx: &mut LoadCtx, node: &crate::syntax::yaml::Node) -> Option<Vec<Include>> {
    let Value::Seq(items) = &node.value else {
        cx.push(
            Problem::new(
                "flightpath::staging_only::include",
                "`include` must be a list of `{ table, fk }`",
                node.span,
                "not a list",
            )
            .help("write `include: [{ table: auth_user_groups, fk: user_id }]`"),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(mut map) = MapReader::new(cx, item, "an `include` entry") else {
            ok = false;
            continue;
        };
        let table = map.required_string(cx, "table");
        let fk = map.required_string(cx, "fk");
        map.finish(cx);
        match (table, fk) {
            (Some(table), Some(fk)) => out.push(Include { table, fk }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

impl Params {
    async fn look(&self, ctx: &StepCtx, carried: &str) -> Result<StepOutcome, StepError> {
        let source = connect(&self.source, ctx.postgres_url(&self.source), &ctx.cancel).await?;
        let target = connect(&self.target, ctx.postgres_url(&self.target), &ctx.cancel).await?;
        let lookup = Lookup {
            table: self.table.clone(),
            key: self.key.clone(),
            filter: self.filter.clone(),
            insensitive: self.insensitive,
            include: self.include.clone(),
        };
        let found = tokio::select! {
            found = staging_only::find(&source, &target, &lookup) => found,
            () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        }
        .map_err(|e| StepError::failed(format!("`{}`: {e}", self.table)))?;
        Ok(self.outcome(&found, carried))
    }

    fn outcome(&self, found: &Found, carried: &str) -> StepOutcome {
        let count = found.keys.len();
        let keys: Vec<String> = found.keys.iter().map(|k| show_key(k)).collect();
        let summary = match count {
            0 => format!(
                "no rows of `{}` exist only on `{}`",
                self.table, self.target
            ),
            n => format!(
                "{n} row{} of `{}` only on `{}` (not on `{}`); {carried}",
                if n == 1 { "" } else { "s" },
                self.table,
                self.target,
                self.source
            ),
        };
        let mut outcome = StepOutcome::new(summary)
            .output("keys", keys.clone())
            .output("count", count as u64)
            .output("carried", serde_json::Map::new());
        let key_label = format!("key ({})", self.key.join(", "));
        let case = match found.case {
            Case::Sensitive => "compared as written",
            Case::Insensitive => "compared ignoring case (`key_case: insensitive`)",
            Case::Citext => "compared ignoring case (citext)",
        };
        outcome = outcome
            .detail(Detail::fact("table", found.table.clone()))
            .detail(Detail::fact(key_label, case));
        if let Some(filter) = &self.filter {
            outcome = outcome.detail(Detail::fact("where", filter.clone()));
        }
        if count > 0 {
            let mut listed: Vec<String> = keys.iter().take(SHOWN_KEYS).cloned().collect();
            if count > SHOWN_KEYS {
                listed.push(format!(
                    "… and {} more (all in the output `keys`)",
                    count - SHOWN_KEYS
                ));
            }
            outcome = outcome.detail(Detail::block("staging-only keys", listed.join("\n")));
        }
        if found.null_keys > 0 {
            outcome = outcome.detail(Detail::fact(
                "rows with no key",
                format!(
                    "{} (a NULL in the key matches nothing; left out)",
                    found.null_keys
                ),
            ));
        }
        for included in &found.included {
            outcome = outcome.detail(Detail::fact(
                format!("included {}.{}", included.table, included.fk),
                format!(
                    "{} row{} pointing at them (→ {})",
                    included.rows,
                    if included.rows == 1 { "" } else { "s" },
                    included.references
                ),
            ));
        }
        outcome
    }
}
