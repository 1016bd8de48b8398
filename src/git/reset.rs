//! Resetting a branch — the runbook's "reset staging to main, then merge
//! back what still matters": `branch` becomes `to`, and each `merge` branch
//! is merged back in with a merge commit (`--no-ff`), in the order given.
//!
//! The commits are built without a working tree: `merge_commits` gives an
//! index in memory, its tree is written to the object database, and a
//! commit is made on it. A plan builds them into an in-memory object store
//! that is dropped with the repository handle, so planning writes nothing.
//! Only at the very end is a ref moved: the remote's branch, by a push with
//! a lease, or the repository's own branch. A working tree, an index on
//! disk and `HEAD` are never touched.
//!
//! libgit2 has no `--force-with-lease`: the push negotiation callback sees
//! the commit the remote's branch is at and cancels the push unless it is
//! still the one the plan read. libgit2 also reports a ref the server
//! refused as a successful push; the push-update-reference callback is
//! what tells, and it is checked.

use std::cell::RefCell;

use git2::{ErrorCode, Oid, PushOptions, RemoteCallbacks, Repository, Signature, Sort};

use super::Error;
use super::merged::{Query, Status, merged_branches};
use super::repo::{Credentials, RepoSpec, token};

/// The remote a reset reads and pushes to.
pub const REMOTE: &str = "origin";

/// What to reset, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetQuery {
    /// The branch, by its name on the remote (`staging`).
    pub branch: String,
    /// What it becomes before the merges (`origin/main`, `main`).
    pub to: String,
    /// Branches merged back in, in this order.
    pub merge: Vec<String>,
    /// Push the result to the remote's branch; `false` moves the
    /// repository's own branch instead.
    pub push: bool,
}

/// A commit as a report shows it: never an e-mail address.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitLine {
    /// Full hex id.
    pub id: String,
    /// The first line of the message.
    pub subject: String,
    /// The author's name.
    pub author: String,
}

/// One branch merged back in.
#[derive(Debug, Clone, PartialEq)]
pub struct Remerge {
    /// As written in `merge:`.
    pub name: String,
    /// Its tip (full hex).
    pub tip: String,
    /// Commits it brings that `to` lacks.
    pub ahead: usize,
    /// `to` (or an earlier merge) has it already: no merge commit is made.
    pub already_in: bool,
}

/// A reset worked out: where the branch is, what it becomes, what it loses.
#[derive(Debug, Clone, PartialEq)]
pub struct Reset {
    /// The branch's commit as read (`None`: it does not exist yet). Read
    /// at plan time, it is the lease.
    pub old: Option<String>,
    /// The commit `to` names.
    pub to: String,
    /// The branch's new tip.
    pub new: String,
    pub merged: Vec<Remerge>,
    /// Commits the branch has now and will not have after, newest first.
    pub dropped: Vec<CommitLine>,
    /// The branches with work among the dropped commits: merged into the
    /// branch and not into `to`, or merged once and moved on since (names
    /// on the remote when pushing: `feature/x`).
    pub dropped_branches: Vec<String>,
}

impl Reset {
    /// The branches merged back in (not those `to` already had).
    pub fn merged_names(&self) -> Vec<String> {
        self.merged
            .iter()
            .filter(|m| !m.already_in)
            .map(|m| m.name.clone())
            .collect()
    }
}

/// Works out a reset without writing anything, from where the branch is
/// now: the commits are built into an in-memory object store added to
/// this repository handle, which must be dropped afterwards (its objects
/// go with it).
pub fn plan(target: &str, repo: &Repository, query: &ResetQuery) -> Result<Reset, Error> {
    let odb = repo.odb().map_err(read(target))?;
    // Writes go to the backend of highest priority: this one. It lives as
    // long as the repository's object database, i.e. the handle.
    odb.add_new_mempack_backend(1000).map_err(read(target))?;
    let old = branch_tip(target, repo, query)?;
    work_out(target, repo, query, old)
}

/// Works out a reset for real, from `old` (the commit the plan read: what
/// is dropped is measured against what was shown): the new commits are
/// written to the object database, unreferenced until a ref moves to them.
pub fn build(
    target: &str,
    repo: &Repository,
    query: &ResetQuery,
    old: Option<Oid>,
) -> Result<Reset, Error> {
    work_out(target, repo, query, old)
}

fn work_out(
    target: &str,
    repo: &Repository,
    query: &ResetQuery,
    old: Option<Oid>,
) -> Result<Reset, Error> {
    let to = resolve(target, repo, &query.to)?;
    let mut merges = Vec::with_capacity(query.merge.len());
    for name in &query.merge {
        merges.push((name.clone(), resolve(target, repo, name)?));
    }
    let (new, merged) = merge_all(target, repo, query, to, &merges)?;
    let (dropped, dropped_branches) = match old {
        Some(old) => (
            dropped(repo, old, new).map_err(read(target))?,
            dropped_branches(target, repo, query, old, to)?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(Reset {
        old: old.map(|o| o.to_string()),
        to: to.to_string(),
        new: new.to_string(),
        merged,
        dropped,
        dropped_branches,
    })
}

/// The branch's commit now: the remote's (its remote-tracking ref, as
/// fetched) when pushing, else the repository's own branch.
fn branch_tip(target: &str, repo: &Repository, query: &ResetQuery) -> Result<Option<Oid>, Error> {
    let name = if query.push {
        format!("refs/remotes/{REMOTE}/{}", query.branch)
    } else {
        format!("refs/heads/{}", query.branch)
    };
    match repo.find_reference(&name) {
        Ok(reference) => Ok(Some(reference.peel_to_commit().map_err(read(target))?.id())),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(read(target)(e)),
    }
}

/// A commit by name: the remote's branch of that name first (`main` is
/// `origin/main`, what a push is based on), else as git reads it (a
/// remote-tracking or local branch, a tag, a commit id).
fn resolve(target: &str, repo: &Repository, name: &str) -> Result<Oid, Error> {
    let remote = format!("refs/remotes/{REMOTE}/{name}");
    if let Ok(commit) = repo
        .find_reference(&remote)
        .and_then(|r| r.peel_to_commit())
    {
        return Ok(commit.id());
    }
    if let Ok(commit) = repo
        .revparse_single(name)
        .and_then(|object| object.peel_to_commit())
    {
        return Ok(commit.id());
    }
    let names: Vec<String> = repo
        .branches(None)
        .map(|branches| {
            branches
                .filter_map(|b| b.ok())
                .filter_map(|(b, _)| b.get().shorthand().ok().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let hint = crate::syntax::diagnostics::did_you_mean(name, names.iter().map(String::as_str))
        .map(|close| format!(" (did you mean `{close}`?)"))
        .unwrap_or_default();
    Err(Error::UnknownRef {
        target: target.to_string(),
        name: name.to_string(),
        hint,
    })
}

/// `to`, then a merge commit for each branch in order (one `to` already
/// has is left out). The first conflict stops it, naming the files.
fn merge_all(
    target: &str,
    repo: &Repository,
    query: &ResetQuery,
    to: Oid,
    merges: &[(String, Oid)],
) -> Result<(Oid, Vec<Remerge>), Error> {
    let read = read(target);
    let signature = repo
        .signature()
        .or_else(|_| Signature::now("flightpath", "flightpath@localhost"))
        .map_err(&read)?;
    let mut tip = to;
    let mut merged = Vec::with_capacity(merges.len());
    for (name, theirs) in merges {
        let (ahead, _) = repo.graph_ahead_behind(*theirs, to).map_err(&read)?;
        let already_in = *theirs == tip || repo.graph_descendant_of(tip, *theirs).map_err(&read)?;
        merged.push(Remerge {
            name: name.clone(),
            tip: theirs.to_string(),
            ahead,
            already_in,
        });
        if already_in {
            continue;
        }
        let ours = repo.find_commit(tip).map_err(&read)?;
        let their_commit = repo.find_commit(*theirs).map_err(&read)?;
        let mut index = repo
            .merge_commits(&ours, &their_commit, None)
            .map_err(&read)?;
        if index.has_conflicts() {
            return Err(Error::MergeConflict {
                target: target.to_string(),
                branch: name.clone(),
                into: query.branch.clone(),
                paths: conflicting_paths(&index).map_err(&read)?,
            });
        }
        let tree = index.write_tree_to(repo).map_err(&read)?;
        let tree = repo.find_tree(tree).map_err(&read)?;
        let message = format!("Merge branch '{name}' into {}", query.branch);
        tip = repo
            .commit(
                None,
                &signature,
                &signature,
                &message,
                &tree,
                &[&ours, &their_commit],
            )
            .map_err(&read)?;
    }
    Ok((tip, merged))
}

/// The paths of an index's conflicts, sorted, each once.
fn conflicting_paths(index: &git2::Index) -> Result<Vec<String>, git2::Error> {
    let mut paths = Vec::new();
    for conflict in index.conflicts()? {
        let conflict = conflict?;
        let entry = conflict.our.or(conflict.their).or(conflict.ancestor);
        if let Some(entry) = entry {
            paths.push(String::from_utf8_lossy(&entry.path).into_owned());
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// Commits reachable from `old` and not from `new`, newest first.
fn dropped(repo: &Repository, old: Oid, new: Oid) -> Result<Vec<CommitLine>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)?;
    walk.push(old)?;
    walk.hide(new)?;
    let mut out = Vec::new();
    for id in walk {
        let commit = repo.find_commit(id?)?;
        out.push(CommitLine {
            id: commit.id().to_string(),
            subject: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default())
                .into_owned(),
            author: commit.author().name().unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

/// The branches whose work the reset takes off the branch (see
/// [`Reset::dropped_branches`]): the remote's when pushing, else the
/// repository's own.
fn dropped_branches(
    target: &str,
    repo: &Repository,
    query: &ResetQuery,
    old: Oid,
    to: Oid,
) -> Result<Vec<String>, Error> {
    let found = merged_branches(
        target,
        repo,
        &Query {
            staging: old.to_string(),
            main: to.to_string(),
            branches: Vec::new(),
        },
    )?;
    let prefix = format!("{REMOTE}/");
    Ok(found
        .branches
        .iter()
        .filter(|b| matches!(b.status, Status::StagingOnly | Status::Stale))
        .filter_map(|b| {
            if query.push {
                b.name.strip_prefix(&prefix).map(str::to_string)
            } else {
                (!b.remote).then(|| b.name.clone())
            }
        })
        .filter(|name| *name != query.branch)
        .collect())
}

/// Pushes `new` to the remote's branch (`+new:refs/heads/<branch>`) if,
/// and only if, the remote's branch is still at `lease` (`None`: it must
/// not exist). On success the remote-tracking ref follows, as after
/// `git push`.
pub fn push(
    spec: &RepoSpec,
    repo: &Repository,
    branch: &str,
    new: Oid,
    lease: Option<Oid>,
) -> Result<(), Error> {
    let mut remote = repo.find_remote(REMOTE).map_err(|e| Error::Read {
        target: spec.target.clone(),
        message: format!("no remote `{REMOTE}` to push to ({})", e.message()),
    })?;
    let url = remote.url().unwrap_or_default().to_string();
    // libgit2 pushes to `pushurl` when the remote has one.
    let push_url = remote.pushurl().ok().flatten().unwrap_or(&url).to_string();
    let token = token(spec, &push_url)?;
    let refname = format!("refs/heads/{branch}");
    let expected = lease.unwrap_or(Oid::ZERO_SHA1);
    let credentials = Credentials::new(spec, token.as_deref(), "push to");
    // Set by the negotiation callback: where the remote's branch is, when
    // that is not the lease.
    let moved: RefCell<Option<Oid>> = RefCell::new(None);
    // Set by the update callback: why the server refused the ref.
    let refused: RefCell<Option<String>> = RefCell::new(None);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|asking, username, allowed| credentials.offer(asking, username, allowed));
    callbacks.push_negotiation(|updates| {
        for update in updates {
            if update.dst_refname().ok() == Some(refname.as_str()) && update.src() != expected {
                *moved.borrow_mut() = Some(update.src());
                return Err(git2::Error::from_str(
                    "the remote's branch is not at the commit the plan read",
                ));
            }
        }
        Ok(())
    });
    callbacks.push_update_reference(|name, status| {
        if let Some(why) = status
            && name == refname
        {
            refused.borrow_mut().get_or_insert_with(|| why.to_string());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    let result = remote.push(&[format!("+{new}:{refname}")], Some(&mut options));
    drop(options);
    if let Some(found) = moved.into_inner() {
        return Err(Error::LeaseMoved {
            target: spec.target.clone(),
            branch: branch.to_string(),
            expected: lease.map(short).unwrap_or_else(|| "absent".to_string()),
            found: if found.is_zero() {
                "deleted".to_string()
            } else {
                format!("at {}", short(found))
            },
        });
    }
    if let Err(e) = result {
        return Err(match credentials.refused() {
            Some(why) => Error::Credentials {
                target: spec.target.clone(),
                url,
                why,
            },
            None => Error::Push {
                target: spec.target.clone(),
                url,
                message: e.message().to_string(),
            },
        });
    }
    if let Some(why) = refused.into_inner() {
        return Err(Error::PushRefused {
            target: spec.target.clone(),
            url,
            branch: branch.to_string(),
            why,
        });
    }
    repo.reference(
        &format!("refs/remotes/{REMOTE}/{branch}"),
        new,
        true,
        "flightpath: reset pushed",
    )
    .map_err(read(&spec.target))?;
    Ok(())
}

/// Moves the repository's own branch to `new` if it is still at `lease`
/// (`None`: it must not exist). Refused while the branch is checked out
/// there: its working tree would be left behind.
pub fn move_branch(
    spec: &RepoSpec,
    repo: &Repository,
    branch: &str,
    new: Oid,
    lease: Option<Oid>,
) -> Result<(), Error> {
    check_not_checked_out(spec, repo, branch)?;
    let refname = format!("refs/heads/{branch}");
    let message = "flightpath: reset";
    let result = match lease {
        Some(old) => repo.reference_matching(&refname, new, true, old, message),
        None => repo.reference(&refname, new, false, message),
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::Exists) => {
            let found = repo
                .refname_to_id(&refname)
                .map(|id| format!("at {}", short(id)))
                .unwrap_or_else(|_| "deleted".to_string());
            Err(Error::LeaseMoved {
                target: spec.target.clone(),
                branch: branch.to_string(),
                expected: lease.map(short).unwrap_or_else(|| "absent".to_string()),
                found,
            })
        }
        Err(e) => Err(read(&spec.target)(e)),
    }
}

/// Refuses a branch that is `HEAD` of a repository with a working tree.
pub fn check_not_checked_out(
    spec: &RepoSpec,
    repo: &Repository,
    branch: &str,
) -> Result<(), Error> {
    if repo.is_bare() {
        return Ok(());
    }
    let refname = format!("refs/heads/{branch}");
    let on_branch = |repo: &Repository| {
        repo.find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_string))
            .as_deref()
            == Some(refname.as_str())
    };
    // This checkout, and every linked worktree (`git worktree add`).
    let mut linked = false;
    if let Ok(names) = repo.worktrees() {
        for name in names.iter().flatten().flatten() {
            let checkout = repo
                .find_worktree(name)
                .and_then(|worktree| Repository::open_from_worktree(&worktree));
            linked |= checkout.is_ok_and(|checkout| on_branch(&checkout));
        }
    }
    if on_branch(repo) || linked {
        return Err(Error::CheckedOut {
            target: spec.target.clone(),
            location: spec.location.clone(),
            branch: branch.to_string(),
        });
    }
    Ok(())
}

/// The first seven hex digits of a commit id.
pub fn short(id: Oid) -> String {
    id.to_string()[..7].to_string()
}

fn read(target: &str) -> impl Fn(git2::Error) -> Error + '_ {
    move |e| Error::Read {
        target: target.to_string(),
        message: e.message().to_string(),
    }
}
