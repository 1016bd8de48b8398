//! `git.merged-branches` through the real binary, against repositories
//! built here with git2: a bare origin, a seed repository that made its
//! history, and a clone with local and remote-tracking branches. Also the
//! repository targets' refusals: a shallow clone, a token the server
//! refuses (one error, a bounded number of requests), a token variable that
//! is not set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use git2::{Oid, Repository, Signature, Time};
use serde_json::{Value, json};

use crate::support::cli::{Output, Test, step};

/// A commit on `refname` (created or moved) with the given parents; each
/// commit holds one file named after its message, so no two trees match.
pub(crate) fn commit(
    repo: &Repository,
    refname: &str,
    parents: &[Oid],
    message: &str,
    at: i64,
) -> Oid {
    let blob = repo.blob(message.as_bytes()).unwrap();
    let mut tree = repo.treebuilder(None).unwrap();
    tree.insert(
        format!("{}.txt", message.replace(['/', ' '], "-")),
        blob,
        0o100644,
    )
    .unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let who = Signature::new("Ada Dev", "ada@example.invalid", &Time::new(at, 0)).unwrap();
    let parents: Vec<_> = parents
        .iter()
        .map(|p| repo.find_commit(*p).unwrap())
        .collect();
    let parents: Vec<_> = parents.iter().collect();
    let id = repo
        .commit(None, &who, &who, message, &tree, &parents)
        .unwrap();
    repo.reference(refname, id, true, message).unwrap();
    id
}

/// The history every test reads, made in `seed` and pushed to the bare
/// `origin.git`:
///
/// - `main`: m0, then a merge of `feature/both`;
/// - `staging`: main, then merges of `feature/staging-only` and of
///   `feature/stale` (whose branch has a commit since);
/// - `feature/none`: merged nowhere;
/// - `feature/at-staging`: exactly staging's tip.
pub(crate) struct Repos {
    pub origin: std::path::PathBuf,
    pub seed: Repository,
}

pub(crate) fn build(dir: &Path) -> Repos {
    let seed = Repository::init(dir.join("seed")).unwrap();
    let m0 = commit(&seed, "refs/heads/main", &[], "m0", 1_700_000_000);
    let b1 = commit(
        &seed,
        "refs/heads/feature/both",
        &[m0],
        "both 1",
        1_700_000_100,
    );
    let m1 = commit(
        &seed,
        "refs/heads/main",
        &[m0, b1],
        "merge both",
        1_700_000_200,
    );
    let s1 = commit(
        &seed,
        "refs/heads/feature/staging-only",
        &[m1],
        "staging only 1",
        1_700_000_300,
    );
    let t1 = commit(
        &seed,
        "refs/heads/feature/stale",
        &[m1],
        "stale 1",
        1_700_000_400,
    );
    let st1 = commit(
        &seed,
        "refs/heads/staging",
        &[m1, s1],
        "merge staging-only",
        1_700_000_500,
    );
    let st2 = commit(
        &seed,
        "refs/heads/staging",
        &[st1, t1],
        "merge stale",
        1_700_000_600,
    );
    commit(
        &seed,
        "refs/heads/feature/stale",
        &[t1],
        "stale 2",
        1_700_000_700,
    );
    commit(
        &seed,
        "refs/heads/feature/none",
        &[m1],
        "none 1",
        1_700_000_800,
    );
    seed.reference("refs/heads/feature/at-staging", st2, true, "at staging")
        .unwrap();
    let origin = dir.join("origin.git");
    let bare = Repository::init_bare(&origin).unwrap();
    bare.set_head("refs/heads/main").unwrap();
    push(&seed, &origin);
    Repos { origin, seed }
}

/// Pushes every branch of `seed` to `origin`, moving branches as needed
/// (libgit2 pushes no glob refspecs, so each branch is named).
pub(crate) fn push(seed: &Repository, origin: &Path) {
    let specs: Vec<String> = seed
        .branches(Some(git2::BranchType::Local))
        .unwrap()
        .map(|b| {
            let name = b.unwrap().0.get().name().unwrap().to_string();
            format!("+{name}:{name}")
        })
        .collect();
    let mut remote = seed.remote_anonymous(origin.to_str().unwrap()).unwrap();
    remote.push(&specs, None).unwrap();
}

/// A clone of origin (remote-tracking branches, a local `main`), plus a
/// local `feature/staging-only` tracking its remote and a local-only
/// `feature/local` merged nowhere.
pub(crate) fn clone(origin: &Path, into: &Path) -> Repository {
    let repo = git2::build::RepoBuilder::new()
        .clone(&format!("file://{}", origin.display()), into)
        .unwrap();
    {
        let remote = repo
            .find_reference("refs/remotes/origin/feature/staging-only")
            .unwrap()
            .peel_to_commit()
            .unwrap();
        repo.branch("feature/staging-only", &remote, false).unwrap();
        let main = repo.head().unwrap().peel_to_commit().unwrap().id();
        commit(
            &repo,
            "refs/heads/feature/local",
            &[main],
            "local 1",
            1_700_000_900,
        );
    }
    repo
}

fn workflow(git: &str, extra_target: &str, with: &str) -> String {
    format!(
        "name: branches\n\
         targets:\n  repo:\n    git: \"{git}\"\n{extra_target}\
         steps:\n  branches:\n    uses: git.merged-branches\n    with: {{ repo: repo, staging: origin/staging, main: origin/main{with} }}\n"
    )
}

/// The step's outputs and its table as branch -> status.
fn findings(out: &Output) -> (Value, BTreeMap<String, String>) {
    let report = out.json();
    let step = step(&report, "branches");
    let table = step["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "table")
        .unwrap_or_else(|| panic!("no table in {step:#}"));
    assert_eq!(
        table["columns"],
        json!([
            "branch",
            "status",
            "tip",
            "last commit",
            "author",
            "ahead of main"
        ])
    );
    let statuses = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_string(),
                row[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (step["outputs"].clone(), statuses)
}

fn statuses(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(b, s)| (b.to_string(), s.to_string()))
        .collect()
}

const REMOTE_STATUSES: &[(&str, &str)] = &[
    ("origin/feature/at-staging", "on staging only"),
    ("origin/feature/both", "in both"),
    ("origin/feature/none", "in neither"),
    ("origin/feature/stale", "stale on staging"),
    ("origin/feature/staging-only", "on staging only"),
];

#[test]
fn merged_branches_lists_local_and_remote_tracking_branches_exactly() {
    let test = Test::new();
    let repos = build(test.dir());
    clone(&repos.origin, &test.dir().join("work"));
    let test = test.workflow("branches", &workflow("work", "", ""));

    let mut expected = statuses(REMOTE_STATUSES);
    expected.extend(statuses(&[
        ("feature/local", "in neither"),
        ("feature/staging-only", "on staging only"),
        ("main", "in both"),
    ]));
    let outputs = json!({
        "unmerged": ["feature/staging-only", "origin/feature/at-staging", "origin/feature/staging-only"],
        "stale": ["origin/feature/stale"],
    });

    let test = test.args(["run", "branches", "--dry-run", "--json"]);
    let plan = test.run();
    plan.expect_code(0);
    let (out, table) = findings(&plan);
    assert_eq!(out, outputs);
    assert_eq!(table, expected);

    let test = test.args(["run", "branches", "--yes", "--json"]);
    let run = test.run();
    run.expect_code(0);
    let (out, table) = findings(&run);
    assert_eq!(out, outputs);
    assert_eq!(table, expected);
}

#[test]
fn merged_branches_filters_with_globs_and_reads_the_table_columns() {
    let test = Test::new();
    let repos = build(test.dir());
    clone(&repos.origin, &test.dir().join("work"));
    let test = test
        .workflow(
            "branches",
            &workflow("work", "", ", branches: [\"origin/feature/st*\"]"),
        )
        .args(["run", "branches", "--dry-run", "--json"]);
    let out = test.run();
    out.expect_code(0);
    let (outputs, table) = findings(&out);
    assert_eq!(
        outputs,
        json!({ "unmerged": ["origin/feature/staging-only"], "stale": ["origin/feature/stale"] })
    );
    assert_eq!(
        table,
        statuses(&[
            ("origin/feature/stale", "stale on staging"),
            ("origin/feature/staging-only", "on staging only"),
        ])
    );
    let report = out.json();
    let row = &step(&report, "branches")["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "table")
        .unwrap()["rows"][1];
    let stale_tip = repos
        .seed
        .find_reference("refs/heads/feature/stale")
        .unwrap()
        .target()
        .unwrap()
        .to_string();
    // stale: one commit of its own is merged, one came after; both are
    // ahead of main.
    assert_eq!(
        row,
        &json!([
            "origin/feature/stale",
            "stale on staging",
            &stale_tip[..7],
            "2023-11-14 22:25 UTC",
            "Ada Dev",
            "2"
        ])
    );
}

#[test]
fn a_url_target_is_cloned_bare_into_the_cache_and_fetched_each_run() {
    let test = Test::new();
    let repos = build(test.dir());
    let url = format!("file://{}", repos.origin.display());
    let test = test
        .workflow("branches", &workflow(&url, "", ""))
        .args(["run", "branches", "--yes", "--json"]);
    let first = test.run();
    first.expect_code(0);
    let (outputs, table) = findings(&first);
    assert_eq!(table, statuses(REMOTE_STATUSES));
    assert_eq!(
        outputs["unmerged"],
        json!(["origin/feature/at-staging", "origin/feature/staging-only"])
    );
    let cache = Repository::open_bare(test.dir().join(".flightpath/git/repo")).unwrap();
    assert!(cache.is_bare());

    // Staging moves on upstream: feature/none is merged into it.
    let staging = repos
        .seed
        .find_reference("refs/heads/staging")
        .unwrap()
        .target()
        .unwrap();
    let none = repos
        .seed
        .find_reference("refs/heads/feature/none")
        .unwrap()
        .target()
        .unwrap();
    let merged = commit(
        &repos.seed,
        "refs/heads/staging",
        &[staging, none],
        "merge none",
        1_700_001_000,
    );
    push(&repos.seed, &repos.origin);

    let second = test.run();
    second.expect_code(0);
    let (outputs, table) = findings(&second);
    assert_eq!(table["origin/feature/none"], "on staging only");
    assert_eq!(table["origin/feature/at-staging"], "on staging only");
    assert_eq!(
        outputs["unmerged"],
        json!([
            "origin/feature/at-staging",
            "origin/feature/none",
            "origin/feature/staging-only"
        ])
    );
    assert_eq!(
        cache
            .find_reference("refs/remotes/origin/staging")
            .unwrap()
            .target(),
        Some(merged)
    );
}

#[test]
fn fail_on_unmerged_fails_the_run_naming_the_branches() {
    let test = Test::new();
    let repos = build(test.dir());
    clone(&repos.origin, &test.dir().join("work"));
    let test = test
        .workflow(
            "branches",
            &workflow(
                "work",
                "",
                ", fail_on: [unmerged], branches: [\"origin/*\"]",
            ),
        )
        .args(["run", "branches", "--yes"]);
    let out = test.run();
    out.expect_code(1);
    assert!(
        out.both().contains(
            "2 branches on staging only, which a reset would drop: \
             origin/feature/at-staging, origin/feature/staging-only; merge them into \
             `origin/main` first, or remove them from `fail_on` to only report them"
        ),
        "{}",
        out.both()
    );
    // Stale branches alone do not fail it unless asked.
    assert!(
        !out.both().contains("stale on staging (merged"),
        "{}",
        out.both()
    );
}

#[test]
fn fail_on_names_unknown_findings() {
    let test = Test::new()
        .workflow("branches", &workflow(".", "", ", fail_on: [unmergd]"))
        .args(["validate", "branches"]);
    let out = test.run();
    out.expect_code(2);
    assert!(
        out.both().contains("unknown `fail_on` finding `unmergd`"),
        "{}",
        out.both()
    );
    assert!(
        out.both().contains("did you mean `unmerged`?"),
        "{}",
        out.both()
    );
}

#[test]
fn git_access_keys_belong_to_git_targets() {
    let yaml = "
        name: branches
        targets:
          db: { postgres: \"postgres://localhost/app\", fetch: true, token_env: GIT_TOKEN }
          repo: { git: ., token_env: \"not a name\" }
        steps:
          hello: { uses: shell, with: { run: echo hi } }
    ";
    let out = Test::new()
        .workflow("branches", yaml)
        .args(["validate", "branches"])
        .run();
    out.expect_code(2);
    let text = out.both();
    assert!(
        text.contains("target `db` `fetch` is about a git repository, but it has no `git`"),
        "{text}"
    );
    assert!(
        text.contains("target `db` `token_env` is about a git repository"),
        "{text}"
    );
    assert!(
        text.contains("target `repo` `token_env` must name an environment variable"),
        "{text}"
    );
}

#[test]
fn a_shallow_clone_is_refused_with_the_fix() {
    let mut test = Test::new();
    let repos = build(test.dir());
    let shallow = test.dir().join("shallow");
    let status = std::process::Command::new("git")
        .args(["clone", "--quiet", "--depth", "1", "--no-single-branch"])
        .arg(format!("file://{}", repos.origin.display()))
        .arg(&shallow)
        .status()
        .expect("the git CLI makes the shallow clone");
    assert!(status.success());
    assert!(Repository::open(&shallow).unwrap().is_shallow());
    for fetch in ["false", "true"] {
        test = test
            .workflow(
                "branches",
                &workflow("shallow", &format!("    fetch: {fetch}\n"), ""),
            )
            .args(["run", "branches", "--dry-run"]);
        let out = test.run();
        out.expect_code(1);
        assert!(
            out.both().contains(
                "git target `repo`: `shallow` is a shallow clone, and which branches are merged \
                 cannot be decided without the whole history; fetch all of it (`git fetch \
                 --unshallow`, or `fetch-depth: 0` on `actions/checkout` in GitHub Actions)"
            ),
            "{}",
            out.both()
        );
    }
}

/// A server that answers every request with `401` and a Basic challenge,
/// counting the requests it reads.
pub(crate) fn refusing_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    // One request: its head up to the blank line.
                    let mut line = String::new();
                    let mut started = false;
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" && started => break,
                            Ok(_) => started = true,
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = "no";
                    let reply = format!(
                        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                         Content-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://127.0.0.1:{port}/org/app.git"), requests)
}

#[test]
fn a_refused_token_is_one_clear_error_not_a_retry_loop() {
    const TOKEN: &str = "ghp-not-a-real-token-4711";
    let (url, requests) = refusing_server();
    let out = Test::new()
        .workflow(
            "branches",
            &workflow(&url, "    token_env: GIT_TOKEN\n", ""),
        )
        .env("GIT_TOKEN", TOKEN)
        .timeout(Duration::from_secs(60))
        .args(["run", "branches", "--dry-run"])
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
    let seen = requests.load(Ordering::SeqCst);
    assert!((1..=3).contains(&seen), "the server saw {seen} requests");
}

#[test]
fn an_unset_token_variable_is_named() {
    let (url, requests) = refusing_server();
    let out = Test::new()
        .workflow(
            "branches",
            &workflow(&url, "    token_env: GIT_TOKEN\n", ""),
        )
        .args(["run", "branches", "--dry-run"])
        .run();
    out.expect_code(1);
    assert!(
        out.both().contains(
            "git target `repo`: environment variable `GIT_TOKEN` (`token_env`) is not set; \
             export the token in it, or remove `token_env` to use the SSH agent"
        ),
        "{}",
        out.both()
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}

#[test]
fn a_path_target_is_fetched_first_with_fetch_true() {
    let test = Test::new();
    let repos = build(test.dir());
    clone(&repos.origin, &test.dir().join("work"));
    // Upstream, feature/none is merged into staging after the clone.
    let staging = repos
        .seed
        .find_reference("refs/heads/staging")
        .unwrap()
        .target()
        .unwrap();
    let none = repos
        .seed
        .find_reference("refs/heads/feature/none")
        .unwrap()
        .target()
        .unwrap();
    commit(
        &repos.seed,
        "refs/heads/staging",
        &[staging, none],
        "merge none",
        1_700_001_000,
    );
    push(&repos.seed, &repos.origin);

    let with = ", branches: [\"origin/feature/none\"]";
    let test = test
        .workflow("branches", &workflow("work", "", with))
        .args(["run", "branches", "--dry-run", "--json"]);
    let out = test.run();
    out.expect_code(0);
    assert_eq!(findings(&out).1["origin/feature/none"], "in neither");

    let test = test.workflow("branches", &workflow("work", "    fetch: true\n", with));
    let out = test.run();
    out.expect_code(0);
    assert_eq!(findings(&out).1["origin/feature/none"], "on staging only");
}

#[test]
fn an_unknown_ref_is_named_with_a_suggestion() {
    let test = Test::new();
    let repos = build(test.dir());
    clone(&repos.origin, &test.dir().join("work"));
    let yaml =
        workflow("work", "", "").replace("staging: origin/staging", "staging: origin/stagin");
    let out = test
        .workflow("branches", &yaml)
        .args(["run", "branches", "--dry-run"])
        .run();
    out.expect_code(1);
    assert!(
        out.both().contains(
            "git target `repo`: no branch or commit `origin/stagin` (did you mean \
             `origin/staging`?); fetch first (`fetch: true`) if it exists on the remote"
        ),
        "{}",
        out.both()
    );
}

#[test]
fn a_server_asking_for_a_token_without_token_env_says_how_to_give_one() {
    let (url, requests) = refusing_server();
    let out = Test::new()
        .workflow("branches", &workflow(&url, "", ""))
        .timeout(Duration::from_secs(60))
        .args(["run", "branches", "--dry-run"])
        .run();
    out.expect_code(1);
    assert!(
        out.both().contains(&format!(
            "git target `repo`: {url} refused the credentials: the server asks for a user name \
             and token, and the target has no `token_env`; add `token_env: <VARIABLE>`"
        )),
        "{}",
        out.both()
    );
    assert!(requests.load(Ordering::SeqCst) <= 3);
}
