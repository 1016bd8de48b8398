//! The COPY row codec against a real server: fields the server sends in
//! binary COPY decode to the expected values, values the codec encodes are
//! accepted by the server's binary COPY FROM and read back as intended, and
//! text-format rows survive split → join byte for byte.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use flightpath::anonymize::codec::{
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
        ARRAY['a', NULL, E'c\td']::text[], '[0:1]={x,y}'::varchar[], '{}'::text[]
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
            }),
        ),
        (
            FieldType::TextArray,
            Value::TextArray(TextArray::of_text(vec![])),
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
