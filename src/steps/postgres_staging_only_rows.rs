//! `postgres.staging-only-rows`: the rows of a staging table whose key
//! production does not have — the QA accounts a reset would drop — listed
//! by key before anything is written, with how many rows of other tables
//! point at them. It only reads (both sides in read-only transactions),
//! so its dry run and its run do the same; the report holds keys and
//! counts, never another column's value.
//!
//! With `preserve: true` the plan also checks the rows against production
//! (see [`crate::clone::carry::check`]), and the run reads them from
//! staging — before anything is written — into a temporary file it hands
//! to the `postgres.clone` of the same target, which inserts them into the
//! new database before its swap. Validation makes that clone need this
//! step.

use crate::clone::carry::{self, Checked, OnConflict};
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
    /// Rows of other tables pointing at a staging-only row: `{ table, fk }`,
    /// and `where` to pick a polymorphic table's rows (`taggable_type =
    /// 'User'`), whose `fk` then points at the kept table's primary key.
    pub include: Vec<Include>,
    /// Carry the rows (and the included ones) over into the clone of
    /// `target`; where `preserve: true` is written, when it is.
    pub preserve: Option<Span>,
    /// What a carried row whose unique value the clone already has does.
    pub on_conflict: OnConflict,
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
        let on_conflict = match with.get("on_conflict") {
            None => Some(OnConflict::Error),
            Some(node) => match cx.string(node, "`on_conflict`").as_deref() {
                Some("error") => Some(OnConflict::Error),
                Some("skip") => Some(OnConflict::Skip),
                Some("replace") => Some(OnConflict::Replace),
                Some(value) => {
                    cx.push(
                        Problem::new(
                            "flightpath::staging_only::on_conflict",
                            format!("unknown `on_conflict` `{value}`"),
                            node.span,
                            "not a choice",
                        )
                        .suggest(value, ["error", "skip", "replace"])
                        .help_if_none("use `error` (the default), `skip` or `replace`"),
                    );
                    None
                }
                None => None,
            },
        };
        let preserve = match with.get("preserve") {
            None => Some(None),
            Some(node) => cx
                .bool(node, "`preserve`")
                .map(|on| on.then_some(node.span)),
        };
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
            preserve: preserve?,
            on_conflict: on_conflict?,
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

    fn hands_off(&self) -> bool {
        self.preserve.is_some()
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        self.look(ctx, false).await
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        self.look(ctx, true).await
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
            .help(
                "write `include: [{ table: auth_user_groups, fk: user_id }]` (and `where:` for a \
                 polymorphic table: `{ table: taggings, fk: taggable_id, where: \"taggable_type = \
                 'User'\" }`)",
            ),
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
        let filter = map.string(cx, "where");
        map.finish(cx);
        match (table, fk) {
            (Some(table), Some(fk)) => out.push(Include { table, fk, filter }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

impl Params {
    /// Finds the staging-only rows; with `preserve`, checks them against
    /// production and, when `read`, reads them for the clone.
    async fn look(&self, ctx: &StepCtx, read: bool) -> Result<StepOutcome, StepError> {
        let source = connect(&self.source, ctx.postgres_url(&self.source), &ctx.cancel).await?;
        let target = connect(&self.target, ctx.postgres_url(&self.target), &ctx.cancel).await?;
        let lookup = Lookup {
            table: self.table.clone(),
            key: self.key.clone(),
            filter: self.filter.clone(),
            insensitive: self.insensitive,
            include: self.include.clone(),
        };
        let work = async {
            let found = staging_only::find(&source, &target, &lookup)
                .await
                .map_err(|e| StepError::failed(format!("`{}`: {e}", self.table)))?;
            if self.preserve.is_none() {
                return Ok::<_, StepError>((found, None, None));
            }
            let carrying = |e: carry::CarryError| {
                StepError::failed(format!(
                    "`{}`: cannot carry the staging-only rows over: {e}",
                    self.table
                ))
            };
            let checked = carry::check(&source, &target, &lookup, &found, self.on_conflict)
                .await
                .map_err(carrying)?;
            let carried = match read {
                true => Some(
                    carry::read(&target, &lookup, &found, &ctx.step_id, self.on_conflict)
                        .await
                        .map_err(carrying)?,
                ),
                false => None,
            };
            Ok((found, Some(checked), carried))
        };
        let (found, checked, carried) = tokio::select! {
            result = work => result?,
            () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        };
        let counts = carried.as_ref().map(|c| c.counts());
        if let Some(carried) = carried {
            ctx.handoffs.publish(&self.target, carried);
        }
        Ok(self.outcome(&found, checked.as_ref(), counts.as_deref(), read))
    }

    fn outcome(
        &self,
        found: &Found,
        checked: Option<&Checked>,
        read: Option<&[(String, u64)]>,
        run: bool,
    ) -> StepOutcome {
        let count = found.keys.len();
        let carried = match (checked, run) {
            (None, false) => "would carry over nothing".to_string(),
            (None, true) => "carried over nothing".to_string(),
            (Some(_), false) => {
                format!("would carry them over into the clone of `{}`", self.target)
            }
            (Some(_), true) => {
                format!("read them for the clone of `{}` to carry over", self.target)
            }
        };
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
            .output("carried", carried_output(read));
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
        if let Some(checked) = checked {
            outcome = self.carry_details(outcome, checked, run);
        }
        outcome
    }

    /// What the carry-over will do, keys and counts only.
    fn carry_details(&self, mut outcome: StepOutcome, checked: &Checked, run: bool) -> StepOutcome {
        let rows: Vec<String> = checked
            .rows
            .iter()
            .map(|(table, rows)| format!("{table} {rows}"))
            .collect();
        let verb = if run { "read for" } else { "to carry into" };
        outcome = outcome.detail(Detail::fact(
            format!("rows {verb} the clone"),
            format!(
                "{} (from staging: not anonymized, not counted in coverage)",
                rows.join(", ")
            ),
        ));
        if checked.renumbered > 0 {
            outcome = outcome.detail(Detail::fact(
                "new keys",
                format!(
                    "{} kept row{} use{} a primary key production also uses: {} a new one from the \
                     table's sequence, and the included rows follow",
                    checked.renumbered,
                    if checked.renumbered == 1 { "" } else { "s" },
                    if checked.renumbered == 1 { "s" } else { "" },
                    if checked.renumbered == 1 {
                        "it gets"
                    } else {
                        "each gets"
                    }
                ),
            ));
        }
        if !checked.conflicts.is_empty() {
            let what = match self.on_conflict {
                OnConflict::Skip => "left out (`on_conflict: skip`)",
                _ => "replace the clone's row (`on_conflict: replace`)",
            };
            let lines: Vec<String> = checked.conflicts.iter().map(|c| c.to_string()).collect();
            outcome = outcome.detail(Detail::block(
                format!("conflicts with production, {what}"),
                lines.join("\n"),
            ));
        }
        outcome
    }
}

/// The output `carried`: rows per table read for the clone (empty without
/// `preserve`, and in the plan).
fn carried_output(read: Option<&[(String, u64)]>) -> serde_json::Map<String, serde_json::Value> {
    read.unwrap_or_default()
        .iter()
        .map(|(table, rows)| (table.clone(), serde_json::Value::from(*rows)))
        .collect()
}
