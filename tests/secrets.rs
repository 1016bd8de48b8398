//! Secrets never reach output: passwords with a raw `#`, `?`, `/` or `@` in a
//! target URL, secret query values of `http.check` URLs and webhook paths
//! echoed by the server appear in no stream, report, journal, `scan` output
//! or starter rules file.

use std::path::Path;

use crate::support::cli::{Output, Test};
use crate::support::http::{HttpServer, Reply};
use crate::support::pg::{DATABASE_URL_VAR, fresh_db_sync};

/// Passwords the test server ignores (trust authentication), each with a
/// character that ends a URL's authority in some parser. The connector
/// reads the first three whole; with a raw `@` it takes `Pw` as the
/// password and `4secret@127.0.0.1` as the host, so neither part may show.
const PASSWORDS: [(&str, &[&str]); 4] = [
    ("Pw#1secret", &["Pw#1secret", "1secret"]),
    ("Pw?2secret", &["Pw?2secret", "2secret"]),
    ("Pw/3secret", &["Pw/3secret", "3secret"]),
    ("Pw@4secret", &["Pw@4secret", "4secret"]),
];

/// `url` (the test cluster's, which has no password) with `password` and
/// database `db`.
fn with_password(url: &str, password: &str, db: &str) -> String {
    let url = url.replacen("://postgres@", &format!("://postgres:{password}@"), 1);
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

/// Every file under `dir`, recursively, as (path, text).
pub(crate) fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    out
}

#[track_caller]
fn assert_hidden(what: &str, text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            !text.contains(needle),
            "`{needle}` appears in {what}:\n{text}"
        );
    }
}

#[track_caller]
fn assert_output_hidden(what: &str, out: &Output, needles: &[&str]) {
    assert_hidden(&format!("the stdout of {what}"), &out.stdout, needles);
    assert_hidden(&format!("the stderr of {what}"), &out.stderr, needles);
}

#[test]
fn odd_passwords_appear_in_no_output_report_journal_or_starter_file() {
    if std::env::var_os(DATABASE_URL_VAR).is_some() {
        // An external server's URL has its own credentials; the shapes
        // below are built on the local cluster's `postgres@` URL.
        eprintln!("skipped: needs the local test cluster's trust authentication");
        return;
    }
    let db = fresh_db_sync();
    // The step only reads, so the run takes no lock on the server and gets
    // as far as the step: its error, report and journal are what is checked.
    for (password, needles) in PASSWORDS {
        let wrong = with_password(&db.url, password, "no_such_database");
        let workflow = format!(
            r#"
            name: secrets
            targets:
              staging:
                postgres: "{wrong}"
            steps:
              probe:
                uses: postgres.sql
                with: {{ target: staging, readonly: true, sql: "SELECT 1" }}
            "#
        );
        let test = Test::new()
            .workflow("secrets", &workflow)
            .args(["run", "secrets", "--yes"]);
        let out = test.run();
        out.expect_code(1);
        assert!(
            out.stdout.contains("could not connect (postgres://"),
            "the error shows the URL, masked:\n{}",
            out.stdout
        );
        assert_output_hidden("run", &out, needles);
        let test = test.args(["run", "secrets", "--yes", "--json"]);
        let out = test.run();
        out.expect_code(1);
        assert_output_hidden("run --json", &out, needles);
        let test = test.args(["plan", "secrets"]);
        let out = test.run();
        assert_output_hidden("plan", &out, needles);
        let test = test.args(["validate", "secrets"]);
        let out = test.run();
        out.expect_code(0);
        assert_output_hidden("validate", &out, needles);

        let state = files_under(&test.dir().join(".flightpath"));
        let names: Vec<&str> = state.iter().map(|(p, _)| p.as_str()).collect();
        for wanted in ["report.md", "report.json", "journal"] {
            assert!(
                names.iter().any(|n| n.contains(wanted)),
                "no {wanted} in {names:?}"
            );
        }
        for (path, text) in &state {
            assert_hidden(path, text, needles);
        }

        // scan: a failed connection, then one that works and writes a
        // starter file (not with a raw `@`: the connector cannot connect).
        let test = test.args(["scan", "--source", &wrong]);
        let out = test.run();
        out.expect_code(1);
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
        assert_output_hidden("scan", &out, needles);
        if !password.contains('@') {
            let right = with_password(&db.url, password, &db.name);
            let test = test.args(["scan", "--source", &right, "--write", "starter.yaml"]);
            let out = test.run();
            out.expect_code(0);
            assert_output_hidden("scan --write", &out, needles);
            let starter = test.read("starter.yaml");
            let first = starter.lines().next().unwrap();
            assert!(
                first.starts_with("# Starter rules written by `flightpath scan` for postgres://postgres:***@127.0.0.1:"),
                "{first}"
            );
            assert_hidden("the starter file", &starter, needles);
        }
    }
}

#[test]
fn http_check_hides_secret_query_values() {
    let server = HttpServer::start();
    // No route: the server answers 404.
    let url = server.url("/health?token=T0ken-s3cret&page=1");
    let out = Test::new()
        .workflow(
            "http",
            &format!(
                r#"
                name: http
                steps:
                  smoke:
                    uses: http.check
                    with: {{ url: "{url}", interval: 20ms, timeout: 2s, retries: 0 }}
                "#
            ),
        )
        .args(["run", "http", "--yes"])
        .run();
    out.expect_code(1);
    let shown = server.url("/health?token=***&page=1");
    assert!(
        out.stdout.contains(&format!(
            "GET {shown}: expected 200, got 404 after 1 attempt"
        )),
        "{}",
        out.stdout
    );
    assert_output_hidden("http.check", &out, &["T0ken-s3cret"]);
}

#[test]
fn notify_hides_the_webhook_path_the_server_echoes() {
    let server = HttpServer::start();
    let path = "/services/T0ABC/B0DEF/XyZ-hook-s3cret";
    server.route(
        path,
        [Reply::new(
            404,
            &format!("no hook at {path} (XyZ-hook-s3cret)"),
        )],
    );
    let out = Test::new()
        .workflow(
            "notify",
            &format!(
                r#"
                name: notify
                steps:
                  tell:
                    uses: notify
                    with: {{ to: "{}", message: done }}
                "#,
                server.url(path)
            ),
        )
        .args(["run", "notify", "--yes"])
        .run();
    out.expect_code(1);
    assert!(
        out.stdout.contains(&format!(
            "POST {}: answered 404 Not Found: no hook at *** (***)",
            server.url("/…")
        )),
        "{}",
        out.stdout
    );
    assert_output_hidden("notify", &out, &["XyZ-hook-s3cret", "T0ABC", "B0DEF"]);
}
