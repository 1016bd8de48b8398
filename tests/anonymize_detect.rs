//! Column sampling against a real server: the counts of what values look
//! like, NULLs skipped, JSON walked, odd identifiers quoted, small tables
//! read whole, large tables sampled by page (the same pages every time),
//! stale statistics survived, and nothing written.

use std::collections::BTreeMap;

use flightpath::anonymize::detect::Sample;
use flightpath::anonymize::patterns::PiiKind;
use flightpath::clone::plan::sample_columns;
use flightpath::pg::catalog::{self, Table};
use tokio_postgres::Client;

use crate::support::pg::fresh_db;

const CONTACTS: &str = r#""public"."Contacts ""x""""#;

const SCHEMA: &str = r#"
CREATE TABLE "Contacts ""x""" (
    id serial PRIMARY KEY,
    "E-Mail" text,
    phone varchar(40),
    card text,
    word text,
    notes text,
    data jsonb,
    age integer
);
INSERT INTO "Contacts ""x""" ("E-Mail", phone, card, word, notes, data, age) VALUES
  ('alice@example.com', '+44 7700 900123', '4111 1111 1111 1111', 'apple',
   'call (201) 555-0143 or mail bob@example.org',
   '{"email": "carol@example.net", "tags": ["x"]}', 30),
  ('bob@example.org', '(201) 555-0143', '5555555555554444', 'banana',
   'nothing to see', '{"phones": ["07700 900456"], "n": 1}', 41),
  (NULL, NULL, '4111 1111 1111 1112', 'cherry', NULL,
   '[{"ip": "192.0.2.1"}, {"card": "4012888888881881"}]', NULL),
  ('not an address', '2024-01-15', NULL, NULL, 'order 1234567890 on 2024-01-15', NULL, 22),
  ('dave@example.com', '020 7946 0958', '4000 0000 0000 0002', 'date',
   'refund to GB82 WEST 1234 5698 7654 32', '{"note": "plain"}', 50);
"#;

const COLUMNS: &[&str] = &["E-Mail", "phone", "card", "word", "notes", "data", "age"];

fn sample(sampled: u64, matches: &[(PiiKind, u64)]) -> Sample {
    Sample {
        sampled,
        matches: matches.iter().copied().collect(),
    }
}

async fn table(client: &Client, qualified: &str) -> Table {
    catalog::tables(client)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.qualified == qualified)
        .unwrap_or_else(|| panic!("{qualified} is not among the tables"))
}

fn columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|c| (*c).to_owned()).collect()
}

#[tokio::test]
async fn sampling_counts_what_values_look_like() {
    let db = fresh_db().await;
    let client = db.client().await;
    client.batch_execute(SCHEMA).await.unwrap();
    let contacts = table(&client, CONTACTS).await;
    assert_eq!(
        contacts.rows_estimate, 0,
        "never analyzed: read from the start"
    );

    // Read-only: it runs inside a read-only transaction.
    client
        .batch_execute("BEGIN TRANSACTION READ ONLY")
        .await
        .unwrap();
    let samples = sample_columns(&client, &contacts, &columns(COLUMNS), 1000)
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();

    let expected: BTreeMap<String, Sample> = [
        ("E-Mail", sample(4, &[(PiiKind::Email, 3)])),
        ("phone", sample(4, &[(PiiKind::Phone, 3)])),
        ("card", sample(4, &[(PiiKind::Card, 3)])),
        ("word", sample(4, &[])),
        (
            "notes",
            sample(
                4,
                &[(PiiKind::Email, 1), (PiiKind::Phone, 1), (PiiKind::Iban, 1)],
            ),
        ),
        (
            "data",
            sample(
                4,
                &[
                    (PiiKind::Email, 1),
                    (PiiKind::Phone, 1),
                    (PiiKind::Ip, 1),
                    (PiiKind::Card, 1),
                ],
            ),
        ),
        ("age", sample(4, &[])),
    ]
    .into_iter()
    .map(|(c, s)| (c.to_owned(), s))
    .collect();
    assert_eq!(samples, expected);

    // A small table is read whole, whatever the limit: a finding in its
    // last row is found.
    let two = sample_columns(&client, &contacts, &columns(&["E-Mail", "word"]), 2)
        .await
        .unwrap();
    assert_eq!(two["E-Mail"], expected["E-Mail"]);
    assert_eq!(two["word"], expected["word"]);

    // Statistics claiming a billion rows: the page sample finds (almost)
    // nothing, and the first rows are read instead.
    let stale = Table {
        rows_estimate: 1_000_000_000,
        ..contacts.clone()
    };
    let samples = sample_columns(&client, &stale, &columns(COLUMNS), 1000)
        .await
        .unwrap();
    assert_eq!(samples, expected);

    // Nothing asked, nothing read; a repeated column is sampled once.
    assert_eq!(
        sample_columns(&client, &contacts, &[], 1000).await.unwrap(),
        BTreeMap::new()
    );
    let zero = sample_columns(&client, &contacts, &columns(&["word"]), 0)
        .await
        .unwrap();
    assert_eq!(zero["word"], Sample::default());
    let twice = sample_columns(&client, &contacts, &columns(&["phone", "phone"]), 1000)
        .await
        .unwrap();
    assert_eq!(twice.len(), 1);
    assert_eq!(twice["phone"], expected["phone"]);
}

#[tokio::test]
async fn large_tables_are_sampled_by_repeatable_pages_within_the_limit() {
    let db = fresh_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE big (id integer, email text, note text); \
             INSERT INTO big SELECT g, 'user' || g || '@example.com', 'row ' || g \
             FROM generate_series(1, 120000) g;",
        )
        .await
        .unwrap();
    client.batch_execute("ANALYZE big").await.unwrap();
    let big = table(&client, r#""public"."big""#).await;
    assert!(big.rows_estimate > 100_000, "{}", big.rows_estimate);

    let first = sample_columns(&client, &big, &columns(&["email", "note"]), 1000)
        .await
        .unwrap();
    let email = &first["email"];
    // Whole pages come back, about twice the limit, never more than four
    // times it; and the same pages every time.
    assert!((500..=4000).contains(&email.sampled), "{email:?}");
    assert_eq!(email.matches[&PiiKind::Email], email.sampled);
    assert_eq!(first["note"].sampled, email.sampled);
    assert!(first["note"].matches.is_empty());
    for _ in 0..3 {
        let again = sample_columns(&client, &big, &columns(&["email", "note"]), 1000)
            .await
            .unwrap();
        assert_eq!(again, first);
    }
}
