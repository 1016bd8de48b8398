//! `postgres.staging-only-rows` on real Django- and Rails-shaped schemas:
//! the staging-only accounts are listed by key (and only by key) in the
//! dry run and the run, with the rows of included tables counted; case,
//! composite keys, NULL keys and `where` are honoured; what it cannot do
//! is refused with the way round it. With `preserve: true` the accounts
//! survive a reset (swap and in-place) with their included rows — a
//! polymorphic table's too — one of them under a new id its rows follow;
//! `on_conflict` decides about a unique value production now also has; a
//! parent the clone will not have is refused in the plan; no production
//! value reaches staging or the report; and a resumed run reads the rows
//! again.

use crate::support::cli::{Output, Test, step};
use crate::support::pg::{execute, fresh_db_sync, leaks, query_strings, staging_db};
use crate::support::snapshot::masks;

const DJANGO: &str = "
    CREATE TABLE auth_user (id serial PRIMARY KEY, username text NOT NULL UNIQUE,
        email text, first_name text NOT NULL, invited_by_id int REFERENCES auth_user (id));
    CREATE TABLE auth_group (id serial PRIMARY KEY, name text NOT NULL);
    CREATE TABLE auth_user_groups (id serial PRIMARY KEY,
        user_id int NOT NULL REFERENCES auth_user (id), group_id int NOT NULL REFERENCES auth_group (id));
    CREATE TABLE profile (user_id int PRIMARY KEY REFERENCES auth_user (id), bio text, prefs json);
    CREATE TABLE note (id serial PRIMARY KEY, author int);
    INSERT INTO auth_group (name) VALUES ('editors'), ('moderators');
";

/// Production's users: made up, and none of them may reach the report.
const PROD_USERS: &str = "
    INSERT INTO auth_user (id, username, email, first_name) VALUES
      (1, 'alice', 'alice@prod-only.test', 'Alice'),
      (2, 'bob', 'bob@prod-only.test', 'Bobby'),
      (3, 'carol', 'carol@prod-only.test', 'Carolyn'),
      (4, 'dave', 'dave@prod-only.test', 'David');
";

/// Staging: two of production's users, one spelled in other case, and
/// three QA accounts — one of them on id 3, which production gives carol.
const STAGING_USERS: &str = "
    INSERT INTO auth_user (id, username, email, first_name) VALUES
      (1, 'alice', 'alice@prod-only.test', 'Alice'),
      (2, 'bob', 'BOB@prod-only.test', 'Bobby'),
      (3, 'qa-three', 'qa3@ourcompany.test', 'Quintessa'),
      (6, 'qa-one', 'qa1@ourcompany.test', 'Quentin'),
      (7, 'qa-two', 'qa2@ourcompany.test', 'Quinn'),
      (8, 'nomail', NULL, 'Nobody');
    UPDATE auth_user SET invited_by_id = 3 WHERE id = 6;
    INSERT INTO auth_user_groups (user_id, group_id) VALUES (3, 1), (3, 2), (6, 1), (1, 1), (7, 2);
    INSERT INTO profile (user_id, bio, prefs) VALUES (3, 'QA bio Xylophone', E'{\\n\\t\"theme\": \"dark\"\\r\\n}'), (1, 'Alice bio', NULL);
";

fn databases(name: &str) -> (String, String) {
    let prod = fresh_db_sync();
    execute(&prod.url, DJANGO);
    execute(&prod.url, PROD_USERS);
    let staging = staging_db(name);
    execute(&staging, DJANGO);
    execute(&staging, STAGING_USERS);
    (prod.url.clone(), staging)
}

fn workflow(prod: &str, staging: &str, with: &str) -> String {
    format!(
        r#"
        name: accounts
        targets:
          prod: {{ postgres: "{prod}", protected: true }}
          staging: {{ postgres: "{staging}" }}
        steps:
          accounts:
            uses: postgres.staging-only-rows
            with: {{ source: prod, target: staging, table: auth_user{with} }}
        "#
    )
}

fn run(prod: &str, staging: &str, with: &str, args: &[&str]) -> Output {
    Test::new()
        .workflow("accounts", &workflow(prod, staging, with))
        .args(args)
        .run()
}

/// Every value of production and every non-key value of staging's QA
/// accounts: none may appear in what a user reads.
const NEVER_SHOWN: &[&str] = &[
    "prod-only.test",
    "Alice",
    "Bobby",
    "Carolyn",
    "Quintessa",
    "Quentin",
    "Quinn",
    "Xylophone",
];

fn assert_keys_only(out: &Output) {
    let all = out.both();
    for value in NEVER_SHOWN {
        assert!(!all.contains(value), "`{value}` reached the output:\n{all}");
    }
}

#[test]
fn the_dry_run_lists_the_staging_only_accounts_by_key_with_their_included_rows() {
    let (prod, staging) = databases("staging_only_dry_run");
    let with = ", key: email, where: \"email LIKE '%@ourcompany.test'\", \
                include: [{ table: auth_user_groups, fk: user_id }, { table: profile, fk: user_id }]";
    let out = run(
        &prod,
        &staging,
        with,
        &["run", "accounts", "--dry-run", "--json"],
    );
    out.expect_code(0);
    assert_keys_only(&out);
    let report = out.json();
    let accounts = step(&report, "accounts");
    assert_eq!(
        accounts["outputs"]["keys"],
        serde_json::json!([
            "qa1@ourcompany.test",
            "qa2@ourcompany.test",
            "qa3@ourcompany.test"
        ])
    );
    assert_eq!(accounts["outputs"]["count"], 3);
    let details = accounts["details"].to_string();
    assert!(
        details.contains("4 rows pointing at them (→ id)"),
        "memberships of qa3 (2), qa1 and qa2: {details}"
    );
    assert!(
        details.contains("1 row pointing at them (→ id)"),
        "{details}"
    );
    assert!(
        accounts["summary"]
            .as_str()
            .unwrap()
            .starts_with("3 rows of `auth_user` only on `staging` (not on `prod`)"),
        "{accounts:#}"
    );

    // The run reads the same and writes nothing.
    let again = run(
        &prod,
        &staging,
        with,
        &["run", "accounts", "--yes", "--json"],
    );
    again.expect_code(0);
    assert_keys_only(&again);
    assert_eq!(step(&again.json(), "accounts")["outputs"]["count"], 3);
}

#[test]
fn case_null_keys_and_composite_keys_are_compared_as_the_step_says() {
    let (prod, staging) = databases("staging_only_case");
    // As written, staging's BOB@… is not production's bob@…; ignoring
    // case it is. The NULL e-mail matches nothing and is counted apart.
    let sensitive = run(
        &prod,
        &staging,
        ", key: email",
        &["run", "accounts", "--yes", "--json"],
    );
    sensitive.expect_code(0);
    let report = sensitive.json();
    let keys = &step(&report, "accounts")["outputs"]["keys"];
    assert_eq!(
        keys,
        &serde_json::json!([
            "BOB@prod-only.test",
            "qa1@ourcompany.test",
            "qa2@ourcompany.test",
            "qa3@ourcompany.test"
        ])
    );
    assert!(
        sensitive.stdout.contains("rows with no key"),
        "{}",
        sensitive.both()
    );

    let insensitive = run(
        &prod,
        &staging,
        ", key: email, key_case: insensitive",
        &["run", "accounts", "--yes", "--json"],
    );
    insensitive.expect_code(0);
    assert_eq!(
        step(&insensitive.json(), "accounts")["outputs"]["count"],
        3,
        "{}",
        insensitive.both()
    );

    // [id, username]: alice (1) is on both; 3 is carol in production and
    // qa-three on staging, so (3, qa-three) is staging-only.
    let composite = run(
        &prod,
        &staging,
        ", key: [id, username]",
        &["run", "accounts", "--yes", "--json"],
    );
    composite.expect_code(0);
    assert_eq!(
        step(&composite.json(), "accounts")["outputs"]["keys"],
        serde_json::json!(["(3, qa-three)", "(6, qa-one)", "(7, qa-two)", "(8, nomail)"]),
        "{}",
        composite.both()
    );
}

#[test]
fn what_the_step_cannot_do_is_refused_with_the_way_round_it() {
    let (prod, staging) = databases("staging_only_refused");
    let no_fk = run(
        &prod,
        &staging,
        ", key: email, include: [{ table: note, fk: author }]",
        &["run", "accounts", "--dry-run"],
    );
    no_fk.expect_code(1);
    assert!(
        no_fk
            .both()
            .contains("no foreign key from `note.author` to `auth_user`"),
        "{}",
        no_fk.both()
    );

    let no_column = run(
        &prod,
        &staging,
        ", key: mail",
        &["run", "accounts", "--dry-run"],
    );
    no_column.expect_code(1);
    assert!(
        no_column
            .both()
            .contains("table `auth_user` has no column `mail` on the target"),
        "{}",
        no_column.both()
    );

    // Kept for a clone that is not there.
    let preserve = run(
        &prod,
        &staging,
        ", key: email, preserve: true",
        &["validate", "accounts"],
    );
    preserve.expect_code(2);
    assert!(
        preserve.both().contains(
            "step `accounts` keeps staging-only rows for the clone of `staging`, but no \
             `postgres.clone` of `staging` needs it"
        ),
        "{}",
        preserve.both()
    );

    let case = run(
        &prod,
        &staging,
        ", key: email, key_case: lower",
        &["validate", "accounts"],
    );
    case.expect_code(2);
    assert!(
        case.both().contains("unknown `key_case` `lower`"),
        "{}",
        case.both()
    );
}

/// Rules covering every column of [`DJANGO`]: production's users are
/// anonymized on the way, as in a real reset.
const DJANGO_RULES: &str = "
secret: s
tables:
  auth_user:
    columns:
      email: { fake: email, unique: true }
      username: { template: \"user{id}\" }
      first_name: { fake: first_name }
    keep: [id, invited_by_id]
  profile:
    columns:
      bio: { fake: sentence }
    keep: [user_id, prefs]
  auth_group: { keep: all }
  auth_user_groups: { keep: all }
  note: { keep: all }
";

/// The accounts step with `with`, and a clone of `staging` after it
/// (`clone_with` added to the clone's `with:`).
fn reset_workflow(prod: &str, staging: &str, with: &str, clone_with: &str) -> String {
    format!(
        r#"
        name: reset
        targets:
          prod: {{ postgres: "{prod}", protected: true }}
          staging: {{ postgres: "{staging}" }}
        steps:
          accounts:
            uses: postgres.staging-only-rows
            with: {{ source: prod, target: staging, table: auth_user, preserve: true{with} }}
          database:
            uses: postgres.clone
            needs: [accounts]
            with: {{ source: prod, target: staging, jobs: 1{clone_with} }}
        "#
    )
}

fn reset(prod: &str, staging: &str, with: &str, clone_with: &str, args: &[&str]) -> Output {
    Test::new()
        .file("anonymizers/django.yaml", DJANGO_RULES)
        .workflow("reset", &reset_workflow(prod, staging, with, clone_with))
        .args(args)
        .run()
}

const QA_ACCOUNTS: &str = ", key: email, where: \"email LIKE '%@ourcompany.test'\", \
    include: [{ table: auth_user_groups, fk: user_id }, { table: profile, fk: user_id }]";

/// Each QA account with its groups and profile, as staging holds them.
fn qa_accounts(staging: &str) -> Vec<String> {
    query_strings(
        staging,
        "SELECT u.username || ' ' || u.first_name || ' [' || \
           coalesce((SELECT string_agg(g.name, ',' ORDER BY g.name) FROM auth_user_groups ug \
             JOIN auth_group g ON g.id = ug.group_id WHERE ug.user_id = u.id), '') || '] ' || \
           coalesce((SELECT p.bio FROM profile p WHERE p.user_id = u.id), '-') \
         FROM auth_user u WHERE u.email LIKE '%@ourcompany.test' ORDER BY u.username",
    )
}

#[test]
fn preserved_accounts_survive_a_reset_with_their_memberships_and_a_taken_id_renumbered() {
    let (prod, staging) = databases("staging_only_preserve");
    let clone_with = ", anonymize: anonymizers/django.yaml";

    let plan = reset(
        &prod,
        &staging,
        QA_ACCOUNTS,
        clone_with,
        &["run", "reset", "--dry-run", "--json"],
    );
    plan.expect_code(0);
    assert_keys_only(&plan);
    let report = plan.json();
    let accounts = step(&report, "accounts");
    assert_eq!(accounts["outputs"]["count"], 3, "{accounts:#}");
    let details = accounts["details"].to_string();
    assert!(
        details.contains("auth_user 3, auth_user_groups 4, profile 1"),
        "{details}"
    );
    assert!(
        details.contains("1 kept row uses a primary key production also uses"),
        "{details}"
    );
    // The dry run wrote nothing.
    assert_eq!(qa_accounts(&staging).len(), 3);
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM auth_user"),
        ["6"]
    );

    let out = reset(
        &prod,
        &staging,
        QA_ACCOUNTS,
        clone_with,
        &["run", "reset", "--yes", "--json"],
    );
    out.expect_code(0);
    assert_keys_only(&out);
    let report = out.json();
    assert_eq!(
        step(&report, "accounts")["outputs"]["carried"],
        serde_json::json!({ "auth_user": 3, "auth_user_groups": 4, "profile": 1 })
    );
    let clone = step(&report, "database")["details"].to_string();
    assert!(
        clone.contains("auth_user 3 (1 under a new key), auth_user_groups 4, profile 1"),
        "{clone}"
    );

    // Staging is production's four users, anonymized, and the three QA
    // accounts as they were, with their groups and profile.
    assert_eq!(
        qa_accounts(&staging),
        [
            "qa-one Quentin [editors] -",
            "qa-three Quintessa [editors,moderators] QA bio Xylophone",
            "qa-two Quinn [moderators] -",
        ]
    );
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM auth_user"),
        ["7"]
    );
    // qa-one was invited by qa-three: the link follows qa-three's new key
    // (production's user 3 is someone else).
    assert_eq!(
        query_strings(
            &staging,
            "SELECT i.username FROM auth_user u JOIN auth_user i ON i.id = u.invited_by_id \
             WHERE u.username = 'qa-one'",
        ),
        ["qa-three"]
    );
    // A `json` value with tabs and newlines of its own is carried (its
    // rows are one line each in the COPY that loads them).
    assert_eq!(
        query_strings(
            &staging,
            "SELECT p.prefs::jsonb::text FROM profile p JOIN auth_user u ON u.id = p.user_id \
             WHERE u.username = 'qa-three'",
        ),
        ["{\"theme\": \"dark\"}"]
    );
    // qa-three had id 3, production's carol's: it came back under a new
    // one, and its memberships and profile point at it.
    let ids = query_strings(
        &staging,
        "SELECT username || '=' || id FROM auth_user WHERE id = 3 OR username = 'qa-three' ORDER BY id",
    );
    assert_eq!(ids[0], "user3=3", "{ids:?}");
    assert!(
        ids[1].starts_with("qa-three=") && ids[1] != "qa-three=3",
        "{ids:?}"
    );
    // The sequence is past every key: the application can add users.
    execute(
        &staging,
        "INSERT INTO auth_user (username, first_name) VALUES ('new', 'N')",
    );

    // No production personal data reached staging or the report.
    let needles: Vec<String> = [
        "alice@prod-only.test",
        "bob@prod-only.test",
        "carol@prod-only.test",
        "dave@prod-only.test",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(leaks(&staging, &needles), Vec::<String>::new());
    assert!(!out.both().contains("prod-only.test"), "{}", out.both());
}

#[test]
fn preserved_rows_with_strategy_in_place_are_inserted_in_its_transaction() {
    let (prod, staging) = databases("staging_only_in_place");
    let clone_with = ", anonymize: anonymizers/django.yaml, strategy: in-place";
    let out = reset(
        &prod,
        &staging,
        QA_ACCOUNTS,
        clone_with,
        &["run", "reset", "--yes", "--json"],
    );
    out.expect_code(0);
    assert_keys_only(&out);
    assert_eq!(qa_accounts(&staging).len(), 3, "{}", out.both());
    assert_eq!(
        qa_accounts(&staging)[1],
        "qa-three Quintessa [editors,moderators] QA bio Xylophone"
    );
}

/// Production now also has qa-two's e-mail (a user who signed up with it).
fn conflicting(name: &str) -> (String, String) {
    let (prod, staging) = databases(name);
    let unique = "CREATE UNIQUE INDEX auth_user_email_uniq ON auth_user (email);";
    execute(&prod, unique);
    execute(&staging, unique);
    execute(
        &prod,
        "INSERT INTO auth_user (id, username, email, first_name) VALUES (5, 'erin', 'qa2@ourcompany.test', 'Erin')",
    );
    (prod, staging)
}

const BY_USERNAME: &str = ", key: username, where: \"username LIKE 'qa-%'\", \
    include: [{ table: auth_user_groups, fk: user_id }]";

#[test]
fn a_unique_value_production_now_has_follows_on_conflict() {
    // error: the plan stops before anything is written, naming the key
    // and the constraint.
    let (prod, staging) = conflicting("staging_only_conflict_error");
    let out = reset(&prod, &staging, BY_USERNAME, "", &["run", "reset", "--yes"]);
    out.expect_code(1);
    {
        let _masks = masks();
        // stderr: stdout's table pads around durations of any width.
        insta::assert_snapshot!("conflict_error_refusal", out.stderr);
    }
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM auth_user"),
        ["6"]
    );

    // skip: qa-two and its membership are left out, and the report says so.
    let (prod, staging) = conflicting("staging_only_conflict_skip");
    let out = reset(
        &prod,
        &staging,
        &format!("{BY_USERNAME}, on_conflict: skip"),
        "",
        &["run", "reset", "--yes", "--json"],
    );
    out.expect_code(0);
    let report = out.json();
    let clone = step(&report, "database")["details"].to_string();
    assert!(
        clone.contains("left out of auth_user (`on_conflict: skip`)"),
        "{clone}"
    );
    assert!(clone.contains("1 left out with their row"), "{clone}");
    assert_eq!(
        query_strings(
            &staging,
            "SELECT username FROM auth_user WHERE username LIKE 'qa-%' ORDER BY 1"
        ),
        ["qa-one", "qa-three"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT username FROM auth_user WHERE email = 'qa2@ourcompany.test'"
        ),
        ["erin"]
    );

    // replace: staging's row takes the place of the clone's.
    let (prod, staging) = conflicting("staging_only_conflict_replace");
    let out = reset(
        &prod,
        &staging,
        &format!("{BY_USERNAME}, on_conflict: replace"),
        "",
        &["run", "reset", "--yes", "--json"],
    );
    out.expect_code(0);
    assert_eq!(
        query_strings(
            &staging,
            "SELECT username FROM auth_user WHERE email = 'qa2@ourcompany.test'"
        ),
        ["qa-two"],
        "{}",
        out.both()
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*)::text FROM auth_user_groups ug JOIN auth_user u ON u.id = ug.user_id WHERE u.username = 'qa-two'"
        ),
        ["1"]
    );
}

#[test]
fn a_carried_row_pointing_at_a_parent_the_clone_will_not_have_is_refused_at_plan_time() {
    let (prod, staging) = databases("staging_only_missing_parent");
    // A group only staging has, which qa-one is a member of.
    execute(
        &staging,
        "INSERT INTO auth_group (id, name) VALUES (9, 'qa-testers'); \
         INSERT INTO auth_user_groups (user_id, group_id) VALUES (6, 9);",
    );
    let out = reset(
        &prod,
        &staging,
        QA_ACCOUNTS,
        "",
        &["run", "reset", "--dry-run"],
    );
    out.expect_code(1);
    // The rest is the clone's plan.
    assert!(
        out.stdout.contains(
            "error: `auth_user`: cannot carry the staging-only rows over: \
             `auth_user_groups.group_id` of 1 carried row points at `auth_group` rows production \
             does not have, so the new database would have nothing for it to point at (a foreign \
             key is never set to NULL, nor a row dropped, to make it fit); leave it out with a \
             `where` (on the step or on the include), or create the `auth_group` rows in production first\n"
        ),
        "{}",
        out.both()
    );
}

#[test]
fn a_clone_that_could_run_before_the_preserving_step_is_refused() {
    let (prod, staging) = ("postgres://h/prod", "postgres://h/staging");
    let yaml =
        reset_workflow(prod, staging, ", key: email", "").replace("needs: [accounts]", "needs: []");
    let out = Test::new()
        .workflow("reset", &yaml)
        .args(["validate", "reset"])
        .run();
    out.expect_code(2);
    assert!(
        out.both().contains(
            "step `database` clones `staging` and could run before step `accounts`, which keeps \
             staging-only rows for that clone"
        ),
        "{}",
        out.both()
    );
    assert!(
        out.both()
            .contains("add `needs: [accounts]` to step `database`"),
        "{}",
        out.both()
    );
}

/// Devise's `users` and a polymorphic `taggings` (no foreign key: the type
/// column says which table `taggable_id` points at).
const RAILS: &str = "
    CREATE TABLE users (id bigserial PRIMARY KEY, email varchar NOT NULL DEFAULT '',
        encrypted_password varchar NOT NULL DEFAULT '', reset_password_token varchar,
        reset_password_sent_at timestamp, remember_created_at timestamp,
        sign_in_count integer NOT NULL DEFAULT 0, current_sign_in_ip inet,
        confirmation_token varchar, created_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL);
    CREATE UNIQUE INDEX index_users_on_email ON users (email);
    CREATE UNIQUE INDEX index_users_on_reset_password_token ON users (reset_password_token);
    CREATE TABLE tags (id bigserial PRIMARY KEY, name varchar NOT NULL);
    CREATE TABLE projects (id bigserial PRIMARY KEY, name varchar NOT NULL);
    CREATE TABLE taggings (id bigserial PRIMARY KEY, tag_id bigint NOT NULL REFERENCES tags (id),
        taggable_type varchar NOT NULL, taggable_id bigint NOT NULL);
    INSERT INTO tags (id, name) VALUES (1, 'beta'), (2, 'qa');
    INSERT INTO projects (id, name) VALUES (1, 'Apollo'), (2, 'Gemini');
";

const RAILS_PROD: &str = "
    INSERT INTO users (id, email, encrypted_password, current_sign_in_ip, created_at, updated_at) VALUES
      (1, 'ann@prod-only.test', '$2a$12$prodhash', '203.0.113.7', now(), now()),
      (2, 'ben@prod-only.test', '$2a$12$prodhash', '203.0.113.8', now(), now());
    INSERT INTO taggings (id, tag_id, taggable_type, taggable_id) VALUES
      (1, 1, 'User', 1), (2, 1, 'Project', 2);
";

/// Staging: ann, and three QA accounts; qa-a sits on id 2, production's ben's.
const RAILS_STAGING: &str = "
    INSERT INTO users (id, email, encrypted_password, sign_in_count, created_at, updated_at) VALUES
      (1, 'ann@prod-only.test', '$2a$12$prodhash', 0, now(), now()),
      (2, 'qa-a@ourcompany.test', '$2a$12$qahashQuokka', 5, now(), now()),
      (10, 'qa-b@ourcompany.test', '$2a$12$qahashQuokka', 1, now(), now()),
      (11, 'qa-c@ourcompany.test', '$2a$12$qahashQuokka', 0, now(), now());
    INSERT INTO taggings (id, tag_id, taggable_type, taggable_id) VALUES
      (1, 1, 'User', 1), (7, 2, 'User', 2), (8, 1, 'User', 2), (9, 2, 'User', 10),
      (10, 2, 'Project', 2), (11, 2, 'Project', 10);
";

const RAILS_RULES: &str = "
secret: s
tables:
  users:
    columns:
      email: { fake: email, unique: true }
      encrypted_password: { set: \"\" }
      reset_password_token: null
      confirmation_token: null
      current_sign_in_ip: { fake: ipv4 }
    keep: [id, reset_password_sent_at, remember_created_at, sign_in_count, created_at, updated_at]
  tags: { keep: all }
  projects: { keep: all }
  taggings: { keep: all }
";

#[test]
fn devise_accounts_survive_with_their_polymorphic_rows_under_a_new_id() {
    let prod = fresh_db_sync();
    execute(&prod.url, RAILS);
    execute(&prod.url, RAILS_PROD);
    let staging = staging_db("staging_only_rails");
    execute(&staging, RAILS);
    execute(&staging, RAILS_STAGING);
    let yaml = format!(
        r#"
        name: reset
        targets:
          prod: {{ postgres: "{}", protected: true }}
          staging: {{ postgres: "{staging}" }}
        steps:
          accounts:
            uses: postgres.staging-only-rows
            with:
              source: prod
              target: staging
              table: users
              key: email
              where: "email LIKE '%@ourcompany.test'"
              preserve: true
              include: [{{ table: taggings, fk: taggable_id, where: "taggable_type = 'User'" }}]
          database:
            uses: postgres.clone
            needs: [accounts]
            with: {{ source: prod, target: staging, jobs: 1, anonymize: anonymizers/rails.yaml }}
        "#,
        prod.url
    );
    let test = || {
        Test::new()
            .file("anonymizers/rails.yaml", RAILS_RULES)
            .workflow("reset", &yaml)
    };
    let plan = test().args(["run", "reset", "--dry-run", "--json"]).run();
    plan.expect_code(0);
    let report = plan.json();
    assert_eq!(
        step(&report, "accounts")["outputs"]["keys"],
        serde_json::json!([
            "qa-a@ourcompany.test",
            "qa-b@ourcompany.test",
            "qa-c@ourcompany.test"
        ])
    );
    let details = step(&report, "accounts")["details"].to_string();
    assert!(details.contains("users 3, taggings 3"), "{details}");

    let out = test().args(["run", "reset", "--yes", "--json"]).run();
    out.expect_code(0);
    for value in ["prod-only.test", "Quokka", "203.0.113"] {
        assert!(
            !out.both().contains(value),
            "`{value}` reached the output:\n{}",
            out.both()
        );
    }
    // The QA accounts, their sign-in counts and password hashes as staging
    // had them, and their User taggings pointing at their ids.
    let users = query_strings(
        &staging,
        "SELECT u.email || ' ' || u.sign_in_count || ' ' || (u.id <> 2) || ' ' || \
           (u.encrypted_password LIKE '%Quokka') || ' [' || coalesce((SELECT string_agg(t.name, ',' \
             ORDER BY t.name) FROM taggings g JOIN tags t ON t.id = g.tag_id \
             WHERE g.taggable_type = 'User' AND g.taggable_id = u.id), '') || ']' \
         FROM users u WHERE u.email LIKE '%@ourcompany.test' ORDER BY u.email",
    );
    assert_eq!(
        users,
        [
            "qa-a@ourcompany.test 5 true true [beta,qa]",
            "qa-b@ourcompany.test 1 true true [qa]",
            "qa-c@ourcompany.test 0 true true []",
        ]
    );
    // Production's user 2 keeps id 2; the projects' taggings are
    // production's, untouched by the remapping.
    assert_eq!(
        query_strings(
            &staging,
            "SELECT taggable_type || ':' || taggable_id FROM taggings \
             WHERE taggable_type = 'Project' ORDER BY 1"
        ),
        ["Project:2"]
    );
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM users"),
        ["5"]
    );
    let needles: Vec<String> = [
        "ann@prod-only.test",
        "ben@prod-only.test",
        "203.0.113.7",
        "203.0.113.8",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(leaks(&staging, &needles), Vec::<String>::new());
}

#[test]
fn a_resumed_run_reads_the_preserved_rows_again_rather_than_reusing_the_step() {
    let (prod, staging) = databases("staging_only_resume");
    let yaml = format!(
        "{}\n          gate:\n            uses: shell\n            needs: [database]\n            with: {{ run: \"test -f go\" }}\n",
        reset_workflow(
            &prod,
            &staging,
            QA_ACCOUNTS,
            ", anonymize: anonymizers/django.yaml"
        )
        .trim_end()
    );
    let test = Test::new()
        .file("anonymizers/django.yaml", DJANGO_RULES)
        .workflow("reset", &yaml)
        .args(["run", "reset", "--yes", "--json"]);
    let failed = test.run();
    failed.expect_code(1);
    // The clone's swap was undone with the run: staging is as it was.
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM auth_user"),
        ["6"]
    );
    let run_id = failed.json()["run_id"].as_str().unwrap().to_string();

    std::fs::write(test.dir().join("go"), "").unwrap();
    let resumed = Output::of(test.spawn(&["resume", &run_id, "--yes", "--json"]));
    resumed.expect_code(0);
    let report = resumed.json();
    // Its rows lived in the failed run's memory: read again, not reused.
    assert_eq!(
        step(&report, "accounts")["status"],
        "succeeded",
        "{report:#}"
    );
    assert_eq!(
        step(&report, "accounts")["outputs"]["carried"]["auth_user"],
        3
    );
    assert_eq!(qa_accounts(&staging).len(), 3, "{}", resumed.both());
}
