//! The shipped presets against the real schemas of the apps they cover
//! (tests/fixtures/presets: DDL as Django, Wagtail, django-celery-beat,
//! Rails/Devise, good_job and solid_queue create it, with realistic rows):
//! each clone passes the fail-closed coverage check with nothing but the
//! preset, and no e-mail address production holds reaches staging; and
//! `scan` names exactly the presets each schema has the tables of.

use regex::Regex;

use crate::clone::clone_workflow;
use crate::support::cli::Test;
use crate::support::pg::{all_text, execute, fresh_db_sync, leaks, staging_db};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/presets/{name}.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Clones `fixture` with `presets` and checks coverage and leaks; returns
/// the staging URL.
fn clone_with(fixture_name: &str, presets: &[&str]) -> String {
    let prod = fresh_db_sync();
    execute(&prod.url, &fixture(fixture_name));
    let staging = staging_db(&format!("presets_{}", fixture_name));
    let list = presets
        .iter()
        .map(|p| format!("\"preset:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let out = Test::new()
        .file("anonymizers/secret.yaml", "secret: ${FLIGHTPATH_SECRET}\n")
        .workflow(
            "reset",
            &clone_workflow(
                &prod.url,
                &staging,
                &format!(", anonymize: [{list}, anonymizers/secret.yaml]"),
            ),
        )
        .env("FLIGHTPATH_SECRET", "presets")
        .args(["run", "reset", "--yes"])
        .run();
    assert_eq!(
        out.code, 0,
        "{fixture_name} with {presets:?}:\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );

    let email =
        Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").unwrap();
    let mut addresses: Vec<String> = all_text(&prod.url)
        .iter()
        .flat_map(|(_, v)| {
            email
                .find_iter(v)
                .map(|m| m.as_str().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    assert!(
        !addresses.is_empty(),
        "{fixture_name} holds no e-mail addresses to check"
    );
    let leaks = leaks(&staging, &addresses);
    assert!(
        leaks.is_empty(),
        "{fixture_name}: production e-mails in staging:\n{}",
        leaks.join("\n")
    );
    staging
}

#[test]
fn django_preset_covers_a_django_project() {
    clone_with("django", &["django"]);
}

#[test]
fn wagtail_preset_covers_every_table_of_a_wagtail_project() {
    clone_with("wagtail", &["wagtail"]);
}

#[test]
fn side_effects_preset_disables_beat_and_removes_tokens() {
    let staging = clone_with("celery_beat", &["django", "side-effects"]);
    let enabled = crate::support::pg::query_strings(
        &staging,
        "SELECT count(*)::text FROM django_celery_beat_periodictask WHERE enabled",
    );
    assert_eq!(enabled, ["0"]);
    let tokens = crate::support::pg::query_strings(
        &staging,
        "SELECT ((SELECT count(*) FROM authtoken_token) + (SELECT count(*) FROM knox_authtoken))::text",
    );
    assert_eq!(tokens, ["0"]);
}

#[test]
fn rails_devise_preset_covers_a_rails_app() {
    clone_with("rails_devise", &["rails-devise"]);
}

#[test]
fn side_effects_preset_clears_recurring_jobs() {
    let staging = clone_with("jobs", &["side-effects"]);
    let recurring = crate::support::pg::query_strings(
        &staging,
        "SELECT count(*)::text FROM solid_queue_recurring_tasks",
    );
    assert_eq!(recurring, ["0"]);
}

/// `scan` names, for each app's real schema, exactly the presets written
/// for it (read from the tables that exist, not guessed): Wagtail's
/// includes Django's and is named alone; django-celery-beat's tables add
/// the side-effects preset to Django's.
#[test]
fn scan_names_the_presets_each_apps_schema_has_the_tables_of() {
    for (fixture_name, expected) in [
        ("django", &["django"][..]),
        ("wagtail", &["wagtail (includes django)"][..]),
        ("rails_devise", &["rails-devise"][..]),
        ("celery_beat", &["django", "side-effects"][..]),
        ("jobs", &["side-effects"][..]),
    ] {
        let prod = fresh_db_sync();
        execute(&prod.url, &fixture(fixture_name));
        let out = Test::new().args(["scan", "--source", &prod.url]).run();
        let named: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("preset "))
            .map(|l| l.split(" applies: ").next().unwrap())
            .collect();
        assert_eq!(named, expected, "{fixture_name}:\n{}", out.stdout);
    }
}
