//! The one call flightpath makes to Heroku's Platform API: an app's config
//! vars (`GET /apps/{app}/config-vars`), with the key from `HEROKU_API_KEY`.
//! Throttling (429), server errors and dropped connections are retried
//! twice with a growing delay; every other failure is an error that says
//! what to do, and never holds the key or a config value.

use std::collections::BTreeMap;
use std::time::Duration;

/// Where the API is (`FLIGHTPATH_HEROKU_API_URL` points elsewhere, for a
/// proxy or a test server).
pub const DEFAULT_BASE: &str = "https://api.heroku.com";
pub const KEY_VAR: &str = "HEROKU_API_KEY";
pub const BASE_VAR: &str = "FLIGHTPATH_HEROKU_API_URL";

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HerokuError {
    #[error(
        "`{KEY_VAR}` is not set, and flightpath needs it to read the config vars of Heroku \
         app `{app}`: create a key with `heroku authorizations:create` and export it (in \
         GitHub Actions, pass it from a secret in `env:`)"
    )]
    NoKey { app: String },
    #[error(
        "Heroku refused the API key reading app `{app}` (401): the key in `{KEY_VAR}` is \
         wrong, expired or revoked; create a new one with `heroku authorizations:create`"
    )]
    Unauthorized { app: String },
    #[error(
        "Heroku would not show the config vars of app `{app}` to this key (403): {message}; \
         the key's account needs access to the app's config vars"
    )]
    Forbidden { app: String, message: String },
    #[error(
        "no Heroku app `{app}` (404): check the name with `heroku apps`; an app of an \
         account or team the key cannot see is not found either"
    )]
    NotFound { app: String },
    #[error("Heroku answered {status} reading app `{app}`: {message}")]
    Status {
        app: String,
        status: u16,
        message: String,
    },
    #[error("could not reach Heroku's API at {base} for app `{app}`: {why}")]
    Request {
        app: String,
        base: String,
        why: String,
    },
    #[error("Heroku's answer for app `{app}` is not a map of config vars: {why}")]
    BadResponse { app: String, why: String },
    #[error("app `{app}` has no config var `{var}`: {hint}")]
    MissingVar {
        app: String,
        var: String,
        hint: String,
    },
    #[error("config var `{var}` of app `{app}` is not {what}")]
    NotAUrl {
        app: String,
        var: String,
        what: &'static str,
    },
}

/// One app's config vars. Debug never shows a value.
#[derive(Clone, Default)]
pub struct ConfigVars(BTreeMap<String, String>);

impl std::fmt::Debug for ConfigVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl ConfigVars {
    pub fn new(vars: BTreeMap<String, String>) -> Self {
        ConfigVars(vars)
    }

    /// The value of `var`, which must be set and not empty.
    pub fn get(&self, app: &str, var: &str, hint: &str) -> Result<&str, HerokuError> {
        self.0
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| HerokuError::MissingVar {
                app: app.to_string(),
                var: var.to_string(),
                hint: hint.replace("APP", app),
            })
    }
}

/// The API as this process sees it: base URL and key. The HTTP client
/// (and its TLS roots) is made only when an app is asked for.
#[derive(Clone)]
pub struct Api {
    base: String,
    key: Option<String>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Api {
    /// From `HEROKU_API_KEY` and `FLIGHTPATH_HEROKU_API_URL`.
    pub fn from_env() -> Self {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        Api::new(
            var(BASE_VAR).unwrap_or_else(|| DEFAULT_BASE.to_string()),
            var(KEY_VAR),
        )
    }

    pub fn new(base: String, key: Option<String>) -> Self {
        Api {
            base: base.trim_end_matches('/').to_string(),
            key: key.map(|k| k.trim().to_string()),
        }
    }

    /// The key, to be masked like every resolved value.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// `GET /apps/{app}/config-vars`.
    pub async fn config_vars(&self, app: &str) -> Result<ConfigVars, HerokuError> {
        let key = self.key.as_deref().ok_or_else(|| HerokuError::NoKey {
            app: app.to_string(),
        })?;
        if !sends_keys_safely(&self.base) {
            return Err(HerokuError::Request {
                app: app.to_string(),
                base: self.base.clone(),
                why: format!(
                    "the key would travel unencrypted; `{BASE_VAR}` must be an https:// URL \
                     (or http:// to this machine, 127.0.0.1 or localhost)"
                ),
            });
        }
        let url = format!("{}/apps/{app}/config-vars", self.base);
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("flightpath/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| self.request_error(app, &e))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = client
                .get(&url)
                .header("Accept", "application/vnd.heroku+json; version=3")
                .bearer_auth(key)
                .send()
                .await;
            let retry = match sent {
                Ok(response) if response.status().is_success() => {
                    let body = response
                        .bytes()
                        .await
                        .map_err(|e| self.request_error(app, &e))?;
                    return parse_vars(app, &body);
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let message = error_message(&response.bytes().await.unwrap_or_default());
                    let error = match status {
                        401 => HerokuError::Unauthorized { app: app.into() },
                        403 => HerokuError::Forbidden {
                            app: app.into(),
                            message,
                        },
                        404 => HerokuError::NotFound { app: app.into() },
                        _ => HerokuError::Status {
                            app: app.into(),
                            status,
                            message,
                        },
                    };
                    if status != 429 && status < 500 {
                        return Err(error);
                    }
                    error
                }
                Err(e) => self.request_error(app, &e),
            };
            if attempt >= ATTEMPTS {
                return Err(retry);
            }
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }

    fn request_error(&self, app: &str, e: &reqwest::Error) -> HerokuError {
        use std::error::Error as _;
        let mut why = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            why = format!("{why}: {cause}");
            source = cause.source();
        }
        // reqwest names the URL, which holds nothing secret; the key is a
        // header and never part of an error.
        HerokuError::Request {
            app: app.to_string(),
            base: self.base.clone(),
            why: crate::redact::mask_secrets(&why),
        }
    }
}

/// Whether the API key may be sent to `base`: over TLS, or to this machine
/// ([`crate::redact::exposed_in_transit`] says which `http://` is which).
fn sends_keys_safely(base: &str) -> bool {
    let lower = base.to_ascii_lowercase();
    lower.starts_with("https://")
        || (lower.starts_with("http://") && !crate::redact::exposed_in_transit(base))
}

/// The config vars of a successful answer: a JSON object of strings.
fn parse_vars(app: &str, body: &[u8]) -> Result<ConfigVars, HerokuError> {
    let bad = |why: String| HerokuError::BadResponse {
        app: app.to_string(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("not JSON ({e})")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad("not a JSON object".into()));
    };
    let vars = map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect();
    Ok(ConfigVars(vars))
}

/// The `message` of Heroku's error body (`{"id": …, "message": …}`),
/// masked, on one line without control characters (it is printed, and
/// under GitHub Actions a line can be a workflow command), at most 300
/// characters; or a short note when there is none. Never the body itself.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .map(|m| {
            let line: String = m
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(300)
                .collect();
            crate::redact::mask_secrets(line.trim().trim_start_matches(':'))
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "no message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_string_values_are_config_vars() {
        let vars = parse_vars("a", br#"{"A": "1", "B": null, "C": 2}"#).unwrap();
        assert_eq!(vars.get("a", "A", "").unwrap(), "1");
        assert!(vars.get("a", "B", "").is_err());
        assert!(format!("{vars:?}").contains('A') && !format!("{vars:?}").contains('1'));
        assert!(matches!(
            parse_vars("a", b"[]"),
            Err(HerokuError::BadResponse { .. })
        ));
    }

    #[test]
    fn an_error_body_gives_its_message_only() {
        assert_eq!(
            error_message(br#"{"id":"forbidden","message":"You do not have access."}"#),
            "You do not have access."
        );
        assert_eq!(error_message(b"<html>"), "no message");
        assert_eq!(
            error_message(br#"{"message":"::error::x\n::add-mask::y"}"#),
            "error::x ::add-mask::y"
        );
    }

    #[test]
    fn the_key_goes_only_over_tls_or_to_this_machine() {
        assert!(sends_keys_safely("https://api.heroku.com"));
        assert!(sends_keys_safely("http://127.0.0.1:4321"));
        assert!(sends_keys_safely("http://localhost/api"));
        assert!(!sends_keys_safely("http://api.heroku.com"));
        assert!(!sends_keys_safely("http://127.0.0.1.example.org"));
        assert!(!sends_keys_safely("ftp://127.0.0.1"));
    }

    #[test]
    fn the_key_is_not_in_debug() {
        let api = Api::new("http://x".into(), Some("hrku-secret-key".into()));
        assert!(!format!("{api:?}").contains("hrku-secret-key"));
    }
}
