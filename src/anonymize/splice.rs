//! `json:` rules applied to JSON text without building the document: a
//! scan finds the values the rules' paths reach, each of those alone is
//! parsed, ruled and written back, and every byte between them is copied
//! as it came. A document is mostly what no rule names (a form's other
//! answers, a profile's other settings), and parsing all of it into a tree
//! and printing the tree again was most of what a `json:` rule cost.
//!
//! The scan answers only where it is sure to do what the tree walk in
//! `apply` does: paths made of keys (globs allowed), values reached by one
//! rule each and never one inside another, nesting up to the parser's
//! default depth. Anything else — `**`, a `~` key rename, two rules
//! reaching the same value, text it does not read as JSON — is handed back
//! ([`Spliced::Tree`]) and takes the tree walk. It runs only on `json` and
//! `jsonb` fields, which the server has already checked are JSON.

use super::apply::{Applied, Compiled};
use super::keyed::Keyed;
use super::rules::{Segment, glob_match};
use crate::pg::codec::{self, FieldType};

/// What the scan made of one document.
#[derive(Debug, PartialEq, Eq)]
pub enum Spliced {
    /// No rule changed anything: the field stays as it is.
    Unchanged(Applied),
    /// The document with the reached values replaced.
    Changed(Applied, Vec<u8>),
    /// Not a document the scan is sure of: use the tree walk.
    Tree,
}

/// Whether every `json:` path of `compiled` is made of keys only, so
/// [`splice`] can take its documents. Decided once per column.
pub fn applies(compiled: &Compiled) -> bool {
    let rules = compiled.json_rules();
    !rules.is_empty()
        && rules.iter().all(|(rule, _)| {
            rule.path
                .0
                .iter()
                .all(|segment| matches!(segment, Segment::Key(_)))
        })
}

/// `compiled`'s `json:` rules on the JSON text `doc` of a column of type
/// `ty` (`json` or `jsonb`); a changed document is written after `prefix`
/// (jsonb's version byte).
pub fn splice(
    compiled: &Compiled,
    keyed: &Keyed,
    ty: FieldType,
    prefix: &[u8],
    doc: &[u8],
    column: &dyn Fn(&str) -> Option<String>,
) -> Result<Spliced, String> {
    let paths: Vec<Vec<&str>> = compiled
        .json_rules()
        .iter()
        .map(|(rule, _)| {
            rule.path
                .0
                .iter()
                .map(|segment| match segment {
                    Segment::Key(key) => key.as_str(),
                    _ => unreachable!("`applies` admits key segments only"),
                })
                .collect()
        })
        .collect();
    let Some(hits) = find(doc, &paths) else {
        return Ok(Spliced::Tree);
    };
    let mut applied = Applied::default();
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for hit in hits {
        let piece = &doc[hit.start..hit.end];
        let (rule, redactor) = &compiled.json_rules()[hit.rule];
        let redactor = redactor.as_ref();
        let mut here = Applied::default();
        // Most values reached are strings without escapes: ruled as text,
        // with no tree at all.
        let new = match plain_string(piece) {
            Some(text) => {
                compiled.json_string_reached(keyed, rule, redactor, text, column, &mut here)?
            }
            None => {
                let Ok(mut json) = codec::parse_json(piece) else {
                    return Ok(Spliced::Tree);
                };
                compiled.json_reached(keyed, rule, redactor, &mut json, column, &mut here)?;
                here.changed.then_some(json)
            }
        };
        applied.replacements += here.replacements;
        let Some(new) = new else {
            continue;
        };
        applied.changed = true;
        codec::check_json(ty, &new).map_err(|e| e.to_string())?;
        let out = out.get_or_insert_with(|| {
            let mut out = Vec::with_capacity(prefix.len() + doc.len() + 64);
            out.extend_from_slice(prefix);
            out
        });
        out.extend_from_slice(&doc[copied..hit.start]);
        serde_json::to_writer(&mut *out, &new).map_err(|e| e.to_string())?;
        copied = hit.end;
    }
    Ok(match out {
        Some(mut out) => {
            out.extend_from_slice(&doc[copied..]);
            Spliced::Changed(applied, out)
        }
        None => Spliced::Unchanged(applied),
    })
}

/// The text of a JSON string with no escapes in it.
fn plain_string(piece: &[u8]) -> Option<&str> {
    let inner = piece.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    match memchr::memchr(b'\\', inner) {
        Some(_) => None,
        None => std::str::from_utf8(inner).ok(),
    }
}

/// A value a rule's path reaches: `doc[start..end]`, for rule `rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hit {
    start: usize,
    end: usize,
    rule: usize,
}

/// Where each path reaches in `doc`, in document order; `None` when the
/// scan is not sure (see the module header).
fn find(doc: &[u8], paths: &[Vec<&str>]) -> Option<Vec<Hit>> {
    let mut scan = Scan {
        doc,
        at: 0,
        paths,
        states: (0..paths.len()).map(|rule| (rule, 0)).collect(),
        hits: Vec::new(),
    };
    let all = 0..scan.states.len();
    scan.value(all, 0)?;
    scan.space();
    if scan.at != doc.len() {
        return None;
    }
    // Two rules on one value, or one value inside another: the tree walk
    // applies rules one after another, so their order would matter.
    if scan.hits.windows(2).any(|w| w[1].start < w[0].end) {
        return None;
    }
    Some(scan.hits)
}

/// The scan's cursor. `states` is a stack of (rule, segments matched so
/// far); a value is scanned with a range of it, the states alive there.
struct Scan<'a, 'p> {
    doc: &'a [u8],
    at: usize,
    paths: &'p [Vec<&'p str>],
    states: Vec<(usize, usize)>,
    hits: Vec<Hit>,
}

impl<'a> Scan<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.doc.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    /// One value, with the states in `alive` (a range of `self.states`).
    /// Arrays are walked through with the same states, as the tree walk
    /// does; a value some state's path ends at is a hit.
    fn value(&mut self, alive: std::ops::Range<usize>, depth: usize) -> Option<()> {
        if depth > codec::JSON_DEPTH {
            return None;
        }
        self.space();
        let start = self.at;
        if self.peek() == Some(b'[') {
            self.at += 1;
            if self.eat(b']').is_some() {
                return Some(());
            }
            loop {
                self.value(alive.clone(), depth + 1)?;
                if self.eat(b',').is_none() {
                    return self.eat(b']');
                }
            }
        }
        let reached = alive
            .clone()
            .filter(|&s| self.states[s].1 == self.paths[self.states[s].0].len());
        let mut any_reached = false;
        for s in reached.collect::<Vec<_>>() {
            any_reached = true;
            self.hits.push(Hit {
                start,
                end: 0,
                rule: self.states[s].0,
            });
        }
        let going = !alive.is_empty() && !any_reached;
        if any_reached || !going || self.peek() != Some(b'{') {
            let with_more = any_reached
                && alive
                    .clone()
                    .any(|s| self.states[s].1 < self.paths[self.states[s].0].len());
            if with_more && self.peek() == Some(b'{') {
                // One rule ends here, another goes deeper: nested hits.
                return None;
            }
            self.skip(depth)?;
            let end = self.at;
            for hit in self.hits.iter_mut().rev().take_while(|h| h.end == 0) {
                hit.end = end;
            }
            return Some(());
        }
        self.object(alive, depth)
    }

    /// An object whose members some states go on into.
    fn object(&mut self, alive: std::ops::Range<usize>, depth: usize) -> Option<()> {
        self.at += 1;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.space();
            let key = self.key()?;
            self.eat(b':')?;
            let base = self.states.len();
            for s in alive.clone() {
                let (rule, matched) = self.states[s];
                if glob_match(self.paths[rule][matched], &key) {
                    self.states.push((rule, matched + 1));
                }
            }
            let result = self.value(base..self.states.len(), depth + 1);
            self.states.truncate(base);
            result?;
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }

    /// An object key, unescaped.
    fn key(&mut self) -> Option<std::borrow::Cow<'a, str>> {
        let start = self.at;
        let escaped = self.string()?;
        let doc = self.doc;
        let raw = &doc[start..self.at];
        if escaped {
            serde_json::from_slice::<String>(raw).ok().map(Into::into)
        } else {
            std::str::from_utf8(&raw[1..raw.len() - 1])
                .ok()
                .map(Into::into)
        }
    }

    /// Past one string; whether it held an escape.
    fn string(&mut self) -> Option<bool> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.at += 1;
        let mut escaped = false;
        loop {
            let rest = self.doc.get(self.at..)?;
            self.at += memchr::memchr2(b'"', b'\\', rest)?;
            match self.doc[self.at] {
                b'"' => {
                    self.at += 1;
                    return Some(escaped);
                }
                _ => {
                    escaped = true;
                    self.at += 2;
                }
            }
        }
    }

    /// Past one value of any kind, nesting counted, strings skipped whole.
    fn skip(&mut self, depth: usize) -> Option<()> {
        self.space();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut open = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => {
                            open += 1;
                            if depth + open > codec::JSON_DEPTH {
                                return None;
                            }
                        }
                        b'}' | b']' => {
                            open -= 1;
                            if open == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                // A number, `true`, `false` or `null`: up to what ends it.
                let start = self.at;
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                (self.at > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anonymize::fakes::{FakeKind, Locale};
    use crate::anonymize::rules::{JsonPath, JsonRule, Strategy};
    use crate::pg::codec::Value;
    use proptest::prelude::{Just, TestCaseError, any, prop, prop_assert_eq, prop_oneof, proptest};
    use proptest::strategy::Strategy as _;

    fn no_columns(_: &str) -> Option<String> {
        None
    }

    fn rules(paths: &[(&str, Strategy)]) -> Compiled {
        let rules = paths
            .iter()
            .map(|(path, strategy)| JsonRule {
                path: JsonPath::parse(path).unwrap(),
                strategy: strategy.clone(),
            })
            .collect();
        Compiled::new(Strategy::Json(rules), Locale::En, None)
    }

    fn email() -> Strategy {
        Strategy::Fake {
            kind: FakeKind::Email,
            unique: false,
            locale: None,
        }
    }

    /// The splice and the tree walk on one document: the same JSON, the
    /// same counts, or the splice handing it back.
    fn agree(compiled: &Compiled, doc: &str) -> Result<(), TestCaseError> {
        let keyed = Keyed::new(Some("k"));
        let tree = {
            let mut value = Value::Json(serde_json::from_str(doc).unwrap());
            let applied = compiled.apply(&keyed, &mut value, &no_columns).unwrap();
            (applied, value)
        };
        let spliced = splice(
            compiled,
            &keyed,
            FieldType::Jsonb,
            b"",
            doc.as_bytes(),
            &no_columns,
        )
        .unwrap();
        let (applied, text) = match spliced {
            Spliced::Tree => return Ok(()),
            Spliced::Unchanged(applied) => (applied, doc.as_bytes().to_vec()),
            Spliced::Changed(applied, text) => (applied, text),
        };
        prop_assert_eq!(applied, tree.0);
        let parsed: serde_json::Value = serde_json::from_slice(&text).unwrap();
        prop_assert_eq!(Value::Json(parsed), tree.1);
        Ok(())
    }

    fn document() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        let key = prop::sample::select(vec!["email", "name", "phone", "contact", "ip", "x"]);
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            (-1000i64..1000).prop_map(|n| n.into()),
            "[a-z@. ]{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 40, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::vec((key.clone(), inner), 0..5).prop_map(|members| {
                    serde_json::Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_splice_writes_what_the_tree_walk_writes(doc in document(), pretty in any::<bool>()) {
            let text = match pretty {
                true => serde_json::to_string_pretty(&doc).unwrap(),
                false => doc.to_string(),
            };
            let compiled = rules(&[
                ("contact.email", email()),
                ("*phone*", Strategy::Set(None)),
                ("contact.name", Strategy::Hash { length: Some(6) }),
                ("x.ip", Strategy::Set(Some("x".into()))),
                ("name", Strategy::Redact(vec!["email".into()])),
            ]);
            agree(&compiled, &text)?;
        }
    }

    #[test]
    fn a_changed_document_keeps_what_no_rule_reached_byte_for_byte() {
        let keyed = Keyed::new(Some("k"));
        let compiled = rules(&[("contact.email", email())]);
        let doc = br#"{"theme": "dark",  "n": 1.50, "contact": {"email": "a@b.test"}}"#;
        let Spliced::Changed(applied, out) =
            splice(&compiled, &keyed, FieldType::Jsonb, &[1], doc, &no_columns).unwrap()
        else {
            panic!("nothing changed")
        };
        assert!(applied.changed);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("\u{1}{\"theme\": \"dark\",  \"n\": 1.50, \"contact\": {\"email\": \""),
            "{out}"
        );
        assert!(!out.contains("a@b.test"), "{out}");
    }

    fn hits(doc: &str, paths: &[&str]) -> Option<Vec<(String, usize)>> {
        let paths: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
        find(doc.as_bytes(), &paths).map(|hits| {
            hits.into_iter()
                .map(|h| (doc[h.start..h.end].to_string(), h.rule))
                .collect()
        })
    }

    #[test]
    fn paths_reach_values_through_objects_and_arrays() {
        let doc = r#"{"a": {"email": "x@y.test", "n": [1, {"b": 2}]}, "list": [{"email": "p"}, {"email": ["q", "r"]}], "email": null}"#;
        assert_eq!(
            hits(doc, &["a.email", "list.email", "a.n.b"]).unwrap(),
            vec![
                ("\"x@y.test\"".into(), 0),
                ("2".into(), 2),
                ("\"p\"".into(), 1),
                ("\"q\"".into(), 1),
                ("\"r\"".into(), 1),
            ]
        );
        assert_eq!(
            hits(doc, &["*mail"]).unwrap(),
            vec![("null".into(), 0)],
            "a glob matches keys of its own level only"
        );
    }

    #[test]
    fn an_escaped_key_is_matched_as_it_reads() {
        let doc = r#"{"em\u0061il": "x", "e\"q": {"k": true}}"#;
        assert_eq!(hits(doc, &["email"]).unwrap(), vec![("\"x\"".into(), 0)]);
        assert_eq!(hits(doc, &["e\"q.k"]).unwrap(), vec![("true".into(), 0)]);
    }

    #[test]
    fn whole_objects_are_reached_and_strings_with_brackets_skipped() {
        let doc = r#"{"skip": {"s": "}]{[\"", "t": [[]]}, "contact": {"e": "}"}, "z": -1.5e3}"#;
        assert_eq!(
            hits(doc, &["contact", "z"]).unwrap(),
            vec![(r#"{"e": "}"}"#.into(), 0), ("-1.5e3".into(), 1)]
        );
    }

    #[test]
    fn what_the_tree_walk_must_decide_is_handed_back() {
        // Two rules on one value, and one value inside another.
        assert_eq!(hits(r#"{"a": 1}"#, &["a", "*"]), None);
        assert_eq!(hits(r#"{"a": {"b": 1}}"#, &["a", "a.b"]), None);
        // Not JSON the scan reads through.
        assert_eq!(hits(r#"{"a": 1"#, &["a"]), None);
        assert_eq!(hits(r#"{"a": 1} x"#, &["a"]), None);
        // Deeper than the parser's default.
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(hits(&format!(r#"{{"a": {deep}}}"#), &["a"]), None);
        // Nothing reached is no hit, and fine.
        assert_eq!(hits(r#"{"b": [1, 2]}"#, &["a"]).unwrap(), vec![]);
    }
}
