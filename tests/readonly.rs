//! `postgres.sql { readonly: true }` on a protected target, attacked as a
//! hostile user would: every way found to write production through it is
//! refused before a statement is sent (exit 3, the refusal asserted whole),
//! and production is the same afterwards: its rows, its large objects, its
//! statistics, a session of its own still alive, no file on the server.

use tokio_postgres::Client;

use crate::support::cli::{Output, Test, block, step};
use crate::support::pg::{TestDb, fresh_db_sync};

/// What a read-only step may run, as every refusal says it.
const ALLOWED: &str = "a read-only step runs only queries: SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN without ANALYZE";

/// A production database with a session of its own (the victim an attack
/// would end), kept alive on its own runtime for the test's length.
struct Production {
    db: TestDb,
    runtime: tokio::runtime::Runtime,
    victim: Client,
    victim_pid: i32,
}

impl Production {
    fn new() -> Production {
        let db = fresh_db_sync();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let victim = runtime.block_on(db.client());
        runtime
            .block_on(victim.batch_execute(
                "CREATE TABLE site (id int PRIMARY KEY, name text NOT NULL);
                 INSERT INTO site VALUES (1, 'www.example.org'), (2, 'shop.example.org');
                 CREATE FUNCTION sneaky() RETURNS int LANGUAGE plpgsql
                   AS $$ BEGIN INSERT INTO site VALUES (9, 'sneaky'); RETURN 1; END $$;
                 CREATE FUNCTION end_session(integer) RETURNS boolean
                   LANGUAGE internal STRICT AS 'pg_terminate_backend';",
            ))
            .unwrap();
        let victim_pid = runtime
            .block_on(victim.query_one("SELECT pg_backend_pid()", &[]))
            .unwrap()
            .get(0);
        Production {
            db,
            runtime,
            victim,
            victim_pid,
        }
    }

    /// Rows, large objects, statistics and sessions, as one comparable value.
    fn fingerprint(&self) -> Vec<String> {
        let sql = "SELECT (SELECT md5(string_agg(s::text, ',' ORDER BY id)) FROM site s), \
                          (SELECT count(*) FROM pg_largeobject_metadata)::text, \
                          (SELECT coalesce(stats_reset::text, 'never') FROM pg_stat_database \
                           WHERE datname = current_database()), \
                          (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')::text, \
                          (SELECT count(*) FROM pg_replication_slots)::text";
        let row = self
            .runtime
            .block_on(self.victim.query_one(sql, &[]))
            .expect("the victim session is still alive");
        (0..5).map(|i| row.get::<_, String>(i)).collect()
    }

    fn test(&self, sql: &str) -> Test {
        // Under `sql: |`, deeper than the workflow's own indentation.
        let indented: String = sql
            .lines()
            .map(|l| format!("{}{}\n", " ".repeat(28), l.trim()))
            .collect();
        Test::new()
            .workflow(
                "peek",
                &format!(
                    "
                    name: peek
                    targets:
                      prod:
                        postgres: ${{PROD_DATABASE_URL}}
                        protected: true
                    steps:
                      peek:
                        uses: postgres.sql
                        with:
                          target: prod
                          readonly: true
                          sql: |
{indented}"
                ),
            )
            .env("PROD_DATABASE_URL", &self.db.url)
    }

    fn run(&self, sql: &str) -> Output {
        self.test(sql).args(["run", "peek", "--yes"]).run()
    }
}

#[test]
fn every_attack_on_a_read_only_step_is_refused_and_production_is_unchanged() {
    let prod = Production::new();
    let before = prod.fingerprint();
    let outside = tempfile::tempdir().unwrap();
    let written = outside.path().join("stolen.csv");
    let victim = prod.victim_pid;
    let insert = "INSERT INTO site VALUES (3, 'x')";
    let transaction =
        format!("is transaction control, which could end the read-only transaction; {ALLOWED}");
    let setting = format!("changes a setting, which could turn read-only off; {ALLOWED}");
    let escapes = "and a read-only transaction does not stop that";
    let attacks: Vec<(String, String)> = vec![
        (
            format!("SET TRANSACTION READ WRITE; {insert}"),
            format!("statement 1 `SET TRANSACTION READ WRITE` {setting}"),
        ),
        (
            format!("ROLLBACK; {insert}"),
            format!("statement 1 `ROLLBACK` {transaction}"),
        ),
        (
            format!("COMMIT; BEGIN READ WRITE; {insert}; COMMIT"),
            format!("statement 1 `COMMIT` {transaction}"),
        ),
        (
            format!("SELECT 1; END; START TRANSACTION READ WRITE; {insert}; END"),
            format!("statement 2 `END` {transaction}"),
        ),
        (
            format!("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; COMMIT; {insert}"),
            format!(
                "statement 1 `SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE` {setting}"
            ),
        ),
        (
            format!("SET default_transaction_read_only = off; COMMIT; {insert}"),
            format!("statement 1 `SET default_transaction_read_only = off` {setting}"),
        ),
        (
            format!("RESET ALL; COMMIT; {insert}"),
            format!("statement 1 `RESET ALL` {setting}"),
        ),
        (
            format!(
                "SELECT set_config('default_transaction_read_only', 'off', false); COMMIT; {insert}"
            ),
            format!("statement 2 `COMMIT` {transaction}"),
        ),
        (
            "SELECT set_config('default_transaction_read_only', 'off', false)".into(),
            format!(
                "statement 1 `SELECT set_config('default_transaction_read_only', 'off', false)` calls `pg_catalog.set_config`, which changes a setting (it could turn read-only off), {escapes}"
            ),
        ),
        (
            format!("SET transaction_read_only = off; {insert}"),
            format!("statement 1 `SET transaction_read_only = off` {setting}"),
        ),
        (
            format!("SELECT 1 /* ; */ ; {insert}"),
            format!("statement 2 `{insert}` is `INSERT`, not a query; {ALLOWED}"),
        ),
        (
            "WITH gone AS (DELETE FROM site RETURNING *) SELECT count(*) FROM gone".into(),
            format!(
                "statement 1 `WITH gone AS (DELETE FROM site RETURNING *) SELECT count(*) FROM gone` holds a data-modifying `DELETE`; {ALLOWED}"
            ),
        ),
        (
            "SELECT * INTO copied FROM site".into(),
            format!(
                "statement 1 `SELECT * INTO copied FROM site` creates a table (`SELECT … INTO`); {ALLOWED}"
            ),
        ),
        (
            format!("SELECT pg_terminate_backend({victim})"),
            format!(
                "statement 1 `SELECT pg_terminate_backend({victim})` calls `pg_catalog.pg_terminate_backend`, which ends another session, {escapes}"
            ),
        ),
        (
            format!("SELECT pg_catalog.PG_TERMINATE_BACKEND({victim})"),
            format!(
                "statement 1 `SELECT pg_catalog.PG_TERMINATE_BACKEND({victim})` calls `pg_catalog.pg_terminate_backend`, which ends another session, {escapes}"
            ),
        ),
        (
            format!("SELECT \"pg_terminate_backend\"({victim})"),
            format!(
                "statement 1 `SELECT \"pg_terminate_backend\"({victim})` calls `pg_catalog.pg_terminate_backend`, which ends another session, {escapes}"
            ),
        ),
        (
            format!("SELECT ok FROM pg_terminate_backend({victim}) AS ok"),
            format!(
                "statement 1 `SELECT ok FROM pg_terminate_backend({victim}) AS ok` calls `pg_catalog.pg_terminate_backend`, which ends another session, {escapes}"
            ),
        ),
        (
            format!("SELECT end_session({victim})"),
            format!(
                "statement 1 `SELECT end_session({victim})` calls `public.end_session`, which ends another session, {escapes}"
            ),
        ),
        (
            format!("SELECT pg_cancel_backend({victim})"),
            format!(
                "statement 1 `SELECT pg_cancel_backend({victim})` calls `pg_catalog.pg_cancel_backend`, which cancels another session's query, {escapes}"
            ),
        ),
        (
            "SELECT lo_from_bytea(0, 'personal')".into(),
            format!(
                "statement 1 `SELECT lo_from_bytea(0, 'personal')` calls `pg_catalog.lo_from_bytea`, which creates a large object, {escapes}"
            ),
        ),
        (
            "SELECT lo_create(0)".into(),
            format!(
                "statement 1 `SELECT lo_create(0)` calls `pg_catalog.lo_create`, which creates a large object, {escapes}"
            ),
        ),
        (
            format!("COPY (SELECT * FROM site) TO '{}'", written.display()),
            format!(
                "statement 1 `COPY (SELECT * FROM site) TO '{}'` is `COPY`, not a query; {ALLOWED}",
                written.display()
            ),
        ),
        (
            "CHECKPOINT".into(),
            format!("statement 1 `CHECKPOINT` is `CHECKPOINT`, not a query; {ALLOWED}"),
        ),
        (
            "SELECT pg_switch_wal()".into(),
            format!(
                "statement 1 `SELECT pg_switch_wal()` calls `pg_catalog.pg_switch_wal`, which switches the server's WAL file, {escapes}"
            ),
        ),
        (
            "SELECT pg_reload_conf()".into(),
            format!(
                "statement 1 `SELECT pg_reload_conf()` calls `pg_catalog.pg_reload_conf`, which reloads the server's configuration, {escapes}"
            ),
        ),
        (
            "SELECT pg_stat_reset()".into(),
            format!(
                "statement 1 `SELECT pg_stat_reset()` calls `pg_catalog.pg_stat_reset`, which resets the server's statistics, {escapes}"
            ),
        ),
        (
            "SELECT pg_advisory_lock(42)".into(),
            format!(
                "statement 1 `SELECT pg_advisory_lock(42)` calls `pg_catalog.pg_advisory_lock`, which takes or releases an advisory lock, which can outlive the statement, {escapes}"
            ),
        ),
        (
            "SELECT 1; SELECT pg_notify('jobs', 'go')".into(),
            format!(
                "statement 2 `SELECT pg_notify('jobs', 'go')` calls `pg_catalog.pg_notify`, which notifies other sessions, {escapes}"
            ),
        ),
        (
            format!(
                "SELECT query_to_xml('SELECT pg_terminate_backend({victim})', true, false, '')"
            ),
            format!(
                "statement 1 `SELECT query_to_xml('SELECT pg_terminate_backend({victim})', true, false, '')` calls `pg_catalog.query_to_xml`, a volatile server function that is not known to be read-only, so its effects could escape the transaction"
            ),
        ),
        (
            format!("EXPLAIN ANALYZE SELECT pg_terminate_backend({victim})"),
            format!(
                "statement 1 `EXPLAIN ANALYZE SELECT pg_terminate_backend({victim})` is EXPLAIN ANALYZE, which runs the statement it explains; {ALLOWED}"
            ),
        ),
        (
            format!("SELECT ({victim}).pg_terminate_backend"),
            format!(
                "statement 1 `SELECT ({victim}).pg_terminate_backend` calls `pg_catalog.pg_terminate_backend`, which ends another session, {escapes}"
            ),
        ),
        (
            "SELECT ('flightpath_slot'::name).pg_create_physical_replication_slot".into(),
            format!(
                "statement 1 `SELECT ('flightpath_slot'::name).pg_create_physical_replication_slot` calls `pg_catalog.pg_create_physical_replication_slot`, which creates a replication slot, {escapes}"
            ),
        ),
        (
            format!("SELECT U&\"pg_terminate_backen\\0064\"({victim})"),
            format!(
                "statement 1 `SELECT U&\"pg_terminate_backen\\0064\"({victim})` names something with Unicode escapes (`U&\"…\"`), which the guard cannot read as the server does; write the name plainly; {ALLOWED}"
            ),
        ),
        (
            format!("EXPLAIN (ANALYSE) {insert}"),
            format!(
                "statement 1 `EXPLAIN (ANALYSE) {insert}` is EXPLAIN ANALYZE, which runs the statement it explains; {ALLOWED}"
            ),
        ),
        (
            "SELECT txid_current()".into(),
            format!(
                "statement 1 `SELECT txid_current()` calls `pg_catalog.txid_current`, which assigns a transaction ID, which writes to the WAL, {escapes}"
            ),
        ),
        (
            "SELECT * FROM site FOR UPDATE".into(),
            format!(
                "statement 1 `SELECT * FROM site FOR UPDATE` locks rows (`FOR UPDATE` / `FOR SHARE`); {ALLOWED}"
            ),
        ),
    ];
    for (sql, why) in &attacks {
        let out = prod.run(sql);
        assert_eq!(
            (out.code, last_error(&out)),
            (
                3,
                format!(
                    "error: refused: `postgres.sql` on `prod` is read-only (`readonly: true`): {why}"
                )
            ),
            "{sql}\n{}",
            out.stderr
        );
        assert_eq!(prod.fingerprint(), before, "{sql} changed production");
    }
    assert!(!written.exists(), "a file was written on the server");
}

/// The last line of stderr that starts with `error:`.
fn last_error(out: &Output) -> String {
    out.stderr
        .lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_plan_refuses_the_same_way_before_anything_runs() {
    let prod = Production::new();
    let out = prod
        .test(&format!(
            "SELECT 1; SELECT pg_terminate_backend({})",
            prod.victim_pid
        ))
        .args(["plan", "peek"])
        .run();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        last_error(&out).starts_with(
            "error: refused: `postgres.sql` on `prod` is read-only (`readonly: true`): statement 2 `SELECT pg_terminate_backend("
        ),
        "{}",
        out.stderr
    );
    prod.fingerprint();
}

#[test]
fn queries_and_read_only_functions_run() {
    let prod = Production::new();
    let before = prod.fingerprint();
    let out = prod.run(
        "SELECT now(), clock_timestamp(), random(), pg_database_size(current_database()),
                    pg_is_in_recovery(), count(*) FROM site;
             WITH named AS (SELECT name FROM site) SELECT * FROM named;
             VALUES (1), (2), (3);
             TABLE site;
             SHOW search_path;
             EXPLAIN SELECT * FROM site WHERE id = 1",
    );
    out.expect_code(0);
    assert!(
        out.stderr.contains("ran SQL on `prod`: 8 rows"),
        "1 + 2 + 3 + 2 rows, SHOW and EXPLAIN count none: {}",
        out.stderr
    );
    assert_eq!(prod.fingerprint(), before);
}

#[test]
fn a_user_function_that_writes_is_stopped_by_the_transaction() {
    let prod = Production::new();
    let before = prod.fingerprint();
    let out = prod.run("SELECT sneaky()");
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("cannot execute INSERT in a read-only transaction"),
        "{}",
        out.stderr
    );
    assert_eq!(prod.fingerprint(), before);
}

#[test]
fn the_plan_warns_when_the_protected_role_could_write() {
    let prod = Production::new();
    let role: String = prod
        .runtime
        .block_on(prod.victim.query_one("SELECT current_user::text", &[]))
        .unwrap()
        .get(0);
    let out = prod
        .test("SELECT count(*) FROM site")
        .args(["plan", "peek", "--json"])
        .run();
    out.expect_code(0);
    let report = out.json();
    let peek = step(&report, "peek");
    let warnings: Vec<&str> = peek["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["label"] == "warning")
        .filter_map(|d| d["value"].as_str())
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "role `{role}` of protected target `prod` is a superuser; flightpath only reads it, \
             but a role that cannot write is the surest guard: \
             `CREATE ROLE flightpath_reader LOGIN PASSWORD '…' IN ROLE pg_read_all_data` \
             (PostgreSQL 14+; before that, GRANT SELECT on the tables) and use it in the URL"
        )]
    );
    assert!(block(peek, "plan").starts_with("Aggregate"), "{peek:#}");
}

#[test]
fn a_plan_never_executes_sql_it_cannot_classify() {
    // The plan used to prefix `EXPLAIN`, so `ANALYZE SELECT …` became
    // `EXPLAIN ANALYZE SELECT …` and ran, on a step that was not even
    // read-only.
    let prod = Production::new();
    let out = Test::new()
        .workflow(
            "kill",
            &format!(
                "
                name: kill
                targets:
                  staging:
                    postgres: ${{STAGING_DATABASE_URL}}
                steps:
                  kill:
                    uses: postgres.sql
                    with:
                      target: staging
                      sql: ANALYZE SELECT pg_terminate_backend({})
                ",
                prod.victim_pid
            ),
        )
        .env("STAGING_DATABASE_URL", &prod.db.url)
        .args(["plan", "kill", "--json"])
        .run();
    out.expect_code(0);
    let report = out.json();
    let kill = step(&report, "kill");
    assert!(
        kill["details"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["title"] != "plan"),
        "{kill:#}"
    );
    // The victim is alive: the fingerprint is read through its session.
    prod.fingerprint();
}

#[test]
fn a_clone_rule_cannot_run_sql_with_effects_on_production() {
    // `where:` and `except:` are evaluated by production inside the copy's
    // query: they pass the same guard as read-only SQL.
    let prod = Production::new();
    let before = prod.fingerprint();
    let staging = crate::support::pg::staging_db("readonly_rules");
    let victim = prod.victim_pid;
    for (predicate, why) in [
        (
            format!("pg_terminate_backend({victim})"),
            "calls `pg_catalog.pg_terminate_backend`, which ends another session, and a read-only transaction does not stop that"
                .to_string(),
        ),
        (
            "EXISTS (SELECT 1 FROM site FOR UPDATE)".to_string(),
            "its SQL (`where`, `except` and constants) must be plain expressions, read-only on the source: it locks rows (`FOR UPDATE` / `FOR SHARE`)".to_string(),
        ),
    ] {
        let out = Test::new()
            .workflow(
                "reset",
                &crate::clone::clone_workflow(
                    &prod.db.url,
                    &staging,
                    ", anonymize: anonymizers/site.yaml",
                ),
            )
            .file(
                "anonymizers/site.yaml",
                &format!(
                    "
                    tables:
                      site:
                        where: \"{predicate}\"
                        keep: all
                    "
                ),
            )
            .args(["run", "reset", "--yes"])
            .run();
        assert_eq!(
            (out.code, last_error(&out)),
            (
                3,
                format!(
                    "error: refused: source `prod`: a rule for table \"public\".\"site\" does not work there: {why}"
                )
            ),
            "{predicate}\n{}",
            out.stderr
        );
        assert_eq!(prod.fingerprint(), before);
    }
}
