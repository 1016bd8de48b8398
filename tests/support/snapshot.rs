//! Whole-output snapshots of what a user reads (plans, refusals, `scan`),
//! with only what differs from machine to machine or run to run masked:
//!
//! - run ids (`20261125T105503Z-3fa9`) → `[run-id]`
//! - durations (`512ms`, `1.2s`, `3m05s`, `1h02m`) → `[duration]`
//! - ports of local servers (`127.0.0.1:54321`) → `127.0.0.1:[port]`
//! - the per-test database names of the harness (`fpt_<pid>_<n>_<test>`) →
//!   `[test-db]`
//! - the server's version (`PostgreSQL 15.4`) → `PostgreSQL [version]`, and
//!   the path and major of the `pg_dump` found → `[pg_dump] (major [N])`
//! - temp dirs of the harness (`…/flightpath-test-AbC123`) → `[test-dir]`
//! - sizes (`40.0 KiB`) → `[size]`; in a table column they are padded to
//!   a fixed width (and so is the `size` heading), so the columns after them
//!   stay aligned whatever the sizes are.
//!
//! Everything else — wording, columns, counts, order — is asserted as is.
//!
//! ```ignore
//! let _masks = masks();
//! insta::assert_snapshot!(streams(&out));
//! ```

/// A size as `human_bytes` writes it.
const SIZE: &str = r"\b\d+(?:\.\d)? (?:B|KiB|MiB|GiB|TiB)\b";

/// Binds the filters for the rest of the calling scope.
#[must_use = "the filters apply while the guard lives"]
pub fn masks() -> insta::internals::SettingsBindDropGuard {
    let mut settings = insta::Settings::clone_current();
    let size_cell = format!("{SIZE}  +");
    // Longest `human_bytes` is `1023.9 KiB` (10); two spaces between columns.
    let filters: Vec<(&str, &str)> = vec![
        (r"\b\d{8}T\d{6}Z-[0-9a-f]{4}\b", "[run-id]"),
        (
            r"\b(?:\d+ms|\d+\.\ds|\d+m\d{2}s|\d+h\d{2}m)\b",
            "[duration]",
        ),
        (r"\b(127\.0\.0\.1|localhost):\d+\b", "$1:[port]"),
        (r"\bfpt_\d+_\d+_[a-z0-9_]*", "[test-db]"),
        (r"\bPostgreSQL \d+\.\d+\b", "PostgreSQL [version]"),
        (r"\b\d+ in use now\b", "[N] in use now"),
        (r"(pg_dump: )\S+ \(major \d+\)", "$1[pg_dump] (major [N])"),
        (r"\S*/flightpath-test-[A-Za-z0-9]+", "[test-dir]"),
        (&size_cell, "[size]      "),
        (r"  size  +", "  size        "),
        (SIZE, "[size]"),
    ];
    for (pattern, replacement) in filters {
        settings.add_filter(pattern, replacement);
    }
    settings.bind_to_scope()
}

/// A run's exit code and both streams, as one text to snapshot.
pub fn streams(out: &super::cli::Output) -> String {
    let stream = |text: &str| {
        if text.is_empty() {
            "(empty)\n".to_owned()
        } else {
            text.to_owned()
        }
    };
    format!(
        "exit code {}\n--- stdout\n{}--- stderr\n{}",
        out.code,
        stream(&out.stdout),
        stream(&out.stderr)
    )
}

#[test]
fn masks_hide_what_varies_and_keep_the_words() {
    let text = [
        "flightpath plan reset (run 20261125T105503Z-3fa9): planned in 1.2s",
        "  ○ database  postgres.clone  512ms  would copy 2 tables (about 3 rows, 16.0 KiB)",
        "      source: prod (PostgreSQL 15.4), at 127.0.0.1:54321/fpt_123_4_clone_x",
        "      pg_dump: /usr/lib/postgresql/15/bin/pg_dump (major 15)",
        "      tables:",
        "        table  size        format",
        "        t      8.0 KiB     binary",
        "        u      1016.0 KiB  text",
        "      warning: PostgreSQL 14+ only; took 3m05s; see /tmp/x/flightpath-test-AbC123/workflows",
    ]
    .join("\n");
    let _masks = masks();
    insta::assert_snapshot!(text, @r"
    flightpath plan reset (run [run-id]): planned in [duration]
      ○ database  postgres.clone  [duration]  would copy 2 tables (about 3 rows, [size])
          source: prod (PostgreSQL [version]), at 127.0.0.1:[port]/[test-db]
          pg_dump: [pg_dump] (major [N])
          tables:
            table  size        format
            t      [size]      binary
            u      [size]      text
          warning: PostgreSQL 14+ only; took [duration]; see [test-dir]/workflows
    ");
}
