//! Every leak path of issue 11 in one production database, handled the way
//! a site owner would: `scan --write` for a starter, a plan, a review, a
//! clone. Production holds a `postgres_fdw` server with a user mapping and
//! a foreign table, e-mail addresses as JSON object keys, inside bytea,
//! only in the last thousand rows of a column, in every free-text spelling,
//! in a table and a column comment, and in a large object; and, in its
//! first form, also in a column default, an enum label, a view and a
//! function.
//!
//! With the starter as `scan` writes it, the plan refuses, naming each
//! foreign object and each schema object holding an address, never the
//! address. Reviewed (`foreign: skip` added) against the database without
//! the schema literals, which the team moved out of its schema, the clone
//! runs, and a whole `pg_dump` of staging, read raw and decoded, holds
//! none of production's addresses and no production password.

use crate::anonymize_freetext::{SPELLINGS, decoded};
use crate::clone::anonymized_clone;
use crate::support::cli::Test;
use crate::support::pg::{
    block_on, client, dump, execute, fresh_db_sync, query_strings, staging_db,
};

/// In every production address: no fake can make it (fakes have no `0`
/// after a letter: names hold no digits, their numbers never start with
/// 0, and the keyed suffix is base32).
const TOKEN: &str = "x0q8";

/// The user mapping's password and the stem of every account's password
/// hash: made up, and searched for in staging.
const MAPPING_PASSWORD: &str = "fdw-Pw-x0q8-made-up";
const HASH_STEM: &str = "pbkdf2_sha256$600000$x0q8salt";

const ROWS: usize = 5000;

/// Production; `literals` adds the schema objects that hold an address
/// (default, enum label, view, function).
fn production(literals: bool) -> String {
    let prod = fresh_db_sync();
    let config: tokio_postgres::Config = prod.url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let (kinds, reply_to) = if literals {
        (
            format!("'personal', 'ops.{TOKEN}enum@realmail-prod.test'"),
            format!(" DEFAULT 'noreply.{TOKEN}default@realmail-prod.test'"),
        )
    } else {
        ("'personal', 'ops'".to_string(), String::new())
    };
    execute(
        &prod.url,
        &format!(
            r#"
CREATE EXTENSION postgres_fdw;
CREATE TYPE contact_kind AS ENUM ({kinds});
CREATE TABLE member (
    id integer PRIMARY KEY,
    email text NOT NULL,
    password varchar(128) NOT NULL,
    kind contact_kind NOT NULL DEFAULT 'personal',
    reply_to text{reply_to},
    referrer text,
    notes text,
    seen jsonb,
    raw bytea,
    avatar bytea
);
INSERT INTO member (id, email, password, referrer, notes, seen, raw, avatar)
SELECT n, 'm.{TOKEN}' || n || '@realmail-prod.test', '{HASH_STEM}' || n || '$hash',
       CASE WHEN n > 4000 THEN 'ref.{TOKEN}' || n || '@realmail-prod.test' ELSE 'direct' END,
       'plain note ' || n,
       jsonb_build_object('seen.{TOKEN}' || n || '@realmail-prod.test', true, 'count', n),
       convert_to('from: raw.{TOKEN}' || n || '@realmail-prod.test', 'UTF8'),
       '\x89504e470d0a1a0a'::bytea || int4send(n)
FROM generate_series(1, {ROWS}) n;
COMMENT ON TABLE member IS 'Owner: boss.{TOKEN}comment@realmail-prod.test';
COMMENT ON COLUMN member.notes IS 'ask help.{TOKEN}column@realmail-prod.test';
CREATE SERVER prod_link FOREIGN DATA WRAPPER postgres_fdw
    OPTIONS (host '{host}', port '{port}', dbname '{db}');
CREATE USER MAPPING FOR CURRENT_USER SERVER prod_link
    OPTIONS (user 'reader', password '{MAPPING_PASSWORD}');
CREATE FOREIGN TABLE remote_member (id integer, email text)
    SERVER prod_link OPTIONS (table_name 'member');
SELECT lo_from_bytea(0, convert_to('lo.{TOKEN}@realmail-prod.test', 'UTF8'));
"#,
            db = prod.name,
        ),
    );
    if literals {
        execute(
            &prod.url,
            &format!(
                "CREATE VIEW ops AS SELECT id FROM member WHERE email <> 'ops.{TOKEN}view@realmail-prod.test';
                 CREATE FUNCTION owner_email() RETURNS text LANGUAGE sql
                     AS $$ SELECT 'fn.{TOKEN}function@realmail-prod.test' $$;"
            ),
        );
    }
    // Every free-text spelling, one per row, in `notes`.
    block_on(async {
        let db = client(&prod.url).await;
        for (n, spelling) in SPELLINGS.iter().enumerate() {
            let (spelled, _, _) = spelling(&format!("{TOKEN}free{n}"));
            db.execute(
                "UPDATE member SET notes = 'Row: write to ' || $2 || ' today.' WHERE id = $1",
                &[&(n as i32 + 1), &spelled],
            )
            .await
            .unwrap();
        }
    });
    execute(&prod.url, "ANALYZE");
    prod.url
}

/// `scan --write`'s starter for `prod`.
fn starter(prod: &str) -> String {
    let test = Test::new().args(["scan", "--source", prod, "--write", "starter.yaml"]);
    let out = test.run();
    assert!(
        out.stdout.contains("starter rules written to"),
        "{}",
        out.both()
    );
    assert!(
        !out.stdout.contains(TOKEN),
        "scan shows a value: {}",
        out.stdout
    );
    test.read("starter.yaml")
}

/// `line` with every run of hex digits after `\x` (bytea as `pg_dump`
/// writes it) read as the bytes it spells.
fn unhexed(line: &str) -> String {
    let mut out = String::new();
    for (i, part) in line.split("\\x").enumerate() {
        let digits: String = part.chars().take_while(char::is_ascii_hexdigit).collect();
        if i == 0 || digits.len() < 2 {
            out.push_str(part);
            continue;
        }
        let bytes: Vec<u8> = (0..digits.len() / 2)
            .map(|k| u8::from_str_radix(&digits[2 * k..2 * k + 2], 16).unwrap())
            .collect();
        out.push_str(&String::from_utf8_lossy(&bytes));
        out.push_str(&part[digits.len()..]);
    }
    out
}

/// The lines of `text` holding a trace of production: the token of its
/// addresses or their domain (any spelling of it, bytea included), or a
/// password.
fn traces(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| {
            let plain = line.to_lowercase();
            let read = decoded(line);
            let bytes = unhexed(line).to_lowercase();
            [plain.as_str(), read.as_str(), bytes.as_str()]
                .iter()
                .any(|l| {
                    l.contains(TOKEN)
                        || l.contains("almail-prod")
                        || l.contains("xn--")
                        || l.contains(&MAPPING_PASSWORD.to_lowercase())
                        || l.contains(&HASH_STEM.to_lowercase())
                })
        })
        .map(|line| line.chars().take(200).collect())
        .collect()
}

#[test]
fn every_leak_path_in_one_database_is_refused_by_name_or_leaves_no_trace_in_staging() {
    // The first form: the starter's plan refuses, naming every path it
    // cannot clone, and nothing is written.
    let prod = production(true);
    let rules = starter(&prod);
    let staging = staging_db("leaks_refused");
    execute(&staging, "CREATE TABLE before_clone (x int)");
    let out = anonymized_clone(&prod, &staging, &rules, "", &["plan", "reset"]);
    let text = out.both();
    assert_eq!(out.code, 3, "{text}");
    for name in [
        "foreign server prod_link (postgres_fdw)",
        "user mapping for",
        "remote_member",
    ] {
        assert!(text.contains(name), "{name} not named: {text}");
    }
    assert!(!text.contains(TOKEN), "a value shown: {text}");
    assert!(!text.contains(MAPPING_PASSWORD), "{text}");
    // Reviewed for the foreign objects only, the schema literals are what
    // stops it, each named with its kind.
    let reviewed = format!("{rules}\nforeign: skip\n");
    let out = anonymized_clone(&prod, &staging, &reviewed, "", &["run", "reset", "--yes"]);
    let text = out.both();
    assert_eq!(out.code, 3, "{text}");
    for object in [
        "default of column public.member.reply_to",
        "label of enum public.contact_kind",
        "public.ops",
        "function public.owner_email()",
    ] {
        assert!(text.contains(object), "{object} not named: {text}");
    }
    assert!(!text.contains(TOKEN), "a value shown: {text}");
    assert_eq!(
        query_strings(&staging, "SELECT count(*)::text FROM before_clone"),
        ["0"],
        "staging was touched"
    );

    // The team moves the literals out of its schema; the reviewed starter
    // clones, and staging holds no trace of production.
    let prod = production(false);
    let rules = starter(&prod);
    let reviewed = format!("{rules}\nforeign: skip\n");
    let staging = staging_db("leaks_cloned");
    let plan = anonymized_clone(&prod, &staging, &reviewed, "", &["plan", "reset"]);
    let text = plan.both();
    assert_eq!(plan.code, 0, "{reviewed}\n{text}");
    assert!(text.contains("1 large object: left out"), "{text}");
    assert!(text.contains("left out (`foreign: skip`)"), "{text}");
    assert!(!text.contains(TOKEN), "a value shown: {text}");
    let out = anonymized_clone(&prod, &staging, &reviewed, "", &["run", "reset", "--yes"]);
    let text = out.both();
    assert_eq!(out.code, 0, "{reviewed}\n{text}");
    assert!(!text.contains(TOKEN), "a value shown: {text}");
    // Every row arrived, and the rules changed what they rule.
    assert_eq!(
        query_strings(
            &staging,
            "SELECT count(*) || ' ' || count(*) FILTER (WHERE notes LIKE 'Row: write to %') FROM member"
        ),
        [format!("{ROWS} {}", SPELLINGS.len())]
    );
    let found = traces(&dump(&staging, &[]));
    assert!(
        found.is_empty(),
        "production in staging's dump ({} lines):\n{}\n\nrules:\n{reviewed}",
        found.len(),
        found.join("\n")
    );
    // The search itself finds production where it is.
    assert!(traces(&dump(&prod, &[])).len() > ROWS);
}
