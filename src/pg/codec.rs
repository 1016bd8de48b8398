//! The COPY row codec: one field of a ruled column, converted between
//! PostgreSQL's wire representation and a Rust [`Value`] by column type, and
//! back. Binary COPY fields use the types' `*_send`/`*_recv` formats
//! ([`decode`], [`encode`]); tables that travel as text COPY are cut into
//! fields by [`split_text_row`], whose fields [`decode_text`] reads in the
//! types' output formats, and [`encode_text`] and [`join_text_row`] put them
//! back. The text forms depend on session settings: see
//! [`TEXT_SESSION_SETTINGS`].
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
    /// An array of any of the text types, of any number of dimensions.
    TextArray,
    /// `bytea`, read as UTF-8 text (the only rule that transforms it is
    /// `redact`); a value that is not UTF-8 is a [`CodecError::NotUtf8Bytea`].
    Bytea,
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
            "bytea" => FieldType::Bytea,
            _ => return None,
        })
    }

    /// Whether values of this type are or hold text (what URL rewrites and
    /// text strategies reach).
    pub fn holds_text(self) -> bool {
        matches!(
            self,
            FieldType::Text | FieldType::Json | FieldType::Jsonb | FieldType::TextArray
        )
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
            FieldType::Bytea => "bytea",
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
    /// [`encode`] and [`encode_text`] write the flag of the column's type,
    /// not this one.
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

/// An array of text, with what the server needs back: the element type's
/// OID (checked by the server on input; `citext`'s varies per database),
/// the lower bound of its index and, for a multi-dimensional array, the
/// shape of the dimensions after the first. Rules see the elements only,
/// in storage order (`{{a,b},{c,d}}` is a, b, c, d), so they apply to a
/// matrix as to a list and the shape comes back as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextArray {
    pub elements: Vec<Option<String>>,
    pub element_oid: u32,
    /// Index of the first element of the first dimension, usually 1. An
    /// empty array has none and is written without it.
    pub lower_bound: i32,
    /// The second and later dimensions; empty for a one-dimensional array.
    /// The first dimension's length is what the elements leave over.
    pub inner: Vec<Dim>,
}

/// One dimension of an array: its length and the index of its first slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dim {
    pub len: i32,
    pub lower: i32,
}

/// `MAXDIM` of the server: no array has more dimensions.
const MAX_DIMENSIONS: i32 = 6;

impl TextArray {
    /// A one-dimensional `text[]` value indexed from 1.
    pub fn of_text(elements: Vec<Option<String>>) -> TextArray {
        TextArray {
            elements,
            element_oid: TEXT_OID,
            lower_bound: 1,
            inner: Vec::new(),
        }
    }

    /// Every dimension, the first included, checked to hold exactly the
    /// elements and to fit the index range; empty for an empty array.
    fn dims(&self) -> Result<Vec<Dim>, CodecError> {
        let len = self.elements.len();
        if len == 0 {
            return Ok(Vec::new());
        }
        let out_of_bounds = || CodecError::ArrayBounds {
            len,
            lower_bound: self.lower_bound,
        };
        let per_row = self
            .inner
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(usize::try_from(d.len).ok()?))
            .filter(|&n| n > 0 && len.is_multiple_of(n))
            .ok_or_else(out_of_bounds)?;
        let first = Dim {
            len: i32::try_from(len / per_row).map_err(|_| out_of_bounds())?,
            lower: self.lower_bound,
        };
        let dims: Vec<Dim> = std::iter::once(first)
            .chain(self.inner.iter().copied())
            .collect();
        // The server's `ArrayCheckBounds` wants one past the last index of
        // each dimension to fit an `int4`, so a one-element array cannot
        // start at `i32::MAX` although its last index would.
        if dims.iter().any(|d| d.lower.checked_add(d.len).is_none()) {
            return Err(out_of_bounds());
        }
        Ok(dims)
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
    /// A bytea value a rule reads as text holds bytes that are not UTF-8
    /// (an image, a compressed blob): never copied as it is.
    #[error(
        "bytea value is not UTF-8 text (after byte {valid_up_to}), so `redact` cannot read it; \
         rule the column `null` or `set` (or truncate the table) instead"
    )]
    NotUtf8Bytea { valid_up_to: usize },
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
    #[error("array has {ndim} dimensions; PostgreSQL allows 1 to 6")]
    ArrayDimensions { ndim: i32 },
    #[error("multidimensional array has sub-arrays of different lengths")]
    ArrayShape,
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
    /// The field is not in the form the server prints for its type. The
    /// field itself stays out of the message: it may be personal data.
    #[error("{ty} field is not in PostgreSQL's text output form: {problem}")]
    TextSyntax {
        ty: FieldType,
        problem: &'static str,
    },
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
        FieldType::Bytea => Value::Text(bytea_text(r.rest())?),
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
            check_date(ty, *days)?;
            Ok(days.to_be_bytes().to_vec())
        }
        (FieldType::Timestamp | FieldType::Timestamptz, Value::Timestamp(us)) => {
            check_timestamp(ty, *us)?;
            Ok(us.to_be_bytes().to_vec())
        }
        (FieldType::TextArray, Value::TextArray(array)) => encode_array(array),
        (FieldType::Bytea, Value::Text(s)) => Ok(s.as_bytes().to_vec()),
        _ => Err(mismatch()),
    }
}

/// A date the server can store: in its range, or one of the infinities.
fn check_date(ty: FieldType, days: i32) -> Result<(), CodecError> {
    let finite = (DATE_MIN..DATE_END).contains(&days);
    if !finite && days != i32::MAX && days != i32::MIN {
        return Err(CodecError::OutOfRange {
            ty,
            value: i64::from(days),
        });
    }
    Ok(())
}

/// A timestamp the server can store: in its range, or one of the infinities.
fn check_timestamp(ty: FieldType, us: i64) -> Result<(), CodecError> {
    let finite = (TIMESTAMP_MIN..TIMESTAMP_END).contains(&us);
    if !finite && us != i64::MAX && us != i64::MIN {
        return Err(CodecError::OutOfRange { ty, value: us });
    }
    Ok(())
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
    str_of(ty, bytes).map(str::to_owned)
}

fn str_of(ty: FieldType, bytes: &[u8]) -> Result<&str, CodecError> {
    std::str::from_utf8(bytes).map_err(|e| CodecError::InvalidUtf8 {
        ty,
        valid_up_to: e.valid_up_to(),
    })
}

/// A bytea value's bytes as the text `redact` reads.
fn bytea_text(bytes: &[u8]) -> Result<String, CodecError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| CodecError::NotUtf8Bytea {
        valid_up_to: e.utf8_error().valid_up_to(),
    })
}

/// bytea's hex text form, `\x68656c6c6f` (the server prints it so under
/// `bytea_output = 'hex'`, one of [`TEXT_SESSION_SETTINGS`]).
fn decode_bytea_text(text: &str) -> Result<Value, CodecError> {
    let ty = FieldType::Bytea;
    let hex = text
        .strip_prefix("\\x")
        .ok_or(text_syntax(ty, "expected `\\x` and hex digits"))?;
    if hex.len() % 2 != 0 {
        return Err(text_syntax(ty, "odd number of hex digits"));
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| text_syntax(ty, "expected hex digits"))?;
    bytea_text(&bytes).map(Value::Text)
}

/// `s`'s UTF-8 bytes in bytea's hex text form.
fn bytea_hex(s: &str) -> Vec<u8> {
    let mut out = String::with_capacity(2 + 2 * s.len());
    out.push_str("\\x");
    for byte in s.as_bytes() {
        out.push_str(&format!("{byte:02x}"));
    }
    out.into_bytes()
}

fn json(ty: FieldType, bytes: &[u8]) -> Result<serde_json::Value, CodecError> {
    parse_json(bytes).map_err(|source| CodecError::InvalidJson { ty, source })
}

/// How deeply JSON nests before it is parsed on a stack of its own: the
/// limit `serde_json` keeps by default, against running out of stack.
pub const JSON_DEPTH: usize = 128;

/// The deepest JSON parsed at all, on a stack of about 800 MiB of address
/// space: far past what the server's own parser takes (about 10,000
/// levels at its default stack), so only text that never was JSON to the
/// server (a `text` column under a `json:` rule) reaches it, and is refused.
pub const JSON_DEPTH_MAX: usize = 200_000;

thread_local! {
    /// Set inside [`deep`]: JSON of any depth is parsed, on a stack sized
    /// for it.
    static DEEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// JSON text parsed into a value, nested up to [`JSON_DEPTH`] deep, or
/// any depth inside [`deep`].
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    if !DEEP.get() {
        return serde_json::from_slice(bytes);
    }
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let value = serde_json::Value::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The deepest nesting of arrays and objects in JSON text (0 for a
/// scalar); strings are skipped, so brackets inside them do not count.
/// Cheap, but only worth running once a value failed at [`JSON_DEPTH`].
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Runs `f` where JSON of `depth` levels can be parsed, walked, written
/// and dropped: on a stack grown for that depth (every one of those is
/// recursive), with [`parse_json`] taking any depth. Whatever `f` builds
/// from such JSON must be dropped inside it.
pub fn deep<R>(depth: usize, f: impl FnOnce() -> R) -> R {
    // Generous per level (unoptimised builds use several times the stack
    // of release ones); only address space until a level is reached.
    const PER_LEVEL: usize = 4 << 10;
    let stack = (depth.saturating_add(256)).saturating_mul(PER_LEVEL);
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEEP.set(self.0);
        }
    }
    let _restore = Restore(DEEP.replace(true));
    stacker::grow(stack, f)
}

fn text_bytes(ty: FieldType, s: &str) -> Result<&[u8], CodecError> {
    if s.contains('\0') {
        return Err(CodecError::Nul { ty });
    }
    Ok(s.as_bytes())
}

fn json_bytes(ty: FieldType, v: &serde_json::Value) -> Result<Vec<u8>, CodecError> {
    check_json(ty, v)?;
    serde_json::to_vec(v).map_err(|source| CodecError::InvalidJson { ty, source })
}

/// Whether a column of type `ty` can store `v`: `json` keeps `\u0000` as
/// text, but `jsonb` cannot store it.
pub fn check_json(ty: FieldType, v: &serde_json::Value) -> Result<(), CodecError> {
    match ty == FieldType::Jsonb && json_has_nul(v) {
        true => Err(CodecError::Nul { ty }),
        false => Ok(()),
    }
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
    check_inet(ty, addr, bits)?;
    let (family, octets): (u8, Vec<u8>) = match addr {
        IpAddr::V4(a) => (PGSQL_AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (PGSQL_AF_INET6, a.octets().to_vec()),
    };
    let is_cidr = ty == FieldType::Cidr;
    let mut out = vec![family, bits, u8::from(is_cidr), octets.len() as u8];
    out.extend(octets);
    Ok(out)
}

/// An address and prefix a column of type `ty` can hold: the prefix no
/// longer than the address, and for `cidr` no bits set after it.
fn check_inet(ty: FieldType, addr: IpAddr, bits: u8) -> Result<(), CodecError> {
    let (max, octets) = match addr {
        IpAddr::V4(a) => (32, a.octets().to_vec()),
        IpAddr::V6(a) => (128, a.octets().to_vec()),
    };
    if bits > max {
        return Err(CodecError::InetBits { ty, bits, max });
    }
    if ty == FieldType::Cidr && has_host_bits(&octets, bits) {
        return Err(CodecError::CidrHostBits { addr, bits });
    }
    Ok(())
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
    if ndim == 0 {
        return Ok(TextArray {
            elements: Vec::new(),
            element_oid,
            lower_bound: 1,
            inner: Vec::new(),
        });
    }
    if !(1..=MAX_DIMENSIONS).contains(&ndim) {
        return Err(CodecError::ArrayDimensions { ndim });
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    let mut len = 1usize;
    for _ in 0..ndim {
        let size = r.i32()?;
        let lower = r.i32()?;
        let size_ = usize::try_from(size).map_err(|_| CodecError::ArraySize(size))?;
        len = len.checked_mul(size_).ok_or(CodecError::ArraySize(size))?;
        dims.push(Dim { len: size, lower });
    }
    let lower_bound = dims[0].lower;
    let inner = dims.split_off(1);
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
        inner,
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
    let dims = array.dims()?;
    out.extend((dims.len() as i32).to_be_bytes());
    out.extend(i32::from(has_null).to_be_bytes());
    out.extend(array.element_oid.to_be_bytes());
    for dim in &dims {
        out.extend(dim.len.to_be_bytes());
        out.extend(dim.lower.to_be_bytes());
    }
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

/// What [`decode_text`] and [`encode_text`] assume of every session whose
/// text COPY they read or write, as SQL to run on it first. Dates and
/// timestamps print differently under other `DateStyle`s and time zones, and
/// the parsers here read only the ISO forms in UTC; bytea is read only in
/// its hex form (`bytea_output = 'escape'` would print another). The interval style and
/// float digits touch none of the codec's types, but they decide how the
/// other columns of a text COPY travel (`extra_float_digits = 3` makes
/// floats exact), so source and target must agree on them as well.
pub const TEXT_SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'";

/// Microseconds in a day.
pub(crate) const USECS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01, where [`days_from_civil`] counts from, to
/// 2000-01-01, where PostgreSQL does.
pub(crate) const UNIX_TO_PG_EPOCH_DAYS: i64 = 10_957;
/// The widest UTC offset the server accepts or prints, in seconds (15:59:59).
const MAX_OFFSET_SECS: i64 = 16 * 3600 - 1;

/// Decodes one non-NULL field from its text COPY representation: a field as
/// [`split_text_row`] returns it, escapes already undone.
///
/// Precondition: the session that wrote it ran [`TEXT_SESSION_SETTINGS`]
/// and uses `client_encoding` UTF8 (as `tokio-postgres` does). Only the
/// forms the server prints under those settings are read, strictly (a
/// timestamptz without its `+00`, a date in another style, a cidr without
/// its prefix are errors), so a session set up differently fails loudly
/// instead of shifting dates. Syntax errors never quote the field: it may be
/// personal data.
///
/// Arrays come back with [`TEXT_OID`] as their element type: the text form
/// does not name one.
pub fn decode_text(ty: FieldType, bytes: &[u8]) -> Result<Value, CodecError> {
    let text = str_of(ty, bytes)?;
    if text.contains('\0') {
        return Err(CodecError::Nul { ty });
    }
    match ty {
        FieldType::Text => Ok(Value::Text(text.to_owned())),
        FieldType::Json | FieldType::Jsonb => Ok(Value::Json(json(ty, bytes)?)),
        FieldType::Inet | FieldType::Cidr => decode_inet_text(ty, text),
        FieldType::Date => decode_date_text(text).map(Value::Date),
        FieldType::Timestamp | FieldType::Timestamptz => {
            decode_timestamp_text(ty, text).map(Value::Timestamp)
        }
        FieldType::TextArray => decode_array_text(text).map(Value::TextArray),
        FieldType::Bytea => decode_bytea_text(text),
    }
}

/// Encodes a value for a column of type `ty` in its text COPY
/// representation (to be escaped by [`join_text_row`]), exactly as the
/// server prints it under [`TEXT_SESSION_SETTINGS`]: a value decoded by
/// [`decode_text`] and left alone comes out as the bytes it came from
/// (JSON aside, which is re-serialized as [`encode`] does). An error when
/// the value does not fit the type.
///
/// Precondition: the session that reads it ran [`TEXT_SESSION_SETTINGS`]
/// and uses `client_encoding` UTF8.
pub fn encode_text(ty: FieldType, value: &Value) -> Result<Vec<u8>, CodecError> {
    match (ty, value) {
        (FieldType::Text, Value::Text(s)) => Ok(text_bytes(ty, s)?.to_vec()),
        (FieldType::Json | FieldType::Jsonb, Value::Json(v)) => json_bytes(ty, v),
        (FieldType::Inet | FieldType::Cidr, Value::Inet(addr, bits, _)) => {
            Ok(inet_text(ty, *addr, *bits)?.into_bytes())
        }
        (FieldType::Date, Value::Date(days)) => {
            check_date(ty, *days)?;
            Ok(date_text(*days).into_bytes())
        }
        (FieldType::Timestamp | FieldType::Timestamptz, Value::Timestamp(us)) => {
            check_timestamp(ty, *us)?;
            Ok(timestamp_text(*us, ty == FieldType::Timestamptz).into_bytes())
        }
        (FieldType::TextArray, Value::TextArray(array)) => encode_array_text(array),
        (FieldType::Bytea, Value::Text(s)) => Ok(bytea_hex(s)),
        _ => Err(CodecError::Mismatch {
            ty,
            value: value.kind(),
        }),
    }
}

fn text_syntax(ty: FieldType, problem: &'static str) -> CodecError {
    CodecError::TextSyntax { ty, problem }
}

/// `192.0.2.1`, `192.0.2.0/24`, `2001:db8::1/64`: the prefix is optional
/// for inet (absent means a host address) and always there for cidr.
fn decode_inet_text(ty: FieldType, text: &str) -> Result<Value, CodecError> {
    let (addr_text, bits_text) = match text.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (text, None),
    };
    let addr = if addr_text.contains(':') {
        addr_text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        addr_text.parse::<Ipv4Addr>().map(IpAddr::V4)
    }
    .map_err(|_| text_syntax(ty, "expected an IPv4 or IPv6 address"))?;
    let bits = match bits_text {
        // Without a prefix the server's cidr input guesses one from the
        // address class; the server never prints it so, so don't guess.
        None if ty == FieldType::Cidr => {
            return Err(text_syntax(ty, "a cidr value needs its /prefix"));
        }
        None if addr.is_ipv4() => 32,
        None => 128,
        Some(bits) => {
            if bits.is_empty() || !bits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(text_syntax(ty, "expected a decimal prefix length"));
            }
            bits.parse::<u8>()
                .map_err(|_| text_syntax(ty, "prefix length beyond 255"))?
        }
    };
    check_inet(ty, addr, bits)?;
    Ok(Value::Inet(addr, bits, ty == FieldType::Cidr))
}

/// `inet_out`/`cidr_out`: all four octets or the server's own IPv6 form,
/// then `/bits` unless an inet covers the whole address.
fn inet_text(ty: FieldType, addr: IpAddr, bits: u8) -> Result<String, CodecError> {
    check_inet(ty, addr, bits)?;
    let (mut out, full) = match addr {
        IpAddr::V4(a) => (a.to_string(), 32),
        IpAddr::V6(a) => (ipv6_text(a), 128),
    };
    if bits != full || ty == FieldType::Cidr {
        out.push('/');
        out.push_str(&bits.to_string());
    }
    Ok(out)
}

/// An IPv6 address as PostgreSQL's `inet_net_ntop_ipv6` prints it. Rust's
/// `Display` differs: the server writes `::1.2.3.4` and `::ffff:1.2.3.4`
/// with a dotted tail, Rust `::102:304`; so this is a port, not a call.
fn ipv6_text(addr: Ipv6Addr) -> String {
    let words = addr.segments();
    // The first longest run of zero words, if at least two long, becomes `::`.
    let (mut best_base, mut best_len) = (0, 0);
    let mut i = 0;
    while i < 8 {
        let start = i;
        while i < 8 && words[i] == 0 {
            i += 1;
        }
        if i - start > best_len {
            (best_base, best_len) = (start, i - start);
        }
        i += 1;
    }
    let run = (best_len >= 2).then_some(best_base..best_base + best_len);
    let mut out = String::with_capacity(40);
    for (i, word) in words.iter().enumerate() {
        if let Some(run) = &run
            && run.contains(&i)
        {
            if i == run.start {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        // An IPv4-compatible or IPv4-mapped address ends in dotted decimal.
        if i == 6
            && best_base == 0
            && (best_len == 6
                || (best_len == 7 && words[7] != 1)
                || (best_len == 5 && words[5] == 0xffff))
        {
            let [.., a, b, c, d] = addr.octets();
            out.push_str(&Ipv4Addr::new(a, b, c, d).to_string());
            break;
        }
        out.push_str(&format!("{word:x}"));
    }
    if run.is_some_and(|run| run.end == 8) {
        out.push(':');
    }
    out
}

/// Days from 1970-01-01 to a day of the proleptic Gregorian calendar
/// (astronomical years: 1 BC is year 0), by Howard Hinnant's
/// `days_from_civil`. Hand-rolled because chrono stops at ±262143 years and
/// dates go on to 5874897.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (astronomical year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Appends `YYYY-MM-DD` (at least four year digits, years before 1 counted
/// BC) for days since 2000-01-01, and says whether the caller owes a ` BC`:
/// the server puts it after the time and offset.
fn push_ymd(out: &mut String, days: i64) -> bool {
    let (year, month, day) = civil_from_days(days + UNIX_TO_PG_EPOCH_DAYS);
    let bc = year <= 0;
    let year = if bc { 1 - year } else { year };
    out.push_str(&format!("{year:04}-{month:02}-{day:02}"));
    bc
}

fn date_text(days: i32) -> String {
    match days {
        i32::MAX => "infinity".to_owned(),
        i32::MIN => "-infinity".to_owned(),
        _ => {
            let mut out = String::with_capacity(16);
            if push_ymd(&mut out, i64::from(days)) {
                out.push_str(" BC");
            }
            out
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS`, then the fraction without trailing zeros, `+00`
/// for a timestamptz (the session is in UTC), ` BC` last.
fn timestamp_text(us: i64, with_zone: bool) -> String {
    match us {
        i64::MAX => return "infinity".to_owned(),
        i64::MIN => return "-infinity".to_owned(),
        _ => {}
    }
    let mut out = String::with_capacity(36);
    let bc = push_ymd(&mut out, us.div_euclid(USECS_PER_DAY));
    let time = us.rem_euclid(USECS_PER_DAY);
    let (secs, fraction) = (time / 1_000_000, time % 1_000_000);
    out.push_str(&format!(
        " {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ));
    if fraction != 0 {
        out.push('.');
        out.push_str(format!("{fraction:06}").trim_end_matches('0'));
    }
    if with_zone {
        out.push_str("+00");
    }
    if bc {
        out.push_str(" BC");
    }
    out
}

/// Reads the text of a date or timestamp left to right.
struct TextCursor<'a> {
    ty: FieldType,
    rest: &'a [u8],
}

impl TextCursor<'_> {
    fn error(&self, problem: &'static str) -> CodecError {
        text_syntax(self.ty, problem)
    }

    /// A run of `min..=max` decimal digits, and how many there were.
    fn digits(
        &mut self,
        min: usize,
        max: usize,
        problem: &'static str,
    ) -> Result<(i64, usize), CodecError> {
        let n = self.rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if n < min || n > max {
            return Err(self.error(problem));
        }
        let value = self.rest[..n]
            .iter()
            .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'));
        self.rest = &self.rest[n..];
        Ok((value, n))
    }

    fn number(&mut self, width: usize, problem: &'static str) -> Result<i64, CodecError> {
        Ok(self.digits(width, width, problem)?.0)
    }

    fn eat(&mut self, c: u8) -> bool {
        let found = self.rest.first() == Some(&c);
        if found {
            self.rest = &self.rest[1..];
        }
        found
    }

    fn expect(&mut self, c: u8, problem: &'static str) -> Result<(), CodecError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(problem))
        }
    }

    fn end(&self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error("unexpected text after the value"))
        }
    }

    /// `YYYY-MM-DD` as days since 2000-01-01, the year counted BC if `bc`.
    /// Up to nine year digits: enough to reach past every valid date (the
    /// caller reports those as out of range) without overflowing.
    fn ymd(&mut self, bc: bool) -> Result<i64, CodecError> {
        let (year, _) = self.digits(4, 9, "expected a year of four or more digits")?;
        self.expect(b'-', "expected '-' after the year")?;
        let month = self.number(2, "expected a two-digit month")?;
        self.expect(b'-', "expected '-' after the month")?;
        let day = self.number(2, "expected a two-digit day")?;
        if year == 0 {
            return Err(self.error("there is no year 0"));
        }
        let year = if bc { 1 - year } else { year };
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(self.error("month or day out of range"));
        }
        let (month, day) = (month as u32, day as u32);
        let days = days_from_civil(year, month, day);
        // 2023-02-30 would count on into March.
        if civil_from_days(days) != (year, month, day) {
            return Err(self.error("day out of range for its month"));
        }
        Ok(days - UNIX_TO_PG_EPOCH_DAYS)
    }

    /// `±HH[:MM[:SS]]`, in seconds east of UTC.
    fn utc_offset(&mut self) -> Result<i64, CodecError> {
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return Err(self.error("expected the UTC offset of a timestamptz"));
        };
        let problem = "expected a UTC offset of the form ±HH[:MM[:SS]]";
        let hours = self.number(2, problem)?;
        let mut minutes = 0;
        let mut seconds = 0;
        if self.eat(b':') {
            minutes = self.number(2, problem)?;
            if self.eat(b':') {
                seconds = self.number(2, problem)?;
            }
        }
        let offset = hours * 3600 + minutes * 60 + seconds;
        if minutes > 59 || seconds > 59 || offset > MAX_OFFSET_SECS {
            return Err(self.error("UTC offset out of range"));
        }
        Ok(sign * offset)
    }
}

/// The text without its ` BC` suffix, and whether it had one.
fn strip_bc(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (text, false),
    }
}

fn decode_date_text(text: &str) -> Result<i32, CodecError> {
    let ty = FieldType::Date;
    match text {
        "infinity" => return Ok(i32::MAX),
        "-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let (body, bc) = strip_bc(text);
    let mut cursor = TextCursor {
        ty,
        rest: body.as_bytes(),
    };
    let days = cursor.ymd(bc)?;
    cursor.end()?;
    i32::try_from(days)
        .ok()
        .filter(|d| (DATE_MIN..DATE_END).contains(d))
        .ok_or(CodecError::OutOfRange { ty, value: days })
}

fn decode_timestamp_text(ty: FieldType, text: &str) -> Result<i64, CodecError> {
    match text {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let (body, bc) = strip_bc(text);
    let mut cursor = TextCursor {
        ty,
        rest: body.as_bytes(),
    };
    let days = cursor.ymd(bc)?;
    let problem = "expected a time of the form HH:MM:SS[.ffffff]";
    cursor.expect(b' ', problem)?;
    let hours = cursor.number(2, problem)?;
    cursor.expect(b':', problem)?;
    let minutes = cursor.number(2, problem)?;
    cursor.expect(b':', problem)?;
    let seconds = cursor.number(2, problem)?;
    if hours > 23 || minutes > 59 || seconds > 59 {
        return Err(cursor.error("time of day out of range"));
    }
    let mut micros = 0;
    if cursor.eat(b'.') {
        let (fraction, n) = cursor.digits(1, 6, "expected one to six fractional digits")?;
        micros = fraction * 10i64.pow(6 - n as u32);
    }
    // A timestamp without time zone never has an offset; a timestamptz
    // always does, so one printed under another TimeZone still decodes right.
    let offset = if ty == FieldType::Timestamptz {
        cursor.utc_offset()?
    } else {
        0
    };
    cursor.end()?;
    let local_secs = hours * 3600 + minutes * 60 + seconds;
    let us = i128::from(days) * i128::from(USECS_PER_DAY)
        + i128::from((local_secs - offset) * 1_000_000 + micros);
    let clamped = us.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    if us != i128::from(clamped) || !(TIMESTAMP_MIN..TIMESTAMP_END).contains(&clamped) {
        return Err(CodecError::OutOfRange { ty, value: clamped });
    }
    Ok(clamped)
}

/// `array_isspace`: what `array_in` skips around elements, so what
/// `array_out` quotes.
fn is_array_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn skip_array_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).copied().is_some_and(is_array_space) {
        i += 1;
    }
    i
}

/// Whether `array_out` quotes an element: when it is empty, would read back
/// as NULL, or holds a character that means something in an array literal
/// (braces, the `,` delimiter, quote, backslash) or would be trimmed.
fn element_needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.bytes()
            .any(|c| matches!(c, b'{' | b'}' | b',' | b'"' | b'\\') || is_array_space(c))
}

/// `array_out` for an array of text: `[lower:upper]…=` only when a lower
/// bound is not 1, a brace pair per sub-array, elements quoted only when
/// they must be.
fn encode_array_text(array: &TextArray) -> Result<Vec<u8>, CodecError> {
    let ty = FieldType::TextArray;
    if array.elements.is_empty() {
        return Ok(b"{}".to_vec());
    }
    let dims = array.dims()?;
    let mut out = Vec::with_capacity(2 + array.elements.len() * 8);
    if dims.iter().any(|d| d.lower != 1) {
        for d in &dims {
            let upper = d.lower + (d.len - 1);
            out.extend_from_slice(format!("[{}:{upper}]", d.lower).as_bytes());
        }
        out.push(b'=');
    }
    // How many elements each level's sub-array holds: after the last
    // element of one, its braces close (and the next ones open).
    let spans: Vec<usize> = (0..dims.len())
        .map(|level| dims[level..].iter().map(|d| d.len as usize).product())
        .collect();
    out.resize(out.len() + dims.len(), b'{');
    for (i, element) in array.elements.iter().enumerate() {
        if i > 0 {
            let closed = spans.iter().filter(|&&span| i.is_multiple_of(span)).count();
            out.resize(out.len() + closed, b'}');
            out.push(b',');
            out.resize(out.len() + closed, b'{');
        }
        let Some(s) = element else {
            out.extend_from_slice(b"NULL");
            continue;
        };
        let bytes = text_bytes(ty, s)?;
        if !element_needs_quotes(s) {
            out.extend_from_slice(bytes);
            continue;
        }
        out.push(b'"');
        for &c in bytes {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    }
    out.resize(out.len() + dims.len(), b'}');
    Ok(out)
}

/// `array_in`'s grammar: optional dimensions `[lower:upper]` (or
/// `[upper]`), one per dimension, then `=`; then `{`, elements or nested
/// `{…}` sub-arrays separated by `,`, `}`; whitespace around elements is
/// skipped. Sub-arrays of one level must all be as long. An element is
/// either quoted (`"…"`, with `\` escaping the next character) or unquoted
/// (backslash escapes too, trailing whitespace trimmed); only an unquoted,
/// unescaped `NULL` (any case) is NULL.
fn decode_array_text(text: &str) -> Result<TextArray, CodecError> {
    let ty = FieldType::TextArray;
    let bytes = text.as_bytes();
    let mut i = skip_array_space(bytes, 0);
    let mut bounds = Vec::new();
    if bytes.get(i) == Some(&b'[') {
        while bytes.get(i) == Some(&b'[') {
            let close = bytes[i..]
                .iter()
                .position(|&c| c == b']')
                .ok_or(text_syntax(ty, "array dimensions lack their ']'"))?
                + i;
            bounds.push(array_bounds(&text[i + 1..close]).ok_or(text_syntax(
                ty,
                "array dimensions are not of the form [lower:upper]",
            ))?);
            i = skip_array_space(bytes, close + 1);
        }
        if bytes.get(i) != Some(&b'=') {
            return Err(text_syntax(ty, "expected '=' after the array dimensions"));
        }
        i = skip_array_space(bytes, i + 1);
    }
    if bytes.get(i) != Some(&b'{') {
        return Err(text_syntax(ty, "expected '{' to open the array"));
    }
    // How deep the first element sits: one level per opening brace.
    let mut ndim = 0;
    let mut j = i;
    while bytes.get(j) == Some(&b'{') {
        ndim += 1;
        j = skip_array_space(bytes, j + 1);
    }
    if ndim > MAX_DIMENSIONS {
        return Err(CodecError::ArrayDimensions { ndim });
    }
    let mut elements = Vec::new();
    let mut lens: Vec<Option<usize>> = vec![None; ndim as usize];
    i = array_level(bytes, i, 0, &mut lens, &mut elements)?;
    if skip_array_space(bytes, i) != bytes.len() {
        return Err(text_syntax(ty, "unexpected text after the array's '}'"));
    }
    if elements.is_empty() {
        return Ok(TextArray {
            elements,
            element_oid: TEXT_OID,
            lower_bound: 1,
            inner: Vec::new(),
        });
    }
    let lens: Vec<usize> = lens.into_iter().map(|n| n.unwrap_or(0)).collect();
    let mut dims = Vec::with_capacity(lens.len());
    for (level, &len) in lens.iter().enumerate() {
        let lower = match bounds.get(level) {
            None if bounds.is_empty() => 1,
            None => return Err(text_syntax(ty, "array dimensions do not match the array")),
            Some(&(lower, upper)) => {
                if i64::from(upper) - i64::from(lower) + 1 != len as i64 {
                    return Err(text_syntax(
                        ty,
                        "array dimensions do not match the number of elements",
                    ));
                }
                lower
            }
        };
        let len = i32::try_from(len).map_err(|_| text_syntax(ty, "array is too large"))?;
        dims.push(Dim { len, lower });
    }
    if bounds.len() > dims.len() {
        return Err(text_syntax(ty, "array dimensions do not match the array"));
    }
    let lower_bound = dims[0].lower;
    Ok(TextArray {
        elements,
        element_oid: TEXT_OID,
        lower_bound,
        inner: dims.split_off(1),
    })
}

/// One `{…}` of an array literal at `level`, starting at its `{`: its
/// elements (or, above the last level, its sub-arrays) appended to
/// `elements`, its length checked against the length every other sub-array
/// of the level had. Returns the index after its `}`.
fn array_level(
    bytes: &[u8],
    start: usize,
    level: usize,
    lens: &mut [Option<usize>],
    elements: &mut Vec<Option<String>>,
) -> Result<usize, CodecError> {
    let ty = FieldType::TextArray;
    let mut i = skip_array_space(bytes, start + 1);
    let mut len = 0;
    let last = level + 1 == lens.len();
    if bytes.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let next = if last {
                let (element, next) = array_element(bytes, i)?;
                elements.push(element);
                next
            } else {
                if bytes.get(i) != Some(&b'{') {
                    return Err(CodecError::ArrayShape);
                }
                let after = array_level(bytes, i, level + 1, lens, elements)?;
                let next = skip_array_space(bytes, after);
                if !matches!(bytes.get(next), Some(b',' | b'}')) {
                    return Err(text_syntax(ty, "expected ',' or '}' after a sub-array"));
                }
                next
            };
            len += 1;
            i = skip_array_space(bytes, next + 1);
            if bytes[next] == b'}' {
                break;
            }
        }
    }
    match lens[level] {
        Some(n) if n != len => return Err(CodecError::ArrayShape),
        _ => lens[level] = Some(len),
    }
    Ok(i)
}

/// `lower:upper` or `upper` (lower then 1), inside the brackets.
fn array_bounds(text: &str) -> Option<(i32, i32)> {
    let number = |s: &str| s.trim().parse::<i32>().ok();
    match text.split_once(':') {
        Some((lower, upper)) => Some((number(lower)?, number(upper)?)),
        None => Some((1, number(text)?)),
    }
}

/// One element of an array literal starting at `start`: its value and the
/// index of the `,` or `}` after it.
fn array_element(bytes: &[u8], start: usize) -> Result<(Option<String>, usize), CodecError> {
    let ty = FieldType::TextArray;
    let unterminated = || text_syntax(ty, "the array lacks its closing '}'");
    let mut i = skip_array_space(bytes, start);
    let mut value = Vec::new();
    // Quoted or escaped: never NULL, and never empty by accident.
    let mut literal = false;
    if bytes.get(i) == Some(&b'"') {
        literal = true;
        i += 1;
        loop {
            match *bytes.get(i).ok_or_else(unterminated)? {
                b'"' => break,
                b'\\' => {
                    value.push(*bytes.get(i + 1).ok_or_else(unterminated)?);
                    i += 2;
                }
                c => {
                    value.push(c);
                    i += 1;
                }
            }
        }
        i = skip_array_space(bytes, i + 1);
        if !matches!(bytes.get(i), Some(b',' | b'}')) {
            return Err(text_syntax(
                ty,
                "expected ',' or '}' after a quoted element",
            ));
        }
    } else {
        // The value's length without its trailing unescaped whitespace.
        let mut kept = 0;
        loop {
            match *bytes.get(i).ok_or_else(unterminated)? {
                b',' | b'}' => break,
                b'"' | b'{' => {
                    return Err(text_syntax(
                        ty,
                        "unexpected '\"' or '{' inside an unquoted element",
                    ));
                }
                b'\\' => {
                    value.push(*bytes.get(i + 1).ok_or_else(unterminated)?);
                    literal = true;
                    kept = value.len();
                    i += 2;
                }
                c => {
                    value.push(c);
                    if !is_array_space(c) {
                        kept = value.len();
                    }
                    i += 1;
                }
            }
        }
        value.truncate(kept);
        if value.is_empty() && !literal {
            return Err(text_syntax(ty, "empty unquoted array element"));
        }
    }
    if !literal && value.eq_ignore_ascii_case(b"NULL") {
        return Ok((None, i));
    }
    // Only ASCII was removed from valid UTF-8, so this cannot fail; but a
    // wrong guess should be an error, not a panic.
    let element = String::from_utf8(value).map_err(|e| CodecError::InvalidUtf8 {
        ty,
        valid_up_to: e.utf8_error().valid_up_to(),
    })?;
    Ok((Some(element), i))
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
                inner: Vec::new(),
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
            ("bytea", Some(FieldType::Bytea)),
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
        let cases: [(FieldType, &[u8], &str); 13] = [
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
                b"\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x19",
                "array has 7 dimensions; PostgreSQL allows 1 to 6",
            ),
            (
                FieldType::TextArray,
                b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x19\x00\x00\x00\x02\x00\x00\x00\x01",
                "text[] field is truncated: needs 4 more bytes, has 0",
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
                    inner: Vec::new(),
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

    fn text_round_trip(ty: FieldType, value: &Value) -> Value {
        let bytes = encode_text(ty, value).unwrap();
        decode_text(ty, &bytes).unwrap()
    }

    /// Arrays as the text form can carry them: element type text, and an
    /// empty array indexed from 1.
    fn text_form_array() -> impl Strategy<Value = TextArray> {
        let element = prop_oneof![
            text_no_nul(),
            "[ \t\n\r\u{b}\u{c}{},\"\\\\a]{0,6}",
            "(?i:null)",
        ];
        (
            prop::collection::vec(prop::option::of(element), 0..8),
            prop_oneof![Just(1), -1000i32..1000, Just(i32::MIN), Just(i32::MAX - 8)],
        )
            .prop_map(|(elements, lower_bound)| TextArray {
                lower_bound: if elements.is_empty() { 1 } else { lower_bound },
                inner: Vec::new(),
                elements,
                element_oid: TEXT_OID,
            })
    }

    /// Strings of the characters the text parsers care about, to get past
    /// their first checks more often than random bytes do.
    fn text_form_garbage() -> impl Strategy<Value = String> {
        "[0-9:./+\\- BCinfty{}\\[\\]=,\"\\\\Nul\t]{0,40}"
    }

    proptest! {
        #[test]
        fn text_form_round_trips(s in text_no_nul()) {
            let value = Value::Text(s);
            prop_assert_eq!(text_round_trip(FieldType::Text, &value), value);
        }

        #[test]
        fn json_text_form_round_trips(v in json_value()) {
            let value = Value::Json(v);
            prop_assert_eq!(text_round_trip(FieldType::Json, &value), value.clone());
            prop_assert_eq!(text_round_trip(FieldType::Jsonb, &value), value);
        }

        #[test]
        fn inet_text_form_round_trips(value in inet(false)) {
            prop_assert_eq!(text_round_trip(FieldType::Inet, &value), value);
        }

        #[test]
        fn cidr_text_form_round_trips(value in inet(true)) {
            prop_assert_eq!(text_round_trip(FieldType::Cidr, &value), value);
        }

        #[test]
        fn date_text_form_round_trips(
            days in prop_oneof![
                DATE_MIN..DATE_END,
                DATE_MIN..DATE_MIN + 1000,
                DATE_END - 1000..DATE_END,
                -800_000..-700_000,
                Just(i32::MAX),
                Just(i32::MIN),
            ],
        ) {
            prop_assert_eq!(text_round_trip(FieldType::Date, &Value::Date(days)), Value::Date(days));
        }

        #[test]
        fn timestamp_text_form_round_trips(
            us in prop_oneof![
                TIMESTAMP_MIN..TIMESTAMP_END,
                TIMESTAMP_MIN..TIMESTAMP_MIN + 10 * USECS_PER_DAY,
                TIMESTAMP_END - 10 * USECS_PER_DAY..TIMESTAMP_END,
                -63_200_000_000_000_000i64..-63_000_000_000_000_000,
                Just(i64::MAX),
                Just(i64::MIN),
            ],
        ) {
            let value = Value::Timestamp(us);
            prop_assert_eq!(text_round_trip(FieldType::Timestamp, &value), value.clone());
            prop_assert_eq!(text_round_trip(FieldType::Timestamptz, &value), value);
        }

        #[test]
        fn text_array_text_form_round_trips(array in text_form_array()) {
            let value = Value::TextArray(array);
            prop_assert_eq!(text_round_trip(FieldType::TextArray, &value), value);
        }

        /// The hand-rolled calendar agrees with chrono wherever chrono goes.
        #[test]
        fn calendar_matches_chrono(days in DATE_MIN..DATE_END) {
            use chrono::Datelike;
            let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
            if let Some(date) = epoch.checked_add_signed(chrono::TimeDelta::days(days.into())) {
                let (year, month, day) = civil_from_days(i64::from(days) + UNIX_TO_PG_EPOCH_DAYS);
                prop_assert_eq!((year, month, day), (i64::from(date.year()), date.month(), date.day()));
                prop_assert_eq!(days_from_civil(year, month, day) - UNIX_TO_PG_EPOCH_DAYS, i64::from(days));
            }
        }

        /// A timestamptz printed with any offset decodes to the same instant
        /// as its UTC form.
        #[test]
        fn offsets_convert_to_utc(
            us in TIMESTAMP_MIN + USECS_PER_DAY..TIMESTAMP_END - USECS_PER_DAY,
            offset in -MAX_OFFSET_SECS..=MAX_OFFSET_SECS,
        ) {
            let us = us - us % 1_000_000 + 123_456;
            // The local time is UTC plus the offset; print it as if that
            // were UTC, then put the real offset in place of `+00`.
            let local = timestamp_text(us + offset * 1_000_000, true);
            let (sign, abs) = if offset < 0 { ('-', -offset) } else { ('+', offset) };
            let zone = format!("{sign}{:02}:{:02}:{:02}", abs / 3600, abs / 60 % 60, abs % 60);
            let text = local.replacen("+00", &zone, 1);
            prop_assert_eq!(
                decode_text(FieldType::Timestamptz, text.as_bytes()).unwrap(),
                Value::Timestamp(us),
                "{}", text
            );
        }

        /// Arbitrary bytes never panic the text decoders.
        #[test]
        fn text_garbage_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            text in text_form_garbage(),
        ) {
            for ty in ALL {
                let _ = decode_text(ty, &bytes);
                let _ = decode_text(ty, text.as_bytes());
            }
        }
    }

    /// chrono's own ends, and the calendar's oddities: the first valid
    /// date, the leap day of 1 BC (year 0), and the switch from BC to AD.
    #[test]
    fn calendar_matches_chrono_at_the_edges() {
        use chrono::{Datelike, NaiveDate};
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        for date in [
            NaiveDate::MIN,
            NaiveDate::MAX,
            ymd(-4713, 11, 24),
            ymd(0, 2, 29),
            ymd(0, 12, 31),
            ymd(1, 1, 1),
            ymd(1900, 3, 1),
        ] {
            let days = (date - epoch).num_days();
            let civil = civil_from_days(days + UNIX_TO_PG_EPOCH_DAYS);
            assert_eq!(civil, (i64::from(date.year()), date.month(), date.day()));
            assert_eq!(
                days_from_civil(civil.0, civil.1, civil.2) - UNIX_TO_PG_EPOCH_DAYS,
                days
            );
        }
    }

    #[test]
    fn dates_in_text_form() {
        let cases = [
            ("2000-01-01", 0),
            ("1999-12-31", -1),
            ("2000-02-29", 59),
            ("2000-03-01", 60),
            ("1970-01-01", -10_957),
            ("0001-01-01", -730_119),
            ("0001-12-31 BC", -730_120),
            ("0001-02-29 BC", -730_426),
            ("0044-03-15 BC", -746_117),
            ("4714-11-24 BC", DATE_MIN),
            // The last day chrono knows, and the first it does not.
            ("262142-12-31", 95_015_279),
            ("262143-01-01", 95_015_280),
            ("5874897-12-31", DATE_END - 1),
            ("infinity", i32::MAX),
            ("-infinity", i32::MIN),
        ];
        for (text, days) in cases {
            let value = Value::Date(days);
            assert_eq!(
                decode_text(FieldType::Date, text.as_bytes()).unwrap(),
                value,
                "{text}"
            );
            assert_eq!(
                encode_text(FieldType::Date, &value).unwrap(),
                text.as_bytes(),
                "{text}"
            );
        }
    }

    #[test]
    fn timestamps_in_text_form() {
        let day = USECS_PER_DAY;
        let cases = [
            ("2000-01-01 00:00:00", 0),
            ("2000-01-01 00:00:00.000001", 1),
            ("1999-12-31 23:59:59.999999", -1),
            ("2000-01-01 12:34:56.5", day / 2 + 2_096_500_000),
            ("0001-12-31 23:59:59 BC", -730_119 * day - 1_000_000),
            ("4714-11-24 00:00:00 BC", TIMESTAMP_MIN),
            ("294276-12-31 23:59:59.999999", TIMESTAMP_END - 1),
            ("infinity", i64::MAX),
            ("-infinity", i64::MIN),
        ];
        for (text, us) in cases {
            let value = Value::Timestamp(us);
            let ts = FieldType::Timestamp;
            assert_eq!(decode_text(ts, text.as_bytes()).unwrap(), value, "{text}");
            assert_eq!(encode_text(ts, &value).unwrap(), text.as_bytes(), "{text}");
            // timestamptz: the same, with `+00` before any ` BC`.
            let tz_text = match text {
                "infinity" | "-infinity" => text.to_owned(),
                _ => match text.strip_suffix(" BC") {
                    Some(body) => format!("{body}+00 BC"),
                    None => format!("{text}+00"),
                },
            };
            let tz = FieldType::Timestamptz;
            assert_eq!(
                decode_text(tz, tz_text.as_bytes()).unwrap(),
                value,
                "{tz_text}"
            );
            assert_eq!(
                encode_text(tz, &value).unwrap(),
                tz_text.as_bytes(),
                "{tz_text}"
            );
        }
        // Offsets east and west of UTC, with minutes and seconds.
        let noon = day / 2;
        let offsets = [
            ("2000-01-01 12:00:00+00", noon),
            ("2000-01-01 12:00:00+02", noon - 7_200_000_000),
            ("2000-01-01 12:00:00-03:30", noon + 12_600_000_000),
            ("2000-01-01 12:00:00+00:19:32", noon - 1_172_000_000),
            ("2000-01-01 00:00:00+15:59:59", -57_599_000_000),
            (
                "0044-03-15 12:00:00-01 BC",
                -746_117 * day + noon + 3_600_000_000,
            ),
        ];
        for (text, us) in offsets {
            assert_eq!(
                decode_text(FieldType::Timestamptz, text.as_bytes()).unwrap(),
                Value::Timestamp(us),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_text_fields_are_errors() {
        let syntax = |ty: FieldType, problem: &str| {
            format!("{ty} field is not in PostgreSQL's text output form: {problem}")
        };
        let cases: Vec<(FieldType, &[u8], String)> = vec![
            (
                FieldType::Text,
                b"a\0b",
                "text value contains a NUL character, which PostgreSQL text cannot hold".into(),
            ),
            (
                FieldType::Text,
                b"\xc3",
                "text field is not valid UTF-8 (after byte 0)".into(),
            ),
            (
                FieldType::Jsonb,
                b"{",
                "jsonb field is not valid JSON: EOF while parsing an object at line 1 column 1"
                    .into(),
            ),
            (
                FieldType::Date,
                b"2023-02-29",
                syntax(FieldType::Date, "day out of range for its month"),
            ),
            (
                FieldType::Date,
                b"1900-02-29",
                syntax(FieldType::Date, "day out of range for its month"),
            ),
            (
                FieldType::Date,
                b"0000-01-01",
                syntax(FieldType::Date, "there is no year 0"),
            ),
            (
                FieldType::Date,
                b"2024-13-01",
                syntax(FieldType::Date, "month or day out of range"),
            ),
            (
                FieldType::Date,
                b"24-01-01",
                syntax(FieldType::Date, "expected a year of four or more digits"),
            ),
            (
                FieldType::Date,
                b"2024-1-01",
                syntax(FieldType::Date, "expected a two-digit month"),
            ),
            (
                FieldType::Date,
                b"2024-01-01 AD",
                syntax(FieldType::Date, "unexpected text after the value"),
            ),
            (
                FieldType::Date,
                b"2024/01/02",
                syntax(FieldType::Date, "expected '-' after the year"),
            ),
            (
                FieldType::Date,
                b"4714-11-23 BC",
                "date value -2451546 is out of range".into(),
            ),
            (
                FieldType::Date,
                b"5874898-01-01",
                "date value 2145031949 is out of range".into(),
            ),
            (
                FieldType::Timestamp,
                b"2024-01-01",
                syntax(
                    FieldType::Timestamp,
                    "expected a time of the form HH:MM:SS[.ffffff]",
                ),
            ),
            (
                FieldType::Timestamp,
                b"2024-01-01T00:00:00",
                syntax(
                    FieldType::Timestamp,
                    "expected a time of the form HH:MM:SS[.ffffff]",
                ),
            ),
            (
                FieldType::Timestamp,
                b"2024-01-01 24:00:00",
                syntax(FieldType::Timestamp, "time of day out of range"),
            ),
            (
                FieldType::Timestamp,
                b"2024-01-01 00:00:00.1234567",
                syntax(
                    FieldType::Timestamp,
                    "expected one to six fractional digits",
                ),
            ),
            (
                FieldType::Timestamp,
                b"2024-01-01 00:00:00+00",
                syntax(FieldType::Timestamp, "unexpected text after the value"),
            ),
            (
                FieldType::Timestamp,
                b"294277-01-01 00:00:00",
                "timestamp value 9223371331200000000 is out of range".into(),
            ),
            (
                FieldType::Timestamptz,
                b"2024-01-01 00:00:00",
                syntax(
                    FieldType::Timestamptz,
                    "expected the UTC offset of a timestamptz",
                ),
            ),
            (
                FieldType::Timestamptz,
                b"2024-01-01 00:00:00+1",
                syntax(
                    FieldType::Timestamptz,
                    "expected a UTC offset of the form ±HH[:MM[:SS]]",
                ),
            ),
            (
                FieldType::Timestamptz,
                b"2024-01-01 00:00:00+16",
                syntax(FieldType::Timestamptz, "UTC offset out of range"),
            ),
            (
                FieldType::Timestamptz,
                b"4714-11-24 00:00:00+01 BC",
                "timestamptz value -211813491600000000 is out of range".into(),
            ),
            (
                FieldType::Inet,
                b"10.0.0.256",
                syntax(FieldType::Inet, "expected an IPv4 or IPv6 address"),
            ),
            (
                FieldType::Inet,
                b"10.0.0.1/+8",
                syntax(FieldType::Inet, "expected a decimal prefix length"),
            ),
            (
                FieldType::Inet,
                b"10.0.0.1/33",
                "inet prefix /33 is longer than the address (32 bits)".into(),
            ),
            (
                FieldType::Inet,
                b"::1/999",
                syntax(FieldType::Inet, "prefix length beyond 255"),
            ),
            (
                FieldType::Cidr,
                b"10.0.0.0",
                syntax(FieldType::Cidr, "a cidr value needs its /prefix"),
            ),
            (
                FieldType::Cidr,
                b"10.0.0.1/8",
                "cidr value 10.0.0.1/8 has bits set to the right of its mask".into(),
            ),
            (
                FieldType::TextArray,
                b"{{a},{b,c}}",
                "multidimensional array has sub-arrays of different lengths".into(),
            ),
            (
                FieldType::TextArray,
                b"{{a},b}",
                "multidimensional array has sub-arrays of different lengths".into(),
            ),
            (
                FieldType::TextArray,
                b"[1:2][1:1]={{a}}",
                syntax(
                    FieldType::TextArray,
                    "array dimensions do not match the number of elements",
                ),
            ),
            (
                FieldType::TextArray,
                b"[1:1]={{a}}",
                syntax(
                    FieldType::TextArray,
                    "array dimensions do not match the array",
                ),
            ),
            (
                FieldType::TextArray,
                b"{{{{{{{a}}}}}}}",
                "array has 7 dimensions; PostgreSQL allows 1 to 6".into(),
            ),
            (
                FieldType::TextArray,
                b"a,b",
                syntax(FieldType::TextArray, "expected '{' to open the array"),
            ),
            (
                FieldType::TextArray,
                b"{a,b",
                syntax(FieldType::TextArray, "the array lacks its closing '}'"),
            ),
            (
                FieldType::TextArray,
                b"{\"a}",
                syntax(FieldType::TextArray, "the array lacks its closing '}'"),
            ),
            (
                FieldType::TextArray,
                b"{a,,b}",
                syntax(FieldType::TextArray, "empty unquoted array element"),
            ),
            (
                FieldType::TextArray,
                b"{\"a\"b}",
                syntax(
                    FieldType::TextArray,
                    "expected ',' or '}' after a quoted element",
                ),
            ),
            (
                FieldType::TextArray,
                b"{a\"b\"}",
                syntax(
                    FieldType::TextArray,
                    "unexpected '\"' or '{' inside an unquoted element",
                ),
            ),
            (
                FieldType::TextArray,
                b"{a} x",
                syntax(
                    FieldType::TextArray,
                    "unexpected text after the array's '}'",
                ),
            ),
            (
                FieldType::TextArray,
                b"[0:2]={a,b}",
                syntax(
                    FieldType::TextArray,
                    "array dimensions do not match the number of elements",
                ),
            ),
            (
                FieldType::TextArray,
                b"[x]={a}",
                syntax(
                    FieldType::TextArray,
                    "array dimensions are not of the form [lower:upper]",
                ),
            ),
            (
                FieldType::TextArray,
                b"[0:0]{a}",
                syntax(
                    FieldType::TextArray,
                    "expected '=' after the array dimensions",
                ),
            ),
        ];
        for (ty, bytes, message) in cases {
            assert_eq!(
                decode_text(ty, bytes).unwrap_err().to_string(),
                message,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn multidimensional_arrays_keep_their_shape_in_both_forms() {
        let s = |v: &str| Some(v.to_string());
        let dim = |len, lower| Dim { len, lower };
        let cases = [
            (
                "{{a,b},{c,NULL}}",
                vec![s("a"), s("b"), s("c"), None],
                1,
                vec![dim(2, 1)],
            ),
            (
                "[0:1][2:3]={{a,b},{\"c d\",\"}\"}}",
                vec![s("a"), s("b"), s("c d"), s("}")],
                0,
                vec![dim(2, 2)],
            ),
            (
                "{{{a},{b}},{{c},{d}},{{e},{f}}}",
                vec![s("a"), s("b"), s("c"), s("d"), s("e"), s("f")],
                1,
                vec![dim(2, 1), dim(1, 1)],
            ),
        ];
        let ty = FieldType::TextArray;
        for (text, elements, lower_bound, inner) in cases {
            let value = Value::TextArray(TextArray {
                elements,
                element_oid: TEXT_OID,
                lower_bound,
                inner,
            });
            assert_eq!(decode_text(ty, text.as_bytes()).unwrap(), value, "{text}");
            assert_eq!(encode_text(ty, &value).unwrap(), text.as_bytes(), "{text}");
            assert_eq!(decode(ty, &encode(ty, &value).unwrap()).unwrap(), value);
        }
        // A shape the elements do not fill is an error, not a guess.
        let ragged = Value::TextArray(TextArray {
            elements: vec![s("a"), s("b"), s("c")],
            element_oid: TEXT_OID,
            lower_bound: 1,
            inner: vec![dim(2, 1)],
        });
        assert!(encode(ty, &ragged).is_err());
        assert!(encode_text(ty, &ragged).is_err());
    }

    #[test]
    fn text_arrays_in_text_form() {
        let s = |s: &str| Some(s.to_owned());
        let cases = [
            ("{}", vec![], 1),
            ("{a}", vec![s("a")], 1),
            (
                r#"{a,"b c",NULL,"with \"quote\"","back\\slash",""}"#,
                vec![
                    s("a"),
                    s("b c"),
                    None,
                    s("with \"quote\""),
                    s("back\\slash"),
                    s(""),
                ],
                1,
            ),
            (
                r#"{"NULL","null","NuLl",NULLS,"{x}","a,b",é😀}"#,
                vec![
                    s("NULL"),
                    s("null"),
                    s("NuLl"),
                    s("NULLS"),
                    s("{x}"),
                    s("a,b"),
                    s("é😀"),
                ],
                1,
            ),
            (
                "{\"\t\",\"\n\",\"\r\",\"\u{b}\",\"\u{c}\",\" \",\u{1}}",
                vec![
                    s("\t"),
                    s("\n"),
                    s("\r"),
                    s("\u{b}"),
                    s("\u{c}"),
                    s(" "),
                    s("\u{1}"),
                ],
                1,
            ),
            ("[2:3]={x,y}", vec![s("x"), s("y")], 2),
            ("[-3:-3]={NULL}", vec![None], -3),
            ("[2147483646:2147483646]={z}", vec![s("z")], i32::MAX - 1),
        ];
        for (text, elements, lower_bound) in cases {
            let value = Value::TextArray(TextArray {
                elements,
                element_oid: TEXT_OID,
                lower_bound,
                inner: Vec::new(),
            });
            let ty = FieldType::TextArray;
            assert_eq!(decode_text(ty, text.as_bytes()).unwrap(), value, "{text}");
            assert_eq!(encode_text(ty, &value).unwrap(), text.as_bytes(), "{text}");
        }
        // What array_in also accepts, though array_out never writes it.
        let lenient = [
            (r#" { a , "b" ,  NULL } "#, vec![s("a"), s("b"), None], 1),
            (r#"{a\,b,N\ULL,x\ }"#, vec![s("a,b"), s("NULL"), s("x ")], 1),
            ("{ }", vec![], 1),
            ("[3]={a,b,c}", vec![s("a"), s("b"), s("c")], 1),
        ];
        for (text, elements, lower_bound) in lenient {
            let expected = Value::TextArray(TextArray {
                elements,
                element_oid: TEXT_OID,
                lower_bound,
                inner: Vec::new(),
            });
            assert_eq!(
                decode_text(FieldType::TextArray, text.as_bytes()).unwrap(),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn addresses_in_text_form() {
        let cases = [
            (FieldType::Inet, "192.0.2.1"),
            (FieldType::Inet, "192.0.2.1/24"),
            (FieldType::Inet, "0.0.0.0/0"),
            (FieldType::Cidr, "192.0.2.0/24"),
            (FieldType::Cidr, "192.0.2.1/32"),
            (FieldType::Cidr, "0.0.0.0/0"),
            (FieldType::Inet, "2001:db8::1/64"),
            (FieldType::Inet, "2001:db8::1"),
            (FieldType::Cidr, "2001:db8::/32"),
            (FieldType::Cidr, "::/0"),
            (FieldType::Inet, "::"),
            (FieldType::Inet, "::1"),
            (FieldType::Inet, "::2"),
            (FieldType::Inet, "::1.2.3.4"),
            (FieldType::Inet, "::ffff:1.2.3.4"),
            (FieldType::Inet, "::ffff:0.0.0.0"),
            (FieldType::Inet, "::1:ffff:102:304"),
            (FieldType::Inet, "1::"),
            (FieldType::Inet, "1:0:1::"),
            (FieldType::Inet, "1::1:0:0:1"),
            (FieldType::Inet, "1:0:1:0:1:0:1:0"),
            (FieldType::Inet, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            (FieldType::Inet, "64:ff9b::102:304"),
        ];
        for (ty, text) in cases {
            let value = decode_text(ty, text.as_bytes()).unwrap();
            assert!(matches!(value, Value::Inet(_, _, cidr) if cidr == (ty == FieldType::Cidr)));
            assert_eq!(encode_text(ty, &value).unwrap(), text.as_bytes(), "{text}");
        }
        // The flag comes from the column type: an inet host written to a
        // cidr column gets its prefix printed.
        let host = Value::Inet(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32, false);
        assert_eq!(
            encode_text(FieldType::Cidr, &host).unwrap(),
            b"192.0.2.1/32"
        );
    }

    #[test]
    fn text_form_values_that_do_not_fit_are_errors() {
        let cases = [
            (
                FieldType::Date,
                Value::Text("x".into()),
                "a text value cannot be written to a date column",
            ),
            (
                FieldType::Date,
                Value::Date(DATE_MIN - 1),
                "date value -2451546 is out of range",
            ),
            (
                FieldType::Timestamptz,
                Value::Timestamp(TIMESTAMP_END),
                "timestamptz value 9223371331200000000 is out of range",
            ),
            (
                FieldType::TextArray,
                Value::TextArray(TextArray::of_text(vec![Some("a\0".into())])),
                "text[] value contains a NUL character, which PostgreSQL text cannot hold",
            ),
            (
                FieldType::TextArray,
                Value::TextArray(TextArray {
                    elements: vec![None, None],
                    element_oid: TEXT_OID,
                    lower_bound: i32::MAX,
                    inner: Vec::new(),
                }),
                "array of 2 elements from index 2147483647 exceeds the index range",
            ),
            (
                FieldType::TextArray,
                Value::TextArray(TextArray {
                    elements: vec![None],
                    element_oid: TEXT_OID,
                    lower_bound: i32::MAX,
                    inner: Vec::new(),
                }),
                "array of 1 elements from index 2147483647 exceeds the index range",
            ),
            (
                FieldType::Cidr,
                Value::Inet(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 8, true),
                "cidr value 10.1.2.3/8 has bits set to the right of its mask",
            ),
            (
                FieldType::Jsonb,
                Value::Json(json!(["\u{0}"])),
                "jsonb value contains a NUL character, which PostgreSQL text cannot hold",
            ),
        ];
        for (ty, value, message) in cases {
            assert_eq!(encode_text(ty, &value).unwrap_err().to_string(), message);
        }
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

    #[test]
    fn bytea_reads_as_utf8_text_and_refuses_other_bytes() {
        let ty = FieldType::Bytea;
        assert_eq!(FieldType::from_pg("bytea"), Some(ty));
        let value = Value::Text("mail é".into());
        assert_eq!(encode(ty, &value).unwrap(), "mail é".as_bytes());
        assert_eq!(decode(ty, "mail é".as_bytes()).unwrap(), value);
        assert_eq!(encode_text(ty, &value).unwrap(), b"\\x6d61696c20c3a9");
        assert_eq!(decode_text(ty, b"\\x6d61696c20c3a9").unwrap(), value);
        assert_eq!(decode_text(ty, b"\\x").unwrap(), Value::Text(String::new()));
        let not_utf8 = decode(ty, b"ok\xff").unwrap_err().to_string();
        assert!(not_utf8.contains("after byte 2"), "{not_utf8}");
        assert!(not_utf8.contains("`null` or `set`"), "{not_utf8}");
        assert!(matches!(
            decode_text(ty, b"\\x6fff"),
            Err(CodecError::NotUtf8Bytea { valid_up_to: 1 })
        ));
        for malformed in [&b"6d61"[..], b"\\x6d6", b"\\xzz"] {
            assert!(matches!(
                decode_text(ty, malformed),
                Err(CodecError::TextSyntax { .. })
            ));
        }
    }
}
