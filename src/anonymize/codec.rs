//! The COPY row codec: one field of a ruled column, converted between
//! PostgreSQL's wire representation and a Rust [`Value`] by column type, and
//! back. Binary COPY fields use the types' `*_send`/`*_recv` formats; tables
//! that travel as text COPY are cut into fields by [`split_text_row`] and put
//! back together by [`join_text_row`].
//!
//! This module never sees a whole row or a whole stream (`pg::copy` cuts
//! those), never decides what to change (the strategies do), and never
//! panics on malformed input: every problem is a [`CodecError`].
//!
//! JSON goes through `serde_json::Value`, so re-encoding re-serializes the
//! whole document: whitespace changes (harmless for jsonb), and numbers
//! beyond `i64`/`u64`/exact `f64` may change by an ULP. Encode JSON only
//! when a rule changed it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// OID of `text`, the element type of a `text[]`.
pub const TEXT_OID: u32 = 25;
/// OID of `character varying`, the element type of a `character varying[]`.
pub const VARCHAR_OID: u32 = 1043;
/// OID of `character`, the element type of a `character[]`.
pub const BPCHAR_OID: u32 = 1042;

/// First valid `date` (4714-11-24 BC), in days since 2000-01-01.
pub const DATE_MIN: i32 = -2_451_545;
/// One past the last valid `date` (5874898-01-01 would be out of range).
pub const DATE_END: i32 = 2_147_483_494 - 2_451_545;
/// First valid `timestamp` (4714-11-24 00:00 BC), in µs since 2000-01-01.
pub const TIMESTAMP_MIN: i64 = -211_813_488_000_000_000;
/// One past the last valid `timestamp` (294277-01-01 00:00).
pub const TIMESTAMP_END: i64 = 9_223_371_331_200_000_000;

/// `PGSQL_AF_INET`, PostgreSQL's own family number for IPv4.
const PGSQL_AF_INET: u8 = 2;
/// `PGSQL_AF_INET6`.
const PGSQL_AF_INET6: u8 = 3;

/// The column types a rule can apply to, as far as their bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// `text`, `character varying`, `character`, `citext`: UTF-8 bytes.
    Text,
    Json,
    Jsonb,
    Inet,
    Cidr,
    Date,
    Timestamp,
    Timestamptz,
    /// A one-dimensional array of any of the text types.
    TextArray,
}

impl FieldType {
    /// The type of a column from its `format_type()` spelling
    /// (`character varying(20)`, `public.citext`, `timestamp(3) with time
    /// zone`, `text[]` …); `None` for a type this codec cannot handle.
    pub fn from_pg(type_name: &str) -> Option<FieldType> {
        let name = type_name.trim();
        if let Some(element) = name.strip_suffix("[]") {
            let element = element.trim_end_matches("[]");
            return is_text_like(&without_modifier(element)).then_some(FieldType::TextArray);
        }
        let name = without_modifier(name);
        if is_text_like(&name) {
            return Some(FieldType::Text);
        }
        Some(match name.as_str() {
            "json" => FieldType::Json,
            "jsonb" => FieldType::Jsonb,
            "inet" => FieldType::Inet,
            "cidr" => FieldType::Cidr,
            "date" => FieldType::Date,
            "timestamp without time zone" | "timestamp" => FieldType::Timestamp,
            "timestamp with time zone" | "timestamptz" => FieldType::Timestamptz,
            _ => return None,
        })
    }

    /// The SQL name, for messages.
    pub fn sql_name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Json => "json",
            FieldType::Jsonb => "jsonb",
            FieldType::Inet => "inet",
            FieldType::Cidr => "cidr",
            FieldType::Date => "date",
            FieldType::Timestamp => "timestamp",
            FieldType::Timestamptz => "timestamptz",
            FieldType::TextArray => "text[]",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// `character varying(20)` → `character varying`; `timestamp(3) with time
/// zone` → `timestamp with time zone`.
fn without_modifier(name: &str) -> String {
    match (name.find('('), name.find(')')) {
        (Some(open), Some(close)) if open < close => {
            format!("{}{}", name[..open].trim_end(), &name[close + 1..])
        }
        _ => name.to_owned(),
    }
}

fn is_text_like(name: &str) -> bool {
    let unqualified = name.rsplit('.').next().unwrap_or(name);
    matches!(
        name,
        "text" | "character varying" | "varchar" | "character" | "bpchar"
    ) || unqualified == "citext"
}

/// One decoded field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    /// For `json` and `jsonb`; object keys keep their order.
    Json(serde_json::Value),
    /// Address, prefix length in bits, and whether it came as a `cidr`.
    /// [`encode`] writes the flag of the column's type, not this one.
    Inet(IpAddr, u8, bool),
    /// Days since 2000-01-01; `i32::MAX`/`i32::MIN` are ±infinity.
    Date(i32),
    /// Microseconds since 2000-01-01 (UTC for `timestamptz`);
    /// `i64::MAX`/`i64::MIN` are ±infinity.
    Timestamp(i64),
    TextArray(TextArray),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Text(_) => "text",
            Value::Json(_) => "json",
            Value::Inet(..) => "inet",
            Value::Date(_) => "date",
            Value::Timestamp(_) => "timestamp",
            Value::TextArray(_) => "text array",
        }
    }
}

/// A one-dimensional array of text, with what the server needs back: the
/// element type's OID (checked by the server on input; `citext`'s varies
/// per database) and the lower bound of its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextArray {
    pub elements: Vec<Option<String>>,
    pub element_oid: u32,
    /// Index of the first element, usually 1. An empty array has none and
    /// is written without it.
    pub lower_bound: i32,
}

impl TextArray {
    /// A `text[]` value indexed from 1.
    pub fn of_text(elements: Vec<Option<String>>) -> TextArray {
        TextArray {
            elements,
            element_oid: TEXT_OID,
            lower_bound: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{ty} field is truncated: needs {needed} more bytes, has {available}")]
    Truncated {
        ty: FieldType,
        needed: usize,
        available: usize,
    },
    #[error("{ty} field has {extra} unexpected bytes at its end")]
    TrailingBytes { ty: FieldType, extra: usize },
    #[error("{ty} field is not valid UTF-8 (after byte {valid_up_to})")]
    InvalidUtf8 { ty: FieldType, valid_up_to: usize },
    #[error("{ty} field is not valid JSON: {source}")]
    InvalidJson {
        ty: FieldType,
        source: serde_json::Error,
    },
    #[error("jsonb field has format version {0}; only version 1 is known")]
    JsonbVersion(u8),
    #[error("{ty} field has unknown address family {family}")]
    InetFamily { ty: FieldType, family: u8 },
    #[error("{ty} field has an address of {length} bytes; its family needs {expected}")]
    InetLength {
        ty: FieldType,
        length: u8,
        expected: u8,
    },
    #[error("{ty} prefix /{bits} is longer than the address ({max} bits)")]
    InetBits { ty: FieldType, bits: u8, max: u8 },
    #[error("cidr value {addr}/{bits} has bits set to the right of its mask")]
    CidrHostBits { addr: IpAddr, bits: u8 },
    #[error("array has {ndim} dimensions; only one-dimensional arrays are supported")]
    ArrayDimensions { ndim: i32 },
    #[error("array has invalid null flag {0}")]
    ArrayFlags(i32),
    #[error("array has negative size {0}")]
    ArraySize(i32),
    #[error("array element {index} has invalid length {length}")]
    ArrayElementLength { index: usize, length: i32 },
    #[error("array of {len} elements from index {lower_bound} exceeds the index range")]
    ArrayBounds { len: usize, lower_bound: i32 },
    #[error("{ty} value {value} is out of range")]
    OutOfRange { ty: FieldType, value: i64 },
    #[error("{ty} value contains a NUL character, which PostgreSQL text cannot hold")]
    Nul { ty: FieldType },
    #[error("a {value} value cannot be written to a {ty} column")]
    Mismatch { ty: FieldType, value: &'static str },
    #[error("text COPY row, byte {at}: {problem}")]
    TextRow { at: usize, problem: &'static str },
}

/// Decodes one non-NULL field from its binary COPY representation.
pub fn decode(ty: FieldType, bytes: &[u8]) -> Result<Value, CodecError> {
    let mut r = Reader { ty, bytes };
    let value = match ty {
        FieldType::Text => Value::Text(utf8(ty, r.rest())?),
        FieldType::Json => Value::Json(json(ty, r.rest())?),
        FieldType::Jsonb => match r.u8()? {
            1 => Value::Json(json(ty, r.rest())?),
            version => return Err(CodecError::JsonbVersion(version)),
        },
        FieldType::Inet | FieldType::Cidr => decode_inet(&mut r)?,
        FieldType::Date => Value::Date(r.i32()?),
        FieldType::Timestamp | FieldType::Timestamptz => Value::Timestamp(r.i64()?),
        FieldType::TextArray => Value::TextArray(decode_array(&mut r)?),
    };
    r.finish()?;
    Ok(value)
}

/// Encodes a value for a column of type `ty`, in the form the server's
/// binary COPY input accepts; an error when the value does not fit the type.
pub fn encode(ty: FieldType, value: &Value) -> Result<Vec<u8>, CodecError> {
    let mismatch = || CodecError::Mismatch {
        ty,
        value: value.kind(),
    };
    match (ty, value) {
        (FieldType::Text, Value::Text(s)) => Ok(text_bytes(ty, s)?.to_vec()),
        (FieldType::Json, Value::Json(v)) => Ok(json_bytes(ty, v)?),
        (FieldType::Jsonb, Value::Json(v)) => {
            let mut out = vec![1];
            out.extend(json_bytes(ty, v)?);
            Ok(out)
        }
        (FieldType::Inet | FieldType::Cidr, Value::Inet(addr, bits, _)) => {
            encode_inet(ty, *addr, *bits)
        }
        (FieldType::Date, Value::Date(days)) => {
            let finite = (DATE_MIN..DATE_END).contains(days);
            if !finite && *days != i32::MAX && *days != i32::MIN {
                return Err(CodecError::OutOfRange {
                    ty,
                    value: i64::from(*days),
                });
            }
            Ok(days.to_be_bytes().to_vec())
        }
        (FieldType::Timestamp | FieldType::Timestamptz, Value::Timestamp(us)) => {
            let finite = (TIMESTAMP_MIN..TIMESTAMP_END).contains(us);
            if !finite && *us != i64::MAX && *us != i64::MIN {
                return Err(CodecError::OutOfRange { ty, value: *us });
            }
            Ok(us.to_be_bytes().to_vec())
        }
        (FieldType::TextArray, Value::TextArray(array)) => encode_array(array),
        _ => Err(mismatch()),
    }
}

/// Reads a field front to back; every read checks the length first.
struct Reader<'a> {
    ty: FieldType,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() < n {
            return Err(CodecError::Truncated {
                ty: self.ty,
                needed: n,
                available: self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    fn finish(&self) -> Result<(), CodecError> {
        match self.bytes.len() {
            0 => Ok(()),
            extra => Err(CodecError::TrailingBytes { ty: self.ty, extra }),
        }
    }
}

fn utf8(ty: FieldType, bytes: &[u8]) -> Result<String, CodecError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err(CodecError::InvalidUtf8 {
            ty,
            valid_up_to: e.valid_up_to(),
        }),
    }
}

fn json(ty: FieldType, bytes: &[u8]) -> Result<serde_json::Value, CodecError> {
    serde_json::from_slice(bytes).map_err(|source| CodecError::InvalidJson { ty, source })
}

fn text_bytes(ty: FieldType, s: &str) -> Result<&[u8], CodecError> {
    if s.contains('\0') {
        return Err(CodecError::Nul { ty });
    }
    Ok(s.as_bytes())
}

fn json_bytes(ty: FieldType, v: &serde_json::Value) -> Result<Vec<u8>, CodecError> {
    // `json` keeps `\u0000` as text, but `jsonb` cannot store it.
    if ty == FieldType::Jsonb && json_has_nul(v) {
        return Err(CodecError::Nul { ty });
    }
    serde_json::to_vec(v).map_err(|source| CodecError::InvalidJson { ty, source })
}

fn json_has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v))
        }
        _ => false,
    }
}

fn decode_inet(r: &mut Reader<'_>) -> Result<Value, CodecError> {
    let ty = r.ty;
    let family = r.u8()?;
    let bits = r.u8()?;
    let is_cidr = r.u8()? != 0;
    let length = r.u8()?;
    let (expected, max) = match family {
        PGSQL_AF_INET => (4, 32),
        PGSQL_AF_INET6 => (16, 128),
        _ => return Err(CodecError::InetFamily { ty, family }),
    };
    if length != expected {
        return Err(CodecError::InetLength {
            ty,
            length,
            expected,
        });
    }
    if bits > max {
        return Err(CodecError::InetBits { ty, bits, max });
    }
    let addr = if family == PGSQL_AF_INET {
        IpAddr::V4(Ipv4Addr::from(r.array::<4>()?))
    } else {
        IpAddr::V6(Ipv6Addr::from(r.array::<16>()?))
    };
    Ok(Value::Inet(addr, bits, is_cidr))
}

fn encode_inet(ty: FieldType, addr: IpAddr, bits: u8) -> Result<Vec<u8>, CodecError> {
    let (family, max, octets): (u8, u8, Vec<u8>) = match addr {
        IpAddr::V4(a) => (PGSQL_AF_INET, 32, a.octets().to_vec()),
        IpAddr::V6(a) => (PGSQL_AF_INET6, 128, a.octets().to_vec()),
    };
    if bits > max {
        return Err(CodecError::InetBits { ty, bits, max });
    }
    let is_cidr = ty == FieldType::Cidr;
    if is_cidr && has_host_bits(&octets, bits) {
        return Err(CodecError::CidrHostBits { addr, bits });
    }
    let mut out = vec![family, bits, u8::from(is_cidr), octets.len() as u8];
    out.extend(octets);
    Ok(out)
}

/// Whether any bit after the first `bits` bits is set.
fn has_host_bits(octets: &[u8], bits: u8) -> bool {
    octets.iter().enumerate().any(|(i, &byte)| {
        let network_bits = (usize::from(bits)).saturating_sub(i * 8).min(8);
        let host_mask = 0xffu8.checked_shr(network_bits as u32).unwrap_or(0);
        byte & host_mask != 0
    })
}

fn decode_array(r: &mut Reader<'_>) -> Result<TextArray, CodecError> {
    let ndim = r.i32()?;
    let flags = r.i32()?;
    let element_oid = u32::from_be_bytes(r.array()?);
    if flags != 0 && flags != 1 {
        return Err(CodecError::ArrayFlags(flags));
    }
    match ndim {
        0 => {
            return Ok(TextArray {
                elements: Vec::new(),
                element_oid,
                lower_bound: 1,
            });
        }
        1 => {}
        _ => return Err(CodecError::ArrayDimensions { ndim }),
    }
    let size = r.i32()?;
    let lower_bound = r.i32()?;
    let len = usize::try_from(size).map_err(|_| CodecError::ArraySize(size))?;
    // Every element takes at least its 4-byte length: a lying size cannot
    // make this allocate more than the field's bytes justify.
    let mut elements = Vec::with_capacity(len.min(r.bytes.len() / 4));
    for index in 0..len {
        let length = r.i32()?;
        let element = match length {
            -1 => None,
            n if n < 0 => return Err(CodecError::ArrayElementLength { index, length }),
            n => Some(utf8(r.ty, r.take(n as usize)?)?),
        };
        elements.push(element);
    }
    Ok(TextArray {
        elements,
        element_oid,
        lower_bound,
    })
}

fn encode_array(array: &TextArray) -> Result<Vec<u8>, CodecError> {
    let ty = FieldType::TextArray;
    let len = array.elements.len();
    let mut out = Vec::with_capacity(20 + len * 8);
    let has_null = array.elements.iter().any(Option::is_none);
    if len == 0 {
        out.extend(0i32.to_be_bytes());
        out.extend(0i32.to_be_bytes());
        out.extend(array.element_oid.to_be_bytes());
        return Ok(out);
    }
    let out_of_bounds = CodecError::ArrayBounds {
        len,
        lower_bound: array.lower_bound,
    };
    let size = i32::try_from(len).map_err(|_| CodecError::ArrayBounds {
        len,
        lower_bound: array.lower_bound,
    })?;
    if array.lower_bound.checked_add(size - 1).is_none() {
        return Err(out_of_bounds);
    }
    out.extend(1i32.to_be_bytes());
    out.extend(i32::from(has_null).to_be_bytes());
    out.extend(array.element_oid.to_be_bytes());
    out.extend(size.to_be_bytes());
    out.extend(array.lower_bound.to_be_bytes());
    for element in &array.elements {
        match element {
            None => out.extend((-1i32).to_be_bytes()),
            Some(s) => {
                let bytes = text_bytes(ty, s)?;
                let length = i32::try_from(bytes.len()).map_err(|_| CodecError::OutOfRange {
                    ty,
                    value: bytes.len() as i64,
                })?;
                out.extend(length.to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    Ok(out)
}

/// Cuts one line of a text-format COPY stream (without its line ending)
/// into fields: tab-separated, `\N` is NULL, backslash escapes decoded the
/// way the server's COPY FROM decodes them. An empty line is one empty field.
pub fn split_text_row(line: &[u8]) -> Result<Vec<Option<Vec<u8>>>, CodecError> {
    let mut fields = Vec::new();
    let mut start = 0;
    loop {
        let end = field_end(line, start)?;
        let raw = &line[start..end];
        fields.push(if raw == b"\\N" {
            None
        } else {
            Some(unescape(raw, start)?)
        });
        if end == line.len() {
            return Ok(fields);
        }
        start = end + 1;
    }
}

/// Where the field starting at `start` ends: the next unescaped tab, or the
/// end of the line.
fn field_end(line: &[u8], start: usize) -> Result<usize, CodecError> {
    let mut i = start;
    while i < line.len() {
        match line[i] {
            b'\t' => return Ok(i),
            b'\\' => i += 2,
            b'\n' | b'\r' => {
                return Err(CodecError::TextRow {
                    at: i,
                    problem: "unescaped line break inside a row",
                });
            }
            _ => i += 1,
        }
    }
    Ok(line.len())
}

fn unescape(raw: &[u8], offset: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = raw.get(i) else {
            return Err(CodecError::TextRow {
                at: offset + i - 1,
                problem: "backslash at the end of a row",
            });
        };
        i += 1;
        out.push(match e {
            b'0'..=b'7' => {
                let mut value = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                // Like the server: `\777` keeps the low byte.
                (value & 0xff) as u8
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d as u8;
                            i += 1;
                        }
                        None => break,
                    }
                }
                value
            }
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            other => other,
        });
    }
    Ok(out)
}

/// Puts fields back into one text-format COPY line, escaped the way the
/// server's COPY TO escapes them (so an untouched row comes out byte for byte
/// as it came in); no line ending — the caller adds it.
pub fn join_text_row(fields: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().flatten().map(|f| f.len() + 1).sum());
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        let Some(field) = field else {
            out.extend_from_slice(b"\\N");
            continue;
        };
        for &c in field {
            let escaped = match c {
                b'\\' => b'\\',
                0x08 => b'b',
                0x0c => b'f',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                0x0b => b'v',
                _ => {
                    out.push(c);
                    continue;
                }
            };
            out.push(b'\\');
            out.push(escaped);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn round_trip(ty: FieldType, value: &Value) -> Value {
        let bytes = encode(ty, value).unwrap();
        decode(ty, &bytes).unwrap()
    }

    fn text_no_nul() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z\\\\\t\n\r\u{8}\u{b}\u{c} é€😀]{0,20}",]
            .prop_map(|s| s.replace('\0', ""))
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            // Decimal mantissa and exponent: serde_json parses these exactly
            // (larger ones only to within a few ULP; see the module notes).
            (any::<i32>(), -12i32..=12)
                .prop_map(|(m, e)| { serde_json::from_str(&format!("{m}e{e}")).unwrap() }),
            text_no_nul().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec((text_no_nul(), inner), 0..6)
                    .prop_map(|pairs| serde_json::Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    fn inet(is_cidr: bool) -> impl Strategy<Value = Value> {
        let v4 = (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, b)| (IpAddr::from(a), b));
        let v6 = (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, b)| (IpAddr::from(a), b));
        prop_oneof![v4, v6].prop_map(move |(addr, bits)| {
            let addr = if is_cidr { network(addr, bits) } else { addr };
            Value::Inet(addr, bits, is_cidr)
        })
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

    fn text_array() -> impl Strategy<Value = TextArray> {
        (
            prop::collection::vec(prop::option::of(text_no_nul()), 0..8),
            prop_oneof![
                Just(TEXT_OID),
                Just(VARCHAR_OID),
                Just(BPCHAR_OID),
                any::<u32>()
            ],
            -1000i32..1000,
        )
            .prop_map(|(elements, element_oid, lower_bound)| TextArray {
                lower_bound: if elements.is_empty() { 1 } else { lower_bound },
                elements,
                element_oid,
            })
    }

    fn raw_field() -> impl Strategy<Value = Option<Vec<u8>>> {
        let tricky = prop::collection::vec(
            prop_oneof![
                Just(b'\\'),
                Just(b'\t'),
                Just(b'\n'),
                Just(b'\r'),
                Just(0x08u8),
                Just(0x0bu8),
                Just(0x0cu8),
                Just(b'N'),
                Just(b'x'),
                Just(b'0'),
                any::<u8>(),
            ],
            0..24,
        );
        let text = any::<String>().prop_map(String::into_bytes);
        prop::option::of(prop_oneof![tricky, text, Just(b"\\N".to_vec())])
    }

    proptest! {
        #[test]
        fn text_round_trips(s in text_no_nul()) {
            let value = Value::Text(s);
            prop_assert_eq!(round_trip(FieldType::Text, &value), value);
        }

        #[test]
        fn json_and_jsonb_round_trip(v in json_value()) {
            let value = Value::Json(v);
            prop_assert_eq!(round_trip(FieldType::Json, &value), value.clone());
            prop_assert_eq!(round_trip(FieldType::Jsonb, &value), value);
        }

        #[test]
        fn inet_round_trips(value in inet(false)) {
            prop_assert_eq!(round_trip(FieldType::Inet, &value), value);
        }

        #[test]
        fn cidr_round_trips(value in inet(true)) {
            prop_assert_eq!(round_trip(FieldType::Cidr, &value), value);
        }

        #[test]
        fn dates_round_trip(days in prop_oneof![DATE_MIN..DATE_END, Just(i32::MAX), Just(i32::MIN)]) {
            prop_assert_eq!(round_trip(FieldType::Date, &Value::Date(days)), Value::Date(days));
        }

        #[test]
        fn timestamps_round_trip(
            us in prop_oneof![TIMESTAMP_MIN..TIMESTAMP_END, Just(i64::MAX), Just(i64::MIN)],
        ) {
            let value = Value::Timestamp(us);
            prop_assert_eq!(round_trip(FieldType::Timestamp, &value), value.clone());
            prop_assert_eq!(round_trip(FieldType::Timestamptz, &value), value);
        }

        #[test]
        fn text_arrays_round_trip(array in text_array()) {
            let value = Value::TextArray(array);
            prop_assert_eq!(round_trip(FieldType::TextArray, &value), value);
        }

        #[test]
        fn text_rows_round_trip(fields in prop::collection::vec(raw_field(), 1..8)) {
            let line = join_text_row(&fields);
            prop_assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
            prop_assert_eq!(split_text_row(&line).unwrap(), fields);
        }

        /// Arbitrary bytes never panic any decoder.
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            for ty in ALL {
                let _ = decode(ty, &bytes);
            }
            let _ = split_text_row(&bytes);
        }
    }

    const ALL: [FieldType; 9] = [
        FieldType::Text,
        FieldType::Json,
        FieldType::Jsonb,
        FieldType::Inet,
        FieldType::Cidr,
        FieldType::Date,
        FieldType::Timestamp,
        FieldType::Timestamptz,
        FieldType::TextArray,
    ];

    #[test]
    fn type_names_from_format_type() {
        let cases = [
            ("text", Some(FieldType::Text)),
            ("character varying(20)", Some(FieldType::Text)),
            ("character varying", Some(FieldType::Text)),
            ("character(3)", Some(FieldType::Text)),
            ("public.citext", Some(FieldType::Text)),
            ("citext", Some(FieldType::Text)),
            ("json", Some(FieldType::Json)),
            ("jsonb", Some(FieldType::Jsonb)),
            ("inet", Some(FieldType::Inet)),
            ("cidr", Some(FieldType::Cidr)),
            ("date", Some(FieldType::Date)),
            ("timestamp without time zone", Some(FieldType::Timestamp)),
            ("timestamp(3) without time zone", Some(FieldType::Timestamp)),
            ("timestamp with time zone", Some(FieldType::Timestamptz)),
            ("timestamp(0) with time zone", Some(FieldType::Timestamptz)),
            ("text[]", Some(FieldType::TextArray)),
            ("character varying[]", Some(FieldType::TextArray)),
            ("character varying(40)[]", Some(FieldType::TextArray)),
            ("public.citext[]", Some(FieldType::TextArray)),
            ("integer", None),
            ("integer[]", None),
            ("jsonb[]", None),
            ("\"char\"", None),
            ("uuid", None),
            ("bytea", None),
            ("time without time zone", None),
            ("public.mytext", None),
        ];
        for (name, expected) in cases {
            assert_eq!(FieldType::from_pg(name), expected, "{name}");
        }
    }

    #[test]
    fn json_keeps_key_order() {
        let bytes = br#"{"z": 1, "a": {"y": [1, {"b": 2, "a": 3}], "x": null}}"#;
        let Value::Json(v) = decode(FieldType::Json, bytes).unwrap() else {
            panic!("not json");
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"z":1,"a":{"y":[1,{"b":2,"a":3}],"x":null}}"#
        );
    }

    #[test]
    fn malformed_fields_are_errors() {
        let cases: [(FieldType, &[u8], &str); 12] = [
            (FieldType::Text, b"\xff", "text field is not valid UTF-8 (after byte 0)"),
            (FieldType::Jsonb, b"\x02{}", "jsonb field has format version 2; only version 1 is known"),
            (FieldType::Jsonb, b"", "jsonb field is truncated: needs 1 more bytes, has 0"),
            (FieldType::Json, b"{", "json field is not valid JSON: EOF while parsing an object at line 1 column 1"),
            (FieldType::Inet, b"\x05\x20\x00\x04\x01\x02\x03\x04", "inet field has unknown address family 5"),
            (FieldType::Inet, b"\x02\x21\x00\x04\x01\x02\x03\x04", "inet prefix /33 is longer than the address (32 bits)"),
            (FieldType::Inet, b"\x03\x20\x00\x04\x01\x02\x03\x04", "inet field has an address of 4 bytes; its family needs 16"),
            (FieldType::Date, b"\x00\x00\x00\x00\x00", "date field has 1 unexpected bytes at its end"),
            (FieldType::Timestamp, b"\x00\x00", "timestamp field is truncated: needs 8 more bytes, has 2"),
            (
                FieldType::TextArray,
                b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x19",
                "array has 2 dimensions; only one-dimensional arrays are supported",
            ),
            (
                FieldType::TextArray,
                b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x19\x7f\xff\xff\xff\x00\x00\x00\x01",
                "text[] field is truncated: needs 4 more bytes, has 0",
            ),
            (
                FieldType::TextArray,
                b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x19\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xfe",
                "array element 0 has invalid length -2",
            ),
        ];
        for (ty, bytes, message) in cases {
            assert_eq!(decode(ty, bytes).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn values_that_do_not_fit_are_errors() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let cases = [
            (
                FieldType::Inet,
                Value::Text("x".into()),
                "a text value cannot be written to a inet column",
            ),
            (
                FieldType::Text,
                Value::Text("a\0b".into()),
                "text value contains a NUL character, which PostgreSQL text cannot hold",
            ),
            (
                FieldType::Jsonb,
                Value::Json(json!({"a": "\u{0}"})),
                "jsonb value contains a NUL character, which PostgreSQL text cannot hold",
            ),
            (
                FieldType::Cidr,
                Value::Inet(v4, 24, true),
                "cidr value 10.1.2.3/24 has bits set to the right of its mask",
            ),
            (
                FieldType::Inet,
                Value::Inet(v4, 40, false),
                "inet prefix /40 is longer than the address (32 bits)",
            ),
            (
                FieldType::Date,
                Value::Date(DATE_END),
                "date value 2145031949 is out of range",
            ),
            (
                FieldType::Timestamp,
                Value::Timestamp(TIMESTAMP_MIN - 1),
                "timestamp value -211813488000000001 is out of range",
            ),
            (
                FieldType::TextArray,
                Value::TextArray(TextArray {
                    elements: vec![None, None],
                    element_oid: TEXT_OID,
                    lower_bound: i32::MAX,
                }),
                "array of 2 elements from index 2147483647 exceeds the index range",
            ),
        ];
        for (ty, value, message) in cases {
            assert_eq!(encode(ty, &value).unwrap_err().to_string(), message);
        }
        // json (not jsonb) keeps `\u0000`.
        assert!(encode(FieldType::Json, &Value::Json(json!("\u{0}"))).is_ok());
    }

    #[test]
    fn inet_writes_the_flag_of_its_column_type() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(
            encode(FieldType::Inet, &Value::Inet(v4, 16, true)).unwrap(),
            b"\x02\x10\x00\x04\x0a\x01\x00\x00"
        );
        assert_eq!(
            encode(FieldType::Cidr, &Value::Inet(v4, 16, false)).unwrap(),
            b"\x02\x10\x01\x04\x0a\x01\x00\x00"
        );
    }

    #[test]
    fn text_rows_decode_every_escape() {
        let line = b"a\\\\b\\tc\\nd\\re\\bf\\fg\\vh\t\\N\t\t\\101\\x41\\x4g\\xg\\q\\N1\\0\\777\t\xc3\xa9\xf0\x9f\x98\x80";
        let fields = split_text_row(line).unwrap();
        assert_eq!(
            fields,
            vec![
                Some(b"a\\b\tc\nd\re\x08f\x0cg\x0bh".to_vec()),
                None,
                Some(Vec::new()),
                Some(b"AA\x04gxgqN1\x00\xff".to_vec()),
                Some("é😀".as_bytes().to_vec()),
            ]
        );
        assert_eq!(split_text_row(b"").unwrap(), vec![Some(Vec::new())]);
        assert_eq!(
            split_text_row(b"ab\\").unwrap_err().to_string(),
            "text COPY row, byte 2: backslash at the end of a row"
        );
        assert_eq!(
            split_text_row(b"a\tb\nc").unwrap_err().to_string(),
            "text COPY row, byte 3: unescaped line break inside a row"
        );
    }

    #[test]
    fn text_rows_encode_like_the_server() {
        let fields = vec![
            Some(b"tab\there\nnl\\bs\x08\x0b\x0c\r\x01".to_vec()),
            None,
            Some(b"\\N".to_vec()),
        ];
        assert_eq!(
            join_text_row(&fields),
            b"tab\\there\\nnl\\\\bs\\b\\v\\f\\r\x01\t\\N\t\\\\N".to_vec()
        );
    }
}
