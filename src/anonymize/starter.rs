//! A starter rules file from a coverage scan: a suggested strategy for each
//! finding, `keep:` for the text columns nothing pointed at. A person reads
//! it before using it; every suggestion says why it was made.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::bind::{Binding, Class, Coverage, Evidence};
use crate::pg::catalog::Table;
use crate::pg::codec::FieldType;

/// The rule suggested for an uncovered column, and why.
fn suggest(type_name: &str, evidence: &Evidence, column: &str) -> String {
    let ty = FieldType::from_pg(type_name);
    let word = evidence.name_hint.unwrap_or("");
    let lower = column.to_ascii_lowercase();
    let matched = |kind: &str| evidence.matches.iter().any(|(k, _)| k == kind);
    match ty {
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
            _ => {
                let kinds: Vec<&str> = evidence.matches.iter().map(|(k, _)| k.as_str()).collect();
                format!("{{ redact: [{}] }}", kinds.join(", "))
            }
        },
        // A type no rule can transform (or, for bytea, only `redact` on
        // UTF-8): an explicit constant.
        Some(FieldType::Bytea) | None => "null".into(),
    }
}

/// Nearly every sampled value matched: the column holds that kind, not text
/// that mentions it.
fn all_match(evidence: &Evidence) -> bool {
    evidence
        .matches
        .iter()
        .any(|(_, n)| *n * 10 >= evidence.sampled * 9)
}

/// `auth_user`, or `"Order Items"` when YAML needs quotes.
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
            "null" | "true" | "false" | "yes" | "no" | "on" | "off"
        );
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The starter file's text: rules for every uncovered column of `tables`.
pub fn starter(binding: &Binding, tables: &[Table], source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Starter rules written by `flightpath scan` for {source}.\n\
         # Each rule is a suggestion with the evidence behind it: read them before use.\n\
         # Columns that looked safe are under `keep:`; check those too.\n\
         secret: ${{FLIGHTPATH_SECRET}}\n\
         unknown_columns: error\n\
         tables:"
    );
    let mut by_table: BTreeMap<&str, Vec<&Coverage>> = BTreeMap::new();
    for c in binding.uncovered() {
        by_table.entry(c.table.as_str()).or_default().push(c);
    }
    let mut any = false;
    for table in tables {
        let Some(found) = by_table.get(table.qualified.as_str()) else {
            continue;
        };
        any = true;
        // One key, quoted as a whole when needed: `"My Schema.orders"`.
        let name = if table.schema == "public" {
            yaml_key(&table.name)
        } else {
            yaml_key(&format!("{}.{}", table.schema, table.name))
        };
        let _ = writeln!(out, "  {name}:");
        let mut rules = Vec::new();
        let mut keep = Vec::new();
        for c in found {
            let Class::Uncovered(evidence) = &c.class else {
                continue;
            };
            let strong = evidence.name_hint.is_some() || !evidence.matches.is_empty();
            if strong {
                rules.push((
                    yaml_key(&c.column),
                    suggest(&c.type_name, evidence, &c.column),
                    evidence.describe(),
                ));
            } else {
                keep.push(yaml_key(&c.column));
            }
        }
        if !rules.is_empty() {
            let _ = writeln!(out, "    columns:");
            for (column, rule, why) in rules {
                let _ = writeln!(out, "      {column}: {rule}   # {why}");
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_follow_the_evidence() {
        let named = |word| Evidence {
            name_hint: Some(word),
            textual: true,
            ..Default::default()
        };
        assert_eq!(
            suggest("character varying(254)", &named("email"), "email"),
            "{ fake: email }"
        );
        assert_eq!(
            suggest("text", &named("name"), "first_name"),
            "{ fake: first_name }"
        );
        assert_eq!(
            suggest("date", &named("birth"), "date_of_birth"),
            "{ fake: date_of_birth }"
        );
        assert_eq!(suggest("inet", &named("ip"), "last_ip"), "{ fake: ipv4 }");
        assert_eq!(
            suggest("text", &named("token"), "api_token"),
            "{ hash: true }"
        );
        let sampled = Evidence {
            sampled: 100,
            matches: vec![("email".into(), 3), ("phone".into(), 1)],
            textual: true,
            ..Default::default()
        };
        assert_eq!(
            suggest("text", &sampled, "notes"),
            "{ redact: [email, phone] }"
        );
        assert_eq!(
            suggest("bytea", &named("password"), "password_hash"),
            "null"
        );
        assert_eq!(yaml_key("Order Items"), "\"Order Items\"");
        assert_eq!(yaml_key("null"), "\"null\"");
    }
}
