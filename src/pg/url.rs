//! Connection strings: which database a URL names, and the same URL pointed
//! at another database on the same server (the clone's new database, the
//! `postgres` maintenance database). Both URL (`postgres://…/db?…`) and
//! key=value (`host=… dbname=…`) forms are handled, each read by
//! [`crate::pg::conninfo`].

use crate::pg::conninfo::{credentials_len, key_value_pairs, url_after_scheme};
use crate::redact::percent_decode;

/// `user:password@host:port/db?query` → (`user:password@`, `host:port/db`,
/// `?query`): the query starts after the credentials
/// ([`credentials_len`]), so a `?` or `/` in a password is not taken for one.
fn url_parts(rest: &str) -> (&str, &str, &str) {
    let (userinfo, after) = rest.split_at(credentials_len(rest));
    let (path, query) = match after.find(['?', '#']) {
        Some(at) => after.split_at(at),
        None => (after, ""),
    };
    (userinfo, path, query)
}

/// The database a connection string names, if it names one.
pub fn database_of(url: &str) -> Option<String> {
    if let Some(rest) = url_after_scheme(url) {
        let (_, path, _) = url_parts(rest);
        let (_, db) = path.split_once('/')?;
        return (!db.is_empty()).then(|| percent_decode(db));
    }
    key_values(url)
        .into_iter()
        .find(|(k, _)| k == "dbname")
        .map(|(_, v)| v)
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    if let Some(rest) = url_after_scheme(url) {
        let scheme = &url[..url.len() - rest.len()];
        let (userinfo, path, query) = url_parts(rest);
        let authority = path.split('/').next().unwrap_or("");
        return format!(
            "{scheme}{userinfo}{authority}/{}{query}",
            percent_encode(database)
        );
    }
    let mut pairs: Vec<(String, String)> = key_values(url)
        .into_iter()
        .filter(|(k, _)| k != "dbname")
        .collect();
    pairs.push(("dbname".into(), database.to_string()));
    pairs
        .iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `(key, value)` pairs of a key=value string, up to the first syntax
/// error ([`key_value_pairs`]).
fn key_values(dsn: &str) -> Vec<(String, String)> {
    key_value_pairs(dsn)
        .map_while(Result::ok)
        .map(|pair| (pair.key, pair.value))
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_mark_or_slash_in_the_password_is_not_the_path_or_query() {
        let url = "postgres://app:a?b/c@db:5432/staging?sslmode=require";
        assert_eq!(database_of(url).as_deref(), Some("staging"));
        assert_eq!(
            with_database(url, "postgres"),
            "postgres://app:a?b/c@db:5432/postgres?sslmode=require"
        );
    }

    #[test]
    fn urls() {
        let url = "postgres://app:pw@db:5432/staging?sslmode=require";
        assert_eq!(database_of(url).as_deref(), Some("staging"));
        assert_eq!(
            with_database(url, "staging_fp new"),
            "postgres://app:pw@db:5432/staging_fp%20new?sslmode=require"
        );
        assert_eq!(
            database_of(&with_database(url, "x y")).as_deref(),
            Some("x y")
        );
        assert_eq!(database_of("postgresql://h"), None);
        assert_eq!(
            with_database("postgresql://h", "postgres"),
            "postgresql://h/postgres"
        );
    }

    #[test]
    fn key_value_strings() {
        let dsn = "host=/tmp port=5433 dbname='my db' user=app";
        assert_eq!(database_of(dsn).as_deref(), Some("my db"));
        assert_eq!(
            with_database(dsn, "postgres"),
            "host='/tmp' port='5433' user='app' dbname='postgres'"
        );
    }
}
