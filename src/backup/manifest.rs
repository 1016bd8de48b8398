//! What a backup is in a store: a dump and, beside it, its manifest (JSON),
//! written last, so a dump without one is never a backup. Owns the naming
//! of both keys, the manifest's fields, and which backups retention takes
//! out. Pure: no I/O here (the store is read and written by the callers).
//!
//! Naming, inside the store (its root or prefix):
//! `<workflow>/<UTC time, %Y%m%dT%H%M%S.mmmZ>-<run id's last 4>.dump` and the
//! same with `.json`. A backup's *name* is the key without the extension
//! (`reset-staging/20261202T061500.123Z-3fa9`): names of one workflow sort by
//! time, and a name never needs quoting in a shell.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The manifest format this version writes; newer ones are refused.
pub const FORMAT: u32 = 1;

pub const DUMP_EXT: &str = ".dump";
pub const MANIFEST_EXT: &str = ".json";

/// The JSON beside each dump. Secret-free: the database is described by
/// host, port and name, never by the URL it was read through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// `<workflow>/<time>-<run>`: the key of the dump without `.dump`.
    pub name: String,
    pub workflow: String,
    pub run_id: String,
    /// When the dump started (its snapshot is from then).
    pub created: DateTime<Utc>,
    pub source: Source,
    /// `pg_dump --version`, e.g. `pg_dump (PostgreSQL) 15.18`.
    pub pg_dump_version: String,
    /// The major version of that pg_dump: a pg_restore at least this new reads the dump.
    pub pg_dump_major: u32,
    /// The dump's key in the store.
    pub dump: String,
    pub bytes: u64,
    /// Lowercase hex of the dump's bytes.
    pub sha256: String,
    /// Ordinary and partitioned tables outside the system schemas.
    pub tables: u64,
    /// The planner's estimate of their rows when the dump started.
    pub rows_estimate: u64,
}

/// The database a backup was taken of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The workflow's target name (or `--to`'s for the CLI), if any.
    pub target: Option<String>,
    /// `postgres://host:port/database`: no user, no password, no parameters.
    pub url: String,
    pub database: String,
    /// `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub server_version: String,
    /// Taken of a protected target (production): its rows were never
    /// anonymized, so it is never restored (see `restore::refuse_unscrubbed`).
    #[serde(default)]
    pub protected: bool,
}

/// A workflow name as a key segment: ASCII letters, digits, `.`, `_` and
/// `-` kept, anything else `-` (a workflow's name is free text).
pub fn workflow_segment(workflow: &str) -> String {
    let cleaned: String = workflow
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('.');
    if trimmed.is_empty() {
        "workflow".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The name of a backup taken by `run_id` of `workflow` at `time`.
pub fn name_for(workflow: &str, time: DateTime<Utc>, run_id: &str) -> String {
    let run: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let short = &run[run.len().saturating_sub(4)..];
    format!(
        "{}/{}-{short}",
        workflow_segment(workflow),
        time.format("%Y%m%dT%H%M%S%.3fZ")
    )
}

pub fn dump_key(name: &str) -> String {
    format!("{name}{DUMP_EXT}")
}

pub fn manifest_key(name: &str) -> String {
    format!("{name}{MANIFEST_EXT}")
}

/// Whether `key` is shaped like the manifest of a backup of `workflow`
/// (`<workflow>/<time>-<run>.json`), the only keys retention may take out.
pub fn is_manifest_of(key: &str, workflow: &str) -> bool {
    let Some(rest) = key
        .strip_prefix(&workflow_segment(workflow))
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    let Some(stem) = rest.strip_suffix(MANIFEST_EXT) else {
        return false;
    };
    // 20261202T061500.123Z-3fa9
    let bytes = stem.as_bytes();
    stem.len() > 21
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'T'
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && bytes[15] == b'.'
        && bytes[16..19].iter().all(u8::is_ascii_digit)
        && &stem[19..21] == "Z-"
        && stem[21..].chars().all(|c| c.is_ascii_alphanumeric())
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serializes");
        text.push('\n');
        text.into_bytes()
    }

    /// Reads a manifest; the error says what is wrong with it.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if manifest.format > FORMAT {
            return Err(format!(
                "manifest format {} is newer than this flightpath reads ({FORMAT}); upgrade flightpath",
                manifest.format
            ));
        }
        Ok(manifest)
    }
}

/// Of one workflow's backups (names), those beyond the newest `keep`:
/// what retention deletes, oldest first. Names sort by their time.
pub fn beyond(mut names: Vec<String>, keep: usize) -> Vec<String> {
    names.sort();
    let excess = names.len().saturating_sub(keep);
    names.truncate(excess);
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_sort_by_time_and_keep_to_safe_characters() {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 6, 15, 0).unwrap();
        assert_eq!(
            name_for("reset staging/β", at, "20261202T061500Z-3FA9"),
            "reset-staging--/20261202T061500.000Z-3fa9"
        );
        let later = at + chrono::Duration::milliseconds(1);
        assert!(name_for("w", at, "x-ffff") < name_for("w", later, "x-0000"));
        assert_eq!(workflow_segment(".."), "workflow");
    }

    #[test]
    fn only_a_workflows_own_manifests_are_its_backups() {
        assert!(is_manifest_of(
            "nightly/20261202T061500.123Z-3fa9.json",
            "nightly"
        ));
        for other in [
            "nightly/20261202T061500.123Z-3fa9.dump",
            "nightly-2/20261202T061500.123Z-3fa9.json",
            "nightly/notes.json",
            "nightly/sub/20261202T061500.123Z-3fa9.json",
            "other/20261202T061500.123Z-3fa9.json",
            "20261202T061500.123Z-3fa9.json",
            "nightly/20261202T061500Z-3fa9.json",
        ] {
            assert!(!is_manifest_of(other, "nightly"), "{other}");
        }
    }

    #[test]
    fn retention_takes_the_oldest_beyond_keep() {
        let names = ["w/3", "w/1", "w/4", "w/2"].map(String::from).to_vec();
        assert_eq!(beyond(names.clone(), 2), ["w/1", "w/2"]);
        assert!(beyond(names.clone(), 4).is_empty());
        assert!(beyond(names, 9).is_empty());
    }

    #[test]
    fn a_manifest_reads_back_and_a_newer_format_is_refused() {
        let manifest = Manifest {
            format: FORMAT,
            name: "w/20261202T061500Z-3fa9".into(),
            workflow: "w".into(),
            run_id: "20261202T061500Z-3fa9".into(),
            created: Utc.with_ymd_and_hms(2026, 12, 2, 6, 15, 0).unwrap(),
            source: Source {
                target: Some("staging".into()),
                url: "postgres://db.internal:5432/staging".into(),
                database: "staging".into(),
                server_version: "15.18".into(),
                protected: false,
            },
            pg_dump_version: "pg_dump (PostgreSQL) 15.18".into(),
            pg_dump_major: 15,
            dump: "w/20261202T061500Z-3fa9.dump".into(),
            bytes: 10,
            sha256: "00".into(),
            tables: 2,
            rows_estimate: 5,
        };
        assert_eq!(Manifest::from_json(&manifest.to_json()).unwrap(), manifest);
        let newer = String::from_utf8(manifest.to_json())
            .unwrap()
            .replace("\"format\": 1", "\"format\": 7");
        assert!(
            Manifest::from_json(newer.as_bytes())
                .unwrap_err()
                .contains("upgrade flightpath")
        );
    }
}
