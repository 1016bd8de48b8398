//! What a production database holds outside its tables, end to end through
//! `flightpath plan` and `run`: a `postgres_fdw` server pointing back at the
//! production cluster, a user mapping with a (made-up) password, a foreign
//! table with a view and a materialized view reading it, and a large
//! object. Without `foreign: skip` the plan and the run
//! refuse, naming each foreign object; with it the clone succeeds and a
//! `pg_dump` of staging holds neither the server, the mapping, the foreign
//! table nor the password, and the plan says the large object is left out.
//! `strategy: in-place` keeps the same promise, and `scan` lists each with
//! what a clone does with it.

use crate::clone::anonymized_clone;
use crate::support::cli::Test;
use crate::support::pg::{
    block_on, client, dump, execute, fresh_db_sync, query_strings, staging_db,
};
use flightpath::pg::catalog;

/// The user mapping's password: made up, and searched for in staging.
const MAPPING_PASSWORD: &str = "fdw-made-up-Pw-4417";

const RULES: &str = r#"
secret: ${FLIGHTPATH_SECRET}
tables:
  people:
    columns:
      email: { fake: email }
"#;

/// Production with `people`, a foreign server reaching the same database,
/// a user mapping, a foreign table over `people` (with a comment) and one
/// large object. Fails naming the package when `postgres_fdw` is missing.
fn seeded_prod() -> String {
    let prod = fresh_db_sync();
    let available = query_strings(
        &prod.url,
        "SELECT count(*)::text FROM pg_available_extensions WHERE name = 'postgres_fdw'",
    );
    assert_eq!(
        available,
        ["1"],
        "the test cluster's PostgreSQL has no `postgres_fdw` extension; install the server's \
         contrib modules (on Debian they ship in the postgresql-<major> package itself)"
    );
    let config: tokio_postgres::Config = prod.url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    execute(
        &prod.url,
        &format!(
            r#"
CREATE EXTENSION postgres_fdw;
CREATE TABLE people (id integer PRIMARY KEY, email text NOT NULL);
INSERT INTO people SELECT n, 'fdwperson' || n || '@mail.test' FROM generate_series(1, 50) n;
CREATE SERVER prod_link FOREIGN DATA WRAPPER postgres_fdw
    OPTIONS (host '{host}', port '{port}', dbname '{db}');
COMMENT ON SERVER prod_link IS 'reaches production';
CREATE USER MAPPING FOR CURRENT_USER SERVER prod_link
    OPTIONS (user 'reader', password '{MAPPING_PASSWORD}');
CREATE FOREIGN TABLE remote_people (id integer, email text)
    SERVER prod_link OPTIONS (table_name 'people');
COMMENT ON FOREIGN TABLE remote_people IS 'live rows';
CREATE VIEW remote_emails AS SELECT email FROM remote_people;
CREATE MATERIALIZED VIEW remote_count AS SELECT count(*) AS n FROM remote_emails WITH NO DATA;
SELECT lo_from_bytea(0, 'a large object');
ANALYZE;
"#,
            db = prod.name,
        ),
    );
    prod.url
}

#[test]
fn foreign_objects_are_refused_by_the_plan_and_the_run_naming_each() {
    let prod = seeded_prod();
    let staging = staging_db("foreign_refused");
    execute(&staging, "CREATE TABLE before_clone (x int)");
    for args in [&["plan", "reset"][..], &["run", "reset", "--yes"][..]] {
        let out = anonymized_clone(&prod, &staging, RULES, "", args);
        let text = out.both();
        assert_eq!(out.code, 3, "{args:?}: {text}");
        for name in [
            "foreign server prod_link (postgres_fdw)",
            "user mapping for",
            "on prod_link",
            r#"foreign table "public"."remote_people""#,
            r#"view "public"."remote_emails""#,
            r#"view "public"."remote_count""#,
            "foreign: skip",
        ] {
            assert!(text.contains(name), "{args:?}: no `{name}` in {text}");
        }
        assert!(!text.contains(MAPPING_PASSWORD), "{text}");
    }
    // Nothing was written.
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM before_clone"),
        ["0"]
    );
}

#[test]
fn foreign_skip_leaves_them_out_and_the_large_object_is_said_to_be() {
    let prod = seeded_prod();
    let staging = staging_db("foreign_skip");
    let rules = format!("foreign: skip\n{RULES}");

    let plan = anonymized_clone(&prod, &staging, &rules, "", &["plan", "reset"]);
    let text = plan.both();
    assert_eq!(plan.code, 0, "{text}");
    for said in [
        "left out (`foreign: skip`)",
        "server prod_link (postgres_fdw)",
        r#"foreign table "public"."remote_people""#,
        "1 large object: left out",
    ] {
        assert!(text.contains(said), "no `{said}` in the plan: {text}");
    }
    assert!(!text.contains(MAPPING_PASSWORD), "{text}");

    let run = anonymized_clone(
        &prod,
        &staging,
        &rules,
        "",
        &["run", "reset", "--yes", "--json"],
    );
    let text = run.both();
    assert_eq!(run.code, 0, "{text}");
    assert!(text.contains("1 large object: left out"), "{text}");
    // The copy's table list never holds a foreign table: copying it would
    // read the remote.
    let copied = block_on(async {
        catalog::tables(&client(&prod).await)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.qualified)
            .collect::<Vec<_>>()
    });
    assert_eq!(copied, [r#""public"."people""#]);
    assert!(text.contains("cloned 1 tables"), "{text}");

    let dump = dump(&staging, &[]);
    for absent in [
        "CREATE SERVER",
        "USER MAPPING",
        "FOREIGN TABLE",
        "remote_people",
        "remote_emails",
        "remote_count",
        "prod_link",
        MAPPING_PASSWORD,
        "fdwperson",
    ] {
        assert!(!dump.contains(absent), "staging's dump holds `{absent}`");
    }
    assert!(dump.contains("CREATE TABLE public.people"), "{dump}");
    assert_eq!(
        query_strings(
            &staging,
            "SELECT (SELECT count(*) FROM pg_foreign_server) || ' ' || \
                    (SELECT count(*) FROM pg_user_mappings) || ' ' || \
                    (SELECT count(*) FROM people)"
        ),
        ["0 0 50"]
    );
}

#[test]
fn in_place_under_foreign_skip_recreates_no_foreign_object_either() {
    let prod = seeded_prod();
    let staging = staging_db("foreign_skip_in_place");
    let rules = format!("foreign: skip\n{RULES}");
    let args = ["run", "reset", "--yes", "--json"];
    let refused = anonymized_clone(&prod, &staging, RULES, ", strategy: in-place", &args);
    assert_eq!(refused.code, 3, "{}", refused.both());
    let run = anonymized_clone(&prod, &staging, &rules, ", strategy: in-place", &args);
    let text = run.both();
    assert_eq!(run.code, 0, "{text}");
    assert!(text.contains("1 large object: left out"), "{text}");
    let dump = dump(&staging, &[]);
    for absent in [
        "CREATE SERVER",
        "USER MAPPING",
        "FOREIGN TABLE",
        MAPPING_PASSWORD,
    ] {
        assert!(!dump.contains(absent), "staging's dump holds `{absent}`");
    }
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM people"),
        ["50"]
    );
}

#[test]
fn scan_lists_foreign_tables_servers_and_large_objects_with_their_fate() {
    let prod = seeded_prod();
    let refused = Test::new()
        .file("site.yaml", RULES)
        .env("FLIGHTPATH_SECRET", "s")
        .args(["scan", "--source", &prod, "--anonymize", "site.yaml"])
        .run();
    let text = refused.both();
    assert_ne!(refused.code, 0, "{text}");
    for said in [
        "\"public\".\"remote_people\"\n  foreign table: refused",
        "foreign server prod_link (postgres_fdw): refused",
        "1 large object: left out",
    ] {
        assert!(text.contains(said), "no `{said}` in {text}");
    }
    let skipped = Test::new()
        .file("site.yaml", &format!("foreign: skip\n{RULES}"))
        .env("FLIGHTPATH_SECRET", "s")
        .args(["scan", "--source", &prod, "--anonymize", "site.yaml"])
        .run();
    let text = skipped.both();
    assert_eq!(skipped.code, 0, "{text}");
    assert!(
        text.contains("\"public\".\"remote_people\"\n  foreign table: not copied (foreign: skip)"),
        "{text}"
    );
    assert!(!text.contains(MAPPING_PASSWORD), "{text}");
}
