//! `flightpath validate`: every kind of broken workflow gives its full,
//! located diagnostic (snapshots of the whole text), exit code 2, and nothing
//! is connected to or written.

use crate::support::cli::Test;

/// Runs `validate` on one workflow and returns stderr, asserting exit code 2,
/// an empty stdout and no state written.
fn invalid(yaml: &str) -> String {
    let test = Test::new()
        .file("workflows/broken.yaml", yaml)
        .args(["validate", "broken"]);
    let out = test.run();
    assert_eq!(out.code, 2, "stderr:\n{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        !test.dir().join(".flightpath").exists(),
        "validate must not write run state"
    );
    out.stderr
}

const TARGETS: &str = "targets:
  prod:
    postgres: postgres://app:prod-password@127.0.0.1:1/app
    protected: true
  staging:
    postgres: postgres://app@127.0.0.1:1/app
";

#[test]
fn unknown_keys_everywhere_with_suggestions() {
    let stderr = invalid(&format!(
        "name: broken
descripton: typo at the top
{TARGETS}steps:
  migrate:
    uses: shell
    neds: [backup]
    with:
      run: ./manage.py migrate
      timout: 5m
"
    ));
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_step_kind() {
    let stderr = invalid(
        "name: broken
steps:
  smoke:
    uses: http.chek
    with: { url: \"https://staging.example.org/\" }
",
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_needs_and_target() {
    let stderr = invalid(&format!(
        "name: broken
{TARGETS}steps:
  database:
    uses: postgres.sql
    with: {{ target: stagin, sql: \"SELECT 1\" }}
  media:
    uses: shell
    needs: [databse]
    with: {{ run: \"true\" }}
"
    ));
    insta::assert_snapshot!(stderr);
}

#[test]
fn cycles_are_printed_whole() {
    let stderr = invalid(
        "name: broken
steps:
  a: { uses: shell, needs: [c], with: { run: \"true\" } }
  b: { uses: shell, needs: [a], with: { run: \"true\" } }
  c: { uses: shell, needs: [b], with: { run: \"true\" } }
  d: { uses: shell, needs: [a], with: { run: \"true\" } }
",
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn step_output_outside_transitive_needs() {
    let stderr = invalid(
        "name: broken
steps:
  backup: { uses: shell, with: { run: \"echo dump\" } }
  other: { uses: shell, with: { run: \"true\" } }
  restore:
    uses: shell
    needs: [other]
    with:
      run: \"pg_restore ${steps.backup.exit_code}\"
",
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn missing_environment_variable_names_variable_and_line() {
    let stderr = invalid(
        "name: broken
targets:
  staging:
    postgres: ${FLIGHTPATH_TEST_SURELY_UNSET_URL}
steps:
  sites:
    uses: postgres.sql
    with: { target: staging, sql: \"SELECT 1\" }
",
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn concurrent_writes_to_one_target() {
    let stderr = invalid(&format!(
        "name: broken
{TARGETS}steps:
  sites:
    uses: postgres.sql
    with: {{ target: staging, sql: \"UPDATE site SET host = 'a'\" }}
  users:
    uses: postgres.sql
    with: {{ target: staging, sql: \"DELETE FROM users\" }}
"
    ));
    insta::assert_snapshot!(stderr);
}

#[test]
fn protected_target_cannot_be_written() {
    let stderr = invalid(&format!(
        "name: broken
{TARGETS}steps:
  oops:
    uses: postgres.sql
    with: {{ target: prod, sql: \"DELETE FROM auth_user\" }}
"
    ));
    assert!(
        !stderr.contains("prod-password"),
        "secrets must not be printed"
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn yaml_syntax_error_is_located() {
    let stderr = invalid("name: broken\nsteps:\n  a: [unclosed\n  b: 1\n");
    insta::assert_snapshot!(stderr);
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let stderr = invalid(&format!(
        "name: broken
{TARGETS}steps:
  a: {{ uses: shel, with: {{ run: \"true\" }} }}
  b: {{ uses: shell, needs: [x], with: {{ run: \"${{NOT_SET_ANYWHERE_42}}\" }} }}
  c: {{ uses: postgres.sql, with: {{ target: prod, sql: \"DELETE FROM t\" }} }}
"
    ));
    let headers: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        headers,
        [
            "error[flightpath::uses::unknown]: step `a` uses unknown kind `shel`",
            "error[flightpath::needs::unknown]: step `b` needs unknown step `x`",
            "error[flightpath::var::missing]: environment variable `NOT_SET_ANYWHERE_42` is not set",
            "error[flightpath::target::protected]: step `c` would write to target `prod`, which is protected",
            "error: 4 problems found; nothing was run",
        ]
    );
}

#[test]
fn valid_workflow_says_so() {
    let test = Test::new().file(
        "workflows/ok.yaml",
        "name: ok
steps:
  a: { uses: shell, with: { run: \"true\" } }
  b: { uses: shell, needs: [a], with: { run: \"echo ${steps.a.exit_code}\" } }
",
    );
    let out = test.args(["validate", "ok"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "ok is valid: workflow `ok`, 2 steps\n");
}

#[test]
fn unknown_workflow_name() {
    let out = Test::new().args(["validate", "nope"]).run();
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: no workflow named `nope` (looked for `nope`, `workflows/nope.yaml`, `workflows/nope.yml`)\n"
    );
}

#[test]
fn clone_strategy_typo_is_located() {
    let stderr = invalid(&format!(
        "name: broken
{TARGETS}steps:
  database:
    uses: postgres.clone
    with: {{ source: prod, target: staging, strategy: in_place }}
"
    ));
    insta::assert_snapshot!(stderr);
}

#[test]
fn same_server_as_names_an_existing_target() {
    let stderr = invalid(
        "name: broken
targets:
  prod:
    postgres: postgres://app@127.0.0.1:1/app
    protected: true
  staging:
    postgres: postgres://app@127.0.0.1:1/staging
    same_server_as: prud
steps:
  x:
    uses: postgres.sql
    with: { target: staging, sql: \"SELECT 1\" }
",
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_value_inside_quotes_in_a_command_or_sql_is_refused() {
    let stderr = invalid(
        "name: broken
targets:
  staging:
    postgres: postgres://app@127.0.0.1:1/app
steps:
  dump:
    uses: shell
    with: { run: 'pg_dump \"${URL:-x}\" -f out.dump' }
  sites:
    uses: postgres.sql
    with: { target: staging, sql: \"UPDATE site SET host = '${HOST:-h}'\" }
",
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_clone_with_no_workers_is_located() {
    let stderr = invalid(&format!(
        "name: broken
{TARGETS}steps:
  database:
    uses: postgres.clone
    with: {{ source: prod, target: staging, jobs: 0, index_jobs: 0 }}
"
    ));
    insta::assert_snapshot!(stderr);
}

/// A JSON key spelled like a strategy, where a nested `json:` rule cannot
/// tell a rule from a key: the error points at it and shows the dotted form.
#[test]
fn a_json_key_spelled_like_a_strategy_is_ambiguous_and_shows_the_dotted_form() {
    let test = Test::new()
        .file(
            "anonymizers/site.yaml",
            "tables:
  audit:
    columns:
      payload:
        json:
          request: { ip: { fake: ipv4 } }
          meta: { fake: { email: { fake: email } } }
          actor: { fake: { set: \"x\" }, name: { fake: name } }
",
        )
        .file(
            "workflows/broken.yaml",
            &format!(
                "name: broken
{TARGETS}steps:
  database:
    uses: postgres.clone
    with: {{ source: prod, target: staging, anonymize: anonymizers/site.yaml }}
"
            ),
        )
        .args(["validate", "broken"]);
    let out = test.run();
    assert_eq!(out.code, 2, "stderr:\n{}", out.stderr);
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn preserved_rows_need_every_clone_of_their_target_to_come_after() {
    let stderr = invalid(&format!(
        "name: broken
{TARGETS}steps:
  accounts:
    uses: postgres.staging-only-rows
    with: {{ source: prod, target: staging, table: auth_user, key: email, preserve: true }}
  database:
    uses: postgres.clone
    with: {{ source: prod, target: staging }}
  others:
    uses: postgres.staging-only-rows
    with: {{ source: staging, target: prod, table: auth_user, key: email, preserve: true }}
"
    ));
    insta::assert_snapshot!(stderr);
}
