//! In-flight anonymization, end to end through `flightpath run`: production
//! full of (synthetic) personal data is cloned into staging with rules, and
//! staging is then searched, every text and JSON column of every table, for
//! any value production had in a ruled column. Also: determinism across runs
//! and secrets (also `FLIGHTPATH_SECRET` alone, which never shows), joins on
//! anonymized e-mails, nested and dotted `json:` rules giving the same
//! staging, unique fakes on a large table, and a new personal-data column
//! stopping the run before it writes.

use crate::clone::anonymized_clone_test;
use crate::secrets::files_under;
use crate::support::cli::{Output, Test};
use crate::support::pg::{all_text, execute, fresh_db_sync, leaks, query_strings, staging_db};
use crate::support::snapshot::{masks, streams};

/// Production: users, profiles with JSON, comments with addresses inside
/// free text (also URL-encoded), form submissions, a newsletter list that
/// shares e-mails with users, pages linking to the production host,
/// sessions. Every personal value carries its row number, so no fake can
/// produce it by chance.
const PROD: &str = r#"
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE auth_user (
    id integer PRIMARY KEY,
    username varchar(150) NOT NULL UNIQUE,
    email citext NOT NULL UNIQUE,
    first_name varchar(150) NOT NULL,
    last_name varchar(150) NOT NULL,
    password varchar(128) NOT NULL,
    is_staff boolean NOT NULL DEFAULT false,
    date_joined timestamptz NOT NULL,
    last_login_ip inet
);
INSERT INTO auth_user
SELECT n, 'login' || n || 'q', 'person' || n || '.quill@mail.test', 'Firstzq' || n, 'Lastzq' || n,
       'pbkdf2_sha256$600000$salt' || n || '$hashhashhash', n % 50 = 0,
       timestamptz '2020-01-01' + n * interval '1 hour', ('10.9.' || (n / 250) || '.' || (n % 250 + 1))::inet
FROM generate_series(1, 400) n;

CREATE TABLE profile (
    user_id integer PRIMARY KEY REFERENCES auth_user(id),
    phone text,
    street text,
    born date,
    prefs jsonb
);
INSERT INTO profile
SELECT n, '+44 20 7946 ' || lpad(n::text, 4, '0'), n || ' Quillstreet Road', date '1970-01-01' + n * 20,
       jsonb_build_object('theme', 'dark', 'contact', jsonb_build_object('email', 'alt' || n || '.quill@mail.test', 'phone', '0161 496 ' || lpad(n::text, 4, '0')), 'size', 1.50)
FROM generate_series(1, 400) n;
UPDATE profile SET phone = NULL, prefs = NULL WHERE user_id % 7 = 0;

CREATE TABLE comment (
    id serial PRIMARY KEY,
    user_id integer REFERENCES auth_user(id),
    body text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
INSERT INTO comment (user_id, body)
SELECT n, 'Great post! Mail me at person' || n || '.quill@mail.test or see https://www.prod.test/about?ref=person' || n || '.quill%40mail.test'
FROM generate_series(1, 400) n;

CREATE TABLE form_submission (
    id serial PRIMARY KEY,
    form_data json NOT NULL,
    submitted timestamptz NOT NULL DEFAULT now()
);
INSERT INTO form_submission (form_data)
SELECT json_build_object('name', 'Firstzq' || n || ' Lastzq' || n, 'email', 'form' || n || '.quill@mail.test', 'message', 'hello', 'mobile_phone', '0161 496 ' || lpad(n::text, 4, '0'))
FROM generate_series(1, 400) n;

CREATE TABLE newsletter (
    email citext PRIMARY KEY,
    subscribed date NOT NULL
);
INSERT INTO newsletter SELECT 'person' || n || '.quill@mail.test', date '2024-01-01' + n FROM generate_series(1, 400, 3) n;

CREATE TABLE page (
    id serial PRIMARY KEY,
    title text NOT NULL,
    body text NOT NULL
);
INSERT INTO page (title, body)
SELECT 'Page ' || n, '<a href="https://www.prod.test/p/' || n || '">more</a> and https://prod.test/x, write to info@prod.test'
FROM generate_series(1, 50) n;

CREATE TABLE django_session (
    session_key varchar(40) PRIMARY KEY,
    session_data text NOT NULL,
    expire_date timestamptz NOT NULL
);
INSERT INTO django_session SELECT 'key' || n, 'data for person' || n || '.quill@mail.test', now() FROM generate_series(1, 50) n;

CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    user_id integer REFERENCES auth_user(id),
    total numeric(10,2) NOT NULL,
    placed timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (user_id, total) SELECT n % 400 + 1, n * 1.25 FROM generate_series(1, 2000) n;

-- An array of an enum has no portable binary form: this table travels as text.
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE survey (
    id integer PRIMARY KEY,
    moods mood[],
    respondent text NOT NULL,
    answers jsonb,
    taken timestamptz NOT NULL,
    tags text[]
);
INSERT INTO survey
SELECT n, ARRAY['ok', 'happy']::mood[], 'resp' || n || '.quill@mail.test',
       jsonb_build_object('email', 'ans' || n || '.quill@mail.test', 'q1', E'tab\there "quoted" \\ back'),
       timestamptz '2024-03-01 12:30:45.123456+02' + n * interval '1 day',
       ARRAY['tag' || n || '.quill@mail.test', NULL, 'plain "x"']
FROM generate_series(1, 300) n;
ANALYZE;
"#;

const RULES: &str = r#"
secret: ${FLIGHTPATH_SECRET}
locale: en_GB
tables:
  auth_user:
    columns:
      email: { fake: email, unique: true }
      username: { template: "user{id}" }
      first_name: { fake: first_name }
      last_name: { fake: last_name }
      password: { set: "!" }
      last_login_ip: { fake: ipv4 }
    keep: [is_staff, date_joined]
  profile:
    columns:
      phone: { fake: phone }
      street: { fake: street_address }
      born: { date_shift: 60 }
      prefs:
        json: { contact.email: { fake: email }, "contact.*phone*": { fake: phone } }
  comment:
    columns:
      body: { redact: [email, phone] }
  form_submission:
    columns:
      form_data:
        json: { email: { fake: email }, name: { fake: name }, "*phone*": { fake: phone } }
  newsletter:
    columns:
      email: { fake: email, unique: true }
  page:
    keep: [title, body]
  django_session: { truncate: true }
  survey:
    columns:
      respondent: { fake: email }
      answers: { json: { email: { fake: email } } }
      taken: { date_shift: 30 }
      tags: { redact: [email] }
    keep: [moods]
"#;

/// `rewrite:` for the clone step, added to its `with:`.
const REWRITE: &str = r#", rewrite: { replace: { "www.prod.test": "www.staging.test", "prod.test": "staging.test" } }"#;

fn seeded_prod() -> String {
    let prod = fresh_db_sync();
    execute(&prod.url, PROD);
    prod.url
}

fn run_clone(prod: &str, staging: &str, rules: &str, secret: &str, extra: &str) -> Output {
    clone_test(prod, staging, rules, secret, extra).run()
}

fn clone_test(prod: &str, staging: &str, rules: &str, secret: &str, extra: &str) -> Test {
    anonymized_clone_test(prod, staging, rules, extra)
        .env("FLIGHTPATH_SECRET", secret)
        .args(["run", "reset", "--yes", "--json"])
}

/// Every value production holds in a ruled column, and every e-mail address
/// anywhere in production's JSON.
fn production_secrets(prod: &str) -> Vec<String> {
    let mut values = Vec::new();
    for sql in [
        "SELECT email::text FROM auth_user",
        "SELECT username FROM auth_user",
        "SELECT first_name FROM auth_user",
        "SELECT last_name FROM auth_user",
        "SELECT password FROM auth_user",
        "SELECT host(last_login_ip) FROM auth_user",
        "SELECT phone FROM profile WHERE phone IS NOT NULL",
        "SELECT street FROM profile",
        "SELECT prefs->'contact'->>'email' FROM profile WHERE prefs IS NOT NULL",
        "SELECT prefs->'contact'->>'phone' FROM profile WHERE prefs IS NOT NULL",
        "SELECT form_data->>'email' FROM form_submission",
        "SELECT form_data->>'name' FROM form_submission",
        "SELECT form_data->>'mobile_phone' FROM form_submission",
        "SELECT email::text FROM newsletter",
        "SELECT respondent FROM survey",
        "SELECT answers->>'email' FROM survey",
        "SELECT 'tag' || id || '.quill@mail.test' FROM survey",
        "SELECT session_data FROM django_session",
        // The names inside the e-mails, so a partial leak is caught too.
        "SELECT 'person' || id || '.quill' FROM auth_user",
    ] {
        values.extend(query_strings(prod, sql));
    }
    values
}

/// A digest of staging's anonymized tables, to compare two clones.
fn digest(url: &str) -> Vec<String> {
    query_strings(
        url,
        "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM (\
           SELECT u::text AS t FROM auth_user u UNION ALL SELECT p::text FROM profile p \
           UNION ALL SELECT c.id || c.body FROM comment c UNION ALL SELECT f.form_data::text FROM form_submission f \
           UNION ALL SELECT n::text FROM newsletter n UNION ALL SELECT s::text FROM survey s) x",
    )
}

fn assert_ok(out: &Output) {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

#[test]
fn no_production_value_of_a_ruled_column_reaches_staging() {
    let prod = seeded_prod();
    let staging = staging_db("anon_leak");
    let out = run_clone(&prod, &staging, RULES, "s3cret-one", REWRITE);
    assert_ok(&out);

    let secrets = production_secrets(&prod);
    assert!(secrets.len() > 4000, "{} values", secrets.len());
    let text = all_text(&staging);
    assert!(text.len() > 3000, "{} values in staging", text.len());
    let leaks = leaks(&staging, &secrets);
    assert!(
        leaks.is_empty(),
        "leaked into staging:\n{}",
        leaks.join("\n")
    );

    // What was not ruled is intact, and the rest changed as the rules say.
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM orders"),
        ["2000"]
    );
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM django_session"),
        ["0"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*)::text FROM auth_user WHERE username <> 'user' || id OR password <> '!'"
        ),
        ["0"]
    );
    let domains = query_strings(
        &staging,
        "SELECT DISTINCT split_part(email::text, '@', 2) FROM auth_user UNION SELECT DISTINCT split_part(prefs->'contact'->>'email', '@', 2) FROM profile WHERE prefs IS NOT NULL ORDER BY 1",
    );
    assert!(
        domains
            .iter()
            .all(|d| ["example.com", "example.net", "example.org"].contains(&d.as_str())),
        "{domains:?}"
    );
    // NULL stays NULL; JSON keys no rule reaches are untouched.
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*)::text FROM profile WHERE (phone IS NULL) <> (user_id % 7 = 0)"
        ),
        ["0"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT DISTINCT (prefs->>'theme') || ' ' || (prefs->'size')::text FROM profile WHERE prefs IS NOT NULL"
        ),
        ["dark 1.50"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*)::text FROM profile p JOIN (SELECT user_id, born FROM profile) x USING (user_id) WHERE p.born = date '1970-01-01' + p.user_id * 20"
        ),
        ["0"],
        "every date moved"
    );
    // The text-format table: values intact where no rule reaches, and
    // every timestamp moved by whole days, its time of day kept.
    assert_eq!(
        query_strings(
            &staging,
            r#"SELECT count(*)::text FROM survey WHERE moods = '{ok,happy}' AND answers->>'q1' = E'tab\there "quoted" \\ back'
               AND tags[2] IS NULL AND tags[3] = 'plain "x"' AND (taken AT TIME ZONE 'UTC')::time = '10:30:45.123456'
               AND taken <> timestamptz '2024-03-01 12:30:45.123456+02' + id * interval '1 day'"#
        ),
        ["300"]
    );
    // URLs rewritten, longest first; the e-mail on the same domain stays.
    let body = query_strings(&staging, "SELECT body FROM page WHERE id = 1");
    assert_eq!(
        body,
        [
            "<a href=\"https://www.staging.test/p/1\">more</a> and https://staging.test/x, write to info@prod.test"
        ]
    );

    let report = out.json();
    let details = report["steps"][0]["details"].to_string();
    for expected in [
        "anonymized columns",
        "URL rewrites",
        "fake: email (unique)",
        "redact: email, phone",
        "text format",
    ] {
        assert!(
            details.contains(expected),
            "{expected} missing from {details}"
        );
    }
}

#[test]
fn the_same_secret_gives_the_same_staging_and_joins_on_emails_hold() {
    let prod = seeded_prod();
    let first = staging_db("anon_det_1");
    let second = staging_db("anon_det_2");
    let other = staging_db("anon_det_3");
    assert_ok(&run_clone(&prod, &first, RULES, "same", ""));
    assert_ok(&run_clone(&prod, &second, RULES, "same", ""));
    assert_ok(&run_clone(&prod, &other, RULES, "different", ""));
    assert_eq!(digest(&first), digest(&second), "same secret, same data");
    assert_ne!(digest(&first), digest(&other), "another secret, other data");

    let joined = "SELECT count(*)::text FROM newsletter n JOIN auth_user u ON u.email = n.email";
    assert_eq!(query_strings(&first, joined), query_strings(&prod, joined));
    assert_eq!(query_strings(&first, joined), ["134"]);
}

/// `FLIGHTPATH_SECRET` set and no `secret:` in any file: two runs into two
/// staging databases give the same data, the plan says where the secret
/// came from, and the value appears in no stream, report or journal.
#[test]
fn the_secret_from_the_environment_gives_the_same_staging_every_run_and_never_shows() {
    const KEY: &str = "Kestrel-orchard-7731-envkey";
    let rules = RULES.replacen("secret: ${FLIGHTPATH_SECRET}\n", "", 1);
    assert!(!rules.contains("secret"), "{rules}");
    let prod = seeded_prod();
    let first = staging_db("anon_env_1");
    let second = staging_db("anon_env_2");

    let plan = clone_test(&prod, &first, &rules, KEY, "")
        .args(["plan", "reset"])
        .run();
    assert_ok(&plan);
    assert!(
        plan.stdout
            .contains("from `FLIGHTPATH_SECRET` (no rules file sets `secret:`)"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("random per run"), "{}", plan.stdout);
    let mut seen = vec![(
        "plan's output".to_string(),
        format!("{}{}", plan.stdout, plan.stderr),
    )];
    for staging in [&first, &second] {
        let test = clone_test(&prod, staging, &rules, KEY, "");
        let out = test.run();
        assert_ok(&out);
        assert!(out.stdout.contains("FLIGHTPATH_SECRET"), "{}", out.stdout);
        seen.push((
            "the run's output".into(),
            format!("{}{}", out.stdout, out.stderr),
        ));
        seen.extend(files_under(&test.dir().join(".flightpath")));
    }
    assert!(seen.len() > 4, "the runs' reports and journals are read");
    for (what, text) in &seen {
        assert!(!text.contains(KEY), "the secret appears in {what}");
    }
    assert_eq!(digest(&first), digest(&second), "same variable, same data");
}

/// The nested form of a `json:` rule and its dotted paths give the same
/// staging, byte for byte, with the same secret.
#[test]
fn nested_and_dotted_json_rules_give_identical_staging() {
    let dotted = r#"json: { contact.email: { fake: email }, "contact.*phone*": { fake: phone } }"#;
    let nested = r#"json: { contact: { email: { fake: email }, "*phone*": { fake: phone } } }"#;
    assert!(RULES.contains(dotted));
    let prod = seeded_prod();
    let first = staging_db("anon_json_dotted");
    let second = staging_db("anon_json_nested");
    assert_ok(&run_clone(&prod, &first, RULES, "fixed-key-json", ""));
    assert_ok(&run_clone(
        &prod,
        &second,
        &RULES.replacen(dotted, nested, 1),
        "fixed-key-json",
        "",
    ));
    let prefs =
        "SELECT user_id || ' ' || coalesce(prefs::text, 'NULL') FROM profile ORDER BY user_id";
    let staged = query_strings(&first, prefs);
    assert_eq!(staged.len(), 400);
    assert_eq!(
        staged,
        query_strings(&second, prefs),
        "the same JSON, byte for byte"
    );
    assert_eq!(digest(&first), digest(&second), "the same staging");
    // And the rules did apply: no production address is left in it.
    let emails = query_strings(
        &prod,
        "SELECT prefs->'contact'->>'email' FROM profile WHERE prefs IS NOT NULL",
    );
    assert!(emails.len() > 300);
    let staged = staged.join("\n");
    assert!(
        emails.iter().all(|e| !staged.contains(e.as_str())),
        "{staged}"
    );
}

#[test]
fn a_new_personal_column_without_a_rule_stops_the_run_before_it_writes() {
    let prod = seeded_prod();
    execute(
        &prod,
        "ALTER TABLE profile ADD COLUMN mobile text; UPDATE profile SET mobile = '07700 900' || lpad(user_id::text, 3, '0');\
         ALTER TABLE orders ADD COLUMN gift_note text;",
    );
    let staging = staging_db("anon_new_column");
    execute(
        &staging,
        "CREATE TABLE old_staging_marker (note text); INSERT INTO old_staging_marker VALUES ('still here');",
    );
    let out = run_clone(&prod, &staging, RULES, "s", "");
    assert_eq!(
        out.code, 3,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "column \"public\".\"profile\".\"mobile\" (text) has no rule: name contains `mobile`"
        ),
        "{}",
        out.stderr
    );
    assert!(all.contains("gift_note"), "{all}");
    assert!(
        !all.contains("07700 900001"),
        "values never appear in messages"
    );
    assert_eq!(
        query_strings(&staging, "SELECT note FROM old_staging_marker"),
        ["still here"]
    );
}

/// The dry run's plan of a clone with rules, whole: tables, formats, what
/// each table's rules do, coverage and warnings.
#[test]
fn the_plan_of_an_anonymized_clone_reads_whole() {
    let prod = seeded_prod();
    let staging = staging_db("anon_plan_whole");
    let out = clone_test(&prod, &staging, RULES, "s", REWRITE)
        .args(["plan", "reset"])
        .run();
    let _masks = masks();
    insta::assert_snapshot!(streams(&out));
}

/// The coverage check's refusal (exit code 3), whole: every uncovered
/// column with its evidence and what to do.
#[test]
fn the_refusal_of_an_uncovered_personal_column_reads_whole() {
    let prod = seeded_prod();
    execute(
        &prod,
        "ALTER TABLE profile ADD COLUMN mobile text; UPDATE profile SET mobile = '07700 900' || lpad(user_id::text, 3, '0'); ANALYZE profile;",
    );
    let staging = staging_db("anon_refusal_whole");
    let out = clone_test(&prod, &staging, RULES, "s", "")
        .args(["run", "reset", "--yes"])
        .run();
    assert_eq!(out.code, 3, "{}", streams(&out));
    let _masks = masks();
    insta::assert_snapshot!(streams(&out));
}

#[test]
fn a_stale_rule_is_an_error_naming_the_place_with_a_suggestion() {
    let prod = seeded_prod();
    let staging = staging_db("anon_stale");
    let rules = RULES.replace(
        "      street: { fake: street_address }",
        "      stret: { fake: street_address }",
    );
    let out = run_clone(&prod, &staging, &rules, "s", "");
    assert_eq!(out.code, 3, "{}", out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("anonymizers/site.yaml:16:7"), "{all}");
    assert!(
        all.contains("column `profile.stret` does not exist"),
        "{all}"
    );
    assert!(all.contains("did you mean `street`?"), "{all}");
}

#[test]
fn unique_fake_emails_hold_a_unique_index_on_200k_users_and_match_their_papertrail_versions() {
    // Rails-shaped: Devise's users with a unique index on the e-mail, and
    // PaperTrail's versions recording each address in `object_changes`
    // (every third one in another case, as typed before Devise lowercased it).
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE users (id bigint PRIMARY KEY, email character varying DEFAULT '' NOT NULL, name text NOT NULL);\
         CREATE UNIQUE INDEX index_users_on_email ON users (email);\
         CREATE TABLE versions (id bigint PRIMARY KEY, item_type character varying NOT NULL, item_id bigint NOT NULL, event character varying NOT NULL, object_changes jsonb);\
         INSERT INTO users SELECT n, 'u' || n || '@mail.test', 'N' || n FROM generate_series(1, 200000) n;\
         INSERT INTO versions SELECT n, 'User', n, 'create', jsonb_build_object(\
           'email', jsonb_build_array(NULL::text, CASE WHEN n % 3 = 0 THEN 'U' || n || '@Mail.TEST' ELSE 'u' || n || '@mail.test' END),\
           'sign_in_count', jsonb_build_array(0, 1)) FROM generate_series(1, 200000) n; ANALYZE;",
    );
    let staging = staging_db("anon_unique");
    let rules = r#"
        secret: ${FLIGHTPATH_SECRET}
        tables:
          users:
            columns:
              email: { fake: email, unique: true }
              name: { fake: name }
          versions:
            columns:
              object_changes: { json: { "*email*": { fake: email } } }
            keep: [item_type, event]
    "#;
    // A debug build transforming 400k rows on a busy 2-core machine can
    // pass the harness's default 120 s; this is a hang guard, not a timing.
    let began = std::time::Instant::now();
    let out = clone_test(&prod.url, &staging, rules, "u", "")
        .timeout(std::time::Duration::from_secs(600))
        .run();
    assert_ok(&out);
    eprintln!("200k users + 200k versions cloned in {:?}", began.elapsed());
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(DISTINCT email)::text || ' ' || count(*) FILTER (WHERE email ILIKE 'u%@mail.test') FROM users"
        ),
        ["200000 0"]
    );
    // Every user's staging e-mail is the one their version records, the
    // case variants included, and the unique index was built.
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*) FILTER (WHERE v.object_changes->'email'->>1 = u.email)::text || ' ' \
                    || count(*) FILTER (WHERE v.object_changes::text ILIKE '%mail.test%') || ' ' \
                    || count(*) FILTER (WHERE jsonb_typeof(v.object_changes->'email'->0) = 'null') \
             FROM users u JOIN versions v ON v.item_id = u.id"
        ),
        ["200000 0 200000"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT indisunique::text || ' ' || indisvalid FROM pg_index WHERE indexrelid = 'index_users_on_email'::regclass"
        ),
        ["true true"]
    );
}

#[test]
fn templates_and_redact_finds_embed_the_columns_fake_never_the_original() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE accounts (id integer PRIMARY KEY, email text NOT NULL, login text NOT NULL,\
           password text NOT NULL, password_copy text, note text, created date NOT NULL, created_copy text);\
         INSERT INTO accounts VALUES\
           (1, 'Ada.Lovelace@Mail.Test', 'ada', 'pbkdf2$real', 'x', 'mail ada.lovelace@mail.test please', '2020-02-03', 'x'),\
           (2, 'grace@mail.test', 'grace', 'pbkdf2$real2', 'x', 'GRACE@MAIL.TEST wrote', '2021-04-05', 'x');",
    );
    let staging = staging_db("anon_templates");
    let rules = r#"
        secret: ${FLIGHTPATH_SECRET}
        tables:
          accounts:
            columns:
              email: { fake: email, unique: true }
              login: { template: "{email}" }
              password: { set: "!" }
              password_copy: { template: "{password}/{id}" }
              note: { redact: [email] }
              created: { date_shift: 30 }
              created_copy: { template: "{created}" }
    "#;
    let out = run_clone(&prod.url, &staging, rules, "t", "");
    assert_ok(&out);
    assert_eq!(
        query_strings(
            &staging,
            "SELECT (login = email)::text || ' ' || (password_copy = '!/' || id) || ' ' \
                    || (note IN ('mail ' || email || ' please', email || ' wrote')) || ' ' \
                    || (created_copy = created::text) || ' ' || (email NOT ILIKE '%mail.test') \
             FROM accounts ORDER BY id"
        ),
        ["true true true true true", "true true true true true"]
    );
}

#[test]
fn except_rows_are_copied_unchanged_and_invalid_json_is_named_by_its_key() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE staff (id integer PRIMARY KEY, email text NOT NULL, is_staff boolean NOT NULL, notes text);\
         INSERT INTO staff SELECT n, 'worker' || n || '@corp.test', n <= 3, '{\"phone\": \"0161 496 0000\"}' FROM generate_series(1, 20) n;",
    );
    let staging = staging_db("anon_except");
    let rules = r#"
        secret: ${FLIGHTPATH_SECRET}
        tables:
          staff:
            columns:
              email: { fake: email, unique: true }
              notes: { json: { phone: { fake: phone } } }
            keep: [is_staff]
            except: "is_staff"
    "#;
    let out = run_clone(&prod.url, &staging, rules, "e", "");
    assert_ok(&out);
    assert_eq!(
        query_strings(
            &staging,
            "SELECT string_agg(email, ',' ORDER BY id) FROM staff WHERE is_staff"
        ),
        ["worker1@corp.test,worker2@corp.test,worker3@corp.test"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*)::text FROM staff WHERE NOT is_staff AND (email LIKE '%corp.test' OR notes LIKE '%0161%')"
        ),
        ["0"]
    );
    let report = out.json();
    assert!(
        report["steps"][0]["details"]
            .to_string()
            .contains(r#"\"public\".\"staff\": 3"#),
        "except rows are counted"
    );

    // A text column that should hold JSON but does not: the run fails,
    // naming table, column and key, never the value; staging is untouched.
    execute(
        &prod.url,
        "UPDATE staff SET notes = 'not json: 0161 496 0999' WHERE id = 7",
    );
    let staging = staging_db("anon_bad_json");
    execute(
        &staging,
        "CREATE TABLE old_staging_marker (note text); INSERT INTO old_staging_marker VALUES ('still here');",
    );
    let out = run_clone(&prod.url, &staging, rules, "e", "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("\"public\".\"staff\", column `notes`, row with id = 7")
            && out.stderr.contains("not valid JSON"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("0161 496 0999"), "{}", out.stderr);
    assert_eq!(
        query_strings(&staging, "SELECT note FROM old_staging_marker"),
        ["still here"]
    );
}

#[test]
fn redact_replaces_emails_in_json_object_keys_too() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        "CREATE TABLE seen (id integer PRIMARY KEY, recipients jsonb NOT NULL);\
         INSERT INTO seen SELECT n, jsonb_build_object(\
             'key' || n || '@realmail-prod.test', true,\
             'by', jsonb_build_object('owner' || n || '@realmail-prod.test', 'cc key' || n || '@realmail-prod.test'))\
           FROM generate_series(1, 300) n;",
    );
    let staging = staging_db("anon_json_keys");
    let rules = r#"
        secret: ${FLIGHTPATH_SECRET}
        tables:
          seen:
            columns:
              recipients: { redact: [email] }
    "#;
    let out = run_clone(&prod.url, &staging, rules, "k", "");
    assert_ok(&out);
    let mut secrets = query_strings(
        &prod.url,
        "SELECT k FROM seen, jsonb_object_keys(recipients) k WHERE k LIKE '%@%' \
         UNION ALL SELECT k FROM seen, jsonb_object_keys(recipients->'by') k",
    );
    secrets.extend(query_strings(
        &prod.url,
        "SELECT 'key' || n || '@' FROM generate_series(1, 300) n",
    ));
    secrets.push("realmail-prod.test".into());
    assert_eq!(secrets.len(), 901);
    let leaks = leaks(&staging, &secrets);
    assert!(
        leaks.is_empty(),
        "leaked into staging:\n{}",
        leaks.join("\n")
    );
    // Every row is still there, each with two top-level keys, the key and
    // the value of one address the same fake.
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*)::text FROM seen s, jsonb_object_keys(s.recipients) k \
             WHERE k <> 'by' AND s.recipients->'by'->>(SELECT min(o) FROM jsonb_object_keys(s.recipients->'by') o) = 'cc ' || k"
        ),
        ["300"]
    );

    // Two keys that redact to one (addresses differing only in case): the
    // run fails naming table, column and row, never the address.
    execute(
        &prod.url,
        r#"UPDATE seen SET recipients = '{"Dup@Realmail-Prod.test": 1, "dup@realmail-prod.test": 2}' WHERE id = 9"#,
    );
    let staging = staging_db("anon_json_keys_dup");
    let out = run_clone(&prod.url, &staging, rules, "k", "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("\"public\".\"seen\", column `recipients`, row with id = 9")
            && out
                .stderr
                .contains("become the same key after `redact: email`"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.to_lowercase().contains("dup@"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_partitioned_tables_rules_reach_every_partition_and_matrices_and_deep_json_copy() {
    let prod = fresh_db_sync();
    execute(
        &prod.url,
        r#"
        CREATE TABLE events (
            id integer NOT NULL,
            at date NOT NULL,
            actor text NOT NULL,
            seen_by text[][],
            payload jsonb,
            PRIMARY KEY (id, at)
        ) PARTITION BY RANGE (at);
        CREATE TABLE events_2024 PARTITION OF events
            FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY RANGE (at);
        CREATE TABLE events_2024_h1 PARTITION OF events_2024 FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
        CREATE TABLE events_2024_h2 PARTITION OF events_2024 FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');
        CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        INSERT INTO events
        SELECT n, date '2024-01-01' + n, 'actor' || n || '@realmail-prod.test',
               ARRAY[ARRAY['a' || n || '@realmail-prod.test', 'b' || n || '@realmail-prod.test'],
                     ARRAY['c' || n || '@realmail-prod.test', NULL]],
               -- Nested 400 deep, an address at the bottom.
               (repeat('{"in": ', 400) || '"deep' || n || '@realmail-prod.test"' || repeat('}', 400))::jsonb
        FROM generate_series(1, 600) n;
        -- A 3-D array with lower bounds other than 1, and an array column
        -- of a table without rules (forwarded as it is).
        CREATE TABLE cube (id integer PRIMARY KEY, cells text[]);
        INSERT INTO cube VALUES (1, '[0:1][2:3][1:1]={{{x1@realmail-prod.test},{y}},{{z},{NULL}}}');
        ANALYZE;
        "#,
    );
    let staging = staging_db("anon_partitions");
    let rules = r#"
        secret: ${FLIGHTPATH_SECRET}
        tables:
          events:
            columns:
              actor: { fake: email }
              seen_by: { redact: [email] }
              payload: { redact: [email] }
            keep: [id, at]
          cube:
            columns:
              cells: { redact: [email] }
    "#;
    let out = run_clone(&prod.url, &staging, rules, "k", "");
    assert_ok(&out);
    // Every partition holds its rows, none of production's addresses.
    assert_eq!(
        query_strings(
            &staging,
            "SELECT string_agg(tableoid::regclass || '=' || n, ',' ORDER BY tableoid::regclass::text) \
             FROM (SELECT tableoid, count(*) n FROM events GROUP BY tableoid) x"
        ),
        ["events_2024_h1=181,events_2024_h2=184,events_2025=235"]
    );
    let leaks = leaks(&staging, &["realmail-prod.test".to_string()]);
    assert!(leaks.is_empty(), "leaked:\n{}", leaks.join("\n"));
    // The matrix keeps its shape and its NULL; the cube its bounds; the
    // deep JSON its depth, its address replaced.
    assert_eq!(
        query_strings(
            &staging,
            "SELECT array_dims(seen_by) || ' ' || (seen_by[2][2] IS NULL) || ' ' || (seen_by[1][1] LIKE '%@%') \
             FROM events WHERE id = 7"
        ),
        ["[1:2][1:2] true true"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT array_dims(cells) || ' ' || cells[1][2][1] || ' ' || (cells[0][2][1] LIKE '%@%') FROM cube"
        ),
        ["[0:1][2:3][1:1] z true"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*)::text FROM events \
             WHERE payload #>> (SELECT array_agg('in'::text) FROM generate_series(1, 400)) LIKE '_%@_%' \
               AND payload #>> (SELECT array_agg('in'::text) FROM generate_series(1, 400)) NOT LIKE '%realmail-prod%'"
        ),
        ["600"]
    );
}
