//! `git.reset-branch`: the runbook's "reset staging to main, merge back
//! what still matters, push". `branch` becomes `to`, each `merge` branch is
//! merged back in with a merge commit (`--no-ff`) in the order given, and
//! the result is pushed with a lease: only if the remote's branch is still
//! at the commit the plan read.
//!
//! The plan fetches, builds the merges in memory (a conflict fails it,
//! naming the files) and lists the commits the reset drops and the
//! branches it re-merges; that list is what the confirmation shows. The
//! run builds the same commits for real, refuses if they would drop more
//! than the plan showed, and pushes. Nothing touches a working tree or
//! `HEAD`; the remote is untouched unless the push succeeds.

use crate::git::reset::{self, Reset, ResetQuery};
use crate::git::{self, RepoSpec};
use crate::report::model::Detail;
use crate::syntax::diagnostics::Problem;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;
use crate::syntax::yaml::Span;

use super::{Facet, Kind, StepCtx, StepError, StepOutcome, TargetUse};

#[derive(Debug, Clone)]
pub struct Params {
    /// The target whose `git:` repository holds the branch.
    pub repo: String,
    pub repo_span: Span,
    /// The branch to reset, by its name on the remote: `staging`.
    pub branch: String,
    /// What the branch becomes before the merges: `origin/main`. A branch
    /// name means the remote's branch first (`main` is `origin/main`),
    /// else it is read as git reads it (a local branch, a tag, a commit).
    pub to: String,
    /// Branches merged back in, a merge commit each (`--no-ff`), in this
    /// order; names are read as `to` is. One `to` already has is left out.
    pub merge: Vec<String>,
    /// `true` (the default): push the result to the remote's branch
    /// (`origin`), with a lease; the remote is always fetched first.
    /// `false`: move only the repository's own branch (a local path whose
    /// branch is not checked out); the remote is not touched.
    pub push: bool,
}

impl Kind for Params {
    const NAME: &'static str = "git.reset-branch";
    const OUTPUTS: &'static [&'static str] = &["dropped", "dropped_branches", "merged"];
    const DESTRUCTIVE: bool = true;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        // Read every key before giving up, so each one counts as known.
        let repo_node = with.require(cx, "repo");
        let repo = repo_node.and_then(|n| cx.string(n, "`repo`"));
        let branch_node = with.require(cx, "branch");
        let branch = branch_node.and_then(|n| cx.string(n, "`branch`"));
        let to = with.required_string(cx, "to");
        let merge = match with.string_list(cx, "merge") {
            Some(list) => Some(list.into_iter().map(|(b, _)| b).collect()),
            None => with.get("merge").is_none().then(Vec::new),
        };
        let push = with.bool(cx, "push").unwrap_or(true);
        let (branch, branch_node) = (branch?, branch_node?);
        if !plain_branch(&branch) {
            cx.push(
                Problem::new(
                    "flightpath::git::branch",
                    format!("`branch` `{branch}` is not a branch name"),
                    branch_node.span,
                    "not a branch name",
                )
                .help(
                    "write the branch's name on the remote, without `origin/` or \
                     `refs/heads/`: `branch: staging`",
                ),
            );
            return None;
        }
        Some(Params {
            repo: repo?,
            repo_span: repo_node?.span,
            branch,
            to: to?,
            merge: merge?,
            push,
        })
    }

    fn templates(&self) -> Vec<&Template> {
        Vec::new()
    }

    fn target_uses(&self) -> Vec<TargetUse> {
        vec![TargetUse {
            name: self.repo.clone(),
            span: self.repo_span,
            write: true,
            facet: Facet::Git,
        }]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let (spec, query) = self.spec(ctx)?;
        let workdir = ctx.workdir.clone();
        let cancel = ctx.cancel.clone();
        // libgit2 blocks; it runs off the async workers and polls `cancel`
        // while a fetch transfers objects.
        let found = tokio::task::spawn_blocking(move || {
            let opened = git::open(&spec, &workdir, &|| cancel.is_cancelled())?;
            if !query.push {
                reset::check_not_checked_out(&spec, &opened.repo, &query.branch)?;
            }
            // The in-memory objects of the plan go with `opened`.
            let reset = reset::plan(&spec.target, &opened.repo, &query)?;
            Ok::<_, git::Error>((opened.fetched, reset))
        })
        .await
        .map_err(|e| StepError::failed(format!("the git reset stopped: {e}")))?;
        let (fetched, reset) = found.map_err(step_error)?;
        // What the confirmation showed, so the run builds the same thing:
        // the lease, the dropped commits, and the commits it builds from.
        let kept = serde_json::json!({
            "old": reset.old,
            "dropped": reset.dropped.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            "inputs": inputs(&reset),
        });
        Ok(self.outcome(&reset, &fetched, true).for_run(kept))
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let (spec, query) = self.spec(ctx)?;
        let kept = ctx.planned.clone().ok_or_else(|| {
            StepError::failed("the reset has no plan to hold to; nothing was changed")
        })?;
        let lease = match kept["old"].as_str() {
            Some(hex) => Some(
                git2::Oid::from_str(hex)
                    .map_err(|e| StepError::failed(format!("the plan's commit id: {e}")))?,
            ),
            None => None,
        };
        let shown: Vec<String> = kept["dropped"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let planned_inputs = kept.get("inputs").cloned();
        let workdir = ctx.workdir.clone();
        let cancel = ctx.cancel.clone();
        let branch = self.branch.clone();
        let done = tokio::task::spawn_blocking(move || {
            let opened = git::open(&spec, &workdir, &|| cancel.is_cancelled())?;
            let reset = reset::build(&spec.target, &opened.repo, &query, lease)?;
            let unplanned: Vec<&reset::CommitLine> = reset
                .dropped
                .iter()
                .filter(|c| !shown.contains(&c.id))
                .collect();
            if !unplanned.is_empty() {
                return Ok(Err(unplanned_drop(&branch, &unplanned)));
            }
            let now = inputs(&reset);
            if planned_inputs
                .as_ref()
                .is_some_and(|planned| *planned != now)
            {
                return Ok(Err(moved_inputs(&branch, planned_inputs.as_ref(), &now)));
            }
            if cancel.is_cancelled() {
                return Err(git::Error::Cancelled);
            }
            let new = git2::Oid::from_str(&reset.new).map_err(|e| git::Error::Read {
                target: spec.target.clone(),
                message: e.message().to_string(),
            })?;
            if query.push {
                reset::push(&spec, &opened.repo, &query.branch, new, lease)?;
            } else {
                reset::move_branch(&spec, &opened.repo, &query.branch, new, lease)?;
            }
            Ok(Ok((opened.fetched, reset)))
        })
        .await
        .map_err(|e| StepError::failed(format!("the git reset stopped: {e}")))?;
        let (fetched, reset) = done.map_err(step_error)??;
        Ok(self.outcome(&reset, &fetched, false))
    }
}

impl Params {
    /// Where the repository is and what to do; a reset that pushes always
    /// fetches first, so it is planned against what the remote holds.
    fn spec(&self, ctx: &StepCtx) -> Result<(RepoSpec, ResetQuery), StepError> {
        let target = ctx.target(&self.repo);
        let location = target.git.clone().unwrap_or_default();
        if !self.push && git::is_url(&location) {
            return Err(StepError::failed(format!(
                "git target `{}`: `push: false` would move `{}` only in flightpath's own cache of \
                 the remote, which nothing reads; push the reset (`push: true`), or point the \
                 target at a local clone",
                self.repo, self.branch
            )));
        }
        let spec = RepoSpec {
            target: self.repo.clone(),
            location,
            fetch: self.push || target.fetch,
            token_env: target.token_env.clone(),
        };
        let query = ResetQuery {
            branch: self.branch.clone(),
            to: self.to.clone(),
            merge: self.merge.clone(),
            push: self.push,
        };
        Ok((spec, query))
    }

    fn outcome(&self, reset: &Reset, fetched: &[String], plan: bool) -> StepOutcome {
        let merged = reset.merged_names();
        let where_ = if self.push {
            format!("`{}` on {}", self.branch, reset::REMOTE)
        } else {
            format!("`{}` in the repository", self.branch)
        };
        let at = match &reset.old {
            Some(old) => short(old).to_string(),
            None => "absent".to_string(),
        };
        let lease = if self.push {
            if plan {
                "; the push is refused if it has moved by then"
            } else {
                "; pushed with a lease on it"
            }
        } else {
            ""
        };
        let mut details = vec![
            Detail::fact(
                "branch",
                match &reset.old {
                    Some(_) => format!("{where_}, at {at}{lease}"),
                    None => format!("{where_}, absent: it will be created{lease}"),
                },
            ),
            Detail::fact("to", format!("{} ({})", self.to, short(&reset.to))),
        ];
        if !fetched.is_empty() {
            details.push(Detail::fact("fetched", fetched.join(", ")));
        }
        details.push(dropped_table(reset));
        details.push(Detail::fact(
            "dropped branches",
            list_or_none(&reset.dropped_branches),
        ));
        if !reset.merged.is_empty() {
            details.push(merged_table(self, reset, plan));
        }
        if !plan {
            details.push(Detail::fact("new tip", short(&reset.new)));
        }
        let drops = match (reset.dropped.len(), reset.dropped_branches.is_empty()) {
            (0, _) => "no commits".to_string(),
            (n, true) => commits(n),
            (n, false) => format!("{} ({})", commits(n), reset.dropped_branches.join(", ")),
        };
        let remerge = merged.join(", ");
        let summary = match (plan, self.push) {
            (true, push) => format!(
                "would reset `{}` to {}, dropping {drops}{}{}",
                self.branch,
                self.to,
                if remerge.is_empty() {
                    String::new()
                } else {
                    format!(", re-merge {remerge}")
                },
                if push {
                    format!(", and push it (lease: {at})")
                } else {
                    " (the repository's branch only)".to_string()
                }
            ),
            (false, push) => format!(
                "reset `{}` to {}: dropped {drops}{}; {}",
                self.branch,
                self.to,
                if remerge.is_empty() {
                    String::new()
                } else {
                    format!(", re-merged {remerge}")
                },
                if push {
                    format!("pushed {}", short(&reset.new))
                } else {
                    format!("moved the repository's branch to {}", short(&reset.new))
                }
            ),
        };
        let mut outcome = StepOutcome::new(summary)
            .output(
                "dropped",
                reset
                    .dropped
                    .iter()
                    .map(|c| c.id.clone())
                    .collect::<Vec<_>>(),
            )
            .output("dropped_branches", reset.dropped_branches.clone())
            .output("merged", merged);
        outcome.details = details;
        outcome
    }
}

/// Whether `name` is a branch's own name (`staging`, `release/2`), not a
/// remote-tracking or full ref name.
fn plain_branch(name: &str) -> bool {
    !name.starts_with("refs/")
        && !name.starts_with(&format!("{}/", reset::REMOTE))
        && git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
}

/// The commits the reset drops: short id, subject, author (no e-mail).
fn dropped_table(reset: &Reset) -> Detail {
    Detail::Table {
        title: "dropped commits".to_string(),
        columns: ["commit", "subject", "author"].map(str::to_string).to_vec(),
        rows: reset
            .dropped
            .iter()
            .map(|c| {
                vec![
                    short(&c.id).to_string(),
                    c.subject.clone(),
                    c.author.clone(),
                ]
            })
            .collect(),
    }
}

/// The branches merged back in, in order.
fn merged_table(params: &Params, reset: &Reset, plan: bool) -> Detail {
    Detail::Table {
        title: "re-merged".to_string(),
        columns: ["branch", "tip", "commits", "merge"]
            .map(str::to_string)
            .to_vec(),
        rows: reset
            .merged
            .iter()
            .map(|m| {
                let merge = match (m.already_in, plan) {
                    (true, _) => format!("none: {} has it", params.to),
                    (false, true) => "would merge (--no-ff)".to_string(),
                    (false, false) => "merged (--no-ff)".to_string(),
                };
                vec![
                    m.name.clone(),
                    short(&m.tip).to_string(),
                    m.ahead.to_string(),
                    merge,
                ]
            })
            .collect(),
    }
}

/// Refuses a run whose reset would drop commits its plan did not list.
fn unplanned_drop(branch: &str, unplanned: &[&reset::CommitLine]) -> StepError {
    let listed: Vec<String> = unplanned
        .iter()
        .map(|c| format!("{} {}", short(&c.id), c.subject))
        .collect();
    StepError::Refused(format!(
        "the reset of `{branch}` would now drop {} the plan did not show ({}): a branch it \
         builds on moved since the plan; nothing was pushed. Run again to see the new plan",
        commits(unplanned.len()),
        listed.join("; ")
    ))
}

/// The commits a reset is built from: `to`, and each branch it merges
/// back (with its tip).
fn inputs(reset: &reset::Reset) -> serde_json::Value {
    serde_json::json!({
        "to": reset.to,
        "merged": reset
            .merged
            .iter()
            .map(|m| serde_json::json!([m.name, m.tip]))
            .collect::<Vec<_>>(),
    })
}

fn moved_inputs(
    branch: &str,
    planned: Option<&serde_json::Value>,
    now: &serde_json::Value,
) -> StepError {
    let shown = |v: Option<&serde_json::Value>| v.map_or("?".to_string(), |v| v.to_string());
    StepError::Refused(format!(
        "the reset of `{branch}` would now be built from other commits than the plan showed \
         (planned {}, now {}): `to` or a branch to merge moved since the plan; nothing was \
         pushed. Run again to see the new plan",
        shown(planned),
        shown(Some(now))
    ))
}

fn step_error(e: git::Error) -> StepError {
    match e {
        git::Error::Cancelled => StepError::Cancelled,
        e @ git::Error::LeaseMoved { .. } => StepError::Refused(e.to_string()),
        other => StepError::failed(other.to_string()),
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

fn commits(n: usize) -> String {
    format!("{n} commit{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_is_named_as_on_the_remote() {
        assert!(plain_branch("staging"));
        assert!(plain_branch("release/2.1"));
        assert!(!plain_branch("origin/staging"));
        assert!(!plain_branch("refs/heads/staging"));
        assert!(!plain_branch("stag ing"));
        assert!(!plain_branch("staging.."));
        assert!(!plain_branch(""));
    }
}
