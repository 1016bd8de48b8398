//! `notify`: renders a message about the run so far and sends it to stdout,
//! appends it to a file, or POSTs it to a webhook (Slack-compatible
//! `{"text": …}`).
//!
//! Placeholders `{workflow}`, `{run_id}`, `{status}`, `{summary}` and
//! `{failed}` are filled from the report of the steps finished before this
//! one; `${steps.<id>.<output>}` lists read as prose (`a, b`, or `none`); `{{` and `}}` are literal braces. An unknown placeholder is a
//! validation error. Webhook URLs are secrets: only their scheme and host are
//! ever shown. The plan sends and writes nothing.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::report::model::{Detail, Report, StepReport, StepStatus};
use crate::syntax::diagnostics::Problem;
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;
use crate::syntax::yaml::Span;

use super::http_check::request_error;
use super::{Kind, StepCtx, StepError, StepOutcome};

/// The placeholders a message may use.
pub const PLACEHOLDERS: &[&str] = &["workflow", "run_id", "status", "summary", "failed"];

/// Limit for the webhook request.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a webhook's error response is shown.
const ERROR_BODY_CHARS: usize = 200;

#[derive(Debug, Clone)]
pub struct Params {
    /// The message; may use `${steps.<id>.<output>}` and `{summary}`-style
    /// placeholders.
    pub message: Template,
    /// `stdout` (default), a file path (appended to), or an `http(s)://`
    /// webhook URL.
    pub to: Template,
}

impl Kind for Params {
    const NAME: &'static str = "notify";
    const OUTPUTS: &'static [&'static str] = &[];
    const DESTRUCTIVE: bool = false;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        // Read every key before giving up, so each one counts as known.
        let message_node = with.require(cx, "message");
        let message_label = format!("{} `message`", with.what());
        let message = message_node.and_then(|node| cx.template(node, &message_label));
        let to = with
            .template(cx, "to")
            .unwrap_or_else(|| Template::literal("stdout"));
        let (message, node) = (message?, message_node?);
        check_placeholders(&message, node.span, cx);
        Some(Params { message, to })
    }

    fn templates(&self) -> Vec<&Template> {
        vec![&self.message, &self.to]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let text = self.text(ctx, true)?;
        let destination = Destination::parse(&ctx.preview(&self.to));
        Ok(StepOutcome::new(format!(
            "would send to {}",
            ctx.redactor.redact(&destination.shown())
        ))
        .detail(Detail::block("message", ctx.redactor.redact(&text))))
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let text = ctx.redactor.redact(&self.text(ctx, false)?);
        let destination = Destination::parse(&ctx.render(&self.to)?);
        let shown = ctx.redactor.redact(&destination.shown());
        let summary = match &destination {
            Destination::Stdout => {
                ctx.progress.step_message(&ctx.step_id, &text);
                "sent to stdout".to_string()
            }
            Destination::File(path) => {
                append(&ctx.workdir.join(path), &text)
                    .await
                    .map_err(|e| StepError::failed(format!("could not append to {shown}: {e}")))?;
                format!("appended to {shown}")
            }
            Destination::Webhook(url) => {
                // The server may echo its path (the key) in its answer.
                let redactor = ctx.redactor.with_secrets(webhook_secrets(url));
                tokio::select! {
                    result = post(url, &text) => result.map_err(|e| {
                        StepError::failed(redactor.redact(&format!("POST {shown}: {e}")))
                    })?,
                    _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
                }
                format!("posted to {shown}")
            }
        };
        Ok(StepOutcome::new(summary).detail(Detail::block("message", text)))
    }
}

impl Params {
    /// The message with step outputs and placeholders filled in. With
    /// `preview`, outputs not known yet are shown as written.
    fn text(&self, ctx: &StepCtx, preview: bool) -> Result<String, StepError> {
        // Output values are escaped so that braces in them stay text.
        let rendered = self
            .message
            .render(|step, output| match prose(ctx, step, output) {
                Some(value) => Some(escape_braces(&value)),
                None if preview => Some(escape_braces(&format!("${{steps.{step}.{output}}}"))),
                None => None,
            });
        let rendered = rendered.map_err(StepError::from)?;
        fill(&rendered, |name| placeholder_value(&ctx.report, name))
            .map_err(|e| StepError::failed(format!("message: {e}")))
    }
}

/// An earlier step's output as a message reads it: a list as `a, b, c`
/// (`none` when empty), anything else as in other steps' parameters.
fn prose(ctx: &StepCtx, step: &str, output: &str) -> Option<String> {
    match ctx.outputs.get(step)?.get(output)? {
        serde_json::Value::Array(items) if items.is_empty() => Some("none".to_string()),
        serde_json::Value::Array(items) => Some(
            items
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => ctx.output_text(step, output),
    }
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq)]
enum Destination {
    Stdout,
    Webhook(String),
    /// Relative to the directory flightpath runs in.
    File(String),
}

impl Destination {
    fn parse(to: &str) -> Self {
        let to = to.trim();
        if to == "stdout" {
            Destination::Stdout
        } else if to.starts_with("http://") || to.starts_with("https://") {
            Destination::Webhook(to.to_string())
        } else {
            Destination::File(to.to_string())
        }
    }

    /// How the destination may be shown: a webhook only as scheme and host.
    fn shown(&self) -> String {
        match self {
            Destination::Stdout => "stdout".to_string(),
            Destination::File(path) => path.clone(),
            Destination::Webhook(url) => webhook_origin(url),
        }
    }
}

/// `https://hooks.slack.com/services/T0/B0/x` → `https://hooks.slack.com/…`.
pub fn webhook_origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "…".to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Credentials in the authority are as secret as the path.
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}/…")
}

/// The parts of a webhook URL that are its key, to mask wherever they
/// appear (an error, a body the server echoes): its path and query, whole
/// and by segment (the segments that are not plain words), and its
/// credentials.
fn webhook_secrets(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let tail = &rest[rest.find(['/', '?', '#']).unwrap_or(rest.len())..];
    let mut out = vec![tail.to_string(), tail.trim_start_matches('/').to_string()];
    out.extend(
        tail.split(['/', '?', '&', '=', '#'])
            .filter(|part| {
                part.len() >= 6
                    && !part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_')
            })
            .map(str::to_string),
    );
    out.extend(crate::redact::url_secrets(url));
    out
}

async fn append(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    let mut line = text.to_string();
    if !line.ends_with('\n') {
        line.push('\n');
    }
    file.write_all(line.as_bytes()).await?;
    file.flush().await
}

/// POSTs `{"text": text}`; an error for anything but a 2xx answer, with the
/// status and the start of the body.
async fn post(url: &str, text: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .user_agent(concat!("flightpath/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("could not create the HTTP client: {e}"))?;
    let response = client
        .post(url)
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .map_err(|e| request_error(&e, WEBHOOK_TIMEOUT))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let mut start: String = body.trim().chars().take(ERROR_BODY_CHARS).collect();
    if start.len() < body.trim().len() {
        start.push('…');
    }
    Err(if start.is_empty() {
        format!("answered {status}")
    } else {
        format!("answered {status}: {start}")
    })
}

/// Why a message's placeholders cannot be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceholderError {
    /// `{name}` with a name not in [`PLACEHOLDERS`].
    Unknown(String),
    /// A `{` without its `}`, or a `}` without a `{`.
    Unmatched(char),
}

impl std::fmt::Display for PlaceholderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceholderError::Unknown(name) => write!(f, "unknown placeholder `{{{name}}}`"),
            PlaceholderError::Unmatched(brace) => write!(f, "unmatched `{brace}`"),
        }
    }
}

/// A message cut into literal text and placeholder names.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits `text` at its placeholders; `{{` and `}}` become literal braces.
/// Lone braces are reported and kept out of the pieces.
fn scan(text: &str) -> (Vec<Piece<'_>>, Vec<PlaceholderError>) {
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        pieces.push(Piece::Text(&rest[..at]));
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{").or(tail.strip_prefix("}}")) {
            pieces.push(Piece::Text(&tail[..1]));
            rest = after;
        } else if let Some(after) = tail.strip_prefix('}') {
            errors.push(PlaceholderError::Unmatched('}'));
            rest = after;
        } else {
            // `tail` starts with a single `{`.
            let after = &tail[1..];
            match after.find(['{', '}']) {
                Some(end) if after[end..].starts_with('}') => {
                    pieces.push(Piece::Placeholder(&after[..end]));
                    rest = &after[end + 1..];
                }
                _ => {
                    errors.push(PlaceholderError::Unmatched('{'));
                    rest = after;
                }
            }
        }
    }
    pieces.push(Piece::Text(rest));
    (pieces, errors)
}

/// Every placeholder problem in `text`, in order of kind: lone braces,
/// then unknown names.
pub fn placeholder_problems(text: &str) -> Vec<PlaceholderError> {
    let (pieces, mut errors) = scan(text);
    for piece in pieces {
        if let Piece::Placeholder(name) = piece
            && !PLACEHOLDERS.contains(&name)
        {
            errors.push(PlaceholderError::Unknown(name.to_string()));
        }
    }
    errors
}

/// Replaces each `{name}` with `value(name)`; `{{` and `}}` are literal
/// braces. The first problem when there is one.
pub fn fill(
    text: &str,
    mut value: impl FnMut(&str) -> Option<String>,
) -> Result<String, PlaceholderError> {
    let (pieces, errors) = scan(text);
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder(name) => match value(name) {
                Some(v) => out.push_str(&v),
                None => return Err(PlaceholderError::Unknown(name.to_string())),
            },
        }
    }
    Ok(out)
}

/// Reports placeholder problems in `message`, pointing at the placeholder
/// when it can be found in the source, else at the whole message.
fn check_placeholders(message: &Template, span: Span, cx: &mut LoadCtx) {
    // Step outputs become text at run time; they are not placeholders.
    let Ok(text) = message.render(|_, _| Some(String::new())) else {
        return;
    };
    let raw = cx
        .source
        .get(span.offset..span.offset + span.len)
        .unwrap_or("")
        .to_string();
    let mut cursor = 0;
    for problem in placeholder_problems(&text) {
        let p = match &problem {
            PlaceholderError::Unknown(name) => {
                let token = format!("{{{name}}}");
                let at = raw
                    .get(cursor..)
                    .and_then(|r| r.find(&token))
                    .map(|at| cursor + at);
                let located = match at {
                    Some(at) => {
                        cursor = at + token.len();
                        Span {
                            offset: span.offset + at,
                            len: token.len(),
                        }
                    }
                    None => span,
                };
                let p = Problem::new(
                    "flightpath::notify::placeholder",
                    format!("notify message: {problem}"),
                    located,
                    "unknown placeholder",
                )
                .suggest(name, PLACEHOLDERS.iter().copied());
                if p.help.is_some() {
                    p
                } else {
                    let known: Vec<String> =
                        PLACEHOLDERS.iter().map(|p| format!("`{{{p}}}`")).collect();
                    p.help(format!(
                        "placeholders are {}; write `{{{{` for a literal `{{`",
                        known.join(", ")
                    ))
                }
            }
            PlaceholderError::Unmatched(brace) => Problem::new(
                "flightpath::notify::placeholder",
                format!("notify message: {problem}"),
                span,
                format!("unmatched `{brace}`"),
            )
            .help(format!("write `{brace}{brace}` for a literal `{brace}`")),
        };
        cx.push(p);
    }
}

fn escape_braces(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// The value of a placeholder, from the run so far.
pub fn placeholder_value(report: &Report, name: &str) -> Option<String> {
    let failed: Vec<&str> = report
        .steps
        .iter()
        .filter(|s| is_failure(s.status))
        .map(|s| s.id.as_str())
        .collect();
    Some(match name {
        "workflow" => report.workflow.clone(),
        "run_id" => report.run_id.clone(),
        "status" => if failed.is_empty() {
            "succeeded"
        } else {
            "failed"
        }
        .to_string(),
        "failed" if failed.is_empty() => "none".to_string(),
        "failed" => failed.join(", "),
        "summary" => report
            .steps
            .iter()
            .filter_map(summary_line)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return None,
    })
}

fn is_failure(status: StepStatus) -> bool {
    matches!(status, StepStatus::Failed | StepStatus::Cancelled)
}

/// `✓ id (kind) 1.2s — summary` for a finished step; `None` for one that
/// has not finished.
fn summary_line(step: &StepReport) -> Option<String> {
    if matches!(step.status, StepStatus::Pending | StepStatus::Running) {
        return None;
    }
    // The report's own glyphs and durations, so a message reads like it.
    let mark = crate::report::step_status_glyph(step.status);
    let mut line = format!("{mark} {} ({})", step.id, step.kind);
    if let Some(ms) = step.duration_ms {
        line.push(' ');
        line.push_str(&crate::human::human_duration(ms));
    }
    let text = match step.status {
        StepStatus::Failed | StepStatus::Cancelled => step.error.as_deref(),
        StepStatus::Skipped => Some("skipped"),
        StepStatus::Reused => Some("reused from an earlier run"),
        _ => step.summary.as_deref(),
    };
    if let Some(text) = text.and_then(|t| t.lines().next()) {
        line.push_str(" — ");
        line.push_str(text);
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{RunStatus, SCHEMA_VERSION};
    use crate::syntax::template::Vars;
    use crate::syntax::yaml;

    fn step(id: &str, status: StepStatus, summary: &str, ms: u64) -> StepReport {
        let failed = matches!(status, StepStatus::Failed);
        StepReport {
            id: id.to_string(),
            kind: "shell".to_string(),
            status,
            needs: Vec::new(),
            on_failure: false,
            started: None,
            finished: None,
            duration_ms: Some(ms),
            summary: (!failed).then(|| summary.to_string()),
            outputs: Default::default(),
            details: Vec::new(),
            error: failed.then(|| summary.to_string()),
        }
    }

    fn report(steps: Vec<StepReport>) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            run_id: "20250101-abc".to_string(),
            workflow: "reset-staging".to_string(),
            description: None,
            dry_run: false,
            status: RunStatus::Succeeded,
            started: chrono::Utc::now(),
            finished: None,
            duration_ms: None,
            steps,
        }
    }

    fn parse(source: &str) -> (Option<Params>, Vec<Problem>) {
        let root = yaml::parse(source).unwrap();
        let vars = Vars::default();
        let mut cx = LoadCtx::new(source, &vars);
        let mut with = MapReader::new(&mut cx, &root, "step `tell`").unwrap();
        let params = Params::parse(&mut with, &mut cx);
        with.finish(&mut cx);
        (params, cx.diags.problems)
    }

    #[test]
    fn fills_placeholders_and_literal_braces() {
        let r = report(vec![
            step(
                "migrate",
                StepStatus::Succeeded,
                "ran `./manage.py migrate`",
                1234,
            ),
            step(
                "smoke",
                StepStatus::Failed,
                "GET /: expected 200, got 503",
                75_000,
            ),
            step("later", StepStatus::Pending, "", 0),
        ]);
        let text = fill(
            "{workflow} {run_id}: {status} ({failed}) {{json}}\n{summary}",
            |name| placeholder_value(&r, name),
        )
        .unwrap();
        assert_eq!(
            text,
            "reset-staging 20250101-abc: failed (smoke) {json}\n\
             ✓ migrate (shell) 1.2s — ran `./manage.py migrate`\n\
             ✗ smoke (shell) 1m15s — GET /: expected 200, got 503"
        );
    }

    #[test]
    fn a_run_without_failures_succeeded() {
        let r = report(vec![step("a", StepStatus::Succeeded, "ok", 10)]);
        assert_eq!(placeholder_value(&r, "status").unwrap(), "succeeded");
        assert_eq!(placeholder_value(&r, "failed").unwrap(), "none");
        assert_eq!(placeholder_value(&r, "nope"), None);
    }

    #[test]
    fn finds_every_placeholder_problem() {
        assert_eq!(placeholder_problems("{summary} {{ok}}"), vec![]);
        assert_eq!(
            placeholder_problems("} {sumary} {x} {"),
            vec![
                PlaceholderError::Unmatched('}'),
                PlaceholderError::Unmatched('{'),
                PlaceholderError::Unknown("sumary".into()),
                PlaceholderError::Unknown("x".into()),
            ]
        );
    }

    #[test]
    fn unknown_placeholder_is_located_with_a_suggestion() {
        let source = "message: \"Done: {sumary} (${steps.a.b})\"\n";
        let (params, problems) = parse(source);
        assert!(params.is_some());
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!(p.code, "flightpath::notify::placeholder");
        assert_eq!(p.message, "notify message: unknown placeholder `{sumary}`");
        assert_eq!(
            &source[p.span.offset..p.span.offset + p.span.len],
            "{sumary}"
        );
        assert_eq!(p.help.as_deref(), Some("did you mean `summary`?"));
    }

    #[test]
    fn step_outputs_are_not_placeholders() {
        let (params, problems) = parse("message: \"${steps.a.b}{{\"\nto: out.txt\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(params.unwrap().templates().len(), 2);
    }

    #[test]
    fn webhooks_show_only_their_origin() {
        assert_eq!(
            webhook_origin("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            webhook_origin("http://user:pw@127.0.0.1:8080/hook?token=x"),
            "http://127.0.0.1:8080/…"
        );
        assert_eq!(
            Destination::parse("notes/run.txt"),
            Destination::File("notes/run.txt".into())
        );
        assert_eq!(Destination::parse("stdout"), Destination::Stdout);
    }
}
