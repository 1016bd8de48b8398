//! The TLS settings of a connection string — `sslmode`, `sslrootcert`,
//! `sslcert`, `sslkey` — read as libpq reads them, and the same string with
//! those keys taken out for `tokio_postgres::Config`, which knows only part
//! of `sslmode` (no `allow`, no `verify-*`) and none of the others. Both the
//! URL form (`postgres://…?sslmode=…`, percent-encoded) and the key=value
//! form (`host=… sslmode='…'`) are handled, each read by
//! [`crate::pg::conninfo`]; every other part of the string is passed on
//! byte for byte.
//!
//! Pure: reads no files and opens no sockets (that is [`super::tls`]'s job).

use std::fmt;
use std::path::PathBuf;

use crate::pg::conninfo::{SyntaxError, credentials_len, key_value_pairs, url_after_scheme};
use crate::redact::percent_decode;

/// The keys this module takes out of a connection string.
const SSL_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// libpq's `sslmode`, all six of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// Plain text; TLS only if the server refuses a plain connection.
    Allow,
    /// TLS if the server offers it, else plain text (libpq's default).
    Prefer,
    /// TLS; the certificate is checked only when `sslrootcert` is given.
    Require,
    /// TLS; the certificate must be signed by a trusted CA.
    VerifyCa,
    /// TLS; trusted CA, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is an error.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    fn parse(value: &str) -> Result<SslMode, ParamError> {
        SslMode::ALL
            .into_iter()
            .find(|mode| mode.name() == value)
            .ok_or_else(|| ParamError::UnknownMode {
                value: value.to_string(),
                suggestion: SslMode::ALL
                    .into_iter()
                    .map(SslMode::name)
                    .filter(|name| strsim::levenshtein(name, &value.to_lowercase()) <= 2)
                    .min_by_key(|name| strsim::levenshtein(name, &value.to_lowercase())),
            })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the CA certificates that sign a server's certificate come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// `sslrootcert=<path>`: a PEM file of one or more CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`, or a verifying mode without `sslrootcert`: the
    /// public web CAs compiled in from `webpki-roots`.
    System,
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Nothing (the handshake signature still is).
    None,
    /// Signed, through its chain, by a trusted CA, and in its validity period.
    Chain,
    /// [`Verification::Chain`], and it names the host connected to.
    ChainAndHostName,
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslSettings {
    pub mode: SslMode,
    /// As given; `None` when `sslrootcert` is absent or empty.
    pub root_cert: Option<RootCerts>,
    /// `sslcert` and `sslkey`: a client certificate (PEM) and its key. Both
    /// or neither.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl SslSettings {
    /// What libpq checks: `verify-full` everything, `verify-ca` the chain, and
    /// the weaker modes the chain too when `sslrootcert` is given.
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::VerifyFull => Verification::ChainAndHostName,
            SslMode::VerifyCa => Verification::Chain,
            _ if self.root_cert.is_some() => Verification::Chain,
            _ => Verification::None,
        }
    }

    /// The CAs to check against: `sslrootcert`, else the system roots.
    pub fn roots(&self) -> RootCerts {
        self.root_cert.clone().unwrap_or(RootCerts::System)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error(
        "unknown sslmode `{value}`: expected one of disable, allow, prefer, require, verify-ca, \
         verify-full{}",
        .suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    UnknownMode {
        value: String,
        suggestion: Option<&'static str>,
    },

    #[error(
        "sslmode={mode} may not be used with sslrootcert=system: the system CAs sign \
         certificates for any host name, so use sslmode=verify-full"
    )]
    WeakModeWithSystemRoots { mode: SslMode },

    #[error(
        "{given} is given without {missing}: a client certificate needs both sslcert and sslkey"
    )]
    HalfClientCert {
        given: &'static str,
        missing: &'static str,
    },

    #[error("missing `=` after `{key}`")]
    MissingEquals { key: String },

    #[error("missing value for `{key}`")]
    MissingValue { key: String },

    #[error("unterminated quoted value for `{key}`")]
    UnterminatedQuote { key: String },
}

/// `conn` without its `password` parameter (`?password=` of a URL, or the
/// `password=` pair of a key=value string) and the password, for passing it
/// to a program by environment instead of on its command line. The password
/// in a URL's user-info is left for the caller (see `pg::schema`).
pub fn take_password(conn: &str) -> (String, Option<String>) {
    let (taken, rest) = match url_after_scheme(conn) {
        Some(after_scheme) => split_url(conn, conn.len() - after_scheme.len(), &["password"]),
        None => match split_key_values(conn, &["password"]) {
            Ok(split) => split,
            Err(_) => return (conn.to_string(), None),
        },
    };
    let password = taken.into_iter().next_back().map(|(_, v)| v);
    (rest, password)
}

/// Splits `conn` into its TLS settings and the rest of the string, for
/// `tokio_postgres::Config`.
pub fn split(conn: &str) -> Result<(SslSettings, String), ParamError> {
    let (taken, rest) = match url_after_scheme(conn) {
        Some(after_scheme) => split_url(conn, conn.len() - after_scheme.len(), &SSL_KEYS),
        None => split_key_values(conn, &SSL_KEYS)?,
    };
    Ok((settings(&taken)?, rest))
}

/// The settings from the taken `(key, value)` pairs; the last of a key wins,
/// an empty value is the same as none.
fn settings(taken: &[(String, String)]) -> Result<SslSettings, ParamError> {
    let get = |key: &str| {
        taken
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let mode = get("sslmode").map(SslMode::parse).transpose()?;
    let root_cert = get("sslrootcert").map(|value| match value {
        "system" => RootCerts::System,
        path => RootCerts::File(PathBuf::from(path)),
    });
    // As libpq 16: the system roots make `verify-full` the default, and
    // anything weaker an error (any public CA would do for any host).
    let mode = match (mode, &root_cert) {
        (None, Some(RootCerts::System)) => SslMode::VerifyFull,
        (Some(mode), Some(RootCerts::System)) if mode != SslMode::VerifyFull => {
            return Err(ParamError::WeakModeWithSystemRoots { mode });
        }
        (mode, _) => mode.unwrap_or(SslMode::Prefer),
    };
    let client_cert = match (get("sslcert"), get("sslkey")) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ParamError::HalfClientCert {
                given: "sslcert",
                missing: "sslkey",
            });
        }
        (None, Some(_)) => {
            return Err(ParamError::HalfClientCert {
                given: "sslkey",
                missing: "sslcert",
            });
        }
    };
    Ok(SslSettings {
        mode,
        root_cert,
        client_cert,
    })
}

/// The URL form. The query starts at the first `?` after the credentials
/// ([`credentials_len`]), as tokio-postgres reads it.
fn split_url(url: &str, scheme_len: usize, keys: &[&str]) -> (Vec<(String, String)>, String) {
    let after_credentials = scheme_len + credentials_len(&url[scheme_len..]);
    let Some(question) = url[after_credentials..].find('?') else {
        return (Vec::new(), url.to_string());
    };
    let (base, query) = url.split_at(after_credentials + question);
    let query = &query[1..];

    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for segment in query.split('&') {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        let key = percent_decode(key);
        if keys.contains(&key.as_str()) {
            taken.push((key, percent_decode(value)));
        } else {
            kept.push(segment);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (taken, rest)
}

/// The key=value form ([`key_value_pairs`]); kept pairs are passed on
/// verbatim.
fn split_key_values(
    dsn: &str,
    keys: &[&str],
) -> Result<(Vec<(String, String)>, String), ParamError> {
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for pair in key_value_pairs(dsn) {
        let pair = pair?;
        if keys.contains(&pair.key.as_str()) {
            taken.push((pair.key, pair.value));
        } else {
            kept.push(&dsn[pair.span]);
        }
    }
    Ok((taken, kept.join(" ")))
}

impl From<SyntaxError> for ParamError {
    fn from(error: SyntaxError) -> Self {
        match error {
            SyntaxError::MissingEquals { key } => ParamError::MissingEquals { key },
            SyntaxError::MissingValue { key } => ParamError::MissingValue { key },
            SyntaxError::UnterminatedQuote { key } => ParamError::UnterminatedQuote { key },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Option<RootCerts> {
        Some(RootCerts::File(PathBuf::from(path)))
    }

    #[test]
    fn passwords_are_taken_out_of_both_forms() {
        assert_eq!(
            take_password("host=db password='a b\\'c' dbname=app"),
            ("host=db dbname=app".to_string(), Some("a b'c".to_string()))
        );
        assert_eq!(
            take_password("postgres://app@db/app?password=p%40ss&sslmode=require"),
            (
                "postgres://app@db/app?sslmode=require".to_string(),
                Some("p@ss".to_string())
            )
        );
        assert_eq!(
            take_password("host=db dbname=app"),
            ("host=db dbname=app".to_string(), None)
        );
    }

    #[test]
    fn url_form_takes_the_ssl_keys_out_and_keeps_the_rest() {
        let (ssl, rest) = split(
            "postgres://app:p%40ss@db:5432/app?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%20bundle.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(ssl.mode, SslMode::VerifyFull);
        assert_eq!(ssl.root_cert, file("/etc/ca bundle.pem"));
        assert_eq!(ssl.verification(), Verification::ChainAndHostName);
        assert_eq!(
            rest,
            "postgres://app:p%40ss@db:5432/app?application_name=x&connect_timeout=5"
        );
    }

    #[test]
    fn url_form_without_other_parameters_loses_the_question_mark() {
        let (ssl, rest) = split("postgresql://db/app?sslmode=require").unwrap();
        assert_eq!(ssl.mode, SslMode::Require);
        assert_eq!(rest, "postgresql://db/app");
    }

    #[test]
    fn a_question_mark_in_the_password_is_not_the_query() {
        let url = "postgres://app:a?sslmode=disable@db/app?sslmode=require";
        let (ssl, rest) = split(url).unwrap();
        assert_eq!(ssl.mode, SslMode::Require);
        assert_eq!(rest, "postgres://app:a?sslmode=disable@db/app");
    }

    #[test]
    fn urls_without_ssl_keys_pass_unchanged() {
        for url in [
            "postgres://db/app",
            "postgres://u:pw@db:5432/app?host=%2Frun%2Fpostgresql&options=-c%20x%3D1",
            "postgresql:///app?host=/tmp",
        ] {
            let (ssl, rest) = split(url).unwrap();
            assert_eq!(rest, url);
            assert_eq!(ssl.mode, SslMode::Prefer, "libpq's default");
            assert_eq!(ssl.verification(), Verification::None);
        }
    }

    #[test]
    fn percent_encoded_keys_are_recognised() {
        let (ssl, rest) = split("postgres://db/app?ssl%6Dode=disable").unwrap();
        assert_eq!(ssl.mode, SslMode::Disable);
        assert_eq!(rest, "postgres://db/app");
    }

    #[test]
    fn key_value_form_takes_the_ssl_keys_out_and_keeps_the_rest_verbatim() {
        let (ssl, rest) = split(
            "host=db  dbname='my app' sslmode = verify-ca password='it\\'s'\n\
             sslrootcert='/etc/my certs/ca.pem' sslcert=/c.pem sslkey=/k\\ ey.pem port=5433",
        )
        .unwrap();
        assert_eq!(ssl.mode, SslMode::VerifyCa);
        assert_eq!(ssl.root_cert, file("/etc/my certs/ca.pem"));
        assert_eq!(
            ssl.client_cert,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k ey.pem")))
        );
        assert_eq!(ssl.verification(), Verification::Chain);
        assert_eq!(rest, "host=db dbname='my app' password='it\\'s' port=5433");
    }

    #[test]
    fn key_value_syntax_errors_name_the_key() {
        assert_eq!(
            split("host=db sslrootcert='/x").unwrap_err(),
            ParamError::UnterminatedQuote {
                key: "sslrootcert".into()
            }
        );
        assert_eq!(
            split("host=db sslmode").unwrap_err().to_string(),
            "missing `=` after `sslmode`"
        );
        assert_eq!(
            split("host=db sslmode=").unwrap_err().to_string(),
            "missing value for `sslmode`"
        );
    }

    #[test]
    fn require_with_a_root_certificate_checks_the_chain() {
        let (ssl, _) = split("postgres://db/app?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(ssl.verification(), Verification::Chain);
        let (ssl, _) = split("postgres://db/app?sslmode=require").unwrap();
        assert_eq!(ssl.verification(), Verification::None);
        let (ssl, _) = split("postgres://db/app?sslmode=verify-ca&sslrootcert=").unwrap();
        assert_eq!((ssl.root_cert, ssl.mode), (None, SslMode::VerifyCa));
    }

    #[test]
    fn the_last_value_of_a_key_wins() {
        let (ssl, _) = split("postgres://db/app?sslmode=disable&sslmode=require").unwrap();
        assert_eq!(ssl.mode, SslMode::Require);
    }

    #[test]
    fn system_roots_mean_verify_full() {
        let (ssl, _) = split("postgres://db/app?sslrootcert=system").unwrap();
        assert_eq!(
            (ssl.mode, ssl.roots()),
            (SslMode::VerifyFull, RootCerts::System)
        );
        assert_eq!(
            split("host=db sslrootcert=system sslmode=require")
                .unwrap_err()
                .to_string(),
            "sslmode=require may not be used with sslrootcert=system: the system CAs sign \
             certificates for any host name, so use sslmode=verify-full"
        );
    }

    #[test]
    fn unknown_modes_list_the_accepted_ones() {
        assert_eq!(
            split("postgres://db/app?sslmode=verify_full")
                .unwrap_err()
                .to_string(),
            "unknown sslmode `verify_full`: expected one of disable, allow, prefer, require, \
             verify-ca, verify-full (did you mean `verify-full`?)"
        );
        assert_eq!(
            split("sslmode=on").unwrap_err().to_string(),
            "unknown sslmode `on`: expected one of disable, allow, prefer, require, verify-ca, \
             verify-full"
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        assert_eq!(
            split("postgres://db/app?sslcert=c.pem")
                .unwrap_err()
                .to_string(),
            "sslcert is given without sslkey: a client certificate needs both sslcert and sslkey"
        );
    }
}
