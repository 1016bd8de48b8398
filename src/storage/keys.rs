//! Keys and listing prefixes: `/`-separated relative paths that cannot
//! escape a store's root or prefix. Checked before any backend sees them.

/// The name a directory store gives a partial file starts with this; a key
/// segment may not, so a partial file can never be taken for an object.
pub(super) const PARTIAL_MARK: &str = ".flightpath-partial-";

/// `Err(problem)` unless `key` is non-empty, relative, and made of plain
/// segments (no empty, `.` or `..` segment, no backslash or NUL, no
/// partial-file mark).
pub(super) fn check(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("is empty".to_string());
    }
    if key.starts_with('/') {
        return Err("starts with `/`".to_string());
    }
    key.split('/').try_for_each(check_segment)
}

/// Like [`check`], for a listing prefix: empty is allowed (everything), and
/// so is a trailing `/` or a last segment still being typed.
pub(super) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.starts_with('/') {
        return Err("starts with `/`".to_string());
    }
    let segments: Vec<&str> = prefix.split('/').collect();
    let (last, whole) = segments.split_last().expect("split yields one item");
    whole.iter().copied().try_for_each(check_segment)?;
    if last.contains(['\\', '\0']) {
        return Err("contains a backslash or NUL".to_string());
    }
    Ok(())
}

fn check_segment(segment: &str) -> Result<(), String> {
    match segment {
        "" => Err("has an empty segment (`//` or a trailing `/`)".to_string()),
        "." | ".." => Err(format!("has a `{segment}` segment")),
        _ if segment.contains(['\\', '\0']) => Err("contains a backslash or NUL".to_string()),
        _ if segment.starts_with(PARTIAL_MARK) => Err(format!(
            "has a segment starting with `{PARTIAL_MARK}` (reserved for partial files)"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_pass() {
        for key in [
            "a",
            "a/b",
            "backups/reset-staging/2026-01-01T00-00-00Z.dump",
            ".hidden",
        ] {
            assert_eq!(check(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn escaping_or_odd_keys_are_refused() {
        for key in [
            "",
            "/a",
            "a//b",
            "a/",
            "..",
            "a/../b",
            "./a",
            "a\\b",
            "a\0b",
            ".flightpath-partial-0123-x",
        ] {
            assert!(check(key).is_err(), "{key:?} passed");
        }
    }

    #[test]
    fn prefixes_may_be_empty_or_end_open() {
        for prefix in ["", "a/", "a/b", "a/.", "back"] {
            assert_eq!(check_prefix(prefix), Ok(()), "{prefix}");
        }
        for prefix in ["/a", "../", "a/../", "a//"] {
            assert!(check_prefix(prefix).is_err(), "{prefix:?} passed");
        }
    }
}
