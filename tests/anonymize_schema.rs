//! Personal data outside table rows, end to end through `flightpath plan`
//! and `run`: e-mail addresses in a production schema's comments (on a
//! table and a column), a column default, an enum label, a function body, a
//! view and a check constraint; bytea columns that hold e-mail addresses,
//! under `redact`, `null` and `set`, and a strategy bytea cannot take.
//! Without `schema:` the plan and the run refuse naming each object that is
//! not a comment (never the address); with `schema: keep` the clone runs and
//! staging's comments hold no production address. Two large objects are
//! left out without a rule (staging has none) and arrive byte-identical
//! under their own oids with `large_objects: copy`, in place as well.

use crate::clone::anonymized_clone;
use crate::support::pg::{dump, execute, fresh_db_sync, query_strings, staging_db};

/// The production domain: every address seeded below is on it.
const PROD_DOMAIN: &str = "realmail-prod.test";

const PEOPLE_RULES: &str = r#"
tables:
  people:
    columns:
      email: { fake: email }
    keep: [id, mood]
  audit: { keep: all }
"#;

/// Production whose schema holds an e-mail address in a table comment, a
/// column comment (the address of row 1, which `people.email` holds too),
/// a column default, an enum label, a function body, a view and a check
/// constraint.
fn schema_prod() -> String {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TYPE mood AS ENUM ('calm', 'enumperson@realmail-prod.test');
         CREATE TABLE people (
             id integer PRIMARY KEY,
             email text NOT NULL DEFAULT 'defaultperson@realmail-prod.test',
             mood mood,
             CONSTRAINT not_blocked CHECK (email <> 'checkperson@realmail-prod.test'));
         INSERT INTO people SELECT n, 'row' || n || '@realmail-prod.test', 'calm'
             FROM generate_series(1, 10) n;
         COMMENT ON TABLE people IS 'owner: tableperson@realmail-prod.test';
         COMMENT ON COLUMN people.email IS 'like row1@realmail-prod.test, it''s theirs';
         CREATE FUNCTION owner_address() RETURNS text LANGUAGE plpgsql
             AS $$ BEGIN RETURN 'functionperson@realmail-prod.test'; END $$;
         CREATE VIEW vip AS SELECT id FROM people WHERE email = 'viewperson@realmail-prod.test';
         CREATE TABLE audit (who text);
         CREATE RULE tell AS ON INSERT TO people DO ALSO INSERT INTO audit VALUES ('ruleperson@realmail-prod.test');
         CREATE AGGREGATE firstof(text) (SFUNC = textcat, STYPE = text, INITCOND = 'aggperson@realmail-prod.test');
         ANALYZE;",
    );
    prod.url
}

#[test]
fn personal_data_in_the_schema_is_refused_naming_each_object_but_not_comments() {
    let prod = schema_prod();
    let staging = staging_db("schema_refused");
    execute(&staging, "CREATE TABLE before_clone (x int)");
    for args in [&["plan", "reset"][..], &["run", "reset", "--yes"][..]] {
        let out = anonymized_clone(&prod, &staging, PEOPLE_RULES, "", args);
        let text = out.both();
        assert_eq!(out.code, 3, "{args:?}: {text}");
        for said in [
            "default of column public.people.email: email",
            "label of enum public.mood: email",
            "function public.owner_address(): email",
            "view public.vip: email",
            "check constraint not_blocked on public.people: email",
            "rule tell on public.people: email",
            "initial state of aggregate public.firstof: email",
            "nothing was written",
            "`schema: keep`",
        ] {
            assert!(text.contains(said), "{args:?}: no `{said}` in {text}");
        }
        // Comments are redacted, not refused; values are never printed.
        assert_eq!(
            out.stderr.matches("\n  - ").count(),
            2 * 7,
            "{args:?}: seven objects, in the step's failure and the exit error: {text}"
        );
        assert!(!text.contains(PROD_DOMAIN), "{args:?}: {text}");
    }
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM before_clone"),
        ["0"]
    );
}

#[test]
fn schema_keep_copies_the_objects_and_comments_arrive_redacted_with_the_rows_fake() {
    let prod = schema_prod();
    let staging = staging_db("schema_keep");
    let rules = format!("schema: keep\n{PEOPLE_RULES}");
    let plan = anonymized_clone(&prod, &staging, &rules, "", &["plan", "reset"]);
    let text = plan.both();
    assert_eq!(plan.code, 0, "{text}");
    assert!(text.contains("kept (`schema: keep`)"), "{text}");
    assert!(text.contains("view public.vip: email"), "{text}");
    assert!(!text.contains(PROD_DOMAIN), "{text}");

    let run = anonymized_clone(
        &prod,
        &staging,
        &rules,
        "",
        &["run", "reset", "--yes", "--json"],
    );
    let text = run.both();
    assert_eq!(run.code, 0, "{text}");
    assert!(text.contains("2 comments redacted"), "{text}");
    assert!(
        text.contains("these objects were copied as they are"),
        "{text}"
    );
    let comments = query_strings(
        &staging,
        "SELECT description FROM pg_catalog.pg_description WHERE objoid >= 16384 ORDER BY objsubid",
    );
    assert_eq!(comments.len(), 2, "{comments:?}");
    for comment in &comments {
        assert!(!comment.contains(PROD_DOMAIN), "{comment}");
    }
    assert!(comments[0].starts_with("owner: "), "{comments:?}");
    // The address of row 1 in the column's comment got the fake row 1's
    // e-mail got: one keyed fake per value, in the rows and the schema.
    let row1 = query_strings(&staging, "SELECT email FROM people WHERE id = 1");
    assert_eq!(comments[1], format!("like {}, it's theirs", row1[0]));
    let dump = dump(&staging, &["--schema-only"]);
    for absent in ["tableperson", "row1@"] {
        assert!(!dump.contains(absent), "staging's schema holds `{absent}`");
    }
    // `schema: keep` kept what it says it keeps.
    assert!(dump.contains("viewperson@realmail-prod.test"), "{dump}");
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
    let out = anonymized_clone(&prod, &staging, rules, "", &["run", "reset", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.both());
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
    let out = anonymized_clone(&prod, &staging, rules, "", &["run", "reset", "--yes"]);
    let text = out.both();
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
    let out = anonymized_clone(&prod, &staging, rules, "", &["run", "reset", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.both());
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
    let out = anonymized_clone(&prod, &staging, rules, "", &["plan", "reset"]);
    let text = out.both();
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

/// Production with two large objects, one over a megabyte (more than one
/// `lo_get` chunk), referenced from `documents`.
fn large_objects_prod() -> String {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE documents (id integer PRIMARY KEY, file oid);
         INSERT INTO documents VALUES
             (1, lo_from_bytea(0, '\\x00ff00ff'::bytea)),
             (2, lo_from_bytea(0, convert_to(repeat('0123456789', 250000), 'UTF8')));
         ANALYZE;",
    );
    prod.url
}

/// Each large object of `url` as `oid md5`.
fn large_objects_of(url: &str) -> Vec<String> {
    query_strings(
        url,
        "SELECT oid::text || ' ' || md5(lo_get(oid)) FROM pg_catalog.pg_largeobject_metadata ORDER BY oid",
    )
}

const DOCUMENT_RULES: &str = "tables:\n  documents: { keep: all }\n";

#[test]
fn large_objects_copy_brings_them_byte_identical_and_without_it_they_are_left_out() {
    let prod = large_objects_prod();
    let in_prod = large_objects_of(&prod);
    assert_eq!(in_prod.len(), 2);

    let staging = staging_db("schema_lo_skip");
    let plan = anonymized_clone(&prod, &staging, DOCUMENT_RULES, "", &["plan", "reset"]);
    let text = plan.both();
    assert_eq!(plan.code, 0, "{text}");
    assert!(text.contains("2 large objects: left out"), "{text}");
    let run = anonymized_clone(
        &prod,
        &staging,
        DOCUMENT_RULES,
        "",
        &["run", "reset", "--yes"],
    );
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(large_objects_of(&staging).is_empty());

    let rules = format!("large_objects: copy\n{DOCUMENT_RULES}");
    let staging = staging_db("schema_lo_copy");
    let plan = anonymized_clone(&prod, &staging, &rules, "", &["plan", "reset"]);
    let text = plan.both();
    assert_eq!(plan.code, 0, "{text}");
    assert!(
        text.contains("2 large objects: copied as they are (`large_objects: copy`)"),
        "{text}"
    );
    assert!(!text.contains("left out"), "{text}");
    let run = anonymized_clone(
        &prod,
        &staging,
        &rules,
        "",
        &["run", "reset", "--yes", "--json"],
    );
    let text = run.both();
    assert_eq!(run.code, 0, "{text}");
    assert!(text.contains("2 large objects, 2.4 MiB: copied"), "{text}");
    // Same oids (the rows reference them), same bytes.
    assert_eq!(large_objects_of(&staging), in_prod);

    // In place, twice: staging's own large objects are replaced, not
    // collided with.
    let staging = staging_db("schema_lo_in_place");
    for _ in 0..2 {
        let run = anonymized_clone(
            &prod,
            &staging,
            &rules,
            ", strategy: in-place",
            &["run", "reset", "--yes"],
        );
        assert_eq!(run.code, 0, "{}", run.both());
        assert_eq!(large_objects_of(&staging), in_prod);
    }
}
