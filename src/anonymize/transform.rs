//! The row transform of one table: decodes the fields that rules apply to,
//! applies them, re-encodes what changed and leaves every other field's bytes
//! alone. Counts are kept per transform and added to the table's shared
//! statistics when it is dropped (one COPY range ends), so workers never
//! contend on a counter per row.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::apply::{Applied, Compiled};
use super::keyed::Keyed;
use super::rewrite::{Rewriter, rewrite_json};
use super::splice::{self, Spliced};
use crate::pg::codec::{self, FieldType, Value};
use crate::pg::copy::{Format, Row, RowTransform, TransformError};

/// Where a template reads another column from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The row's own field (a text column, as it came).
    Field(usize),
    /// An extra field `"column"::text` sent by the source.
    Extra(usize),
}

/// One ruled column of a table.
pub struct RuledColumn {
    pub name: String,
    pub index: usize,
    pub ty: FieldType,
    pub rule: Compiled,
}

/// Counters of one table, shared by every range of it.
#[derive(Debug, Default)]
pub struct TableStats {
    /// Per ruled column: non-NULL values seen, values changed, items
    /// replaced inside values (redact).
    pub columns: Vec<ColumnStats>,
    /// Rows copied unchanged because they matched `except`.
    pub excepted: AtomicU64,
    /// Per rewritten column: replacements made.
    pub rewrites: Vec<(String, AtomicU64)>,
    /// Time spent in the transform (decode, rules, encode), in nanoseconds:
    /// what anonymization costs on top of the copy. Estimated from one row
    /// in 16 (millions of rows make that exact enough for a report).
    pub nanos: AtomicU64,
}

#[derive(Debug, Default)]
pub struct ColumnStats {
    pub name: String,
    pub rule: String,
    pub rows: AtomicU64,
    pub changed: AtomicU64,
    pub replacements: AtomicU64,
}

/// Everything a table's transforms share.
pub struct TablePlan {
    pub table: String,
    pub keyed: Keyed,
    pub columns: Vec<RuledColumn>,
    /// Template sources by column name.
    pub sources: Vec<(String, Source)>,
    /// The extra field holding the `except` predicate.
    pub except: Option<usize>,
    /// Extra fields holding the primary key as text, for error messages.
    pub key: Vec<(String, usize)>,
    pub rewriter: Option<Arc<Rewriter>>,
    /// Columns the rewrite applies to.
    pub rewrite: Vec<(usize, FieldType)>,
    pub extras: usize,
    pub stats: Arc<TableStats>,
}

/// How many rows one timed row stands for in [`TableStats::nanos`].
const TIMED_EVERY: u64 = 16;

/// Slots of a transform's [`Memo`], and the longest field it remembers.
/// At most 8,192 × (two fields of 64 bytes and their bookkeeping), about
/// 1.5 MiB per COPY, allocated on the first field it takes.
const MEMO_SLOTS: usize = 8192;
const MEMO_FIELD_MAX: usize = 64;

/// What the rules made of short fields lately: names, cities, addresses,
/// statuses repeat across rows, and a repeat is answered without the keyed
/// hash and the fake. Direct-mapped by a hash of column and bytes, so a
/// lookup is one probe and memory stays bounded; the answer is the same
/// the rule would give (the rules are deterministic), only cheaper.
#[derive(Default)]
struct Memo {
    slots: Vec<Option<Remembered>>,
    /// Per ruled column, by index. A column whose values rarely repeat
    /// (phone numbers, one per person) stops being remembered after its
    /// first [`MEMO_TRIAL`] lookups, so it pays for the memo only that long.
    columns: Vec<Trial>,
}

/// How a column fared in its first [`MEMO_TRIAL`] lookups; counting stops
/// when they are over.
#[derive(Debug, Clone, Copy)]
struct Trial {
    lookups: u32,
    hits: u32,
    remembered: bool,
}

impl Default for Trial {
    fn default() -> Trial {
        Trial {
            lookups: 0,
            hits: 0,
            remembered: true,
        }
    }
}

/// Lookups after which a column's hit rate decides whether it stays in
/// the memo, and the rate it needs (one in [`MEMO_MIN_HIT_RATE`]).
const MEMO_TRIAL: u32 = 4096;
const MEMO_MIN_HIT_RATE: u32 = 8;

struct Remembered {
    column: usize,
    input: Box<[u8]>,
    applied: Applied,
    output: Option<Box<[u8]>>,
}

impl Memo {
    fn slot(column: usize, bytes: &[u8]) -> usize {
        // Eight bytes at a time, multiplied and folded, seeded by the
        // column and the length: cheap for the short fields it takes.
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut hash = ((column as u64) << 32) ^ bytes.len() as u64;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            hash = (hash ^ word).wrapping_mul(K).rotate_left(29);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        // MurmurHash3's finalizer, so every input bit reaches the low bits
        // the slot is taken from.
        hash ^= u64::from_le_bytes(tail);
        hash = (hash ^ (hash >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash = (hash ^ (hash >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        ((hash ^ (hash >> 33)) as usize) & (MEMO_SLOTS - 1)
    }

    /// Whether `column` is (still) worth remembering.
    fn wants(&mut self, column: usize) -> bool {
        if self.columns.len() <= column {
            self.columns.resize(column + 1, Trial::default());
        }
        self.columns[column].remembered
    }

    /// What was remembered for `column` and `bytes`; call [`Memo::wants`]
    /// for the column first.
    fn get(&mut self, column: usize, bytes: &[u8]) -> Option<(Applied, Option<Vec<u8>>)> {
        let found = self
            .slots
            .get(Self::slot(column, bytes))
            .and_then(Option::as_ref)
            .filter(|found| found.column == column && *found.input == *bytes);
        let trial = &mut self.columns[column];
        if trial.lookups < MEMO_TRIAL {
            trial.lookups += 1;
            trial.hits += u32::from(found.is_some());
            if trial.lookups == MEMO_TRIAL {
                trial.remembered = trial.hits >= MEMO_TRIAL / MEMO_MIN_HIT_RATE;
            }
        }
        found.map(|found| (found.applied, found.output.as_deref().map(<[u8]>::to_vec)))
    }

    fn put(&mut self, column: usize, bytes: &[u8], applied: Applied, output: Option<&[u8]>) {
        if self.slots.is_empty() {
            self.slots.resize_with(MEMO_SLOTS, || None);
        }
        self.slots[Self::slot(column, bytes)] = Some(Remembered {
            column,
            input: bytes.into(),
            applied,
            output: output.map(Into::into),
        });
    }
}

/// The transform for one COPY.
pub struct TableTransform {
    memo: Memo,
    /// Rows seen, to time one in [`TIMED_EVERY`].
    rows: u64,
    plan: Arc<TablePlan>,
    format: Format,
    counts: Vec<[u64; 3]>,
    excepted: u64,
    rewrites: Vec<u64>,
    /// Per ruled column: its `json:` rules can be spliced into the text
    /// (see `splice`) rather than walked on a parsed tree.
    spliced: Vec<bool>,
    busy: std::time::Duration,
}

impl TableTransform {
    pub fn new(plan: Arc<TablePlan>, format: Format) -> TableTransform {
        TableTransform {
            counts: vec![[0; 3]; plan.columns.len()],
            rewrites: vec![0; plan.rewrite.len()],
            excepted: 0,
            rows: 0,
            memo: Memo::default(),
            spliced: plan
                .columns
                .iter()
                .map(|c| {
                    matches!(c.ty, FieldType::Json | FieldType::Jsonb) && splice::applies(&c.rule)
                })
                .collect(),
            busy: std::time::Duration::ZERO,
            plan,
            format,
        }
    }

    fn decode(&self, ty: FieldType, bytes: &[u8]) -> Result<Value, codec::CodecError> {
        match self.format {
            Format::Binary => codec::decode(ty, bytes),
            Format::Text => codec::decode_text(ty, bytes),
        }
    }

    fn encode(&self, ty: FieldType, value: &Value) -> Result<Vec<u8>, codec::CodecError> {
        match self.format {
            Format::Binary => codec::encode(ty, value),
            Format::Text => codec::encode_text(ty, value),
        }
    }

    /// "table t, column c, row with id = 7": where a value could not be
    /// handled, without the value itself.
    fn place(&self, row: &Row<'_>, column: &str) -> String {
        let key: Vec<String> = self
            .plan
            .key
            .iter()
            .map(|(name, extra)| {
                let value = row
                    .original(row.width() + extra)
                    .map_or("NULL".into(), |v| String::from_utf8_lossy(v).into_owned());
                format!("{name} = {value}")
            })
            .collect();
        if key.is_empty() {
            format!("table {}, column `{column}`", self.plan.table)
        } else {
            format!(
                "table {}, column `{column}`, row with {}",
                self.plan.table,
                key.join(", ")
            )
        }
    }

    fn rewrite_row(&mut self, row: &mut Row<'_>) -> Result<(), TransformError> {
        let plan = Arc::clone(&self.plan);
        let Some(rewriter) = &plan.rewriter else {
            return Ok(());
        };
        for (k, &(index, ty)) in plan.rewrite.iter().enumerate() {
            let Some(bytes) = row.get(index) else {
                continue;
            };
            // Cheap test first: most values hold no URL at all.
            if !rewriter.might_match(bytes) {
                continue;
            }
            let column = &plan.stats.rewrites[k].0;
            let rewritten = deep_if_needed(ty, bytes, || self.rewritten_field(rewriter, ty, bytes))
                .map_err(|e| TransformError(format!("{}: {e}", self.place(row, column))))?;
            if let Some((encoded, n)) = rewritten {
                row.set(index, Some(encoded));
                self.rewrites[k] += n as u64;
            }
        }
        Ok(())
    }

    /// One field with the site's URLs rewritten, encoded again, and how
    /// many were; `None` when it held none.
    fn rewritten_field(
        &self,
        rewriter: &Rewriter,
        ty: FieldType,
        bytes: &[u8],
    ) -> Result<Option<(Vec<u8>, usize)>, String> {
        let mut value = self.decode(ty, bytes).map_err(|e| e.to_string())?;
        let n = match &mut value {
            Value::Text(text) => match rewriter.rewrite(text) {
                Some((new, n)) => {
                    *text = new;
                    n
                }
                None => 0,
            },
            Value::Json(json) => rewrite_json(rewriter, json),
            Value::TextArray(array) => array
                .elements
                .iter_mut()
                .flatten()
                .map(|e| match rewriter.rewrite(e) {
                    Some((new, n)) => {
                        *e = new;
                        n
                    }
                    None => 0,
                })
                .sum(),
            // Binding only lets text, JSON and text arrays through.
            _ => 0,
        };
        if n == 0 {
            return Ok(None);
        }
        let encoded = self.encode(ty, &value).map_err(|e| e.to_string())?;
        Ok(Some((encoded, n)))
    }
}

/// How many templates deep a template input is followed (a template
/// reading a column whose own template reads another …); deeper inputs
/// read as empty.
const TEMPLATE_DEPTH: u8 = 4;

/// What a template's `{name}` reads: the column as staging gets it. A
/// column without a rule reads as its original text; a ruled one as its
/// rule makes it (the same fake, hash or template its own field gets), so a
/// template embedding a faked column agrees with that column and never
/// copies the original. `None` (an empty input) for NULL, for a value its
/// rule cannot take and past [`TEMPLATE_DEPTH`].
fn template_input(
    plan: &TablePlan,
    row: &Row<'_>,
    width: usize,
    name: &str,
    depth: u8,
) -> Option<String> {
    let (_, source) = plan.sources.iter().find(|(n, _)| n == name)?;
    let bytes = match source {
        Source::Field(i) => row.original(*i)?,
        Source::Extra(i) => row.original(width + i)?,
    };
    let text = String::from_utf8_lossy(bytes).into_owned();
    let Some(column) = plan.columns.iter().find(|c| c.name == name) else {
        return Some(text);
    };
    let depth = depth.checked_sub(1)?;
    let mut value = match column.ty {
        FieldType::Text => Value::Text(text),
        ty => codec::decode_text(ty, text.as_bytes()).ok()?,
    };
    let inner = |n: &str| template_input(plan, row, width, n, depth);
    column.rule.apply(&plan.keyed, &mut value, &inner).ok()?;
    match value {
        Value::Text(text) => Some(text),
        other => codec::encode_text(column.ty, &other)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
    }
}

/// A boolean field in either format.
fn is_true(format: Format, bytes: Option<&[u8]>) -> bool {
    matches!(
        (format, bytes),
        (Format::Binary, Some([1])) | (Format::Text, Some(b"t"))
    )
}

impl RowTransform for TableTransform {
    fn extras(&self) -> usize {
        self.plan.extras
    }

    fn transform(&mut self, row: &mut Row<'_>) -> Result<(), TransformError> {
        // One row in TIMED_EVERY is timed and counts for all of them:
        // reading the clock twice a row cost more than many rules do.
        self.rows += 1;
        if !self.rows.is_multiple_of(TIMED_EVERY) {
            return self.transform_row(row);
        }
        let began = std::time::Instant::now();
        let result = self.transform_row(row);
        self.busy += began.elapsed() * TIMED_EVERY as u32;
        result
    }
}

impl TableTransform {
    fn transform_row(&mut self, row: &mut Row<'_>) -> Result<(), TransformError> {
        let plan = self.plan.clone();
        if let Some(extra) = plan.except
            && is_true(self.format, row.original(row.width() + extra))
        {
            self.excepted += 1;
            return self.rewrite_row(row);
        }
        let mut replaced: Vec<(usize, Vec<u8>)> = Vec::new();
        for (k, column) in plan.columns.iter().enumerate() {
            let Some(bytes) = row.original(column.index) else {
                continue;
            };
            self.counts[k][0] += 1;
            let memoizable =
                bytes.len() <= MEMO_FIELD_MAX && column.rule.memoizable() && self.memo.wants(k);
            let remembered = match memoizable {
                true => self.memo.get(k, bytes),
                false => None,
            };
            let (applied, encoded) = match remembered {
                Some(known) => known,
                None => {
                    let made = deep_if_needed(column.ty, bytes, || {
                        self.ruled_field(&plan, column, self.spliced[k], row, bytes)
                    })
                    .map_err(|e| {
                        TransformError(format!("{}: {e}", self.place(row, &column.name)))
                    })?;
                    if memoizable && made.1.as_ref().is_none_or(|o| o.len() <= MEMO_FIELD_MAX) {
                        self.memo.put(k, bytes, made.0, made.1.as_deref());
                    }
                    made
                }
            };
            self.counts[k][2] += applied.replacements as u64;
            if let Some(encoded) = encoded {
                self.counts[k][1] += 1;
                replaced.push((column.index, encoded));
            }
        }
        for (index, bytes) in replaced {
            row.set(index, Some(bytes));
        }
        self.rewrite_row(row)
    }
}

impl TableTransform {
    /// One ruled field: decoded, ruled, and encoded again when the rule
    /// changed it (`None` when it did not).
    fn ruled_field(
        &self,
        plan: &TablePlan,
        column: &RuledColumn,
        spliced: bool,
        row: &Row<'_>,
        bytes: &[u8],
    ) -> Result<(Applied, Option<Vec<u8>>), String> {
        let width = row.width();
        let lookup = |name: &str| template_input(plan, row, width, name, TEMPLATE_DEPTH);
        // jsonb's binary form is a version byte and the text.
        let versioned = self.format == Format::Binary && column.ty == FieldType::Jsonb;
        let (prefix, doc): (&[u8], _) = match versioned {
            true => (&[1], bytes.strip_prefix(&[1])),
            false => (&[], Some(bytes)),
        };
        if spliced && let Some(doc) = doc {
            let keyed = &plan.keyed;
            match splice::splice(&column.rule, keyed, column.ty, prefix, doc, &lookup)? {
                Spliced::Unchanged(applied) => return Ok((applied, None)),
                Spliced::Changed(applied, field) => return Ok((applied, Some(field))),
                Spliced::Tree => {}
            }
        }
        let mut value = self.decode(column.ty, bytes).map_err(|e| e.to_string())?;
        let applied = column.rule.apply(&plan.keyed, &mut value, &lookup)?;
        let encoded = match applied.changed {
            true => Some(self.encode(column.ty, &value).map_err(|e| e.to_string())?),
            false => None,
        };
        Ok((applied, encoded))
    }
}

/// `field()`, and when it fails on JSON nested deeper than the parser's
/// limit, `field()` again on a stack sized for that depth. Only failures
/// pay for the depth check, so ordinary values cost nothing more.
fn deep_if_needed<R>(
    ty: FieldType,
    bytes: &[u8],
    field: impl Fn() -> Result<R, String>,
) -> Result<R, String> {
    match field() {
        Err(e) if matches!(ty, FieldType::Json | FieldType::Jsonb | FieldType::Text) => {
            match codec::json_depth(bytes) {
                depth if depth > codec::JSON_DEPTH && depth <= codec::JSON_DEPTH_MAX => {
                    codec::deep(depth, field)
                }
                depth if depth > codec::JSON_DEPTH_MAX => Err(format!(
                    "the JSON nests {depth} levels deep, more than the {} flightpath parses; \
                     fix the value in production, or give the column a rule that does not \
                     read it as JSON (`null`, `set`, `hash`)",
                    codec::JSON_DEPTH_MAX
                )),
                _ => Err(e),
            }
        }
        result => result,
    }
}

impl Drop for TableTransform {
    fn drop(&mut self) {
        let stats = &self.plan.stats;
        for (k, [rows, changed, replacements]) in self.counts.iter().enumerate() {
            if let Some(c) = stats.columns.get(k) {
                c.rows.fetch_add(*rows, Ordering::Relaxed);
                c.changed.fetch_add(*changed, Ordering::Relaxed);
                c.replacements.fetch_add(*replacements, Ordering::Relaxed);
            }
        }
        stats.excepted.fetch_add(self.excepted, Ordering::Relaxed);
        stats
            .nanos
            .fetch_add(self.busy.as_nanos() as u64, Ordering::Relaxed);
        for (k, n) in self.rewrites.iter().enumerate() {
            if let Some((_, c)) = stats.rewrites.get(k) {
                c.fetch_add(*n, Ordering::Relaxed);
            }
        }
    }
}

/// For tests and reports: reads a counter.
pub fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_answers_only_for_the_same_column_and_bytes_and_stays_bounded() {
        let mut memo = Memo::default();
        for column in 0..3 {
            assert!(memo.wants(column));
        }
        assert!(memo.get(0, b"Smith").is_none());
        assert!(memo.slots.is_empty(), "allocated before the first field");
        let changed = Applied {
            changed: true,
            replacements: 0,
        };
        memo.put(0, b"Smith", changed, Some(b"Jones"));
        memo.put(1, b"Smith", Applied::default(), None);
        assert_eq!(
            memo.get(0, b"Smith"),
            Some((changed, Some(b"Jones".to_vec())))
        );
        assert_eq!(memo.get(1, b"Smith"), Some((Applied::default(), None)));
        assert!(memo.get(0, b"smith").is_none());
        assert!(memo.get(2, b"Smith").is_none());
        // Filling it far past its size keeps its size; what was pushed out
        // is asked again, never answered wrongly.
        for n in 0..(4 * MEMO_SLOTS) {
            let input = format!("value {n}");
            let output = format!("fake {n}");
            memo.put(0, input.as_bytes(), changed, Some(output.as_bytes()));
        }
        assert_eq!(memo.slots.len(), MEMO_SLOTS);
        let mut answered = 0;
        for n in 0..(4 * MEMO_SLOTS) {
            let input = format!("value {n}");
            if let Some((_, output)) = memo.get(0, input.as_bytes()) {
                assert_eq!(output.unwrap(), format!("fake {n}").into_bytes());
                answered += 1;
            }
        }
        assert!(
            answered > MEMO_SLOTS / 2 && answered <= MEMO_SLOTS,
            "{answered}"
        );
    }

    #[test]
    fn json_past_the_deepest_parsed_is_refused_not_given_a_stack_for_it() {
        let fails = || Err::<(), _>("recursion limit exceeded".to_string());
        let deep = "[".repeat(codec::JSON_DEPTH_MAX + 1);
        let error = deep_if_needed(FieldType::Text, deep.as_bytes(), fails).unwrap_err();
        assert!(
            error.contains("more than the 200000 flightpath parses"),
            "{error}"
        );
        // Shallow text fails as it failed.
        let error = deep_if_needed(FieldType::Text, b"[[1]", fails).unwrap_err();
        assert_eq!(error, "recursion limit exceeded");
    }

    #[test]
    fn a_column_that_rarely_repeats_leaves_the_memo_after_its_trial() {
        let mut memo = Memo::default();
        let some = Applied::default();
        for n in 0..MEMO_TRIAL {
            assert!(memo.wants(0) && memo.wants(1));
            let unique = format!("+44 7700 {n:06}");
            assert!(memo.get(0, unique.as_bytes()).is_none());
            memo.put(0, unique.as_bytes(), some, None);
            let repeated = format!("Name {}", n % 100);
            if memo.get(1, repeated.as_bytes()).is_none() {
                memo.put(1, repeated.as_bytes(), some, None);
            }
        }
        assert!(!memo.wants(0), "unique values stay remembered");
        assert!(memo.wants(1), "repeated values are no longer remembered");
        let Trial { lookups, hits, .. } = memo.columns[1];
        assert!(hits > lookups * 9 / 10, "{hits} of {lookups}");
    }
}
