//! Rules files (`anonymizers/*.yaml`): read strictly, every problem located
//! in its file, then merged into one [`RuleSet`]. What can be checked without
//! a database is checked here (strategies, fake kinds, patterns, templates,
//! conflicts between files); tables and columns are checked against the live
//! source schema by [`super::bind`].
//!
//! Merging: a file's `extends:` are read first and the file itself overrides
//! them (that is what extending a preset is for). Files listed side by side
//! in `anonymize: [a, b]` must not disagree: the same column ruled two ways,
//! or a table setting given two values, is an error naming both places.
//!
//! `json:` paths may be written dotted or nested (`a: { b: rule }` is `a.b`).
//! The secret is a file's `secret:`, else the value of [`SECRET_VAR`] the
//! caller read once and passes to [`RuleSet::with_secret_variable`] (only
//! `${VAR}`s written in a file are resolved here, through the caller's
//! [`Vars`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::NamedSource;
use regex::Regex;

use super::fakes::{self, FakeKind, Locale};
use crate::syntax::diagnostics::{Located, Problem};
use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Vars;
use crate::syntax::yaml::{self, Node, Span, Value};

/// The presets shipped inside the binary, usable as `preset:<name>` in
/// `anonymize:` and `extends:` without copying them into a project.
pub const PRESETS: &[(&str, &str)] = &[
    ("django", include_str!("../../anonymizers/django.yaml")),
    ("wagtail", include_str!("../../anonymizers/wagtail.yaml")),
    (
        "rails-devise",
        include_str!("../../anonymizers/rails-devise.yaml"),
    ),
    (
        "side-effects",
        include_str!("../../anonymizers/side-effects.yaml"),
    ),
];

/// The kinds `redact:` can find inside text.
pub use super::patterns::PII_KINDS as REDACT_KINDS;

/// Every column strategy, by its key in a rules file.
pub const STRATEGIES: &[&str] = &[
    "fake",
    "hash",
    "mask",
    "regex",
    "template",
    "set",
    "null",
    "keep",
    "json",
    "redact",
    "date_shift",
];

/// A rules file as loaded, for locating problems found later (at plan time).
#[derive(Debug)]
pub struct SourceFile {
    /// How the file is named in messages: the path as written, or `preset:x`.
    pub shown: String,
    pub text: String,
}

/// Where a rule was written.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<SourceFile>,
    pub span: Span,
}

impl Origin {
    /// `file:line:column`, for messages outside miette.
    pub fn location(&self) -> String {
        let before = &self.file.text[..self.span.offset.min(self.file.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .count()
            + 1;
        format!("{}:{line}:{column}", self.file.shown)
    }

    /// Whether both name the same text of the same file.
    pub fn is_same_place(&self, other: &Origin) -> bool {
        self.file.shown == other.file.shown && self.span == other.span
    }

    /// A problem at this place, ready to render.
    pub fn located(&self, problem: Problem) -> Located {
        Located {
            problem: Problem {
                span: self.span,
                ..problem
            },
            source: Arc::new(NamedSource::new(
                self.file.shown.clone(),
                self.file.text.clone(),
            )),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())
    }
}

/// What happens to columns nobody wrote a rule for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownColumns {
    /// Stop before writing anything (the default: fail closed).
    #[default]
    Error,
    /// Report them and copy them as they are.
    Warn,
}

/// One column strategy.
#[derive(Debug, Clone)]
pub enum Strategy {
    Fake {
        kind: FakeKind,
        unique: bool,
        locale: Option<Locale>,
    },
    Hash {
        length: Option<usize>,
    },
    Mask {
        first: usize,
        last: usize,
        with: char,
    },
    Regex {
        pattern: Regex,
        replace: String,
    },
    Template(Vec<TemplatePart>),
    /// A constant in the column's text form; `None` writes NULL.
    Set(Option<String>),
    Keep,
    Json(Vec<JsonRule>),
    Redact(Vec<String>),
    DateShift {
        days: u32,
    },
}

impl Strategy {
    /// A short description for reports: `fake: email (unique)`.
    pub fn describe(&self) -> String {
        match self {
            Strategy::Fake { kind, unique, .. } => {
                format!("fake: {kind}{}", if *unique { " (unique)" } else { "" })
            }
            Strategy::Hash { length: None } => "hash".into(),
            Strategy::Hash { length: Some(n) } => format!("hash ({n})"),
            Strategy::Mask { first, last, .. } => format!("mask (first {first}, last {last})"),
            Strategy::Regex { pattern, .. } => format!("regex `{}`", pattern.as_str()),
            Strategy::Template(parts) => format!("template \"{}\"", template_text(parts)),
            Strategy::Set(None) => "null".into(),
            Strategy::Set(Some(v)) => format!("set \"{v}\""),
            Strategy::Keep => "keep".into(),
            Strategy::Json(rules) => format!(
                "json: {}",
                rules
                    .iter()
                    .map(|r| r.path.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Strategy::Redact(kinds) => format!("redact: {}", kinds.join(", ")),
            Strategy::DateShift { days } => format!("date_shift ±{days} days"),
        }
    }

    /// Columns of the same row this strategy reads (templates).
    pub fn reads(&self) -> Vec<&str> {
        match self {
            Strategy::Template(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    TemplatePart::Column(c) => Some(c.as_str()),
                    TemplatePart::Text(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Column(String),
}

fn template_text(parts: &[TemplatePart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            TemplatePart::Text(t) => t.replace('{', "{{").replace('}', "}}"),
            TemplatePart::Column(c) => format!("{{{c}}}"),
        })
        .collect()
}

/// `json:` entry: a key path and the strategy for what it reaches.
#[derive(Debug, Clone)]
pub struct JsonRule {
    pub path: JsonPath,
    pub strategy: Strategy,
}

/// `contact.email`, `"*phone*"`, `"**.email"`: segments matched from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(pub Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A key, with `*` matching any run of characters.
    Key(String),
    /// `**`: any number of levels, including none.
    AnyDepth,
    /// `pattern~`, last only: the keys matching `pattern` themselves, not
    /// their values (`recipients.*~` renames every key of `recipients`),
    /// as JSONPath-Plus spells a property name.
    KeysOf(String),
}

impl JsonPath {
    pub fn parse(text: &str) -> Option<JsonPath> {
        if text.is_empty() {
            return None;
        }
        let parts: Vec<&str> = text.split('.').collect();
        let last = parts.len() - 1;
        let segments: Vec<Segment> = parts
            .iter()
            .enumerate()
            .map(|(i, s)| match *s {
                "**" => Segment::AnyDepth,
                key if i == last && key.ends_with('~') => {
                    Segment::KeysOf(key[..key.len() - 1].to_string())
                }
                key => Segment::Key(key.to_string()),
            })
            .collect();
        // `**` must lead to a key: on its own, or last, it names nothing.
        let ends_in_key = matches!(segments.last(), Some(Segment::Key(_) | Segment::KeysOf(_)));
        (ends_in_key
            && segments
                .iter()
                .all(|s| !matches!(s, Segment::Key(k) | Segment::KeysOf(k) if k.is_empty())))
        .then_some(JsonPath(segments))
    }

    /// Whether the path names object keys (it ends in `~`).
    pub fn names_keys(&self) -> bool {
        matches!(self.0.last(), Some(Segment::KeysOf(_)))
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match s {
                Segment::Key(k) => f.write_str(k)?,
                Segment::AnyDepth => f.write_str("**")?,
                Segment::KeysOf(k) => write!(f, "{k}~")?,
            }
        }
        Ok(())
    }
}

/// `*` matches any run of characters; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[derive(Debug, Clone)]
pub struct ColumnRule {
    pub strategy: Strategy,
    pub origin: Origin,
}

/// `keep:` of a table.
#[derive(Debug, Clone, Default)]
pub enum Keep {
    #[default]
    Listed,
    All(Origin),
}

/// The rules of one table, merged.
#[derive(Debug, Clone)]
pub struct TableRules {
    /// As written: `auth_user` or `schema.table`.
    pub name: String,
    pub origin: Origin,
    pub columns: BTreeMap<String, ColumnRule>,
    /// Columns listed in `keep:`, with where.
    pub kept: BTreeMap<String, Origin>,
    pub keep: Keep,
    pub truncate: Option<(bool, Origin)>,
    pub where_clause: Option<(String, Origin)>,
    pub except: Option<(String, Origin)>,
    /// Applies only when the table exists.
    pub optional: bool,
    /// Columns named by a file that marked the table `optional`: they may be
    /// missing too (Devise's modules add columns only some apps have).
    pub optional_columns: std::collections::BTreeSet<String>,
}

impl TableRules {
    fn new(name: &str, origin: Origin) -> Self {
        TableRules {
            name: name.to_string(),
            origin,
            columns: BTreeMap::new(),
            kept: BTreeMap::new(),
            keep: Keep::Listed,
            truncate: None,
            where_clause: None,
            except: None,
            optional: false,
            optional_columns: Default::default(),
        }
    }

    pub fn truncates(&self) -> bool {
        self.truncate.as_ref().is_some_and(|(t, _)| *t)
    }
}

/// `public.x` → `("public", "x")`; `x` → `("public", "x")`; a schema
/// whose name holds a dot is written in double quotes: `"my.app".x` →
/// `("my.app", "x")`. The table's name is everything after the schema.
pub fn split_table_name(name: &str) -> (&str, &str) {
    if let Some((schema, table)) = name
        .strip_prefix('"')
        .and_then(|rest| rest.split_once("\"."))
    {
        return (schema, table);
    }
    match name.split_once('.') {
        Some((schema, table)) => (schema, table),
        None => ("public", name),
    }
}

/// All rules files of a clone, merged.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub secret: Option<String>,
    /// Where [`RuleSet::secret`] came from, for the plan (never the value).
    pub secret_from: SecretFrom,
    pub locale: Locale,
    pub unknown_columns: UnknownColumns,
    /// `foreign: skip`: leave foreign servers, user mappings and foreign
    /// tables out of the clone (without it, a clone of a source that has
    /// them is refused).
    pub foreign_skip: bool,
    /// `schema: keep`: personal data found in the schema's column defaults,
    /// enum labels, functions, views, constraints and policies is copied as
    /// it is (without it, the clone is refused naming each object).
    /// Comments are redacted either way.
    pub schema_keep: bool,
    /// `large_objects: copy`: large objects are copied as they are (without
    /// it, they are left out and reported).
    pub large_objects_copy: bool,
    /// Keyed by `schema.table` (an unqualified name gets `public.`).
    pub tables: BTreeMap<String, TableRules>,
    /// The files read, in order (extends first).
    pub files: Vec<String>,
    /// Values to keep out of every output (the secret, secret variables).
    pub secrets: Vec<String>,
}

/// The variable read for the secret when no rules file sets `secret:`
/// (Greenmask's is `GREENMASK_GLOBAL_SALT`).
pub const SECRET_VAR: &str = "FLIGHTPATH_SECRET";

/// Where the secret of a [`RuleSet`] came from: what the plan says, never
/// the value, its length or a digest of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// A rules file's `secret:` (the first file that set it).
    File { file: String, variable: VariableIs },
    /// [`SECRET_VAR`], no rules file setting `secret:`.
    Variable,
    /// No secret: a random key for this run.
    None { variable: VariableIs },
}

/// [`SECRET_VAR`] as found beside a rules file's `secret:` (or its absence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableIs {
    Unset,
    /// Set to the empty string, which counts as unset.
    Empty,
    /// Set, to the value the rules file's `secret:` has too.
    Same,
    /// Set, to another value than the rules file's `secret:`.
    Other,
}

impl Default for SecretFrom {
    fn default() -> Self {
        SecretFrom::None {
            variable: VariableIs::Unset,
        }
    }
}

impl SecretFrom {
    /// For the plan's `secret` fact.
    pub fn describe(&self) -> String {
        match self {
            SecretFrom::File { file, variable } => match variable {
                VariableIs::Unset => format!("from {file}"),
                VariableIs::Empty => {
                    format!("from {file} (`{SECRET_VAR}` is set but empty, which counts as unset)")
                }
                VariableIs::Same => format!("from {file}, which reads it from `{SECRET_VAR}`"),
                VariableIs::Other => format!(
                    "from {file}: its `secret:` wins over `{SECRET_VAR}`, which is set too and is not used"
                ),
            },
            SecretFrom::Variable => format!("from `{SECRET_VAR}` (no rules file sets `secret:`)"),
            SecretFrom::None { variable } => {
                let mut text =
                    "none: a random key for this run, so fakes differ from run to run".to_string();
                if *variable == VariableIs::Empty {
                    text.push_str(&format!(
                        " (`{SECRET_VAR}` is set but empty, which counts as unset)"
                    ));
                }
                text
            }
        }
    }
}

impl RuleSet {
    /// Takes [`SECRET_VAR`]'s value (`None` when unset) as the secret
    /// unless a rules file set one: a file's `secret:` wins. The caller reads
    /// the variable once; this only decides, and registers the value as a
    /// secret to keep out of every output.
    pub fn with_secret_variable(mut self, value: Option<String>) -> Self {
        let variable = match &value {
            None => VariableIs::Unset,
            Some(v) if v.is_empty() => VariableIs::Empty,
            Some(v) if self.secret.as_deref() == Some(v.as_str()) => VariableIs::Same,
            Some(_) => VariableIs::Other,
        };
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty())
            && !self.secrets.contains(v)
        {
            self.secrets.push(v.clone());
        }
        self.secret_from = match (self.secret_from, self.secret.is_some()) {
            (SecretFrom::File { file, .. }, true) => SecretFrom::File { file, variable },
            (_, _) if variable == VariableIs::Unset || variable == VariableIs::Empty => {
                SecretFrom::None { variable }
            }
            (_, _) => {
                self.secret = value;
                SecretFrom::Variable
            }
        };
        self
    }
}

/// Why rules files could not be loaded: every reference that could not be
/// read, and every problem in the files that could, all at once.
#[derive(Debug, Default)]
pub struct RulesError {
    /// `(reference, why)`, for references as written by the caller.
    pub unreadable: Vec<(String, String)>,
    pub problems: Vec<Located>,
}

impl RulesError {
    /// One line per problem, for callers without a terminal to draw on.
    pub fn lines(&self) -> Vec<String> {
        self.unreadable
            .iter()
            .map(|(_, why)| why.clone())
            .chain(self.problems.iter().map(|l| {
                let help = l.problem.help.as_deref().unwrap_or_default();
                format!("{}: {help}", l.problem.message)
            }))
            .collect()
    }
}

/// `preset:django`, `preset:wagtail`, …: for messages.
pub fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|(name, _)| format!("`preset:{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one file said, before merging.
struct FileRules {
    secret: Option<(String, Origin)>,
    locale: Option<(Locale, Origin)>,
    unknown_columns: Option<UnknownColumns>,
    foreign_skip: bool,
    schema_keep: bool,
    large_objects_copy: bool,
    tables: Vec<TableRules>,
}

/// A reference to a rules file: a path or `preset:<name>`.
fn resolve(
    reference: &str,
    bases: &[PathBuf],
) -> Result<(String, String, Option<PathBuf>), String> {
    if let Some(name) = reference.strip_prefix("preset:") {
        let name = name.trim_end_matches(".yaml");
        return PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| (format!("preset:{n}"), text.to_string(), None))
            .ok_or_else(|| {
                let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                format!(
                    "no preset named `{name}`; the presets are: {}",
                    names.join(", ")
                )
            });
    }
    let path = bases
        .iter()
        .map(|base| base.join(reference))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            bases
                .first()
                .map_or_else(|| PathBuf::from(reference), |b| b.join(reference))
        });
    let text = yaml::read_source(&path)
        .map_err(|e| format!("cannot read rules file `{reference}`: {e}"))?;
    Ok((reference.to_string(), text, Some(path)))
}

/// Loads and merges `references` (paths, each looked for under `bases` in
/// order, or `preset:<name>`). Files side by side must not conflict.
pub fn load(references: &[String], bases: &[PathBuf], vars: &Vars) -> Result<RuleSet, RulesError> {
    let mut loader = Loader {
        vars,
        problems: Vec::new(),
        reading: Vec::new(),
        secrets: Vec::new(),
    };
    let mut files = Vec::new();
    let mut all = Merged {
        secret: None,
        locale: None,
        unknown_columns: None,
        foreign_skip: false,
        schema_keep: false,
        large_objects_copy: false,
        tables: BTreeMap::new(),
    };
    let mut unreadable = Vec::new();
    for reference in references {
        match loader.file(reference, bases, &mut files) {
            Ok(Some(merged)) => merge_into(&mut all, merged, Merge::Side, &mut loader.problems),
            Ok(None) => {}
            Err(e) => unreadable.push((reference.clone(), e)),
        }
    }
    if loader.problems.is_empty() && unreadable.is_empty() {
        let secret_from = all
            .secret
            .as_ref()
            .map_or(SecretFrom::default(), |(_, origin)| SecretFrom::File {
                file: origin.file.shown.clone(),
                variable: VariableIs::Unset,
            });
        Ok(RuleSet {
            secret: all.secret.map(|(s, _)| s),
            secret_from,
            locale: all.locale.map(|(l, _)| l).unwrap_or_default(),
            unknown_columns: all.unknown_columns.unwrap_or_default(),
            foreign_skip: all.foreign_skip,
            schema_keep: all.schema_keep,
            large_objects_copy: all.large_objects_copy,
            tables: all.tables,
            files,
            secrets: loader.secrets,
        })
    } else {
        Err(RulesError {
            unreadable,
            problems: loader.problems,
        })
    }
}

struct Loader<'v> {
    vars: &'v Vars,
    problems: Vec<Located>,
    /// Files being read (identity, name shown), for `extends` cycles.
    reading: Vec<(String, String)>,
    secrets: Vec<String>,
}

/// A file's rules merged with everything it extends.
struct Merged {
    secret: Option<(String, Origin)>,
    locale: Option<(Locale, Origin)>,
    unknown_columns: Option<UnknownColumns>,
    foreign_skip: bool,
    schema_keep: bool,
    large_objects_copy: bool,
    tables: BTreeMap<String, TableRules>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// The later file extends the earlier: it wins.
    Override,
    /// Files side by side: a disagreement is an error.
    Side,
}

impl Loader<'_> {
    fn file(
        &mut self,
        reference: &str,
        bases: &[PathBuf],
        files: &mut Vec<String>,
    ) -> Result<Option<Merged>, String> {
        let (shown, text, path) = resolve(reference, bases)?;
        // A file is itself by where it is, not by how it was named.
        let identity = path
            .as_ref()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .map_or_else(|| shown.clone(), |p| p.display().to_string());
        if self.reading.iter().any(|(id, _)| *id == identity) {
            let chain: Vec<&str> = self.reading.iter().map(|(_, s)| s.as_str()).collect();
            return Err(format!(
                "`extends` goes round in a circle: {} → {shown}",
                chain.join(" → ")
            ));
        }
        let file = Arc::new(SourceFile {
            shown: shown.clone(),
            text,
        });
        let mut cx = LoadCtx::new(&file.text, self.vars);
        let (extends, parsed) = match yaml::parse(&file.text) {
            Ok(root) => read_file(&mut cx, &root, &file),
            Err(err) => {
                cx.push(err.problem());
                (Vec::new(), None)
            }
        };
        self.secrets.append(&mut cx.secrets);
        let named = Arc::new(NamedSource::new(shown.clone(), file.text.clone()));
        let failed = !cx.diags.is_empty();
        for problem in cx.diags.problems {
            self.problems.push(Located {
                problem,
                source: named.clone(),
            });
        }
        let Some(parsed) = parsed.filter(|_| !failed) else {
            return Ok(None);
        };
        // The file's directory is the base of its own `extends`; a preset's
        // `extends` name other presets.
        let dirs = match &path {
            Some(p) => vec![p.parent().map(Path::to_path_buf).unwrap_or_default()],
            None => bases.to_vec(),
        };
        self.reading.push((identity, shown.clone()));
        let mut merged = Merged {
            secret: None,
            locale: None,
            unknown_columns: None,
            foreign_skip: false,
            schema_keep: false,
            large_objects_copy: false,
            tables: BTreeMap::new(),
        };
        for (parent, span) in extends {
            let parent = if path.is_none() && !parent.starts_with("preset:") {
                format!("preset:{parent}")
            } else {
                parent
            };
            match self.file(&parent, &dirs, files) {
                Ok(Some(inner)) => merge_into(&mut merged, inner, Merge::Side, &mut self.problems),
                Ok(None) => {}
                Err(e) => self.problems.push(Located {
                    problem: Problem::new(
                        "flightpath::anonymize::extends",
                        e,
                        span,
                        "cannot be read",
                    ),
                    source: named.clone(),
                }),
            }
        }
        self.reading.pop();
        let own = Merged {
            secret: parsed.secret,
            locale: parsed.locale,
            unknown_columns: parsed.unknown_columns,
            foreign_skip: parsed.foreign_skip,
            schema_keep: parsed.schema_keep,
            large_objects_copy: parsed.large_objects_copy,
            tables: parsed
                .tables
                .into_iter()
                .map(|t| (table_key(&t.name), t))
                .collect(),
        };
        merge_into(&mut merged, own, Merge::Override, &mut self.problems);
        if !files.contains(&shown) {
            files.push(shown);
        }
        Ok(Some(merged))
    }
}

/// `auth_user` → `public.auth_user`.
pub fn table_key(name: &str) -> String {
    let (schema, table) = split_table_name(name);
    format!("{schema}.{table}")
}

fn conflict(what: String, first: &Origin, second: &Origin) -> Located {
    second.located(
        Problem::new(
            "flightpath::anonymize::conflict",
            what,
            second.span,
            "conflicts with another rules file",
        )
        .help(format!(
            "also set at {first}; keep one of them, or make this file `extends:` the other so it overrides it"
        )),
    )
}

fn merge_into(into: &mut Merged, from: Merged, how: Merge, problems: &mut Vec<Located>) {
    // Files side by side must agree on the key and the locale: otherwise
    // every fake would depend on the order they are listed in.
    let side = how == Merge::Side;
    let files = "the rules files have";
    merge_setting(
        files,
        "secret",
        &mut into.secret,
        from.secret,
        side,
        problems,
    );
    merge_setting(
        files,
        "locale",
        &mut into.locale,
        from.locale,
        side,
        problems,
    );
    if from.unknown_columns.is_some() {
        // The stricter setting wins between files side by side.
        into.unknown_columns = match (how, into.unknown_columns, from.unknown_columns) {
            (Merge::Side, Some(UnknownColumns::Error), _) => Some(UnknownColumns::Error),
            (_, _, theirs) => theirs,
        };
    }
    // Any file that says `foreign: skip` leaves them out: each says what it
    // knows about the source, and without it the clone is refused.
    into.foreign_skip |= from.foreign_skip;
    // Likewise `schema: keep` and `large_objects: copy`: a file says so for
    // what it knows holds no personal data.
    into.schema_keep |= from.schema_keep;
    into.large_objects_copy |= from.large_objects_copy;
    for (key, table) in from.tables {
        let Some(existing) = into.tables.get_mut(&key) else {
            into.tables.insert(key, table);
            continue;
        };
        merge_table(existing, table, how, problems);
    }
}

fn merge_table(into: &mut TableRules, from: TableRules, how: Merge, problems: &mut Vec<Located>) {
    let side = how == Merge::Side;
    into.optional = into.optional && from.optional;
    into.optional_columns
        .extend(from.optional_columns.iter().cloned());
    for (name, rule) in from.columns {
        if side {
            if let Some(existing) = into.columns.get(&name) {
                // The same rule reached twice (two files extend one base).
                if existing.origin.is_same_place(&rule.origin) {
                    continue;
                }
                problems.push(conflict(
                    format!("column `{}.{name}` is ruled in two files", into.name),
                    &existing.origin,
                    &rule.origin,
                ));
                continue;
            }
            if let Some(kept) = into.kept.get(&name) {
                problems.push(conflict(
                    format!(
                        "column `{}.{name}` is ruled here and kept in another file",
                        into.name
                    ),
                    kept,
                    &rule.origin,
                ));
                continue;
            }
        }
        into.kept.remove(&name);
        into.columns.insert(name, rule);
    }
    for (name, origin) in from.kept {
        if into
            .kept
            .get(&name)
            .is_some_and(|o| o.is_same_place(&origin))
        {
            continue;
        }
        if let Some(existing) = into.columns.get(&name) {
            if side {
                problems.push(conflict(
                    format!(
                        "column `{}.{name}` is kept here and ruled in another file",
                        into.name
                    ),
                    &existing.origin,
                    &origin,
                ));
                continue;
            }
            into.columns.remove(&name);
        }
        into.kept.insert(name, origin);
    }
    if let Keep::All(origin) = from.keep {
        into.keep = Keep::All(origin);
    }
    merge_setting(
        &format!("table `{}` has", into.name),
        "truncate",
        &mut into.truncate,
        from.truncate,
        side,
        problems,
    );
    merge_setting(
        &format!("table `{}` has", into.name),
        "where",
        &mut into.where_clause,
        from.where_clause,
        side,
        problems,
    );
    merge_setting(
        &format!("table `{}` has", into.name),
        "except",
        &mut into.except,
        from.except,
        side,
        problems,
    );
}

/// `owner` is who has the setting, for the message: "table `x` has".
fn merge_setting<T: PartialEq>(
    owner: &str,
    key: &str,
    into: &mut Option<(T, Origin)>,
    from: Option<(T, Origin)>,
    side: bool,
    problems: &mut Vec<Located>,
) {
    let Some((value, origin)) = from else { return };
    if side && let Some((existing, first)) = into.as_ref() {
        if *existing != value {
            problems.push(conflict(
                format!("{owner} two different `{key}:` settings"),
                first,
                &origin,
            ));
        }
        return;
    }
    *into = Some((value, origin));
}

/// Reads one file's top level: its `extends` and its own rules.
fn read_file(
    cx: &mut LoadCtx,
    root: &Node,
    file: &Arc<SourceFile>,
) -> (Vec<(String, Span)>, Option<FileRules>) {
    let Some(mut top) = MapReader::new(cx, root, "the rules file") else {
        return (Vec::new(), None);
    };
    let extends = top.string_list(cx, "extends").unwrap_or_default();
    let at = |node: &Node| Origin {
        file: file.clone(),
        span: node.span,
    };
    let secret = top.get("secret").and_then(|node| {
        let value = cx.string(node, "`secret`")?;
        // The secret is never printed, whatever its variable is called.
        if !value.is_empty() {
            cx.secrets.push(value.clone());
        }
        Some((value, at(node)))
    });
    // `secret: ${FLIGHTPATH_SECRET:-}` with the variable unset means no secret.
    let secret = secret.filter(|(s, _)| !s.is_empty());
    let locale = top
        .get("locale")
        .and_then(|node| read_locale(cx, node, "`locale`").map(|l| (l, at(node))));
    let unknown_columns = top.get("unknown_columns").and_then(|node| {
        match cx.string(node, "`unknown_columns`").as_deref() {
            Some("error") => Some(UnknownColumns::Error),
            Some("warn") => Some(UnknownColumns::Warn),
            Some(other) => {
                cx.push(
                    Problem::new(
                        "flightpath::anonymize::unknown-columns",
                        format!("`unknown_columns` must be `error` or `warn`, not `{other}`"),
                        node.span,
                        "not a setting",
                    )
                    .suggest(other, ["error", "warn"]),
                );
                None
            }
            None => None,
        }
    });
    let foreign_skip = top
        .get("foreign")
        .is_some_and(|node| read_foreign(cx, node));
    let schema_keep = top.get("schema").is_some_and(|node| {
        read_choice(
            cx,
            node,
            "schema",
            "flightpath::anonymize::schema",
            ["error", "keep"],
            "refuse personal data found in defaults, enum labels, functions, views, constraints and policies, or copy it as it is",
        ) == Some("keep")
    });
    let large_objects_copy = top.get("large_objects").is_some_and(|node| {
        read_choice(
            cx,
            node,
            "large_objects",
            "flightpath::anonymize::large-objects",
            ["skip", "copy"],
            "leave large objects out of staging, or copy them as they are",
        ) == Some("copy")
    });
    let tables_node = top.get("tables");
    top.finish(cx);
    let mut tables = Vec::new();
    if let Some(node) = tables_node {
        match &node.value {
            Value::Map(entries) => {
                for (key, value) in entries {
                    let origin = Origin {
                        file: file.clone(),
                        span: key.span,
                    };
                    if let Some(t) = read_table(cx, &key.name, value, origin, file) {
                        tables.push(t);
                    }
                }
            }
            Value::Null => {}
            _ => cx.push(Problem::new(
                "flightpath::yaml::type",
                format!(
                    "`tables` must be a mapping of table names, found {}",
                    node.kind()
                ),
                node.span,
                "expected a mapping",
            )),
        }
    }
    (
        extends,
        Some(FileRules {
            secret,
            locale,
            unknown_columns,
            foreign_skip,
            schema_keep,
            large_objects_copy,
            tables,
        }),
    )
}

/// A top-level setting that is one of two words: the word given, `None`
/// (after a problem) for anything else.
fn read_choice(
    cx: &mut LoadCtx,
    node: &Node,
    key: &str,
    code: &'static str,
    choices: [&'static str; 2],
    meaning: &str,
) -> Option<&'static str> {
    let value = cx.string(node, &format!("`{key}`"))?;
    if let Some(choice) = choices.iter().find(|c| **c == value) {
        return Some(choice);
    }
    cx.push(
        Problem::new(
            code,
            format!(
                "`{key}` must be `{}` or `{}` ({meaning}), not `{value}`",
                choices[0], choices[1]
            ),
            node.span,
            "not a setting",
        )
        .suggest(&value, choices),
    );
    None
}

/// `foreign: skip`, the only value: true when it is given.
fn read_foreign(cx: &mut LoadCtx, node: &Node) -> bool {
    match cx.string(node, "`foreign`").as_deref() {
        Some("skip") => true,
        Some(other) => {
            cx.push(
                Problem::new(
                    "flightpath::anonymize::foreign",
                    format!(
                        "`foreign` can only be `skip` (leave foreign servers, user mappings and foreign tables out), not `{other}`"
                    ),
                    node.span,
                    "not a setting",
                )
                .suggest(other, ["skip"]),
            );
            false
        }
        None => false,
    }
}

fn read_table(
    cx: &mut LoadCtx,
    name: &str,
    node: &Node,
    origin: Origin,
    file: &Arc<SourceFile>,
) -> Option<TableRules> {
    // `"my.app".orders`, `"public".odd.name`: a quoted schema, then the
    // table's name, dots and all (see `split_table_name`).
    let quoted = name.starts_with('"') && {
        let (schema, table) = split_table_name(name);
        !schema.is_empty() && !table.is_empty() && schema.len() + table.len() + 3 == name.len()
    };
    if !quoted && (name.split('.').count() > 2 || name.split('.').any(str::is_empty)) {
        cx.push(
            Problem::new(
                "flightpath::anonymize::table-name",
                format!("`{name}` is not a table name"),
                origin.span,
                "expected `table` or `schema.table`",
            )
            .help("write the table as `name` (schema public) or `schema.name`; when a name holds a dot, quote the schema: `\"my.app\".orders`, `\"public\".odd.name`"),
        );
        return None;
    }
    let what = format!("table `{name}`");
    let mut reader = MapReader::new(cx, node, what.clone())?;
    let mut table = TableRules::new(name, origin);
    let at = |span: Span| Origin {
        file: file.clone(),
        span,
    };
    if let Some(node) = reader.get("columns") {
        match &node.value {
            Value::Map(entries) => {
                for (key, value) in entries {
                    let what = format!("column `{name}.{}`", key.name);
                    if let Some(strategy) = read_strategy(cx, value, &what, 0) {
                        table.columns.insert(
                            key.name.clone(),
                            ColumnRule {
                                strategy,
                                origin: at(key.span),
                            },
                        );
                    }
                }
            }
            Value::Null => {}
            _ => cx.push(Problem::new(
                "flightpath::yaml::type",
                format!("{what} `columns` must be a mapping of column names to rules"),
                node.span,
                "expected a mapping",
            )),
        }
    }
    if let Some(node) = reader.get("keep") {
        if node.as_str() == Some("all") {
            table.keep = Keep::All(at(node.span));
        } else if let Some(list) = cx.string_list(node, &format!("{what} `keep`")) {
            for (column, span) in list {
                if table.columns.contains_key(&column) {
                    cx.push(
                        Problem::new(
                            "flightpath::anonymize::keep-and-rule",
                            format!("column `{name}.{column}` is both kept and ruled"),
                            span,
                            "also has a rule under `columns`",
                        )
                        .help("remove it from `keep:` or remove its rule"),
                    );
                    continue;
                }
                table.kept.insert(column, at(span));
            }
        }
    }
    if let Some(node) = reader.get("truncate")
        && let Some(value) = cx.bool(node, &format!("{what} `truncate`"))
    {
        table.truncate = Some((value, at(node.span)));
    }
    for (key, slot) in [("where", 0), ("except", 1)] {
        if let Some(node) = reader.get(key)
            && let Some(sql) = cx.string(node, &format!("{what} `{key}`"))
        {
            if sql.trim().is_empty() || sql.contains(';') {
                cx.push(
                        Problem::new(
                            "flightpath::anonymize::predicate",
                            format!("{what} `{key}` must be one SQL condition"),
                            node.span,
                            "not a condition",
                        )
                        .help("write a boolean expression over the table's columns, such as `is_staff` or `created_at > now() - interval '90 days'`"),
                    );
                continue;
            }
            let value = Some((sql, at(node.span)));
            if slot == 0 {
                table.where_clause = value;
            } else {
                table.except = value;
            }
        }
    }
    table.optional = reader.bool(cx, "optional").unwrap_or(false);
    if table.optional {
        table.optional_columns = table
            .columns
            .keys()
            .chain(table.kept.keys())
            .cloned()
            .collect();
    }
    reader.finish(cx);
    if table.truncates() && (!table.columns.is_empty() || table.except.is_some()) {
        cx.push(
            Problem::new(
                "flightpath::anonymize::truncate",
                format!("{what} is truncated, so its column rules and `except` would never apply"),
                table.origin.span,
                "truncated",
            )
            .help("remove `truncate: true`, or the rules"),
        );
    }
    Some(table)
}

/// A column rule: `keep`, `null`, `hash`, or a mapping with one strategy key
/// and its options.
/// The entries of a `json:` mapping (or of a key nested in one) into
/// `rules`, a nested key's path joined to `prefix` with `.`: `request: { ip:
/// { fake: ipv4 } }` is the rule of `request.ip`. A value is a nested path
/// when none of its keys is a strategy's name; a mapping that mixes strategy
/// names with other keys, or gives a strategy a mapping it cannot take, is
/// ambiguous and an error showing the dotted form.
fn read_json_entries(
    cx: &mut LoadCtx,
    entries: &[(yaml::Key, Node)],
    prefix: Option<&str>,
    what: &str,
    depth: usize,
    rules: &mut Vec<JsonRule>,
) {
    for (key, value) in entries {
        let text = match prefix {
            Some(prefix) => format!("{prefix}.{}", key.name),
            None => key.name.clone(),
        };
        let bad_path = |cx: &mut LoadCtx| {
            cx.push(
                Problem::new(
                    "flightpath::anonymize::json-path",
                    format!("{what}: `{text}` is not a key path"),
                    key.span,
                    "not a key path",
                )
                .help("write keys separated by `.`, none empty, ending in a key: `contact.email`, `\"**.email\"`"),
            );
        };
        match json_shape(value) {
            JsonShape::Nested(children) => {
                if key.name.is_empty() || key.name.split('.').any(str::is_empty) {
                    bad_path(cx);
                    continue;
                }
                if children.is_empty() {
                    cx.push(
                        Problem::new(
                            "flightpath::anonymize::json",
                            format!("{what}: json `{text}` holds neither a rule nor nested keys"),
                            value.span,
                            "empty",
                        )
                        .help(format!(
                            "write a rule such as `{}: {{ fake: email }}`, or nested keys",
                            key.name
                        )),
                    );
                    continue;
                }
                read_json_entries(cx, children, Some(&text), what, depth, rules);
            }
            JsonShape::Ambiguous {
                strategy,
                others,
                children,
            } => {
                let name = &strategy.name;
                let (why, dotted, otherwise) = if others.is_empty() {
                    let child = children.first().map_or("key", String::as_str);
                    (
                        "but holds a mapping, which that strategy does not take".to_string(),
                        format!("`\"{text}.{name}.{child}\": {{ … }}`"),
                        format!("give it its own value: `{}: {{ {name}: … }}`", key.name),
                    )
                } else {
                    let quoted: Vec<String> = others.iter().map(|o| format!("`{o}`")).collect();
                    let moved: Vec<String> =
                        others.iter().map(|o| format!("`{text}.{o}`")).collect();
                    (
                        format!("and stands beside the JSON key(s) {}", quoted.join(", ")),
                        format!("`\"{text}.{name}\": {{ … }}`"),
                        format!("give those keys their own path(s): {}", moved.join(", ")),
                    )
                };
                cx.push(
                    Problem::new(
                        "flightpath::anonymize::json-ambiguous",
                        format!(
                            "{what}: json `{text}` is ambiguous: `{name}` is spelled like a strategy {why}"
                        ),
                        strategy.span,
                        "a strategy or a JSON key?",
                    )
                    .help(format!(
                        "if `{name}` is a JSON key, write its path dotted, as a key of `json:`: {dotted}; \
                         if it is the rule for `{text}`, {otherwise}"
                    )),
                );
            }
            JsonShape::Rule => {
                let Some(path) = JsonPath::parse(&text) else {
                    bad_path(cx);
                    continue;
                };
                if rules.iter().any(|r| r.path == path) {
                    cx.push(
                        Problem::new(
                            "flightpath::anonymize::json",
                            format!("{what}: json `{text}` is ruled twice"),
                            key.span,
                            "ruled again",
                        )
                        .help(
                            "a nested key and a dotted path name the same place; keep one of them",
                        ),
                    );
                    continue;
                }
                let inner = format!("{what} json `{text}`");
                if let Some(strategy) = read_strategy(cx, value, &inner, depth) {
                    if path.names_keys() && !renames_keys(&strategy) {
                        cx.push(
                            Problem::new(
                                "flightpath::anonymize::json-keys",
                                format!(
                                    "{what}: json `{text}` names object keys (it ends in `~`), \
                                     and `{}` cannot make one: a key stays a string, distinct from its neighbours",
                                    strategy.describe()
                                ),
                                value.span,
                                "not for keys",
                            )
                            .help(
                                "give keys `fake`, `hash`, `mask`, `regex` or `redact`; \
                                 to drop the values instead, rule the path without `~`",
                            ),
                        );
                        continue;
                    }
                    rules.push(JsonRule { path, strategy });
                }
            }
        }
    }
}

/// Whether `strategy` can rename object keys: it makes a string of a
/// string, different for different keys (a constant, NULL or a template
/// would fold every key into one).
fn renames_keys(strategy: &Strategy) -> bool {
    matches!(
        strategy,
        Strategy::Fake { .. }
            | Strategy::Hash { .. }
            | Strategy::Mask { .. }
            | Strategy::Regex { .. }
            | Strategy::Redact(_)
    )
}

/// What the value of a key in `json:` is.
enum JsonShape<'a> {
    /// A rule for the key's path.
    Rule,
    /// Keys under the key's path.
    Nested(&'a [(yaml::Key, Node)]),
    /// A mapping whose key `strategy` could be either.
    Ambiguous {
        strategy: &'a yaml::Key,
        /// The keys beside it that are no strategy.
        others: Vec<&'a str>,
        /// The keys of its own value, when that is a mapping.
        children: Vec<String>,
    },
}

fn json_shape(value: &Node) -> JsonShape<'_> {
    let Value::Map(entries) = &value.value else {
        return JsonShape::Rule;
    };
    let is_strategy = |k: &yaml::Key| STRATEGIES.contains(&k.name.as_str());
    let is_option = |k: &yaml::Key| matches!(k.name.as_str(), "unique" | "locale");
    if !entries.iter().any(|(k, _)| is_strategy(k)) {
        // `{ unique: true }` is a rule missing its strategy, not a path.
        let option_set = entries
            .iter()
            .any(|(k, v)| is_option(k) && !matches!(v.value, Value::Map(_)));
        return if option_set {
            JsonShape::Rule
        } else {
            JsonShape::Nested(entries)
        };
    }
    let others: Vec<&str> = entries
        .iter()
        .filter(|(k, _)| !is_strategy(k) && !is_option(k))
        .map(|(k, _)| k.name.as_str())
        .collect();
    for (key, node) in entries.iter().filter(|(k, _)| is_strategy(k)) {
        // Only `mask` and `regex` take a mapping inside `json:`.
        let takes_map = matches!(key.name.as_str(), "mask" | "regex");
        match &node.value {
            Value::Map(children) if !takes_map => {
                return JsonShape::Ambiguous {
                    strategy: key,
                    others,
                    children: children.iter().map(|(k, _)| k.name.clone()).collect(),
                };
            }
            _ if !others.is_empty() => {
                return JsonShape::Ambiguous {
                    strategy: key,
                    others,
                    children: Vec::new(),
                };
            }
            _ => {}
        }
    }
    JsonShape::Rule
}

fn read_strategy(cx: &mut LoadCtx, node: &Node, what: &str, depth: usize) -> Option<Strategy> {
    let entries = match &node.value {
        Value::Null => return Some(Strategy::Set(None)),
        Value::Str(s) => {
            return match s.as_str() {
                "keep" => Some(Strategy::Keep),
                "null" => Some(Strategy::Set(None)),
                "hash" => Some(Strategy::Hash { length: None }),
                other => {
                    cx.push(
                        Problem::new(
                            "flightpath::anonymize::strategy",
                            format!("{what}: unknown strategy `{other}`"),
                            node.span,
                            "not a strategy",
                        )
                        .suggest(other, STRATEGIES.iter().copied())
                        .help_if_none(
                            "write `keep`, `null`, `hash`, or a mapping such as `{ fake: email }`",
                        ),
                    );
                    None
                }
            };
        }
        Value::Map(entries) => entries,
        _ => {
            cx.push(Problem::new(
                "flightpath::anonymize::strategy",
                format!(
                    "{what} must be a rule such as `{{ fake: email }}`, found {}",
                    node.kind()
                ),
                node.span,
                "not a rule",
            ));
            return None;
        }
    };
    let named: Vec<&str> = entries
        .iter()
        .map(|(k, _)| k.name.as_str())
        .filter(|k| STRATEGIES.contains(k))
        .collect();
    if named.len() != 1 {
        let (message, help) = if named.is_empty() {
            let unknown = entries
                .iter()
                .map(|(k, _)| k.name.as_str())
                .find(|k| !matches!(*k, "unique" | "locale"));
            let help = unknown
                .and_then(|k| {
                    crate::syntax::diagnostics::did_you_mean(k, STRATEGIES.iter().copied())
                })
                .map(|best| format!("did you mean `{best}`?"))
                .unwrap_or_else(|| format!("strategies: {}", STRATEGIES.join(", ")));
            (format!("{what} names no strategy"), help)
        } else {
            (
                format!(
                    "{what} names {} strategies: {}",
                    named.len(),
                    named.join(", ")
                ),
                "a column gets exactly one strategy".to_string(),
            )
        };
        cx.push(
            Problem::new(
                "flightpath::anonymize::strategy",
                message,
                node.span,
                "one strategy expected",
            )
            .help(help),
        );
        return None;
    }
    let mut reader = MapReader::new(cx, node, what.to_string())?;
    let strategy = match named[0] {
        "fake" => {
            let node = reader.get("fake")?;
            let name = cx.string(node, &format!("{what} `fake`"))?;
            let Some(kind) = FakeKind::parse(&name) else {
                cx.push(
                    Problem::new(
                        "flightpath::anonymize::fake-kind",
                        format!("{what}: unknown fake kind `{name}`"),
                        node.span,
                        "not a fake kind",
                    )
                    .suggest(&name, fakes::FAKE_KINDS.iter().copied())
                    .help_if_none(format!("kinds: {}", fakes::FAKE_KINDS.join(", "))),
                );
                reader.get("unique");
                reader.get("locale");
                reader.finish(cx);
                return None;
            };
            let unique_node = reader.get("unique");
            let unique = unique_node
                .and_then(|n| cx.bool(n, &format!("{what} `unique`")))
                .unwrap_or(false);
            if unique && !kind.supports_unique() {
                cx.push(
                    Problem::new(
                        "flightpath::anonymize::unique",
                        format!("{what}: `unique: true` is not possible for `fake: {kind}`"),
                        unique_node.map_or(node.span, |n| n.span),
                        "cannot be unique",
                    )
                    .help("its values come from a small or fixed range; use `hash` or `template` for a unique column"),
                );
            }
            let locale = reader
                .get("locale")
                .and_then(|n| read_locale(cx, n, &format!("{what} `locale`")));
            Strategy::Fake {
                kind,
                unique,
                locale,
            }
        }
        "hash" => {
            let node = reader.get("hash")?;
            let length = match &node.value {
                Value::Bool(true) | Value::Null => None,
                Value::Int(n) if (1..=super::keyed::HASH_MAX_LEN as i64).contains(n) => {
                    Some(*n as usize)
                }
                _ => {
                    cx.push(
                        Problem::new(
                            "flightpath::anonymize::hash",
                            format!(
                                "{what}: `hash` takes `true` or a length from 1 to {}",
                                super::keyed::HASH_MAX_LEN
                            ),
                            node.span,
                            "not a length",
                        )
                        .help("`{ hash: true }` writes 64 hex characters; `{ hash: 16 }` the first 16"),
                    );
                    None
                }
            };
            Strategy::Hash { length }
        }
        "mask" => {
            let node = reader.get("mask")?;
            let mut m = MapReader::new(cx, node, format!("{what} `mask`"))?;
            let first = m.u64(cx, "first").unwrap_or(0) as usize;
            let last = m.u64(cx, "last").unwrap_or(0) as usize;
            let with = match m.string(cx, "with") {
                None => '*',
                Some(s) if s.chars().count() == 1 => s.chars().next().unwrap_or('*'),
                Some(_) => {
                    cx.push(Problem::new(
                        "flightpath::anonymize::mask",
                        format!("{what}: `mask.with` must be one character"),
                        node.span,
                        "one character",
                    ));
                    '*'
                }
            };
            m.finish(cx);
            Strategy::Mask { first, last, with }
        }
        "regex" => {
            let node = reader.get("regex")?;
            let mut m = MapReader::new(cx, node, format!("{what} `regex`"))?;
            let pattern_node = m.require(cx, "pattern");
            let replace = m.required_string(cx, "replace");
            m.finish(cx);
            let pattern_node = pattern_node?;
            let pattern = cx.string(pattern_node, &format!("{what} `regex.pattern`"))?;
            match Regex::new(&pattern) {
                Ok(re) => Strategy::Regex {
                    pattern: re,
                    replace: replace?,
                },
                Err(e) => {
                    cx.push(Problem::new(
                        "flightpath::anonymize::regex",
                        format!("{what}: invalid pattern: {e}"),
                        pattern_node.span,
                        "invalid pattern",
                    ));
                    return None;
                }
            }
        }
        "template" => {
            let node = reader.get("template")?;
            let text = cx.string(node, &format!("{what} `template`"))?;
            match parse_template(&text) {
                Ok(parts) => Strategy::Template(parts),
                Err(e) => {
                    cx.push(
                        Problem::new(
                            "flightpath::anonymize::template",
                            format!("{what}: {e}"),
                            node.span,
                            "invalid template",
                        )
                        .help(
                            "write other columns as `{column}` and literal braces as `{{` and `}}`",
                        ),
                    );
                    return None;
                }
            }
        }
        "set" => {
            let node = reader.get("set")?;
            match &node.value {
                Value::Null => Strategy::Set(None),
                _ => Strategy::Set(Some(cx.string(node, &format!("{what} `set`"))?)),
            }
        }
        flag @ ("null" | "keep") => {
            let node = reader.get(if flag == "null" { "null" } else { "keep" })?;
            if !matches!(node.value, Value::Bool(true) | Value::Null) {
                cx.push(Problem::new(
                    "flightpath::anonymize::strategy",
                    format!("{what}: write `{flag}: true` (or just `{flag}`)"),
                    node.span,
                    "expected `true`",
                ));
            }
            if flag == "null" {
                Strategy::Set(None)
            } else {
                Strategy::Keep
            }
        }
        "json" => {
            let node = reader.get("json")?;
            let Value::Map(entries) = &node.value else {
                cx.push(
                    Problem::new(
                        "flightpath::anonymize::json",
                        format!("{what}: `json` must map key paths to rules"),
                        node.span,
                        "expected a mapping",
                    )
                    .help("for example `json: { email: { fake: email }, \"*phone*\": { fake: phone } }`"),
                );
                return None;
            };
            if depth > 0 {
                cx.push(
                    Problem::new(
                        "flightpath::anonymize::json",
                        format!("{what}: `json` cannot be nested inside `json`"),
                        node.span,
                        "nested",
                    )
                    .help("write the nested key as a path instead: `outer.inner`"),
                );
                return None;
            }
            let mut rules = Vec::new();
            read_json_entries(cx, entries, None, what, depth + 1, &mut rules);
            if entries.is_empty() {
                cx.push(
                    Problem::new(
                        "flightpath::anonymize::json",
                        format!("{what}: `json` names no key path, so it would change nothing"),
                        node.span,
                        "empty",
                    )
                    .help("add a rule per key: `json: { email: { fake: email } }`, or use `keep`"),
                );
                return None;
            }
            Strategy::Json(rules)
        }
        "redact" => {
            let node = reader.get("redact")?;
            let list = cx.string_list(node, &format!("{what} `redact`"))?;
            let list_was_empty = list.is_empty();
            let mut kinds = Vec::new();
            for (kind, span) in list {
                if REDACT_KINDS.contains(&kind.as_str()) {
                    kinds.push(kind);
                } else {
                    cx.push(
                        Problem::new(
                            "flightpath::anonymize::redact",
                            format!("{what}: `redact` cannot find `{kind}`"),
                            span,
                            "unknown kind",
                        )
                        .suggest(&kind, REDACT_KINDS.iter().copied())
                        .help_if_none(format!("it finds: {}", REDACT_KINDS.join(", "))),
                    );
                }
            }
            if kinds.is_empty() {
                if list_was_empty {
                    cx.push(
                        Problem::new(
                            "flightpath::anonymize::redact",
                            format!(
                                "{what}: `redact` names nothing to find, so it would change nothing"
                            ),
                            node.span,
                            "empty",
                        )
                        .help(format!("list what to find: {}", REDACT_KINDS.join(", "))),
                    );
                }
                return None;
            }
            Strategy::Redact(kinds)
        }
        "date_shift" => {
            let node = reader.get("date_shift")?;
            let days = cx.u64(node, &format!("{what} `date_shift`"))?;
            if days == 0 || days > 36_500 {
                cx.push(Problem::new(
                    "flightpath::anonymize::date-shift",
                    format!("{what}: `date_shift` takes a number of days from 1 to 36500"),
                    node.span,
                    "out of range",
                ));
                return None;
            }
            Strategy::DateShift { days: days as u32 }
        }
        _ => unreachable!("listed in STRATEGIES"),
    };
    // Options only `fake` takes.
    if !matches!(strategy, Strategy::Fake { .. }) {
        for option in ["unique", "locale"] {
            if let Some((key, _)) = entries.iter().find(|(k, _)| k.name == option) {
                reader.get(option);
                cx.push(
                    Problem::new(
                        "flightpath::anonymize::option",
                        format!("{what}: `{option}` only applies to `fake`"),
                        key.span,
                        "not an option of this strategy",
                    )
                    .help("remove it; `unique` and `locale` are options of `fake`"),
                );
            }
        }
    }
    reader.finish(cx);
    Some(strategy)
}

/// A `locale:` value, with the locales there are when it is none of them.
fn read_locale(cx: &mut LoadCtx, node: &Node, what: &str) -> Option<Locale> {
    let name = cx.string(node, what)?;
    let locale = Locale::parse(&name);
    if locale.is_none() {
        cx.push(
            Problem::new(
                "flightpath::anonymize::locale",
                format!("unknown locale `{name}`"),
                node.span,
                "not a locale",
            )
            .suggest(&name, fakes::LOCALES.iter().copied())
            .help_if_none(format!("use one of: {}", fakes::LOCALES.join(", "))),
        );
    }
    locale
}

/// `user{id}@example.com` → text and column references; `{{`/`}}` are
/// literal braces.
pub fn parse_template(text: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("`{{{name}` is not closed with `}}`")),
                    }
                }
                let name = name.trim().to_string();
                if name.is_empty() {
                    return Err("`{}` names no column".into());
                }
                if !literal.is_empty() {
                    parts.push(TemplatePart::Text(std::mem::take(&mut literal)));
                }
                parts.push(TemplatePart::Column(name));
            }
            '}' => return Err("a lone `}` (write `}}` for a literal brace)".into()),
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(TemplatePart::Text(literal));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn load_dir(dir: &Path, files: &[&str]) -> Result<RuleSet, RulesError> {
        let vars = Vars::only(BTreeMap::from([("SECRET".to_string(), "s3".to_string())]));
        let files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
        load(&files, &[dir.to_path_buf()], &vars)
    }

    fn messages(err: RulesError) -> Vec<String> {
        err.lines()
    }

    #[test]
    fn reads_every_strategy() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.yaml",
            r#"
secret: ${SECRET}
locale: en_GB
tables:
  auth_user:
    columns:
      email: { fake: email, unique: true }
      username: { template: "user{id}" }
      password: { set: "!" }
      token: hash
      short: { hash: 8 }
      last_name: { mask: { first: 1 } }
      phone: { regex: { pattern: "[0-9]", replace: "0" } }
      gone: null
      bio: { redact: [email, phone] }
      born: { date_shift: 30 }
      prefs: { json: { email: { fake: email }, "*phone*": { fake: phone }, "**.ip": null } }
      ok: keep
    keep: [id, is_staff]
    except: is_staff
  audit.log: { truncate: true }
"#,
        );
        let set = load_dir(dir.path(), &["r.yaml"]).unwrap();
        assert_eq!(set.secret.as_deref(), Some("s3"));
        assert_eq!(set.locale, Locale::EnGb);
        let user = &set.tables["public.auth_user"];
        assert_eq!(user.columns.len(), 12);
        assert!(matches!(
            user.columns["email"].strategy,
            Strategy::Fake {
                kind: FakeKind::Email,
                unique: true,
                ..
            }
        ));
        assert_eq!(user.columns["username"].strategy.reads(), vec!["id"],);
        assert!(matches!(user.columns["gone"].strategy, Strategy::Set(None)));
        let Strategy::Json(rules) = &user.columns["prefs"].strategy else {
            panic!()
        };
        assert_eq!(
            rules[2].path.0,
            vec![Segment::AnyDepth, Segment::Key("ip".into())]
        );
        assert_eq!(user.kept.len(), 2);
        assert_eq!(user.except.as_ref().unwrap().0, "is_staff");
        assert!(set.tables["audit.log"].truncates());
        assert_eq!(user.columns["email"].origin.location(), "r.yaml:7:7");
    }

    #[test]
    fn every_mistake_is_reported_with_a_suggestion() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.yaml",
            r#"
locale: fr
unknwon_columns: warn
tables:
  users:
    colums: {}
    columns:
      a: { fake: emial }
      b: { fkae: email }
      c: { fake: phone, unique: true }
      d: { hash: 100 }
      e: { regex: { pattern: "(", replace: "" } }
      f: { template: "user{id" }
      g: { redact: [emial] }
      h: { set: "x", hash: true }
      i: { set: "x", unique: true }
      j: nope
      k: keep
    keep: [k]
"#,
        );
        let problems = messages(load_dir(dir.path(), &["r.yaml"]).unwrap_err());
        let all = problems.join("\n");
        for expected in [
            "unknown locale `fr`",
            "unknown key `unknwon_columns`",
            "did you mean `unknown_columns`?",
            "did you mean `columns`?",
            "unknown fake kind `emial`: did you mean `email`?",
            "names no strategy: did you mean `fake`?",
            "`unique: true` is not possible for `fake: phone`",
            "`hash` takes `true` or a length",
            "invalid pattern",
            "is not closed",
            "`redact` cannot find `emial`: did you mean `email`?",
            "names 2 strategies",
            "`unique` only applies to `fake`",
            "unknown strategy `nope`",
            "is both kept and ruled",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn extends_overrides_and_side_by_side_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "base.yaml",
            "tables:\n  users:\n    columns:\n      email: { fake: email }\n      name: { fake: name }\n",
        );
        write(
            dir.path(),
            "site.yaml",
            "extends: [base.yaml]\ntables:\n  users:\n    keep: [name]\n    columns:\n      email: { hash: true }\n",
        );
        let set = load_dir(dir.path(), &["site.yaml"]).unwrap();
        let users = &set.tables["public.users"];
        assert!(matches!(
            users.columns["email"].strategy,
            Strategy::Hash { .. }
        ));
        assert!(users.kept.contains_key("name") && !users.columns.contains_key("name"));
        assert_eq!(set.files, vec!["base.yaml", "site.yaml"]);

        write(
            dir.path(),
            "other.yaml",
            "tables:\n  public.users:\n    columns:\n      email: { fake: safe_email }\n    where: \"id > 1\"\n",
        );
        write(
            dir.path(),
            "third.yaml",
            "tables:\n  users:\n    where: \"id > 2\"\n",
        );
        let problems =
            messages(load_dir(dir.path(), &["base.yaml", "other.yaml", "third.yaml"]).unwrap_err());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("`public.users.email` is ruled in two files")
                || problems[0].contains("`users.email` is ruled in two files")
        );
        assert!(problems[0].contains("base.yaml:4:7"), "{}", problems[0]);
        assert!(problems[1].contains("two different `where:`"));
    }

    #[test]
    fn two_files_extending_one_base_do_not_conflict_with_it() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "base.yaml",
            "tables:\n  users:\n    columns:\n      email: { fake: email }\n    keep: [id]\n",
        );
        write(
            dir.path(),
            "a.yaml",
            "extends: [base.yaml]\ntables:\n  a: { keep: all }\n",
        );
        write(
            dir.path(),
            "b.yaml",
            "extends: [base.yaml]\ntables:\n  b: { keep: all }\n",
        );
        let set = load_dir(dir.path(), &["a.yaml", "b.yaml"]).unwrap();
        assert_eq!(set.tables.len(), 3);
        assert_eq!(set.files, vec!["base.yaml", "a.yaml", "b.yaml"]);
    }

    #[test]
    fn files_side_by_side_must_agree_on_secret_and_locale() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "secret: s3cr3t-a\nlocale: en\n");
        write(dir.path(), "b.yaml", "secret: s3cr3t-b\nlocale: en_GB\n");
        write(dir.path(), "c.yaml", "secret: s3cr3t-a\nlocale: en\n");
        let all = messages(load_dir(dir.path(), &["a.yaml", "b.yaml"]).unwrap_err()).join("\n");
        assert!(all.contains("two different `secret:` settings"), "{all}");
        assert!(all.contains("two different `locale:` settings"), "{all}");
        assert!(!all.contains("s3cr3t"), "the secret is never shown: {all}");
        assert!(load_dir(dir.path(), &["a.yaml", "c.yaml"]).is_ok());
    }

    #[test]
    fn rules_that_would_change_nothing_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.yaml",
            "tables:\n  t:\n    columns:\n      a: { redact: [] }\n      b: { json: {} }\n      c: { json: { \"contact.**\": null } }\n",
        );
        let all = messages(load_dir(dir.path(), &["r.yaml"]).unwrap_err()).join("\n");
        for expected in [
            "`redact` names nothing to find",
            "`json` names no key path",
            "`contact.**` is not a key path",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        write(dir.path(), "s.yaml", "tables:\n  public.: { keep: all }\n");
        let all = messages(load_dir(dir.path(), &["s.yaml"]).unwrap_err()).join("\n");
        assert!(all.contains("`public.` is not a table name"), "{all}");
    }

    #[test]
    fn extends_cycles_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "extends: [b.yaml]\n");
        write(dir.path(), "b.yaml", "extends: a.yaml\n");
        let problems = messages(load_dir(dir.path(), &["a.yaml"]).unwrap_err());
        assert!(
            problems.iter().any(|p| p.contains("circle")),
            "{problems:?}"
        );
        let err = load_dir(dir.path(), &["missing.yaml"]).unwrap_err();
        assert_eq!(err.unreadable.len(), 1);
        assert!(err.problems.is_empty());
        // A missing file does not hide the problems of the others.
        write(dir.path(), "bad.yaml", "tables:\n  t: { colums: {} }\n");
        let err = load_dir(dir.path(), &["missing.yaml", "bad.yaml"]).unwrap_err();
        assert_eq!(err.unreadable.len(), 1);
        assert_eq!(err.problems.len(), 1, "{:?}", err.lines());
    }

    #[test]
    fn templates_and_globs() {
        assert_eq!(
            parse_template("u{id}@x{{y}}").unwrap(),
            vec![
                TemplatePart::Text("u".into()),
                TemplatePart::Column("id".into()),
                TemplatePart::Text("@x{y}".into()),
            ]
        );
        assert!(parse_template("a}").is_err());
        assert!(parse_template("{}").is_err());
        assert!(glob_match("*phone*", "mobile_phone_number"));
        assert!(glob_match("email", "email"));
        assert!(!glob_match("email", "emails"));
        assert!(glob_match("e*l", "email"));
        assert!(!glob_match("*phone", "phones"));
    }

    #[test]
    fn the_secret_comes_from_a_rules_file_else_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "with.yaml", "secret: in-file-key\n");
        write(dir.path(), "without.yaml", "locale: en\n");
        let with = || load_dir(dir.path(), &["with.yaml"]).unwrap();
        let without = || load_dir(dir.path(), &["without.yaml"]).unwrap();
        let var = |v: &str| Some(v.to_string());

        let set = without().with_secret_variable(var("from-the-env"));
        assert_eq!(set.secret.as_deref(), Some("from-the-env"));
        assert_eq!(set.secret_from, SecretFrom::Variable);
        assert!(set.secrets.contains(&"from-the-env".to_string()));
        assert_eq!(
            set.secret_from.describe(),
            "from `FLIGHTPATH_SECRET` (no rules file sets `secret:`)"
        );

        // A file's `secret:` wins, and the plan says so.
        let set = with().with_secret_variable(var("from-the-env"));
        assert_eq!(set.secret.as_deref(), Some("in-file-key"));
        assert_eq!(
            set.secret_from.describe(),
            "from with.yaml: its `secret:` wins over `FLIGHTPATH_SECRET`, which is set too and is not used"
        );
        let set = with().with_secret_variable(var("in-file-key"));
        assert_eq!(
            set.secret_from.describe(),
            "from with.yaml, which reads it from `FLIGHTPATH_SECRET`"
        );
        let set = with().with_secret_variable(None);
        assert_eq!(set.secret_from.describe(), "from with.yaml");

        // Empty counts as unset, and is said.
        let set = without().with_secret_variable(var(""));
        assert_eq!(set.secret, None);
        assert_eq!(
            set.secret_from.describe(),
            "none: a random key for this run, so fakes differ from run to run \
             (`FLIGHTPATH_SECRET` is set but empty, which counts as unset)"
        );
        let set = without().with_secret_variable(None);
        assert_eq!(set.secret, None);
        assert_eq!(
            set.secret_from.describe(),
            "none: a random key for this run, so fakes differ from run to run"
        );
        for set in [
            with().with_secret_variable(var("x-key")),
            without().with_secret_variable(var("x-key")),
        ] {
            assert!(!set.secret_from.describe().contains("x-key"));
        }
    }

    /// The `json:` rules of `t.c` in a file of that one column's rule.
    fn json_rules(rule: &str) -> Result<String, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.yaml",
            &format!("tables:\n  t:\n    columns:\n      c:\n        json: {rule}\n"),
        );
        let set = load_dir(dir.path(), &["r.yaml"]).map_err(messages)?;
        let Strategy::Json(rules) = &set.tables["public.t"].columns["c"].strategy else {
            panic!("not a json rule");
        };
        let mut rules: Vec<String> = rules.iter().map(|r| format!("{r:?}")).collect();
        rules.sort();
        Ok(rules.join("\n"))
    }

    #[test]
    fn nested_json_keys_are_the_dotted_paths() {
        let dotted = json_rules(
            r#"{ request.ip: { fake: ipv4 }, actor.email: { fake: email, unique: true }, "actor.*phone*": { fake: phone }, "**.name": { fake: name }, "a.b.c": { mask: { first: 1 } } }"#,
        )
        .unwrap();
        let nested = json_rules(
            r#"{ request: { ip: { fake: ipv4 } }, actor: { email: { fake: email, unique: true }, "*phone*": { fake: phone } }, "**": { name: { fake: name } }, a: { b.c: { mask: { first: 1 } } } }"#,
        )
        .unwrap();
        assert_eq!(nested, dotted);
        let mixed = json_rules(
            r#"{ request.ip: { fake: ipv4 }, actor: { email: { fake: email, unique: true }, "*phone*": { fake: phone } }, "**.name": { fake: name }, a.b: { c: { mask: { first: 1 } } } }"#,
        )
        .unwrap();
        assert_eq!(mixed, dotted);
        // A JSON key spelled like a strategy is plain in the dotted form.
        assert!(
            json_rules(r#"{ "meta.fake": { set: "no" } }"#)
                .unwrap()
                .contains("\"fake\"")
        );
    }

    #[test]
    fn nested_json_mistakes_are_located_and_say_what_to_write() {
        let errors = json_rules("{ meta: { fake: { email: { fake: email } } } }").unwrap_err();
        assert!(
            errors[0].contains("json `meta` is ambiguous: `fake` is spelled like a strategy"),
            "{errors:?}"
        );
        assert!(
            errors[0].contains(r#"`"meta.fake.email": { … }`"#),
            "{errors:?}"
        );
        let errors = json_rules("{ actor: { fake: email, name: { fake: name } } }").unwrap_err();
        assert!(
            errors[0].contains("beside the JSON key(s) `name`"),
            "{errors:?}"
        );
        assert!(errors[0].contains("`actor.name`"), "{errors:?}");
        let errors = json_rules("{ a: { b: { fake: email } }, a.b: { fake: email } }").unwrap_err();
        assert!(
            errors[0].contains("json `a.b` is ruled twice"),
            "{errors:?}"
        );
        let errors = json_rules("{ a: {} }").unwrap_err();
        assert!(
            errors[0].contains("neither a rule nor nested keys"),
            "{errors:?}"
        );
        let errors = json_rules("{ a: { unique: true } }").unwrap_err();
        assert!(errors[0].contains("names no strategy"), "{errors:?}");
        let errors = json_rules("{ a..b: { c: { fake: email } } }").unwrap_err();
        assert!(errors[0].contains("`a..b` is not a key path"), "{errors:?}");
    }

    #[test]
    fn a_tilde_at_the_end_names_keys_nested_or_dotted_and_only_for_strategies_that_rename() {
        let dotted = json_rules(r#"{ "seen.*~": { fake: email } }"#).unwrap();
        let nested = json_rules(r#"{ seen: { "*~": { fake: email } } }"#).unwrap();
        assert_eq!(dotted, nested);
        assert!(dotted.contains("KeysOf(\"*\")"), "{dotted}");
        // Only at the end: elsewhere `~` is part of a key.
        assert!(
            json_rules(r#"{ "a~.b": { fake: email } }"#)
                .unwrap()
                .contains("Key(\"a~\")")
        );
        for strategy in ["null", "{ set: x }", "{ template: \"u{id}\" }", "keep"] {
            let errors = json_rules(&format!(r#"{{ "seen.*~": {strategy} }}"#)).unwrap_err();
            assert!(
                errors[0].contains("names object keys (it ends in `~`)")
                    && errors[0].contains("give keys `fake`, `hash`, `mask`, `regex` or `redact`"),
                "{strategy}: {errors:?}"
            );
        }
        let errors = json_rules(r#"{ "seen.~": { fake: email } }"#).unwrap_err();
        assert!(errors[0].contains("is not a key path"), "{errors:?}");
    }
}
