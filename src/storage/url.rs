//! Store locations: `s3://bucket[/prefix][?endpoint=URL&region=R&path_style=true]`,
//! `file:///abs/dir`, or a directory path. Parsing only; nothing is
//! contacted or created here. Every refusal names the part that is wrong,
//! and a location is only ever echoed masked.

use std::path::{Path, PathBuf};

use crate::redact::{mask_whole_url, percent_decode};
use crate::storage::StorageError;
use crate::storage::keys;

/// A parsed location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Location {
    /// An absolute directory (a relative one is resolved against the
    /// current directory when the store is opened).
    Dir(PathBuf),
    S3(S3Spec),
}

/// Where an S3 store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct S3Spec {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the whole bucket.
    pub prefix: String,
    /// `http(s)://host[:port][/path]`, without credentials.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
}

impl S3Spec {
    /// The canonical, secret-free URL: what [`parse`] reads back to the
    /// same spec.
    pub fn url(&self) -> String {
        let mut url = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            url.push('/');
            url.push_str(&self.prefix);
        }
        let mut query = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            query.push(format!("endpoint={endpoint}"));
        }
        if let Some(region) = &self.region {
            query.push(format!("region={region}"));
        }
        if self.path_style {
            query.push("path_style=true".to_string());
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }
}

pub(super) fn parse(location: &str) -> Result<Location, StorageError> {
    let invalid = |problem: String| StorageError::InvalidLocation {
        location: masked(location),
        problem,
    };
    if location.trim().is_empty() {
        return Err(invalid(
            "is empty; give a directory, `file:///abs/dir` or `s3://bucket/prefix`".to_string(),
        ));
    }
    let Some((scheme, rest)) = location.split_once("://") else {
        return Ok(Location::Dir(absolute(Path::new(location))));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "s3" => parse_s3(rest).map(Location::S3).map_err(invalid),
        "file" => parse_file(rest).map(Location::Dir).map_err(invalid),
        other => Err(invalid(format!(
            "unsupported scheme `{other}://`; use `s3://bucket/prefix`, `file:///abs/dir` or a directory path"
        ))),
    }
}

fn parse_file(rest: &str) -> Result<PathBuf, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !query.is_empty() {
        return Err("a `file://` location takes no `?` parameters".to_string());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "`file://{path}` names a host or a relative path; write `file:///absolute/dir` (three slashes) or a plain directory path"
        ));
    }
    Ok(PathBuf::from(percent_decode(path)))
}

fn parse_s3(rest: &str) -> Result<S3Spec, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    check_bucket(bucket)?;
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() {
        keys::check(prefix).map_err(|problem| format!("prefix `{prefix}` {problem}"))?;
    }
    let mut spec = S3Spec {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        endpoint: None,
        region: None,
        path_style: false,
    };
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match name {
            "endpoint" => spec.endpoint = Some(check_endpoint(&value)?),
            "region" if value.is_empty() => return Err("`region=` is empty".to_string()),
            "region" => spec.region = Some(value),
            "path_style" => {
                spec.path_style = match value.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("`path_style={value}`: write `true` or `false`")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown parameter `{name}`; an `s3://` location takes `endpoint`, `region` and `path_style`"
                ));
            }
        }
    }
    Ok(spec)
}

/// S3's bucket naming rules, the part that matters for a URL.
fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("has no bucket: write `s3://bucket[/prefix]`".to_string());
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-');
    if !(3..=63).contains(&bucket.len()) || !bucket.chars().all(allowed) {
        return Err(format!(
            "bucket `{bucket}` is not a valid bucket name (3 to 63 lowercase letters, digits, `.` and `-`)"
        ));
    }
    Ok(())
}

/// An endpoint is `http(s)://host[:port][/path]` and never holds
/// credentials (they come from the AWS chain, so a URL can be printed).
fn check_endpoint(endpoint: &str) -> Result<String, String> {
    let Some((scheme, after)) = endpoint.split_once("://") else {
        return Err(format!(
            "`endpoint={endpoint}` is not a URL: write `endpoint=https://host[:port]`"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "`endpoint=` must be an http:// or https:// URL, not `{scheme}://`"
        ));
    }
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(
            "`endpoint=` may not carry credentials; give them through AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
                .to_string(),
        );
    }
    if authority.is_empty() {
        return Err("`endpoint=` has no host".to_string());
    }
    Ok(endpoint.trim_end_matches('/').to_string())
}

/// `location` fit to print: the credentials of every URL in it masked,
/// the endpoint's inside the query too (`s3://b?endpoint=http://k:s@host`).
fn masked(location: &str) -> String {
    let mut out = String::with_capacity(location.len());
    let mut rest = location;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        let after = &rest[at + 3..];
        let authority_end = after.find(['/', '?', '#', '&']).unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str(crate::redact::MASK);
                rest = &after[userinfo_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    mask_whole_url(&out)
}

/// `path` made absolute against the current directory, without touching
/// the file system (the directory may not exist yet).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(location: &str) -> S3Spec {
        match parse(location).unwrap() {
            Location::S3(spec) => spec,
            other => panic!("{other:?}"),
        }
    }

    fn refusal(location: &str) -> String {
        parse(location).unwrap_err().to_string()
    }

    #[test]
    fn s3_urls_give_bucket_prefix_and_parameters() {
        let spec = s3(
            "s3://my-bucket/backups/staging/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1&path_style=true",
        );
        assert_eq!(
            spec,
            S3Spec {
                bucket: "my-bucket".into(),
                prefix: "backups/staging".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                path_style: true,
            }
        );
        assert_eq!(
            spec.url(),
            "s3://my-bucket/backups/staging?endpoint=http://127.0.0.1:9000&region=eu-west-1&path_style=true"
        );
        assert_eq!(s3(&spec.url()), spec);
        assert_eq!(s3("s3://bucket").prefix, "");
        assert!(!s3("s3://bucket/p?path_style=false").path_style);
    }

    #[test]
    fn directories_and_file_urls_are_absolute() {
        assert_eq!(
            parse("file:///srv/backups").unwrap(),
            Location::Dir("/srv/backups".into())
        );
        let Location::Dir(relative) = parse("backups").unwrap() else {
            panic!()
        };
        assert!(relative.is_absolute());
        assert!(relative.ends_with("backups"));
    }

    #[test]
    fn bad_locations_name_the_part() {
        assert!(refusal("s3:///prefix").contains("has no bucket"));
        assert!(
            refusal("s3://My_Bucket/x").contains("bucket `My_Bucket` is not a valid bucket name")
        );
        assert!(refusal("s3://bucket/a/../b").contains("prefix `a/../b` has a `..` segment"));
        assert!(refusal("s3://bucket?endpont=http://x").contains("unknown parameter `endpont`"));
        assert!(refusal("s3://bucket?path_style=yes").contains("`path_style=yes`"));
        assert!(refusal("s3://bucket?endpoint=localhost:9000").contains("is not a URL"));
        assert!(refusal("gs://bucket").contains("unsupported scheme `gs://`"));
        assert!(refusal("file://host/dir").contains("three slashes"));
        assert!(refusal("").contains("is empty"));
    }

    #[test]
    fn an_endpoint_with_credentials_is_refused_without_echoing_them() {
        let message =
            refusal("s3://bucket?endpoint=http://AKIAEXAMPLE:hunter2secret@127.0.0.1:9000");
        assert!(message.contains("may not carry credentials"), "{message}");
        assert!(!message.contains("hunter2secret"), "{message}");
        assert!(
            message.contains("endpoint=http://***@127.0.0.1:9000"),
            "{message}"
        );
    }
}
