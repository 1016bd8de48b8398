//! The two forms of a PostgreSQL connection string, each read in one place
//! and as the connector (tokio-postgres) reads it:
//!
//! - the URL form, `postgres://user:password@host/db?key=value`: its scheme
//!   here, its credentials by [`postgres_credentials`] (shared with the
//!   redactor, which must find the same password);
//! - the key=value form, `host=db password='a b'`: [`key_value_pairs`].
//!
//! Pure string functions: what the keys mean is for the callers
//! (`pg::url`, `pg::connect::params`).

use std::iter::Peekable;
use std::ops::Range;
use std::str::CharIndices;

use crate::redact::postgres_credentials;

/// The text after `postgres://` or `postgresql://`; `None` for the
/// key=value form.
pub fn url_after_scheme(conn: &str) -> Option<&str> {
    conn.strip_prefix("postgres://")
        .or_else(|| conn.strip_prefix("postgresql://"))
}

/// The byte length of `user:password@` at the start of `after_scheme`
/// (0 without credentials): the credentials run to the first `@`, so a `?`
/// or `/` in a password is not taken for the path or the query.
pub fn credentials_len(after_scheme: &str) -> usize {
    postgres_credentials(after_scheme).map_or(0, |c| after_scheme.len() - c.rest.len())
}

/// One `key = value` of the key=value form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: String,
    /// Unquoted and unescaped.
    pub value: String,
    /// Where the pair is written, from its key to the end of its value.
    pub span: Range<usize>,
}

/// Why a key=value string cannot be read; each names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxError {
    MissingEquals { key: String },
    MissingValue { key: String },
    UnterminatedQuote { key: String },
}

/// The pairs of a key=value string, read as tokio-postgres reads them:
/// `key = value`, values either bare (ending at whitespace) or in single
/// quotes, with `\` escaping the next character in both. The first syntax
/// error is the last item.
pub fn key_value_pairs(dsn: &str) -> impl Iterator<Item = Result<Pair, SyntaxError>> + '_ {
    let mut chars = dsn.char_indices().peekable();
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let pair = next_pair(dsn, &mut chars);
        failed = matches!(pair, Some(Err(_)));
        pair
    })
}

fn next_pair(
    dsn: &str,
    chars: &mut Peekable<CharIndices<'_>>,
) -> Option<Result<Pair, SyntaxError>> {
    let skip_whitespace = |chars: &mut Peekable<CharIndices<'_>>| {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    skip_whitespace(chars);
    let &(start, _) = chars.peek()?;
    let mut key = String::new();
    while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
        key.push(c);
    }
    skip_whitespace(chars);
    if chars.next_if(|(_, c)| *c == '=').is_none() {
        return Some(Err(SyntaxError::MissingEquals { key }));
    }
    skip_whitespace(chars);
    let mut value = String::new();
    if chars.next_if(|(_, c)| *c == '\'').is_some() {
        loop {
            match chars.next() {
                Some((_, '\'')) => break,
                Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                Some((_, c)) => value.push(c),
                None => return Some(Err(SyntaxError::UnterminatedQuote { key })),
            }
        }
    } else {
        while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
            if c == '\\' {
                value.extend(chars.next().map(|(_, c)| c));
            } else {
                value.push(c);
            }
        }
        if value.is_empty() {
            return Some(Err(SyntaxError::MissingValue { key }));
        }
    }
    let end = chars.peek().map_or(dsn.len(), |&(at, _)| at);
    Some(Ok(Pair {
        key,
        value,
        span: start..end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(dsn: &str) -> Vec<Result<(String, String), SyntaxError>> {
        key_value_pairs(dsn)
            .map(|p| p.map(|p| (p.key, p.value)))
            .collect()
    }

    #[test]
    fn bare_and_quoted_values_with_escapes() {
        let dsn = r"host=/tmp  dbname = 'my db' password='a\'b' user=a\ b";
        assert_eq!(
            pairs(dsn),
            [
                Ok(("host".into(), "/tmp".into())),
                Ok(("dbname".into(), "my db".into())),
                Ok(("password".into(), "a'b".into())),
                Ok(("user".into(), "a b".into())),
            ]
        );
        let spans: Vec<_> = key_value_pairs(dsn)
            .map(|p| &dsn[p.unwrap().span])
            .collect();
        assert_eq!(
            spans,
            [
                "host=/tmp",
                "dbname = 'my db'",
                r"password='a\'b'",
                r"user=a\ b"
            ]
        );
    }

    #[test]
    fn the_first_syntax_error_ends_the_pairs() {
        assert_eq!(
            pairs("host=db sslmode port=1"),
            [
                Ok(("host".into(), "db".into())),
                Err(SyntaxError::MissingEquals {
                    key: "sslmode".into()
                }),
            ]
        );
        assert_eq!(
            pairs("dbname='x"),
            [Err(SyntaxError::UnterminatedQuote {
                key: "dbname".into()
            })]
        );
    }

    #[test]
    fn credentials_end_at_the_first_at_sign() {
        assert_eq!(credentials_len("app:a?b/c@db/x"), "app:a?b/c@".len());
        assert_eq!(credentials_len("db/x"), 0);
        assert_eq!(url_after_scheme("postgresql://h/db"), Some("h/db"));
        assert_eq!(url_after_scheme("host=h"), None);
    }
}
