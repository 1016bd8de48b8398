//! A starter rules file from a coverage scan: the shipped presets that
//! apply (`extends:`), a suggested strategy for each finding they leave,
//! `keep:` for the text columns nothing pointed at, and per table how many
//! of its rows the evidence came from. A person reads it before using it;
//! every suggestion says why it was made.
//!
//! Every suggestion is one the binder accepts for the column's type and
//! width (an e-mail fake needs 64 characters; a column that refuses NULL
//! gets a constant), and every name is quoted so the file reads back; the
//! caller binds what it wrote and asks again, with [`Starter::lines`], for
//! the columns whose rule was refused anyway. Pure: the scan's reads are
//! handed in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::bind::{Binding, Class, Coverage, Evidence, max_chars};
use super::detect::{self, Sampled};
use crate::pg::catalog::{ColumnFacts, Table};
use crate::pg::codec::FieldType;

/// A lookup table has at most this many rows: 16 film categories, 6
/// languages, 50 states.
pub const LOOKUP_ROWS: u64 = 100;

/// Everything a starter file is written from.
pub struct Scanned<'a> {
    /// Bound with the presets in `presets` (and nothing else), sampled.
    pub binding: &'a Binding,
    pub tables: &'a [Table],
    /// The source, as shown (password masked).
    pub source: &'a str,
    /// How much of each table (by `Table::qualified`) was read.
    pub read: &'a BTreeMap<String, Sampled>,
    pub facts: &'a ColumnFacts,
    /// `preset:wagtail`, …: extended by the file.
    pub presets: &'a [String],
    /// `(Table::qualified, column)` whose first suggestion the binder
    /// refused: they get the plainest rule that fits.
    pub refused: &'a BTreeSet<(String, String)>,
}

/// The starter file's text, and which column each rule line is for.
pub struct Starter {
    pub text: String,
    /// `(line number, Table::qualified, column)` of every column rule.
    pub lines: Vec<(usize, String, String)>,
}

/// What a column's type allows a suggestion to be.
struct Column<'a> {
    name: &'a str,
    type_name: &'a str,
    not_null: bool,
}

/// The rule suggested for an uncovered column.
fn suggest(column: &Column, evidence: &Evidence) -> String {
    let word = evidence.name_hint.unwrap_or("");
    let lower = column.name.to_ascii_lowercase();
    let matched = |kind: &str| evidence.matches.iter().any(|(k, _)| k == kind);
    if detect::is_bytea(column.type_name) {
        // Bytes that decoded as text holding personal data: replace it in
        // the text; anything else (a photo, a scan): no bytes at all.
        return if evidence.matches.is_empty() {
            constant(column)
        } else {
            redact(evidence)
        };
    }
    let rule = match FieldType::from_pg(column.type_name) {
        Some(FieldType::Date | FieldType::Timestamp | FieldType::Timestamptz) => {
            if matches!(word, "birth" | "dob") {
                "{ fake: date_of_birth }".into()
            } else {
                "{ date_shift: 30 }".into()
            }
        }
        Some(FieldType::Inet | FieldType::Cidr) => "{ fake: ipv4 }".into(),
        Some(FieldType::Json | FieldType::Jsonb) => "{ redact: [email, phone, ip, card] }".into(),
        Some(FieldType::Text | FieldType::TextArray) => match word {
            "email" | "mail" => "{ fake: email }".into(),
            "phone" | "mobile" | "tel" | "fax" => "{ fake: phone }".into(),
            "name" if lower.contains("first") || lower.contains("given") => {
                "{ fake: first_name }".into()
            }
            "name"
                if lower.contains("last")
                    || lower.contains("family")
                    || lower.contains("surname") =>
            {
                "{ fake: last_name }".into()
            }
            "name" if lower.contains("user") => "{ fake: username, unique: true }".into(),
            "name" => "{ fake: name }".into(),
            "address" | "street" => "{ fake: street_address }".into(),
            "city" => "{ fake: city }".into(),
            "postcode" | "zip" => "{ fake: postcode }".into(),
            "ip" => "{ fake: ipv4 }".into(),
            "password" => "{ set: \"!\" }".into(),
            "birth" | "dob" => "{ fake: date_of_birth }".into(),
            _ if !word.is_empty() => "{ hash: true }".into(),
            _ if matched("email") && evidence.matches.len() == 1 && all_match(evidence) => {
                "{ fake: email }".into()
            }
            _ => redact(evidence),
        },
        // A type no rule can transform (numbers, booleans, enums): an
        // explicit constant.
        _ => constant(column),
    };
    fit(column, rule)
}

/// `{ redact: [email, phone] }` for the kinds the sample found.
fn redact(evidence: &Evidence) -> String {
    let kinds: Vec<&str> = evidence.matches.iter().map(|(k, _)| k.as_str()).collect();
    if kinds.is_empty() {
        return "{ redact: [email, phone, ip, card] }".into();
    }
    format!("{{ redact: [{}] }}", kinds.join(", "))
}

/// `null`, or a constant of the column's type when it refuses NULL.
fn constant(column: &Column) -> String {
    if !column.not_null {
        return "null".into();
    }
    let ty = column.type_name.trim().to_ascii_lowercase();
    let value = if ty == "boolean" {
        "false"
    } else if ty == "uuid" {
        "00000000-0000-0000-0000-000000000000"
    } else if ty.starts_with("date") || ty.starts_with("timestamp") {
        "2000-01-01"
    } else if ty.starts_with("time") {
        "00:00"
    } else if detect::safe_by_type(&ty) && !ty.contains("range") && !ty.ends_with("[]") {
        "0"
    } else {
        // bytea, text and others: the empty value.
        ""
    };
    format!("{{ set: \"{value}\" }}")
}

/// `rule`, or a hash when the column is too narrow for it: e-mail and URL
/// fakes need 64 characters, unique fakes 40 (the binder refuses less).
fn fit(column: &Column, rule: String) -> String {
    let Some(width) = max_chars(column.type_name) else {
        return rule;
    };
    let needs = if rule.contains("fake: email") || rule.contains("fake: url") {
        64
    } else if rule.contains("unique: true") {
        40
    } else {
        0
    };
    if width < needs {
        "{ hash: true }".into()
    } else {
        rule
    }
}

/// The rule for a column whose suggestion the binder refused: one no
/// binder refuses (a constant).
fn plainest(column: &Column) -> String {
    constant(column)
}

/// Nearly every sampled value matched: the column holds that kind, not text
/// that mentions it.
fn all_match(evidence: &Evidence) -> bool {
    evidence
        .matches
        .iter()
        .any(|(_, n)| *n * 10 >= evidence.sampled * 9)
}

/// `auth_user`, or `"Order Items"` when YAML needs quotes: a double-quoted
/// scalar with every character that could end it, start a comment or break
/// a line escaped.
fn yaml_key(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !matches!(
            name,
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The key of a table in a rules file: `orders`, `app.orders`, and with a
/// dot in either name the schema quoted (`"my.app".orders`,
/// `"public".odd.name`), each quoted as YAML needs.
fn table_key(table: &Table) -> String {
    let key = if table.schema.contains('.') || table.name.contains('.') {
        format!("\"{}\".{}", table.schema, table.name)
    } else if table.schema == "public" {
        table.name.clone()
    } else {
        format!("{}.{}", table.schema, table.name)
    };
    yaml_key(&key)
}

/// Text safe inside a `#` comment: one line.
fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Whether `table` is reference data: few rows, pointed at by other
/// tables' foreign keys, named for no kind of person, and its only finding
/// a bare `name` no sample matched. Then its `name` is kept, with why.
fn lookup_table(table: &Table, found: &[&Coverage], scanned: &Scanned) -> Option<String> {
    const PEOPLE: &[&str] = &[
        "user",
        "person",
        "people",
        "customer",
        "client",
        "member",
        "contact",
        "employee",
        "staff",
        "author",
        "actor",
        "account",
        "patient",
        "student",
        "profile",
        "owner",
        "subscriber",
        "applicant",
        "candidate",
        "guest",
        "visitor",
        "buyer",
        "seller",
        "lead",
        "recipient",
        "sender",
        "signup",
        "registration",
        "participant",
        "volunteer",
        "donor",
    ];
    let references = *scanned.facts.referenced_by.get(&table.oid)?;
    let read = scanned.read.get(&table.qualified)?;
    let rows = if read.whole {
        read.rows
    } else {
        read.estimate.max(0) as u64
    };
    let lower = table.name.to_ascii_lowercase();
    let people = PEOPLE.iter().any(|p| lower.contains(p));
    let only_names = found.iter().all(|c| match &c.class {
        Class::Uncovered(e) => {
            e.matches.is_empty()
                && (c.column == "name" && e.name_hint == Some("name") || e.name_hint.is_none())
        }
        _ => true,
    });
    (rows <= LOOKUP_ROWS && references > 0 && !people && only_names).then(|| {
        format!(
            "reference data: {rows} row{}, referenced by {references} foreign key{} (a lookup table, not people) — check",
            if rows == 1 { "" } else { "s" },
            if references == 1 { "" } else { "s" },
        )
    })
}

/// The starter file: the applicable presets extended, rules for every
/// column they leave uncovered, by table.
pub fn starter(scanned: &Scanned) -> Starter {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Starter rules written by `flightpath scan` for {}.\n\
         # Each rule is a suggestion with the evidence behind it: read them before use.\n\
         # Columns that looked safe are under `keep:`; check those too.",
        comment_text(scanned.source)
    );
    if !scanned.presets.is_empty() {
        let _ = writeln!(
            out,
            "# The presets below apply to this schema (their tables exist); the tables\n\
             # here list only what they leave uncovered.\n\
             extends: [{}]",
            scanned
                .presets
                .iter()
                .map(|p| yaml_key(p))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out.push_str("secret: ${FLIGHTPATH_SECRET}\nunknown_columns: error\ntables:\n");
    let mut by_table: BTreeMap<&str, Vec<&Coverage>> = BTreeMap::new();
    for c in scanned.binding.uncovered() {
        by_table.entry(c.table.as_str()).or_default().push(c);
    }
    let mut lines = Vec::new();
    let mut any = false;
    for table in scanned.tables {
        let Some(found) = by_table.get(table.qualified.as_str()) else {
            continue;
        };
        any = true;
        let read = scanned
            .read
            .get(&table.qualified)
            .map(|r| format!("   # {}", r.describe()))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}:{read}", table_key(table));
        let lookup = lookup_table(table, found, scanned);
        let mut rules = Vec::new();
        let mut keep = Vec::new();
        for c in found {
            let Class::Uncovered(evidence) = &c.class else {
                continue;
            };
            let column = Column {
                name: &c.column,
                type_name: &c.type_name,
                not_null: scanned
                    .facts
                    .not_null
                    .contains(&(table.oid, c.column.clone())),
            };
            let file = detect::is_bytea(&c.type_name)
                .then(|| detect::file_hint(&c.column))
                .flatten();
            let strong =
                evidence.name_hint.is_some() || !evidence.matches.is_empty() || file.is_some();
            if let (Some(why), Some("name")) = (&lookup, evidence.name_hint) {
                rules.push((
                    c.column.as_str(),
                    "keep".to_string(),
                    format!("{}; {why}", evidence.describe()),
                ));
            } else if strong {
                let first = suggest(&column, evidence);
                let refused = scanned
                    .refused
                    .contains(&(c.table.clone(), c.column.clone()));
                let rule = if refused {
                    plainest(&column)
                } else {
                    first.clone()
                };
                let mut why = evidence.describe();
                if let Some(word) = file {
                    why = format!("bytes named `{word}`; {why}");
                }
                if rule != first {
                    why = format!("{why}; `{first}` does not bind to this column");
                }
                rules.push((c.column.as_str(), rule, why));
            } else {
                keep.push(yaml_key(&c.column));
            }
        }
        if !rules.is_empty() {
            let _ = writeln!(out, "    columns:");
            for (column, rule, why) in rules {
                let _ = writeln!(
                    out,
                    "      {}: {rule}   # {}",
                    yaml_key(column),
                    comment_text(&why)
                );
                lines.push((
                    out.matches('\n').count(),
                    table.qualified.clone(),
                    column.to_string(),
                ));
            }
        }
        if !keep.is_empty() {
            let _ = writeln!(
                out,
                "    keep: [{}]   # no personal data seen in their names or a sample",
                keep.join(", ")
            );
        }
    }
    if !any {
        out.push_str("  {}   # every column is covered\n");
    }
    Starter { text: out, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col<'a>(name: &'a str, type_name: &'a str) -> Column<'a> {
        Column {
            name,
            type_name,
            not_null: false,
        }
    }

    #[test]
    fn suggestions_follow_the_evidence() {
        let named = |word| Evidence {
            name_hint: Some(word),
            textual: true,
            ..Default::default()
        };
        assert_eq!(
            suggest(&col("email", "character varying(254)"), &named("email")),
            "{ fake: email }"
        );
        assert_eq!(
            suggest(&col("first_name", "text"), &named("name")),
            "{ fake: first_name }"
        );
        assert_eq!(
            suggest(&col("date_of_birth", "date"), &named("birth")),
            "{ fake: date_of_birth }"
        );
        assert_eq!(
            suggest(&col("last_ip", "inet"), &named("ip")),
            "{ fake: ipv4 }"
        );
        assert_eq!(
            suggest(&col("api_token", "text"), &named("token")),
            "{ hash: true }"
        );
        let sampled = Evidence {
            sampled: 100,
            matches: vec![("email".into(), 3), ("phone".into(), 1)],
            textual: true,
            ..Default::default()
        };
        assert_eq!(
            suggest(&col("notes", "text"), &sampled),
            "{ redact: [email, phone] }"
        );
        assert_eq!(
            suggest(&col("password_hash", "bytea"), &named("password")),
            "null"
        );
        assert_eq!(
            suggest(&col("blob", "bytea"), &sampled),
            "{ redact: [email, phone] }"
        );
    }

    #[test]
    fn suggestions_fit_the_column() {
        let named = |word| Evidence {
            name_hint: Some(word),
            textual: true,
            ..Default::default()
        };
        assert_eq!(
            suggest(&col("email", "character varying(10)"), &named("email")),
            "{ hash: true }"
        );
        assert_eq!(
            suggest(&col("email", "character(40)"), &named("email")),
            "{ hash: true }"
        );
        assert_eq!(
            suggest(&col("username", "character varying(30)"), &named("name")),
            "{ hash: true }"
        );
        assert_eq!(
            suggest(&col("email", "character varying(64)"), &named("email")),
            "{ fake: email }"
        );
        let not_null = |name, type_name| Column {
            name,
            type_name,
            not_null: true,
        };
        assert_eq!(suggest(&col("age", "integer"), &named("age")), "null");
        assert_eq!(
            suggest(&not_null("age", "integer"), &named("age")),
            "{ set: \"0\" }"
        );
        assert_eq!(
            suggest(&not_null("photo", "bytea"), &Evidence::default()),
            "{ set: \"\" }"
        );
    }

    #[test]
    fn keys_are_quoted_so_they_read_back() {
        assert_eq!(yaml_key("auth_user"), "auth_user");
        assert_eq!(yaml_key("Order Items"), "\"Order Items\"");
        assert_eq!(yaml_key("null"), "\"null\"");
        assert_eq!(yaml_key("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(yaml_key("two\nlines # x: y"), "\"two\\nlines # x: y\"");
        assert_eq!(yaml_key("bell\u{7}"), "\"bell\\u0007\"");
        assert_eq!(comment_text("a\nb"), "a b");
    }
}
