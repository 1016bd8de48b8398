//! `git.merged-branches`: the runbook's first check — which branches are
//! merged into staging but not main (a reset drops them), and which were
//! merged into staging once and have moved on (stale). It only reads
//! history (after a fetch), so its dry run and its run do the same; with
//! `fail_on` either finding fails the step, in the plan already, before
//! anything destructive is confirmed.

use crate::git::{self, Merged, Query, RepoSpec, Status};
use crate::report::model::Detail;
use crate::syntax::diagnostics::Problem;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;
use crate::syntax::yaml::Span;

use super::{Facet, Kind, StepCtx, StepError, StepOutcome, TargetUse};

/// The findings `fail_on` may name.
const FAIL_ON: &[&str] = &["unmerged", "stale"];

#[derive(Debug, Clone)]
pub struct Params {
    /// The target whose `git:` repository is read.
    pub repo: String,
    pub repo_span: Span,
    /// The staging ref (`origin/staging`).
    pub staging: String,
    /// The main ref (`origin/main`).
    pub main: String,
    /// Overrides the target's `fetch` for a local path.
    pub fetch: Option<bool>,
    /// Glob filters on branch names; empty: all.
    pub branches: Vec<String>,
    /// Fail when a branch is on staging only.
    pub fail_on_unmerged: bool,
    /// Fail when a branch is stale on staging.
    pub fail_on_stale: bool,
}

impl Kind for Params {
    const NAME: &'static str = "git.merged-branches";
    const OUTPUTS: &'static [&'static str] = &["unmerged", "stale"];
    const DESTRUCTIVE: bool = false;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        // Read every key before giving up, so each one counts as known.
        let repo_node = with.require(cx, "repo");
        let repo = repo_node.and_then(|n| cx.string(n, "`repo`"));
        let staging = with.required_string(cx, "staging");
        let main = with.required_string(cx, "main");
        let fetch = with.bool(cx, "fetch");
        let branches = match with.string_list(cx, "branches") {
            Some(list) => Some(list.into_iter().map(|(b, _)| b).collect()),
            None => with.get("branches").is_none().then(Vec::new),
        };
        let fail_on = match with.get("fail_on") {
            None => Some(Vec::new()),
            Some(node) => cx.string_list(node, "`fail_on`").and_then(|items| {
                let mut ok = true;
                for (item, span) in &items {
                    if !FAIL_ON.contains(&item.as_str()) {
                        ok = false;
                        cx.push(
                            Problem::new(
                                "flightpath::git::fail_on",
                                format!("unknown `fail_on` finding `{item}`"),
                                *span,
                                "not a finding",
                            )
                            .suggest(item, FAIL_ON.iter().copied())
                            .help_if_none(
                                "use `unmerged`, `stale`, or both: `fail_on: [unmerged, stale]`",
                            ),
                        );
                    }
                }
                ok.then(|| items.into_iter().map(|(i, _)| i).collect::<Vec<_>>())
            }),
        };
        let fail_on = fail_on?;
        Some(Params {
            repo: repo?,
            repo_span: repo_node?.span,
            staging: staging?,
            main: main?,
            fetch,
            branches: branches?,
            fail_on_unmerged: fail_on.iter().any(|f| f == "unmerged"),
            fail_on_stale: fail_on.iter().any(|f| f == "stale"),
        })
    }

    fn templates(&self) -> Vec<&Template> {
        Vec::new()
    }

    fn target_uses(&self) -> Vec<TargetUse> {
        vec![TargetUse {
            name: self.repo.clone(),
            span: self.repo_span,
            write: false,
            facet: Facet::Git,
        }]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        self.look(ctx).await
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        self.look(ctx).await
    }
}

impl Params {
    async fn look(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let target = ctx.target(&self.repo);
        let spec = RepoSpec {
            target: self.repo.clone(),
            location: target.git.clone().unwrap_or_default(),
            fetch: self.fetch.unwrap_or(target.fetch),
            token_env: target.token_env.clone(),
        };
        let query = Query {
            staging: self.staging.clone(),
            main: self.main.clone(),
            branches: self.branches.clone(),
        };
        let workdir = ctx.workdir.clone();
        let cancel = ctx.cancel.clone();
        // libgit2 blocks; it runs off the async workers and polls `cancel`
        // while a fetch transfers objects.
        let found = tokio::task::spawn_blocking(move || {
            let opened = git::open(&spec, &workdir, &|| cancel.is_cancelled())?;
            let merged = git::merged_branches(&spec.target, &opened.repo, &query)?;
            Ok::<_, git::Error>((opened.fetched, merged))
        })
        .await
        .map_err(|e| StepError::failed(format!("the git check stopped: {e}")))?;
        let (fetched, merged) = found.map_err(|e| match e {
            git::Error::Cancelled => StepError::Cancelled,
            other => StepError::failed(other.to_string()),
        })?;
        self.outcome(&fetched, &merged)
    }

    fn outcome(&self, fetched: &[String], merged: &Merged) -> Result<StepOutcome, StepError> {
        let unmerged = merged.named(Status::StagingOnly);
        let stale = merged.named(Status::Stale);
        let mut details = vec![
            Detail::fact(
                "staging",
                format!("{} ({})", self.staging, short(&merged.staging)),
            ),
            Detail::fact("main", format!("{} ({})", self.main, short(&merged.main))),
        ];
        if !fetched.is_empty() {
            details.push(Detail::fact("fetched", fetched.join(", ")));
        }
        details.push(table(merged));
        let mut failures = Vec::new();
        if self.fail_on_unmerged && !unmerged.is_empty() {
            failures.push(format!(
                "{} on staging only, which a reset would drop: {}",
                count(unmerged.len()),
                unmerged.join(", ")
            ));
        }
        if self.fail_on_stale && !stale.is_empty() {
            failures.push(format!(
                "{} stale on staging (merged, then moved on): {}",
                count(stale.len()),
                stale.join(", ")
            ));
        }
        if !failures.is_empty() {
            return Err(StepError::Failed {
                message: format!(
                    "{}; merge them into `{}` first, or remove them from `fail_on` to only report them",
                    failures.join("; "),
                    self.main
                ),
                details,
            });
        }
        let on_staging = match unmerged.len() {
            0 => format!("none on `{}` only", self.staging),
            n => format!("{n} on `{}` only ({})", self.staging, unmerged.join(", ")),
        };
        let stale_part = match stale.len() {
            0 => "none stale".to_string(),
            n => format!("{n} stale ({})", stale.join(", ")),
        };
        let summary = format!(
            "{} looked at; {on_staging}, {stale_part}",
            count(merged.branches.len())
        );
        let mut outcome = StepOutcome::new(summary)
            .output("unmerged", unmerged)
            .output("stale", stale);
        outcome.details = details;
        Ok(outcome)
    }
}

/// The report table: branch, status, tip, last commit date, author,
/// commits ahead of main.
fn table(merged: &Merged) -> Detail {
    let rows = merged
        .branches
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.status.label().to_string(),
                short(&b.tip).to_string(),
                chrono::DateTime::from_timestamp(b.time, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
                b.author.clone(),
                b.ahead_of_main.to_string(),
            ]
        })
        .collect();
    Detail::Table {
        title: "branches".to_string(),
        columns: [
            "branch",
            "status",
            "tip",
            "last commit",
            "author",
            "ahead of main",
        ]
        .map(str::to_string)
        .to_vec(),
        rows,
    }
}

fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

fn count(n: usize) -> String {
    format!("{n} branch{}", if n == 1 { "" } else { "es" })
}
