//! Workflows and rules files (`anonymize:` and their `extends:`) must be
//! regular files under the size cap: a device, a FIFO or a huge file is
//! refused at once, by name, with exit 2; a line that fails to parse is
//! quoted as a window of at most 80 characters.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::cli::{Output, Test};

/// How long a refusal may take: it must not read what it refuses.
const QUICK: Duration = Duration::from_secs(10);

/// Runs `validate` and returns its stderr with the test dir shown as `$DIR`,
/// asserting exit 2, nothing on stdout, and a quick answer.
fn refused(test: Test, workflow: &str) -> String {
    let test = test.timeout(QUICK).args(["validate", workflow]);
    let started = Instant::now();
    let out: Output = test.run();
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert_eq!(
        out.code, 2,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.stdout, "");
    let dir = test.dir().display().to_string();
    out.stderr.replace(&dir, "$DIR")
}

fn mkfifo(path: &std::path::Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A workflow whose clone reads the rules file `rules`.
fn clone_workflow(rules: &str) -> String {
    format!(
        r#"
        name: w
        targets:
          prod: {{ postgres: "postgres://app@127.0.0.1:1/prod", protected: true }}
          staging: {{ postgres: "postgres://app@127.0.0.1:1/staging" }}
        steps:
          database:
            uses: postgres.clone
            with: {{ source: prod, target: staging, anonymize: {rules} }}
        "#
    )
}

#[test]
fn a_device_as_the_workflow_is_refused_by_name() {
    assert_eq!(
        refused(Test::new(), "/dev/zero"),
        "error: cannot read workflow `/dev/zero`: it is a character device, not a regular file; \
         name a YAML file\n"
    );
}

#[test]
fn a_fifo_as_the_workflow_is_refused_without_waiting_for_a_writer() {
    let test = Test::new().file("workflows/.keep", "");
    mkfifo(&test.dir().join("workflows/pipe.yaml"));
    assert_eq!(
        refused(test, "pipe"),
        "error: cannot read workflow `$DIR/workflows/pipe.yaml`: it is a named pipe (FIFO), not \
         a regular file; name a YAML file\n"
    );
}

#[test]
fn an_oversized_workflow_is_refused_before_it_is_read() {
    let test = Test::new();
    // 120 MB of one scalar: refused by its size, not after reading it.
    let path = test.dir().join("big.yaml");
    std::fs::write(&path, format!("name: \"{}", "x".repeat(64))).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // Sparse: the rest reads as NULs, and takes no disk.
    file.set_len(120 * 1024 * 1024).unwrap();
    assert_eq!(
        refused(test, "big.yaml"),
        "error: cannot read workflow `$DIR/big.yaml`: it is larger than 10 MiB, the most a \
         workflow or rules file may hold; check that this is the file you meant\n"
    );
}

#[test]
fn rules_files_that_are_devices_fifos_or_huge_are_refused_by_name() {
    let test = Test::new()
        .workflow("w", &clone_workflow("[rules.yaml, fifo.yaml, big.yaml]"))
        .file("rules.yaml", "extends: [/dev/zero]\ntables: {}\n");
    mkfifo(&test.dir().join("fifo.yaml"));
    let big = std::fs::File::create(test.dir().join("big.yaml")).unwrap();
    big.set_len(11 * 1024 * 1024).unwrap();
    insta::assert_snapshot!(refused(test, "w"));
}

#[test]
fn a_long_bad_line_is_quoted_as_a_window() {
    let long = format!("description: [{}\n", "é, x".repeat(25_000));
    let test = Test::new().file("workflows/w.yaml", &format!("name: w\n{long}steps: {{}}\n"));
    let stderr = refused(test, "w");
    for line in stderr.lines() {
        assert!(
            line.chars().count() <= 100,
            "a line of {} characters",
            line.chars().count()
        );
    }
    insta::assert_snapshot!(stderr);
}
