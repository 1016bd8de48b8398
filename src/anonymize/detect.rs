//! Evidence that a column nobody wrote a rule for holds personal data: what
//! its name suggests, whether its type could hold any, and what a bounded
//! sample of its values looks like.
//!
//! Coverage uses this to decide which unruled columns stop a run, and to
//! say why; `flightpath scan` uses it to draft a rules file. The evidence is
//! deliberately cautious: a name hint or a type that *could* hold personal
//! data asks the user to decide, it never decides for them. Sampling counts
//! what values look like: no value is returned, logged or kept.
//!
//! Which values are looked at is decided here ([`read_for`]): a small
//! table whole, a large one by a repeatable page sample from all over it,
//! or every row ([`Depth::Full`]); `bytea` as the text it decodes to.
//!
//! Pure, like the rest of the anonymizer: this builds the sampling query
//! ([`sample_sql`]) and counts each value handed to it ([`sample_value`],
//! [`sample_bytes`]); running the query is the clone's
//! (`clone::plan::sample_table`).

use std::collections::{BTreeMap, BTreeSet};

use super::patterns::{self, PiiKind};
use crate::pg::catalog::Table;
use crate::pg::ident::quote_ident;

/// The personal-data word that `column`'s name contains, as a canonical
/// hint (`"email"`, `"name"`, `"ip"`, …), or `None`.
///
/// The name is cut into words at `_`, `-`, spaces and camelCase humps
/// (`lastLoginIP` → `last login ip`), and words are matched whole, so `zip`
/// is not `ip`, `discard` is not `card` and `description` is not `ip`; a
/// few run-together compounds are known (`firstname`, `emailaddress`,
/// `useremail`, `csrftoken`). Later words weigh more, as the last word
/// usually names what the column holds: `reset_password_token` is a token,
/// `email_address` an e-mail.
///
/// Not flagged: flags and facts *about* personal data rather than the data
/// (`is_email_verified`, `reset_password_sent_at`, `sign_in_count`,
/// `email_id` — a key into another table), and the `name` of a thing
/// (`site_name`, `file_name`, `hostname`, `codename`). A bare `name` is
/// flagged: it is a person's name often enough (`auth_group.name` is not,
/// and the presets keep it).
pub fn name_hint(column: &str) -> Option<&'static str> {
    let words = words(column);
    let (first, last) = (words.first()?, words.last()?);
    if FLAG_PREFIXES.contains(&first.as_str()) && words.len() > 1 {
        return None;
    }
    if let Some(hint) = phrase_ending_at(&words, words.len() - 1) {
        return Some(hint);
    }
    if words.len() > 1 && ABOUT_WORDS.contains(&last.as_str()) {
        return None;
    }
    (0..words.len()).rev().find_map(|i| {
        phrase_ending_at(&words, i).or_else(|| {
            let hint = word_hint(&words[i])?;
            let names_a_thing = hint == "name"
                && matches!(words[i].as_str(), "name" | "names")
                && i > 0
                && THING_WORDS.contains(&words[i - 1].as_str());
            // `max_age` of a cache or a cookie is no one's age.
            let a_limit = hint == "age"
                && i > 0
                && matches!(words[i - 1].as_str(), "max" | "min" | "cache" | "cookie");
            (!names_a_thing && !a_limit).then_some(hint)
        })
    })
}

/// Lower-case words of a column name: split at non-alphanumerics and at
/// case changes (`IPAddress` → `ip`, `address`); digits stay with the word
/// before them (`address2`, `ipv4`).
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        let hump = c.is_uppercase()
            && prev.is_some_and(|p| {
                p.is_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
            });
        if hump && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// First words that make a column a flag about something (`is_email`,
/// `has_phone`), not the thing itself.
const FLAG_PREFIXES: &[&str] = &[
    "is", "has", "have", "can", "should", "allow", "allows", "show", "use", "uses", "needs",
];

/// Last words that make a column a fact about personal data, not the data:
/// when it happened, how often, whether it holds, which row it points to.
const ABOUT_WORDS: &[&str] = &[
    "at",
    "on",
    "count",
    "counts",
    "verified",
    "confirmed",
    "enabled",
    "disabled",
    "sent",
    "status",
    "type",
    "kind",
    "id",
    "ids",
    "pk",
    "fk",
    "length",
    "len",
    "format",
    "valid",
    "visible",
    "required",
    "changed",
    "updated",
    "created",
    "attempts",
    "consent",
    "domain",
];

/// Words that, right before `name`, make it the name of a thing (or of a
/// place whose own word is the better hint: `city_name` is a city).
const THING_WORDS: &[&str] = &[
    "action",
    "api",
    "app",
    "attr",
    "attribute",
    "block",
    "brand",
    "branch",
    "bucket",
    "business",
    "campaign",
    "category",
    "channel",
    "class",
    "city",
    "cluster",
    "code",
    "collection",
    "column",
    "command",
    "company",
    "component",
    "constraint",
    "container",
    "country",
    "currency",
    "database",
    "db",
    "dir",
    "directory",
    "document",
    "domain",
    "endpoint",
    "entity",
    "env",
    "environment",
    "event",
    "extension",
    "feature",
    "field",
    "file",
    "folder",
    "font",
    "form",
    "function",
    "group",
    "host",
    "image",
    "index",
    "item",
    "job",
    "key",
    "label",
    "language",
    "layout",
    "list",
    "locale",
    "machine",
    "media",
    "menu",
    "method",
    "model",
    "module",
    "node",
    "object",
    "option",
    "org",
    "organisation",
    "organization",
    "package",
    "page",
    "param",
    "parameter",
    "path",
    "permission",
    "plan",
    "plugin",
    "policy",
    "product",
    "project",
    "property",
    "provider",
    "queue",
    "region",
    "release",
    "report",
    "repo",
    "repository",
    "resource",
    "role",
    "room",
    "route",
    "rule",
    "schema",
    "section",
    "sequence",
    "server",
    "service",
    "setting",
    "shop",
    "site",
    "slug",
    "source",
    "stage",
    "state",
    "status",
    "step",
    "store",
    "street",
    "table",
    "tag",
    "target",
    "task",
    "team",
    "template",
    "theme",
    "topic",
    "town",
    "trigger",
    "type",
    "unit",
    "url",
    "variable",
    "variant",
    "venue",
    "version",
    "view",
    "webhook",
    "widget",
    "workflow",
];

/// Runs of words with a meaning of their own, and their hint.
const PHRASES: &[(&[&str], &str)] = &[
    (&["e", "mail"], "email"),
    (&["email", "address"], "email"),
    (&["email", "addr"], "email"),
    (&["mail", "address"], "email"),
    (&["ip", "address"], "ip"),
    (&["ip", "addr"], "ip"),
    (&["remote", "addr"], "ip"),
    (&["remote", "address"], "ip"),
    (&["remote", "host"], "ip"),
    (&["client", "addr"], "ip"),
    (&["client", "address"], "ip"),
    (&["peer", "addr"], "ip"),
    (&["user", "agent"], "user_agent"),
    (&["date", "of", "birth"], "birth"),
    (&["post", "code"], "postcode"),
    (&["postal", "code"], "postcode"),
    (&["zip", "code"], "zip"),
    (&["national", "id"], "national_id"),
    (&["national", "insurance"], "national_id"),
    (&["social", "security"], "ssn"),
    (&["tax", "id"], "tax_id"),
    (&["driver", "license"], "driving_licence"),
    (&["drivers", "license"], "driving_licence"),
    (&["driving", "licence"], "driving_licence"),
    (&["driving", "license"], "driving_licence"),
    (&["account", "number"], "account_number"),
    (&["account", "no"], "account_number"),
    (&["account", "num"], "account_number"),
    (&["bank", "account"], "account_number"),
    (&["born", "on"], "birth"),
    (&["born", "at"], "birth"),
    (&["weight", "kg"], "body"),
    (&["weight", "lb"], "body"),
    (&["weight", "lbs"], "body"),
    (&["height", "cm"], "body"),
    (&["height", "in"], "body"),
    (&["height", "inches"], "body"),
    (&["body", "weight"], "body"),
    (&["body", "height"], "body"),
    (&["api", "key"], "api_key"),
    (&["access", "key"], "access_key"),
    (&["private", "key"], "private_key"),
    (&["session", "key"], "session_key"),
    (&["auth", "key"], "secret"),
    (&["signing", "key"], "secret"),
    (&["encryption", "key"], "secret"),
];

fn phrase_ending_at(words: &[String], i: usize) -> Option<&'static str> {
    let before = &words[..=i];
    PHRASES.iter().find_map(|(phrase, hint)| {
        (before.len() >= phrase.len()
            && before[before.len() - phrase.len()..]
                .iter()
                .zip(phrase.iter())
                .all(|(w, p)| w == p))
        .then_some(*hint)
    })
}

/// Single words (and known run-together compounds), and their hint.
const WORDS: &[(&str, &str)] = &[
    ("email", "email"),
    ("emailaddress", "email"),
    ("emailaddr", "email"),
    ("mail", "mail"),
    ("name", "name"),
    ("firstname", "name"),
    ("lastname", "name"),
    ("fullname", "name"),
    ("username", "name"),
    ("displayname", "name"),
    ("surname", "name"),
    ("forename", "name"),
    ("forenames", "name"),
    ("nickname", "name"),
    ("givenname", "name"),
    ("familyname", "name"),
    ("middlename", "name"),
    ("maidenname", "name"),
    ("realname", "name"),
    ("screenname", "name"),
    ("phone", "phone"),
    ("telephone", "phone"),
    ("phonenumber", "phone"),
    ("phonenum", "phone"),
    ("phoneno", "phone"),
    ("cellphone", "phone"),
    ("homephone", "phone"),
    ("workphone", "phone"),
    ("mobilephone", "phone"),
    ("msisdn", "phone"),
    ("mobile", "mobile"),
    ("tel", "tel"),
    ("fax", "fax"),
    ("address", "address"),
    ("addr", "address"),
    ("street", "street"),
    ("city", "city"),
    ("town", "city"),
    ("postcode", "postcode"),
    ("postalcode", "postcode"),
    ("postal", "postcode"),
    ("zip", "zip"),
    ("zipcode", "zip"),
    ("birth", "birth"),
    ("birthday", "birth"),
    ("birthdate", "birth"),
    ("dateofbirth", "birth"),
    ("birthplace", "birth"),
    ("dob", "dob"),
    ("ip", "ip"),
    ("ipaddr", "ip"),
    ("ipaddress", "ip"),
    ("ipv4", "ip"),
    ("ipv6", "ip"),
    ("ssn", "ssn"),
    ("passport", "passport"),
    ("passportnumber", "passport"),
    ("passportno", "passport"),
    ("iban", "iban"),
    ("card", "card"),
    ("creditcard", "card"),
    ("cardnumber", "card"),
    ("cardno", "card"),
    ("ccnumber", "card"),
    ("cvv", "card"),
    ("cvc", "card"),
    ("token", "token"),
    ("password", "password"),
    ("passwd", "password"),
    ("pwd", "password"),
    ("secret", "secret"),
    ("apikey", "api_key"),
    ("salt", "salt"),
    ("otp", "otp"),
    ("credential", "credential"),
    ("recipient", "recipient"),
    ("sender", "sender"),
    ("gender", "gender"),
    ("latitude", "latitude"),
    ("lat", "latitude"),
    ("longitude", "longitude"),
    ("lng", "longitude"),
    ("lon", "longitude"),
    ("salary", "salary"),
    ("income", "salary"),
    ("wage", "salary"),
    ("age", "age"),
    ("born", "birth"),
    ("nationality", "nationality"),
    ("ethnicity", "ethnicity"),
    ("religion", "religion"),
    ("nino", "national_id"),
];

/// Run-together words ending in one of these hold it (`useremail`,
/// `csrftoken`, `clientsecret`). Only words too distinctive to end another
/// word by accident are listed (not `phone`: `microphone`; not `card`:
/// `discard`).
const SUFFIXES: &[&str] = &["email", "password", "passwd", "token", "secret"];

fn word_hint(word: &str) -> Option<&'static str> {
    let bare = word.trim_end_matches(|c: char| c.is_ascii_digit());
    let lookup = |w: &str| WORDS.iter().find(|(k, _)| *k == w).map(|(_, hint)| *hint);
    lookup(word)
        .or_else(|| lookup(bare))
        .or_else(|| bare.strip_suffix("es").and_then(lookup))
        .or_else(|| bare.strip_suffix('s').and_then(lookup))
        .or_else(|| {
            let singular = bare.strip_suffix('s').unwrap_or(bare);
            SUFFIXES
                .iter()
                .find(|s| singular.ends_with(*s))
                .and_then(|s| lookup(s))
        })
}

/// Whether a column of this type cannot hold personal data on its own:
/// numbers, booleans, dates and times, UUIDs, object identifiers, and
/// ranges and arrays of those. `type_name` is spelled as `format_type()`
/// does (`timestamp(3) with time zone`, `numeric(10,2)`, `integer[]`).
///
/// Amounts (`numeric`, `money`) count as safe: they are sensitive, not
/// identifying, and a salary is caught by its name (see [`name_hint`]).
/// Not safe: every text type, `json(b)`, `bytea` and `bit` (they can hold
/// anything), `inet`/`cidr`/`macaddr` (addresses of people's devices),
/// geometric types (locations), `tsvector` (the words of a text), and any
/// type qualified by a schema (domains, enums and extension types such as
/// `public.citext`, whose contents this function cannot know).
pub fn safe_by_type(type_name: &str) -> bool {
    let mut name = type_name.trim().to_ascii_lowercase();
    while let Some(element) = name.strip_suffix("[]") {
        name = element.trim_end().to_owned();
    }
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    if name.contains('.') || name.contains('"') {
        return false;
    }
    // Drop type modifiers: `timestamp(3) with time zone`, `numeric(10,2)`.
    let mut bare = String::with_capacity(name.len());
    let mut depth = 0u32;
    for c in name.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    let bare = bare.split_whitespace().collect::<Vec<_>>().join(" ");
    SAFE_TYPES.contains(&bare.as_str()) || bare.starts_with("interval")
}

const SAFE_TYPES: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "int2",
    "int4",
    "int8",
    "boolean",
    "numeric",
    "decimal",
    "real",
    "double precision",
    "float4",
    "float8",
    "money",
    "date",
    "time without time zone",
    "time with time zone",
    "timestamp without time zone",
    "timestamp with time zone",
    "uuid",
    "oid",
    "xid",
    "xid8",
    "cid",
    "tid",
    "pg_lsn",
    "regclass",
    "regcollation",
    "regconfig",
    "regdictionary",
    "regnamespace",
    "regoper",
    "regoperator",
    "regproc",
    "regprocedure",
    "regrole",
    "regtype",
    "int4range",
    "int8range",
    "numrange",
    "daterange",
    "tsrange",
    "tstzrange",
    "int4multirange",
    "int8multirange",
    "nummultirange",
    "datemultirange",
    "tsmultirange",
    "tstzmultirange",
];

/// What a sample of one column's values looked like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Non-null values looked at.
    pub sampled: u64,
    /// Values in which at least one item of a kind was found, by kind. A
    /// value counts once per kind, however many items it holds.
    pub matches: BTreeMap<PiiKind, u64>,
}

/// Adds `value` (a column value in its text form) to `sample`.
///
/// Text that parses as a JSON object or array is looked at string by
/// string (object keys too: addresses are used as keys), with numbers as
/// written (a card number stored as a number); anything else as a whole.
/// Each string is searched with [`patterns::find`], which also finds what
/// [`patterns::classify`] would (an item that is the whole string).
pub fn sample_value(sample: &mut Sample, value: &str) {
    sample.sampled += 1;
    let mut kinds = BTreeSet::new();
    let mut look = |s: &str| {
        kinds.extend(patterns::find(s, &PiiKind::ALL).into_iter().map(|f| f.kind));
    };
    match json_container(value) {
        Some(json) => each_string(&json, &mut look),
        None => look(value),
    }
    for kind in kinds {
        *sample.matches.entry(kind).or_default() += 1;
    }
}

fn json_container(value: &str) -> Option<serde_json::Value> {
    let trimmed = value.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    serde_json::from_str(value).ok()
}

fn each_string(json: &serde_json::Value, look: &mut impl FnMut(&str)) {
    match json {
        serde_json::Value::String(s) => look(s),
        serde_json::Value::Number(n) => look(&n.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| each_string(v, look)),
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                look(key);
                each_string(v, look);
            }
        }
        serde_json::Value::Bool(_) | serde_json::Value::Null => {}
    }
}

/// Longest prefix of a value (in characters) that sampling looks at: a
/// sample of 1,000 rows of a few columns of documents stays a few
/// megabytes, and whatever a long document holds usually shows in its
/// first 64 KiB.
pub const SAMPLE_VALUE_CHARS: u32 = 65_536;

/// Adds a `bytea` value to `sample` as the text it holds, when it is
/// UTF-8 (e-mails stored as bytes, JSON in a blob); a value cut inside a
/// character at the end of the prefix read is looked at up to the cut.
/// Anything else (images, PDFs, compressed data) is not text and is
/// skipped: returns whether the value was looked at.
pub fn sample_bytes(sample: &mut Sample, value: &[u8]) -> bool {
    let text = match std::str::from_utf8(value) {
        Ok(text) => text,
        // Cut in the middle of a character by the prefix read.
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
            std::str::from_utf8(&value[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    // Binary formats can be valid UTF-8 by chance only when short; text has
    // no NUL bytes.
    if text.contains('\0') {
        return false;
    }
    sample_value(sample, text);
    true
}

/// Whether a column of this type holds raw bytes (sampled as the text they
/// decode to, see [`sample_bytes`]).
pub fn is_bytea(type_name: &str) -> bool {
    let name = type_name.trim().to_ascii_lowercase();
    matches!(name.as_str(), "bytea" | "pg_catalog.bytea")
}

/// The word of a `bytea` column's name that says it holds a person's file
/// (`avatar`, `photo`, `scanned_passport`, `signature_png`), or `None`.
/// Only for bytes: a text `file` column is a path.
pub fn file_hint(column: &str) -> Option<&'static str> {
    const FILE_WORDS: &[&str] = &[
        "picture",
        "photo",
        "avatar",
        "signature",
        "document",
        "scan",
        "scanned",
        "attachment",
        "file",
        "image",
        "upload",
        "pdf",
        "cv",
        "resume",
    ];
    words(column).iter().find_map(|w| {
        let singular = w.strip_suffix('s').unwrap_or(w);
        FILE_WORDS
            .iter()
            .find(|f| **f == w.as_str() || **f == singular)
            .copied()
    })
}

/// How deep a sampling read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// About this many rows from all over a large table (a table up to
    /// [`WHOLE_TABLE_ROWS`] rows and [`WHOLE_TABLE_BYTES`] is read whole).
    Sample(u32),
    /// Every row (`scan --full`), streamed: only the counts are kept.
    Full,
}

/// Tables with at most this many rows (as estimated) are read whole by a
/// sample: a few seconds of reading at most, and a finding in any row of
/// them is found.
pub const WHOLE_TABLE_ROWS: i64 = 100_000;

/// … and at most this size on disk (`pg_relation_size`, always current,
/// unlike the row estimate of a table not analyzed since it grew).
pub const WHOLE_TABLE_BYTES: i64 = 64 * 1024 * 1024;

/// How many times the wanted rows a `TABLESAMPLE` aims for: page sampling
/// returns a varying number of rows, and oversampling keeps it from
/// falling short.
const OVERSAMPLE: f64 = 2.0;

/// The seed of `TABLESAMPLE … REPEATABLE`: the same pages of an unchanged
/// table every scan and every plan, so a finding does not come and go.
pub const SAMPLE_SEED: u32 = 11;

/// How one table is read for evidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Read {
    /// Every row.
    Whole,
    /// `TABLESAMPLE SYSTEM (percent) REPEATABLE (seed)`: whole pages from
    /// all over the table, at most `cap` rows.
    Pages { percent: f64, cap: u64 },
}

/// How `table` is read at `depth`: whole when it is small, else a
/// repeatable page sample sized from its current size on disk (the row
/// estimate scaled by how much the table grew since it was analyzed).
pub fn read_for(table: &Table, depth: Depth) -> Read {
    let Depth::Sample(limit) = depth else {
        return Read::Whole;
    };
    if table.rows_estimate <= WHOLE_TABLE_ROWS && table.bytes <= WHOLE_TABLE_BYTES {
        return Read::Whole;
    }
    let pages_now = (table.bytes as f64 / 8192.0).max(1.0);
    let rows = if table.pages > 0 && table.rows_estimate > 0 {
        table.rows_estimate as f64 * pages_now / table.pages as f64
    } else {
        // Never analyzed: assume 100-byte rows.
        table.bytes as f64 / 100.0
    };
    let wanted = OVERSAMPLE * f64::from(limit.max(1));
    Read::Pages {
        percent: (100.0 * wanted / rows.max(wanted)).clamp(0.000_001, 100.0),
        cap: 2 * wanted as u64,
    }
}

/// One column's sampling expression: a bounded prefix of its text form, or
/// of its bytes for `bytea` (decoded by [`sample_bytes`]: `::text` would
/// give hex).
fn sample_expression(table: &Table, column: &str) -> String {
    let bytea = table
        .columns
        .iter()
        .any(|c| c.name == column && is_bytea(&c.type_name));
    if bytea {
        format!(
            "substring({} from 1 for {SAMPLE_VALUE_CHARS})",
            quote_ident(column)
        )
    } else {
        format!("left({}::text, {SAMPLE_VALUE_CHARS})", quote_ident(column))
    }
}

/// `SELECT left("a"::text, N), … FROM "s"."t" [TABLESAMPLE SYSTEM (p)
/// REPEATABLE (seed) LIMIT cap]`.
pub fn sample_sql(table: &Table, columns: &[String], read: Read) -> String {
    let select: Vec<String> = columns
        .iter()
        .map(|c| sample_expression(table, c))
        .collect();
    let sample = match read {
        Read::Whole => String::new(),
        Read::Pages { percent, cap } => {
            format!(" TABLESAMPLE SYSTEM ({percent:.6}) REPEATABLE ({SAMPLE_SEED}) LIMIT {cap}")
        }
    };
    format!(
        "SELECT {} FROM {}{sample}",
        select.join(", "),
        table.qualified
    )
}

/// How much of one table a scan read, for its output and the starter file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sampled {
    /// Rows read.
    pub rows: u64,
    /// Whether that was every row (then `rows` is the table's row count).
    pub whole: bool,
    /// `reltuples`, for a table read in part.
    pub estimate: i64,
}

impl Sampled {
    /// `read all 5,000 rows`, `sampled 2,000 of about 48,210 rows`.
    pub fn describe(&self) -> String {
        use crate::human::thousands;
        if self.whole {
            format!(
                "read all {} row{}",
                thousands(self.rows),
                if self.rows == 1 { "" } else { "s" }
            )
        } else {
            format!(
                "sampled {} of about {} rows",
                thousands(self.rows),
                thousands(self.estimate.max(0) as u64)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_suggest_personal_data() {
        let cases: &[(&str, &str)] = &[
            // e-mail
            ("email", "email"),
            ("user_email", "email"),
            ("unconfirmed_email", "email"),
            ("from_email", "email"),
            ("emailAddress", "email"),
            ("email_address", "email"),
            ("EMail", "email"),
            ("e_mail", "email"),
            ("useremail", "email"),
            ("contact_emails", "email"),
            ("mail", "mail"),
            // names of people
            ("name", "name"),
            ("first_name", "name"),
            ("last_name", "name"),
            ("full_name", "name"),
            ("display_name", "name"),
            ("user_name", "name"),
            ("username", "name"),
            ("firstName", "name"),
            ("surname", "name"),
            ("nickname", "name"),
            // phone
            ("phone", "phone"),
            ("phone_number", "phone"),
            ("phoneNumber", "phone"),
            ("home_phone", "phone"),
            ("telephone", "phone"),
            ("mobile", "mobile"),
            ("mobile_number", "mobile"),
            ("tel", "tel"),
            ("fax", "fax"),
            // where they live
            ("address", "address"),
            ("shipping_address", "address"),
            ("billing_address_line2", "address"),
            ("addresses", "address"),
            ("street", "street"),
            ("street_name", "street"),
            ("city", "city"),
            ("city_name", "city"),
            ("postcode", "postcode"),
            ("postal_code", "postcode"),
            ("zip", "zip"),
            ("zip_code", "zip"),
            ("zipcode", "zip"),
            ("latitude", "latitude"),
            ("lng", "longitude"),
            // birth
            ("date_of_birth", "birth"),
            ("birth_date", "birth"),
            ("birthDate", "birth"),
            ("birthday", "birth"),
            ("dob", "dob"),
            // network
            ("ip", "ip"),
            ("ip_address", "ip"),
            ("IPAddress", "ip"),
            ("remote_addr", "ip"),
            ("client_ip", "ip"),
            ("last_login_ip", "ip"),
            ("lastLoginIP", "ip"),
            ("current_sign_in_ip", "ip"),
            ("last_sign_in_ip", "ip"),
            ("user_agent", "user_agent"),
            // identity and money
            ("ssn", "ssn"),
            ("national_id", "national_id"),
            ("passport_number", "passport"),
            ("iban", "iban"),
            ("card_number", "card"),
            ("credit_card", "card"),
            ("cvv", "card"),
            ("salary", "salary"),
            ("gender", "gender"),
            // secrets
            ("password", "password"),
            ("encrypted_password", "password"),
            ("password_digest", "password"),
            ("reset_password_token", "token"),
            ("confirmation_token", "token"),
            ("unlock_token", "token"),
            ("csrftoken", "token"),
            ("api_key", "api_key"),
            ("apiKey", "api_key"),
            ("secret", "secret"),
            ("client_secret", "secret"),
            ("otp_secret", "secret"),
            ("session_key", "session_key"),
            ("salt", "salt"),
            // people on the other end
            ("recipient", "recipient"),
            ("recipients", "recipient"),
            ("sender", "sender"),
        ];
        for (column, hint) in cases {
            assert_eq!(name_hint(column), Some(*hint), "{column}");
        }
    }

    #[test]
    fn names_that_do_not() {
        for column in [
            // Django and Wagtail
            "id",
            "content_type_id",
            "is_active",
            "is_staff",
            "is_superuser",
            "date_joined",
            "last_login",
            "codename",
            "app_label",
            "model",
            "object_repr",
            "change_message",
            "action_flag",
            "session_data",
            "expire_date",
            "slug",
            "url_path",
            "title",
            "draft_title",
            "seo_title",
            "search_description",
            "description",
            "content",
            "body",
            "depth",
            "numchild",
            "live",
            "has_unpublished_changes",
            "show_in_menus",
            "go_live_at",
            "locale_id",
            "translation_key",
            "hostname",
            "site_name",
            "root_page_id",
            "is_default_site",
            "port",
            "file",
            "file_hash",
            "file_size",
            "collection_id",
            "tag_names",
            // Rails, Devise, ActiveStorage
            "created_at",
            "updated_at",
            "reset_password_sent_at",
            "remember_created_at",
            "sign_in_count",
            "current_sign_in_at",
            "confirmed_at",
            "confirmation_sent_at",
            "failed_attempts",
            "locked_at",
            "key",
            "filename",
            "file_name",
            "service_name",
            "record_type",
            "checksum",
            "byte_size",
            "metadata",
            // facts about personal data, and lookalike words
            "email_verified",
            "is_email_verified",
            "email_confirmed_at",
            "phone_verified_at",
            "recipient_id",
            "card_id",
            "email_domain",
            "discard",
            "discarded_at",
            "tokenizer",
            "microphone",
            "pinned",
            "capacity",
            "table_name",
            "className",
            "hostName",
            "company_name",
            "status",
            "position",
            "",
            "__",
        ] {
            assert_eq!(name_hint(column), None, "{column}");
        }
    }

    #[test]
    fn words_split_at_humps_and_separators() {
        assert_eq!(words("lastLoginIP"), ["last", "login", "ip"]);
        assert_eq!(words("IPAddress"), ["ip", "address"]);
        assert_eq!(words("address_line2"), ["address", "line2"]);
        assert_eq!(words("ipv4-addr"), ["ipv4", "addr"]);
        assert_eq!(words("Phone Number"), ["phone", "number"]);
        assert_eq!(words("__"), Vec::<String>::new());
    }

    #[test]
    fn types_that_cannot_hold_personal_data() {
        for ty in [
            "smallint",
            "integer",
            "bigint",
            "boolean",
            "numeric",
            "numeric(10,2)",
            "real",
            "double precision",
            "money",
            "date",
            "time without time zone",
            "time(6) with time zone",
            "timestamp without time zone",
            "timestamp with time zone",
            "timestamp(3) with time zone",
            "interval",
            "interval year to month",
            "interval(3)",
            "uuid",
            "oid",
            "regclass",
            "integer[]",
            "timestamp(3) with time zone[]",
            "pg_catalog.int4",
            "tstzrange",
            "int8multirange",
            " Integer ",
        ] {
            assert!(safe_by_type(ty), "{ty}");
        }
        for ty in [
            "text",
            "character varying(20)",
            "character varying",
            "character(1)",
            "\"char\"",
            "name",
            "citext",
            "public.citext",
            "public.mood",
            "public.positive_int",
            "json",
            "jsonb",
            "bytea",
            "tsvector",
            "inet",
            "cidr",
            "macaddr",
            "point",
            "bit(1)",
            "bit varying(8)",
            "xml",
            "text[]",
            "",
        ] {
            assert!(!safe_by_type(ty), "{ty}");
        }
    }

    fn sample_of(values: &[&str]) -> Sample {
        let mut sample = Sample::default();
        for value in values {
            sample_value(&mut sample, value);
        }
        sample
    }

    fn matches(pairs: &[(PiiKind, u64)]) -> BTreeMap<PiiKind, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn sample_counts_each_value_once_per_kind() {
        let sample = sample_of(&[
            "alice@example.com",
            "bob@example.org and carol@example.net, or (201) 555-0143 / 07700 900123",
            "nothing here",
            "order 1234567890 on 2024-01-15",
            "",
        ]);
        assert_eq!(sample.sampled, 5);
        assert_eq!(
            sample.matches,
            matches(&[(PiiKind::Email, 2), (PiiKind::Phone, 1)])
        );
        assert_eq!(sample_of(&[]), Sample::default());
    }

    #[test]
    fn sample_walks_json_strings_keys_and_numbers() {
        let sample = sample_of(&[
            r#"{"contact":{"email":"a@example.com","phones":["(201) 555-0143","07700 900123"]},"card":4111111111111111}"#,
            r#"[{"note":"ip was 192.0.2.1"}, 42, true, null]"#,
            r#"{"alice@example.com": {"seen": 3}}"#,
            r#"{"text": "GB82 WEST 1234 5698 7654 32"}"#,
            r#"{"broken": "alice@example.com""#,
            r#"{"id": 1700000000123, "at": "2024-01-15T10:00:00+01:00"}"#,
        ]);
        assert_eq!(sample.sampled, 6);
        assert_eq!(
            sample.matches,
            matches(&[
                (PiiKind::Email, 3),
                (PiiKind::Phone, 1),
                (PiiKind::Ip, 1),
                (PiiKind::Card, 1),
                (PiiKind::Iban, 1),
            ])
        );
    }

    #[test]
    fn find_covers_classify_so_sampling_needs_only_find() {
        for value in [
            "alice@example.com",
            " +44 7700 900123 ",
            "4111 1111 1111 1111",
            "2001:db8::1",
            "GB82WEST12345698765432",
        ] {
            let kind = patterns::classify(value).unwrap();
            assert!(
                patterns::find(value, &PiiKind::ALL)
                    .iter()
                    .any(|f| f.kind == kind)
            );
        }
    }

    fn table() -> Table {
        Table {
            oid: 1,
            schema: "app".into(),
            name: "Odd \"T\"".into(),
            qualified: crate::pg::catalog::qualified("app", "Odd \"T\""),
            columns: Vec::new(),
            bytes: 0,
            pages: 0,
            rows_estimate: 0,
            primary_key: Vec::new(),
            binary_ok: true,
            partition_of: Vec::new(),
        }
    }

    #[test]
    fn sample_sql_quotes_reads_bytes_as_bytes_and_samples_large_tables() {
        let mut t = table();
        t.columns.push(crate::pg::catalog::Column {
            name: "Scan".into(),
            type_name: "bytea".into(),
            type_oid: 17,
            binary_ok: true,
        });
        let columns = ["email".to_owned(), "Notes \"x\"".to_owned()];
        assert_eq!(
            sample_sql(&t, &columns, Read::Whole),
            "SELECT left(\"email\"::text, 65536), left(\"Notes \"\"x\"\"\"::text, 65536) \
             FROM \"app\".\"Odd \"\"T\"\"\""
        );
        assert_eq!(
            sample_sql(
                &t,
                &["Scan".to_owned()],
                Read::Pages {
                    percent: 0.25,
                    cap: 10
                }
            ),
            "SELECT substring(\"Scan\" from 1 for 65536) FROM \"app\".\"Odd \"\"T\"\"\" \
             TABLESAMPLE SYSTEM (0.250000) REPEATABLE (11) LIMIT 10"
        );
    }

    #[test]
    fn small_tables_are_read_whole_and_large_ones_by_repeatable_pages() {
        let sized = |rows, pages, bytes| Table {
            rows_estimate: rows,
            pages,
            bytes,
            ..table()
        };
        let sample = Depth::Sample(1000);
        assert_eq!(read_for(&sized(0, 0, 0), sample), Read::Whole);
        assert_eq!(
            read_for(&sized(100_000, 1000, 8_192_000), sample),
            Read::Whole
        );
        assert_eq!(
            read_for(&sized(10_000_000, 100_000, 819_200_000), Depth::Full),
            Read::Whole
        );
        // 2,000 wanted of 10 M rows; twice that at most.
        assert_eq!(
            read_for(&sized(10_000_000, 100_000, 819_200_000), sample),
            Read::Pages {
                percent: 0.02,
                cap: 4000
            }
        );
        // Grown tenfold since it was analyzed: the rate follows the size.
        let Read::Pages { percent, .. } = read_for(&sized(200_000, 1000, 81_920_000), sample)
        else {
            panic!()
        };
        assert!((percent - 0.1).abs() < 1e-9, "{percent}");
        // Never analyzed but large: not read whole.
        assert!(matches!(
            read_for(&sized(0, 0, 1 << 30), sample),
            Read::Pages { .. }
        ));
    }

    #[test]
    fn bytes_are_sampled_as_the_text_they_hold() {
        let mut sample = Sample::default();
        assert!(sample_bytes(&mut sample, b"alice@example.com"));
        // Cut inside the last character by the prefix read.
        assert!(sample_bytes(
            &mut sample,
            "bob@example.org caf\u{e9}"
                .as_bytes()
                .split_last()
                .unwrap()
                .1
        ));
        assert!(!sample_bytes(
            &mut sample,
            &[0x89, b'P', b'N', b'G', 0, 1, 2]
        ));
        assert!(!sample_bytes(&mut sample, b"GIF89a\0\0"));
        assert_eq!(sample.sampled, 2);
        assert_eq!(sample.matches, matches(&[(PiiKind::Email, 2)]));
    }

    #[test]
    fn file_words_of_bytea_columns() {
        for (column, word) in [
            ("avatar", "avatar"),
            ("profile_picture", "picture"),
            ("photos", "photo"),
            ("signature_png", "signature"),
            ("scanned_id", "scanned"),
            ("attachment_data", "attachment"),
            ("file", "file"),
            ("document", "document"),
        ] {
            assert_eq!(file_hint(column), Some(word), "{column}");
        }
        for column in [
            "checksum",
            "digest",
            "nonce",
            "payload_hash",
            "filename_hash",
        ] {
            assert_eq!(file_hint(column), None, "{column}");
        }
    }

    #[test]
    fn personal_facts_are_found_by_name_whatever_their_type() {
        for (column, hint) in [
            ("born_on", "birth"),
            ("dob", "dob"),
            ("age", "age"),
            ("weight_kg", "body"),
            ("height_cm", "body"),
            ("salary", "salary"),
            ("account_no", "account_number"),
            ("national_id", "national_id"),
            ("iban", "iban"),
            ("tax_id", "tax_id"),
        ] {
            assert_eq!(name_hint(column), Some(hint), "{column}");
        }
        for column in ["max_age", "cache_age", "height", "weight", "page", "usage"] {
            assert_eq!(name_hint(column), None, "{column}");
        }
    }
}
