//! Personal data outside table rows, end to end through `flightpath plan`
//! and `run`: bytea columns that hold e-mail addresses, under `redact`,
//! `null` and `set`, and a strategy bytea cannot take.

use crate::clone::clone_workflow;
use crate::support::cli::{Output, Test};
use crate::support::pg::{execute, fresh_db_sync, query_strings, staging_db};

fn clone(prod: &str, staging: &str, rules: &str, args: &[&str]) -> Output {
    Test::new()
        .file("anonymizers/site.yaml", rules)
        .workflow(
            "reset",
            &clone_workflow(prod, staging, ", anonymize: anonymizers/site.yaml"),
        )
        .env("FLIGHTPATH_SECRET", "s")
        .args(args)
        .run()
}

fn all_output(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr)
}

/// Production with `attachments`: a bytea `body` of UTF-8 text holding an
/// e-mail address per row, and a bytea `thumb` of other bytes.
fn bytea_prod() -> String {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE attachments (id integer PRIMARY KEY, body bytea, thumb bytea);
         INSERT INTO attachments
             SELECT n, convert_to('from byteaperson' || n || '@realmail-prod.test, thanks', 'UTF8'),
                    '\\x89504e470d0a1a0aff'::bytea
             FROM generate_series(1, 40) n;
         INSERT INTO attachments VALUES (41, NULL, NULL);
         ANALYZE;",
    );
    prod.url
}

#[test]
fn bytea_redact_leaves_no_address_and_null_and_set_replace_the_bytes() {
    let prod = bytea_prod();
    let staging = staging_db("schema_bytea");
    let rules = r#"
tables:
  attachments:
    columns:
      body: { redact: [email] }
      thumb: { set: "\\x00ff" }
"#;
    let out = clone(&prod, &staging, rules, &["run", "reset", "--yes"]);
    assert_eq!(out.code, 0, "{}", all_output(&out));
    // Decoded as UTF-8 in staging, no production address is left and the
    // text around it is.
    let bodies = query_strings(
        &staging,
        "SELECT convert_from(body, 'UTF8') FROM attachments WHERE body IS NOT NULL ORDER BY id",
    );
    assert_eq!(bodies.len(), 40);
    for body in &bodies {
        assert!(!body.contains("realmail-prod.test"), "{body}");
        assert!(!body.contains("byteaperson"), "{body}");
        assert!(
            body.starts_with("from ") && body.ends_with(", thanks"),
            "{body}"
        );
        assert!(
            body.contains('@'),
            "the address was replaced by a fake: {body}"
        );
    }
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*)::text FROM attachments WHERE body IS NULL AND id = 41"
        ),
        ["1"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT DISTINCT encode(thumb, 'hex') FROM attachments WHERE id <= 40"
        ),
        ["00ff"]
    );

    // `null` empties the column; the same `redact` refuses bytes that are
    // not UTF-8, naming the column and the row, with the fix.
    let staging = staging_db("schema_bytea_null");
    let rules = r#"
tables:
  attachments:
    columns:
      body: null
      thumb: { redact: [email] }
"#;
    let out = clone(&prod, &staging, rules, &["run", "reset", "--yes"]);
    let text = all_output(&out);
    assert_eq!(out.code, 1, "{text}");
    for said in [
        "column `thumb`",
        "row with id = ",
        "not UTF-8",
        "`null` or `set`",
    ] {
        assert!(text.contains(said), "no `{said}` in {text}");
    }
    let rules = r#"
tables:
  attachments:
    columns:
      body: null
      thumb: null
"#;
    let out = clone(&prod, &staging, rules, &["run", "reset", "--yes"]);
    assert_eq!(out.code, 0, "{}", all_output(&out));
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*)::text FROM attachments WHERE body IS NULL AND thumb IS NULL"
        ),
        ["41"]
    );
}

#[test]
fn a_strategy_bytea_cannot_take_is_refused_saying_which_can() {
    let prod = bytea_prod();
    let staging = staging_db("schema_bytea_fake");
    let rules = r#"
tables:
  attachments:
    columns:
      body: { fake: email }
      thumb: { hash: true }
"#;
    let out = clone(&prod, &staging, rules, &["plan", "reset"]);
    let text = all_output(&out);
    assert_ne!(out.code, 0, "{text}");
    for said in [
        "`fake: email` cannot produce a value of type bytea",
        "attachments\".body",
        "attachments\".thumb",
        "`redact` (on UTF-8 text), `set`, `null`, `keep`, or the table's `truncate: true`",
    ] {
        assert!(text.contains(said), "no `{said}` in {text}");
    }
    assert!(!text.contains("realmail-prod.test"), "{text}");
}
