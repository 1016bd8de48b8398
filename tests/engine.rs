//! The engine end to end through the real binary: concurrency of independent
//! steps, stopping on failure, `on_failure`, `resume`, the lock, Ctrl-C,
//! dry runs and the reports a run leaves behind.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cli::{Output, Test};
use crate::support::http::{HttpServer, Reply};
use crate::support::pg::{TestDb, fresh_db_sync, staging_db};

/// A shell command that marks `me` as started, then waits (bounded) for
/// `other` to have started too: both finish only if they ran at the same time.
fn rendezvous(me: &str, other: &str) -> String {
    format!(
        "touch {me}.started; for i in $(seq 1 400); do [ -f {other}.started ] && exit 0; sleep 0.05; done; \
         echo '{other} never started while {me} was running' >&2; exit 1"
    )
}

fn query_i64(db: &TestDb, sql: &str) -> i64 {
    crate::support::pg::block_on(async {
        let client = db.client().await;
        client.query_one(sql, &[]).await.unwrap().get(0)
    })
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// seed (postgres.sql) → {left, right} (shell, must overlap) → smoke (http.check);
/// `on_failure` records that it ran.
fn diamond(db: &TestDb, health_url: &str) -> String {
    format!(
        r#"
        name: diamond
        targets:
          db: {{ postgres: "{url}" }}
        steps:
          seed:
            uses: postgres.sql
            with:
              target: db
              sql: "CREATE TABLE IF NOT EXISTS seeded (at timestamptz DEFAULT now()); INSERT INTO seeded DEFAULT VALUES"
          left:
            uses: shell
            needs: [seed]
            with: {{ run: "{left}" }}
          right:
            uses: shell
            needs: [seed]
            with: {{ run: "{right}" }}
          smoke:
            uses: http.check
            needs: [left, right]
            with: {{ url: "{health_url}", status: 200, retries: 1, interval: 50ms }}
        on_failure:
          cleanup:
            uses: shell
            with: {{ run: "echo ran >> on_failure.log" }}
        "#,
        url = db.url,
        left = rendezvous("left", "right"),
        right = rendezvous("right", "left"),
    )
}

#[test]
fn diamond_runs_middle_steps_together_stops_on_failure_and_resumes() {
    let db = fresh_db_sync();
    let server = HttpServer::start();
    server.route("/health", [Reply::new(503, "down for maintenance")]);
    let test = Test::new()
        .workflow("diamond", &diamond(&db, &server.url("/health")))
        .args(["run", "diamond", "--yes", "--json"]);

    let first = test.run();
    assert_eq!(first.code, 1, "stderr:\n{}", first.stderr);
    let report = first.json();
    assert_eq!(report["status"], "failed");
    assert_eq!(
        statuses(&report),
        pairs(&[
            ("seed", "succeeded"),
            ("left", "succeeded"),
            ("right", "succeeded"),
            ("smoke", "failed"),
            ("cleanup", "succeeded"),
        ])
    );
    assert_eq!(test.read("on_failure.log"), "ran\n");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM seeded"), 1);
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert!(
        first
            .stderr
            .contains(&format!("continue it with `flightpath resume {run_id}`")),
        "{}",
        first.stderr
    );

    // The cause is fixed; resume re-runs only what did not succeed.
    server.route("/health", [Reply::new(200, "ok")]);
    std::fs::remove_file(test.dir().join("left.started")).unwrap();
    std::fs::remove_file(test.dir().join("right.started")).unwrap();
    let test = test.args(["resume", &run_id, "--yes", "--json"]);
    let second = test.run();
    assert_eq!(second.code, 0, "stderr:\n{}", second.stderr);
    let report = second.json();
    assert_eq!(report["run_id"], run_id.as_str());
    assert_eq!(report["status"], "succeeded");
    assert_eq!(
        statuses(&report),
        pairs(&[
            ("seed", "reused"),
            ("left", "reused"),
            ("right", "reused"),
            ("smoke", "succeeded"),
            ("cleanup", "pending"),
        ])
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM seeded"),
        1,
        "seed ran again"
    );
    assert!(!test.dir().join("left.started").exists(), "left ran again");
    assert_eq!(test.read("on_failure.log"), "ran\n");

    // A finished run has nothing left to resume.
    let third = test.args(["resume", &run_id]).run();
    assert_eq!(third.code, 0);
    assert_eq!(
        third.stderr,
        format!("run `{run_id}` already succeeded; nothing to resume\n")
    );
}

#[test]
fn a_failure_stops_new_steps_and_skips_dependents() {
    let test = Test::new()
        .workflow(
            "stop",
            r#"
            name: stop
            steps:
              broken: { uses: shell, with: { run: "echo about to fail; exit 7" } }
              later: { uses: shell, with: { run: "touch later.ran" } }
              after-broken: { uses: shell, needs: [broken], with: { run: "touch after.ran" } }
            "#,
        )
        .args(["run", "stop", "--yes", "--parallel-steps", "1", "--json"]);
    let out = test.run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report = out.json();
    assert_eq!(
        statuses(&report),
        pairs(&[
            ("broken", "failed"),
            ("later", "pending"),
            ("after-broken", "skipped"),
        ])
    );
    assert!(!test.dir().join("later.ran").exists());
    assert!(!test.dir().join("after.ran").exists());
    let broken = &report["steps"][0];
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("exited with code 7"),
        "{broken}"
    );
}

#[test]
fn dry_run_plans_everything_and_changes_nothing() {
    let db = fresh_db_sync();
    let test = Test::new()
        .workflow(
            "plan",
            &format!(
                r#"
                name: plan
                targets:
                  db: {{ postgres: "{url}" }}
                steps:
                  touch: {{ uses: shell, with: {{ run: "touch touched" }} }}
                  drop:
                    uses: postgres.sql
                    needs: [touch]
                    with: {{ target: db, sql: "CREATE TABLE should_not_exist (id int)" }}
                "#,
                url = db.url
            ),
        )
        .args(["plan", "plan", "--json"]);
    let out = test.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = out.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["status"], "planned");
    assert_eq!(
        statuses(&report),
        pairs(&[("touch", "planned"), ("drop", "planned")])
    );
    for step in report["steps"].as_array().unwrap() {
        let summary = step["summary"].as_str().unwrap();
        assert!(summary.starts_with("would "), "{summary}");
    }
    assert!(!test.dir().join("touched").exists());
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM pg_class WHERE relname = 'should_not_exist'"
        ),
        0
    );
}

#[test]
fn non_interactive_run_without_yes_is_refused_before_anything_runs() {
    let test = Test::new()
        .workflow(
            "guarded",
            r#"
            name: guarded
            steps:
              wipe: { uses: shell, with: { run: "touch wiped" } }
            "#,
        )
        .args(["run", "guarded"]);
    let out = test.run();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(!test.dir().join("wiped").exists());
    assert!(
        out.stderr.contains(
            "error: refused: this run changes things (steps `wipe`) and nobody can confirm it here"
        ),
        "{}",
        out.stderr
    );
}

/// A read-only SQL check changes nothing, so nobody is asked; the same
/// step writing is asked about, by name.
#[test]
fn a_read_only_sql_step_needs_no_confirmation_and_a_writing_one_does() {
    let db = crate::support::pg::fresh_db_sync();
    let workflow = |readonly: bool, sql: &str| {
        format!(
            r#"
            name: check
            targets:
              staging: {{ postgres: "{}" }}
            steps:
              look: {{ uses: postgres.sql, with: {{ target: staging, readonly: {readonly}, sql: "{sql}" }} }}
            "#,
            db.url
        )
    };
    let out = Test::new()
        .workflow("check", &workflow(true, "SELECT 1"))
        .args(["run", "check"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = Test::new()
        .workflow("check", &workflow(false, "CREATE TABLE written (x int)"))
        .args(["run", "check"])
        .run();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("(steps `look`)"), "{}", out.stderr);
    assert!(
        crate::support::pg::query_strings(
            &db.url,
            "SELECT count(*)::text FROM pg_tables WHERE tablename = 'written'"
        ) == ["0"]
    );
}

#[test]
fn reports_are_written_to_the_run_folder_and_report_dir() {
    let test = Test::new()
        .workflow(
            "hello",
            r#"
            name: hello
            description: Says hello.
            steps:
              greet: { uses: shell, with: { run: "echo hello" } }
            "#,
        )
        .args(["run", "hello", "--yes", "--report-dir", "out"]);
    let out = test.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("✓ greet"), "{}", out.stdout);
    let runs = test.runs();
    assert_eq!(runs.len(), 1);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(runs[0].join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["workflow"], "hello");
    assert_eq!(json["steps"][0]["outputs"]["exit_code"], 0);
    let markdown = test.read("out/report.md");
    assert!(markdown.contains("```mermaid"), "{markdown}");
    assert_eq!(
        markdown,
        std::fs::read_to_string(runs[0].join("report.md")).unwrap()
    );
    let journal = std::fs::read_to_string(runs[0].join("journal.jsonl")).unwrap();
    let events: Vec<String> = journal
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        events,
        [
            "run_started",
            "step_started",
            "step_finished",
            "run_finished"
        ]
    );
}

#[test]
fn secrets_never_reach_reports_or_journal() {
    let test = Test::new()
        .workflow(
            "secret",
            r#"
            name: secret
            steps:
              leak:
                uses: shell
                with:
                  run: "echo token=${API_TOKEN} url=postgres://app:hunter2pw@db/app"
            "#,
        )
        .env("API_TOKEN", "tok-5up3r-s3cret")
        .args(["run", "secret", "--yes"]);
    let out = test.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = &test.runs()[0];
    for file in ["report.json", "report.md", "journal.jsonl"] {
        let text = std::fs::read_to_string(run.join(file)).unwrap();
        assert!(!text.contains("tok-5up3r-s3cret"), "{file}:\n{text}");
        assert!(!text.contains("hunter2pw"), "{file}:\n{text}");
        assert!(text.contains("token=***"), "{file}:\n{text}");
    }
    assert!(!out.stdout.contains("tok-5up3r-s3cret"));
    assert!(!out.stderr.contains("tok-5up3r-s3cret"));
}

fn wait_for_file(test: &Test, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !test.dir().join(name).exists() {
        assert!(Instant::now() < deadline, "{name} never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const HOLD: &str = r#"
name: hold
steps:
  hold:
    uses: shell
    with: { run: "touch holding; while [ ! -f release ]; do sleep 0.05; done" }
"#;

#[test]
fn a_second_run_of_the_same_workflow_is_refused_naming_the_holder() {
    let test = Test::new().workflow("hold", HOLD);
    let first = test.spawn(&["run", "hold", "--yes"]);
    wait_for_file(&test, "holding");
    let holder = test.runs()[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();

    let test = test.args(["run", "hold", "--yes"]);
    let second = test.run();
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second.stderr.starts_with(&format!(
            "error: refused: another run of workflow `hold` against the same targets is in progress: run {holder} (pid "
        )),
        "{}",
        second.stderr
    );

    std::fs::write(test.dir().join("release"), "").unwrap();
    assert_eq!(Output::of(first).code, 0);
    // Released: the next run goes ahead (and, `release` existing, ends at once).
    assert_eq!(test.run().code, 0);
}

#[test]
fn ctrl_c_cancels_running_steps_and_names_them() {
    let test = Test::new().workflow(
        "long",
        r#"
        name: long
        steps:
          slow: { uses: shell, with: { run: "touch started; sleep 60" } }
          after: { uses: shell, needs: [slow], with: { run: "touch after.ran" } }
        "#,
    );
    let child = test.spawn(&["run", "long", "--yes", "--grace", "10s", "--json"]);
    wait_for_file(&test, "started");
    let began = Instant::now();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = Output::of(child);
    assert_eq!(out.code, 130, "{}", out.stderr);
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "cancel waited for the step"
    );
    assert!(
        out.stderr
            .contains("interrupted: cancelling slow (waiting up to 10s)"),
        "{}",
        out.stderr
    );
    let report = out.json();
    assert_eq!(report["status"], "cancelled");
    assert_eq!(
        statuses(&report),
        pairs(&[("slow", "cancelled"), ("after", "skipped")])
    );
    assert!(!test.dir().join("after.ran").exists());
}

fn system_identifier(db: &TestDb) -> String {
    crate::support::pg::block_on(async {
        let client = db.client().await;
        let sql = "SELECT system_identifier::text FROM pg_control_system()";
        client.query_one(sql, &[]).await.unwrap().get(0)
    })
}

/// `prod` (protected, never read by a step) and `staging`, whose one step
/// writes a table; `staging_extra` is more YAML under the staging target.
fn write_next_to_prod(prod: &str, staging: &str, staging_extra: &str) -> String {
    format!(
        r#"
        name: alias
        targets:
          prod: {{ postgres: "{prod}", protected: true }}
          staging: {{ postgres: "{staging}"{staging_extra} }}
        steps:
          wipe: {{ uses: postgres.sql, with: {{ target: staging, sql: "CREATE TABLE wiped (id int)" }} }}
        "#
    )
}

#[test]
fn a_protected_database_written_through_an_alias_is_refused_even_when_no_step_reads_it() {
    let prod = fresh_db_sync();
    crate::support::pg::execute(
        &prod.url,
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)",
    );
    let alias = prod.url.replace("127.0.0.1", "localhost");
    assert_ne!(alias, prod.url, "the alias must differ in spelling");
    let test = Test::new()
        .workflow("alias", &write_next_to_prod(&prod.url, &alias, ""))
        .args(["run", "alias", "--yes"]);
    let out = test.run();
    assert_eq!(
        out.stderr,
        format!(
            "error: refused: target `staging` is the same database as `prod` (system identifier {}, \
             database `{}`); writing it would change what is only to be read\n",
            system_identifier(&prod),
            prod.name
        )
    );
    assert_eq!(out.code, 3);
    assert_eq!(
        query_i64(
            &prod,
            "SELECT count(*) FROM pg_class WHERE relname = 'wiped'"
        ),
        0
    );
    assert_eq!(query_i64(&prod, "SELECT count(*) FROM orders"), 2);
    assert!(test.runs().is_empty(), "nothing may start");
}

#[test]
fn another_database_on_a_protected_server_needs_same_server_as() {
    let prod = fresh_db_sync();
    let neighbour = fresh_db_sync();
    let refused = Test::new()
        .workflow("alias", &write_next_to_prod(&prod.url, &neighbour.url, ""))
        .args(["run", "alias", "--yes"]);
    let out = refused.run();
    assert_eq!(
        out.stderr,
        format!(
            "error: refused: target `staging` is another database on the server of protected target \
             `prod` (system identifier {}); if that is intended, add `same_server_as: prod` to target \
             `staging`\n",
            system_identifier(&prod)
        )
    );
    assert_eq!(out.code, 3);
    assert!(refused.runs().is_empty(), "nothing may start");
    let count = "SELECT count(*) FROM pg_class WHERE relname = 'wiped'";
    assert_eq!(query_i64(&neighbour, count), 0);

    let accepted = Test::new()
        .workflow(
            "alias",
            &write_next_to_prod(&prod.url, &neighbour.url, ", same_server_as: prod"),
        )
        .args(["run", "alias", "--yes"]);
    accepted.run().expect_code(0);
    assert_eq!(query_i64(&neighbour, count), 1);
    assert_eq!(query_i64(&prod, count), 0);
}

#[test]
fn a_written_target_that_is_the_read_database_is_refused_before_anything_runs() {
    let db = fresh_db_sync();
    // The same database under another name and another spelling of the host.
    let alias = db.url.replace("127.0.0.1", "localhost");
    assert_ne!(alias, db.url, "the alias must differ in spelling");
    let test = Test::new()
        .workflow(
            "same",
            &format!(
                r#"
                name: same
                targets:
                  prod: {{ postgres: "{prod}", protected: true }}
                  staging: {{ postgres: "{staging}" }}
                steps:
                  look: {{ uses: postgres.sql, with: {{ target: prod, readonly: true, sql: "SELECT 1" }} }}
                  wipe: {{ uses: postgres.sql, needs: [look], with: {{ target: staging, sql: "CREATE TABLE wiped (id int)" }} }}
                "#,
                prod = db.url,
                staging = alias
            ),
        )
        .args(["run", "same", "--yes"]);
    let out = test.run();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "error: refused: target `staging` is the same database as `prod` (system identifier "
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM pg_class WHERE relname = 'wiped'"),
        0
    );
    assert!(test.runs().is_empty(), "nothing may start");
}

/// A workflow named `name` that writes `staging` (a table named after it)
/// after `before` ran.
fn writes_staging(name: &str, staging: &str, before: &str) -> String {
    format!(
        r#"
        name: {name}
        targets:
          staging: {{ postgres: "{staging}" }}
        steps:
          before: {{ uses: shell, with: {{ run: "{before}" }} }}
          write:
            uses: postgres.sql
            needs: [before]
            with: {{ target: staging, sql: "CREATE TABLE {name}_ran (id int)" }}
        "#
    )
}

fn tables_named(url: &str, like: &str) -> Vec<String> {
    crate::support::pg::query_strings(
        url,
        &format!("SELECT relname::text FROM pg_class WHERE relname LIKE '{like}' ORDER BY 1"),
    )
}

#[test]
fn two_workflows_in_two_directories_never_write_one_database_at_once() {
    let staging = staging_db("lock_two_workflows");
    let first = Test::new().workflow(
        "first",
        &writes_staging(
            "first",
            &staging,
            "touch holding; while [ ! -f release ]; do sleep 0.05; done",
        ),
    );
    let second = Test::new().workflow("second", &writes_staging("second", &staging, "true"));
    let child = first.spawn(&["run", "first", "--yes"]);
    let pid = child.id();
    wait_for_file(&first, "holding");
    let run_id = first.runs()[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();

    let refused = Output::of(second.spawn(&["run", "second", "--yes"]));
    let holder =
        flightpath::engine::lock::holder_name(&run_id, &flightpath::engine::lock::host_name(), pid);
    assert_eq!(
        refused.stderr,
        format!(
            "error: refused: another run is writing database `lock_two_workflows` (target `staging`) \
             on its server: {holder}; wait for it to end\n"
        )
    );
    assert_eq!(refused.code, 3);
    assert!(second.runs().is_empty(), "the refused run may not start");
    // A plan is not blocked by the lock, and takes none.
    Output::of(second.spawn(&["plan", "second"])).expect_code(0);

    std::fs::write(first.dir().join("release"), "").unwrap();
    Output::of(child).expect_code(0);
    assert_eq!(tables_named(&staging, "%_ran"), ["first_ran"]);
    Output::of(second.spawn(&["run", "second", "--yes"])).expect_code(0);
    assert_eq!(tables_named(&staging, "%_ran"), ["first_ran", "second_ran"]);
}
