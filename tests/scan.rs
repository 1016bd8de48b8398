//! `flightpath scan` on the demo's production database: the columns that hold
//! personal data are listed as uncovered with their evidence, the rest as
//! safe; with the demo's rules everything is covered; and a starter file it
//! writes covers the database when used as it is. Then on schemas built to
//! break the starter: the shipped presets that apply, bytes holding
//! e-mails, e-mails only in a table's last rows, columns too narrow for a
//! fake, names YAML must quote, personal facts in number and date columns,
//! and lookup tables. Every starter written is read back and planned.

use crate::clone::clone_workflow;
use crate::support::cli::Test;
use crate::support::pg::{block_on, execute, fresh_db_sync, staging_db};
use crate::support::snapshot::{masks, streams};

use crate::support::small_site as seed;

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

    // With the site's rules, everything is covered.
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/small_site.yaml"
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

/// The rule line of `column` in a starter file (`      column: rule   # why`).
fn rule<'a>(starter: &'a str, column: &str) -> &'a str {
    let key = format!("{column}: ");
    starter
        .lines()
        .find(|l| l.trim_start().starts_with(&key))
        .map(|l| l.trim_start()[key.len()..].split("   #").next().unwrap())
        .unwrap_or_else(|| panic!("no rule for {column} in:\n{starter}"))
}

/// Scans `prod`, writes a starter and checks it is used as it is: it reads
/// back and covers every column (`scan --anonymize`), and a clone's plan
/// accepts it (`plan`, which binds it, checks its constants and SQL on the
/// source). Returns the scan's stdout and the starter.
fn scan_and_plan(prod: &str, extra_args: &[&str], staging_name: &str) -> (String, String) {
    let mut args = vec!["scan", "--source", prod, "--write", "starter.yaml"];
    args.extend_from_slice(extra_args);
    let test = Test::new().args(args);
    let out = test.run();
    assert!(
        out.stdout.contains("starter rules written to"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let starter = test.read("starter.yaml");
    let again = Test::new()
        .file("starter.yaml", &starter)
        .env("FLIGHTPATH_SECRET", "x")
        .args(["scan", "--source", prod, "--anonymize", "starter.yaml"])
        .run();
    assert_eq!(
        again.code, 0,
        "the starter does not cover its database:\n{starter}\n{}{}",
        again.stdout, again.stderr
    );
    let staging = staging_db(staging_name);
    let plan = Test::new()
        .file("starter.yaml", &starter)
        .workflow(
            "reset",
            &clone_workflow(prod, &staging, ", anonymize: [starter.yaml]"),
        )
        .env("FLIGHTPATH_SECRET", "x")
        .args(["plan", "reset"])
        .run();
    assert_eq!(
        plan.code, 0,
        "a plan refuses the starter:\n{starter}\n{}{}",
        plan.stdout, plan.stderr
    );
    (out.stdout, starter)
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/presets/{name}.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Item 5: a Django project's own tables beside Django's. scan names the
/// preset by what it covers, and the starter extends it, listing only the
/// project's tables.
#[test]
fn scan_names_the_preset_that_applies_and_the_starter_extends_it() {
    let prod = fresh_db_sync();
    execute(&prod.url, &fixture("django"));
    execute(
        &prod.url,
        "CREATE TABLE shop_order (id serial PRIMARY KEY, customer_email text, note text); \
         INSERT INTO shop_order (customer_email, note) VALUES \
           ('jo@realmail-prod.test', 'leave at the door'), ('al@realmail-prod.test', 'none');",
    );
    let out = Test::new().args(["scan", "--source", &prod.url]).run();
    let uncovered = out
        .stdout
        .lines()
        .filter(|l| l.contains("UNCOVERED"))
        .count();
    let preset = out
        .stdout
        .lines()
        .find(|l| l.starts_with("preset "))
        .unwrap_or_else(|| panic!("no preset named:\n{}", out.stdout));
    // auth_user's username, names, email and password, and what
    // django_admin_log and django_session hold: every finding but the
    // shop's.
    let (theirs, tables) = findings_outside(&out.stdout, "shop_order");
    assert_eq!(theirs + 2, uncovered, "{}", out.stdout);
    assert_eq!(
        preset,
        format!(
            "preset django applies: covers {theirs} of {uncovered} uncovered columns in {tables} tables; \
             use it with `--anonymize preset:django`, or `extends: [preset:django]` in your rules"
        )
    );
    for other in ["wagtail", "rails-devise", "side-effects"] {
        assert!(
            !out.stdout.contains(&format!("preset {other}")),
            "{other} does not apply:\n{}",
            out.stdout
        );
    }

    let (_, starter) = scan_and_plan(&prod.url, &[], "scan_preset_django");
    assert!(
        starter.contains("extends: [\"preset:django\"]"),
        "{starter}"
    );
    assert!(!starter.contains("auth_user"), "{starter}");
    assert!(!starter.contains("django_session"), "{starter}");
    assert_eq!(rule(&starter, "customer_email"), "{ fake: email }");
}

/// The uncovered columns outside table `except`, and how many tables hold
/// them.
fn findings_outside(stdout: &str, except: &str) -> (usize, usize) {
    let mut tables = std::collections::BTreeSet::new();
    let mut table = "";
    let mut findings = 0;
    for l in stdout.lines() {
        if l.starts_with('"') {
            table = l;
        } else if l.contains("UNCOVERED") && !table.contains(except) {
            findings += 1;
            tables.insert(table);
        }
    }
    (findings, tables.len())
}

/// Item 5: Wagtail's preset extends Django's; scan names wagtail (which
/// includes django), not both.
#[test]
fn a_preset_that_includes_another_is_named_alone() {
    let prod = fresh_db_sync();
    execute(&prod.url, &fixture("wagtail"));
    let out = Test::new().args(["scan", "--source", &prod.url]).run();
    let presets: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("preset "))
        .collect();
    assert_eq!(presets.len(), 1, "{}", out.stdout);
    assert!(
        presets[0].starts_with("preset wagtail (includes django) applies: covers "),
        "{}",
        presets[0]
    );
    let (_, starter) = scan_and_plan(&prod.url, &[], "scan_preset_wagtail");
    assert!(
        starter.contains("extends: [\"preset:wagtail\"]"),
        "{starter}"
    );
    assert!(!starter.contains("wagtailcore_revision"), "{starter}");
}

/// Item 6: bytes are looked at as the text they decode to. E-mails stored
/// as bytea are evidence (the issue's starter kept them); a photo by its
/// name is never kept; opaque bytes with an innocent name may be.
#[test]
fn bytea_holding_emails_or_named_like_a_file_is_never_kept() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE uploads (id serial PRIMARY KEY, raw bytea, avatar bytea, \
                               digest bytea NOT NULL); \
         INSERT INTO uploads (raw, avatar, digest) \
         SELECT convert_to('from: user' || g || '@realmail-prod.test', 'UTF8'), \
                '\\x89504e470d0a1a0a0000'::bytea, \
                decode(md5(g::text), 'hex') \
         FROM generate_series(1, 50) g;",
    );
    let out = Test::new().args(["scan", "--source", &prod.url]).run();
    let raw = line(&out.stdout, "raw");
    assert!(
        raw.contains("UNCOVERED") && raw.contains("50 of 50 sampled values look like email"),
        "{raw}"
    );
    // A PNG header and digests are not text: not counted as sampled.
    assert!(line(&out.stdout, "avatar").contains("UNCOVERED: no rule covers it"));
    assert!(!out.stdout.contains("realmail-prod"), "{}", out.stdout);

    let (_, starter) = scan_and_plan(&prod.url, &[], "scan_bytea");
    // Bytes that decode as text holding addresses: `redact` on that text.
    assert_eq!(rule(&starter, "raw"), "{ redact: [email] }", "{starter}");
    assert_eq!(rule(&starter, "avatar"), "null");
    assert!(
        starter.contains("keep: [digest]"),
        "opaque bytes with an innocent name: {starter}"
    );
}

/// Item 6: e-mails only in rows 4,001–5,000. The default scan reads a
/// table this small whole, so it finds them, and says so; `--full` always
/// reads every row. A table too large to read whole is sampled from all
/// over, and the scan says how many rows of how many it read.
#[test]
fn sampling_reaches_the_last_rows_and_says_how_many_were_read() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE events (id serial PRIMARY KEY, payload text); \
         INSERT INTO events (payload) \
         SELECT CASE WHEN g > 4000 THEN 'signup by u' || g || '@realmail-prod.test' \
                     ELSE 'page view ' || g END \
         FROM generate_series(1, 5000) g; \
         CREATE TABLE clicks (id serial PRIMARY KEY, payload text); \
         INSERT INTO clicks (payload) \
         SELECT CASE WHEN g > 140000 THEN 'by u' || g || '@realmail-prod.test' ELSE 'x' || g END \
         FROM generate_series(1, 150000) g; \
         ANALYZE events; ANALYZE clicks;",
    );
    let test = Test::new().args(["scan", "--source", &prod.url, "--write", "starter.yaml"]);
    let sampled = test.run();
    let full = Test::new()
        .args(["scan", "--source", &prod.url, "--full"])
        .run();
    for out in [&sampled, &full] {
        assert!(
            out.stdout
                .contains("\"public\".\"events\"   (read all 5,000 rows)"),
            "{}",
            out.stdout
        );
    }
    let events = |stdout: &str| {
        stdout
            .lines()
            .skip_while(|l| !l.contains("\"events\""))
            .find(|l| l.trim_start().starts_with("payload "))
            .unwrap()
            .to_string()
    };
    assert!(
        events(&sampled.stdout).contains("1000 of 5000 sampled values look like email"),
        "{}",
        sampled.stdout
    );
    assert!(events(&full.stdout).contains("1000 of 5000 sampled values look like email"));

    // The large table: a bounded sample from all over, said as such; every
    // row with --full, which finds the e-mails in its last 10,000 rows.
    let header = |stdout: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with("\"public\".\"clicks\""))
            .unwrap()
            .to_string()
    };
    let re = regex::Regex::new(r"^\S+   \(sampled ([\d,]+) of about ([\d,]+) rows\)$").unwrap();
    let clicks_header = header(&sampled.stdout);
    let caps = re
        .captures(&clicks_header)
        .unwrap_or_else(|| panic!("{}", sampled.stdout));
    let read: u64 = caps[1].replace(',', "").parse().unwrap();
    let of: u64 = caps[2].replace(',', "").parse().unwrap();
    assert!((500..=4000).contains(&read), "{read}");
    assert!((140_000..=160_000).contains(&of), "{of}");
    assert_eq!(
        header(&full.stdout),
        "\"public\".\"clicks\"   (read all 150,000 rows)"
    );
    let clicks = full
        .stdout
        .lines()
        .skip_while(|l| !l.contains("\"clicks\""))
        .find(|l| l.trim_start().starts_with("payload "))
        .unwrap();
    assert!(
        clicks.contains("10000 of 150000 sampled values look like email"),
        "{clicks}"
    );

    // The starter says per table what its evidence came from.
    let starter = test.read("starter.yaml");
    assert!(
        starter.contains("  events:   # read all 5,000 rows\n"),
        "{starter}"
    );
    assert!(
        starter.contains(&format!(
            "  clicks:   # sampled {} of about {} rows\n",
            &caps[1], &caps[2]
        )),
        "{starter}"
    );
    assert_eq!(rule(&starter, "payload"), "{ redact: [email] }");
}

/// Item 7: rules that fit their columns, and names YAML must quote. An
/// e-mail fake needs 64 characters (the binder refuses it on `char(40)` or
/// `varchar(10)`), a column that refuses NULL gets a constant of its type,
/// personal facts stored as numbers and dates are findings by name, and a
/// schema, table or column named with dots, quotes, `#`, `:` or a newline
/// still reads back and plans.
#[test]
fn starter_rules_fit_their_columns_and_odd_names_read_back() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        r#"CREATE SCHEMA "my.app";
        CREATE TABLE "my.app"."odd.people" (
            id serial PRIMARY KEY,
            email varchar(10),
            contact char(40),
            "say ""hi"": #now" text,
            U&"two\000alines" text,
            born_on date,
            age integer NOT NULL,
            weight_kg numeric,
            height_cm integer,
            salary numeric(10,2),
            dob date,
            national_id bigint,
            iban text,
            tax_id integer,
            account_no integer
        );
        CREATE TABLE "null" (id serial PRIMARY KEY, "user:email" varchar(30));
        INSERT INTO "my.app"."odd.people" (email, contact, "say ""hi"": #now", U&"two\000alines",
                                           born_on, age, salary)
        SELECT 'u' || g || '@x.test', 'c' || g || '@realmail-prod.test', 'hello', 'a' || chr(10) || 'b',
               date '1980-01-01' + g, 30 + g, 1000
        FROM generate_series(1, 20) g;
        INSERT INTO "null" ("user:email") VALUES ('jo@realmail-prod.test');"#,
    );
    let (stdout, starter) = scan_and_plan(&prod.url, &[], "scan_fit");
    {
        let _masks = masks();
        insta::assert_snapshot!("starter_that_fits_and_quotes", starter);
    }
    for fact in [
        "born_on",
        "age",
        "weight_kg",
        "height_cm",
        "salary",
        "dob",
        "national_id",
        "iban",
        "tax_id",
        "account_no",
    ] {
        assert!(
            line(&stdout, fact).contains("UNCOVERED: name contains"),
            "{fact}"
        );
    }
    assert!(
        starter.contains("  \"\\\"my.app\\\".odd.people\":   # read all 20 rows\n"),
        "{starter}"
    );
    assert!(
        stdout.contains("  two\\nlines "),
        "a newline in a name is shown escaped: {stdout}"
    );
    assert!(starter.contains("  \"null\":"), "{starter}");
    assert_eq!(rule(&starter, "email"), "{ hash: true }");
    assert_eq!(rule(&starter, "contact"), "{ hash: true }");
    assert_eq!(rule(&starter, "\"user:email\""), "{ hash: true }");
    assert_eq!(rule(&starter, "age"), "{ set: \"0\" }");
    assert_eq!(rule(&starter, "weight_kg"), "null");
    assert_eq!(rule(&starter, "born_on"), "{ fake: date_of_birth }");
    assert!(
        starter.contains("keep: [\"say \\\"hi\\\": #now\", \"two\\nlines\"]"),
        "{starter}"
    );
}

/// Item 7: a lookup table's `name` (16 film categories, 6 languages, each
/// pointed at by other tables' foreign keys) is reference data, kept with
/// the reason; a small table of customers is not, whatever points at it.
#[test]
fn a_lookup_tables_name_is_kept_as_reference_data() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE category (category_id serial PRIMARY KEY, name text NOT NULL); \
         CREATE TABLE language (language_id serial PRIMARY KEY, name char(20) NOT NULL); \
         CREATE TABLE customer (customer_id serial PRIMARY KEY, name text NOT NULL); \
         CREATE TABLE film (film_id serial PRIMARY KEY, title text, \
             language_id int REFERENCES language, original_language_id int REFERENCES language); \
         CREATE TABLE film_category (film_id int REFERENCES film, category_id int REFERENCES category); \
         CREATE TABLE rental (id serial PRIMARY KEY, film_id int REFERENCES film, \
             customer_id int REFERENCES customer); \
         INSERT INTO category (name) SELECT 'Genre ' || g FROM generate_series(1, 16) g; \
         INSERT INTO language (name) SELECT 'Language ' || g FROM generate_series(1, 6) g; \
         INSERT INTO customer (name) VALUES ('Mary Example'), ('Patricia Sample'); \
         INSERT INTO film (title, language_id) SELECT 'Film ' || g, 1 + g % 6 FROM generate_series(1, 200) g; \
         INSERT INTO film_category SELECT g, 1 + g % 16 FROM generate_series(1, 200) g; \
         INSERT INTO rental (film_id, customer_id) SELECT g, 1 + g % 2 FROM generate_series(1, 200) g; \
         ANALYZE;",
    );
    let (_, starter) = scan_and_plan(&prod.url, &[], "scan_lookup");
    {
        let _masks = masks();
        insta::assert_snapshot!("starter_with_lookup_tables", starter);
    }
    let of = |table: &str| {
        starter
            .split(&format!("\n  {table}:"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {table} in {starter}"))
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("   "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        of("category").contains(
            "name: keep   # name contains `name`; reference data: 16 rows, referenced by 1 foreign key (a lookup table, not people) — check"
        ),
        "{starter}"
    );
    assert!(
        of("language").contains("referenced by 2 foreign keys"),
        "{starter}"
    );
    assert_eq!(rule(&of("customer"), "name"), "{ fake: name }");
}
