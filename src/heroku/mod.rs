//! Heroku apps as targets: `postgres: heroku://APP` is the app's
//! `DATABASE_URL`, `media: heroku://APP` its Bucketeer bucket and key pair,
//! read from the Platform API ([`api`]) when a workflow is run or planned.
//!
//! This module parses the `heroku://` forms (at load, so `validate` names a
//! bad one with its line) and turns an app's config vars into what the
//! other layers already understand: a `postgres://` URL, an `s3://`
//! location and a key pair. Every value it resolves is a secret: the
//! caller registers [`Resolved::secrets`] before anything is printed.

pub mod api;

pub use api::{Api, ConfigVars, HerokuError};

/// The scheme of a Heroku endpoint.
pub const SCHEME: &str = "heroku://";

/// Whether `url` is written as a Heroku endpoint.
pub fn is_heroku(url: &str) -> bool {
    url.trim_start()
        .get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
}

/// `postgres: heroku://APP[?var=NAME&sslmode=MODE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresEndpoint {
    pub app: String,
    /// The config var holding the URL (default `DATABASE_URL`; another
    /// attachment's, such as `HEROKU_POSTGRESQL_RED_URL`, by `var=`).
    pub var: String,
    /// `sslmode=` given here; without it a resolved URL that names none
    /// gets `require`.
    pub sslmode: Option<String>,
}

/// `media: heroku://APP[/prefix][?attachment=NAME&endpoint=…&path_style=…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaEndpoint {
    pub app: String,
    /// Inside the bucket, without leading or trailing `/`.
    pub prefix: String,
    /// The add-on attachment's name, the prefix of its config vars
    /// (default `BUCKETEER`: `BUCKETEER_BUCKET_NAME`, …).
    pub attachment: String,
    /// `endpoint=` and `path_style=` passed on to the `s3://` location
    /// (an S3-compatible endpoint instead of AWS).
    pub s3_options: Vec<(String, String)>,
}

const SSLMODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Reads `heroku://APP?…` as a database endpoint. The error says what is
/// wrong in words for a located problem.
pub fn parse_postgres(url: &str) -> Result<PostgresEndpoint, String> {
    let (app, path, query) = split(url)?;
    if !path.is_empty() {
        return Err(format!(
            "a database endpoint has no path (`/{path}`); pick another database's \
             variable with `?var=HEROKU_POSTGRESQL_…_URL`"
        ));
    }
    let mut endpoint = PostgresEndpoint {
        app,
        var: "DATABASE_URL".into(),
        sslmode: None,
    };
    for (key, value) in query {
        match key.as_str() {
            "var" => {
                check_var_name(&value)?;
                endpoint.var = value;
            }
            "sslmode" if SSLMODES.contains(&value.as_str()) => endpoint.sslmode = Some(value),
            "sslmode" => {
                return Err(format!(
                    "`sslmode={value}` is not a mode; use one of {}",
                    SSLMODES.join(", ")
                ));
            }
            other => {
                return Err(format!(
                    "unknown option `{other}` (a database endpoint takes `var` and `sslmode`)"
                ));
            }
        }
    }
    Ok(endpoint)
}

/// Reads `heroku://APP[/prefix]?…` as a media endpoint.
pub fn parse_media(url: &str) -> Result<MediaEndpoint, String> {
    let (app, path, query) = split(url)?;
    let mut endpoint = MediaEndpoint {
        app,
        prefix: path.trim_matches('/').to_string(),
        attachment: "BUCKETEER".into(),
        s3_options: Vec::new(),
    };
    for (key, value) in query {
        match key.as_str() {
            "attachment" => {
                check_var_name(&value)?;
                endpoint.attachment = value;
            }
            "endpoint" | "path_style" => endpoint.s3_options.push((key, value)),
            other => {
                return Err(format!(
                    "unknown option `{other}` (a media endpoint takes `attachment`, \
                     `endpoint` and `path_style`)"
                ));
            }
        }
    }
    Ok(endpoint)
}

/// (app, path after the app, query pairs) of `heroku://APP/path?k=v&…`.
type Parts = (String, String, Vec<(String, String)>);

fn split(url: &str) -> Result<Parts, String> {
    let url = url.trim();
    let rest = url
        .get(SCHEME.len()..)
        .filter(|_| is_heroku(url))
        .ok_or_else(|| "not a `heroku://APP` endpoint".to_string())?;
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (app, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    check_app_name(app)?;
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("option `{pair}` has no value (write `{pair}=…`)"))?;
        pairs.push((key.to_string(), crate::redact::percent_decode(value)));
    }
    Ok((app.to_string(), path.to_string(), pairs))
}

/// Heroku app names: 3 to 30 lowercase letters, digits and dashes,
/// starting with a letter. An app's id (a UUID) is accepted too.
fn check_app_name(app: &str) -> Result<(), String> {
    if app.is_empty() {
        return Err("no app name after `heroku://`".into());
    }
    let is_uuid = app.len() == 36
        && app.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    let is_name = (3..=30).contains(&app.len())
        && app.starts_with(|c: char| c.is_ascii_lowercase())
        && app
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if is_uuid || is_name {
        Ok(())
    } else {
        Err(format!(
            "`{app}` is not a Heroku app name (3 to 30 lowercase letters, digits and \
             dashes, starting with a letter), as `heroku apps` lists them"
        ))
    }
}

fn check_var_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a config var name (uppercase letters, digits and `_`, \
             as `heroku config` lists them)"
        ))
    }
}

/// What an endpoint resolved to.
#[derive(Clone, PartialEq, Eq)]
pub enum Resolved {
    Postgres {
        url: String,
    },
    Media {
        location: String,
        access_key: String,
        secret_key: String,
        /// The bucket's name, a secret too (masked).
        bucket: String,
    },
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolved::Postgres { .. } => f.write_str("Resolved::Postgres(***)"),
            Resolved::Media { .. } => f.write_str("Resolved::Media(***)"),
        }
    }
}

impl Resolved {
    /// Every value to mask: the whole URL and its parts, the bucket and
    /// both keys. (A region is not secret and is left readable.)
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Resolved::Postgres { url } => {
                let mut secrets = vec![url.clone()];
                secrets.extend(crate::redact::url_secrets(url));
                if let Some(user) = url_user(url) {
                    secrets.push(user);
                }
                secrets
            }
            Resolved::Media {
                location,
                access_key,
                secret_key,
                bucket,
            } => vec![
                location.clone(),
                access_key.clone(),
                secret_key.clone(),
                bucket.clone(),
            ],
        }
    }
}

/// The user name of `postgres://user[:password]@host…`, percent-decoded;
/// the credentials end where the connector says (a `?` or `/` may be part
/// of a password).
fn url_user(url: &str) -> Option<String> {
    let rest = crate::pg::conninfo::url_after_scheme(url)?;
    let userinfo = rest.get(..crate::pg::conninfo::credentials_len(rest))?;
    let userinfo = userinfo.strip_suffix('@')?;
    let user = userinfo.split(':').next()?;
    (!user.is_empty()).then(|| crate::redact::percent_decode(user))
}

impl PostgresEndpoint {
    /// The app's database URL, with `sslmode` as this endpoint says or
    /// `require` when neither it nor the URL names one: Heroku Postgres
    /// insists on TLS with certificates that are not publicly verifiable.
    pub fn resolve(&self, vars: &ConfigVars) -> Result<Resolved, HerokuError> {
        let hint = if self.var == "DATABASE_URL" {
            "is Heroku Postgres attached? `heroku addons -a APP` lists it"
        } else {
            "`heroku config -a APP` lists the app's variables"
        };
        let url = vars.get(&self.app, &self.var, hint)?;
        let scheme = url.split_once("://").map(|(s, _)| s);
        if !scheme.is_some_and(crate::redact::is_postgres_scheme) {
            return Err(HerokuError::NotAUrl {
                app: self.app.clone(),
                var: self.var.clone(),
                what: "a `postgres://` URL",
            });
        }
        Ok(Resolved::Postgres {
            url: with_sslmode(url, self.sslmode.as_deref()),
        })
    }
}

/// `url` with `sslmode=wanted` (replacing the URL's own), or with
/// `sslmode=require` added when neither names one. The query starts after
/// the credentials, as the connector reads them; a `#fragment` stays last.
fn with_sslmode(url: &str, wanted: Option<&str>) -> String {
    let Some(rest) = crate::pg::conninfo::url_after_scheme(url) else {
        return url.to_string();
    };
    let head_len = url.len() - rest.len() + crate::pg::conninfo::credentials_len(rest);
    let (head, after) = url.split_at(head_len);
    let (after, fragment) = match after.find('#') {
        Some(at) => after.split_at(at),
        None => (after, ""),
    };
    let (base, query) = after.split_once('?').unwrap_or((after, ""));
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let has_own = pairs.iter().any(|p| p.starts_with("sslmode="));
    let mode = match (wanted, has_own) {
        (Some(mode), _) => {
            pairs.retain(|p| !p.starts_with("sslmode="));
            Some(mode)
        }
        (None, true) => None,
        (None, false) => Some("require"),
    };
    let added = mode.map(|m| format!("sslmode={m}"));
    pairs.extend(added.as_deref());
    let query = if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    };
    format!("{head}{base}{query}{fragment}")
}

impl MediaEndpoint {
    /// The app's Bucketeer bucket as an `s3://` location with its region,
    /// and the add-on's key pair.
    pub fn resolve(&self, vars: &ConfigVars) -> Result<Resolved, HerokuError> {
        let var = |suffix: &str| format!("{}_{suffix}", self.attachment);
        let hint = "is Bucketeer attached? `heroku addons -a APP` lists it; \
                    name another attachment with `?attachment=NAME`";
        let bucket = vars.get(&self.app, &var("BUCKET_NAME"), hint)?;
        let region = vars.get(&self.app, &var("AWS_REGION"), hint)?;
        let access_key = vars.get(&self.app, &var("AWS_ACCESS_KEY_ID"), hint)?;
        let secret_key = vars.get(&self.app, &var("AWS_SECRET_ACCESS_KEY"), hint)?;
        let valid_bucket = !bucket.is_empty()
            && bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !valid_bucket {
            return Err(HerokuError::NotAUrl {
                app: self.app.clone(),
                var: var("BUCKET_NAME"),
                what: "a bucket name",
            });
        }
        let mut location = format!("s3://{bucket}");
        if !self.prefix.is_empty() {
            location.push('/');
            location.push_str(&self.prefix);
        }
        let mut query = vec![format!("region={}", encode(region))];
        query.extend(
            self.s3_options
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v))),
        );
        location.push('?');
        location.push_str(&query.join("&"));
        Ok(Resolved::Media {
            location,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            bucket: bucket.to_string(),
        })
    }
}

/// Percent-encodes what would end a query value.
fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'&' | b'=' | b'%' | b'#' | b'?' | b' ' | b'+' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> ConfigVars {
        ConfigVars::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_database_endpoint_reads_its_app_variable_and_mode() {
        assert_eq!(
            parse_postgres("heroku://acme-prod").unwrap(),
            PostgresEndpoint {
                app: "acme-prod".into(),
                var: "DATABASE_URL".into(),
                sslmode: None
            }
        );
        let other =
            parse_postgres("heroku://acme-prod?var=HEROKU_POSTGRESQL_RED_URL&sslmode=verify-full")
                .unwrap();
        assert_eq!(other.var, "HEROKU_POSTGRESQL_RED_URL");
        assert_eq!(other.sslmode.as_deref(), Some("verify-full"));
    }

    #[test]
    fn bad_database_endpoints_say_what_is_wrong() {
        for (url, says) in [
            ("heroku://", "no app name"),
            ("heroku://Acme_Prod", "not a Heroku app name"),
            ("heroku://ab", "not a Heroku app name"),
            ("heroku://acme-prod/db", "has no path"),
            ("heroku://acme-prod?sslmode=strict", "not a mode"),
            (
                "heroku://acme-prod?var=database_url",
                "not a config var name",
            ),
            ("heroku://acme-prod?user=x", "unknown option `user`"),
            ("heroku://acme-prod?var", "has no value"),
        ] {
            let err = parse_postgres(url).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
        assert!(parse_postgres("heroku://01234567-89ab-cdef-0123-456789abcdef").is_ok());
    }

    #[test]
    fn a_resolved_url_requires_tls_unless_told_otherwise() {
        let resolve = |endpoint: &str, url: &str| {
            let Resolved::Postgres { url } = parse_postgres(endpoint)
                .unwrap()
                .resolve(&vars(&[("DATABASE_URL", url)]))
                .unwrap()
            else {
                panic!("not a database")
            };
            url
        };
        assert_eq!(
            resolve("heroku://app-a", "postgres://u:p@h:5432/d"),
            "postgres://u:p@h:5432/d?sslmode=require"
        );
        assert_eq!(
            resolve("heroku://app-a", "postgres://u:p@h/d?sslmode=verify-full"),
            "postgres://u:p@h/d?sslmode=verify-full"
        );
        assert_eq!(
            resolve(
                "heroku://app-a?sslmode=disable",
                "postgres://u:p@h/d?sslmode=require&x=1"
            ),
            "postgres://u:p@h/d?x=1&sslmode=disable"
        );
    }

    #[test]
    fn a_question_mark_or_slash_in_the_password_is_not_the_query() {
        assert_eq!(
            with_sslmode("postgres://u:a?b/c@h:5432/d", None),
            "postgres://u:a?b/c@h:5432/d?sslmode=require"
        );
        assert_eq!(
            with_sslmode(
                "postgres://u:a?b@h/d?sslmode=disable&x=1",
                Some("verify-full")
            ),
            "postgres://u:a?b@h/d?x=1&sslmode=verify-full"
        );
        assert_eq!(
            with_sslmode("postgres://u:p#w@d@h/d#frag", None),
            "postgres://u:p#w@d@h/d?sslmode=require#frag"
        );
        assert_eq!(url_user("postgres://u1:a?b/c@h/d").as_deref(), Some("u1"));
        assert_eq!(url_user("postgres://h/d"), None);
    }

    #[test]
    fn every_part_of_a_resolved_url_is_a_secret() {
        let resolved = parse_postgres("heroku://app-a")
            .unwrap()
            .resolve(&vars(&[(
                "DATABASE_URL",
                "postgres://uabc123:pw%2Fsecret@h/dbname",
            )]))
            .unwrap();
        let secrets = resolved.secrets();
        for part in ["uabc123", "pw/secret", "pw%2Fsecret"] {
            assert!(secrets.iter().any(|s| s == part), "{part}: {secrets:?}");
        }
        assert!(!format!("{resolved:?}").contains("secret"));
    }

    #[test]
    fn a_missing_variable_names_the_app_and_the_variable() {
        let err = parse_postgres("heroku://app-a")
            .unwrap()
            .resolve(&vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`app-a`") && err.contains("DATABASE_URL"),
            "{err}"
        );
        let err = parse_postgres("heroku://app-a")
            .unwrap()
            .resolve(&vars(&[("DATABASE_URL", "mysql://x@y/z")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres://"), "{err}");
    }

    #[test]
    fn bucketeer_becomes_a_location_and_a_key_pair() {
        let endpoint =
            parse_media("heroku://app-a/public/?endpoint=http://127.0.0.1:9000&path_style=true")
                .unwrap();
        let resolved = endpoint
            .resolve(&vars(&[
                ("BUCKETEER_BUCKET_NAME", "bucketeer-1234"),
                ("BUCKETEER_AWS_REGION", "eu-west-1"),
                ("BUCKETEER_AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
                ("BUCKETEER_AWS_SECRET_ACCESS_KEY", "secret/key+example"),
            ]))
            .unwrap();
        let Resolved::Media {
            location,
            access_key,
            secret_key,
            ..
        } = &resolved
        else {
            panic!("not media")
        };
        assert_eq!(
            location,
            "s3://bucketeer-1234/public?region=eu-west-1&endpoint=http://127.0.0.1:9000&path_style=true"
        );
        assert_eq!(access_key, "AKIAEXAMPLE");
        assert_eq!(secret_key, "secret/key+example");
        assert!(!resolved.secrets().iter().any(|s| s == "eu-west-1"));
        let err = parse_media("heroku://app-a?attachment=MEDIA")
            .unwrap()
            .resolve(&vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MEDIA_BUCKET_NAME"), "{err}");
    }
}
