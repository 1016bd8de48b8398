//! Strategies applied to one decoded value. Everything here is a pure
//! function of the value, the rule and the key, so the same input gives the
//! same output in every table, every range and every run.

use std::net::IpAddr;

use serde_json::Value as Json;

use super::fakes::{self, FakeKind, Locale};
use super::keyed::Keyed;
use super::patterns::PiiKind;
use super::redact::Redactor;
use super::rules::{JsonRule, Segment, Strategy, TemplatePart, glob_match};
use crate::pg::codec::{self, FieldType, Value};

/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i32 = codec::UNIX_TO_PG_EPOCH_DAYS as i32;
const DAY_US: i64 = codec::USECS_PER_DAY;

/// A strategy ready to run: regexes compiled, redactors built.
pub struct Compiled {
    strategy: Strategy,
    redactor: Option<Redactor>,
    json: Vec<(JsonRule, Option<Redactor>)>,
    locale: Locale,
    /// `character varying(n)`: longer outputs are cut to `n` characters.
    pub max_chars: Option<usize>,
}

/// What one application did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The value changed.
    pub changed: bool,
    /// Items replaced inside the value (by `redact`), for the report.
    pub replacements: usize,
}

fn redactor_for(strategy: &Strategy, locale: Locale) -> Option<Redactor> {
    match strategy {
        Strategy::Redact(kinds) => {
            let kinds: Vec<PiiKind> = kinds.iter().filter_map(|k| PiiKind::parse(k)).collect();
            Some(Redactor::new(&kinds, locale))
        }
        _ => None,
    }
}

impl Compiled {
    pub fn new(strategy: Strategy, locale: Locale, max_chars: Option<usize>) -> Compiled {
        let redactor = redactor_for(&strategy, locale);
        let json = match &strategy {
            Strategy::Json(rules) => rules
                .iter()
                .map(|r| (r.clone(), redactor_for(&r.strategy, locale)))
                .collect(),
            _ => Vec::new(),
        };
        Compiled {
            strategy,
            redactor,
            json,
            locale,
            max_chars,
        }
    }

    /// The `json:` rules, each with its redactor (empty for any other
    /// strategy).
    pub(super) fn json_rules(&self) -> &[(JsonRule, Option<Redactor>)] {
        &self.json
    }

    /// Whether what the rule makes of a field depends on the field's bytes
    /// alone, so a transform may remember it: every strategy but a
    /// `template` (it reads other columns) and `json` (its values are
    /// documents, rarely repeated).
    pub fn memoizable(&self) -> bool {
        !matches!(self.strategy, Strategy::Template(_) | Strategy::Json(_))
    }

    /// Applies the rule to `value` in place.
    /// `column` resolves a template's `{name}` to that column's original
    /// text (`None` for NULL).
    pub fn apply(
        &self,
        keyed: &Keyed,
        value: &mut Value,
        column: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Applied, String> {
        let mut applied = Applied::default();
        match value {
            Value::Text(text) if matches!(self.strategy, Strategy::Json(_)) => {
                // JSON kept in a text column: parsed, ruled, written back
                // only when a rule changed it.
                let mut json: Json = codec::parse_json(text.as_bytes()).map_err(|e| {
                    format!(
                        "the value is not valid JSON ({}), so `json:` rules cannot apply",
                        json_error_kind(&e)
                    )
                })?;
                for (rule, redactor) in &self.json {
                    self.json_path(
                        keyed,
                        rule,
                        redactor.as_ref(),
                        &rule.path.0,
                        &mut json,
                        column,
                        &mut applied,
                    )?;
                }
                if applied.changed {
                    *text = json.to_string();
                }
            }
            Value::Text(text) => {
                if let Some(new) = self.text(
                    keyed,
                    &self.strategy,
                    self.redactor.as_ref(),
                    text,
                    column,
                    &mut applied,
                )? {
                    let new = self.cut(new);
                    applied.changed |= new != *text;
                    *text = new;
                }
            }
            Value::TextArray(array) => {
                for element in array.elements.iter_mut().flatten() {
                    if let Some(new) = self.text(
                        keyed,
                        &self.strategy,
                        self.redactor.as_ref(),
                        element,
                        column,
                        &mut applied,
                    )? {
                        let new = self.cut(new);
                        applied.changed |= new != *element;
                        *element = new;
                    }
                }
            }
            Value::Json(json) => {
                if let Strategy::Json(_) = &self.strategy {
                    for (rule, redactor) in &self.json {
                        self.json_path(
                            keyed,
                            rule,
                            redactor.as_ref(),
                            &rule.path.0,
                            json,
                            column,
                            &mut applied,
                        )?;
                    }
                } else {
                    self.json_leaves(
                        keyed,
                        &self.strategy,
                        self.redactor.as_ref(),
                        json,
                        column,
                        &mut applied,
                    )?;
                }
            }
            Value::Date(days) => {
                let new = match &self.strategy {
                    Strategy::DateShift { days: max } if is_finite_date(*days) => {
                        keyed.date_shift(*days + PG_EPOCH_DAYS, *max) - PG_EPOCH_DAYS
                    }
                    Strategy::Fake { kind, locale, .. } => {
                        let same = |fake: &str| parse_date(fake) == Ok(*days);
                        parse_date(&self.fake_unlike(
                            keyed,
                            *kind,
                            *locale,
                            &days.to_be_bytes(),
                            same,
                        )?)?
                    }
                    Strategy::Keep | Strategy::DateShift { .. } => *days,
                    other => return Err(format!("`{}` cannot write a date", other.describe())),
                };
                applied.changed = new != *days;
                *days = new;
            }
            Value::Timestamp(us) => {
                let new = match &self.strategy {
                    Strategy::DateShift { days: max } if *us != i64::MAX && *us != i64::MIN => {
                        let day = us.div_euclid(DAY_US);
                        let day32 =
                            i32::try_from(day).map_err(|_| "timestamp out of range".to_string())?;
                        let shifted = keyed.date_shift(day32 + PG_EPOCH_DAYS, *max) - PG_EPOCH_DAYS;
                        us.saturating_add((i64::from(shifted) - day) * DAY_US)
                    }
                    Strategy::Fake { kind, locale, .. } => {
                        let same =
                            |fake: &str| parse_date(fake).map(|d| i64::from(d) * DAY_US) == Ok(*us);
                        let fake =
                            self.fake_unlike(keyed, *kind, *locale, &us.to_be_bytes(), same)?;
                        i64::from(parse_date(&fake)?) * DAY_US
                    }
                    Strategy::Keep | Strategy::DateShift { .. } => *us,
                    other => {
                        return Err(format!("`{}` cannot write a timestamp", other.describe()));
                    }
                };
                applied.changed = new != *us;
                *us = new;
            }
            Value::Inet(addr, bits, _) => {
                let new: IpAddr = match &self.strategy {
                    Strategy::Fake {
                        kind,
                        unique,
                        locale,
                    } => {
                        let seed = addr.to_string();
                        self.fake_with(keyed, *kind, *locale, *unique, seed.as_bytes())?
                            .parse()
                            .map_err(|_| format!("`fake: {kind}` did not give an IP address"))?
                    }
                    Strategy::Keep => *addr,
                    other => {
                        return Err(format!("`{}` cannot write an IP address", other.describe()));
                    }
                };
                if new != *addr {
                    applied.changed = true;
                    *bits = if new.is_ipv4() { 32 } else { 128 };
                    *addr = new;
                }
            }
        }
        Ok(applied)
    }

    /// Cuts a value to the column's `character varying(n)`, except an
    /// e-mail address or URL: cut, `@example.com` could become a real
    /// domain. Binding refuses those kinds on columns too short for them.
    fn cut(&self, text: String) -> String {
        let keeps_whole = matches!(
            self.strategy,
            Strategy::Fake {
                kind: FakeKind::Email | FakeKind::SafeEmail | FakeKind::Url,
                ..
            }
        );
        match self.max_chars {
            Some(n) if !keeps_whole && text.chars().count() > n => text.chars().take(n).collect(),
            _ => text,
        }
    }

    /// A fake of `kind` for `input`, in the rule's locale or the file's.
    fn fake_with(
        &self,
        keyed: &Keyed,
        kind: FakeKind,
        locale: Option<Locale>,
        unique: bool,
        input: &[u8],
    ) -> Result<String, String> {
        fakes::fake(kind, locale.unwrap_or(self.locale), keyed, input, unique)
            .map_err(|e| e.to_string())
    }

    /// A fake for a value that is not text, `same` telling a candidate
    /// equal to it (see [`fakes::fake_unlike`]).
    fn fake_unlike(
        &self,
        keyed: &Keyed,
        kind: FakeKind,
        locale: Option<Locale>,
        input: &[u8],
        same: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        fakes::fake_unlike(
            kind,
            locale.unwrap_or(self.locale),
            keyed,
            input,
            false,
            same,
        )
        .map_err(|e| e.to_string())
    }

    /// A text strategy on one string; `None` leaves it as it is.
    #[allow(clippy::too_many_arguments)]
    fn text(
        &self,
        keyed: &Keyed,
        strategy: &Strategy,
        redactor: Option<&Redactor>,
        input: &str,
        column: &dyn Fn(&str) -> Option<String>,
        applied: &mut Applied,
    ) -> Result<Option<String>, String> {
        Ok(Some(match strategy {
            Strategy::Fake {
                kind,
                unique,
                locale,
            } => self.fake_with(keyed, *kind, *locale, *unique, input.as_bytes())?,
            Strategy::Hash { length } => keyed.hash(input.as_bytes(), *length),
            Strategy::Mask { first, last, with } => Keyed::mask(input, *first, *last, *with),
            Strategy::Regex { pattern, replace } => keyed.regex_replace(pattern, input, replace),
            Strategy::Template(parts) => parts
                .iter()
                .map(|p| match p {
                    TemplatePart::Text(t) => t.clone(),
                    TemplatePart::Column(c) => column(c).unwrap_or_default(),
                })
                .collect(),
            Strategy::Set(Some(v)) => v.clone(),
            Strategy::Set(None)
            | Strategy::Keep
            | Strategy::Json(_)
            | Strategy::DateShift { .. } => return Ok(None),
            Strategy::Redact(_) => match redactor.and_then(|r| r.redact(keyed, input)) {
                Some((text, n)) => {
                    applied.replacements += n;
                    text
                }
                None => return Ok(None),
            },
        }))
    }

    /// A strategy on every string inside a JSON value (and on numbers, which
    /// become strings when a strategy rewrites them).
    #[allow(clippy::too_many_arguments)]
    fn json_leaves(
        &self,
        keyed: &Keyed,
        strategy: &Strategy,
        redactor: Option<&Redactor>,
        json: &mut Json,
        column: &dyn Fn(&str) -> Option<String>,
        applied: &mut Applied,
    ) -> Result<(), String> {
        match json {
            Json::String(s) => {
                if let Some(new) = self.text(keyed, strategy, redactor, s, column, applied)?
                    && new != *s
                {
                    applied.changed = true;
                    *s = new;
                }
            }
            Json::Number(n) => {
                if matches!(strategy, Strategy::Redact(_) | Strategy::Keep) {
                    return Ok(());
                }
                let text = n.to_string();
                if let Some(new) = self.text(keyed, strategy, redactor, &text, column, applied)?
                    && new != text
                {
                    applied.changed = true;
                    *json = Json::String(new);
                }
            }
            Json::Array(items) => {
                for item in items {
                    self.json_leaves(keyed, strategy, redactor, item, column, applied)?;
                }
            }
            Json::Object(map) => {
                for item in map.values_mut() {
                    self.json_leaves(keyed, strategy, redactor, item, column, applied)?;
                }
                if matches!(strategy, Strategy::Redact(_)) {
                    self.rename_keys(keyed, strategy, redactor, map, None, column, applied)?;
                }
            }
            Json::Bool(_) | Json::Null => {}
        }
        Ok(())
    }

    /// `strategy` on an object's keys (those matching `only`, or all), in
    /// their order: `redact` reaches keys as it reaches string values (a
    /// key is text that can hold an e-mail address as much as a value
    /// can), and a `json` path ending in `~` names keys. Two keys that
    /// become the same one are an error: one of the values would be lost.
    #[allow(clippy::too_many_arguments)]
    fn rename_keys(
        &self,
        keyed: &Keyed,
        strategy: &Strategy,
        redactor: Option<&Redactor>,
        map: &mut serde_json::Map<String, Json>,
        only: Option<&str>,
        column: &dyn Fn(&str) -> Option<String>,
        applied: &mut Applied,
    ) -> Result<(), String> {
        let mut renamed = Vec::new();
        for (i, key) in map.keys().enumerate() {
            if only.is_some_and(|pattern| !glob_match(pattern, key)) {
                continue;
            }
            if let Some(new) = self.text(keyed, strategy, redactor, key, column, applied)?
                && new != *key
            {
                renamed.push((i, new));
            }
        }
        if renamed.is_empty() {
            return Ok(());
        }
        applied.changed = true;
        let mut renamed = renamed.into_iter().peekable();
        let mut out = serde_json::Map::with_capacity(map.len());
        for (i, (key, value)) in std::mem::take(map).into_iter().enumerate() {
            let key = match renamed.next_if(|(at, _)| *at == i) {
                Some((_, new)) => new,
                None => key,
            };
            if out.contains_key(&key) {
                return Err(format!(
                    "two keys of one JSON object become the same key after `{}`, \
                     so one of their values would be lost",
                    strategy.describe()
                ));
            }
            out.insert(key, value);
        }
        *map = out;
        Ok(())
    }

    /// Follows `path` from `json`; what it reaches gets `rule.strategy`.
    #[allow(clippy::too_many_arguments)]
    fn json_path(
        &self,
        keyed: &Keyed,
        rule: &JsonRule,
        redactor: Option<&Redactor>,
        path: &[Segment],
        json: &mut Json,
        column: &dyn Fn(&str) -> Option<String>,
        applied: &mut Applied,
    ) -> Result<(), String> {
        // Arrays are walked through at every level.
        if let Json::Array(items) = json {
            for item in items {
                self.json_path(keyed, rule, redactor, path, item, column, applied)?;
            }
            return Ok(());
        }
        let Some((first, rest)) = path.split_first() else {
            return self.json_reached(keyed, rule, redactor, json, column, applied);
        };
        let Json::Object(map) = json else {
            return Ok(());
        };
        match first {
            Segment::Key(pattern) => {
                for (key, value) in map.iter_mut() {
                    if glob_match(pattern, key) {
                        self.json_path(keyed, rule, redactor, rest, value, column, applied)?;
                    }
                }
            }
            Segment::KeysOf(pattern) => {
                let strategy = &rule.strategy;
                self.rename_keys(
                    keyed,
                    strategy,
                    redactor,
                    map,
                    Some(pattern),
                    column,
                    applied,
                )?;
            }
            Segment::AnyDepth => {
                // `**` matches no level here, or one more level below.
                if !rest.is_empty() {
                    self.json_path(keyed, rule, redactor, rest, json, column, applied)?;
                }
                let Json::Object(map) = json else {
                    return Ok(());
                };
                for value in map.values_mut() {
                    self.json_path(keyed, rule, redactor, path, value, column, applied)?;
                }
            }
        }
        Ok(())
    }

    /// What [`Compiled::json_reached`] makes of the JSON string `text`,
    /// without building it: the new value when the rule changed it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn json_string_reached(
        &self,
        keyed: &Keyed,
        rule: &JsonRule,
        redactor: Option<&Redactor>,
        text: &str,
        column: &dyn Fn(&str) -> Option<String>,
        applied: &mut Applied,
    ) -> Result<Option<Json>, String> {
        let new = match &rule.strategy {
            Strategy::Set(None) => Some(Json::Null),
            Strategy::Set(Some(v)) => (v != text).then(|| Json::String(v.clone())),
            strategy => self
                .text(keyed, strategy, redactor, text, column, applied)?
                .filter(|new| new != text)
                .map(Json::String),
        };
        applied.changed |= new.is_some();
        Ok(new)
    }

    /// `rule.strategy` on a value its path reached.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn json_reached(
        &self,
        keyed: &Keyed,
        rule: &JsonRule,
        redactor: Option<&Redactor>,
        json: &mut Json,
        column: &dyn Fn(&str) -> Option<String>,
        applied: &mut Applied,
    ) -> Result<(), String> {
        match &rule.strategy {
            Strategy::Set(None) => {
                if !json.is_null() {
                    applied.changed = true;
                    *json = Json::Null;
                }
                Ok(())
            }
            Strategy::Set(Some(v)) => {
                if json.as_str() != Some(v) {
                    applied.changed = true;
                    *json = Json::String(v.clone());
                }
                Ok(())
            }
            strategy => self.json_leaves(keyed, strategy, redactor, json, column, applied),
        }
    }
}

fn is_finite_date(days: i32) -> bool {
    days != i32::MAX && days != i32::MIN
}

/// `YYYY-MM-DD` → days since 2000-01-01, read by the text codec.
fn parse_date(text: &str) -> Result<i32, String> {
    match codec::decode_text(FieldType::Date, text.as_bytes()) {
        Ok(Value::Date(days)) => Ok(days),
        _ => Err(format!("`{text}` is not a date")),
    }
}

/// Which column types a strategy can write; `Err` explains why not.
pub fn check_type(strategy: &Strategy, ty: FieldType) -> Result<(), String> {
    use FieldType as T;
    let ok = match strategy {
        Strategy::Keep | Strategy::Set(_) => true,
        Strategy::Fake { kind, .. } => match ty {
            T::Text | T::TextArray | T::Json | T::Jsonb => true,
            T::Date | T::Timestamp | T::Timestamptz => *kind == FakeKind::DateOfBirth,
            T::Inet | T::Cidr => matches!(kind, FakeKind::Ipv4 | FakeKind::Ipv6),
            T::Bytea => false,
        },
        Strategy::Hash { .. }
        | Strategy::Mask { .. }
        | Strategy::Regex { .. }
        | Strategy::Template(_) => matches!(ty, T::Text | T::TextArray | T::Json | T::Jsonb),
        // bytea is read as UTF-8 text; a value that is not is an error.
        Strategy::Redact(_) => matches!(ty, T::Text | T::TextArray | T::Json | T::Jsonb | T::Bytea),
        Strategy::Json(_) => matches!(ty, T::Json | T::Jsonb | T::Text),
        Strategy::DateShift { .. } => matches!(ty, T::Date | T::Timestamp | T::Timestamptz),
    };
    if ok {
        return Ok(());
    }
    let fits = match ty {
        T::Date | T::Timestamp | T::Timestamptz => {
            "`date_shift`, `fake: date_of_birth`, `set` or `null`"
        }
        T::Inet | T::Cidr => "`fake: ipv4`, `fake: ipv6`, `set` or `null`",
        T::Bytea => {
            "`redact` (on UTF-8 text), `set`, `null`, `keep`, or the table's `truncate: true`"
        }
        _ => "a text strategy",
    };
    Err(format!(
        "`{}` cannot produce a value of type {ty}; use {fits}",
        strategy.describe()
    ))
}

/// What kind of JSON error, without the position's context (which could
/// quote the value).
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Syntax => "a syntax error",
        serde_json::error::Category::Eof => "it ends too early",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "a read error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anonymize::rules::JsonPath;
    use chrono::NaiveDate;

    fn compiled(strategy: Strategy) -> Compiled {
        Compiled::new(strategy, Locale::En, None)
    }

    fn no_columns(_: &str) -> Option<String> {
        None
    }

    fn json_rule(path: &str, strategy: Strategy) -> JsonRule {
        JsonRule {
            path: JsonPath::parse(path).unwrap(),
            strategy,
        }
    }

    #[test]
    fn json_paths_globs_and_arrays() {
        let keyed = Keyed::new(Some("k"));
        let email = Strategy::Fake {
            kind: FakeKind::Email,
            unique: false,
            locale: None,
        };
        let c = compiled(Strategy::Json(vec![
            json_rule("contact.email", email.clone()),
            json_rule("*phone*", Strategy::Set(None)),
            json_rule("**.ip", Strategy::Set(Some("x".into()))),
            json_rule("items.name", Strategy::Hash { length: Some(6) }),
        ]));
        let mut v = Value::Json(
            serde_json::from_str(
                r#"{
            "contact": {"email": "a@example.net", "other": "keep"},
            "mobile_phone": "555", "home_phone": 1, "theme": "dark",
            "deep": {"deeper": {"ip": "192.0.2.1"}}, "ip": "192.0.2.2",
            "items": [{"name": "n1", "qty": 1.10}, {"name": "n2"}]
        }"#,
            )
            .unwrap(),
        );
        let applied = c.apply(&keyed, &mut v, &no_columns).unwrap();
        assert!(applied.changed);
        let Value::Json(j) = v else { panic!() };
        assert_ne!(j["contact"]["email"], "a@example.net");
        assert!(
            j["contact"]["email"]
                .as_str()
                .unwrap()
                .contains("@example.")
        );
        assert_eq!(j["contact"]["other"], "keep");
        assert_eq!(j["mobile_phone"], Json::Null);
        assert_eq!(j["home_phone"], Json::Null);
        assert_eq!(j["theme"], "dark");
        assert_eq!(j["deep"]["deeper"]["ip"], "x");
        assert_eq!(j["ip"], "x");
        assert_eq!(j["items"][0]["name"].as_str().unwrap().len(), 6);
        assert_eq!(
            j["items"][0]["qty"].to_string(),
            "1.10",
            "numbers keep their spelling"
        );
    }

    /// JSON nested far past the parser's limit (the server takes about
    /// 10,000 levels with its default stack), parsed, redacted at the
    /// bottom, written and dropped inside `codec::deep`; outside it the
    /// parser refuses, so nothing can overflow the stack by surprise.
    #[test]
    fn json_nested_thirty_thousand_deep_is_ruled_on_a_stack_of_its_own() {
        let depth = 30_000;
        let text = format!(
            "{}\"deep@realmail-prod.test\"{}",
            r#"{"in": ["#.repeat(depth / 2),
            "]}".repeat(depth / 2)
        );
        assert!(codec::decode(FieldType::Jsonb, &[&[1u8][..], text.as_bytes()].concat()).is_err());
        assert_eq!(codec::json_depth(text.as_bytes()), depth);
        let keyed = Keyed::new(Some("k"));
        let c = compiled(Strategy::Redact(vec!["email".into()]));
        let out = codec::deep(depth, || {
            let mut v = codec::decode_text(FieldType::Json, text.as_bytes()).unwrap();
            let applied = c.apply(&keyed, &mut v, &no_columns).unwrap();
            assert_eq!(applied.replacements, 1);
            codec::encode_text(FieldType::Json, &v).unwrap()
        });
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("realmail-prod"));
        assert_eq!(codec::json_depth(out.as_bytes()), depth);
    }

    #[test]
    fn a_path_ending_in_a_tilde_rules_the_keys_it_names_not_their_values() {
        let keyed = Keyed::new(Some("k"));
        let email = Strategy::Fake {
            kind: FakeKind::Email,
            unique: false,
            locale: None,
        };
        let c = compiled(Strategy::Json(vec![
            json_rule("subscribers.*@*~", email.clone()),
            json_rule("owner~", Strategy::Hash { length: Some(8) }),
        ]));
        let mut v = Value::Json(
            serde_json::from_str(
                r#"{"subscribers": {"Ada@Mail.Test": "weekly", "count": 2, "bo@mail.test": "daily"},
                    "owner": "same@mail.test"}"#,
            )
            .unwrap(),
        );
        let applied = c.apply(&keyed, &mut v, &no_columns).unwrap();
        assert!(applied.changed);
        let fake = |address: &str| {
            fakes::fake(
                FakeKind::Email,
                Locale::En,
                &keyed,
                address.as_bytes(),
                false,
            )
            .unwrap()
        };
        let Value::Json(json) = v else { panic!() };
        let keys: Vec<&String> = json["subscribers"].as_object().unwrap().keys().collect();
        // In their order, the one that is no address left alone, the values
        // untouched; the same fake as a column of the address would get.
        assert_eq!(
            keys,
            [&fake("ada@mail.test"), "count", &fake("bo@mail.test")]
        );
        assert_eq!(json["subscribers"][&fake("bo@mail.test")], "daily");
        let top: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(top[0], "subscribers");
        assert_eq!(top[1], &keyed.hash(b"owner", Some(8)));
        assert_eq!(json[top[1].as_str()], "same@mail.test");
    }

    #[test]
    fn redact_replaces_object_keys_like_values_and_refuses_colliding_keys() {
        let keyed = Keyed::new(Some("k"));
        let c = compiled(Strategy::Redact(vec!["email".into()]));
        let fake = |address: &str| {
            fakes::fake(
                FakeKind::Email,
                Locale::En,
                &keyed,
                address.as_bytes(),
                false,
            )
            .unwrap()
        };
        let mut v = Value::Json(
            serde_json::from_str(
                r#"{"ada@mail.test": true, "theme": "dark",
                    "by": {"grace@mail.test": {"cc": "mail ada@mail.test"}},
                    "list": [{"key ada@mail.test": 1}]}"#,
            )
            .unwrap(),
        );
        let applied = c.apply(&keyed, &mut v, &no_columns).unwrap();
        assert!(applied.changed);
        assert_eq!(applied.replacements, 4);
        let Value::Json(j) = v else { panic!() };
        let (ada, grace) = (fake("ada@mail.test"), fake("grace@mail.test"));
        let expected = serde_json::json!({
            ada.clone(): true, "theme": "dark",
            "by": {grace: {"cc": format!("mail {ada}")}},
            "list": [{format!("key {ada}"): 1}],
        });
        assert_eq!(j, expected);
        assert_eq!(
            j.as_object().unwrap().keys().collect::<Vec<_>>(),
            [&ada, "theme", "by", "list"],
            "keys keep their order"
        );
        assert!(!j.to_string().contains("mail.test"));

        // Keys that differ only by the case of an address get one fake:
        // an error, never one value silently dropped.
        let mut v = Value::Json(
            serde_json::from_str(r#"{"x": {"Ada@Mail.Test": 1, "ada@mail.test": 2}}"#).unwrap(),
        );
        let err = c.apply(&keyed, &mut v, &no_columns).unwrap_err();
        assert!(err.contains("two keys of one JSON object"), "{err}");
        assert!(!err.to_lowercase().contains("ada@mail.test"), "{err}");

        // Nothing to redact in the keys: nothing changes.
        let mut v = Value::Json(serde_json::json!({"a": {"b": 1}}));
        assert!(!c.apply(&keyed, &mut v, &no_columns).unwrap().changed);
    }

    #[test]
    fn same_input_same_output_across_strategies_and_types() {
        let keyed = Keyed::new(Some("k"));
        let email = Strategy::Fake {
            kind: FakeKind::Email,
            unique: true,
            locale: None,
        };
        let c = compiled(email);
        let mut a = Value::Text("jo@example.com".into());
        let mut b = Value::TextArray(crate::pg::codec::TextArray::of_text(vec![
            Some("jo@example.com".into()),
            None,
        ]));
        c.apply(&keyed, &mut a, &no_columns).unwrap();
        c.apply(&keyed, &mut b, &no_columns).unwrap();
        let Value::Text(a) = a else { panic!() };
        let Value::TextArray(b) = b else { panic!() };
        assert_eq!(b.elements, vec![Some(a), None]);
    }

    #[test]
    fn templates_dates_ips_and_limits() {
        let keyed = Keyed::new(Some("k"));
        let t = compiled(Strategy::Template(vec![
            TemplatePart::Text("user".into()),
            TemplatePart::Column("id".into()),
        ]));
        let mut v = Value::Text("old".into());
        t.apply(&keyed, &mut v, &|c| (c == "id").then(|| "42".into()))
            .unwrap();
        assert_eq!(v, Value::Text("user42".into()));

        let shift = compiled(Strategy::DateShift { days: 10 });
        let mut d = Value::Date(9000);
        shift.apply(&keyed, &mut d, &no_columns).unwrap();
        let Value::Date(moved) = d else { panic!() };
        assert!(moved != 9000 && (moved - 9000).abs() <= 10);
        let mut inf = Value::Date(i32::MAX);
        assert!(!shift.apply(&keyed, &mut inf, &no_columns).unwrap().changed);
        let mut ts = Value::Timestamp(9000 * DAY_US + 3_600_000_000);
        shift.apply(&keyed, &mut ts, &no_columns).unwrap();
        assert_eq!(
            ts,
            Value::Timestamp(i64::from(moved) * DAY_US + 3_600_000_000),
            "same day, same shift, time kept"
        );

        let ip = compiled(Strategy::Fake {
            kind: FakeKind::Ipv4,
            unique: false,
            locale: None,
        });
        let mut addr = Value::Inet("10.1.2.3".parse().unwrap(), 8, false);
        ip.apply(&keyed, &mut addr, &no_columns).unwrap();
        let Value::Inet(a, bits, _) = addr else {
            panic!()
        };
        assert!(
            a.to_string().starts_with("192.0.2.")
                || a.to_string().starts_with("198.51.100.")
                || a.to_string().starts_with("203.0.113.")
        );
        assert_eq!(bits, 32);

        let short = Compiled::new(Strategy::Hash { length: None }, Locale::En, Some(10));
        let mut h = Value::Text("x".into());
        short.apply(&keyed, &mut h, &no_columns).unwrap();
        let Value::Text(h) = h else { panic!() };
        assert_eq!(h.len(), 10);
    }

    /// Made-up people built from the fakes' own name tables (so a fake can
    /// land on its input, as "Smith" did) and common real-world names, with
    /// e-mail addresses in the usual shapes and cases, some already on the
    /// reserved domains fakes use.
    fn people(count: usize) -> Vec<(String, String, String)> {
        use fake::locales::{Data, EN};
        const COMMON_FIRST: &[&str] = &[
            "Maria",
            "James",
            "John",
            "Mary",
            "Robert",
            "Patricia",
            "Michael",
            "Jennifer",
            "William",
            "Linda",
            "David",
            "Elizabeth",
            "Jose",
            "Ana",
            "Mohammed",
            "Wei",
        ];
        const COMMON_LAST: &[&str] = &[
            "Smith",
            "Johnson",
            "Williams",
            "Brown",
            "Jones",
            "Garcia",
            "Miller",
            "Davis",
            "Rodriguez",
            "Martinez",
            "Hernandez",
            "Lopez",
            "Wilson",
            "Taylor",
            "Nguyen",
            "Kim",
        ];
        let first: Vec<&str> = COMMON_FIRST
            .iter()
            .chain(EN::NAME_FIRST_NAME)
            .copied()
            .collect();
        let last: Vec<&str> = COMMON_LAST
            .iter()
            .chain(EN::NAME_LAST_NAME)
            .copied()
            .collect();
        let domains = ["example.org", "example.com", "mail.test", "Corp.Invalid"];
        (0..count)
            .map(|i| {
                // Strides coprime to the table lengths walk every pairing.
                let f = first[i % first.len()];
                let l = last[(i * 7 + i / first.len()) % last.len()];
                let d = domains[i % domains.len()];
                let (fl, ll) = (f.to_lowercase(), l.to_lowercase().replace('\'', ""));
                let email = match i % 5 {
                    0 => format!("{fl}.{ll}@{d}"),
                    1 => format!("{f}.{l}@{d}"),
                    2 => format!("{}{ll}@{d}", &fl[..1]),
                    3 => format!("{fl}_{ll}{}@{d}", i % 100),
                    _ => format!("{}@{d}", fl.to_uppercase()),
                };
                (f.to_string(), l.to_string(), email)
            })
            .collect()
    }

    fn text_of(c: &Compiled, keyed: &Keyed, input: &str) -> String {
        let mut v = Value::Text(input.to_string());
        c.apply(keyed, &mut v, &no_columns).unwrap();
        let Value::Text(out) = v else { panic!() };
        out
    }

    #[test]
    fn no_value_is_left_as_it_was_across_a_hundred_thousand_people() {
        let keyed = Keyed::new(Some("property"));
        let fake = |kind, unique| {
            compiled(Strategy::Fake {
                kind,
                unique,
                locale: None,
            })
        };
        let first = fake(FakeKind::FirstName, false);
        let last = fake(FakeKind::LastName, false);
        let name = fake(FakeKind::Name, false);
        let email = fake(FakeKind::Email, false);
        let unique_email = fake(FakeKind::Email, true);
        let username = fake(FakeKind::Username, true);
        let hash = compiled(Strategy::Hash { length: Some(3) });
        let mask = compiled(Strategy::Mask {
            first: 2,
            last: 0,
            with: 'a',
        });
        let redact = compiled(Strategy::Redact(vec!["email".into()]));
        // A replacement that gives every match back: scrambled instead.
        let regex = compiled(Strategy::Regex {
            pattern: regex::Regex::new("^([A-Za-z]+)").unwrap(),
            replace: "$1".into(),
        });
        let people = people(100_000);
        let mut emails = std::collections::HashMap::new();
        for (i, (f, l, e)) in people.iter().enumerate() {
            let full = format!("{f} {l}");
            for (c, input) in [
                (&first, f.as_str()),
                (&last, l.as_str()),
                (&name, full.as_str()),
                (&username, f.as_str()),
                (&hash, &f[..f.len().min(3)]),
                (&mask, f.as_str()),
                (&regex, l.as_str()),
            ] {
                let out = text_of(c, &keyed, input);
                assert!(
                    !fakes::same_ignoring_case(&out, input),
                    "{input} stayed {out}"
                );
            }
            let plain = text_of(&email, &keyed, e);
            assert!(!fakes::same_ignoring_case(&plain, e), "{e} stayed");
            // `unique` and case agree: one person, one fake.
            assert_eq!(text_of(&unique_email, &keyed, e), plain, "{e}");
            assert_eq!(text_of(&email, &keyed, &e.to_uppercase()), plain, "{e}");
            if i % 10 == 0 {
                let note = format!("write to {e} please");
                assert_eq!(
                    text_of(&redact, &keyed, &note),
                    format!("write to {plain} please"),
                    "a redact find is the column's fake"
                );
            }
            // Distinct addresses (ignoring case) never share a fake.
            if let Some(other) = emails.insert(plain.clone(), e.to_lowercase()) {
                assert_eq!(other, e.to_lowercase(), "{plain} for two addresses");
            }
        }
    }

    #[test]
    fn fakes_of_dates_and_ips_never_repeat_their_input() {
        let keyed = Keyed::new(Some("k"));
        let dob = compiled(Strategy::Fake {
            kind: FakeKind::DateOfBirth,
            unique: false,
            locale: None,
        });
        let shift = compiled(Strategy::DateShift { days: 1 });
        let (from, to) = fakes::date_of_birth_range();
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        for day in (from - epoch).num_days()..=(to - epoch).num_days() {
            let day = i32::try_from(day).unwrap();
            for c in [&dob, &shift] {
                let mut v = Value::Date(day);
                assert!(c.apply(&keyed, &mut v, &no_columns).unwrap().changed);
                let mut ts = Value::Timestamp(i64::from(day) * DAY_US);
                assert!(c.apply(&keyed, &mut ts, &no_columns).unwrap().changed);
            }
        }
        let ip = compiled(Strategy::Fake {
            kind: FakeKind::Ipv4,
            unique: false,
            locale: None,
        });
        for net in ["192.0.2", "198.51.100", "203.0.113"] {
            for host in 1..255 {
                let addr: IpAddr = format!("{net}.{host}").parse().unwrap();
                let mut v = Value::Inet(addr, 32, false);
                assert!(
                    ip.apply(&keyed, &mut v, &no_columns).unwrap().changed,
                    "{addr}"
                );
            }
        }
    }

    #[test]
    fn type_checks() {
        assert!(check_type(&Strategy::Hash { length: None }, FieldType::Date).is_err());
        assert!(check_type(&Strategy::DateShift { days: 3 }, FieldType::Text).is_err());
        assert!(
            check_type(
                &Strategy::Fake {
                    kind: FakeKind::Email,
                    unique: false,
                    locale: None
                },
                FieldType::Inet
            )
            .is_err()
        );
        assert!(
            check_type(
                &Strategy::Fake {
                    kind: FakeKind::Ipv6,
                    unique: false,
                    locale: None
                },
                FieldType::Inet
            )
            .is_ok()
        );
        assert!(
            check_type(
                &Strategy::Fake {
                    kind: FakeKind::DateOfBirth,
                    unique: false,
                    locale: None
                },
                FieldType::Date
            )
            .is_ok()
        );
    }
}
