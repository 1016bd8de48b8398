//! The data pump of a clone: `COPY … TO STDOUT` on the source streamed into
//! `COPY … FROM STDIN` on the target, one table (or one range of a table) at
//! a time. Without a transform the bytes are forwarded untouched, batched
//! into large messages; with one, the binary COPY stream is cut into rows,
//! the transform sees each row's fields and may replace some, and the row is
//! re-encoded. Memory is bounded by one batch plus one row: nothing waits for
//! a whole table.
//!
//! Cancellation: dropping the future drops the `COPY FROM` sink without
//! `finish()`, which aborts the target's COPY; the source's COPY ends with
//! its connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::Client;

use crate::pg::connect::describe;

/// The 11-byte signature that opens every binary COPY stream.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Messages to the target are sent when this much has been gathered.
const BATCH: usize = 256 * 1024;

/// A transform of the rows of one table, applied in flight.
pub trait RowTransform: Send {
    /// Inspects and may replace fields of one row. Fields are in the order of
    /// the COPY's column list, in the COPY's format: PostgreSQL's binary
    /// form, or the text form (unescaped) for a text-format table.
    fn transform(&mut self, row: &mut Row<'_>) -> Result<(), TransformError>;

    /// How many fields at the end of each row the source sends for the
    /// transform alone (an `except` predicate, a template's `id::text`):
    /// they are read, never written.
    fn extras(&self) -> usize {
        0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransformError(pub String);

/// One row of a COPY stream: the original fields, and any replaced by the
/// transform.
pub struct Row<'a> {
    fields: Fields<'a>,
    replaced: Vec<(usize, Option<Vec<u8>>)>,
    /// Fields written to the target; the rest are extras.
    width: usize,
}

enum Fields<'a> {
    /// The row's bytes and `(offset, length)` of each field; length -1 is NULL.
    Binary {
        data: &'a [u8],
        offsets: &'a [(usize, i32)],
    },
    /// Unescaped text-format fields.
    Text(&'a [Option<Vec<u8>>]),
}

impl<'a> Row<'a> {
    /// A text-format row (for tests and callers outside the pump).
    pub fn text(fields: &'a [Option<Vec<u8>>], extras: usize) -> Row<'a> {
        Row {
            width: fields.len().saturating_sub(extras),
            fields: Fields::Text(fields),
            replaced: Vec::new(),
        }
    }

    /// Every field, extras included.
    pub fn len(&self) -> usize {
        match &self.fields {
            Fields::Binary { offsets, .. } => offsets.len(),
            Fields::Text(fields) => fields.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fields written to the target.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The current value of field `i`; `None` for NULL.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if let Some((_, value)) = self.replaced.iter().rev().find(|(at, _)| *at == i) {
            return value.as_deref();
        }
        self.original(i)
    }

    /// The value field `i` came with, whatever the transform replaced.
    pub fn original(&self, i: usize) -> Option<&[u8]> {
        match &self.fields {
            Fields::Binary { data, offsets } => {
                let (offset, len) = offsets[i];
                (len >= 0).then(|| &data[offset..offset + len as usize])
            }
            Fields::Text(fields) => fields[i].as_deref(),
        }
    }

    /// Replaces field `i`; `None` writes NULL.
    pub fn set(&mut self, i: usize, value: Option<Vec<u8>>) {
        assert!(i < self.width, "field {i} of a {}-field row", self.width);
        self.replaced.retain(|(at, _)| *at != i);
        self.replaced.push((i, value));
    }

    /// Whether the row goes out exactly as it came in.
    fn untouched(&self) -> bool {
        self.replaced.is_empty() && self.width == self.len()
    }

    fn encode_binary(&self, out: &mut BytesMut) {
        out.put_i16(self.width as i16);
        for i in 0..self.width {
            match self.get(i) {
                Some(bytes) => {
                    out.put_i32(bytes.len() as i32);
                    out.put_slice(bytes);
                }
                None => out.put_i32(-1),
            }
        }
    }

    fn encode_text(&self, out: &mut BytesMut) {
        let fields: Vec<Option<Vec<u8>>> = (0..self.width)
            .map(|i| self.get(i).map(<[u8]>::to_vec))
            .collect();
        out.extend_from_slice(&crate::pg::codec::join_text_row(&fields));
        out.put_u8(b'\n');
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    // tokio-postgres' own Display says only "db error": the server's
    // message (a failing `where:`, a bad cast) is what a person needs.
    #[error("reading from the source: {}", describe(.0, None))]
    Source(tokio_postgres::Error),
    #[error("writing to the target: {}", describe(.0, None))]
    Target(tokio_postgres::Error),
    #[error("the source sent a malformed binary COPY stream: {0}")]
    Malformed(&'static str),
    #[error("the source sent a malformed text COPY row: {0}")]
    Text(String),
    #[error("transform failed: {0}")]
    Transform(#[from] TransformError),
}

/// What one COPY moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Rows written, as the target counted them.
    pub rows: u64,
    /// Bytes of COPY data read from the source.
    pub bytes: u64,
}

/// How a table travels: PostgreSQL's binary COPY format, or the text format
/// (for a column type without portable binary I/O, or servers of different
/// major versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Binary,
    Text,
}

impl Format {
    pub fn sql(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Text => "text",
        }
    }
}

/// Runs `copy_out` on the source and `copy_in` on the target and streams
/// between them. `on_bytes` is called as data flows (for progress).
pub async fn pump(
    source: &Client,
    copy_out: &str,
    target: &Client,
    copy_in: &str,
    format: Format,
    mut transform: Option<Box<dyn RowTransform>>,
    mut on_bytes: impl FnMut(u64),
) -> Result<Copied, CopyError> {
    let stream = source.copy_out(copy_out).await.map_err(CopyError::Source)?;
    let sink = target
        .copy_in::<_, Bytes>(copy_in)
        .await
        .map_err(CopyError::Target)?;
    futures_util::pin_mut!(stream);
    futures_util::pin_mut!(sink);
    let mut batch = BytesMut::with_capacity(BATCH);
    let mut decoder = transform.as_ref().map(|t| Decoder::new(format, t.extras()));
    let mut read = 0u64;
    // Progress is told once per batch sent, not per chunk: the server
    // sends a chunk per row, and each telling reads the clock.
    let mut untold = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CopyError::Source)?;
        read += chunk.len() as u64;
        untold += chunk.len() as u64;
        match (&mut decoder, &mut transform) {
            (Some(decoder), Some(transform)) => {
                decoder.feed(&chunk, transform.as_mut(), &mut batch)?;
            }
            _ => batch.extend_from_slice(&chunk),
        }
        if batch.len() >= BATCH {
            on_bytes(std::mem::take(&mut untold));
            sink.feed(batch.split().freeze())
                .await
                .map_err(CopyError::Target)?;
        }
    }
    if untold > 0 {
        on_bytes(untold);
    }
    if let Some(decoder) = &decoder {
        decoder.finish()?;
    }
    if !batch.is_empty() {
        sink.feed(batch.split().freeze())
            .await
            .map_err(CopyError::Target)?;
    }
    let rows = sink.as_mut().finish().await.map_err(CopyError::Target)?;
    Ok(Copied { rows, bytes: read })
}

/// Cuts a COPY stream into rows across chunk boundaries.
struct Decoder {
    format: Format,
    extras: usize,
    pending: BytesMut,
    header_done: bool,
    trailer_seen: bool,
    /// Reused per row: field offsets within the row being decoded.
    fields: Vec<(usize, i32)>,
    /// Text format: bytes of `pending` already searched for a line feed.
    scanned: usize,
}

impl Decoder {
    fn new(format: Format, extras: usize) -> Decoder {
        Decoder {
            format,
            extras,
            pending: BytesMut::new(),
            // The text format has no header and no trailer.
            header_done: format == Format::Text,
            trailer_seen: false,
            fields: Vec::new(),
            scanned: 0,
        }
    }

    fn feed(
        &mut self,
        chunk: &[u8],
        transform: &mut dyn RowTransform,
        out: &mut BytesMut,
    ) -> Result<(), CopyError> {
        if self.header_done && self.pending.is_empty() {
            // The usual case: the server sends a row per message, so a
            // chunk holds whole rows, read where they lie instead of
            // copied first; only an incomplete tail is kept.
            let consumed = self.rows(chunk, transform, out)?;
            self.pending.extend_from_slice(&chunk[consumed..]);
            return Ok(());
        }
        self.pending.extend_from_slice(chunk);
        if !self.header_done {
            let Some(len) = header_len(&self.pending)? else {
                return Ok(());
            };
            out.extend_from_slice(&self.pending[..len]);
            self.pending.advance(len);
            self.header_done = true;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let consumed = self.rows(&pending, transform, out);
        pending.advance(*consumed.as_ref().unwrap_or(&0));
        self.pending = pending;
        consumed.map(drop)
    }

    /// Transforms the complete rows at the front of `data` (which starts at
    /// a row); how many bytes they took.
    fn rows(
        &mut self,
        data: &[u8],
        transform: &mut dyn RowTransform,
        out: &mut BytesMut,
    ) -> Result<usize, CopyError> {
        let mut at = 0;
        loop {
            if self.trailer_seen {
                if at != data.len() {
                    return Err(CopyError::Malformed("data after the trailer"));
                }
                return Ok(at);
            }
            let row = match self.format {
                Format::Binary => self.binary_row(&data[at..], transform, out)?,
                Format::Text => self.text_row(&data[at..], transform, out)?,
            };
            let Some(consumed) = row else {
                return Ok(at);
            };
            at += consumed;
        }
    }

    /// Transforms one complete text-format line at the front of `data`.
    /// A raw line feed only ever ends a row (one inside a value is escaped).
    fn text_row(
        &mut self,
        data: &[u8],
        transform: &mut dyn RowTransform,
        out: &mut BytesMut,
    ) -> Result<Option<usize>, CopyError> {
        // Only the bytes not looked at yet are searched: a long value split
        // over many chunks is scanned once, not once per chunk.
        let Some(end) = memchr::memchr(b'\n', &data[self.scanned..]).map(|at| self.scanned + at)
        else {
            self.scanned = data.len();
            return Ok(None);
        };
        self.scanned = 0;
        let line = &data[..end];
        let fields =
            crate::pg::codec::split_text_row(line).map_err(|e| CopyError::Text(e.to_string()))?;
        let mut row = Row::text(&fields, self.extras);
        transform.transform(&mut row)?;
        if row.untouched() {
            out.extend_from_slice(&data[..=end]);
        } else {
            row.encode_text(out);
        }
        Ok(Some(end + 1))
    }

    /// Decodes, transforms and encodes one complete binary row at the front
    /// of `data`; `None` when the row is not complete yet.
    fn binary_row(
        &mut self,
        data: &[u8],
        transform: &mut dyn RowTransform,
        out: &mut BytesMut,
    ) -> Result<Option<usize>, CopyError> {
        if data.len() < 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([data[0], data[1]]);
        if count == -1 {
            out.put_i16(-1);
            self.trailer_seen = true;
            return Ok(Some(2));
        }
        if count < 0 {
            return Err(CopyError::Malformed("negative field count"));
        }
        self.fields.clear();
        let mut at = 2;
        for _ in 0..count {
            let Some(len_bytes) = data.get(at..at + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            at += 4;
            if len < -1 {
                return Err(CopyError::Malformed("negative field length"));
            }
            self.fields.push((at, len));
            if len > 0 {
                at += len as usize;
                if at > data.len() {
                    return Ok(None);
                }
            }
        }
        if self.fields.len() < self.extras {
            return Err(CopyError::Malformed(
                "fewer fields than the transform reads",
            ));
        }
        let mut row = Row {
            width: self.fields.len() - self.extras,
            fields: Fields::Binary {
                data,
                offsets: &self.fields,
            },
            replaced: Vec::new(),
        };
        transform.transform(&mut row)?;
        if row.untouched() {
            out.extend_from_slice(&data[..at]);
        } else {
            row.encode_binary(out);
        }
        Ok(Some(at))
    }

    fn finish(&self) -> Result<(), CopyError> {
        if !self.pending.is_empty()
            || (self.format == Format::Binary && self.header_done && !self.trailer_seen)
        {
            return Err(CopyError::Malformed("the stream ended inside a row"));
        }
        Ok(())
    }
}

/// Length of the header (signature, flags, extension area), once complete.
fn header_len(data: &[u8]) -> Result<Option<usize>, CopyError> {
    if data.len() < 19 {
        return Ok(None);
    }
    if &data[..11] != SIGNATURE {
        return Err(CopyError::Malformed("missing PGCOPY signature"));
    }
    let extension = u32::from_be_bytes([data[15], data[16], data[17], data[18]]) as usize;
    let len = 19 + extension;
    Ok((data.len() >= len).then_some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.extend_from_slice(SIGNATURE);
        out.put_u32(0);
        out.put_u32(0);
        for row in rows {
            out.put_i16(row.len() as i16);
            for field in row {
                match field {
                    Some(b) => {
                        out.put_i32(b.len() as i32);
                        out.put_slice(b);
                    }
                    None => out.put_i32(-1),
                }
            }
        }
        out.put_i16(-1);
        out.to_vec()
    }

    struct Upper;
    impl RowTransform for Upper {
        fn transform(&mut self, row: &mut Row<'_>) -> Result<(), TransformError> {
            if let Some(v) = row.get(1) {
                let upper = v.to_ascii_uppercase();
                row.set(1, Some(upper));
            }
            Ok(())
        }
    }

    struct Same;
    impl RowTransform for Same {
        fn transform(&mut self, _row: &mut Row<'_>) -> Result<(), TransformError> {
            Ok(())
        }
    }

    /// Feeds `input` to a decoder in `chunk`-byte pieces.
    fn run_format(format: Format, input: &[u8], chunk: usize, t: &mut dyn RowTransform) -> Vec<u8> {
        let mut decoder = Decoder::new(format, t.extras());
        let mut out = BytesMut::new();
        for part in input.chunks(chunk) {
            decoder.feed(part, t, &mut out).unwrap();
        }
        decoder.finish().unwrap();
        out.to_vec()
    }

    #[test]
    fn rows_survive_any_chunking_and_transforms_apply() {
        let rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"\0\0\0\x01"), Some(b"alice"), None],
            vec![Some(b"\0\0\0\x02"), None, Some(b"")],
            vec![Some(b"\0\0\0\x03"), Some(b"bob"), Some(b"x")],
        ];
        let input = stream(&rows);
        let expected = stream(&[
            vec![Some(b"\0\0\0\x01"), Some(b"ALICE"), None],
            vec![Some(b"\0\0\0\x02"), None, Some(b"")],
            vec![Some(b"\0\0\0\x03"), Some(b"BOB"), Some(b"x")],
        ]);
        for chunk in [1, 2, 3, 7, 19, 1000] {
            assert_eq!(run(&input, chunk, &mut Upper), expected, "chunk {chunk}");
            assert_eq!(run(&input, chunk, &mut Same), input, "chunk {chunk}");
        }
    }

    /// Upper-cases field 1 and drops one extra field, which says whether to.
    struct UpperIfFlagged;
    impl RowTransform for UpperIfFlagged {
        fn transform(&mut self, row: &mut Row<'_>) -> Result<(), TransformError> {
            let flag = row.get(row.width()).map(<[u8]>::to_vec);
            if flag.as_deref() == Some(b"t")
                && let Some(v) = row.get(1)
            {
                let upper = v.to_ascii_uppercase();
                row.set(1, Some(upper));
            }
            Ok(())
        }
        fn extras(&self) -> usize {
            1
        }
    }

    fn run(input: &[u8], chunk: usize, t: &mut dyn RowTransform) -> Vec<u8> {
        run_format(Format::Binary, input, chunk, t)
    }

    fn run_text(input: &[u8], chunk: usize, t: &mut dyn RowTransform) -> Vec<u8> {
        run_format(Format::Text, input, chunk, t)
    }

    #[test]
    fn text_rows_with_escapes_and_extras() {
        let input = b"1\tab\\\\c\\ne\t\\N\tt\n2\tbob\t\\\\N\tf\n3\t\xc3\xa9l\xc3\xa8ve\t\tt\n";
        let expected = b"1\tAB\\\\C\\nE\t\\N\n2\tbob\t\\\\N\n3\t\xc3\xa9L\xc3\xa8VE\t\n";
        for chunk in [1, 2, 5, 1000] {
            assert_eq!(
                run_text(input, chunk, &mut UpperIfFlagged),
                expected,
                "chunk {chunk}"
            );
        }
        // Without extras, untouched lines go out byte for byte.
        assert_eq!(run_text(b"a\\\\tb\t\\N\n", 3, &mut Same), b"a\\\\tb\t\\N\n");
        let mut decoder = Decoder::new(Format::Text, 0);
        let mut out = BytesMut::new();
        decoder.feed(b"partial", &mut Same, &mut out).unwrap();
        assert!(decoder.finish().is_err(), "a row without its line feed");
    }

    #[test]
    fn binary_extras_are_read_and_never_written() {
        let input = stream(&[
            vec![Some(b"1"), Some(b"ann"), Some(b"t")],
            vec![Some(b"2"), Some(b"bo"), Some(b"f")],
        ]);
        let expected = stream(&[
            vec![Some(b"1"), Some(b"ANN")],
            vec![Some(b"2"), Some(b"bo")],
        ]);
        for chunk in [1, 3, 1000] {
            assert_eq!(
                run(&input, chunk, &mut UpperIfFlagged),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn truncated_streams_are_errors() {
        let input = stream(&[vec![Some(b"abc")]]);
        let mut decoder = Decoder::new(Format::Binary, 0);
        let mut out = BytesMut::new();
        decoder
            .feed(&input[..input.len() - 4], &mut Same, &mut out)
            .unwrap();
        assert!(decoder.finish().is_err());
        let mut bad = input.clone();
        bad[0] = b'X';
        let mut decoder = Decoder::new(Format::Binary, 0);
        assert!(decoder.feed(&bad, &mut Same, &mut out).is_err());
    }
}
