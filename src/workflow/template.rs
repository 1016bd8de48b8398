//! `${…}` interpolation in workflow strings.
//!
//! `${VAR}` and `${VAR:-default}` read `--var` values, then the environment,
//! and are resolved when the workflow is loaded (a missing one is a located
//! error). `${steps.<id>.<output>}` reads an output of an earlier step and
//! stays in the [`Template`] until the step runs. `$${` is a literal `${`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::diagnostics::Problem;
use super::yaml::Span;

/// A string with step outputs still to fill in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Part {
    Text(String),
    Output(OutputRef),
}

/// A reference to `${steps.<step>.<output>}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRef {
    pub step: String,
    pub output: String,
    /// Where the reference is written, for validation errors.
    #[serde(skip)]
    pub span: Span,
}

/// Variables visible to `${VAR}`: `--var` first, then the environment.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    overrides: BTreeMap<String, String>,
    use_env: bool,
}

impl Vars {
    /// `--var` values over the process environment.
    pub fn from_env(overrides: BTreeMap<String, String>) -> Self {
        Vars {
            overrides,
            use_env: true,
        }
    }

    /// Only the given values; the environment is not consulted (tests, scan).
    pub fn only(values: BTreeMap<String, String>) -> Self {
        Vars {
            overrides: values,
            use_env: false,
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.overrides
            .get(name)
            .cloned()
            .or_else(|| self.use_env.then(|| std::env::var(name).ok()).flatten())
    }
}

/// Names whose values are treated as secrets and redacted from all output.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "WEBHOOK",
        "DATABASE_URL",
    ]
    .iter()
    .any(|marker| upper.contains(marker))
}

impl Template {
    /// A template with no references.
    pub fn literal(text: impl Into<String>) -> Self {
        Template {
            parts: vec![Part::Text(text.into())],
        }
    }

    /// Parses `value` (the text of a YAML scalar at `span`; `raw` is that
    /// scalar's source text, used to locate each `${…}` inside it).
    /// Variables are resolved now; resolved secret values are pushed to `secrets`.
    pub fn parse(
        value: &str,
        raw: &str,
        span: Span,
        vars: &Vars,
        secrets: &mut Vec<String>,
    ) -> Result<Template, Vec<Problem>> {
        let mut parts = Vec::new();
        let mut problems = Vec::new();
        let mut text = String::new();
        let mut rest = value;
        let mut raw_cursor = 0;
        while let Some(start) = rest.find('$') {
            text.push_str(&rest[..start]);
            let after = &rest[start..];
            if let Some(escaped) = after.strip_prefix("$${") {
                text.push_str("${");
                rest = escaped;
                continue;
            }
            if !after.starts_with("${") {
                text.push('$');
                rest = &after[1..];
                continue;
            }
            let Some(end) = after.find('}') else {
                problems.push(
                    Problem::new(
                        "flightpath::interpolation::unclosed",
                        "`${` is never closed",
                        locate(raw, &mut raw_cursor, "${", span),
                        "opened here",
                    )
                    .help("close it with `}`, or write `$${` for a literal `${`"),
                );
                rest = "";
                break;
            };
            let token = &after[..=end];
            let inner = &after[2..end];
            let token_span = locate(raw, &mut raw_cursor, token, span);
            rest = &after[end + 1..];
            if let Some(path) = inner.strip_prefix("steps.") {
                match path.split_once('.') {
                    Some((step, output))
                        if is_identifier(step) && !output.is_empty() && is_identifier(output) =>
                    {
                        if !text.is_empty() {
                            parts.push(Part::Text(std::mem::take(&mut text)));
                        }
                        parts.push(Part::Output(OutputRef {
                            step: step.to_string(),
                            output: output.to_string(),
                            span: token_span,
                        }));
                    }
                    _ => problems.push(
                        Problem::new(
                            "flightpath::interpolation::syntax",
                            format!("`{token}` is not a step output reference"),
                            token_span,
                            "malformed reference",
                        )
                        .help("write `${steps.<step-id>.<output>}`"),
                    ),
                }
                continue;
            }
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_variable_name(name) {
                problems.push(
                    Problem::new(
                        "flightpath::interpolation::syntax",
                        format!("`{token}` is not a valid variable reference"),
                        token_span,
                        "malformed reference",
                    )
                    .help("write `${NAME}`, `${NAME:-default}` or `${steps.<step-id>.<output>}`"),
                );
                continue;
            }
            match vars.get(name).or_else(|| default.map(str::to_string)) {
                Some(resolved) => {
                    if is_secret_name(name) && !resolved.is_empty() {
                        secrets.push(resolved.clone());
                    }
                    text.push_str(&resolved);
                }
                None => problems.push(
                    Problem::new(
                        "flightpath::var::missing",
                        format!("environment variable `{name}` is not set"),
                        token_span,
                        "not set",
                    )
                    .help(format!(
                        "export {name}=… or pass `--var {name}=…` (or give a default: `${{{name}:-…}}`)"
                    )),
                ),
            }
        }
        text.push_str(rest);
        if !text.is_empty() || parts.is_empty() {
            parts.push(Part::Text(text));
        }
        if problems.is_empty() {
            Ok(Template { parts })
        } else {
            Err(problems)
        }
    }

    /// The step outputs this template reads.
    pub fn references(&self) -> impl Iterator<Item = &OutputRef> {
        self.parts.iter().filter_map(|p| match p {
            Part::Output(r) => Some(r),
            Part::Text(_) => None,
        })
    }

    /// The text when there is nothing left to fill in.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Fills in step outputs. `lookup(step, output)` returns the output as
    /// text, or `None` when that step produced no such output.
    pub fn render(
        &self,
        mut lookup: impl FnMut(&str, &str) -> Option<String>,
    ) -> Result<String, OutputRef> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Output(r) => match lookup(&r.step, &r.output) {
                    Some(value) => out.push_str(&value),
                    None => return Err(r.clone()),
                },
            }
        }
        Ok(out)
    }
}

/// Shows unresolved references as written, e.g. in a dry run's plan.
impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => f.write_str(t)?,
                Part::Output(r) => write!(f, "${{steps.{}.{}}}", r.step, r.output)?,
            }
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_variable_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The span of `token` in the scalar's source text, searching from `cursor`;
/// the whole scalar when the token is not found verbatim (escaped quotes…).
fn locate(raw: &str, cursor: &mut usize, token: &str, scalar: Span) -> Span {
    match raw.get(*cursor..).and_then(|r| r.find(token)) {
        Some(at) => {
            let offset = *cursor + at;
            *cursor = offset + token.len();
            Span {
                offset: scalar.offset + offset,
                len: token.len(),
            }
        }
        None => scalar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars::only(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn parse(value: &str, vars: &Vars) -> Result<Template, Vec<Problem>> {
        let span = Span {
            offset: 100,
            len: value.len(),
        };
        Template::parse(value, value, span, vars, &mut Vec::new())
    }

    #[test]
    fn resolves_variables_and_defaults() {
        let v = vars(&[("HOST", "db.internal")]);
        let t = parse("postgres://${HOST}/${DB:-app}?x=$$1 $${LIT}", &v).unwrap();
        assert_eq!(
            t.as_literal(),
            Some("postgres://db.internal/app?x=$$1 ${LIT}")
        );
    }

    #[test]
    fn keeps_step_references_for_later() {
        let t = parse("restore ${steps.backup.path} now", &vars(&[])).unwrap();
        let refs: Vec<_> = t.references().collect();
        assert_eq!(refs[0].step, "backup");
        assert_eq!(refs[0].span.offset, 108);
        assert_eq!(t.to_string(), "restore ${steps.backup.path} now");
        let rendered = t
            .render(|step, out| (step == "backup" && out == "path").then(|| "/b/1.dump".into()))
            .unwrap();
        assert_eq!(rendered, "restore /b/1.dump now");
    }

    #[test]
    fn missing_variable_is_located() {
        let problems = parse("x ${NOPE} y", &vars(&[])).unwrap_err();
        assert_eq!(problems[0].code, "flightpath::var::missing");
        assert_eq!(
            problems[0].span,
            Span {
                offset: 102,
                len: 7
            }
        );
    }

    #[test]
    fn secret_values_are_collected() {
        let mut secrets = Vec::new();
        let v = vars(&[("API_TOKEN", "s3cr3t"), ("HOST", "h")]);
        Template::parse(
            "${API_TOKEN}@${HOST}",
            "",
            Span::default(),
            &v,
            &mut secrets,
        )
        .unwrap();
        assert_eq!(secrets, vec!["s3cr3t".to_string()]);
    }
}
