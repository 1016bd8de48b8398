//! The demo's git repository: a bare `origin.git` and `app/`, a clone of
//! it, with the branches the runbook's first check is about:
//!
//! - `feature/login-fix`: merged into main and staging;
//! - `feature/search`: merged into staging only (the reset drops it);
//! - `feature/banner`: merged into staging once, with a commit since (stale
//!   there; the reset merges it back in, it still matters);
//! - `staging`: main, then merges of `feature/search` and `feature/banner`.
//!
//! Each commit adds one file of its own, so every merge is clean. The
//! author is made up.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Signature, Time};

/// Creates `origin.git` and its clone `app` under `dir`; returns the
/// clone's path.
pub fn create(dir: &Path) -> Result<PathBuf, git2::Error> {
    let origin = dir.join("origin.git");
    let bare = Repository::init_bare(&origin)?;
    bare.set_head("refs/heads/main")?;
    let seed = Repository::init_bare(dir.join("seed.git"))?;
    let history = History { repo: &seed };
    let m0 = history.commit("main", &[], "Initial site", "README.md", 0)?;
    let fix = history.commit(
        "feature/login-fix",
        &[m0],
        "Fix the login redirect",
        "login.py",
        1,
    )?;
    let m1 = history.commit(
        "main",
        &[m0, fix],
        "Merge branch 'feature/login-fix'",
        "",
        2,
    )?;
    let search = history.commit("feature/search", &[m1], "Add site search", "search.py", 3)?;
    let banner = history.commit(
        "feature/banner",
        &[m1],
        "Add a cookie banner",
        "banner.js",
        4,
    )?;
    let s1 = history.commit(
        "staging",
        &[m1, search],
        "Merge branch 'feature/search' into staging",
        "",
        5,
    )?;
    history.commit(
        "staging",
        &[s1, banner],
        "Merge branch 'feature/banner' into staging",
        "",
        6,
    )?;
    history.commit(
        "feature/banner",
        &[banner],
        "Banner: remember the choice",
        "banner.css",
        7,
    )?;

    let specs: Vec<String> = [
        "main",
        "staging",
        "feature/login-fix",
        "feature/search",
        "feature/banner",
    ]
    .iter()
    .map(|b| format!("+refs/heads/{b}:refs/heads/{b}"))
    .collect();
    seed.remote_anonymous(&origin.display().to_string())?
        .push(&specs, None)?;
    drop(seed);
    let _ = std::fs::remove_dir_all(dir.join("seed.git"));

    let app = dir.join("app");
    git2::build::RepoBuilder::new().clone(&format!("file://{}", origin.display()), &app)?;
    Ok(app)
}

/// Commits in the seed repository, at fixed times an hour apart.
struct History<'r> {
    repo: &'r Repository,
}

impl History<'_> {
    /// A commit on `branch` with `parents`; `file` (when not empty) is added
    /// to the first parent's tree.
    fn commit(
        &self,
        branch: &str,
        parents: &[Oid],
        message: &str,
        file: &str,
        hour: i64,
    ) -> Result<Oid, git2::Error> {
        let parents: Vec<git2::Commit> = parents
            .iter()
            .map(|p| self.repo.find_commit(*p))
            .collect::<Result<_, _>>()?;
        let base = match parents.first() {
            Some(first) => Some(first.tree()?),
            None => None,
        };
        let mut tree = self.repo.treebuilder(base.as_ref())?;
        // A merge takes every parent's files.
        for parent in parents.iter().skip(1) {
            for entry in parent.tree()?.iter() {
                if let Ok(name) = entry.name() {
                    tree.insert(name, entry.id(), entry.filemode())?;
                }
            }
        }
        if !file.is_empty() {
            let blob = self.repo.blob(format!("{message}\n").as_bytes())?;
            tree.insert(file, blob, 0o100644)?;
        }
        let tree = self.repo.find_tree(tree.write()?)?;
        let who = Signature::new(
            "Dana Dunmore",
            "dana@example.com",
            &Time::new(1_767_261_600 + hour * 3600, 0),
        )?;
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        let id = self
            .repo
            .commit(None, &who, &who, message, &tree, &parents)?;
        self.repo
            .reference(&format!("refs/heads/{branch}"), id, true, message)?;
        Ok(id)
    }
}
