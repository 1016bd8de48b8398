//! The COPY row codec against a real server: fields the server sends in
//! binary COPY decode to the expected values, values the codec encodes are
//! accepted by the server's binary COPY FROM and read back as intended, and
//! text-format rows survive split → join byte for byte. In text format, fields
//! decode to what the same rows' binary fields decode to, re-encode to the
//! server's own bytes, and lines built by the codec load as the same values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use flightpath::pg::codec::{
    self, DATE_END, DATE_MIN, FieldType, TIMESTAMP_END, TIMESTAMP_MIN, TextArray, VARCHAR_OID,
    Value,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_postgres::Client;

use crate::support::pg::fresh_db;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Everything a `COPY … TO STDOUT` sends.
async fn copy_out(client: &Client, sql: &str) -> Vec<u8> {
    let stream = client.copy_out(sql).await.unwrap();
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn copy_in(client: &Client, sql: &str, data: Vec<u8>) -> u64 {
    let sink = client.copy_in::<_, Bytes>(sql).await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data)).await.unwrap();
    sink.finish().await.unwrap()
}

/// The rows of a binary COPY stream, each field `None` for NULL.
fn binary_rows(data: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
    assert_eq!(&data[..11], SIGNATURE);
    let extension = u32::from_be_bytes(data[15..19].try_into().unwrap()) as usize;
    let mut at = 19 + extension;
    let mut take = |n: usize| {
        let slice = &data[at..at + n];
        at += n;
        slice
    };
    let mut rows = Vec::new();
    loop {
        let count = i16::from_be_bytes(take(2).try_into().unwrap());
        if count == -1 {
            return rows;
        }
        let row = (0..count)
            .map(|_| {
                let len = i32::from_be_bytes(take(4).try_into().unwrap());
                (len >= 0).then(|| take(len as usize).to_vec())
            })
            .collect();
        rows.push(row);
    }
}

/// A binary COPY stream of `rows`.
fn binary_stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend([0; 8]);
    for row in rows {
        out.extend((row.len() as i16).to_be_bytes());
        for field in row {
            match field {
                Some(bytes) => {
                    out.extend((bytes.len() as i32).to_be_bytes());
                    out.extend(bytes);
                }
                None => out.extend((-1i32).to_be_bytes()),
            }
        }
    }
    out.extend((-1i16).to_be_bytes());
    out
}

fn days(y: i32, m: u32, d: u32) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    (NaiveDate::from_ymd_opt(y, m, d).unwrap() - epoch).num_days() as i32
}

fn micros(s: &str) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    (t - epoch).num_microseconds().unwrap()
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

#[tokio::test]
async fn server_binary_fields_decode_to_the_expected_values() {
    let db = fresh_db().await;
    let client = db.client().await;
    client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    let query = r#"COPY (SELECT
        E'h\u00e9llo\ttab\nline \\ 😀'::text, 'vc'::varchar(5), 'ab'::char(3),
        '{"b": 1, "a": [1, null, "x"], "c": {"z": 2.5, "y": "é"}}'::json,
        '{"bb": 1, "a": [true], "c": {"z": 2.5}}'::jsonb,
        '192.168.1.5/24'::inet, '2001:db8::1'::inet, '10.0.0.0/8'::cidr, '2001:db8::/32'::cidr,
        '2024-02-29'::date, '1999-12-31'::date, 'infinity'::date, '-infinity'::date,
        '2024-02-29 12:34:56.789'::timestamp, '2024-02-29 12:34:56.789+02'::timestamptz,
        'infinity'::timestamp, '-infinity'::timestamptz,
        ARRAY['a', NULL, E'c\td']::text[], '[0:1]={x,y}'::varchar[], '{}'::text[],
        '[2:3][0:1]={{a,b},{NULL,"d e"}}'::text[]
    ) TO STDOUT (FORMAT binary)"#;
    let rows = binary_rows(&copy_out(&client, query).await);
    assert_eq!(rows.len(), 1);
    let fields: Vec<&[u8]> = rows[0].iter().map(|f| f.as_deref().unwrap()).collect();
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let db8 = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    let expected = [
        (FieldType::Text, text("héllo\ttab\nline \\ 😀")),
        (FieldType::Text, text("vc")),
        (FieldType::Text, text("ab ")),
        (
            FieldType::Json,
            Value::Json(json!({"b": 1, "a": [1, null, "x"], "c": {"z": 2.5, "y": "é"}})),
        ),
        (
            FieldType::Jsonb,
            Value::Json(json!({"a": [true], "c": {"z": 2.5}, "bb": 1})),
        ),
        (FieldType::Inet, Value::Inet(v4(192, 168, 1, 5), 24, false)),
        (FieldType::Inet, Value::Inet(db8(1), 128, false)),
        (FieldType::Cidr, Value::Inet(v4(10, 0, 0, 0), 8, true)),
        (FieldType::Cidr, Value::Inet(db8(0), 32, true)),
        (FieldType::Date, Value::Date(days(2024, 2, 29))),
        (FieldType::Date, Value::Date(-1)),
        (FieldType::Date, Value::Date(i32::MAX)),
        (FieldType::Date, Value::Date(i32::MIN)),
        (
            FieldType::Timestamp,
            Value::Timestamp(micros("2024-02-29 12:34:56.789")),
        ),
        (
            FieldType::Timestamptz,
            Value::Timestamp(micros("2024-02-29 10:34:56.789")),
        ),
        (FieldType::Timestamp, Value::Timestamp(i64::MAX)),
        (FieldType::Timestamptz, Value::Timestamp(i64::MIN)),
        (
            FieldType::TextArray,
            Value::TextArray(TextArray::of_text(vec![
                Some("a".into()),
                None,
                Some("c\td".into()),
            ])),
        ),
        (
            FieldType::TextArray,
            Value::TextArray(TextArray {
                elements: vec![Some("x".into()), Some("y".into())],
                element_oid: VARCHAR_OID,
                lower_bound: 0,
                inner: Vec::new(),
            }),
        ),
        (
            FieldType::TextArray,
            Value::TextArray(TextArray::of_text(vec![])),
        ),
        (
            FieldType::TextArray,
            Value::TextArray(TextArray {
                elements: vec![Some("a".into()), Some("b".into()), None, Some("d e".into())],
                element_oid: codec::TEXT_OID,
                lower_bound: 2,
                inner: vec![codec::Dim { len: 2, lower: 0 }],
            }),
        ),
    ];
    assert_eq!(fields.len(), expected.len());
    for (i, ((ty, value), bytes)) in expected.iter().zip(&fields).enumerate() {
        let decoded = codec::decode(*ty, bytes).unwrap();
        assert_eq!(&decoded, value, "field {i} ({ty})");
        // Untouched values re-encode to the server's own bytes (json aside:
        // its text is re-serialized).
        if *ty != FieldType::Json && *ty != FieldType::Jsonb {
            assert_eq!(&codec::encode(*ty, &decoded).unwrap(), bytes, "field {i}");
        }
    }
    // Key order is the server's: the json's as written, the jsonb's by key length, then bytes.
    let order = |i: usize| match codec::decode(expected[i].0, fields[i]).unwrap() {
        Value::Json(v) => v.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        order(3),
        r#"{"b":1,"a":[1,null,"x"],"c":{"z":2.5,"y":"é"}}"#
    );
    assert_eq!(order(4), r#"{"a":[true],"c":{"z":2.5},"bb":1}"#);
}

#[tokio::test]
async fn the_server_accepts_encoded_values() {
    let db = fresh_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "SET TimeZone = 'UTC';
             CREATE TABLE t (n int, t text, v varchar(20), c char(3), j json, jb jsonb,
                             i inet, ci cidr, d date, ts timestamp, tz timestamptz,
                             ta text[], va varchar(10)[])",
        )
        .await
        .unwrap();
    let v4 = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let v6: IpAddr = "2001:db8:ff00::".parse().unwrap();
    let varchars = |elements: Vec<Option<String>>, lower_bound| {
        Value::TextArray(TextArray {
            elements,
            element_oid: VARCHAR_OID,
            lower_bound,
            inner: Vec::new(),
        })
    };
    let row = |n: i32, values: Vec<Value>| {
        let types = [
            FieldType::Text,
            FieldType::Text,
            FieldType::Text,
            FieldType::Json,
            FieldType::Jsonb,
            FieldType::Inet,
            FieldType::Cidr,
            FieldType::Date,
            FieldType::Timestamp,
            FieldType::Timestamptz,
            FieldType::TextArray,
            FieldType::TextArray,
        ];
        let mut fields = vec![Some(n.to_be_bytes().to_vec())];
        fields.extend(
            types
                .iter()
                .zip(&values)
                .map(|(ty, v)| Some(codec::encode(*ty, v).unwrap())),
        );
        fields
    };
    let rows = vec![
        row(
            1,
            vec![
                text("tab\tnl\nbs\\ é 😀 \u{8}"),
                text("fake@example.com"),
                text("xy"),
                Value::Json(json!({"z": "a@example.org", "a": [1, {"k": null}], "n": -2.5})),
                Value::Json(json!({"email": "b@example.net", "tags": ["x", "y"]})),
                Value::Inet(v4, 24, false),
                Value::Inet(v6, 40, true),
                Value::Date(days(2024, 2, 29)),
                Value::Timestamp(micros("2024-02-29 12:34:56.789012")),
                Value::Timestamp(micros("1999-12-31 23:59:59")),
                Value::TextArray(TextArray::of_text(vec![
                    Some("a,b".into()),
                    None,
                    Some("\"q\" {}".into()),
                ])),
                varchars(vec![Some("x".into()), None], 0),
            ],
        ),
        row(
            2,
            vec![
                text(""),
                text(""),
                text(""),
                Value::Json(json!([])),
                Value::Json(json!("s")),
                Value::Inet(IpAddr::V6(Ipv6Addr::LOCALHOST), 128, false),
                Value::Inet(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, false),
                Value::Date(DATE_MIN),
                Value::Timestamp(TIMESTAMP_MIN),
                Value::Timestamp(TIMESTAMP_END - 1),
                Value::TextArray(TextArray::of_text(vec![])),
                varchars(vec![None], -3),
            ],
        ),
        row(
            3,
            vec![
                text("z"),
                text("z"),
                text("z"),
                Value::Json(json!(null)),
                Value::Json(json!(12)),
                Value::Inet(v4, 32, false),
                Value::Inet(v4, 32, false),
                Value::Date(DATE_END - 1),
                Value::Timestamp(i64::MAX),
                Value::Timestamp(i64::MIN),
                Value::TextArray(TextArray::of_text(vec![Some(String::new())])),
                varchars(vec![], 1),
            ],
        ),
    ];
    let loaded = copy_in(
        &client,
        "COPY t FROM STDIN (FORMAT binary)",
        binary_stream(&rows),
    )
    .await;
    assert_eq!(loaded, 3);
    let read = client
        .query(
            "SELECT concat_ws(' | ', t, v, octet_length(c), j, jb, i, ci, d, ts, tz, ta,
                              array_lower(va, 1), va)
             FROM t ORDER BY n",
            &[],
        )
        .await
        .unwrap();
    let read: Vec<String> = read.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        read,
        [
            "tab\tnl\nbs\\ é 😀 \u{8} | fake@example.com | 3 | \
             {\"z\":\"a@example.org\",\"a\":[1,{\"k\":null}],\"n\":-2.5} | \
             {\"tags\": [\"x\", \"y\"], \"email\": \"b@example.net\"} | \
             203.0.113.7/24 | 2001:db8:ff00::/40 | 2024-02-29 | 2024-02-29 12:34:56.789012 | \
             1999-12-31 23:59:59+00 | {\"a,b\",NULL,\"\\\"q\\\" {}\"} | 0 | [0:1]={x,NULL}",
            " |  | 3 | [] | \"s\" | ::1 | 0.0.0.0/0 | 4714-11-24 BC | \
             4714-11-24 00:00:00 BC | 294276-12-31 23:59:59.999999+00 | {} | -3 | [-3:-3]={NULL}",
            "z | z | 3 | null | 12 | 203.0.113.7 | 203.0.113.7/32 | 5874897-12-31 | \
             infinity | -infinity | {\"\"} | {}",
        ]
    );
}

#[tokio::test]
async fn the_server_rejects_an_array_of_the_wrong_element_type() {
    let db = fresh_db().await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE t (va varchar[])")
        .await
        .unwrap();
    let value = Value::TextArray(TextArray::of_text(vec![Some("x".into())]));
    let data = binary_stream(&[vec![Some(
        codec::encode(FieldType::TextArray, &value).unwrap(),
    )]]);
    let sink = client
        .copy_in::<_, Bytes>("COPY t FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data)).await.unwrap();
    let error = sink.finish().await.unwrap_err();
    assert!(
        format!("{error:?}").contains("element type 25"),
        "{error:?}"
    );
}

#[tokio::test]
async fn text_rows_round_trip_through_the_server() {
    let db = fresh_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            r#"CREATE TABLE t (n int, a text, b text, c varchar(20)[]);
               INSERT INTO t VALUES
                 (1, E'tab\there\nnewline\rcr\\backslash', NULL, '{x,NULL,"y z"}'),
                 (2, E'\b\f' || chr(11) || E'\x01 control', '', '{}'),
                 (3, 'é 😀 日本語', E'\\N', NULL),
                 (4, E'trailing\\', E'\t', '{"a\\\\b"}')"#,
        )
        .await
        .unwrap();
    let data = copy_out(&client, "COPY t TO STDOUT").await;
    let lines: Vec<&[u8]> = data
        .strip_suffix(b"\n")
        .unwrap()
        .split(|&b| b == b'\n')
        .collect();
    assert_eq!(lines.len(), 4);
    let mut rebuilt = Vec::new();
    let mut split = Vec::new();
    for line in &lines {
        let fields = codec::split_text_row(line).unwrap();
        rebuilt.extend(codec::join_text_row(&fields));
        rebuilt.push(b'\n');
        split.push(fields);
    }
    assert_eq!(
        String::from_utf8_lossy(&rebuilt),
        String::from_utf8_lossy(&data)
    );
    assert_eq!(rebuilt, data);
    let field = |row: usize, i: usize| split[row][i].clone();
    assert_eq!(field(0, 1).unwrap(), b"tab\there\nnewline\rcr\\backslash");
    assert_eq!(field(0, 2), None);
    assert_eq!(field(1, 1).unwrap(), b"\x08\x0c\x0b\x01 control");
    assert_eq!(field(1, 2).unwrap(), b"");
    assert_eq!(field(2, 1).unwrap(), "é 😀 日本語".as_bytes());
    assert_eq!(field(2, 2).unwrap(), b"\\N");
    assert_eq!(field(3, 2).unwrap(), b"\t");

    // New values, joined by the codec, load as the same strings.
    client
        .batch_execute("CREATE TABLE u (LIKE t)")
        .await
        .unwrap();
    let mut data = Vec::new();
    for row in &split {
        let mut row = row.clone();
        if let Some(a) = &mut row[1] {
            a.extend_from_slice("\t\\ñ\n".as_bytes());
        }
        data.extend(codec::join_text_row(&row));
        data.push(b'\n');
    }
    assert_eq!(copy_in(&client, "COPY u FROM STDIN", data).await, 4);
    let same: i64 = client
        .query_one(
            r#"SELECT count(*) FROM t JOIN u USING (n)
               WHERE u.a = t.a || E'\t\\ñ\n' AND u.b IS NOT DISTINCT FROM t.b
                 AND u.c IS NOT DISTINCT FROM t.c"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(same, 4);
}

/// The column types of [`TEXT_TABLE`] after its `n`.
const TEXT_TYPES: [FieldType; 12] = [
    FieldType::Text,
    FieldType::Text,
    FieldType::Text,
    FieldType::Json,
    FieldType::Jsonb,
    FieldType::Inet,
    FieldType::Cidr,
    FieldType::Date,
    FieldType::Timestamp,
    FieldType::Timestamptz,
    FieldType::TextArray,
    FieldType::TextArray,
];

/// One column of every type, numbered rows.
const TEXT_TABLE: &str =
    "CREATE TABLE t (n int, t text, v varchar(40), c char(3), j json, jb jsonb,
                          i inet, ci cidr, d date, ts timestamp, tz timestamptz,
                          ta text[], va varchar(40)[])";

/// A client with the text codec's session settings.
async fn text_client() -> (crate::support::pg::TestDb, Client) {
    let db = fresh_db().await;
    let client = db.client().await;
    client
        .batch_execute(codec::TEXT_SESSION_SETTINGS)
        .await
        .unwrap();
    (db, client)
}

/// The lines of a text COPY stream, without their line endings.
fn text_lines(data: &[u8]) -> Vec<&[u8]> {
    match data.strip_suffix(b"\n") {
        Some(body) => body.split(|&b| b == b'\n').collect(),
        None => Vec::new(),
    }
}

/// A value as the text form can carry it: arrays lose their element type.
fn as_text_form(value: Value) -> Value {
    match value {
        Value::TextArray(array) => Value::TextArray(TextArray {
            element_oid: codec::TEXT_OID,
            ..array
        }),
        other => other,
    }
}

/// Checks the text COPY of `select` against its binary COPY, row by row
/// and field by field: `decode_text` gives what `decode` gives, and
/// `encode_text` of that (JSON aside) gives the server's own bytes, so
/// whole lines rebuilt by `join_text_row` match. Returns the rows decoded.
async fn check_text_against_binary(
    client: &Client,
    select: &str,
    types: &[FieldType],
) -> Vec<Vec<Option<Value>>> {
    let binary = copy_out(
        client,
        &format!("COPY ({select}) TO STDOUT (FORMAT binary)"),
    )
    .await;
    let text = copy_out(client, &format!("COPY ({select}) TO STDOUT")).await;
    let binary_rows = binary_rows(&binary);
    let lines = text_lines(&text);
    assert_eq!(lines.len(), binary_rows.len());
    let mut decoded = Vec::new();
    for (r, (line, binary_row)) in lines.iter().zip(&binary_rows).enumerate() {
        let fields = codec::split_text_row(line).unwrap();
        assert_eq!(fields.len(), types.len(), "row {r}");
        let mut rebuilt = Vec::new();
        let mut row = Vec::new();
        for (i, ((field, binary_field), ty)) in fields.iter().zip(binary_row).zip(types).enumerate()
        {
            let shown = || String::from_utf8_lossy(field.as_deref().unwrap_or(b"")).into_owned();
            let (Some(field), Some(binary_field)) = (field, binary_field) else {
                assert_eq!(field.is_none(), binary_field.is_none(), "row {r} field {i}");
                rebuilt.push(None);
                row.push(None);
                continue;
            };
            let value = codec::decode_text(*ty, field)
                .unwrap_or_else(|e| panic!("row {r} field {i} ({ty}) {:?}: {e}", shown()));
            let from_binary = as_text_form(codec::decode(*ty, binary_field).unwrap());
            assert_eq!(value, from_binary, "row {r} field {i} ({ty}) {:?}", shown());
            let encoded = codec::encode_text(*ty, &value).unwrap();
            if !matches!(ty, FieldType::Json | FieldType::Jsonb) {
                assert_eq!(
                    String::from_utf8_lossy(&encoded),
                    shown(),
                    "row {r} field {i} ({ty})"
                );
                rebuilt.push(Some(encoded));
            } else {
                rebuilt.push(Some(field.clone()));
            }
            row.push(Some(value));
        }
        assert_eq!(codec::join_text_row(&rebuilt), *line, "row {r}");
        decoded.push(row);
    }
    decoded
}

#[tokio::test]
async fn server_text_fields_decode_like_binary_ones_and_print_the_same() {
    let (_db, client) = text_client().await;
    client.batch_execute(TEXT_TABLE).await.unwrap();
    client
        .batch_execute(
            r#"INSERT INTO t VALUES
             (1, E'h\u00e9llo\ttab\nline\r\\ 😀', 'fake@example.com', 'ab',
              '{"b": 1, "a": [1, null, "x"], "c": {"z": 2.5, "y": "é"}}',
              '{"bb": 1, "a": [true, 1e3, 0.1000], "c": {"z": "\u00e9\n"}}',
              '192.0.2.1', '192.0.2.0/24', '2024-02-29', '2024-02-29 12:34:56.789',
              '2024-02-29 12:34:56.789+02',
              '{a,"b c",NULL,"with \"quote\"","back\\slash",""}', '[2:3]={x,y}'),
             (2, '', '', '', '[]', 'null', '::', '::/0',
              '4714-11-24 BC', '4714-11-24 00:00:00 BC', '4714-11-24 00:00:00+00 BC',
              '{}', '[-3:-3]={NULL}'),
             (3, 'z', 'NULL', 'N', '"s"', '12', '255.255.255.255/0', '255.255.255.255/32',
              '5874897-12-31', '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00',
              ARRAY[E'\t', E'\n', E'\r', E'\x0b', E'\f', ' ', 'NULL', 'null', 'NULLS', '{x}',
                    'a,b', E'\x01', 'é😀', 'x y', E'\\N', 'a"b', E'c\\d'],
              '[2147483646:2147483646]={z}'),
             (4, E'\\N', E'\\', E'\t', '{}', '{}', '::1.2.3.4', '2001:db8::/32',
              'infinity', 'infinity', '-infinity',
              '{"",""}', '[0:1]={" a","b "}'),
             (5, 'x', 'x', 'x', 'true', '[1, "x"]', '::ffff:1.2.3.4/120', '::ffff:1.2.3.0/120',
              '0001-12-31 BC', '0044-03-15 12:00:00.000001 BC', '0001-12-31 23:59:59.999999+00 BC',
              '{NuLl}', '{a}'),
             (6, 'x', 'x', 'x', '0', '-0.5', '2001:db8::1/64', '10.0.0.0/8',
              '0001-01-01', '0001-01-01 00:00:00', '1999-12-31 23:59:59.5-03:30',
              '{x}', '{}'),
             (7, 'x', 'x', 'x', '1', '1', '::2', '1::/16',
              '-infinity', '-infinity', 'infinity', '{x}', '{x}'),
             (8, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"#,
        )
        .await
        .unwrap();
    let rows = check_text_against_binary(
        &client,
        "SELECT t, v, c, j, jb, i, ci, d, ts, tz, ta, va FROM t ORDER BY n",
        &TEXT_TYPES,
    )
    .await;
    // Spot checks that the server said what the test means.
    let s = |s: &str| Some(s.to_owned());
    assert_eq!(
        rows[0][10],
        Some(Value::TextArray(TextArray::of_text(vec![
            s("a"),
            s("b c"),
            None,
            s("with \"quote\""),
            s("back\\slash"),
            s(""),
        ])))
    );
    assert_eq!(rows[1][7], Some(Value::Date(DATE_MIN)));
    assert_eq!(rows[1][8], Some(Value::Timestamp(TIMESTAMP_MIN)));
    assert_eq!(rows[2][7], Some(Value::Date(DATE_END - 1)));
    assert_eq!(rows[2][9], Some(Value::Timestamp(TIMESTAMP_END - 1)));
    assert_eq!(rows[3][7], Some(Value::Date(i32::MAX)));
    assert_eq!(rows[3][9], Some(Value::Timestamp(i64::MIN)));
    assert_eq!(
        rows[5][9],
        Some(Value::Timestamp(micros("2000-01-01 03:29:59.5")))
    );
    assert!(rows[7].iter().all(Option::is_none));
    // One past the last index must fit an int4 too, hence the 2147483646
    // above and the codec's refusal of a one-element array at 2147483647.
    let error = client
        .simple_query("SELECT '[2147483647:2147483647]={z}'::text[]")
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("array lower bound is too large"),
        "{error:?}"
    );

    // The same values written back as text lines load as the same values.
    client
        .batch_execute("CREATE TABLE u (LIKE t)")
        .await
        .unwrap();
    load_as_text(&client, "u", &rows).await;
    let reloaded = check_text_against_binary(
        &client,
        "SELECT t, v, c, j, jb, i, ci, d, ts, tz, ta, va FROM u ORDER BY n",
        &TEXT_TYPES,
    )
    .await;
    assert_eq!(reloaded, rows);
}

/// A small deterministic generator (SplitMix64): the same values on every
/// run, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `low..high` (for `high > low`).
    fn range(&mut self, low: i64, high: i64) -> i64 {
        let span = (i128::from(high) - i128::from(low)) as u64;
        low.wrapping_add((self.next() % span) as i64)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next() as usize % items.len()]
    }
}

/// Text made of the pieces that need escaping, quoting or care somewhere.
fn random_text(rng: &mut Rng) -> String {
    const PIECES: [&str; 22] = [
        "a", "B", " ", "\t", "\n", "\r", "\u{b}", "\u{c}", "\u{8}", "{", "}", ",", "\"", "\\",
        "NULL", "null", "é", "😀", "\u{1}", "x y", "\\N", "=",
    ];
    let n = rng.range(0, 5);
    (0..n).map(|_| *rng.pick(&PIECES)).collect()
}

fn random_days(rng: &mut Rng) -> i32 {
    let near_year_1 = -730_119;
    match rng.range(0, 5) {
        0 => rng.range(DATE_MIN.into(), DATE_END.into()) as i32,
        1 => rng.range(DATE_MIN.into(), (DATE_MIN + 800).into()) as i32,
        2 => rng.range((DATE_END - 800).into(), DATE_END.into()) as i32,
        3 => rng.range(near_year_1 - 800, near_year_1 + 800) as i32,
        _ => rng.range(-40_000, 60_000) as i32,
    }
}

fn random_micros(rng: &mut Rng) -> i64 {
    const DAY: i64 = 86_400_000_000;
    let us = match rng.range(0, 4) {
        0 => rng.range(TIMESTAMP_MIN, TIMESTAMP_END),
        1 => rng.range(TIMESTAMP_MIN, TIMESTAMP_MIN + 400 * DAY),
        2 => rng.range(TIMESTAMP_END - 400 * DAY, TIMESTAMP_END),
        _ => i64::from(random_days(rng).clamp(-100_000_000, 100_000_000)) * DAY + rng.range(0, DAY),
    };
    // Whole seconds and round fractions print without trailing zeros.
    let unit = *rng.pick(&[1, 1, 10, 1_000, 100_000, 1_000_000]);
    (us - us.rem_euclid(unit)).max(TIMESTAMP_MIN)
}

/// An address with zero runs, IPv4-mapped and -compatible forms often
/// enough to exercise the server's IPv6 spelling.
fn random_address(rng: &mut Rng) -> IpAddr {
    if rng.one_in(3) {
        return IpAddr::V4(Ipv4Addr::from(rng.next() as u32));
    }
    let mut words = [0u16; 8];
    for word in &mut words {
        *word = match rng.range(0, 4) {
            0 | 1 => 0,
            2 => *rng.pick(&[1, 0xffff, 0x10, 0xabcd]),
            _ => rng.next() as u16,
        };
    }
    match rng.range(0, 6) {
        0 => words[..5].fill(0),
        1 => {
            words[..5].fill(0);
            words[5] = 0xffff;
        }
        2 => words[..6].fill(0),
        3 => words[..7].fill(0),
        _ => {}
    }
    IpAddr::V6(Ipv6Addr::from(words))
}

/// `addr` with its host bits cleared.
fn network(addr: IpAddr, bits: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

fn random_inet(rng: &mut Rng, is_cidr: bool) -> Value {
    let addr = random_address(rng);
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = if rng.one_in(3) {
        max
    } else {
        rng.range(0, i64::from(max) + 1) as u8
    };
    let addr = if is_cidr { network(addr, bits) } else { addr };
    Value::Inet(addr, bits, is_cidr)
}

fn random_array(rng: &mut Rng) -> Value {
    let len = rng.range(0, 6) as usize;
    let elements = (0..len)
        .map(|_| (!rng.one_in(5)).then(|| random_text(rng)))
        .collect::<Vec<_>>();
    let lower_bound = match rng.range(0, 4) {
        0 => rng.range(-1000, 1000) as i32,
        1 => i32::MAX - len as i32,
        2 => i32::MIN,
        _ => 1,
    };
    Value::TextArray(TextArray {
        lower_bound: if elements.is_empty() { 1 } else { lower_bound },
        elements,
        element_oid: codec::TEXT_OID,
        inner: Vec::new(),
    })
}

fn random_json(rng: &mut Rng) -> Value {
    Value::Json(json!({
        "s": random_text(rng),
        "n": rng.range(-1_000_000, 1_000_000),
        "a": [random_text(rng), null, rng.one_in(2)],
    }))
}

/// A row of [`TEXT_TABLE`] after its `n`, every field non-NULL except by chance.
fn random_row(rng: &mut Rng) -> Vec<Option<Value>> {
    let mut row = vec![
        Some(Value::Text(random_text(rng))),
        Some(Value::Text(random_text(rng).chars().take(40).collect())),
        Some(Value::Text(random_text(rng).chars().take(3).collect())),
        Some(random_json(rng)),
        Some(random_json(rng)),
        Some(random_inet(rng, false)),
        Some(random_inet(rng, true)),
        Some(Value::Date(match rng.range(0, 20) {
            0 => i32::MAX,
            1 => i32::MIN,
            _ => random_days(rng),
        })),
        Some(Value::Timestamp(match rng.range(0, 20) {
            0 => i64::MAX,
            1 => i64::MIN,
            _ => random_micros(rng),
        })),
        Some(Value::Timestamp(random_micros(rng))),
        Some(random_array(rng)),
        Some(random_array(rng)),
    ];
    if rng.one_in(10) {
        let i = rng.range(0, row.len() as i64) as usize;
        row[i] = None;
    }
    row
}

/// Writes `rows` (values of [`TEXT_TYPES`], numbered from 0) into `table`
/// through text COPY FROM, each line built by `encode_text` and
/// `join_text_row`.
async fn load_as_text(client: &Client, table: &str, rows: &[Vec<Option<Value>>]) {
    let mut data = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let mut fields = vec![Some(n.to_string().into_bytes())];
        fields.extend(
            row.iter()
                .zip(TEXT_TYPES)
                .map(|(value, ty)| value.as_ref().map(|v| codec::encode_text(ty, v).unwrap())),
        );
        data.extend(codec::join_text_row(&fields));
        data.push(b'\n');
    }
    let sql = format!("COPY {table} FROM STDIN");
    assert_eq!(copy_in(client, &sql, data).await, rows.len() as u64);
}

/// Many values over the whole range of every type, in both directions:
/// loaded through binary COPY, the server's text COPY of them is what
/// `encode_text` writes and decodes back to them; written by
/// `encode_text` and `join_text_row`, the server's text COPY FROM takes
/// them and gives them back.
#[tokio::test]
async fn random_values_cross_the_text_form_as_the_server_writes_it() {
    let (_db, client) = text_client().await;
    client.batch_execute(TEXT_TABLE).await.unwrap();
    client
        .batch_execute("CREATE TABLE u (LIKE t)")
        .await
        .unwrap();
    let mut rng = Rng(0x5eed_f00d);
    let rows: Vec<Vec<Option<Value>>> = (0..2000).map(|_| random_row(&mut rng)).collect();
    // What the server stores: char(3) pads to three characters.
    let expected: Vec<Vec<Option<Value>>> = rows
        .iter()
        .map(|row| {
            let mut row = row.clone();
            if let Some(Value::Text(c)) = &mut row[2] {
                let missing = 3 - c.chars().count();
                c.extend(std::iter::repeat_n(' ', missing));
            }
            row
        })
        .collect();
    let select =
        |table| format!("SELECT t, v, c, j, jb, i, ci, d, ts, tz, ta, va FROM {table} ORDER BY n");

    // Binary in, text out. The varchar[] column wants its element type.
    let binary: Vec<Vec<Option<Vec<u8>>>> = rows
        .iter()
        .enumerate()
        .map(|(n, row)| {
            let mut fields = vec![Some((n as i32).to_be_bytes().to_vec())];
            for (col, (value, ty)) in row.iter().zip(TEXT_TYPES).enumerate() {
                fields.push(value.as_ref().map(|value| {
                    let value = match value {
                        Value::TextArray(array) if col == 11 => Value::TextArray(TextArray {
                            element_oid: VARCHAR_OID,
                            ..array.clone()
                        }),
                        other => other.clone(),
                    };
                    codec::encode(ty, &value).unwrap()
                }));
            }
            fields
        })
        .collect();
    let loaded = copy_in(
        &client,
        "COPY t FROM STDIN (FORMAT binary)",
        binary_stream(&binary),
    )
    .await;
    assert_eq!(loaded, rows.len() as u64);
    let decoded = check_text_against_binary(&client, &select("t"), &TEXT_TYPES).await;
    for (n, (got, want)) in decoded.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "row {n}");
    }

    // Text in, read back.
    load_as_text(&client, "u", &rows).await;
    let decoded = check_text_against_binary(&client, &select("u"), &TEXT_TYPES).await;
    for (n, (got, want)) in decoded.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "row {n}");
    }
}

/// A timestamptz printed under another TimeZone (offsets with minutes, and
/// the seconds of local mean time in the past) decodes to the instant its
/// binary form holds.
#[tokio::test]
async fn timestamptz_text_under_other_time_zones_decodes_to_utc() {
    let (_db, client) = text_client().await;
    let select = "SELECT x FROM unnest(ARRAY[
            '2024-02-29 12:34:56.789+00', '2024-07-01 00:00:00+00', '1900-01-01 00:00:00+00',
            '1850-06-01 12:00:00.5+00', '0044-03-15 12:00:00+00 BC', '4714-11-25 00:00:00+00 BC',
            '294276-12-30 00:00:00+00', '2000-01-01 00:00:00.000001+00', 'infinity', '-infinity'
        ]::timestamptz[]) WITH ORDINALITY AS a (x, o) ORDER BY o";
    let mut all_text = String::new();
    for zone in [
        "Asia/Kathmandu",
        "America/St_Johns",
        "Europe/Amsterdam",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
    ] {
        client
            .batch_execute(&format!("SET TimeZone = '{zone}'"))
            .await
            .unwrap();
        let text = copy_out(&client, &format!("COPY ({select}) TO STDOUT")).await;
        let binary = copy_out(
            &client,
            &format!("COPY ({select}) TO STDOUT (FORMAT binary)"),
        )
        .await;
        let lines = text_lines(&text);
        let binary_rows = binary_rows(&binary);
        assert_eq!(lines.len(), binary_rows.len());
        for (line, row) in lines.iter().zip(&binary_rows) {
            let ty = FieldType::Timestamptz;
            let shown = String::from_utf8_lossy(line);
            let decoded =
                codec::decode_text(ty, line).unwrap_or_else(|e| panic!("{zone} {shown}: {e}"));
            let expected = codec::decode(ty, row[0].as_deref().unwrap()).unwrap();
            assert_eq!(decoded, expected, "{zone} {shown}");
        }
        all_text.push_str(&String::from_utf8_lossy(&text));
    }
    // The zones really printed the offsets meant to be tested.
    for offset in [
        "+05:45\n",
        "+05:41:16 BC",
        "-03:30\n",
        "-03:30:52 BC",
        "+00:19:32\n",
        "+14\n",
        "-10:29:20\n",
        "-11\n",
    ] {
        assert!(all_text.contains(offset), "{offset:?} in {all_text}");
    }
}
