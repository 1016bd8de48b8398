//! `git.reset-branch` through the real binary, against the history of
//! `tests/git.rs` (a bare origin, a seed that made it, clones): staging
//! reset to main and branches merged back with merge commits, in order;
//! the push refused when another clone pushed between plan and run; a ref
//! the server refuses (a real `git daemon` with
//! `receive.denyNonFastForwards`) reported as a failure; a merge conflict
//! that names the files and leaves the remote alone; the dry run's whole
//! output; `push: false`; a protected target.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use git2::{Oid, Repository, Signature, Time};
use serde_json::json;

use crate::git::{Repos, build, clone, commit};
use crate::support::cli::{Test, step};
use crate::support::snapshot::{masks, streams};

fn reset_workflow(git: &str, with: &str) -> String {
    format!(
        "name: reset\n\
         targets:\n  repo:\n    git: \"{git}\"\n\
         steps:\n  reset:\n    uses: git.reset-branch\n    with: {{ repo: repo, branch: staging, to: main{with} }}\n"
    )
}

fn tip(repo: &Repository, refname: &str) -> Oid {
    repo.find_reference(refname)
        .unwrap_or_else(|e| panic!("{refname}: {e}"))
        .peel_to_commit()
        .unwrap()
        .id()
}

fn origin_staging(repos: &Repos) -> Oid {
    tip(
        &Repository::open_bare(&repos.origin).unwrap(),
        "refs/heads/staging",
    )
}

fn seed_tip(repos: &Repos, branch: &str) -> Oid {
    tip(&repos.seed, &format!("refs/heads/{branch}"))
}

/// A commit holding one file `path` with `content`, on `refname`.
fn commit_file(repo: &Repository, refname: &str, parent: Oid, path: &str, content: &str) -> Oid {
    let blob = repo.blob(content.as_bytes()).unwrap();
    let mut tree = repo.treebuilder(None).unwrap();
    tree.insert(path, blob, 0o100644).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let who = Signature::new(
        "Ada Dev",
        "ada@example.invalid",
        &Time::new(1_700_002_000, 0),
    )
    .unwrap();
    let parent = repo.find_commit(parent).unwrap();
    let id = repo
        .commit(None, &who, &who, refname, &tree, &[&parent])
        .unwrap();
    repo.reference(refname, id, true, "test").unwrap();
    id
}

fn loose_objects(git_dir: &Path) -> usize {
    let mut count = 0;
    for dir in std::fs::read_dir(git_dir.join("objects")).unwrap() {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        if name.len() == 2 {
            count += std::fs::read_dir(&dir).unwrap().count();
        }
    }
    count
}

#[test]
fn staging_is_reset_to_main_and_branches_are_merged_back_in_order() {
    let test = Test::new();
    let repos = build(test.dir());
    let url = format!("file://{}", repos.origin.display());
    let yaml = format!(
        "{}    needs: [branches]\n  \
         branches:\n    uses: git.merged-branches\n    with: {{ repo: repo, staging: origin/staging, main: origin/main }}\n  \
         notify:\n    uses: notify\n    needs: [reset]\n    with:\n      to: notified.txt\n      \
         message: \"reset staging: dropped ${{steps.reset.dropped_branches}} — re-merged ${{steps.reset.merged}}\"\n",
        reset_workflow(&url, ", merge: [feature/none, feature/stale]"),
    );
    let test = test
        .workflow("reset", &yaml)
        .args(["run", "reset", "--yes", "--json"]);
    let out = test.run();
    out.expect_code(0);

    // staging = main, then a merge commit of each branch, in the order given.
    let origin = Repository::open_bare(&repos.origin).unwrap();
    let new = origin.find_commit(origin_staging(&repos)).unwrap();
    assert_eq!(new.parent_count(), 2);
    assert_eq!(new.parent_id(1).unwrap(), seed_tip(&repos, "feature/stale"));
    assert_eq!(
        new.summary().unwrap(),
        Some("Merge branch 'feature/stale' into staging")
    );
    let first = new.parent(0).unwrap();
    assert_eq!(first.parent_count(), 2);
    assert_eq!(first.parent_id(0).unwrap(), seed_tip(&repos, "main"));
    assert_eq!(
        first.parent_id(1).unwrap(),
        seed_tip(&repos, "feature/none")
    );
    assert_eq!(
        first.summary().unwrap(),
        Some("Merge branch 'feature/none' into staging")
    );

    // What went: staging's two merges and the branch only staging had.
    let report = out.json();
    let reset = step(&report, "reset");
    let old = repos.seed.find_commit(seed_tip(&repos, "staging")).unwrap();
    let merge_staging_only = old.parent(0).unwrap();
    let staging_only = seed_tip(&repos, "feature/staging-only");
    assert_eq!(
        reset["outputs"],
        json!({
            "dropped": [old.id().to_string(), merge_staging_only.id().to_string(), staging_only.to_string()],
            "dropped_branches": ["feature/at-staging", "feature/staging-only", "feature/stale"],
            "merged": ["feature/none", "feature/stale"],
        })
    );
    // The cache's remote-tracking branch follows the push.
    let cache = Repository::open_bare(test.dir().join(".flightpath/git/repo")).unwrap();
    assert_eq!(tip(&cache, "refs/remotes/origin/staging"), new.id());
    assert_eq!(
        test.read("notified.txt"),
        "reset staging: dropped feature/at-staging, feature/staging-only, feature/stale — \
         re-merged feature/none, feature/stale\n"
    );
}

#[test]
fn the_dry_run_lists_the_dropped_commits_and_writes_nothing() {
    let test = Test::new();
    let repos = build(test.dir());
    clone(&repos.origin, &test.dir().join("work"));
    let before = origin_staging(&repos);
    let objects = loose_objects(&test.dir().join("work/.git"));
    let test = test
        .workflow(
            "reset",
            &reset_workflow("work", ", merge: [feature/stale, feature/both]"),
        )
        .args(["plan", "reset"]);
    let out = test.run();
    out.expect_code(0);
    {
        let _masks = masks();
        insta::assert_snapshot!(streams(&out));
    }
    assert_eq!(origin_staging(&repos), before);
    assert_eq!(loose_objects(&test.dir().join("work/.git")), objects);
    assert!(
        !out.both().contains("ada@example.invalid"),
        "{}",
        out.both()
    );
}

#[test]
fn a_push_after_the_plan_refuses_the_reset_and_keeps_the_other_push() {
    let test = Test::new();
    let repos = build(test.dir());
    clone(&repos.origin, &test.dir().join("work"));
    // Another clone has a commit for staging, pushed by a step the reset
    // needs: after every step was planned, before the reset runs.
    let other = clone(&repos.origin, &test.dir().join("other"));
    let theirs = commit(
        &other,
        "refs/heads/staging",
        &[tip(&other, "refs/remotes/origin/staging")],
        "hotfix on staging",
        1_700_003_000,
    );
    let yaml = format!(
        "{}    needs: [intruder]\n  \
         intruder:\n    uses: shell\n    with: {{ run: git -C other push --quiet origin staging }}\n",
        reset_workflow("work", ", merge: [feature/stale]"),
    );
    let test = test
        .workflow("reset", &yaml)
        .args(["run", "reset", "--yes"]);
    let out = test.run();
    out.expect_code(3);
    let planned = repos.seed.find_commit(seed_tip(&repos, "staging")).unwrap();
    assert!(
        out.both().contains(&format!(
            "git target `repo`: `staging` moved since the plan (the plan read it at {}, it is \
             at {} now): someone pushed meanwhile, so nothing was pushed. Run again to plan the \
             reset against what it holds now",
            &planned.id().to_string()[..7],
            &theirs.to_string()[..7]
        )),
        "{}",
        out.both()
    );
    assert_eq!(origin_staging(&repos), theirs);
}

/// What the reset is built from moved after the plan (a push to `main`):
/// the run builds nothing the confirmation did not show.
#[test]
fn a_move_of_main_after_the_plan_refuses_the_reset() {
    let test = Test::new();
    let repos = build(test.dir());
    clone(&repos.origin, &test.dir().join("work"));
    let other = clone(&repos.origin, &test.dir().join("other"));
    commit(
        &other,
        "refs/heads/main",
        &[tip(&other, "refs/remotes/origin/main")],
        "an unreviewed change on main",
        1_700_004_000,
    );
    let before = origin_staging(&repos);
    let yaml = format!(
        "{}    needs: [intruder]\n  \
         intruder:\n    uses: shell\n    with: {{ run: git -C other push --quiet origin main }}\n",
        reset_workflow("work", ", merge: [feature/stale]"),
    );
    let test = test
        .workflow("reset", &yaml)
        .args(["run", "reset", "--yes"]);
    let out = test.run();
    out.expect_code(3);
    assert!(
        out.both()
            .contains("would now be built from other commits than the plan showed"),
        "{}",
        out.both()
    );
    assert_eq!(origin_staging(&repos), before);
}

/// `git daemon` serving the repositories under `base` over `git://`, with
/// pushes allowed; stopped when dropped.
struct Daemon {
    child: Child,
    url: String,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("git")
            .arg("daemon")
            .args(["--reuseaddr", "--export-all", "--enable=receive-pack"])
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the git CLI runs `git daemon`");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon {
            child,
            url: format!("git://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_ref_the_server_refuses_fails_the_step_and_the_branch_stays() {
    let test = Test::new();
    let repos = build(test.dir());
    Repository::open_bare(&repos.origin)
        .unwrap()
        .config()
        .unwrap()
        .set_bool("receive.denyNonFastForwards", true)
        .unwrap();
    let before = origin_staging(&repos);
    let daemon = Daemon::start(test.dir());
    let url = format!("{}/origin.git", daemon.url);
    let test = test
        .workflow("reset", &reset_workflow(&url, ", merge: [feature/stale]"))
        .args(["run", "reset", "--yes"]);
    let out = test.run();
    out.expect_code(1);
    let text = out.both();
    assert!(
        text.contains(&format!(
            "git target `repo`: {url} refused the update of `staging`: "
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "the remote's branch was not changed. A reset pushes with force: allow force pushes \
             to `staging` for this account (branch protection, `receive.denyNonFastForwards`)"
        ),
        "{text}"
    );
    assert_eq!(origin_staging(&repos), before);
    // The cache's remote-tracking branch still says where the remote is.
    let cache = Repository::open_bare(test.dir().join(".flightpath/git/repo")).unwrap();
    assert_eq!(tip(&cache, "refs/remotes/origin/staging"), before);
}

#[test]
fn a_merge_conflict_names_the_files_and_leaves_the_remote_alone() {
    let test = Test::new();
    let repos = build(test.dir());
    let main = seed_tip(&repos, "main");
    commit_file(
        &repos.seed,
        "refs/heads/feature/a",
        main,
        "settings.py",
        "DEBUG = False\n",
    );
    commit_file(
        &repos.seed,
        "refs/heads/feature/b",
        main,
        "settings.py",
        "DEBUG = True\n",
    );
    crate::git::push(&repos.seed, &repos.origin);
    let before = origin_staging(&repos);
    let url = format!("file://{}", repos.origin.display());
    let mut test = test.workflow(
        "reset",
        &reset_workflow(&url, ", merge: [feature/a, feature/b]"),
    );
    for args in [vec!["plan", "reset"], vec!["run", "reset", "--yes"]] {
        test = test.args(args);
        let out = test.run();
        out.expect_code(1);
        assert!(
            out.both().contains(
                "git target `repo`: merging `feature/b` into `staging` conflicts in settings.py; \
                 nothing was changed. Merge the reset's base into `feature/b` and resolve it \
                 there, or leave `feature/b` out of `merge`"
            ),
            "{}",
            out.both()
        );
        assert_eq!(origin_staging(&repos), before);
    }
}

#[test]
fn push_false_moves_only_the_local_branch_and_never_a_checked_out_one() {
    let test = Test::new();
    let repos = build(test.dir());
    let work: PathBuf = test.dir().join("work");
    let clone = clone(&repos.origin, &work);
    let staging = tip(&clone, "refs/remotes/origin/staging");
    clone
        .branch("staging", &clone.find_commit(staging).unwrap(), false)
        .unwrap();
    let before = origin_staging(&repos);
    let test = test.workflow(
        "reset",
        &reset_workflow("work", ", merge: [feature/stale], push: false"),
    );
    let test = test.args(["run", "reset", "--yes", "--json"]);
    let out = test.run();
    out.expect_code(0);
    let new = clone
        .find_commit(tip(&clone, "refs/heads/staging"))
        .unwrap();
    assert_eq!(new.parent_id(0).unwrap(), seed_tip(&repos, "main"));
    assert_eq!(new.parent_id(1).unwrap(), seed_tip(&repos, "feature/stale"));
    assert_eq!(origin_staging(&repos), before, "the remote was pushed to");
    assert_eq!(tip(&clone, "refs/remotes/origin/staging"), staging);
    assert_eq!(
        step(&out.json(), "reset")["outputs"]["dropped_branches"],
        json!(["feature/staging-only"])
    );

    // With staging checked out, its working tree would be left behind.
    clone.set_head("refs/heads/staging").unwrap();
    let test = test.args(["run", "reset", "--yes"]);
    let out = test.run();
    out.expect_code(1);
    assert!(
        out.both().contains(
            "git target `repo`: `staging` is checked out in `work`, and moving it would leave \
             that working tree behind; check out another branch there, or push the reset \
             instead (`push: true`)"
        ),
        "{}",
        out.both()
    );
    assert_eq!(tip(&clone, "refs/heads/staging"), new.id());

    // Checked out in a linked worktree (`git worktree add`) instead: the
    // same refusal, and the branch stays.
    clone.set_head("refs/heads/main").unwrap();
    let added = std::process::Command::new("git")
        .arg("-C")
        .arg(&work)
        .args(["worktree", "add", "--quiet", "../linked", "staging"])
        .status()
        .unwrap();
    assert!(added.success());
    let test = test.args(["run", "reset", "--yes"]);
    let out = test.run();
    out.expect_code(1);
    assert!(
        out.both().contains("`staging` is checked out"),
        "{}",
        out.both()
    );
    assert_eq!(tip(&clone, "refs/heads/staging"), new.id());
}

#[test]
fn a_protected_repository_cannot_be_reset() {
    let yaml = reset_workflow(".", "")
        .replace("    git: \".\"\n", "    git: \".\"\n    protected: true\n");
    let out = Test::new()
        .workflow("reset", &yaml)
        .args(["validate", "reset"])
        .run();
    out.expect_code(2);
    assert!(
        out.both()
            .contains("step `reset` would write to target `repo`, which is protected"),
        "{}",
        out.both()
    );
}

#[test]
fn a_branch_given_as_a_remote_tracking_name_is_located() {
    let yaml = reset_workflow(".", "").replace("branch: staging", "branch: origin/staging");
    let out = Test::new()
        .workflow("reset", &yaml)
        .args(["validate", "reset"])
        .run();
    out.expect_code(2);
    let text = out.both();
    assert!(
        text.contains("`branch` `origin/staging` is not a branch name"),
        "{text}"
    );
    assert!(
        text.contains("write the branch's name on the remote, without `origin/` or `refs/heads/`"),
        "{text}"
    );
}

#[test]
fn a_shallow_clone_is_refused_before_a_reset() {
    let test = Test::new();
    let repos = build(test.dir());
    let shallow = test.dir().join("shallow");
    let status = Command::new("git")
        .args(["clone", "--quiet", "--depth", "1", "--no-single-branch"])
        .arg(format!("file://{}", repos.origin.display()))
        .arg(&shallow)
        .status()
        .expect("the git CLI makes the shallow clone");
    assert!(status.success());
    let out = test
        .workflow("reset", &reset_workflow("shallow", ""))
        .args(["run", "reset", "--yes"])
        .run();
    out.expect_code(1);
    assert!(
        out.both()
            .contains("git target `repo`: `shallow` is a shallow clone"),
        "{}",
        out.both()
    );
    assert!(
        out.both().contains("`git fetch --unshallow`"),
        "{}",
        out.both()
    );
}

#[test]
fn a_refused_token_stops_the_reset_with_one_error() {
    const TOKEN: &str = "ghp-not-a-real-token-0815";
    let (url, requests) = crate::git::refusing_server();
    let out = Test::new()
        .workflow(
            "reset",
            &reset_workflow(&url, "").replace(
                &format!("    git: \"{url}\"\n"),
                &format!("    git: \"{url}\"\n    token_env: GIT_TOKEN\n"),
            ),
        )
        .env("GIT_TOKEN", TOKEN)
        .timeout(Duration::from_secs(60))
        .args(["run", "reset", "--yes"])
        .run();
    out.expect_code(1);
    let text = out.both();
    assert!(
        text.contains(&format!(
            "git target `repo`: {url} refused the credentials: the token in `GIT_TOKEN` was not \
             accepted; check that it is current and may read the repository"
        )),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "the token leaked: {text}");
    let seen = requests.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=3).contains(&seen), "the server saw {seen} requests");
}
