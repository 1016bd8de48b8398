//! Secret redaction for everything that leaves the process: logs, reports,
//! errors and the journal. Known secret values (passwords from target URLs,
//! values of secret-looking variables) are replaced by `***`, and so is the
//! password part of any `scheme://user:password@host` URL.

use std::sync::Arc;

/// Cheap to clone; shared by the engine, the steps and the renderers.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

pub const MASK: &str = "***";

impl Redactor {
    /// Secrets shorter than 4 characters are ignored: masking every "a" in a
    /// report would hide more than it protects.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    /// Adds the password of `url`, if it has one, and returns the new redactor.
    pub fn with_url_password(self, url: &str) -> Self {
        match url_password(url) {
            Some(password) => {
                let mut all = (*self.secrets).clone();
                all.push(password.to_string());
                Redactor::new(all)
            }
            None => self,
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = mask_url_passwords(text);
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

/// The password in `scheme://user:password@host…`, if any.
pub fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// Masks the password of every URL with credentials in `text`.
pub fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '`'))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let (user, _) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                out.push_str(user);
                out.push(':');
                out.push_str(MASK);
                out.push('@');
                out.push_str(host);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
