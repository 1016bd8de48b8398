//! `${…}` interpolation in workflow strings.
//!
//! `${VAR}` and `${VAR:-default}` read `--var` values, then the environment,
//! and are resolved when the workflow is loaded (a missing one is a located
//! error). `${steps.<id>.<output>}` reads an output of an earlier step and
//! stays in the [`Template`] until the step runs. `$${` is a literal `${`.
//!
//! Values are written for where they land ([`Quoting`]): in `shell.run` each
//! becomes one single-quoted shell word, in `postgres.sql.sql` one SQL string
//! literal, so a value can never become code. `${raw:NAME}` (and
//! `${raw:steps.<id>.<output>}`) inserts the text as it is; every such use is
//! recorded ([`RawUse`]) so that `validate` can name it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::diagnostics::Problem;
use super::lexical;
use super::yaml::Span;

/// A string with step outputs still to fill in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    parts: Vec<Part>,
    /// How step outputs are written in when rendered (variables already were).
    #[serde(default)]
    quoting: Quoting,
}

/// How an interpolated value is written into the text around it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quoting {
    /// As it is: URLs, paths, messages, `env:` values.
    #[default]
    Plain,
    /// One single-quoted `sh` word: `'…'`, each `'` written `'\''`.
    ShellWord,
    /// One PostgreSQL string literal: `'…'` with `'` doubled; a value with a
    /// backslash is written `E'…'` with `\` doubled as well. Both forms read
    /// the same whatever `standard_conforming_strings` says. A plain `'…'`
    /// holding a backslash would not: with the setting off a backslash
    /// escapes the next character, so `\'` would keep the literal open past
    /// its end and what follows would be read as SQL. It is never produced.
    SqlLiteral,
}

/// Why a value cannot be written in a [`Quoting`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("it contains a NUL byte, which {0} cannot hold")]
pub struct Unquotable(&'static str);

impl Quoting {
    /// `value` written for this context.
    pub fn quote(self, value: &str) -> Result<String, Unquotable> {
        match self {
            Quoting::Plain => Ok(value.to_string()),
            Quoting::ShellWord if value.contains('\0') => Err(Unquotable("a shell word")),
            Quoting::ShellWord => Ok(format!("'{}'", value.replace('\'', "'\\''"))),
            Quoting::SqlLiteral if value.contains('\0') => Err(Unquotable("SQL text")),
            Quoting::SqlLiteral if value.contains('\\') => Ok(format!(
                "E'{}'",
                value.replace('\\', "\\\\").replace('\'', "''")
            )),
            Quoting::SqlLiteral => Ok(format!("'{}'", value.replace('\'', "''"))),
        }
    }
}

/// A `${raw:…}` in a quoted context: the text goes in unquoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawUse {
    /// `NAME` or `steps.<id>.<output>`.
    pub name: String,
    pub span: Span,
}

/// Why a template could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "`${{steps.{}.{}}}` is not available: step `{}` did not produce `{}`",
        .0.step, .0.output, .0.step, .0.output
    )]
    Missing(OutputRef),
    #[error("`${{steps.{}.{}}}` cannot be filled in: {why}", reference.step, reference.output)]
    Unquotable {
        reference: OutputRef,
        why: Unquotable,
    },
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
    /// `${raw:steps.…}`: inserted as it is, whatever the template's quoting.
    #[serde(default)]
    pub raw: bool,
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
            quoting: Quoting::Plain,
        }
    }

    /// Parses `value` (the text of a YAML scalar at `span`; `raw` is that
    /// scalar's source text, used to locate each `${…}` inside it).
    /// Variables are resolved now and written in as `quoting` says; resolved
    /// secret values (and their quoted forms) are pushed to `secrets`, and
    /// each `${raw:…}` to `raw_uses`.
    pub fn parse(
        value: &str,
        raw: &str,
        span: Span,
        quoting: Quoting,
        vars: &Vars,
        secrets: &mut Vec<String>,
        raw_uses: &mut Vec<RawUse>,
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
            let (inner, unquoted) = match inner.strip_prefix("raw:") {
                Some(inner) => {
                    raw_uses.push(RawUse {
                        name: inner.split(":-").next().unwrap_or(inner).to_string(),
                        span: token_span,
                    });
                    (inner, true)
                }
                None => (inner, false),
            };
            if !unquoted && let Err(inside) = lexical::place(quoting, &seen(&parts, &text)) {
                problems.push(misplaced(token, inner, inside, quoting, token_span));
                continue;
            }
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
                            raw: unquoted,
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
                        .help("write `${steps.<step-id>.<output>}` (or `${raw:steps.<step-id>.<output>}`)"),
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
                    .help("write `${NAME}`, `${NAME:-default}`, `${raw:NAME}` or `${steps.<step-id>.<output>}`"),
                );
                continue;
            }
            match vars.get(name).or_else(|| default.map(str::to_string)) {
                Some(resolved) => {
                    let quoting = if unquoted { Quoting::Plain } else { quoting };
                    match quoting.quote(&resolved) {
                        Ok(quoted) => {
                            if is_secret_name(name) && !resolved.is_empty() {
                                if quoted != resolved {
                                    secrets.push(quoted.clone());
                                }
                                secrets.push(resolved);
                            }
                            text.push_str(&quoted);
                        }
                        Err(why) => problems.push(Problem::new(
                            "flightpath::interpolation::unquotable",
                            format!("the value of `{name}` cannot be used here: {why}"),
                            token_span,
                            "this value",
                        )),
                    }
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
            Ok(Template { parts, quoting })
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

    /// Fills in step outputs, quoted as the template's context says.
    /// `lookup(step, output)` returns the output as text, or `None` when that
    /// step produced no such output.
    pub fn render(
        &self,
        mut lookup: impl FnMut(&str, &str) -> Option<String>,
    ) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Output(r) => {
                    let value = lookup(&r.step, &r.output)
                        .ok_or_else(|| RenderError::Missing(r.clone()))?;
                    let quoting = if r.raw { Quoting::Plain } else { self.quoting };
                    let quoted = quoting
                        .quote(&value)
                        .map_err(|why| RenderError::Unquotable {
                            reference: r.clone(),
                            why,
                        })?;
                    out.push_str(&quoted);
                }
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
                Part::Output(r) => {
                    let raw = if r.raw { "raw:" } else { "" };
                    write!(f, "${{{raw}steps.{}.{}}}", r.step, r.output)?
                }
            }
        }
        Ok(())
    }
}

/// The text so far as the shell or SQL will read it, a step output still to
/// come standing in as an empty quoted word (which ends where it began).
fn seen(parts: &[Part], text: &str) -> String {
    let mut out: String = parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.as_str(),
            Part::Output(_) => "''",
        })
        .collect();
    out.push_str(text);
    out
}

/// A quoted value that would land inside a quote, comment or body.
fn misplaced(
    token: &str,
    inner: &str,
    inside: lexical::Inside,
    quoting: Quoting,
    span: Span,
) -> Problem {
    let (what, unquote) = match inside {
        lexical::Inside::SingleQuotes
        | lexical::Inside::DoubleQuotes
        | lexical::Inside::SqlString
        | lexical::Inside::QuotedIdentifier => ("quoted", "remove the quotes around it"),
        _ => ("placed", "move it out"),
    };
    let becomes = match quoting {
        Quoting::SqlLiteral => "one SQL string literal",
        _ => "one shell word",
    };
    Problem::new(
        "flightpath::interpolation::quoted",
        format!("`{token}` is {}", inside.describe()),
        span,
        format!("values here are {what} for you"),
    )
    .help(format!(
        "{unquote}: `${{{inner}}}` alone becomes {becomes}; or write `${{raw:{inner}}}` to insert the text as it is"
    ))
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
        Template::parse(
            value,
            value,
            span,
            Quoting::Plain,
            vars,
            &mut Vec::new(),
            &mut Vec::new(),
        )
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
            Quoting::Plain,
            &v,
            &mut secrets,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(secrets, vec!["s3cr3t".to_string()]);
    }

    fn parse_in(value: &str, quoting: Quoting, vars: &Vars) -> (Template, Vec<RawUse>) {
        let mut raw_uses = Vec::new();
        let span = Span {
            offset: 0,
            len: value.len(),
        };
        let t = Template::parse(
            value,
            value,
            span,
            quoting,
            vars,
            &mut Vec::new(),
            &mut raw_uses,
        )
        .unwrap();
        (t, raw_uses)
    }

    #[test]
    fn shell_values_are_one_single_quoted_word() {
        let v = vars(&[("V", "x; touch /tmp/p"), ("Q", "it's"), ("E", "")]);
        let (t, raw) = parse_in("echo ${V} ${Q} ${E}", Quoting::ShellWord, &v);
        assert_eq!(
            t.as_literal(),
            Some(r#"echo 'x; touch /tmp/p' 'it'\''s' ''"#)
        );
        assert!(raw.is_empty());
    }

    #[test]
    fn sql_values_are_string_literals_whatever_standard_conforming_strings_says() {
        let v = vars(&[("A", "o'brien"), ("B", r"\'; DROP TABLE t; --")]);
        let (t, _) = parse_in("SELECT ${A}, ${B}", Quoting::SqlLiteral, &v);
        assert_eq!(
            t.as_literal(),
            Some(r"SELECT 'o''brien', E'\\''; DROP TABLE t; --'")
        );
    }

    #[test]
    fn raw_inserts_as_it_is_and_is_recorded() {
        let v = vars(&[("CMD", "ls -l | wc -l")]);
        let (t, raw) = parse_in("${raw:CMD} && ${raw:N:-1}", Quoting::ShellWord, &v);
        assert_eq!(t.as_literal(), Some("ls -l | wc -l && 1"));
        let names: Vec<_> = raw
            .iter()
            .map(|r| (r.name.as_str(), r.span.offset))
            .collect();
        assert_eq!(names, [("CMD", 0), ("N", 14)]);
    }

    #[test]
    fn step_outputs_are_quoted_when_rendered() {
        let (t, raw) = parse_in(
            "rm ${steps.a.path} ${raw:steps.a.path}",
            Quoting::ShellWord,
            &vars(&[]),
        );
        assert_eq!(raw.len(), 1);
        let rendered = t.render(|_, _| Some("x' y".into())).unwrap();
        assert_eq!(rendered, r"rm 'x'\'' y' x' y");
        assert_eq!(t.to_string(), "rm ${steps.a.path} ${raw:steps.a.path}");
        let err = t.render(|_, _| Some("a\0b".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`${steps.a.path}` cannot be filled in: it contains a NUL byte, which a shell word cannot hold"
        );
    }
}
