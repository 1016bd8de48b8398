//! A located YAML tree: every node and every mapping key carries its byte span
//! in the source, so validation can point at the exact text it complains about.
//!
//! Parsing goes through `serde-saphyr` (maintained, YAML 1.2) into `Node`; the
//! typed workflow model is then read out of this tree by hand (see
//! [`MapReader`]), which lets validation collect *every* problem instead of
//! stopping at serde's first one. This module owns no workflow semantics.

use std::fmt;
use std::io::Read;
use std::path::Path;

use miette::SourceSpan;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// The most a workflow or rules file may hold. The largest real ones are a
/// few hundred lines; ten megabytes is far beyond any of them, and small
/// enough that a wrong path (a log, a dump, a device) is refused at once.
pub const MAX_SOURCE_BYTES: u64 = 10 * 1024 * 1024;

/// Why a YAML file could not be read. Each message says what the file is
/// and what to do; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("it is {kind}, not a regular file; name a YAML file")]
    NotAFile { kind: &'static str },
    #[error(
        "it is larger than {} MiB, the most a workflow or rules file may hold; check that \
         this is the file you meant",
        MAX_SOURCE_BYTES / (1024 * 1024)
    )]
    TooLarge,
    #[error("it is not UTF-8 text; save it as UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads the YAML file at `path` whole, refusing anything that is not a
/// regular file (a FIFO would block, a device never end) before opening
/// it, and reading at most [`MAX_SOURCE_BYTES`] + 1 bytes so a file that
/// grows while it is read cannot exceed the cap.
pub fn read_source(path: &Path) -> Result<String, SourceError> {
    fn regular(meta: &std::fs::Metadata) -> Result<(), SourceError> {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        let name = if kind.is_file() {
            return Ok(());
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a named pipe (FIFO)"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        Err(SourceError::NotAFile { kind: name })
    }
    // `metadata` follows symbolic links without opening anything.
    let meta = std::fs::metadata(path)?;
    regular(&meta)?;
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(SourceError::TooLarge);
    }
    let file = std::fs::File::open(path)?;
    // The path may have been replaced between the two looks.
    regular(&file.metadata()?)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(SourceError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| SourceError::NotUtf8)
}

/// A byte range in the source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

impl Span {
    fn from_location(loc: &serde_saphyr::Location) -> Self {
        let span = loc.span();
        Span {
            offset: span.byte_offset().unwrap_or(0) as usize,
            len: span.byte_len().unwrap_or(0) as usize,
        }
    }
}

impl From<Span> for SourceSpan {
    fn from(span: Span) -> Self {
        SourceSpan::new(span.offset.into(), span.len)
    }
}

/// A scalar or collection, with the span of the text it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep file order; duplicates are rejected by the parser.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its own span (for "unknown key" errors).
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

impl Node {
    /// What kind of YAML value this is, for "expected a list, found a string".
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar as text, for fields that accept `5` as well as `"5"`.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The node's value as plain JSON (spans dropped), for free-form fields.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => J::from(*f),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A YAML syntax error, located.
#[derive(Debug)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
}

impl SyntaxError {
    /// The error as a located problem, for any file read with [`parse`].
    pub fn problem(&self) -> super::diagnostics::Problem {
        super::diagnostics::Problem::new(
            "flightpath::yaml::syntax",
            format!("invalid YAML: {}", self.message),
            self.span,
            "here",
        )
    }
}

/// Parses a whole document. An empty document is an empty mapping.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    if source.trim().is_empty() {
        return Ok(Node {
            span: Span::default(),
            value: Value::Map(Vec::new()),
        });
    }
    // YAML 1.2 booleans only (`n`, `no`, `on` stay strings: the Norway
    // problem), and `0755` or `1_000` stay as written.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    let parsed: Result<Spanned<Node>, _> = serde_saphyr::from_str_with_options(source, options);
    match parsed {
        Ok(spanned) => {
            let mut node = spanned.value;
            node.span = Span::from_location(&spanned.referenced);
            Ok(node)
        }
        Err(err) => {
            let span = err
                .location()
                .map(|loc| match loc.span().byte_offset() {
                    Some(_) => Span::from_location(&loc),
                    None => Span {
                        offset: offset_of(source, loc.line(), loc.column()),
                        len: 1,
                    },
                })
                .unwrap_or_default();
            Err(SyntaxError {
                message: first_line(&err.to_string()),
                span,
            })
        }
    }
}

/// Byte offset of a 1-indexed (line, character column) position.
fn offset_of(source: &str, line: u64, column: u64) -> usize {
    let line_start: usize = source
        .split_inclusive('\n')
        .take(line.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    let rest = &source[line_start.min(source.len())..];
    let within: usize = rest
        .chars()
        .take(column.saturating_sub(1) as usize)
        .map(char::len_utf8)
        .sum();
    (line_start + within).min(source.len().saturating_sub(1))
}

fn first_line(message: &str) -> String {
    // serde-saphyr renders its own snippet below the first line and prefixes
    // the position; we render ours with miette, so keep only the sentence.
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line.trim_start_matches("error: ");
    let sentence = match line.split_once(": ") {
        Some((position, rest)) if position.starts_with("line ") => rest,
        _ => line,
    };
    // The parser may quote the text it choked on: a window of it at most.
    match sentence
        .char_indices()
        .nth(super::diagnostics::MAX_QUOTED_CHARS * 2)
    {
        Some((cut, _)) => format!("{}…", &sentence[..cut]),
        None => sentence.to_string(),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = deserializer.deserialize_any(ValueVisitor)?;
        Ok(Node {
            span: Span::default(),
            value,
        })
    }
}

fn located(spanned: Spanned<Node>) -> Node {
    let mut node = spanned.value;
    node.span = Span::from_location(&spanned.referenced);
    node
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .or(Ok(Value::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(located(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Node>>()? {
            let key = located(key);
            let name = key.scalar_text().ok_or_else(|| {
                de::Error::custom(format!(
                    "mapping keys must be strings, found {}",
                    key.kind()
                ))
            })?;
            let value = located(map.next_value::<Spanned<Node>>()?);
            if entries.iter().any(|(k, _)| k.name == name) {
                return Err(de::Error::custom(format!("duplicate key `{name}`")));
            }
            entries.push((
                Key {
                    name,
                    span: key.span,
                },
                value,
            ));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_keys_carry_byte_spans() {
        let src = "name: demo\nsteps:\n  a:\n    uses: shell\n    needs: [b, c]\n";
        let root = parse(src).unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("root is a map")
        };
        let (key, steps) = &entries[1];
        assert_eq!(
            &src[key.span.offset..key.span.offset + key.span.len],
            "steps"
        );
        let Value::Map(steps) = &steps.value else {
            panic!()
        };
        let Value::Map(a) = &steps[0].1.value else {
            panic!()
        };
        let (_, needs) = &a[1];
        let Value::Seq(items) = &needs.value else {
            panic!()
        };
        let c = &items[1];
        assert_eq!(&src[c.span.offset..c.span.offset + c.span.len], "c");
    }

    #[test]
    fn quoted_scalars_and_types() {
        let root = parse("a: \"5\"\nb: 5\nc: true\nd: ~\ne: n\nf: no\n").unwrap();
        let Value::Map(entries) = root.value else {
            panic!()
        };
        assert_eq!(entries[0].1.value, Value::Str("5".into()));
        assert_eq!(entries[1].1.value, Value::Int(5));
        assert_eq!(entries[2].1.value, Value::Bool(true));
        assert_eq!(entries[3].1.value, Value::Null);
        assert_eq!(entries[4].1.value, Value::Str("n".into()));
        assert_eq!(entries[5].1.value, Value::Str("no".into()));
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.span.offset, 10, "{err:?}");
        assert_eq!(err.message, "illegal placement of ':' indicator");
    }
}
