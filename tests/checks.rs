//! Smaller checks that fail closed and say why: every target whose
//! `postgres:` is no connection string, a `${steps.…}` output the step kind
//! never sets, and a `where:` the source server rejects while copying.

use crate::clone::clone_workflow;
use crate::support::cli::Test;
use crate::support::pg::{execute, fresh_db_sync, staging_db};

fn validate(yaml: &str) -> String {
    let out = Test::new()
        .workflow("w", yaml)
        .args(["validate", "w"])
        .run();
    assert_eq!(
        out.code, 2,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.stdout, "");
    out.stderr
}

#[test]
fn every_target_whose_postgres_is_no_connection_string_is_named() {
    let stderr = validate(
        r#"
        name: w
        targets:
          number: { postgres: 42 }
          empty: { postgres: "" }
          words: { postgres: "not a url" }
          scheme: { postgres: "mysql://app:s3cret-pw@db/app" }
          port: { postgres: "postgres://app:s3cret-pw@db:notaport/app" }
          good: { postgres: "host=db dbname=app user=app" }
        steps:
          hello: { uses: shell, with: { run: "true" } }
        "#,
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn an_output_the_step_kind_never_sets_is_a_validation_error() {
    let stderr = validate(
        r#"
        name: w
        steps:
          migrate: { uses: shell, with: { run: "true" } }
          tell:
            uses: notify
            needs: [migrate]
            with: { message: "migrate said ${steps.migrate.stdout}, exit ${steps.migrate.exit_cod}" }
        "#,
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_where_the_server_rejects_while_copying_shows_the_servers_message() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT n, 'v' || n FROM generate_series(1, 10) n;",
    );
    let staging = staging_db("where_rejected");
    // Fine for the plan's LIMIT 0 check; divides by zero on row 5.
    let out = Test::new()
        .file(
            "rules.yaml",
            "tables:\n  t:\n    where: \"1 / (id - 5) > -100\"\n    keep: all\n",
        )
        .workflow(
            "reset",
            &clone_workflow(&prod.url, &staging, ", anonymize: rules.yaml"),
        )
        .env("FLIGHTPATH_SECRET", "x")
        .args(["run", "reset", "--yes"])
        .run();
    out.expect_code(1);
    let error = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{}", out.stdout));
    assert_eq!(
        error.trim(),
        r#"error: copying "public"."t": reading from the source: ERROR: division by zero (SQLSTATE 22012)"#
    );
}
