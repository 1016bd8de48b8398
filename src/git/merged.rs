//! Which branches are merged into staging and into main — the runbook's
//! `git branch -a --merged origin/staging` against `--merged origin/main`,
//! diffed — and which were merged into staging once and moved on since.
//!
//! A branch is merged into X when its tip is X or an ancestor of X.
//! libgit2's `graph_descendant_of` does not count a commit as its own
//! descendant, so a tip equal to X is checked first.

use git2::{BranchType, Oid, Repository};

use super::Error;

/// What to look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The staging ref: `origin/staging`, `staging`, a commit.
    pub staging: String,
    /// The main ref: `origin/main`.
    pub main: String,
    /// Glob filters on branch names (`feature/*`, `origin/*`); empty: every
    /// local and remote-tracking branch but the two refs and `HEAD`.
    pub branches: Vec<String>,
}

/// Where a branch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Merged into staging, not into main: what a reset would drop.
    StagingOnly,
    /// Merged into staging at an older commit, with commits since.
    Stale,
    /// Merged into both.
    Both,
    /// Merged into main but not (yet) into staging.
    MainOnly,
    /// Merged into neither.
    Neither,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::StagingOnly => "on staging only",
            Status::Stale => "stale on staging",
            Status::Both => "in both",
            Status::MainOnly => "on main only",
            Status::Neither => "in neither",
        }
    }
}

/// One branch and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// `feature/x` for a local branch, `origin/feature/x` for a
    /// remote-tracking one.
    pub name: String,
    pub remote: bool,
    pub status: Status,
    /// The tip's commit id (full hex).
    pub tip: String,
    /// The tip's commit time, seconds since the epoch.
    pub time: i64,
    /// The tip's author name (never the e-mail address).
    pub author: String,
    /// Commits on the branch that main does not have.
    pub ahead_of_main: usize,
}

/// The answer: the two commits compared and every branch, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub staging: String,
    pub main: String,
    pub branches: Vec<Branch>,
}

impl Merged {
    /// Names of the branches with this status.
    pub fn named(&self, status: Status) -> Vec<String> {
        self.branches
            .iter()
            .filter(|b| b.status == status)
            .map(|b| b.name.clone())
            .collect()
    }
}

/// Classifies every branch of `repo` (see [`Query`]) against staging and
/// main.
pub fn merged_branches(target: &str, repo: &Repository, query: &Query) -> Result<Merged, Error> {
    let read = |e: git2::Error| Error::Read {
        target: target.to_string(),
        message: e.message().to_string(),
    };
    let all = branches(repo).map_err(read)?;
    let (staging, staging_ref) = resolve(target, repo, &query.staging, &all)?;
    let (main, main_ref) = resolve(target, repo, &query.main, &all)?;
    let mut out = Vec::new();
    for (name, full, remote, tip) in &all {
        let excluded = Some(full) == staging_ref.as_ref()
            || Some(full) == main_ref.as_ref()
            || name.ends_with("/HEAD")
            || name == "HEAD";
        let wanted = query.branches.is_empty()
            || query
                .branches
                .iter()
                .any(|glob| crate::anonymize::rules::glob_match(glob, name));
        if excluded || !wanted {
            continue;
        }
        let status = classify(repo, *tip, staging, main).map_err(read)?;
        let commit = repo.find_commit(*tip).map_err(read)?;
        let (ahead_of_main, _) = repo.graph_ahead_behind(*tip, main).map_err(read)?;
        out.push(Branch {
            name: name.clone(),
            remote: *remote,
            status,
            tip: tip.to_string(),
            time: commit.time().seconds(),
            author: commit.author().name().unwrap_or("").to_string(),
            ahead_of_main,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Merged {
        staging: staging.to_string(),
        main: main.to_string(),
        branches: out,
    })
}

/// Whether `tip` is `into` or an ancestor of it.
fn merged_into(repo: &Repository, tip: Oid, into: Oid) -> Result<bool, git2::Error> {
    Ok(tip == into || repo.graph_descendant_of(into, tip)?)
}

fn classify(repo: &Repository, tip: Oid, staging: Oid, main: Oid) -> Result<Status, git2::Error> {
    let in_staging = merged_into(repo, tip, staging)?;
    let in_main = merged_into(repo, tip, main)?;
    Ok(match (in_staging, in_main) {
        (true, true) => Status::Both,
        (true, false) => Status::StagingOnly,
        (false, true) => Status::MainOnly,
        (false, false) if merged_once(repo, tip, staging, main)? => Status::Stale,
        (false, false) => Status::Neither,
    })
}

/// Whether an earlier commit of the branch, one main does not have, is in
/// staging: some best common ancestor of the tip and staging is not merged
/// into main (when every one of them is, so is everything they share).
fn merged_once(repo: &Repository, tip: Oid, staging: Oid, main: Oid) -> Result<bool, git2::Error> {
    let bases = match repo.merge_bases(tip, staging) {
        Ok(bases) => bases,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for base in bases.iter() {
        if !merged_into(repo, *base, main)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every branch: (shown name, full ref name, remote-tracking?, tip).
/// Symbolic refs (`origin/HEAD`) and refs not pointing at a commit are
/// left out.
fn branches(repo: &Repository) -> Result<Vec<(String, String, bool, Oid)>, git2::Error> {
    let mut out = Vec::new();
    for item in repo.branches(None)? {
        let (branch, kind) = item?;
        let reference = branch.get();
        if reference.symbolic_target().ok().flatten().is_some() {
            continue;
        }
        let (Ok(name), Ok(full)) = (reference.shorthand(), reference.name()) else {
            continue;
        };
        let Ok(commit) = reference.peel_to_commit() else {
            continue;
        };
        out.push((
            name.to_string(),
            full.to_string(),
            kind == BranchType::Remote,
            commit.id(),
        ));
    }
    Ok(out)
}

/// The commit a ref names, and its full ref name when it is a branch.
fn resolve(
    target: &str,
    repo: &Repository,
    name: &str,
    all: &[(String, String, bool, Oid)],
) -> Result<(Oid, Option<String>), Error> {
    let unknown = || {
        let hint = crate::syntax::diagnostics::did_you_mean(
            name,
            all.iter().map(|(shown, ..)| shown.as_str()),
        )
        .map(|close| format!(" (did you mean `{close}`?)"))
        .unwrap_or_default();
        Error::UnknownRef {
            target: target.to_string(),
            name: name.to_string(),
            hint,
        }
    };
    let object = repo.revparse_single(name).map_err(|_| unknown())?;
    let commit = object.peel_to_commit().map_err(|_| unknown())?;
    let full = repo
        .resolve_reference_from_short_name(name)
        .ok()
        .and_then(|r| r.name().ok().map(str::to_string));
    Ok((commit.id(), full))
}
