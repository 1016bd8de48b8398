//! `http.check`: GETs a URL until it answers with the expected status (and,
//! with `contains`, a body containing that text), retrying with a doubling
//! delay. Every attempt is kept for the report. The plan makes no request.

use std::time::Duration;

use tokio::time::Instant;

use crate::progress::Unit;
use crate::report::model::Detail;
use crate::syntax::diagnostics::Problem;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;

use super::shell::format_duration;
use super::{Kind, StepCtx, StepError, StepOutcome};

/// The longest wait between two attempts (unless `interval` is longer).
const MAX_INTERVAL: Duration = Duration::from_secs(30);

/// How much of a body is searched for `contains`.
const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Params {
    /// The URL to GET.
    pub url: Template,
    /// The expected HTTP status (default 200).
    pub status: u16,
    /// Text the body must contain.
    pub contains: Option<String>,
    /// Attempts after the first (default 0).
    pub retries: u64,
    /// Wait before the first retry; doubles after each, up to 30s (default 2s).
    pub interval: Duration,
    /// Limit for each request (default 10s).
    pub timeout: Duration,
}

impl Kind for Params {
    const NAME: &'static str = "http.check";
    const OUTPUTS: &'static [&'static str] = &["status"];
    const DESTRUCTIVE: bool = false;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        // Read every key before giving up, so each one counts as known.
        let url = with.required_template(cx, "url");
        let status_label = format!("{} `status`", with.what());
        let status = match with.get("status") {
            Some(node) => cx.u64(node, &status_label).and_then(|n| {
                let status = u16::try_from(n).ok().filter(|s| (100..=599).contains(s));
                if status.is_none() {
                    cx.push(
                        Problem::new(
                            "flightpath::http::status",
                            format!("{status_label}: {n} is not an HTTP status"),
                            node.span,
                            "not an HTTP status",
                        )
                        .help("write a status code between 100 and 599, e.g. `200`"),
                    );
                }
                status
            }),
            None => Some(200),
        };
        let contains = with.string(cx, "contains");
        let retries = with.u64(cx, "retries").unwrap_or(0);
        let interval = with
            .duration(cx, "interval")
            .unwrap_or(Duration::from_secs(2));
        let timeout = with
            .duration(cx, "timeout")
            .unwrap_or(Duration::from_secs(10));
        Some(Params {
            url: url?,
            status: status?,
            contains,
            retries,
            interval,
            timeout,
        })
    }

    fn templates(&self) -> Vec<&Template> {
        vec![&self.url]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let url = ctx.redactor.redact(&ctx.preview(&self.url));
        let retries = match self.retries {
            0 => "no retries".to_string(),
            1 => "up to 1 retry".to_string(),
            n => format!("up to {n} retries"),
        };
        Ok(StepOutcome::new(format!(
            "would GET {url} expecting {}, {retries}",
            self.expectation()
        ))
        .detail(Detail::fact(
            "timeout per request",
            format_duration(self.timeout),
        )))
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let url = ctx.render(&self.url)?;
        let shown = ctx.redactor.redact(&url);
        let client = self.client()?;
        let total = self.retries + 1;
        let bar = ctx
            .progress
            .bar(&ctx.step_id, &format!("GET {shown}"), None, Unit::Items);
        let mut attempts: Vec<Attempt> = Vec::new();
        let result = loop {
            let number = attempts.len() as u64 + 1;
            if total > 1 {
                bar.set_message(&format!("GET {shown} (attempt {number}/{total})"));
            }
            let started = Instant::now();
            let result = tokio::select! {
                result = self.attempt(&client, &url) => result,
                _ = ctx.cancel.cancelled() => break Err(StepError::Cancelled),
            };
            attempts.push(Attempt {
                result,
                elapsed: started.elapsed(),
            });
            if matches!(attempts.last(), Some(a) if a.result.is_ok()) || number >= total {
                break Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff(self.interval, number - 1)) => {}
                _ = ctx.cancel.cancelled() => break Err(StepError::Cancelled),
            }
        };
        bar.finish();
        result?;

        let table = attempts_table(&attempts, ctx);
        let count = plural(attempts.len(), "attempt");
        match attempts.last().map(|a| &a.result) {
            Some(Ok(status)) => Ok(StepOutcome::new(format!(
                "GET {shown}: {status}{} after {count}",
                self.contains_note()
            ))
            .output("status", *status)
            .detail(table)),
            Some(Err(last)) => Err(StepError::Failed {
                message: ctx.redactor.redact(&format!(
                    "GET {shown}: expected {}, {} after {count}",
                    self.expectation(),
                    last.got()
                )),
                details: vec![table],
            }),
            None => unreachable!("the loop makes at least one attempt"),
        }
    }
}

impl Params {
    fn client(&self) -> Result<reqwest::Client, StepError> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("flightpath/", env!("CARGO_PKG_VERSION")));
        // Checking for a redirect means looking at it, not following it.
        if (300..400).contains(&self.status) {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        builder
            .build()
            .map_err(|e| StepError::failed(format!("could not create the HTTP client: {e}")))
    }

    /// One GET: `Ok(status)` when status and body match.
    async fn attempt(&self, client: &reqwest::Client, url: &str) -> Result<u16, Miss> {
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| Miss::Error(request_error(&e, self.timeout)))?;
        let status = response.status().as_u16();
        if status != self.status {
            return Err(Miss::Status(status));
        }
        let Some(needle) = &self.contains else {
            return Ok(status);
        };
        let mut body = Vec::new();
        while body.len() < BODY_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err(Miss::Error(request_error(&e, self.timeout))),
            }
        }
        if String::from_utf8_lossy(&body).contains(needle.as_str()) {
            Ok(status)
        } else {
            Err(Miss::Body(status))
        }
    }

    /// `200` or `200 containing "Welcome"`.
    fn expectation(&self) -> String {
        format!("{}{}", self.status, self.contains_note())
    }

    fn contains_note(&self) -> String {
        match &self.contains {
            Some(text) => format!(" containing \"{text}\""),
            None => String::new(),
        }
    }
}

/// One attempt, for the report.
#[derive(Debug)]
struct Attempt {
    result: Result<u16, Miss>,
    elapsed: Duration,
}

/// Why an attempt did not match.
#[derive(Debug, Clone, PartialEq)]
enum Miss {
    Status(u16),
    /// The status matched; the body lacked `contains`.
    Body(u16),
    /// No response: connection refused, timeout…
    Error(String),
}

impl Miss {
    /// The end of "expected 200, …".
    fn got(&self) -> String {
        match self {
            Miss::Status(status) => format!("got {status}"),
            Miss::Body(status) => format!("got {status} without that text"),
            Miss::Error(error) => format!("got no response ({error})"),
        }
    }

    fn cell(&self) -> String {
        match self {
            Miss::Status(status) => status.to_string(),
            Miss::Body(status) => format!("{status} (text not found)"),
            Miss::Error(error) => error.clone(),
        }
    }
}

fn attempts_table(attempts: &[Attempt], ctx: &StepCtx) -> Detail {
    Detail::Table {
        title: "attempts".to_string(),
        columns: vec!["attempt".into(), "result".into(), "elapsed".into()],
        rows: attempts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let result = match &a.result {
                    Ok(status) => status.to_string(),
                    Err(miss) => ctx.redactor.redact(&miss.cell()),
                };
                vec![
                    (i + 1).to_string(),
                    result,
                    format!("{}ms", a.elapsed.as_millis()),
                ]
            })
            .collect(),
    }
}

/// The wait after attempt `retry` (0-based): `interval`, doubling each time,
/// capped at 30s (or at `interval`, when that is longer).
pub fn backoff(interval: Duration, retry: u64) -> Duration {
    let cap = MAX_INTERVAL.max(interval);
    let factor = 1u32.checked_shl(retry.min(31) as u32).unwrap_or(u32::MAX);
    interval.saturating_mul(factor).min(cap)
}

/// A request error as a short phrase ("connection refused"), without the
/// URL: reqwest puts it in its own message, and it may carry a token.
pub(crate) fn request_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("timed out after {}", format_duration(timeout));
    }
    let Some(inner) = std::error::Error::source(err) else {
        let text = err.to_string();
        return match err.url() {
            Some(url) => text.replace(url.as_str(), "<url>"),
            None => text,
        };
    };
    crate::human::innermost_cause(inner)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        let schedule: Vec<u64> = (0..7)
            .map(|i| backoff(Duration::from_secs(2), i).as_secs())
            .collect();
        assert_eq!(schedule, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            backoff(Duration::from_millis(50), 2),
            Duration::from_millis(200)
        );
        assert_eq!(backoff(Duration::from_secs(45), 3), Duration::from_secs(45));
        assert_eq!(
            backoff(Duration::from_secs(1), 1000),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn causes_read_as_phrases() {
        assert_eq!(
            crate::human::as_phrase("Connection refused (os error 111)"),
            "connection refused"
        );
        assert_eq!(
            crate::human::as_phrase("TLS handshake failed"),
            "TLS handshake failed"
        );
    }

    #[test]
    fn misses_read_as_sentences() {
        assert_eq!(Miss::Status(503).got(), "got 503");
        assert_eq!(Miss::Body(200).got(), "got 200 without that text");
        assert_eq!(
            Miss::Error("connection refused".into()).got(),
            "got no response (connection refused)"
        );
    }
}
