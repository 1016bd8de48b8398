//! `media.sync` through the real binary, against the in-process S3 server
//! (which records the operations it serves and fails a key on demand) and
//! directories in the test's temp dir: server-side copy inside one
//! endpoint, S3 → directory → S3 with keys that need encoding, include /
//! exclude, deletions only inside the selection and never after a failed
//! listing or beyond `max_delete`, a second run that copies nothing, one
//! changed object copied alone, a failing object reported by key while the
//! others are copied, and documents and staff photos arriving as
//! placeholders.

use std::path::Path;

use crate::support::cli::{Output, Test, step};
use crate::support::s3::S3Server;

/// Production's media: images, renditions, documents (one a CSV of
/// contacts), and keys with a space, unicode, `+` and `%`.
const OBJECTS: &[(&str, &[u8])] = &[
    (
        "original_images/garden.jpg",
        b"\xff\xd8\xff\xe0 not really a jpeg, but named so",
    ),
    (
        "original_images/caf\u{e9} menu.png",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x08\x08\x02\0\0\0",
    ),
    ("original_images/a+b%20c.gif", b"GIF89a\x02\0\x02\0 gif"),
    ("images/garden.width-800.jpg", b"\xff\xd8\xff a rendition"),
    (
        "documents/contacts.csv",
        b"name,email\nAda Lovelace,ada.lovelace@gmail.com\nAlan Turing,alan@turing.co.uk\n",
    ),
    ("documents/public/brochure.pdf", b"%PDF-1.4 the brochure"),
];

fn seed_dir(root: &Path) {
    for (key, bytes) in OBJECTS {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn workflow(source: &str, target: &str, with: &str) -> String {
    format!(
        r#"
        name: media
        targets:
          prod: {{ media: "{source}", protected: true }}
          staging: {{ media: "{target}" }}
        steps:
          media:
            uses: media.sync
            with: {{ source: prod, target: staging{with} }}
        "#
    )
}

fn with_server(mut test: Test, server: &S3Server) -> Test {
    for (k, v) in server.env() {
        test = test.env(k, v);
    }
    test
}

/// Buckets `prod-media` (seeded with [`OBJECTS`]) and `staging-media` on
/// `server`, and the workflow syncing one into the other `with` more.
fn prod_to_staging_buckets(server: &S3Server, with: &str) -> Test {
    server.create_bucket("prod-media");
    server.create_bucket("staging-media");
    seed_dir(&server.bucket_dir("prod-media"));
    let yaml = workflow(
        &server.url("prod-media", ""),
        &server.url("staging-media", ""),
        with,
    );
    with_server(Test::new().workflow("media", &yaml), server)
}

fn run(test: Test, args: &[&str]) -> (Test, Output) {
    let test = test.args(args);
    let out = test.run();
    (test, out)
}

fn ok(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    step(&out.json(), "media")["outputs"].clone()
}

fn counts(outputs: &serde_json::Value) -> [u64; 4] {
    ["copied", "placeholders", "skipped", "deleted"].map(|k| outputs[k].as_u64().unwrap())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn one_endpoint_copies_server_side_and_a_second_run_copies_nothing() {
    let server = S3Server::start();
    let test = prod_to_staging_buckets(&server, ", copy: [documents/public/**]");
    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    let outputs = ok(&out);
    assert_eq!(counts(&outputs), [5, 1, 0, 0], "{outputs}");

    let staging = server.bucket_dir("staging-media");
    for (key, bytes) in OBJECTS {
        let copied = std::fs::read(staging.join(key)).unwrap();
        if *key == "documents/contacts.csv" {
            assert!(
                !contains(&copied, "@"),
                "{}",
                String::from_utf8_lossy(&copied)
            );
            assert!(contains(&copied, "replaced in staging"));
        } else {
            assert_eq!(&copied, bytes, "{key}");
            let ops = server.ops_on(key);
            assert!(ops.contains(&"CopyObject".to_string()), "{key}: {ops:?}");
            // Only its first bytes are read (is it an image?), never the whole.
            assert!(!ops.contains(&"GetObject".to_string()), "{key}: {ops:?}");
            assert!(!ops.contains(&"PutObject".to_string()), "{key}: {ops:?}");
        }
    }

    server.clear_ops();
    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [0, 0, 6, 0]);
    assert_eq!(server.count("CopyObject") + server.count("PutObject"), 0);

    // One changed object is copied, alone.
    std::fs::write(
        server
            .bucket_dir("prod-media")
            .join("original_images/garden.jpg"),
        b"\xff\xd8\xff a new garden",
    )
    .unwrap();
    let (_, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [1, 0, 5, 0]);
    assert_eq!(
        std::fs::read(staging.join("original_images/garden.jpg")).unwrap(),
        b"\xff\xd8\xff a new garden"
    );
}

#[test]
fn s3_to_a_directory_and_back_keeps_every_key_and_a_second_run_copies_nothing() {
    let server = S3Server::start();
    server.create_bucket("prod-media");
    server.create_bucket("back");
    seed_dir(&server.bucket_dir("prod-media"));
    let dir_workflow = workflow(
        &server.url("prod-media", ""),
        "./staging-media",
        ", copy: ['**']",
    );
    let test = with_server(Test::new().workflow("media", &dir_workflow), &server);
    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [6, 0, 0, 0]);
    let local = test.dir().join("staging-media");
    for (key, bytes) in OBJECTS {
        assert_eq!(&std::fs::read(local.join(key)).unwrap(), bytes, "{key}");
    }
    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [0, 0, 6, 0]);

    // The directory, into S3 again: the same bytes under the same keys.
    let back = workflow(
        "./staging-media",
        &server.url("back", "copies"),
        ", copy: ['**']",
    )
    .replace("name: media", "name: back");
    let test = test.workflow("back", &back);
    let (test, out) = run(test, &["run", "back", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [6, 0, 0, 0]);
    for (key, bytes) in OBJECTS {
        let stored = server.bucket_dir("back").join("copies").join(key);
        assert_eq!(&std::fs::read(stored).unwrap(), bytes, "{key}");
    }
    let (_, out) = run(test, &["run", "back", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [0, 0, 6, 0], "{}", out.stderr);
}

#[test]
fn deletions_stay_inside_the_selection_and_stop_at_max_delete() {
    let test = Test::new();
    seed_dir(&test.dir().join("prod"));
    let staging = test.dir().join("staging");
    for key in [
        "original_images/gone-1.jpg",
        "original_images/gone-2.jpg",
        "original_images/gone-3.jpg",
        "images/garden.width-400.jpg",
        "original_images/upload.tmp",
    ] {
        std::fs::create_dir_all(staging.join(key).parent().unwrap()).unwrap();
        std::fs::write(staging.join(key), b"staging only").unwrap();
    }
    let with =
        ", include: ['original_images/**', 'documents/**'], exclude: ['**/*.tmp'], delete: true";
    let test = test.workflow(
        "media",
        &workflow("./prod", "./staging", &format!("{with}, max_delete: 2")),
    );

    // Three to delete, two allowed: refused before anything is deleted.
    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("3 objects would be deleted"),
        "{}",
        out.stderr
    );
    assert!(staging.join("original_images/gone-1.jpg").exists());

    let (_test, out) = run(
        test,
        &["run", "media", "--yes", "--yes-delete-many", "--json"],
    );
    let outputs = ok(&out);
    // Copied: three images and the public PDF as a placeholder; renditions not selected.
    assert_eq!(counts(&outputs), [3, 2, 0, 3], "{outputs}");
    for gone in ["gone-1.jpg", "gone-2.jpg", "gone-3.jpg"] {
        assert!(!staging.join("original_images").join(gone).exists());
    }
    assert!(
        staging.join("images/garden.width-400.jpg").exists(),
        "outside the include globs"
    );
    assert!(
        staging.join("original_images/upload.tmp").exists(),
        "excluded"
    );
    assert!(
        !staging.join("images/garden.width-800.jpg").exists(),
        "not included"
    );
}

#[test]
fn a_listing_that_fails_deletes_nothing() {
    let server = S3Server::start();
    let test = with_server(Test::new(), &server);
    let staging = test.dir().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("kept.jpg"), b"staging").unwrap();
    let test = test.workflow(
        "media",
        &workflow(
            &server.url("no-such-bucket", ""),
            "./staging",
            ", delete: true",
        ),
    );
    let (_test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("nothing was deleted"), "{}", out.stderr);
    assert!(staging.join("kept.jpg").exists());
}

#[test]
fn an_object_the_server_fails_three_times_is_named_and_the_others_are_copied() {
    let server = S3Server::start();
    let test = prod_to_staging_buckets(&server, ", delete: true");
    server.fail("original_images/garden.jpg", 3);
    // Failed twice: the retries get it through.
    server.fail("original_images/a+b%20c.gif", 2);
    let staging = server.bucket_dir("staging-media");
    std::fs::write(staging.join("stale.jpg"), b"would be deleted").unwrap();
    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("`original_images/garden.jpg`"),
        "{}",
        out.stderr
    );
    let media = step(&out.json(), "media").clone();
    assert!(
        media["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["label"] == "deletions"),
        "{media}"
    );
    assert!(!staging.join("original_images/garden.jpg").exists());
    assert!(staging.join("original_images/a+b%20c.gif").exists());
    assert!(staging.join("original_images/caf\u{e9} menu.png").exists());
    assert!(
        staging.join("stale.jpg").exists(),
        "no deletion after a failed copy"
    );

    let (_, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [1, 0, 5, 1]);
}

#[test]
fn staff_photos_become_flat_images_of_the_same_size_and_a_dry_run_writes_nothing() {
    let test = Test::new();
    let prod = test.dir().join("prod");
    std::fs::create_dir_all(prod.join("staff")).unwrap();
    // A PNG header of 1234 × 567 pixels (the rest need not be there).
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&1234u32.to_be_bytes());
    png.extend_from_slice(&567u32.to_be_bytes());
    png.extend_from_slice(b"\x08\x02\0\0\0 staff photo pixels");
    std::fs::write(prod.join("staff/jane.png"), &png).unwrap();
    std::fs::write(prod.join("staff/notes"), b"Jane's phone: +44 20 7946 0000").unwrap();
    let test = test.workflow(
        "media",
        &workflow("./prod", "./staging", ", placeholder: ['staff/**']"),
    );

    let (test, out) = run(test, &["plan", "media", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !test.dir().join("staging").exists(),
        "a dry run writes nothing"
    );
    assert!(!out.stdout.contains("+44"), "{}", out.stdout);

    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [0, 2, 0, 0]);
    let stand_in = std::fs::read(test.dir().join("staging/staff/jane.png")).unwrap();
    assert!(stand_in.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(&stand_in[16..20], &1234u32.to_be_bytes());
    assert_eq!(&stand_in[20..24], &567u32.to_be_bytes());
    let notes = std::fs::read(test.dir().join("staging/staff/notes")).unwrap();
    assert!(!contains(&notes, "+44"));
    let (_, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(
        counts(&ok(&out)),
        [0, 0, 2, 0],
        "placeholders already in place"
    );
}

/// Peak resident memory of a running child, read from `/proc` until it
/// exits (the kernel's high-water mark, so the last reading is the peak).
fn peak_rss_kib(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// 100,000 small files: the listings are streamed and the work bounded, so
/// memory stays far from what the object count would cost held whole.
#[test]
fn a_hundred_thousand_small_objects_sync_in_under_64_mib() {
    let test = Test::new().timeout(std::time::Duration::from_secs(600));
    let prod = test.dir().join("prod");
    for dir in 0..100 {
        let dir_path = prod.join(format!("original_images/{dir:03}"));
        std::fs::create_dir_all(&dir_path).unwrap();
        for file in 0..1_000 {
            std::fs::write(
                dir_path.join(format!("{file:04}.jpg")),
                [
                    &b"\xff\xd8\xff"[..],
                    format!("image {dir} {file}").as_bytes(),
                ]
                .concat(),
            )
            .unwrap();
        }
    }
    let test = test.workflow("media", &workflow("./prod", "./staging", ""));
    let mut child = test.spawn(&["run", "media", "--yes", "--json"]);
    let peak = peak_rss_kib(&mut child);
    let out = Output::of(child);
    assert_eq!(counts(&ok(&out)), [100_000, 0, 0, 0]);
    assert!(peak < 64 << 10, "peak RSS {peak} KiB");
    assert!(
        test.dir()
            .join("staging/original_images/099/0999.jpg")
            .exists()
    );
}

/// Bucketeer's way: the key pair in variables the target names, not in the
/// AWS chain; a variable that is not set is one clear error.
#[test]
fn a_target_can_name_the_variables_that_hold_its_key_pair() {
    let server = S3Server::start();
    server.create_bucket("bucketeer-prod");
    seed_dir(&server.bucket_dir("bucketeer-prod"));
    let env: std::collections::BTreeMap<String, String> = server.env().into_iter().collect();
    let yaml = workflow(
        &server.url("bucketeer-prod", ""),
        "./staging",
        ", copy: ['**']",
    )
    .replace(
        "protected: true }",
        "protected: true, access_key_env: PROD_KEY_ID, secret_key_env: PROD_SECRET }",
    );
    let test = Test::new()
        .workflow("media", &yaml)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PROD_KEY_ID", &env["AWS_ACCESS_KEY_ID"]);
    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("environment variable `PROD_SECRET` is not set"),
        "{}",
        out.stderr
    );
    let test = test.env("PROD_SECRET", &env["AWS_SECRET_ACCESS_KEY"]);
    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [6, 0, 0, 0]);
    assert!(!out.both().contains(&env["AWS_SECRET_ACCESS_KEY"]));
    drop(test);
}

/// Fail closed for files: only a name that says document is trusted for a
/// placeholder, only bytes that say media are trusted for a copy.
#[test]
fn files_whose_bytes_are_not_media_arrive_as_placeholders_whatever_their_name() {
    let test = Test::new();
    let uploads = test.dir().join("prod/uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    let csv = b"name,email\nAda Lovelace,ada.lovelace@gmail.com\n";
    for name in ["3f2a9c0e-uuid", "export.csv.gz", "holiday.jpg", "scan.bin"] {
        std::fs::write(uploads.join(name), csv).unwrap();
    }
    std::fs::write(uploads.join("real.jpg"), b"\xff\xd8\xff\xe0 a photo").unwrap();
    let test = test.workflow("media", &workflow("./prod", "./staging", ""));
    let (test, out) = run(test, &["run", "media", "--yes", "--json"]);
    assert_eq!(counts(&ok(&out)), [1, 4, 0, 0]);
    for name in ["3f2a9c0e-uuid", "export.csv.gz", "holiday.jpg", "scan.bin"] {
        let arrived = std::fs::read(test.dir().join("staging/uploads").join(name)).unwrap();
        assert!(
            !contains(&arrived, "@"),
            "{name}: {}",
            String::from_utf8_lossy(&arrived)
        );
    }
}

/// A target inside its source (or a protected target's media inside the
/// target) is refused before anything is read or written: its
/// placeholders would land on production's documents.
#[test]
fn a_sync_into_what_it_reads_is_refused() {
    for (target, why) in [
        ("./prod/staging", "inside the source"),
        ("./alias", "the source through a link"),
        (".", "holding the source"),
    ] {
        let yaml = workflow("./prod", target, ", delete: true");
        let t = Test::new();
        seed_dir(&t.dir().join("prod"));
        if target == "./alias" {
            std::os::unix::fs::symlink(t.dir().join("prod"), t.dir().join("alias")).unwrap();
        }
        let (_t, out) = run(t.workflow("media", &yaml), &["run", "media", "--yes"]);
        assert_eq!(out.code, 3, "{why}: {}", out.both());
        assert!(
            out.stderr.contains("overlaps the media of `prod`"),
            "{why}: {}",
            out.stderr
        );
    }
}
