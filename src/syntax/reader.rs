//! Strict, error-collecting reading of typed values out of the located YAML
//! tree. A [`MapReader`] hands out the keys it is asked for and, at
//! [`MapReader::finish`], reports every key nobody asked for as unknown, with
//! "did you mean". Every problem goes into [`LoadCtx::diags`]; readers return
//! `None` for a value they could not read and carry on.

use std::collections::BTreeMap;
use std::time::Duration;

use super::diagnostics::{Diagnostics, Problem};
use super::template::{Quoting, RawUse, Template, Vars};
use super::yaml::{Key, Node, Span, Value};

/// State shared while loading one file.
pub struct LoadCtx<'s> {
    pub source: &'s str,
    pub vars: &'s Vars,
    pub diags: Diagnostics,
    /// Resolved values of secret-looking variables, for redaction.
    pub secrets: Vec<String>,
    /// Every `${raw:…}`, with what it is in (for `validate` to name).
    pub raw_uses: Vec<(String, RawUse)>,
    /// Problems found in other files this one refers to (rules files).
    pub external: Vec<super::diagnostics::Located>,
    /// The directory of the file being read, where files it names may be.
    pub dir: Option<std::path::PathBuf>,
}

impl<'s> LoadCtx<'s> {
    pub fn new(source: &'s str, vars: &'s Vars) -> Self {
        LoadCtx {
            source,
            vars,
            diags: Diagnostics::default(),
            secrets: Vec::new(),
            raw_uses: Vec::new(),
            external: Vec::new(),
            dir: None,
        }
    }

    pub fn push(&mut self, problem: Problem) {
        self.diags.push(problem);
    }

    fn expected(&mut self, node: &Node, what: &str, expected: &str) {
        self.push(Problem::new(
            "flightpath::yaml::type",
            format!("{what} must be {expected}, found {}", node.kind()),
            node.span,
            format!("expected {expected}"),
        ));
    }

    /// A string scalar (numbers and booleans are taken as their text), with
    /// `${…}` interpolated as they are.
    pub fn template(&mut self, node: &Node, what: &str) -> Option<Template> {
        self.template_in(node, what, Quoting::Plain)
    }

    /// [`template`](Self::template) with values quoted for `quoting`.
    pub fn template_in(&mut self, node: &Node, what: &str, quoting: Quoting) -> Option<Template> {
        let raw = self
            .source
            .get(node.span.offset..node.span.offset + node.span.len)
            .unwrap_or("");
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            // A number or boolean read as a string keeps its spelling (`1.10`).
            Value::Int(_) | Value::Float(_) | Value::Bool(_) if !raw.trim().is_empty() => {
                raw.trim().to_string()
            }
            _ => match node.scalar_text() {
                Some(text) => text,
                None => {
                    self.expected(node, what, "a string");
                    return None;
                }
            },
        };
        let mut raw_uses = Vec::new();
        let parsed = Template::parse(
            &text,
            raw,
            node.span,
            quoting,
            self.vars,
            &mut self.secrets,
            &mut raw_uses,
        );
        self.raw_uses
            .extend(raw_uses.into_iter().map(|r| (what.to_string(), r)));
        match parsed {
            Ok(t) => Some(t),
            Err(problems) => {
                for p in problems {
                    self.push(p);
                }
                None
            }
        }
    }

    /// A string that must be fully known at load time (no step outputs).
    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let template = self.template(node, what)?;
        match template.as_literal() {
            Some(s) => Some(s.to_string()),
            None => {
                self.push(
                    Problem::new(
                        "flightpath::interpolation::not-allowed",
                        format!("{what} cannot use step outputs"),
                        node.span,
                        "must be known before the run starts",
                    )
                    .help("only environment variables (`${NAME}`) can be used here"),
                );
                None
            }
        }
    }

    pub fn u64(&mut self, node: &Node, what: &str) -> Option<u64> {
        match &node.value {
            Value::Int(i) if *i >= 0 => Some(*i as u64),
            Value::Str(_) => {
                let text = self.string(node, what)?;
                match text.trim().parse() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.expected(node, what, "a whole number");
                        None
                    }
                }
            }
            _ => {
                self.expected(node, what, "a whole number");
                None
            }
        }
    }

    pub fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.expected(node, what, "`true` or `false`");
                None
            }
        }
    }

    /// `30s`, `5m`, `1h`, `250ms`, or a whole number of seconds.
    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let text = match &node.value {
            Value::Int(i) if *i >= 0 => return Some(Duration::from_secs(*i as u64)),
            _ => self.string(node, what)?,
        };
        match parse_duration(&text) {
            Some(d) => Some(d),
            None => {
                self.push(
                    Problem::new(
                        "flightpath::yaml::duration",
                        format!("{what}: `{text}` is not a duration"),
                        node.span,
                        "not a duration",
                    )
                    .help("write a number with a unit: `500ms`, `30s`, `5m`, `1h`"),
                );
                None
            }
        }
    }

    /// A list of strings; a single string is taken as a list of one.
    pub fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Span)>> {
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(s) = self.string(item, what) {
                        out.push((s, item.span));
                    }
                }
                Some(out)
            }
            Value::Str(_) => self.string(node, what).map(|s| vec![(s, node.span)]),
            _ => {
                self.expected(node, what, "a list of strings");
                None
            }
        }
    }

    /// A mapping of names to interpolated strings (e.g. `env:`).
    pub fn template_map(&mut self, node: &Node, what: &str) -> Option<BTreeMap<String, Template>> {
        let Value::Map(entries) = &node.value else {
            self.expected(node, what, "a mapping");
            return None;
        };
        let mut out = BTreeMap::new();
        for (key, value) in entries {
            if let Some(t) = self.template(value, &format!("{what}.{}", key.name)) {
                out.insert(key.name.clone(), t);
            }
        }
        Some(out)
    }
}

/// Reads the keys of one mapping, strictly.
pub struct MapReader<'n> {
    node: &'n Node,
    entries: &'n [(Key, Node)],
    known: Vec<&'static str>,
    /// What this mapping is, for messages: "step `backup`", "target `prod`".
    what: String,
}

impl<'n> MapReader<'n> {
    /// `None` (with a problem recorded) when `node` is not a mapping.
    pub fn new(cx: &mut LoadCtx, node: &'n Node, what: impl Into<String>) -> Option<Self> {
        let what = what.into();
        match &node.value {
            Value::Map(entries) => Some(MapReader {
                node,
                entries,
                known: Vec::new(),
                what,
            }),
            Value::Null => Some(MapReader {
                node,
                entries: &[],
                known: Vec::new(),
                what,
            }),
            _ => {
                cx.expected(node, &what, "a mapping");
                None
            }
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn span(&self) -> Span {
        self.node.span
    }

    /// The node under `key`, registering `key` as allowed.
    pub fn get(&mut self, key: &'static str) -> Option<&'n Node> {
        self.known.push(key);
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// Like [`get`](Self::get), and records a problem when the key is absent.
    pub fn require(&mut self, cx: &mut LoadCtx, key: &'static str) -> Option<&'n Node> {
        let node = self.get(key);
        if node.is_none() {
            cx.push(
                Problem::new(
                    "flightpath::yaml::missing-key",
                    format!("{} is missing `{key}`", self.what),
                    self.node.span,
                    format!("`{key}` is required here"),
                )
                .help(format!("add `{key}: …`")),
            );
        }
        node
    }

    fn label(&self, key: &str) -> String {
        format!("{} `{key}`", self.what)
    }

    pub fn template(&mut self, cx: &mut LoadCtx, key: &'static str) -> Option<Template> {
        let node = self.get(key)?;
        cx.template(node, &self.label(key))
    }

    pub fn required_template(&mut self, cx: &mut LoadCtx, key: &'static str) -> Option<Template> {
        self.required_template_in(cx, key, Quoting::Plain)
    }

    /// A required template whose values are quoted for `quoting` (a shell
    /// command, SQL).
    pub fn required_template_in(
        &mut self,
        cx: &mut LoadCtx,
        key: &'static str,
        quoting: Quoting,
    ) -> Option<Template> {
        let node = self.require(cx, key)?;
        cx.template_in(node, &self.label(key), quoting)
    }

    pub fn string(&mut self, cx: &mut LoadCtx, key: &'static str) -> Option<String> {
        let node = self.get(key)?;
        cx.string(node, &self.label(key))
    }

    pub fn required_string(&mut self, cx: &mut LoadCtx, key: &'static str) -> Option<String> {
        let node = self.require(cx, key)?;
        cx.string(node, &self.label(key))
    }

    pub fn u64(&mut self, cx: &mut LoadCtx, key: &'static str) -> Option<u64> {
        let node = self.get(key)?;
        cx.u64(node, &self.label(key))
    }

    pub fn bool(&mut self, cx: &mut LoadCtx, key: &'static str) -> Option<bool> {
        let node = self.get(key)?;
        cx.bool(node, &self.label(key))
    }

    pub fn duration(&mut self, cx: &mut LoadCtx, key: &'static str) -> Option<Duration> {
        let node = self.get(key)?;
        cx.duration(node, &self.label(key))
    }

    pub fn string_list(
        &mut self,
        cx: &mut LoadCtx,
        key: &'static str,
    ) -> Option<Vec<(String, Span)>> {
        let node = self.get(key)?;
        cx.string_list(node, &self.label(key))
    }

    pub fn template_map(
        &mut self,
        cx: &mut LoadCtx,
        key: &'static str,
    ) -> Option<BTreeMap<String, Template>> {
        let node = self.get(key)?;
        cx.template_map(node, &self.label(key))
    }

    /// Reports every key that was never asked for.
    pub fn finish(self, cx: &mut LoadCtx) {
        for (key, _) in self.entries {
            if self.known.contains(&key.name.as_str()) {
                continue;
            }
            let expected = self
                .known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let problem = Problem::new(
                "flightpath::yaml::unknown-key",
                format!("unknown key `{}` in {}", key.name, self.what),
                key.span,
                "unknown key",
            );
            let problem =
                match super::diagnostics::did_you_mean(&key.name, self.known.iter().copied()) {
                    Some(best) => problem.help(format!("did you mean `{best}`?")),
                    None => problem.help(format!("expected one of: {expected}")),
                };
            cx.push(problem);
        }
    }
}

pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" | "sec" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    // Too large (or negative) for a Duration is "not a duration", not a panic.
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::yaml;

    #[test]
    fn unknown_keys_are_reported_with_suggestions() {
        let src = "run: echo\ntimout: 5s\nbogus: 1\n";
        let root = yaml::parse(src).unwrap();
        let vars = Vars::default();
        let mut cx = LoadCtx::new(src, &vars);
        let mut map = MapReader::new(&mut cx, &root, "step `a`").unwrap();
        assert!(map.required_template(&mut cx, "run").is_some());
        assert!(map.duration(&mut cx, "timeout").is_none());
        map.finish(&mut cx);
        let problems = &cx.diags.problems;
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].message, "unknown key `timout` in step `a`");
        assert_eq!(problems[0].help.as_deref(), Some("did you mean `timeout`?"));
        assert_eq!(
            problems[1].help.as_deref(),
            Some("expected one of: `run`, `timeout`")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5 parsecs"), None);
        // Too large for a Duration: refused, not a panic.
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }
}
