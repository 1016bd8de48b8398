//! The step kinds `shell`, `postgres.sql`, `http.check` and `notify` through
//! the real binary, against a real PostgreSQL database and the in-process
//! HTTP server: what each does, what its dry run leaves untouched, and what
//! its failures say.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cli::{Output, Test, block, step};
use crate::support::http::{HttpServer, Reply};
use crate::support::pg::{DATABASE_URL_VAR, TestDb, block_on, fresh_db_sync};

/// A password the test server ignores (trust authentication) but that must
/// never appear in any output.
const PASSWORD: &str = "hunter22-secret";

fn execute(db: &TestDb, sql: &str) {
    crate::support::pg::execute(&db.url, sql)
}

fn names(db: &TestDb) -> Vec<String> {
    block_on(async {
        let client = db.client().await;
        let rows = client
            .query("SELECT name FROM site ORDER BY id", &[])
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    })
}

/// A database with a `site` table of two rows.
fn sites_db() -> TestDb {
    let db = fresh_db_sync();
    execute(
        &db,
        "CREATE TABLE site (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO site VALUES (1, 'www.example.org'), (2, 'shop.example.org');",
    );
    db
}

/// The database's URL with [`PASSWORD`] in it (the local test cluster's
/// URLs have none).
fn url_with_password(db: &TestDb) -> String {
    let url = db
        .url
        .replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1);
    assert!(
        url.contains(PASSWORD) || std::env::var_os(DATABASE_URL_VAR).is_some(),
        "the test cluster's URL changed shape: {}",
        db.url
    );
    url
}

fn everything(out: &Output) -> String {
    format!("{}\n{}", out.stdout, out.stderr)
}

// --- shell ------------------------------------------------------------------

#[test]
fn shell_captures_output_with_env_and_dir() {
    let test = Test::new()
        .file("sub/marker.txt", "here\n")
        .workflow(
            "sh",
            r#"
            name: sh
            steps:
              hello:
                uses: shell
                with:
                  run: "echo \"$GREETING\"; ls; echo to-stderr >&2"
                  env: { GREETING: hello }
                  dir: sub
            "#,
        )
        .args(["run", "sh", "--yes", "--json"]);
    let out = test.run();
    out.expect_code(0);
    let report = out.json();
    let hello = step(&report, "hello");
    assert_eq!(hello["status"], "succeeded");
    assert_eq!(hello["outputs"]["exit_code"], 0);
    assert_eq!(
        hello["summary"],
        r#"ran `echo "$GREETING"; ls; echo to-stderr >&2`"#
    );
    // stdout and stderr are two pipes: their lines arrive in either order.
    let mut lines: Vec<&str> = block(hello, "output").lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["hello", "marker.txt", "to-stderr"]);
}

#[test]
fn shell_failure_shows_the_tail_of_its_output() {
    let test = Test::new()
        .workflow(
            "sh",
            r#"
            name: sh
            steps:
              migrate:
                uses: shell
                with: { run: "for i in $(seq 1 30); do echo line $i; done; exit 4" }
            "#,
        )
        .args(["run", "sh", "--yes"]);
    let out = test.run();
    out.expect_code(1);
    let all = everything(&out);
    assert!(
        all.contains("`for i in $(seq 1 30); do echo line $i; done; exit 4` exited with code 4"),
        "{all}"
    );
    assert!(all.contains("output (last 20 lines)"), "{all}");
    assert!(all.contains("line 30") && all.contains("line 11"), "{all}");
    assert!(!all.contains("line 10\n"), "only the last 20 lines: {all}");
}

#[test]
fn shell_timeout_kills_the_command_and_what_it_started() {
    let test = Test::new()
        .workflow(
            "sh",
            r#"
            name: sh
            steps:
              hang:
                uses: shell
                with: { run: "echo started; sleep 30 & sleep 30", timeout: 300ms }
            "#,
        )
        .args(["run", "sh", "--yes"]);
    let started = Instant::now();
    let out = test.run();
    out.expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let all = everything(&out);
    assert!(
        all.contains("`echo started; sleep 30 & sleep 30` timed out after 300ms"),
        "{all}"
    );
    assert!(all.contains("started"), "{all}");
}

#[test]
fn shell_plan_shows_env_keys_but_never_values() {
    let test = Test::new()
        .workflow(
            "sh",
            r#"
            name: sh
            steps:
              deploy:
                uses: shell
                with:
                  run: "touch ran.txt"
                  env: { API_TOKEN: "tok-very-secret-value" }
            "#,
        )
        .args(["run", "sh", "--dry-run", "--json"]);
    let out = test.run();
    out.expect_code(0);
    let report = out.json();
    let deploy = step(&report, "deploy");
    assert_eq!(deploy["summary"], "would run `touch ran.txt`");
    assert_eq!(block(deploy, "command"), "touch ran.txt");
    assert!(!everything(&out).contains("tok-very-secret-value"));
    assert!(everything(&out).contains("API_TOKEN"));
    assert!(!test.dir().join("ran.txt").exists(), "a plan runs nothing");
}

// --- postgres.sql -----------------------------------------------------------

/// A workflow with a protected `prod` and a writable `staging` (databases on
/// the same test server, so staging says `same_server_as: prod`), and one
/// `postgres.sql` step.
fn sql_workflow(target: &str, sql: &str, readonly: bool) -> String {
    format!(
        r#"
        name: sql
        targets:
          prod:
            postgres: ${{PROD_DATABASE_URL}}
            protected: true
          staging:
            postgres: ${{STAGING_DATABASE_URL}}
            same_server_as: prod
        steps:
          sites:
            uses: postgres.sql
            with:
              target: {target}
              readonly: {readonly}
              sql: "{sql}"
        "#
    )
}

/// The step's target is `db`; the other target is another database (a
/// written target may not be the protected one).
fn sql_test(db: &TestDb, target: &str, sql: &str, readonly: bool) -> Test {
    let other = fresh_db_sync();
    let (prod, staging) = if target == "prod" {
        (db, &other)
    } else {
        (&other, db)
    };
    Test::new()
        .workflow("sql", &sql_workflow(target, sql, readonly))
        .env("STAGING_DATABASE_URL", url_with_password(staging))
        .env("PROD_DATABASE_URL", url_with_password(prod))
}

#[test]
fn postgres_sql_applies_and_counts_rows() {
    let db = sites_db();
    let out = sql_test(
        &db,
        "staging",
        "UPDATE site SET name = replace(name, 'example.org', 'staging.example.org'); DELETE FROM site WHERE id = 99",
        false,
    )
    .args(["run", "sql", "--yes", "--json"])
    .run();
    out.expect_code(0);
    let report = out.json();
    let sites = step(&report, "sites");
    assert_eq!(sites["outputs"]["rows"], 2);
    assert_eq!(sites["summary"], "ran SQL on `staging`: 2 rows");
    assert_eq!(
        names(&db),
        ["www.staging.example.org", "shop.staging.example.org"]
    );
    assert!(!everything(&out).contains(PASSWORD));
}

#[test]
fn postgres_sql_dry_run_explains_and_changes_nothing() {
    let db = sites_db();
    let out = sql_test(&db, "staging", "UPDATE site SET name = 'x'", false)
        .args(["run", "sql", "--dry-run", "--json"])
        .run();
    out.expect_code(0);
    let report = out.json();
    let sites = step(&report, "sites");
    assert_eq!(sites["summary"], "would run SQL on `staging`");
    assert_eq!(block(sites, "sql"), "UPDATE site SET name = 'x'");
    let plan = block(sites, "plan");
    assert!(plan.starts_with("Update on site"), "{plan}");
    assert!(plan.contains("estimated rows: "), "{plan}");
    assert_eq!(names(&db), ["www.example.org", "shop.example.org"]);
}

#[test]
fn postgres_sql_dry_run_cannot_be_tricked_into_committing() {
    // A COMMIT in the middle would end a read-only transaction early if the
    // plan sent the SQL as a simple query; EXPLAIN refuses several statements.
    let db = sites_db();
    let out = sql_test(
        &db,
        "staging",
        "SELECT 1; COMMIT; UPDATE site SET name = 'x'",
        false,
    )
    .args(["run", "sql", "--dry-run", "--json"])
    .run();
    out.expect_code(0);
    let report = out.json();
    let sites = step(&report, "sites");
    assert!(
        sites["details"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["title"] != "plan"),
        "several statements are not explained: {sites:#}"
    );
    assert_eq!(names(&db), ["www.example.org", "shop.example.org"]);
}

#[test]
fn postgres_sql_readonly_reads_a_protected_target() {
    let db = sites_db();
    let out = sql_test(&db, "prod", "SELECT * FROM site", true)
        .args(["run", "sql", "--yes", "--json"])
        .run();
    out.expect_code(0);
    let report = out.json();
    assert_eq!(step(&report, "sites")["outputs"]["rows"], 2);
}

#[test]
fn postgres_sql_write_to_a_protected_target_is_refused_at_validation() {
    let db = sites_db();
    let out = sql_test(&db, "prod", "UPDATE site SET name = 'x'", false)
        .args(["run", "sql", "--yes"])
        .run();
    out.expect_code(2);
    assert!(
        out.stderr.contains("flightpath::target::protected"),
        "{}",
        out.stderr
    );
    assert_eq!(names(&db), ["www.example.org", "shop.example.org"]);
}

#[test]
fn postgres_sql_error_has_the_server_text_and_no_password() {
    let db = sites_db();
    let out = sql_test(
        &db,
        "staging",
        "UPDATE site SET name = 'a' WHERE id = 1; UPDATE sitez SET name = 'b'",
        false,
    )
    .args(["run", "sql", "--yes"])
    .run();
    out.expect_code(1);
    let all = everything(&out);
    assert!(
        all.contains(
            "postgres target `staging`: ERROR: relation \"sitez\" does not exist (SQLSTATE 42P01) at line 1, column 49"
        ),
        "{all}"
    );
    assert!(!all.contains(PASSWORD), "{all}");
    // One transaction: the first UPDATE was rolled back with the second.
    assert_eq!(names(&db), ["www.example.org", "shop.example.org"]);
}

#[test]
fn postgres_sql_unreachable_target_names_it_without_the_password() {
    let out = Test::new()
        .workflow("sql", &sql_workflow("staging", "SELECT 1", false))
        .env(
            "STAGING_DATABASE_URL",
            format!("postgres://app:{PASSWORD}@127.0.0.1:1/app"),
        )
        .env("PROD_DATABASE_URL", "postgres://app@127.0.0.1:2/app")
        .args(["run", "sql", "--dry-run"])
        .run();
    out.expect_code(1);
    let all = everything(&out);
    assert!(
        all.contains("could not connect (postgres://app:***@127.0.0.1:1/app): connection refused"),
        "{all}"
    );
    assert!(!all.contains(PASSWORD), "{all}");
}

fn active_sleeps(db: &TestDb) -> i64 {
    block_on(async {
        let client = db.client().await;
        let sql = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND state = 'active' AND query LIKE '%pg_sleep(60)%'";
        client.query_one(sql, &[]).await.unwrap().get(0)
    })
}

#[test]
fn postgres_sql_ctrl_c_cancels_the_query_on_the_server() {
    let db = sites_db();
    let test = Test::new()
        .workflow(
            "sql",
            &sql_workflow("staging", "SELECT pg_sleep(60)", false),
        )
        .env("STAGING_DATABASE_URL", &db.url)
        .env("PROD_DATABASE_URL", &fresh_db_sync().url);
    let child = test.spawn(&["run", "sql", "--yes"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while active_sleeps(&db) == 0 {
        assert!(Instant::now() < deadline, "the query never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let interrupted = Instant::now();
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = Output::of(child);
    out.expect_code(130);
    assert!(interrupted.elapsed() < Duration::from_secs(10));
    // Closing the connection alone would leave pg_sleep running on the
    // server; the cancel request stops it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while active_sleeps(&db) > 0 {
        assert!(
            Instant::now() < deadline,
            "the query is still running on the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// --- http.check -------------------------------------------------------------

fn http_workflow(url: &str, extra: &str) -> String {
    format!(
        r#"
        name: http
        steps:
          smoke:
            uses: http.check
            with: {{ url: "{url}", interval: 20ms, timeout: 2s{extra} }}
        "#
    )
}

#[test]
fn http_check_retries_until_the_page_is_up() {
    let server = HttpServer::start();
    server.flaky("/health", 2, "<h1>Welcome</h1>");
    let out = Test::new()
        .workflow(
            "http",
            &http_workflow(&server.url("/health"), ", retries: 5, contains: Welcome"),
        )
        .args(["run", "http", "--yes", "--json"])
        .run();
    out.expect_code(0);
    let report = out.json();
    let smoke = step(&report, "smoke");
    assert_eq!(smoke["outputs"]["status"], 200);
    assert_eq!(server.hits("/health"), 3);
    let rows = smoke["details"][0]["rows"].as_array().unwrap();
    let results: Vec<&str> = rows.iter().map(|r| r[1].as_str().unwrap()).collect();
    assert_eq!(results, ["503", "503", "200"]);
}

#[test]
fn http_check_gives_up_after_its_retries() {
    let server = HttpServer::start();
    server.route("/down", [Reply::new(503, "unavailable")]);
    let url = server.url("/down");
    let out = Test::new()
        .workflow("http", &http_workflow(&url, ", retries: 2"))
        .args(["run", "http", "--yes"])
        .run();
    out.expect_code(1);
    let all = everything(&out);
    assert!(
        all.contains(&format!(
            "GET {url}: expected 200, got 503 after 3 attempts"
        )),
        "{all}"
    );
    assert_eq!(server.hits("/down"), 3);
}

#[test]
fn http_check_plan_makes_no_request() {
    let server = HttpServer::start();
    let url = server.url("/health");
    let out = Test::new()
        .workflow(
            "http",
            &http_workflow(&url, ", retries: 3, contains: Welcome"),
        )
        .args(["run", "http", "--dry-run", "--json"])
        .run();
    out.expect_code(0);
    let report = out.json();
    assert_eq!(
        step(&report, "smoke")["summary"].as_str().unwrap(),
        format!("would GET {url} expecting 200 containing \"Welcome\", up to 3 retries")
    );
    assert_eq!(server.requests().len(), 0);
}

// --- notify -----------------------------------------------------------------

fn notify_workflow(hook: &str) -> String {
    format!(
        r#"
        name: notify
        steps:
          hello:
            uses: shell
            with: {{ run: "echo hi" }}
          hook:
            uses: notify
            needs: [hello]
            with:
              to: "{hook}"
              message: "{{workflow}}: {{status}} (failed: {{failed}}) exit ${{steps.hello.exit_code}} {{{{ok}}}}\n{{summary}}"
          file:
            uses: notify
            needs: [hook]
            with: {{ to: notify.log, message: "run {{run_id}} {{status}}" }}
        "#
    )
}

#[test]
fn notify_posts_to_a_webhook_and_appends_to_a_file() {
    let server = HttpServer::start();
    let hook = server.url("/services/T0/B0/secret-path");
    let test = Test::new()
        .workflow("notify", &notify_workflow(&hook))
        .args(["run", "notify", "--yes", "--json"]);
    let out = test.run();
    out.expect_code(0);

    let posted = server.posted("/services/T0/B0/secret-path");
    assert_eq!(posted.len(), 1);
    let body: Value = serde_json::from_str(&posted[0]).unwrap();
    let text = body["text"].as_str().unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(first, "notify: succeeded (failed: none) exit 0 {ok}");
    assert!(
        text.lines().nth(1).unwrap().starts_with("✓ hello (shell) "),
        "{text}"
    );
    assert!(text.ends_with("— ran `echo hi`"), "{text}");

    let report = out.json();
    let summary = step(&report, "hook")["summary"].as_str().unwrap();
    assert_eq!(summary, format!("posted to {}", server.url("/…")));
    assert!(!everything(&out).contains("secret-path"));

    let run_id = report["run_id"].as_str().unwrap();
    assert_eq!(test.read("notify.log"), format!("run {run_id} succeeded\n"));
}

#[test]
fn notify_plan_sends_and_writes_nothing() {
    let server = HttpServer::start();
    let test = Test::new()
        .workflow("notify", &notify_workflow(&server.url("/hook")))
        .args(["run", "notify", "--dry-run", "--json"]);
    let out = test.run();
    out.expect_code(0);
    let report = out.json();
    assert_eq!(
        step(&report, "hook")["summary"].as_str().unwrap(),
        format!("would send to {}", server.url("/…"))
    );
    assert_eq!(server.requests().len(), 0);
    assert!(!test.dir().join("notify.log").exists());
}

#[test]
fn notify_webhook_failure_shows_status_and_body() {
    let server = HttpServer::start();
    server.route("/hook", [Reply::new(500, "invalid_token")]);
    let out = Test::new()
        .workflow(
            "notify",
            &format!(
                r#"
                name: notify
                steps:
                  tell:
                    uses: notify
                    with: {{ to: "{}", message: done }}
                "#,
                server.url("/hook")
            ),
        )
        .args(["run", "notify", "--yes"])
        .run();
    out.expect_code(1);
    let all = everything(&out);
    assert!(
        all.contains(&format!(
            "POST {}: answered 500 Internal Server Error: invalid_token",
            server.url("/…")
        )),
        "{all}"
    );
}

#[test]
fn notify_unknown_placeholder_is_a_validation_error() {
    let out = Test::new()
        .workflow(
            "notify",
            r#"
            name: notify
            steps:
              tell:
                uses: notify
                with: { message: "done: {sumary}" }
            "#,
        )
        .args(["validate", "notify"])
        .run();
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("notify message: unknown placeholder `{sumary}`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `summary`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn approve_refuses_without_a_person_and_passes_with_yes() {
    let workflow = r#"
        name: gate
        steps:
          ask:
            uses: approve
            with: { message: "Reset staging now?" }
          tell:
            uses: notify
            needs: [ask]
            with: { to: stdout, message: "approved" }
    "#;
    let test = Test::new().workflow("gate", workflow);
    let refused = test.args(["run", "gate"]).run();
    refused.expect_code(3);
    assert!(
        refused.stderr.contains(
            "step `ask` needs approval (\"Reset staging now?\"), but this run is not interactive; pass --yes to approve"
        ),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("approved\n"), "{}", refused.stdout);

    let approved = Test::new()
        .workflow("gate", workflow)
        .args(["run", "gate", "--yes", "--json"])
        .run();
    approved.expect_code(0);
    let report = approved.json();
    assert_eq!(step(&report, "ask")["outputs"]["approved_by"], "--yes");
    assert_eq!(step(&report, "tell")["status"], "succeeded");
}

// --- interpolation by context -------------------------------------------------

#[test]
fn a_variable_in_a_shell_command_is_one_word_never_code() {
    let test = Test::new()
        .workflow(
            "sh",
            r#"
            name: sh
            steps:
              args:
                uses: shell
                with: { run: "printf '[%s]\n' ${V} ${Q} > args.txt" }
            "#,
        )
        .args([
            "run",
            "sh",
            "--yes",
            "--var",
            "V=x; touch pwned",
            "--var",
            "Q=it's $(touch pwned2) `touch pwned3`",
        ]);
    test.run().expect_code(0);
    for file in ["pwned", "pwned2", "pwned3"] {
        assert!(!test.dir().join(file).exists(), "{file} was created");
    }
    assert_eq!(
        test.read("args.txt"),
        "[x; touch pwned]\n[it's $(touch pwned2) `touch pwned3`]\n"
    );
}

#[test]
fn a_step_output_in_a_shell_command_is_quoted_when_it_runs() {
    let test = Test::new()
        .workflow(
            "sh",
            r#"
            name: sh
            steps:
              first: { uses: shell, with: { run: "exit 0" } }
              second:
                uses: shell
                needs: [first]
                with: { run: "printf '[%s]\n' ${steps.first.exit_code} ${raw:steps.first.exit_code} > out.txt" }
            "#,
        )
        .args(["run", "sh", "--yes"]);
    test.run().expect_code(0);
    assert_eq!(test.read("out.txt"), "[0]\n[0]\n");
}

#[test]
fn a_sql_payload_in_a_variable_arrives_as_a_literal() {
    let db = fresh_db_sync();
    execute(&db, "CREATE TABLE notes (body text)");
    // With standard_conforming_strings off, a backslash escapes the next
    // character: `\'` inside a plain '…' literal would end it early.
    execute(
        &db,
        &format!(
            "ALTER DATABASE \"{}\" SET standard_conforming_strings = off",
            db.name
        ),
    );
    let plain = "x'); DROP TABLE notes; --";
    let backslash = r"\'); DROP TABLE notes; --";
    let test = Test::new()
        .workflow(
            "sql",
            r#"
            name: sql
            targets:
              staging: { postgres: "${STAGING_DATABASE_URL}" }
            steps:
              note:
                uses: postgres.sql
                with: { target: staging, sql: "INSERT INTO notes VALUES (${A}), (${B})" }
            "#,
        )
        .env("STAGING_DATABASE_URL", &db.url)
        .args([
            "run".to_string(),
            "sql".into(),
            "--yes".into(),
            "--var".into(),
            format!("A={plain}"),
            "--var".into(),
            format!("B={backslash}"),
        ]);
    let out = test.run();
    out.expect_code(0);
    let bodies = crate::support::pg::query_strings(&db.url, "SELECT body FROM notes ORDER BY body");
    let mut expected = vec![plain.to_string(), backslash.to_string()];
    expected.sort();
    assert_eq!(bodies, expected);
}

#[test]
fn raw_inserts_text_as_it_is_and_validate_names_every_use() {
    let test = Test::new().workflow(
        "raw",
        r#"
name: raw
steps:
  pipeline:
    uses: shell
    with: { run: "${raw:CMD} > raw.txt" }
  count:
    uses: shell
    needs: [pipeline]
    with: { run: "wc -l < raw.txt > ${raw:OUT:-count.txt}" }
"#,
    );
    let cmd = "CMD=printf 'a\\nb\\n' | sort -r";
    let validated = Output::of(test.spawn(&["validate", "raw", "--var", cmd]));
    validated.expect_code(0);
    assert_eq!(validated.stdout, "raw is valid: workflow `raw`, 2 steps\n");
    assert_eq!(
        validated.stderr,
        "note: `${raw:CMD}` at workflows/raw.yaml:5:19 (`with` of step `pipeline` (shell) `run`) \
         is inserted as it is, unquoted: make sure its value cannot become code\n\
         note: `${raw:OUT}` at workflows/raw.yaml:9:37 (`with` of step `count` (shell) `run`) \
         is inserted as it is, unquoted: make sure its value cannot become code\n"
    );
    Output::of(test.spawn(&["run", "raw", "--yes", "--var", cmd])).expect_code(0);
    assert_eq!(test.read("raw.txt"), "b\na\n");
    assert_eq!(test.read("count.txt").trim(), "2");
}
