//! `postgres.backup`, `postgres.restore` and `flightpath backups`, against
//! the harness's staging cluster and directory stores in the test's temp
//! dir: a round trip gives identical data, a changed byte is refused by
//! verify and restore (staging untouched), retention keeps exactly the
//! newest N of one workflow and nothing else, a dry run writes nothing, an
//! `on_failure` restore runs after the clone's swap-back, a kill -9 leaves
//! no backup listed (the next backup aborts the upload), and a kill -9
//! after a restore's swap is finished by `resume`. And the same round trip
//! through the in-process S3 server, over several multipart parts.

use std::collections::BTreeMap;

use flightpath::progress::{Mode, Progress};
use flightpath::storage::Store;
use tokio_util::sync::CancellationToken;

use crate::support::cli::{Output, Test, step};
use crate::support::pg::{
    block_on, execute, fresh_db_sync, query_strings, staging_cluster, staging_db,
};
use crate::support::s3::S3Server;

/// Staging with a few kinds of data, a sequence, an index and a foreign key.
fn seed(name: &str) -> String {
    let url = staging_db(name);
    execute(
        &url,
        "CREATE TABLE site (id serial PRIMARY KEY, hostname text NOT NULL UNIQUE);
         CREATE TABLE page (id bigserial PRIMARY KEY, site_id int REFERENCES site(id),
                            title text, body jsonb, published timestamptz, raw bytea);
         INSERT INTO site (hostname) VALUES ('staging.example.org'), ('other.example.org');
         INSERT INTO page (site_id, title, body, published, raw)
           SELECT 1 + i % 2, 'page ' || i, jsonb_build_object('n', i, 'tags', jsonb_build_array('a', i)),
                  timestamptz '2025-01-01' + i * interval '1 hour', decode(md5(i::text), 'hex')
           FROM generate_series(1, 3000) i;
         CREATE INDEX page_title ON page (title);
         ANALYZE;",
    );
    url
}

/// Per table: row count and an md5 of its rows' text, in order.
fn fingerprint(url: &str) -> BTreeMap<String, String> {
    query_strings(
        url,
        "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1",
    )
    .into_iter()
    .map(|t| {
        let sql = format!(
            "SELECT count(*)::text || ' ' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '-') FROM {t} x"
        );
        (t.clone(), query_strings(url, &sql).remove(0))
    })
    .collect()
}

/// Databases on the staging server whose names start with `prefix`.
fn databases(prefix: &str) -> Vec<String> {
    query_strings(
        &staging_cluster().url("postgres"),
        "SELECT datname::text FROM pg_database ORDER BY 1",
    )
    .into_iter()
    .filter(|d| d.starts_with(prefix))
    .collect()
}

fn backup_workflow(name: &str, staging: &str, keep: &str) -> String {
    format!(
        r#"
        name: {name}
        targets:
          staging: {{ postgres: "{staging}" }}
        steps:
          backup:
            uses: postgres.backup
            with: {{ target: staging, store: ./backups{keep} }}
        "#
    )
}

fn restore_workflow(staging: &str, backup: &str) -> String {
    format!(
        r#"
        name: restore
        targets:
          staging: {{ postgres: "{staging}" }}
        steps:
          restore:
            uses: postgres.restore
            with: {{ target: staging, store: ./backups, backup: "{backup}" }}
        "#
    )
}

fn ok(out: &Output) -> &Output {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out
}

/// Every file under the test's `backups/`, relative to it, sorted.
fn files(test: &Session) -> Vec<String> {
    fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.path().is_dir() {
                walk(&entry.path(), &key, out);
            } else {
                out.push(key);
            }
        }
    }
    let mut out = Vec::new();
    walk(&test.dir().join("backups"), "", &mut out);
    out.sort();
    out
}

/// Runs the backup workflow `name` and returns its step's outputs.
fn back_up(test: &Session, workflow: &str) -> serde_json::Value {
    let out = test.run(&["run", workflow, "--yes", "--json"]);
    ok(&out);
    step(&out.json(), "backup")["outputs"].clone()
}

/// A [`Test`] run several times in one directory.
struct Session(std::cell::RefCell<Option<Test>>);

impl Session {
    fn new(test: Test) -> Session {
        Session(std::cell::RefCell::new(Some(test)))
    }

    fn with(&self, f: impl FnOnce(Test) -> Test) {
        let mut slot = self.0.borrow_mut();
        let test = slot.take().expect("a test");
        *slot = Some(f(test));
    }

    fn workflow(&self, name: &str, yaml: &str) {
        self.with(|t| t.workflow(name, yaml));
    }

    fn run(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.with(|t| t.args(args));
        self.0.borrow().as_ref().expect("a test").run()
    }

    fn dir(&self) -> std::path::PathBuf {
        self.0
            .borrow()
            .as_ref()
            .expect("a test")
            .dir()
            .to_path_buf()
    }

    fn runs(&self) -> Vec<std::path::PathBuf> {
        self.0.borrow().as_ref().expect("a test").runs()
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.0.borrow().as_ref().expect("a test").spawn(args)
    }
}

#[test]
fn a_backup_restores_identical_data_through_a_directory_store() {
    let staging = seed("backup_round_trip");
    let before = fingerprint(&staging);
    let test = Session::new(
        Test::new()
            .workflow(
                "nightly",
                &backup_workflow("nightly", &staging, ", keep: 3"),
            )
            .workflow("restore", &restore_workflow(&staging, "latest")),
    );
    let outputs = back_up(&test, "nightly");
    let name = outputs["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("nightly/"), "{outputs}");
    assert_eq!(outputs["sha256"].as_str().unwrap().len(), 64);
    let dump = test.dir().join("backups").join(format!("{name}.dump"));
    assert_eq!(
        std::fs::metadata(&dump).unwrap().len(),
        outputs["bytes"].as_u64().unwrap()
    );
    assert!(
        outputs["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{name}.dump")),
        "{outputs}"
    );

    // Staging changes after the backup; the restore brings back the backup.
    execute(
        &staging,
        "DELETE FROM page WHERE id % 3 = 0; UPDATE site SET hostname = 'changed' WHERE id = 1; CREATE TABLE extra (x int)",
    );
    assert_ne!(fingerprint(&staging), before);
    let out = test.run(&["run", "restore", "--yes", "--json"]);
    ok(&out);
    assert_eq!(fingerprint(&staging), before);
    assert_eq!(
        query_strings(&staging, "SELECT nextval('page_id_seq')::text"),
        ["3001"]
    );
    let report = out.json();
    let restore = step(&report, "restore");
    assert_eq!(restore["outputs"]["name"], name.as_str());
    let after: Vec<String> = restore["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["label"] == "after the run")
        .map(|d| d["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(after.len(), 1, "{restore}");
    assert!(
        after[0].starts_with("dropped the previous `staging` database"),
        "{after:?}"
    );
    assert!(databases("backup_round_trip_fp").is_empty());

    // The CLI lists it, verifies it, and restores it too.
    let listed = test.run(&["backups", "list", "--store", "backups"]);
    ok(&listed);
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", listed.stdout);
    assert!(lines[0].starts_with("name"), "{}", listed.stdout);
    assert!(lines[0].contains("time") && lines[0].contains("database"));
    assert!(lines[1].starts_with(&name), "{}", listed.stdout);
    assert!(lines[1].ends_with("nightly"), "{}", listed.stdout);
    let json = test.run(&["backups", "list", "--store", "backups", "--json"]);
    ok(&json);
    let manifests: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(manifests[0]["name"], name.as_str());
    assert_eq!(manifests[0]["tables"], 2);
    assert!(
        !json.stdout.contains("password") && !json.stdout.contains("@"),
        "{}",
        json.stdout
    );
    let verified = test.run(&["backups", "verify", &name, "--store", "backups"]);
    ok(&verified);
    assert!(
        verified
            .stdout
            .starts_with(&format!("backup `{name}` is sound")),
        "{}",
        verified.stdout
    );

    execute(&staging, "TRUNCATE page CASCADE");
    let to = staging.clone();
    let restored = test.run(&[
        "backups", "restore", &name, "--store", "backups", "--to", &to, "--yes",
    ]);
    ok(&restored);
    assert_eq!(fingerprint(&staging), before);
    assert!(databases("backup_round_trip_fp").is_empty());
}

#[test]
fn a_changed_byte_is_refused_by_verify_and_restore_and_staging_is_untouched() {
    let staging = seed("backup_corrupt");
    let test = Session::new(
        Test::new()
            .workflow("nightly", &backup_workflow("nightly", &staging, ""))
            .workflow("restore", &restore_workflow(&staging, "latest")),
    );
    let outputs = back_up(&test, "nightly");
    let name = outputs["name"].as_str().unwrap().to_string();
    let expected = outputs["sha256"].as_str().unwrap().to_string();
    let dump = test.dir().join("backups").join(format!("{name}.dump"));
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&dump, &bytes).unwrap();
    let found = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&bytes);
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };

    execute(
        &staging,
        "INSERT INTO site (hostname) VALUES ('after the backup')",
    );
    let before = fingerprint(&staging);
    let message = |out: &Output| {
        assert!(
            out.stderr.contains(&format!("backup `{name}`"))
                && out.stderr.contains(&format!("sha256 {expected}"))
                && out.stderr.contains(&format!("sha256 {found}")),
            "stderr:\n{}",
            out.stderr
        );
    };

    let verified = test.run(&["backups", "verify", &name, "--store", "backups"]);
    assert_eq!(verified.code, 1, "{}", verified.stderr);
    message(&verified);

    let restored = test.run(&[
        "backups", "restore", "latest", "--store", "backups", "--to", &staging, "--yes",
    ]);
    assert_eq!(restored.code, 1, "{}", restored.stderr);
    message(&restored);
    assert_eq!(fingerprint(&staging), before);

    let out = test.run(&["run", "restore", "--yes", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let error = step(&out.json(), "restore")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains(&format!("sha256 {found}")), "{error}");
    assert_eq!(fingerprint(&staging), before);
    assert!(databases("backup_corrupt_fp").is_empty());
}

#[test]
fn retention_keeps_the_newest_n_of_the_workflow_and_nothing_else_is_touched() {
    let staging = seed("backup_retention");
    let test = Session::new(
        Test::new()
            .workflow(
                "nightly",
                &backup_workflow("nightly", &staging, ", keep: 2"),
            )
            .workflow("weekly", &backup_workflow("weekly", &staging, ""))
            // Not backups: whatever else lives in the store stays.
            .file("backups/nightly/notes.txt", "mine")
            .file(
                "backups/nightly/20200101T000000.000Z-beef.dump",
                "a dump without a manifest",
            )
            .file("backups/elsewhere.json", "{}"),
    );
    let weekly = back_up(&test, "weekly")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let names: Vec<String> = (0..4)
        .map(|_| {
            back_up(&test, "nightly")["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, names, "names sort by time");
    let expected: Vec<String> = [
        "elsewhere.json".to_string(),
        format!("{}.dump", names[2]),
        format!("{}.json", names[2]),
        format!("{}.dump", names[3]),
        format!("{}.json", names[3]),
        "nightly/20200101T000000.000Z-beef.dump".to_string(),
        "nightly/notes.txt".to_string(),
        format!("{weekly}.dump"),
        format!("{weekly}.json"),
    ]
    .into_iter()
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect();
    assert_eq!(files(&test), expected);
    let listed = test.run(&[
        "backups",
        "list",
        "--store",
        "backups",
        "--workflow",
        "nightly",
        "--json",
    ]);
    ok(&listed);
    let manifests: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    let shown: Vec<&str> = manifests
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        shown,
        [names[3].as_str(), names[2].as_str()],
        "newest first"
    );
}

#[test]
fn a_dry_run_writes_nothing_and_says_what_it_would_do() {
    let staging = seed("backup_dry_run");
    let test = Session::new(
        Test::new()
            .workflow(
                "nightly",
                &backup_workflow("nightly", &staging, ", keep: 1"),
            )
            .workflow("restore", &restore_workflow(&staging, "latest")),
    );
    let out = test.run(&["plan", "nightly", "--json"]);
    ok(&out);
    let report = out.json();
    let planned = step(&report, "backup");
    let summary = planned["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("would dump `staging` (database `backup_dry_run`"),
        "{summary}"
    );
    assert!(!test.dir().join("backups").exists(), "{:?}", files(&test));

    // With one backup there, the plan says which one `keep: 1` would delete.
    let first = back_up(&test, "nightly")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let before = files(&test);
    let out = test.run(&["plan", "nightly", "--json"]);
    ok(&out);
    let text = out.stdout.clone();
    assert!(
        text.contains(&format!("keep 1: would delete {first}")),
        "{text}"
    );
    // The restore's plan names the backup and what it replaces.
    let out = test.run(&["plan", "restore", "--json"]);
    ok(&out);
    let report = out.json();
    let summary = step(&report, "restore")["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        summary.starts_with(&format!("would restore backup `{first}`"))
            && summary.contains("in place of `staging` (database `backup_dry_run`"),
        "{summary}"
    );
    assert_eq!(files(&test), before);
    assert!(databases("backup_dry_run_fp").is_empty());
}

#[test]
fn an_empty_store_lists_nothing_and_a_missing_name_is_an_error() {
    let test = Session::new(Test::new().file("backups/unrelated.txt", "x"));
    let out = test.run(&["backups", "list", "--store", "backups"]);
    ok(&out);
    assert!(out.stdout.starts_with("no backups in "), "{}", out.stdout);
    let out = test.run(&["backups", "verify", "nightly/nope", "--store", "backups"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no backups in "), "{}", out.stderr);

    let staging = seed("backup_missing_name");
    test.workflow("nightly", &backup_workflow("nightly", &staging, ""));
    let name = back_up(&test, "nightly")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let typo = name.replacen("nightly/", "nightly/1", 1);
    let out = test.run(&[
        "backups", "restore", &typo, "--store", "backups", "--to", &staging, "--yes",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("no backup `{typo}` in "))
            && out.stderr.contains(&format!("did you mean `{name}`?")),
        "{}",
        out.stderr
    );
    // Without --yes and without a terminal, a restore is refused.
    let out = test.run(&[
        "backups", "restore", &name, "--store", "backups", "--to", &staging,
    ]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);
}

#[test]
fn a_protected_target_may_be_backed_up_but_never_restored_into() {
    let staging = seed("backup_protected");
    let workflow = |uses: &str, with: &str| {
        format!(
            r#"
            name: prod
            targets:
              prod: {{ postgres: "{staging}", protected: true }}
            steps:
              step:
                uses: {uses}
                with: {{ target: prod, store: ./backups{with} }}
            "#
        )
    };
    let test = Session::new(Test::new().workflow(
        "backup",
        &workflow("postgres.backup", ", keep: 0, colour: red"),
    ));
    let out = test.run(&["validate", "backup"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("`keep` must be at least 1"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("colour"), "{}", out.stderr);
    test.workflow("backup", &workflow("postgres.backup", ""));
    ok(&test.run(&["validate", "backup"]));
    test.workflow("restore", &workflow("postgres.restore", ", backup: latest"));
    let out = test.run(&["validate", "restore"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("which is protected"), "{}", out.stderr);
}

#[test]
fn on_failure_restores_the_backup_after_the_clones_swap_back() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE site (id serial PRIMARY KEY, hostname text NOT NULL UNIQUE);
         INSERT INTO site (hostname) VALUES ('www.example.org');",
    );
    let staging = seed("backup_on_failure");
    let backed_up = fingerprint(&staging);
    let clone = crate::clone::clone_workflow(&prod.url, &staging, "");
    let workflow = format!(
        "{}\n{}",
        clone.trim_end().replace(
            "          database:\n            uses: postgres.clone\n",
            "          backup:\n            uses: postgres.backup\n            with: { target: staging, store: ./backups }\n          \
             changed:\n            uses: postgres.sql\n            needs: [backup]\n            \
             with: { target: staging, sql: \"DELETE FROM page\" }\n          \
             database:\n            uses: postgres.clone\n            needs: [changed]\n"
        ),
        r#"
          smoke:
            uses: shell
            needs: [database]
            with: { run: "exit 7" }
        on_failure:
          restore:
            uses: postgres.restore
            with: { target: staging, backup: "${steps.backup.path}" }
        "#
        .trim_start_matches('\n')
    );
    let test = Session::new(Test::new().workflow("reset", &workflow));
    let out = test.run(&["run", "reset", "--yes", "--json"]);
    assert_eq!(
        out.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let report = out.json();
    // The clone's swap was undone first (staging as the step before left
    // it), then the on_failure restore put the backup in, and the end of
    // the recovery dropped the database it replaced.
    let database = step(&report, "database");
    assert!(
        database["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["label"] == "undone"
                && d["value"].as_str().unwrap().starts_with("swapped back")),
        "{database}"
    );
    let restore = step(&report, "restore");
    assert_eq!(restore["status"], "succeeded", "{restore}");
    assert!(
        restore["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["label"] == "after the run"
                && d["value"]
                    .as_str()
                    .unwrap()
                    .starts_with("dropped the previous")),
        "{restore}"
    );
    assert_eq!(fingerprint(&staging), backed_up);
    assert!(databases("backup_on_failure_fp").is_empty());
}

#[test]
fn sigkill_after_a_restores_swap_then_resume_finishes_it() {
    let staging = seed("backup_kill_swap");
    let backed_up = fingerprint(&staging);
    let test =
        Session::new(Test::new().workflow("nightly", &backup_workflow("nightly", &staging, "")));
    back_up(&test, "nightly");
    execute(&staging, "DELETE FROM page WHERE id > 10");
    // The step after the restore kills flightpath (its parent) once: the
    // swap is done, the end of the run has not confirmed it.
    let workflow = format!(
        "{}\n{}",
        restore_workflow(&staging, "latest").trim_end(),
        r#"
          after:
            uses: shell
            needs: [restore]
            with: { run: "test -f killed-once || { touch killed-once; kill -9 $PPID; sleep 5; }" }
        "#
        .trim_start_matches('\n')
    );
    test.workflow("restore", &workflow);
    let out = test.run(&["run", "restore", "--yes", "--json"]);
    assert_eq!(out.code, 128 + 9, "{}", out.stderr);
    assert_eq!(fingerprint(&staging), backed_up, "the swap was done");
    let aside = databases("backup_kill_swap_fp_old_");
    assert_eq!(
        aside.len(),
        1,
        "the replaced database waits for the end of the run"
    );

    let run = test
        .runs()
        .into_iter()
        .next()
        .expect("a run folder")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // `runs()` holds the backup's run too: resume the one that was killed.
    let killed = test
        .runs()
        .into_iter()
        .map(|r| r.file_name().unwrap().to_string_lossy().into_owned())
        .find(|id| {
            std::fs::read_to_string(
                test.dir()
                    .join(".flightpath/runs")
                    .join(id)
                    .join("journal.jsonl"),
            )
            .is_ok_and(|j| j.contains("\"workflow\":\"restore\""))
        })
        .unwrap_or(run);
    let out = test.run(&["resume", &killed, "--yes", "--json"]);
    ok(&out);
    let report = out.json();
    assert_eq!(step(&report, "restore")["status"], "reused", "{report}");
    assert_eq!(fingerprint(&staging), backed_up);
    assert!(databases("backup_kill_swap_fp").is_empty());
}

/// A staging database whose dump takes a while (so a kill lands mid-upload).
fn seed_big(name: &str) -> String {
    let staging = staging_db(name);
    execute(
        &staging,
        "CREATE TABLE big AS SELECT i, md5(i::text) a, md5((i * 7)::text) b, md5((i * 13)::text) c
         FROM generate_series(1, 1500000) i;",
    );
    staging
}

/// Kills a backup into `store` once `abandoned()` (what the store would
/// show of it after a kill) is non-empty; then nothing is listed, and the
/// next backup aborts the upload and says so.
fn sigkill_mid_backup(test: &Session, store: &str, abandoned: &dyn Fn() -> usize) {
    let child = test.spawn(&["run", "nightly", "--yes", "--json"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut seen = false;
    while std::time::Instant::now() < deadline {
        if abandoned() > 0 {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let sent = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert!(seen, "the upload was never seen under way");
    assert_eq!(Output::of(child).code, 128 + 9);
    assert_eq!(abandoned(), 1);

    let listed = test.run(&["backups", "list", "--store", store]);
    ok(&listed);
    assert!(
        listed.stdout.starts_with("no backups in "),
        "{}",
        listed.stdout
    );

    let out = test.run(&["run", "nightly", "--yes", "--json"]);
    ok(&out);
    let report = out.json();
    let backup = step(&report, "backup");
    assert!(
        backup["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["label"] == "abandoned uploads"
                && d["value"]
                    .as_str()
                    .unwrap()
                    .starts_with("aborted 1 left by interrupted runs")),
        "{backup}"
    );
    assert_eq!(abandoned(), 0);
    let listed = test.run(&["backups", "list", "--store", store]);
    assert_eq!(ok(&listed).stdout.lines().count(), 2, "{}", listed.stdout);
}

#[test]
fn sigkill_during_a_backup_lists_nothing_and_the_next_backup_aborts_the_upload() {
    let staging = seed_big("backup_kill_dump");
    let test =
        Session::new(Test::new().workflow("nightly", &backup_workflow("nightly", &staging, "")));
    let store_dir = test.dir().join("backups");
    let abandoned = || {
        block_on(async {
            match Store::open(store_dir.to_str().unwrap()).await {
                Ok(store) => store.abandoned("nightly/").await.map_or(0, |a| a.len()),
                Err(_) => 0,
            }
        })
    };
    sigkill_mid_backup(&test, "backups", &abandoned);
}

#[test]
fn sigkill_during_a_backup_to_s3_leaves_no_multipart_upload_open_after_the_next() {
    let staging = seed_big("backup_kill_s3");
    let server = S3Server::start();
    server.create_bucket("kill");
    let url = server.url("kill", "");
    let workflow =
        backup_workflow("nightly", &staging, "").replace("./backups", &format!("\"{url}\""));
    let mut test = Test::new().workflow("nightly", &workflow);
    for (k, v) in server.env() {
        test = test.env(k, v);
    }
    let test = Session::new(test);
    let abandoned = || server.open_multipart_uploads("kill");
    sigkill_mid_backup(&test, &url, &abandoned);
}

// --- S3 ----------------------------------------------------------------------

/// A backup into the in-process S3 server over several multipart parts,
/// restored from the stream (pg_restore's stdin): identical data, no
/// upload left open; the CLI lists and verifies it with the AWS chain's
/// credentials, and refuses it once a byte of the stored object changed.
#[test]
fn a_backup_round_trips_through_s3_over_several_parts() {
    let staging = seed("backup_s3");
    execute(
        &staging,
        "INSERT INTO page (site_id, title, body, raw)
           SELECT 1, md5(i::text) || md5((i * 3)::text), jsonb_build_object('pad', md5((i * 7)::text)), decode(md5((i * 11)::text), 'hex')
           FROM generate_series(3001, 40000) i; ANALYZE;",
    );
    let before = fingerprint(&staging);
    let server = S3Server::start();
    server.create_bucket("backups");
    let spec = flightpath::backup::take::BackupSpec {
        target: "staging".into(),
        url: staging.clone(),
        workflow: "nightly".into(),
        run_id: "20261202T061500Z-3fa9".into(),
        keep: Some(2),
        protected: false,
    };
    let progress = Progress::new(Mode::Quiet);
    let cancel = CancellationToken::new();
    let (taken, manifest) = block_on(async {
        // Small parts, so a dump of a few MB is a multipart upload.
        let store = server
            .store("backups", "team/db")
            .await
            .with_part_size(256 * 1024);
        let taken = flightpath::backup::take::take(&store, &spec, &progress, "backup", &cancel)
            .await
            .unwrap();
        let manifest = flightpath::backup::catalog::find(
            &store,
            &flightpath::backup::Which::Latest { workflow: None },
        )
        .await
        .unwrap();
        (taken, manifest)
    });
    assert!(
        taken.parts >= 3,
        "{} parts of {} bytes",
        taken.parts,
        taken.manifest.bytes
    );
    assert_eq!(manifest, taken.manifest);
    assert_eq!(server.open_multipart_uploads("backups"), 0);
    assert!(
        taken.path.starts_with("s3://backups/team/db/nightly/"),
        "{}",
        taken.path
    );

    execute(
        &staging,
        "DELETE FROM page WHERE id % 2 = 0; DROP TABLE site CASCADE",
    );
    let restored = block_on(async {
        let store = server.store("backups", "team/db").await;
        let spec = flightpath::backup::restore::RestoreSpec {
            target: "staging".into(),
            url: staging.clone(),
            suffix: "s3test".into(),
            jobs: 2,
        };
        let restored = flightpath::backup::restore::restore(
            &store, &manifest, &spec, &progress, "restore", &cancel,
        )
        .await
        .unwrap();
        flightpath::backup::restore::drop_replaced(
            "staging",
            &restored.maintenance_url,
            &restored.swapped,
        )
        .await
        .unwrap();
        restored
    });
    assert_eq!(restored.parallel, None, "S3 is streamed into pg_restore");
    assert_eq!(restored.bytes, manifest.bytes);
    assert_eq!(fingerprint(&staging), before);
    assert!(databases("backup_s3_fp").is_empty());

    // The binary, with the credentials of the AWS chain.
    let url = server.url("backups", "team/db");
    let mut test = Test::new();
    for (k, v) in server.env() {
        test = test.env(k, v);
    }
    let test = Session::new(test);
    let listed = test.run(&["backups", "list", "--store", &url]);
    ok(&listed);
    assert!(
        listed
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(&manifest.name),
        "{}",
        listed.stdout
    );
    let verified = test.run(&["backups", "verify", "latest", "--store", &url]);
    ok(&verified);

    // A changed byte in the stored object.
    let object = server
        .bucket_dir("backups")
        .join("team/db")
        .join(&manifest.dump);
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&object, &bytes).unwrap();
    let verified = test.run(&["backups", "verify", &manifest.name, "--store", &url]);
    assert_eq!(verified.code, 1, "{}", verified.stderr);
    assert!(
        verified
            .stderr
            .contains(&format!("sha256 {}", manifest.sha256)),
        "{}",
        verified.stderr
    );
    let restored = test.run(&[
        "backups", "restore", "latest", "--store", &url, "--to", &staging, "--yes",
    ]);
    assert_eq!(restored.code, 1, "{}", restored.stderr);
    assert!(
        restored.stderr.contains("is corrupted"),
        "{}",
        restored.stderr
    );
    assert_eq!(fingerprint(&staging), before);
    assert!(databases("backup_s3_fp").is_empty());
}

#[test]
fn a_backup_of_production_is_never_restored_anywhere() {
    // Production's rows reach staging only through the anonymizer: a dump
    // of a protected target, taken as the design allows, is refused by the
    // restore step (its dry run too) and by `backups restore`, and staging
    // stays as it was.
    let prod = seed("backup_unscrubbed_prod");
    let staging = seed("backup_unscrubbed_staging");
    execute(
        &prod,
        "UPDATE site SET hostname = hostname || '.production'",
    );
    let before = fingerprint(&staging);
    let test = Session::new(Test::new().workflow(
        "prod-backup",
        &format!(
            r#"
            name: prod-backup
            targets:
              prod: {{ postgres: "{prod}", protected: true }}
            steps:
              backup:
                uses: postgres.backup
                with: {{ target: prod, store: ./backups }}
            "#
        ),
    ));
    let name = back_up(&test, "prod-backup")["name"]
        .as_str()
        .unwrap()
        .to_string();
    test.workflow("restore", &restore_workflow(&staging, "latest"));
    for args in [
        &["run", "restore", "--dry-run"][..],
        &["run", "restore", "--yes"][..],
    ] {
        let out = test.run(args);
        assert_eq!(out.code, 3, "{args:?}\n{}", out.both());
        assert!(
            out.both().contains(&format!(
                "backup `{name}` was taken of the protected target `prod`: its rows were never anonymized"
            )),
            "{}",
            out.both()
        );
    }
    let out = test.run(&[
        "backups", "restore", &name, "--store", "backups", "--to", &staging, "--yes",
    ]);
    assert_eq!(out.code, 3, "{}", out.both());
    assert!(out.both().contains("never restored"), "{}", out.both());
    assert_eq!(fingerprint(&staging), before);
}

#[test]
fn backups_restore_waits_for_no_run_it_would_trample() {
    // A reset holding the server lock of staging has a new database in
    // flight; a restore that went ahead would drop it while recovering.
    let staging = seed("backup_locked");
    let test =
        Session::new(Test::new().workflow("nightly", &backup_workflow("nightly", &staging, "")));
    let name = back_up(&test, "nightly")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let before = fingerprint(&staging);
    let out = block_on(async {
        let holder = crate::support::pg::client(&staging_cluster().url("postgres")).await;
        let key = flightpath::engine::lock::server_key("backup_locked");
        holder
            .execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&flightpath::engine::lock::LOCK_CLASS, &key],
            )
            .await
            .unwrap();
        let out = test.run(&[
            "backups", "restore", &name, "--store", "backups", "--to", &staging, "--yes",
        ]);
        drop(holder);
        out
    });
    assert_eq!(out.code, 3, "{}", out.both());
    assert!(out.both().contains("--to"), "{}", out.both());
    assert_eq!(fingerprint(&staging), before);
}

/// A backup workflow into the bucket `bucket` of `server`, in a directory of
/// its own (two of them are two machines sharing one store).
fn s3_backup_session(server: &S3Server, bucket: &str, staging: &str) -> (Session, String) {
    let url = server.url(bucket, "");
    let workflow =
        backup_workflow("nightly", staging, "").replace("./backups", &format!("\"{url}\""));
    let mut test = Test::new().workflow("nightly", &workflow);
    for (k, v) in server.env() {
        test = test.env(k, v);
    }
    (Session::new(test), url)
}

/// Waits until the server shows an open multipart upload in `bucket`.
fn until_uploading(server: &S3Server, bucket: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while server.open_multipart_uploads(bucket) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload was never seen under way"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Two runs of one workflow from two places (a schedule and a hand-started
/// run) into one store: the second must not take the first's open upload
/// for one a killed run left, and both backups complete.
#[test]
fn a_second_backup_of_the_workflow_leaves_the_first_ones_upload_alone() {
    let staging = seed_big("backup_overlap");
    let server = S3Server::start();
    server.create_bucket("shared");
    let (first, url) = s3_backup_session(&server, "shared", &staging);
    let (second, _) = s3_backup_session(&server, "shared", &staging);
    let running = first.spawn(&["run", "nightly", "--yes", "--json"]);
    until_uploading(&server, "shared");

    let out = second.run(&["run", "nightly", "--yes", "--json"]);
    ok(&out);
    let report = out.json();
    let details = step(&report, "backup")["details"].clone();
    assert!(
        !details
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["label"] == "abandoned uploads"),
        "{details}"
    );
    let first_out = Output::of(running);
    ok(&first_out);
    assert_eq!(server.open_multipart_uploads("shared"), 0);
    let listed = second.run(&["backups", "list", "--store", &url]);
    assert_eq!(ok(&listed).stdout.lines().count(), 3, "{}", listed.stdout);
    let verified = second.run(&["backups", "verify", "latest", "--store", &url]);
    ok(&verified);
}

/// Ctrl-C during an upload to S3: the run ends cancelled, and no multipart
/// upload is left open once it has exited (not only after the next backup).
#[test]
fn ctrl_c_during_a_backup_to_s3_aborts_the_upload_before_exiting() {
    let staging = seed_big("backup_sigint");
    let server = S3Server::start();
    server.create_bucket("interrupted");
    let (test, url) = s3_backup_session(&server, "interrupted", &staging);
    let child = test.spawn(&["run", "nightly", "--yes", "--json"]);
    until_uploading(&server, "interrupted");
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = Output::of(child);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.open_multipart_uploads("interrupted"), 0);
    let listed = test.run(&["backups", "list", "--store", &url]);
    assert!(
        ok(&listed).stdout.starts_with("no backups in "),
        "{}",
        listed.stdout
    );
}
