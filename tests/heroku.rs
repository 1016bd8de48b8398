//! `heroku://APP` targets against a local server that answers like the
//! Platform API: an app's `DATABASE_URL` and Bucketeer add-on drive a real
//! clone and a real media sync; every resolved value and the API key are
//! masked everywhere; a refused key, an app that does not exist and a
//! missing add-on are located problems; a resolved URL requires TLS unless
//! the target says otherwise; and a write to a Heroku app asks for its name.

use crate::secrets::files_under;
use crate::support::cli::{Output, Test};
use crate::support::http::{HttpServer, Reply};
use crate::support::pg::{execute, fresh_db_sync, query_strings, staging_db};
use crate::support::s3::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};

const API_KEY: &str = "hrku-Test-Key-7f3a9c";
/// Carried in the resolved URLs (the test clusters trust local
/// connections, so it is never checked).
const PROD_PASSWORD: &str = "Pr0d-Heroku-Pw-x81";
const STAGING_PASSWORD: &str = "Stg-Heroku-Pw-q27";
/// Keys the anonymizer's fakes.
const ANON_SECRET: &str = "An0n-Heroku-Secret";

const PROD: &str = "
CREATE TABLE person (id integer PRIMARY KEY, email text NOT NULL);
INSERT INTO person SELECT n, 'person' || n || '.heroku@mail.test' FROM generate_series(1, 40) n;
ANALYZE;
";

/// `url` with `password` added to its user.
fn with_password(url: &str, password: &str) -> String {
    let with = url.replacen("://postgres@", &format!("://postgres:{password}@"), 1);
    assert!(with.contains(password), "{with}");
    with
}

/// The config vars body of an app.
fn config_vars(pairs: &[(&str, &str)]) -> String {
    serde_json::Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect(),
    )
    .to_string()
}

/// The config vars of a Bucketeer add-on on `bucket` of the test S3
/// server, with the key pair the server accepts.
fn bucketeer(bucket: &str) -> [(&'static str, &str); 4] {
    [
        ("BUCKETEER_BUCKET_NAME", bucket),
        ("BUCKETEER_AWS_REGION", REGION),
        ("BUCKETEER_AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("BUCKETEER_AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
}

/// `test` pointed at the fake API with the key.
fn with_api(test: Test, api: &HttpServer) -> Test {
    test.env("HEROKU_API_KEY", API_KEY)
        .env("FLIGHTPATH_HEROKU_API_URL", api.url(""))
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

#[test]
fn two_heroku_apps_are_cloned_and_synced_with_every_resolved_value_masked() {
    let prod = fresh_db_sync();
    execute(&prod.url, PROD);
    let staging = staging_db("heroku_staging");
    let s3 = S3Server::start();
    s3.create_bucket("bucketeer-prod-4f1c");
    s3.create_bucket("bucketeer-staging-9e2d");
    let photo = b"\xff\xd8\xff\xe0 a photo".as_slice();
    let prod_media = s3.bucket_dir("bucketeer-prod-4f1c");
    std::fs::create_dir_all(prod_media.join("original_images")).unwrap();
    std::fs::write(prod_media.join("original_images/team.jpg"), photo).unwrap();

    let api = HttpServer::start();
    let prod_url = with_password(&prod.url, PROD_PASSWORD);
    let staging_url = with_password(&staging, STAGING_PASSWORD);
    let mut prod_vars = vec![("DATABASE_URL", prod_url.as_str())];
    prod_vars.extend(bucketeer("bucketeer-prod-4f1c"));
    let mut staging_vars = vec![("DATABASE_URL", staging_url.as_str())];
    staging_vars.extend(bucketeer("bucketeer-staging-9e2d"));
    api.route(
        "/apps/acme-prod/config-vars",
        [Reply::new(200, &config_vars(&prod_vars))],
    );
    api.route(
        "/apps/acme-staging/config-vars",
        [Reply::new(200, &config_vars(&staging_vars))],
    );

    let media = format!("?endpoint={}&path_style=true", s3.endpoint());
    let test = Test::new()
        .file(
            "anonymizers/site.yaml",
            "
            secret: ${FLIGHTPATH_SECRET}
            tables:
              person:
                columns:
                  email: { fake: email, unique: true }
            ",
        )
        .workflow(
            "reset",
            &format!(
                r#"
                name: reset
                targets:
                  prod:
                    postgres: heroku://acme-prod?sslmode=disable
                    media: "heroku://acme-prod{media}"
                    protected: true
                  staging:
                    postgres: heroku://acme-staging?sslmode=disable
                    media: "heroku://acme-staging{media}"
                steps:
                  database:
                    uses: postgres.clone
                    with: {{ source: prod, target: staging, jobs: 1, anonymize: anonymizers/site.yaml }}
                  media:
                    uses: media.sync
                    with: {{ source: prod, target: staging }}
                "#
            ),
        )
        .env("FLIGHTPATH_SECRET", ANON_SECRET)
        .env("GITHUB_ACTIONS", "true");
    let output_file = test.dir().join("github-output");
    let summary_file = test.dir().join("github-summary.md");
    let test = with_api(test, &api)
        .env("GITHUB_OUTPUT", &output_file)
        .env("GITHUB_STEP_SUMMARY", &summary_file)
        .args(["run", "reset", "--yes"]);
    let out = test.run();
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );

    // The clone read the app's database and anonymized it on the way.
    let emails = query_strings(&staging, "SELECT email FROM person ORDER BY id");
    assert_eq!(emails.len(), 40);
    assert!(
        emails.iter().all(|e| !e.contains(".heroku@mail.test")),
        "{emails:?}"
    );
    // The sync signed with the add-on's keys (the test environment has no
    // AWS key) and copied on the server.
    assert_eq!(
        std::fs::read(
            s3.bucket_dir("bucketeer-staging-9e2d")
                .join("original_images/team.jpg")
        )
        .unwrap(),
        photo
    );
    assert!(
        s3.ops_on("original_images/team.jpg")
            .contains(&"CopyObject".to_string()),
        "{:?}",
        s3.ops_on("original_images/team.jpg")
    );

    // One call per app, as the API wants it.
    let requests = api.requests();
    let mut paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/apps/acme-prod/config-vars",
            "/apps/acme-staging/config-vars"
        ]
    );
    for request in &requests {
        assert_eq!(request.method, "GET");
        assert_eq!(
            request.header("accept"),
            Some("application/vnd.heroku+json; version=3")
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
    }

    // Masks before anything else; then no secret anywhere.
    let masks: Vec<&str> = out
        .stdout
        .lines()
        .take_while(|l| l.starts_with("::add-mask::"))
        .collect();
    for secret in [
        API_KEY,
        PROD_PASSWORD,
        STAGING_PASSWORD,
        SECRET_KEY,
        ACCESS_KEY,
    ] {
        assert!(
            masks.contains(&format!("::add-mask::{secret}").as_str()),
            "`{secret}` not masked first:\n{}",
            out.stdout
        );
    }
    assert_nowhere(
        &test,
        &out,
        &[
            std::fs::read_to_string(&output_file).unwrap(),
            std::fs::read_to_string(&summary_file).unwrap(),
        ],
        &[
            API_KEY,
            PROD_PASSWORD,
            STAGING_PASSWORD,
            SECRET_KEY,
            ACCESS_KEY,
            ANON_SECRET,
        ],
    );
}

/// None of `secrets` in the streams, `files` or the run state, but for
/// the masks themselves.
#[track_caller]
fn assert_nowhere(test: &Test, out: &Output, files: &[String], secrets: &[&str]) {
    let mut places = vec![
        ("stdout".to_string(), out.stdout.clone()),
        ("stderr".to_string(), out.stderr.clone()),
    ];
    places.extend(
        files
            .iter()
            .map(|f| ("a GitHub file".to_string(), f.clone())),
    );
    let state = files_under(&test.dir().join(".flightpath"));
    for wanted in ["journal", "report.md", "report.json"] {
        assert!(
            state.iter().any(|(p, _)| p.contains(wanted)),
            "no {wanted} in {:?}",
            state.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
    }
    places.extend(state);
    for (place, text) in &places {
        for secret in secrets {
            let shown = text
                .lines()
                .filter(|l| !l.starts_with("::add-mask::"))
                .any(|l| l.contains(secret));
            assert!(!shown, "`{secret}` appears in {place}:\n{text}");
        }
    }
}

const THREE_APPS: &str = "
name: reset
targets:
  prod:
    postgres: heroku://acme-prod
    protected: true
  gone:
    postgres: heroku://acme-gone
  bare:
    media: heroku://acme-bare
steps:
  hello:
    uses: shell
    with: { run: echo hello }
";

#[test]
fn a_refused_key_a_missing_app_and_a_missing_add_on_are_located_problems() {
    let api = HttpServer::start();
    api.route(
        "/apps/acme-prod/config-vars",
        [Reply::new(
            401,
            r#"{"id":"unauthorized","message":"Invalid credentials provided."}"#,
        )],
    );
    api.route(
        "/apps/acme-gone/config-vars",
        [Reply::new(
            404,
            r#"{"id":"not_found","message":"Couldn't find that app."}"#,
        )],
    );
    api.route("/apps/acme-bare/config-vars", [Reply::new(200, "{}")]);
    let test = with_api(Test::new().workflow("reset", THREE_APPS), &api).args(["plan", "reset"]);
    let out = test.run();
    out.expect_code(2);
    for (says, at) in [
        (
            "target `prod` `postgres`: Heroku refused the API key reading app `acme-prod` (401)",
            "workflows/reset.yaml:4:15",
        ),
        (
            "target `gone` `postgres`: no Heroku app `acme-gone` (404)",
            "workflows/reset.yaml:7:15",
        ),
        (
            "target `bare` `media`: app `acme-bare` has no config var `BUCKETEER_BUCKET_NAME`",
            "workflows/reset.yaml:9:12",
        ),
    ] {
        assert!(out.stderr.contains(says), "{says}:\n{}", out.stderr);
        assert!(out.stderr.contains(at), "{at}:\n{}", out.stderr);
    }
    assert!(
        out.stderr.contains("heroku authorizations:create"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("3 problems found; nothing was run"),
        "{}",
        out.stderr
    );
    assert!(!out.both().contains(API_KEY), "{}", out.both());

    // Under GitHub Actions: the key masked first, each problem on its line.
    let output_file = test.dir().join("github-output");
    let test = test
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &output_file);
    let out = test.run();
    out.expect_code(2);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], format!("::add-mask::{API_KEY}"), "{}", out.stdout);
    assert!(
        lines.iter().any(|l| l.starts_with(
            "::error title=flightpath%3A%3Aheroku%3A%3Arefused,file=workflows/reset.yaml,line=4,col=15::"
        )),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read_to_string(&output_file).unwrap().trim(),
        "status=invalid"
    );

    // `validate` reads the form only; it never asks the API.
    let before = api.requests().len();
    let out = with_api(Test::new().workflow("reset", THREE_APPS), &api)
        .args(["validate", "reset"])
        .run();
    out.expect_code(0);
    assert_eq!(api.requests().len(), before);
}

#[test]
fn without_a_key_nothing_is_asked_and_the_message_says_how_to_get_one() {
    let api = HttpServer::start();
    let out = Test::new()
        .workflow("reset", THREE_APPS)
        .env("FLIGHTPATH_HEROKU_API_URL", api.url(""))
        .args(["plan", "reset"])
        .run();
    out.expect_code(2);
    assert!(
        out.stderr.contains("`HEROKU_API_KEY` is not set")
            && out.stderr.contains("heroku authorizations:create"),
        "{}",
        out.stderr
    );
    assert!(api.requests().is_empty());
}

#[test]
fn a_bad_heroku_endpoint_is_a_validation_error() {
    let out = Test::new()
        .workflow(
            "reset",
            "
            name: reset
            targets:
              prod: { postgres: 'heroku://Acme_Prod', protected: true }
              staging: { postgres: 'heroku://acme-staging?sslmode=strict' }
            steps:
              hello: { uses: shell, with: { run: echo hi } }
            ",
        )
        .args(["validate", "reset"])
        .run();
    out.expect_code(2);
    for says in [
        "target `prod` `postgres` is not a Heroku endpoint: `Acme_Prod` is not a Heroku app name",
        "target `staging` `postgres` is not a Heroku endpoint: `sslmode=strict` is not a mode",
    ] {
        assert!(out.stderr.contains(says), "{says}:\n{}", out.stderr);
    }
}

/// A workflow writing Heroku app `acme-staging` (a table, by SQL).
fn staging_write(name: &str, sslmode: &str) -> (Test, HttpServer, String) {
    let staging = staging_db(name);
    let api = HttpServer::start();
    api.route(
        "/apps/acme-staging/config-vars",
        [Reply::new(
            200,
            &config_vars(&[("DATABASE_URL", &with_password(&staging, STAGING_PASSWORD))]),
        )],
    );
    let test = Test::new().workflow(
        "write",
        &format!(
            "
            name: write
            targets:
              staging: {{ postgres: 'heroku://acme-staging{sslmode}' }}
            steps:
              mark:
                uses: postgres.sql
                with: {{ target: staging, sql: 'CREATE TABLE confirmed (x int)' }}
            "
        ),
    );
    (with_api(test, &api), api, staging)
}

#[test]
fn a_resolved_url_requires_tls_unless_the_target_says_otherwise() {
    // The test cluster offers no TLS: `require` (the default for Heroku)
    // refuses to go on without it.
    let (test, _api, _) = staging_write("heroku_tls", "");
    let out = test.args(["plan", "write"]).run();
    assert_ne!(out.code, 0, "{}", out.both());
    assert!(
        out.both()
            .contains("the server does not support TLS but sslmode=require"),
        "{}",
        out.both()
    );
    assert!(!out.both().contains(STAGING_PASSWORD), "{}", out.both());
}

#[test]
fn a_write_to_a_heroku_app_asks_for_its_name() {
    let (test, _api, staging) = staging_write("heroku_confirm", "?sslmode=disable");
    let exists = || {
        query_strings(
            &staging,
            "SELECT count(*)::text FROM pg_tables WHERE tablename = 'confirmed'",
        ) == ["1"]
    };

    // Nobody to ask: refused, naming the app and the way out.
    let test = test.args(["run", "write"]);
    let out = test.run();
    out.expect_code(3);
    assert!(
        out.stderr.contains("writing Heroku app `acme-staging`")
            && out.stderr.contains("pass --yes"),
        "{}",
        out.stderr
    );
    assert!(!exists());

    // A `y` is not the name.
    let out = test.on_terminal("y");
    let (code, text) = (out.code, out.stdout);
    assert!(
        text.contains("They write Heroku app `acme-staging`. To proceed, type the app's name: "),
        "{text}"
    );
    assert!(
        text.contains("`y` is not `acme-staging`; not confirmed; nothing was changed"),
        "{text}"
    );
    assert_eq!(code, 3, "{text}");
    assert!(!exists());

    let out = test.on_terminal("acme-staging");
    let (code, text) = (out.code, out.stdout);
    assert_eq!(code, 0, "{text}");
    assert!(exists(), "{text}");
    assert!(!text.contains(STAGING_PASSWORD), "{text}");
}

#[test]
fn an_on_failure_step_that_writes_a_heroku_app_needs_the_confirmation_too() {
    let staging = staging_db("heroku_recovery");
    let api = HttpServer::start();
    api.route(
        "/apps/acme-staging/config-vars",
        [Reply::new(
            200,
            &config_vars(&[("DATABASE_URL", &with_password(&staging, STAGING_PASSWORD))]),
        )],
    );
    api.route("/", [Reply::new(200, "up")]);
    // The main step changes nothing; the recovery step writes the app.
    let test = with_api(
        Test::new().workflow(
            "check",
            &format!(
                "
                name: check
                targets:
                  staging: {{ postgres: 'heroku://acme-staging?sslmode=disable' }}
                steps:
                  smoke: {{ uses: http.check, with: {{ url: '{}' }} }}
                on_failure:
                  mark:
                    uses: postgres.sql
                    with: {{ target: staging, sql: 'CREATE TABLE marked (x int)' }}
                ",
                api.url("/")
            ),
        ),
        &api,
    )
    .args(["run", "check"]);
    let out = test.run();
    out.expect_code(3);
    assert!(
        out.stderr.contains("`mark` (on failure)")
            && out.stderr.contains("writing Heroku app `acme-staging`"),
        "{}",
        out.stderr
    );
    assert_eq!(api.hits("/"), 0, "nothing ran: {}", out.stderr);
}

#[test]
fn a_refusal_that_names_a_resolved_bucket_masks_it() {
    let s3 = S3Server::start();
    s3.create_bucket("bucketeer-same-77aa");
    let api = HttpServer::start();
    let vars = config_vars(&bucketeer("bucketeer-same-77aa"));
    // Two apps attached to one bucket: the sync would write what it reads.
    for app in ["acme-prod", "acme-staging"] {
        api.route(
            &format!("/apps/{app}/config-vars"),
            [Reply::new(200, &vars)],
        );
    }
    let media = format!("?endpoint={}&path_style=true", s3.endpoint());
    let out = with_api(
        Test::new().workflow(
            "media",
            &format!(
                r#"
                name: media
                targets:
                  prod: {{ media: "heroku://acme-prod{media}", protected: true }}
                  staging: {{ media: "heroku://acme-staging{media}" }}
                steps:
                  media:
                    uses: media.sync
                    with: {{ source: prod, target: staging }}
                "#
            ),
        ),
        &api,
    )
    .args(["run", "media", "--yes"])
    .run();
    out.expect_code(3);
    assert!(
        out.stderr.contains("overlaps the media of `prod`"),
        "{}",
        out.stderr
    );
    assert!(
        !out.both().contains("bucketeer-same-77aa"),
        "the bucket's name is shown:\n{}",
        out.both()
    );
}

#[test]
fn a_writable_target_on_the_protected_app_is_refused_unless_declared() {
    let yaml = |staging: &str| {
        format!(
            "
            name: reset
            targets:
              prod: {{ postgres: heroku://acme-prod, media: heroku://acme-prod, protected: true }}
              staging: {{ {staging} }}
            steps:
              hello: {{ uses: shell, with: {{ run: echo hi }} }}
            "
        )
    };
    let validate = |staging: &str| {
        Test::new()
            .workflow("reset", &yaml(staging))
            .args(["validate", "reset"])
            .run()
    };
    let out = validate("postgres: 'heroku://acme-prod?var=HEROKU_POSTGRESQL_RED_URL'");
    out.expect_code(2);
    assert!(
        out.stderr.contains(
            "target `staging` `postgres` is Heroku app `acme-prod`, the app of protected target \
             `prod`: writing it would write production's app"
        ),
        "{}",
        out.stderr
    );
    let out = validate("media: 'heroku://acme-prod/staging-copy'");
    out.expect_code(2);
    assert!(
        out.stderr.contains("`media` is Heroku app `acme-prod`"),
        "{}",
        out.stderr
    );
    // Said on purpose, a database of the same app may be written; another
    // app is nothing to say.
    validate("postgres: 'heroku://acme-prod?var=HEROKU_POSTGRESQL_RED_URL', same_server_as: prod")
        .expect_code(0);
    validate("postgres: heroku://acme-staging, media: heroku://acme-staging").expect_code(0);
}
