//! `flightpath scan` on the demo's production database: the columns that hold
//! personal data are listed as uncovered with their evidence, the rest as
//! safe; with the demo's rules everything is covered; and a starter file it
//! writes covers the database when used as it is.

use crate::support::cli::Test;
use crate::support::pg::block_on;
use crate::support::pg::fresh_db_sync;
use crate::support::snapshot::{masks, streams};

#[path = "../examples/demo/seed.rs"]
#[allow(dead_code)]
mod seed;

fn demo_prod() -> String {
    let db = fresh_db_sync();
    block_on(seed::production(&db.url)).unwrap();
    db.url
}

fn line<'a>(stdout: &'a str, column: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{column} ")))
        .unwrap_or_else(|| panic!("no line for {column} in:\n{stdout}"))
}

#[test]
fn scan_lists_the_demo_databases_personal_columns() {
    let prod = demo_prod();
    let out = Test::new().args(["scan", "--source", &prod]).run();
    assert_eq!(
        out.code, 1,
        "uncovered columns exit 1:\n{}{}",
        out.stdout, out.stderr
    );
    let stdout = &out.stdout;
    for (column, evidence) in [
        ("email", "name contains `email`"),
        ("first_name", "name contains `name`"),
        ("last_name", "name contains `name`"),
        ("password", "name contains `password`"),
        ("username", "name contains `name`"),
    ] {
        let l = line(stdout, column);
        assert!(l.contains("UNCOVERED") && l.contains(evidence), "{l}");
    }
    let form = line(stdout, "form_data");
    assert!(
        form.contains("UNCOVERED") && form.contains("look like email"),
        "{form}"
    );
    for safe in ["is_staff", "date_joined", "submit_time", "owner_id"] {
        assert!(line(stdout, safe).contains("safe by type"), "{safe}");
    }
    assert!(
        !stdout.contains("@example"),
        "values are never printed:\n{stdout}"
    );
    // The summary counts exactly the findings listed.
    let findings = stdout.lines().filter(|l| l.contains("UNCOVERED")).count();
    assert!(findings >= 6, "{stdout}");
    let summary = stdout.lines().rev().find(|l| !l.is_empty()).unwrap();
    assert!(
        summary.ends_with(&format!(" {findings} uncovered")),
        "{summary}"
    );

    // With the demo's rules, everything is covered.
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/anonymize.yaml"
    ))
    .unwrap();
    let out = Test::new()
        .file("anonymize.yaml", &rules)
        .args(["scan", "--source", &prod, "--anonymize", "anonymize.yaml"])
        .run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(line(&out.stdout, "email").contains("ruled: fake: email (unique)"));
    assert!(!out.stdout.contains("UNCOVERED"), "{}", out.stdout);
}

/// The whole table a user reads, uncovered columns and summary included.
#[test]
fn scan_prints_the_whole_coverage_table() {
    let prod = demo_prod();
    let out = Test::new().args(["scan", "--source", &prod]).run();
    let _masks = masks();
    insta::assert_snapshot!(streams(&out));
}

#[test]
fn the_starter_file_covers_the_database_it_came_from() {
    let prod = demo_prod();
    let test = Test::new().args(["scan", "--source", &prod, "--write", "starter.yaml"]);
    let out = test.run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let starter = test.read("starter.yaml");
    assert!(starter.contains("email: { fake: email }"), "{starter}");
    assert!(starter.contains("password: { set: \"!\" }"), "{starter}");
    assert!(
        starter.contains("first_name: { fake: first_name }"),
        "{starter}"
    );
    let again = Test::new()
        .file("starter.yaml", &starter)
        .env("FLIGHTPATH_SECRET", "x")
        .args(["scan", "--source", &prod, "--anonymize", "starter.yaml"])
        .run();
    assert_eq!(
        again.code, 0,
        "{}\n{}{}",
        starter, again.stdout, again.stderr
    );
}
