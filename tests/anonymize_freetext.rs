//! `redact: [email]` end to end on free text: production holds e-mail
//! addresses in every spelling an application produces (HTML character
//! references, JSON escapes, percent-encoding once and twice, fullwidth and
//! small `@`, invisible characters and an emoji before the `@`,
//! internationalised, punycode and look-alike domains, quoted local
//! parts), in a `text` column and inside a `jsonb` column (strings and
//! keys), next to rows of ordinary prose. After a clone, staging is searched, as its
//! values and as a `pg_dump` of its data, raw and decoded, for any trace of
//! a production address; each address must have become exactly the fake
//! the `fake: email` rule of another column makes of it, encoded as it
//! was, and the prose must be byte for byte what production had.

use flightpath::anonymize::decode::View;

use crate::clone::clone_workflow;
use crate::support::cli::{Output, Test};
use crate::support::pg::{
    all_text, block_on, client, dump, fresh_db_sync, query_strings, staging_db,
};

/// The domain of every production address (in ASCII spellings).
const DOMAIN: &str = "realmail-prod.test";

/// How a row spells its address, from the local part `l`: the spelling,
/// the address it spells (what `fake: email` is given), and how many times
/// it is percent-encoded.
pub(crate) type Spelling = fn(&str) -> (String, String, u8);

pub(crate) const SPELLINGS: &[Spelling] = &[
    |l| (format!("{l}@{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| {
        (
            format!("{l}&#64;Realmail-Prod.test"),
            format!("{l}@{DOMAIN}"),
            0,
        )
    },
    |l| (format!("{l}&#x40;{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| (format!("{l}&commat;{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| (format!("{l}\\u0040{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| (format!("{l}%40{DOMAIN}"), format!("{l}@{DOMAIN}"), 1),
    |l| (format!("{l}%2540{DOMAIN}"), format!("{l}@{DOMAIN}"), 2),
    |l| (format!("{l}\u{200D}@{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| (format!("{l}\u{200B}@{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| (format!("{l}\u{200C}@{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| (format!("{l}\u{200F}@{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| (format!("{l}＠{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| (format!("{l}﹫{DOMAIN}"), format!("{l}@{DOMAIN}"), 0),
    |l| {
        (
            fullwidth(&format!("{l}@{DOMAIN}")),
            format!("{l}@{DOMAIN}"),
            0,
        )
    },
    |l| (format!("{l}😀@{DOMAIN}"), format!("{l}😀@{DOMAIN}"), 0),
    |l| {
        let a = format!("\"{l} y\"@{DOMAIN}");
        (a.clone(), a, 0)
    },
    |l| {
        (
            format!("{l}@réalmail-prod.test"),
            format!("{l}@réalmail-prod.test"),
            0,
        )
    },
    |l| {
        let punycode = idna::domain_to_ascii("réalmail-prod.test").unwrap();
        (
            format!("{l}@{punycode}"),
            format!("{l}@réalmail-prod.test"),
            0,
        )
    },
    |l| {
        (
            format!("{l}@r\u{435}almail-prod.test"),
            format!("{l}@r\u{435}almail-prod.test"),
            0,
        )
    },
];

/// Rows no rule may change.
const PROSE: &[&str] = &[
    "Meet at 10 @ the café; see @alice's post, @media print, npm i @scope/pkg.",
    "Grüße aus München — naïve 東京 text, 50% off & more; AT&T.",
    "https://example.com/search?q=caf%C3%A9&amp;page=2#top",
    "@property def name(self): return \"\\u00e9\" # decorators & escapes",
];

/// `text` in fullwidth forms (`ｘ＠ｈ．ｔｅｓｔ`).
fn fullwidth(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
            c => c,
        })
        .collect()
}

/// The local part of row `n`: a token no fake can make.
pub(crate) fn local(n: usize) -> String {
    format!("zqfree{n}")
}

fn body(spelling: &str) -> String {
    format!("Row: write to {spelling} today, thanks.")
}

const RULES: &str = r#"
secret: ${FLIGHTPATH_SECRET}
tables:
  note:
    columns:
      email: { fake: email }
      body: { redact: [email] }
      doc: { redact: [email] }
"#;

fn seed(url: &str) {
    block_on(async {
        let db = client(url).await;
        db.batch_execute(
            "CREATE TABLE note (id integer PRIMARY KEY, email text, body text NOT NULL, doc jsonb)",
        )
        .await
        .unwrap();
        let insert = "INSERT INTO note VALUES ($1, $2, $3, jsonb_build_object('note', $3::text, \
                      'list', jsonb_build_array($3::text), 'nested', jsonb_build_object($3::text, 1)))";
        for (n, spelling) in SPELLINGS.iter().enumerate() {
            let (spelled, address, _) = spelling(&local(n));
            db.execute(insert, &[&(n as i32), &address, &body(&spelled)])
                .await
                .unwrap();
        }
        for (n, prose) in PROSE.iter().enumerate() {
            let id = 1000 + n as i32;
            db.execute(insert, &[&id, &None::<String>, prose])
                .await
                .unwrap();
        }
    });
}

/// `text` percent-encoded `depth` times, as `redact` encodes a replacement
/// (a fake holds only unreserved characters and `@`).
fn encoded(text: &str, depth: u8) -> String {
    (0..depth).fold(text.to_owned(), |t, _| {
        t.replace('%', "%25").replace('@', "%40")
    })
}

/// `text` as `redact` reads it: decoded, lower case.
pub(crate) fn decoded(text: &str) -> String {
    View::of(text)
        .map_or_else(|| text.to_owned(), |v| v.text().to_owned())
        .to_lowercase()
}

fn assert_ok(out: &Output) {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

#[test]
fn no_spelling_of_a_production_address_reaches_staging() {
    let prod = fresh_db_sync().url;
    seed(&prod);
    let staging = staging_db("anon_freetext");
    let out = Test::new()
        .file("anonymizers/site.yaml", RULES)
        .workflow(
            "reset",
            &clone_workflow(&prod, &staging, ", anonymize: anonymizers/site.yaml"),
        )
        .env("FLIGHTPATH_SECRET", "freetext-key")
        .args(["run", "reset", "--yes", "--json"])
        .run();
    assert_ok(&out);

    // What production holds, decoded as `redact` decodes: every local part,
    // and every domain.
    let mut needles: Vec<String> = (0..SPELLINGS.len()).map(local).collect();
    needles.extend(
        [
            "realmail-prod",
            "réalmail-prod",
            "r\u{435}almail-prod",
            "xn--",
        ]
        .map(str::to_owned),
    );
    let production = decoded(
        &all_text(&prod)
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<String>(),
    );
    for needle in &needles {
        assert!(
            production.contains(needle.as_str()),
            "the test's own data holds {needle}"
        );
    }

    // Staging, as values and as a dump, raw and decoded.
    let values = all_text(&staging);
    assert_eq!(
        values.len(),
        3 * (SPELLINGS.len() + PROSE.len()) - PROSE.len()
    );
    let dump = dump(&staging, &["--data-only"]);
    assert!(dump.contains("COPY public.note"), "{dump}");
    for (what, text) in values
        .iter()
        .map(|(column, value)| (column.as_str(), value.as_str()))
        .chain([("pg_dump", dump.as_str())])
    {
        for seen in [text.to_lowercase(), decoded(text)] {
            for needle in &needles {
                assert!(
                    !seen.contains(needle.as_str()),
                    "{needle} in {what}: {text}"
                );
            }
        }
    }

    // Each address became the fake the `fake: email` column made of the
    // address it spells, encoded as it was; the text around it is intact.
    for (n, spelling) in SPELLINGS.iter().enumerate() {
        let (spelled, _, depth) = spelling(&local(n));
        let row = query_strings(
            &staging,
            &format!(
                "SELECT concat_ws(E'\\n', email, body, doc->>'note', doc->'list'->>0, (SELECT k FROM jsonb_object_keys(doc->'nested') k)) FROM note WHERE id = {n}"
            ),
        );
        let lines: Vec<&str> = row[0].split('\n').collect();
        let fake = lines[0];
        assert!(
            fake.ends_with(".com") || fake.ends_with(".net") || fake.ends_with(".org"),
            "{fake}"
        );
        let expected = body(&encoded(fake, depth));
        assert_eq!(lines[1..], [expected.as_str(); 4], "{spelled}");
    }

    // Prose is what production had, in the text and in the JSON.
    let prose = "SELECT body || '|' || doc::text FROM note WHERE id >= 1000 ORDER BY id";
    assert_eq!(query_strings(&staging, prose), query_strings(&prod, prose));
}
