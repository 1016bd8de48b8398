//! Secret redaction for everything that leaves the process: logs, reports,
//! errors and the journal. Known secret values (passwords from target URLs,
//! values of secret-looking variables, webhook paths) are replaced by `***`,
//! and so are, wherever they appear in text:
//!
//! - the password of any `scheme://user:password@host` URL, found with the
//!   same split the connector uses ([`postgres_credentials`] for
//!   `postgres://`, the WHATWG rule for the others), and everything between
//!   `://` and the last `@` of a URL that split cannot make sense of;
//! - secret-looking query values (`?token=…`, `&password=…`, `&sig=…`);
//! - `password=…` pairs of any case (`PASSWORD=…`, `PGPASSWORD=…`).
//!
//! A leaf: it imports nothing from the rest of the crate, so every layer
//! (the connector included) can share its one reading of a URL.

use std::sync::{Arc, OnceLock};

/// Cheap to clone; shared by the engine, the steps and the renderers.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

pub const MASK: &str = "***";

impl Redactor {
    /// Secrets shorter than 4 characters are ignored: masking every "a" in a
    /// report would hide more than it protects (URL passwords are masked by
    /// their place in the URL whatever their length).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    /// This redactor with `more` secrets too.
    pub fn with_secrets(&self, more: impl IntoIterator<Item = String>) -> Self {
        Redactor::new(self.secrets.iter().cloned().chain(more))
    }

    /// Adds the password of `url` (as written and percent-decoded), if it
    /// has one, and returns the new redactor.
    pub fn with_url_password(self, url: &str) -> Self {
        self.with_secrets(url_secrets(url))
    }

    /// The secret values this redactor masks, longest first (for
    /// `::add-mask::` under GitHub Actions, which masks in the log itself).
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = mask_secrets(text);
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    /// Redacts every string inside a JSON value.
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.redact_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// The credentials of a `postgres://` URL and what follows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub user: &'a str,
    /// As written (still percent-encoded); `None` without a `:`.
    pub password: Option<&'a str>,
    /// Everything after the `@`: host, path, query.
    pub rest: &'a str,
}

/// Splits the text after `postgres://` exactly as the connector
/// (tokio-postgres' URL parser, and so `pg::url` and `pg::schema`) does:
/// the credentials run to the first `@` anywhere, so a raw `#`, `?`, `/` or
/// `:` in a password is part of it; the user runs to the first `:`, the
/// password is the rest. `None` when there is no `@`.
pub fn postgres_credentials(after_scheme: &str) -> Option<Credentials<'_>> {
    let (userinfo, rest) = after_scheme.split_once('@')?;
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    Some(Credentials {
        user,
        password,
        rest,
    })
}

/// Whether `scheme` is read by the PostgreSQL connector.
pub fn is_postgres_scheme(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
}

/// The password in `scheme://user:password@host…` (still percent-encoded),
/// as the URL's connector reads it; `None` without one or when the URL's
/// credentials cannot be told apart from its host (then everything before
/// the last `@` is treated as secret, see [`url_secrets`]).
pub fn url_password(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    match userinfo(scheme, rest) {
        Userinfo::Split { password, .. } => password.filter(|p| !p.is_empty()),
        Userinfo::None | Userinfo::Unparsable { .. } => None,
    }
}

/// The values to register as secrets for `url`: its password as written
/// and percent-decoded, or, when its credentials cannot be split, all of
/// them (everything between `://` and the last `@`).
pub fn url_secrets(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let raw = match userinfo(scheme, rest) {
        Userinfo::Split { password, .. } => password.filter(|p| !p.is_empty()),
        Userinfo::Unparsable { hidden } => Some(&rest[..hidden]),
        Userinfo::None => None,
    };
    let Some(raw) = raw else {
        return Vec::new();
    };
    let mut out = vec![raw.to_string()];
    if let Userinfo::Unparsable { .. } = userinfo(scheme, rest) {
        // The password as meant (after the user), and the part the
        // connector took for the host, each a secret of its own.
        if let Some((_, meant)) = raw.split_once(':') {
            out.push(meant.to_string());
        }
        if let Some((_, host_part)) = raw.split_once('@') {
            out.push(host_part.to_string());
        }
    }
    let decoded = percent_decode(raw);
    if decoded != raw {
        out.push(decoded);
    }
    out
}

/// How the text after `scheme://` starts.
#[derive(Debug, PartialEq, Eq)]
enum Userinfo<'a> {
    /// No credentials.
    None,
    /// Credentials the connector can split: `user[:password]@`, and the
    /// byte length of `user:password@` (the start of the host).
    Split {
        user: &'a str,
        password: Option<&'a str>,
        host_at: usize,
    },
    /// An `@` the connector cannot place: the first `hidden` bytes (up to
    /// and without the last `@`) must all be hidden.
    Unparsable { hidden: usize },
}

/// The start of `after` (the text after `scheme://`, up to where the URL
/// ends) read as the scheme's connector reads it.
fn userinfo<'a>(scheme: &str, after: &'a str) -> Userinfo<'a> {
    let last_at = || {
        after
            .rfind('@')
            .map(|hidden| Userinfo::Unparsable { hidden })
    };
    if is_postgres_scheme(scheme) {
        let Some(credentials) = postgres_credentials(after) else {
            return Userinfo::None;
        };
        // A host never holds an `@`: the password had a raw one.
        let host = &credentials.rest[..credentials
            .rest
            .find(['/', '?'])
            .unwrap_or(credentials.rest.len())];
        if host.contains('@') {
            return last_at().unwrap_or(Userinfo::None);
        }
        return Userinfo::Split {
            user: credentials.user,
            password: credentials.password,
            host_at: after.len() - credentials.rest.len(),
        };
    }
    // WHATWG: the authority ends at the first `/`, `?`, `#` or `\`; the
    // user-info at its last `@`.
    let end = after.find(['/', '?', '#', '\\']).unwrap_or(after.len());
    let authority = &after[..end];
    if let Some((info, _)) = authority.rsplit_once('@') {
        let (user, password) = match info.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (info, None),
        };
        return Userinfo::Split {
            user,
            password,
            host_at: info.len() + 1,
        };
    }
    // `https://user:pa/ss@host`: `user:pa` is no `host:port`, so the `@`
    // further on ends credentials the parser cut short.
    let port_is_number = authority
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
    if !port_is_number && after[end..].contains('@') {
        return last_at().unwrap_or(Userinfo::None);
    }
    Userinfo::None
}

/// Masks the secrets found by their place in `text`: URL passwords,
/// secret-looking query values and `password=` pairs (any case).
pub fn mask_secrets(text: &str) -> String {
    mask_password_pairs(&mask_url_passwords(text))
}

/// Masks the password of every URL with credentials in `text`, and its
/// secret-looking query values.
pub fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let scheme = &rest[scheme_start..at];
        out.push_str(&rest[..at + 3]);
        let tail = &rest[at + 3..];
        // A URL ends where text around it would: at white space or a quote.
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        mask_url(scheme, &tail[..end], &mut out);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `url`, known to be one URL from end to end (a target's connection
/// string; spaces in it are its own), with its secrets masked.
pub fn mask_whole_url(url: &str) -> String {
    let Some((scheme, after)) = url.split_once("://") else {
        return mask_secrets(url);
    };
    let mut out = format!("{scheme}://");
    mask_url(scheme, after, &mut out);
    mask_password_pairs(&out)
}

/// Appends `after` (a URL after its `scheme://`) to `out`, masked.
fn mask_url(scheme: &str, after: &str, out: &mut String) {
    let rest = match userinfo(scheme, after) {
        Userinfo::None => after,
        Userinfo::Split {
            user,
            password,
            host_at,
        } => {
            out.push_str(user);
            if let Some(password) = password {
                out.push(':');
                out.push_str(if password.is_empty() { "" } else { MASK });
            }
            out.push('@');
            &after[host_at..]
        }
        Userinfo::Unparsable { hidden } => {
            out.push_str(MASK);
            &after[hidden..]
        }
    };
    match rest.find('?') {
        Some(q) => {
            out.push_str(&rest[..=q]);
            mask_query(&rest[q + 1..], out);
        }
        None => out.push_str(rest),
    }
}

/// Appends a query string to `out` with the values of secret-looking keys
/// masked; a `#fragment` is kept as it is.
fn mask_query(query: &str, out: &mut String) {
    let (query, fragment) = match query.find('#') {
        Some(at) => query.split_at(at),
        None => (query, ""),
    };
    for (i, segment) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match segment.split_once('=') {
            Some((key, value)) if secret_key(key) && !value.is_empty() => {
                out.push_str(key);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(segment),
        }
    }
    out.push_str(fragment);
}

/// Whether a query key names a secret: `token`, `access_token`, `api_key`,
/// `password`, `secret`, `sig`, `X-Amz-Signature`, `X-Amz-Credential`, …
fn secret_key(key: &str) -> bool {
    let key = percent_decode(key).to_ascii_lowercase();
    const PARTS: [&str; 7] = [
        "password",
        "passwd",
        "token",
        "secret",
        "signature",
        "credential",
        "auth",
    ];
    PARTS.iter().any(|part| key.contains(part))
        || (key.ends_with("key") && key != "sslkey")
        || matches!(key.as_str(), "sig" | "pwd" | "pass")
}

/// `password=value` (and `PASSWORD=`, `PGPASSWORD=`, `db_passwd = 'a b'`)
/// with the value masked; a quoted value is one value, spaces and `\'`
/// included.
fn mask_password_pairs(text: &str) -> String {
    static PAIR: OnceLock<regex::Regex> = OnceLock::new();
    let pair = PAIR.get_or_init(|| {
        regex::Regex::new(
            r#"(?i)\b([a-z0-9_]*passw(?:or)?d)\s*=\s*(?:'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|[^\s&'"]+)"#,
        )
        .expect("valid pattern")
    });
    pair.replace_all(text, format!("${{1}}={MASK}"))
        .into_owned()
}

/// `%XX` escapes decoded; anything else (a lone `%`) kept as it is; bytes
/// that are not UTF-8 replaced.
pub fn percent_decode(text: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(text)).into_owned()
}

/// The bytes `text` stands for: `%XX` escapes decoded, anything else (a
/// lone `%`) kept as it is.
pub fn percent_decode_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Whether a secret sent to `url` travels in the clear to another machine:
/// plain `http://` to anything but this machine (`localhost`, `127.0.0.1`,
/// `[::1]`). Anything else — https, ssh, a path — is not exposed by the
/// URL's scheme.
pub fn exposed_in_transit(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    !matches!(host, "localhost" | "127.0.0.1" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_goes_over_plain_http_only_to_this_machine() {
        let encrypted = |url| !exposed_in_transit(url);
        assert!(encrypted("https://github.com/org/app.git"));
        assert!(encrypted("ssh://git@github.com/org/app.git"));
        assert!(encrypted("http://127.0.0.1:8080/org/app.git"));
        assert!(encrypted("http://user@localhost/app.git"));
        assert!(encrypted("http://[::1]:80/app.git"));
        assert!(!encrypted("http://git.example.org/org/app.git"));
        assert!(!encrypted("http://127.0.0.1.example.org/app.git"));
        assert!(!encrypted("http://localhost@git.example.org/app.git"));
    }

    #[test]
    fn masks_url_passwords_and_known_secrets() {
        let r = Redactor::new(["hunter22".to_string()]);
        assert_eq!(
            r.redact("connect postgres://app:pa55word@db:5432/app failed; token hunter22"),
            "connect postgres://app:***@db:5432/app failed; token ***"
        );
        assert_eq!(r.redact("postgres://app@db/app"), "postgres://app@db/app");
    }

    #[test]
    fn finds_url_password() {
        assert_eq!(url_password("postgres://u:p%40ss@h/db"), Some("p%40ss"));
        assert_eq!(url_password("postgres://u@h/db"), None);
        assert_eq!(
            url_secrets("postgres://u:p%40ss@h/db"),
            ["p%40ss".to_string(), "p@ss".to_string()]
        );
    }

    /// The connector takes the credentials up to the first `@`, whatever
    /// comes before it; so does the mask.
    #[test]
    fn raw_hash_question_mark_and_slash_are_part_of_a_postgres_password() {
        for (password, url) in [
            ("pa#ss", "postgres://app:pa#ss@db:5432/app"),
            ("pa?ss", "postgres://app:pa?ss@db:5432/app?sslmode=disable"),
            ("pa/ss", "postgresql://app:pa/ss@db/app"),
            ("p:a/s?s#x", "postgres://app:p:a/s?s#x@db/app"),
        ] {
            assert_eq!(url_password(url), Some(password), "{url}");
            let masked = mask_url_passwords(&format!("could not connect ({url}): refused"));
            assert!(!masked.contains(password), "{masked}");
            assert!(masked.contains("app:***@db"), "{masked}");
        }
        assert_eq!(
            mask_url_passwords("postgres://app:a?b/c@db:5432/app?sslmode=require"),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
    }

    #[test]
    fn an_at_sign_the_connector_cannot_place_hides_everything_up_to_the_last_one() {
        // The connector reads the host as `w@db`: no URL it can use.
        assert_eq!(
            mask_url_passwords("(postgres://u:p#a?s/s@w@db/app) failed"),
            "(postgres://***@db/app) failed"
        );
        assert_eq!(url_password("postgres://u:p#a?s/s@w@db/app"), None);
        assert_eq!(
            url_secrets("postgres://u:p#a?s/s@w0rd@db/app"),
            ["u:p#a?s/s@w0rd", "p#a?s/s@w0rd", "w0rd"]
        );
        // An `https` URL whose `user:pa` is no `host:port`.
        assert_eq!(
            mask_url_passwords("GET https://user:pa/ss@example.org/x"),
            "GET https://***@example.org/x"
        );
        assert_eq!(
            mask_url_passwords("https://u:p#x@example.org/"),
            "https://***@example.org/"
        );
        // A port and an `@` further on are not credentials.
        assert_eq!(
            mask_url_passwords("https://example.org:8443/@team"),
            "https://example.org:8443/@team"
        );
        // Masking twice changes nothing more.
        let once = mask_url_passwords("postgres://u:p@w@db/app");
        assert_eq!(mask_url_passwords(&once), once);
    }

    #[test]
    fn whatwg_urls_split_at_the_last_at_of_the_authority() {
        assert_eq!(
            mask_url_passwords("https://bot:s3@cret@hooks.example.org/x"),
            "https://bot:***@hooks.example.org/x"
        );
        assert_eq!(
            url_password("s3://key:s3@cret@minio:9000/bucket"),
            Some("s3@cret")
        );
    }

    #[test]
    fn secret_query_values_are_masked() {
        assert_eq!(
            mask_secrets("GET https://staging.example.org/health?token=abc123&page=2#top: 503"),
            "GET https://staging.example.org/health?token=***&page=2#top: 503"
        );
        assert_eq!(
            mask_secrets("https://x.org/?access_token=a&API_KEY=b&X-Amz-Signature=c&sig=d&q=e"),
            "https://x.org/?access_token=***&API_KEY=***&X-Amz-Signature=***&sig=***&q=e"
        );
        assert_eq!(
            mask_secrets("postgres://app@db/app?sslmode=require&password=s3cret"),
            "postgres://app@db/app?sslmode=require&password=***"
        );
    }

    #[test]
    fn password_pairs_are_masked_in_any_case() {
        assert_eq!(
            mask_secrets("host=db PASSWORD=s3cret dbname=app"),
            "host=db PASSWORD=*** dbname=app"
        );
        assert_eq!(
            mask_secrets("env: PGPASSWORD=s3cret DB_Passwd = 'a b\\'c' PWD=/home/x"),
            "env: PGPASSWORD=*** DB_Passwd=*** PWD=/home/x"
        );
        assert_eq!(mask_secrets("password=***"), "password=***");
    }

    #[test]
    fn added_secrets_are_masked_with_the_old_ones() {
        let r = Redactor::new(["hunter22".to_string()]).with_secrets(["T000/B000/XXXX".into()]);
        assert_eq!(
            r.redact("hunter22: no such hook T000/B000/XXXX"),
            "***: no such hook ***"
        );
    }
}
