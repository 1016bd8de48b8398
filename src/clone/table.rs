//! One table's copy: the format it travels in, the ctid block ranges a
//! large table splits into, the two COPY statements (with the rule's
//! expressions, extras and filters) and the stream from source to target
//! through the table's transform. Knows nothing of queues or strategies;
//! never writes to the source.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::error::{Error, Result};
use super::spec::{CloneSpec, TableRule};
use crate::pg::catalog::Table;
use crate::pg::connect::describe;
use crate::pg::copy::{self, Format};
use crate::pg::ident::quote_ident;
use crate::progress::{Bar, Progress, Unit};

/// A ctid block range of a table: blocks `start` up to `end` (exclusive;
/// `None`: to the end of the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub start: i64,
    pub end: Option<i64>,
}

/// What was copied for one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCopied {
    pub qualified: String,
    pub rows: u64,
    pub bytes: u64,
    /// Wall time from the first range's start to the last range's end.
    pub duration: Duration,
    pub ranges: usize,
    pub format: Format,
    pub transformed: bool,
    pub truncated: bool,
}

/// The format a table must travel in.
pub fn format_for(table: &Table, same_major: bool) -> Format {
    if same_major && table.binary_ok {
        Format::Binary
    } else {
        Format::Text
    }
}

/// Ctid block ranges for a table larger than `split_bytes` (PostgreSQL 14+
/// scans a TID range without reading the rest of the table); empty when the
/// table is copied whole.
pub fn ranges_for(table: &Table, split_bytes: u64, source_major: u32) -> Vec<BlockRange> {
    // The main fork's size is exact; relpages may be stale (or 0 before the
    // first VACUUM/ANALYZE).
    let pages = (table.bytes / 8192).max(table.pages);
    if source_major < 14 || split_bytes == 0 || pages < 2 {
        return Vec::new();
    }
    let parts = (table.bytes.max(0) as u64).div_ceil(split_bytes).min(16) as i64;
    if parts < 2 {
        return Vec::new();
    }
    let step = (pages + parts - 1) / parts;
    (0..parts)
        .map(|i| BlockRange {
            start: i * step,
            end: (i + 1 < parts).then_some((i + 1) * step),
        })
        .collect()
}

/// How many parts a table is copied in: 1 when whole (or created empty).
pub fn parts_of(table: &Table, rule: Option<&TableRule>, split_bytes: u64, major: u32) -> usize {
    if rule.is_some_and(|r| r.truncate) {
        1
    } else {
        ranges_for(table, split_bytes, major).len().max(1)
    }
}

/// Copies one table, or one range of it, on a worker's own connections: a
/// whole table is emptied and loaded with `COPY … FREEZE` in one
/// transaction; ranges share the table, so they use plain COPY. Returns
/// (rows, bytes, started).
pub(crate) async fn copy_one(
    spec: &CloneSpec,
    table: &Table,
    format: Format,
    range: Option<BlockRange>,
    ends: &Ends<'_>,
) -> Result<(u64, u64, Instant)> {
    let started = Instant::now();
    let freeze = if range.is_some() {
        Freeze::No
    } else {
        Freeze::Truncate
    };
    let copied = copy_table(spec, table, format, range, freeze, ends).await?;
    Ok((copied.rows, copied.bytes, started))
}

/// The two COPY statements for a table (or one ctid range of it).
pub(crate) fn copy_statements(
    table: &Table,
    format: Format,
    rule: Option<&TableRule>,
    range: Option<BlockRange>,
    freeze: bool,
) -> (String, String) {
    let columns = table
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    // What the source reads: each column, or the expression replacing it,
    // then the extras the transform reads.
    let mut select: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| match rule.and_then(|r| r.expressions.get(&i)) {
            Some(expression) => format!("{expression} AS {}", quote_ident(&c.name)),
            None => quote_ident(&c.name),
        })
        .collect();
    if let Some(rule) = rule {
        select.extend(
            rule.extras
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{e} AS \"_fp_extra_{i}\"")),
        );
    }
    let plain = rule.is_none_or(|r| r.expressions.is_empty() && r.extras.is_empty());
    let mut filters = Vec::new();
    if let Some(BlockRange { start, end }) = range {
        filters.push(format!("ctid >= '({start},0)'::tid"));
        if let Some(end) = end {
            filters.push(format!("ctid < '({end},0)'::tid"));
        }
    }
    if let Some(predicate) = rule.and_then(|r| r.where_clause.as_deref()) {
        filters.push(format!("({predicate})"));
    }
    let copy_out = if filters.is_empty() && plain {
        format!(
            "COPY {} ({columns}) TO STDOUT (FORMAT {})",
            table.qualified,
            format.sql()
        )
    } else {
        format!(
            "COPY (SELECT {} FROM ONLY {}{}) TO STDOUT (FORMAT {})",
            select.join(", "),
            table.qualified,
            if filters.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", filters.join(" AND "))
            },
            format.sql()
        )
    };
    let copy_in = format!(
        "COPY {} ({columns}) FROM STDIN (FORMAT {}{})",
        table.qualified,
        format.sql(),
        if freeze { ", FREEZE" } else { "" }
    );
    (copy_out, copy_in)
}

/// How a table's rows are written: `COPY … FREEZE` writes them already
/// frozen and all-visible, so the index builds and staging's first VACUUM
/// do not rewrite every page again; it needs the table created or emptied
/// in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freeze {
    /// Several ranges load one table at once: plain COPY.
    No,
    /// `BEGIN; TRUNCATE; COPY … FREEZE; COMMIT` on the worker's connection.
    Truncate,
    /// The table was created in the caller's open transaction.
    InTransaction,
}

/// Both ends of a copy, and where its progress is drawn.
pub(crate) struct Ends<'a> {
    pub source: &'a Client,
    pub target: &'a Client,
    pub progress: &'a Progress,
    pub step_id: &'a str,
    pub overall: &'a Bar,
}

/// Streams one table (or range) from `source` into `target`, applying the
/// table's rule and transform, with a progress bar of its own. Dropping the
/// future drops the COPY FROM sink without `finish()`, which aborts it.
pub(crate) async fn copy_table(
    spec: &CloneSpec,
    table: &Table,
    format: Format,
    range: Option<BlockRange>,
    freeze: Freeze,
    ends: &Ends<'_>,
) -> Result<copy::Copied> {
    let rule = spec.rules.get(&table.qualified);
    if rule.is_some_and(|r| r.truncate) {
        return Ok(copy::Copied::default());
    }
    let (copy_out, copy_in) = copy_statements(table, format, rule, range, freeze != Freeze::No);
    let in_transaction = |doing: &'static str| {
        move |e: tokio_postgres::Error| Error::Freeze {
            doing,
            table: table.qualified.clone(),
            message: describe(&e, None),
        }
    };
    if freeze == Freeze::Truncate {
        ends.target
            .batch_execute(&format!("BEGIN; TRUNCATE ONLY {}", table.qualified))
            .await
            .map_err(in_transaction("emptying"))?;
    }
    let transform = rule.and_then(|r| r.transform.as_ref()).map(|f| f(format));
    let label = match range {
        Some(BlockRange { start, .. }) => format!("{} (from block {start})", table.qualified),
        None => table.qualified.clone(),
    };
    let bar = ends.progress.bar(ends.step_id, &label, None, Unit::Bytes);
    let copied = copy::pump(
        ends.source,
        &copy_out,
        ends.target,
        &copy_in,
        format,
        transform,
        |n| {
            bar.inc(n);
            ends.overall.inc(n);
        },
    )
    .await
    .map_err(|error| Error::Copy {
        table: table.qualified.clone(),
        error,
    })?;
    if freeze == Freeze::Truncate {
        ends.target
            .batch_execute("COMMIT")
            .await
            .map_err(in_transaction("committing"))?;
    }
    bar.finish();
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::pg::catalog::{Column, qualified};

    const MB: i64 = 1024 * 1024;

    fn table(bytes: i64, pages: i64) -> Table {
        Table {
            oid: 1,
            schema: "public".into(),
            name: "t".into(),
            qualified: qualified("public", "t"),
            columns: ["id", "Name"]
                .map(|name| Column {
                    name: name.into(),
                    type_name: "text".into(),
                    type_oid: 25,
                    binary_ok: true,
                })
                .to_vec(),
            bytes,
            pages,
            rows_estimate: 0,
            primary_key: Vec::new(),
            binary_ok: true,
            partition_of: Vec::new(),
        }
    }

    fn range(start: i64, end: Option<i64>) -> BlockRange {
        BlockRange { start, end }
    }

    #[test]
    fn a_table_under_the_threshold_is_copied_whole() {
        assert!(ranges_for(&table(100 * MB, 12_800), 256 * MB as u64, 16).is_empty());
        assert!(ranges_for(&table(256 * MB, 32_768), 256 * MB as u64, 16).is_empty());
    }

    #[test]
    fn a_large_table_splits_into_block_ranges_that_cover_it() {
        // 1 GiB, 256 MiB parts: 4 ranges of 32768 blocks, the last open.
        let ranges = ranges_for(&table(1024 * MB, 131_072), 256 * MB as u64, 16);
        assert_eq!(
            ranges,
            [
                range(0, Some(32_768)),
                range(32_768, Some(65_536)),
                range(65_536, Some(98_304)),
                range(98_304, None),
            ]
        );
        // Just over the threshold: two parts.
        assert_eq!(
            ranges_for(&table(257 * MB, 32_896), 256 * MB as u64, 16).len(),
            2
        );
    }

    #[test]
    fn at_most_sixteen_ranges() {
        let ranges = ranges_for(&table(100 * 1024 * MB, 13_107_200), 256 * MB as u64, 16);
        assert_eq!(ranges.len(), 16);
        assert_eq!(ranges[0], range(0, Some(819_200)));
        assert_eq!(ranges[15].end, None);
    }

    #[test]
    fn the_exact_size_wins_over_stale_relpages() {
        // Never analyzed (relpages 0): the main fork's size still splits it.
        let ranges = ranges_for(&table(512 * MB, 0), 256 * MB as u64, 16);
        assert_eq!(ranges, [range(0, Some(32_768)), range(32_768, None)]);
    }

    #[test]
    fn no_ranges_before_postgres_14_or_without_a_threshold() {
        let big = table(1024 * MB, 131_072);
        assert!(ranges_for(&big, 256 * MB as u64, 13).is_empty());
        assert_eq!(ranges_for(&big, 256 * MB as u64, 14).len(), 4);
        assert!(ranges_for(&big, 0, 16).is_empty());
        // A table of one block cannot be split.
        assert!(ranges_for(&table(8192, 1), 1, 16).is_empty());
    }

    #[test]
    fn parts_count_an_emptied_table_as_one() {
        let big = table(1024 * MB, 131_072);
        let truncate = TableRule {
            truncate: true,
            ..Default::default()
        };
        assert_eq!(parts_of(&big, None, 256 * MB as u64, 16), 4);
        assert_eq!(parts_of(&big, Some(&truncate), 256 * MB as u64, 16), 1);
        assert_eq!(parts_of(&table(MB, 128), None, 256 * MB as u64, 16), 1);
    }

    #[test]
    fn binary_only_between_the_same_major_and_portable_types() {
        let mut t = table(MB, 128);
        assert_eq!(format_for(&t, true), Format::Binary);
        assert_eq!(format_for(&t, false), Format::Text);
        t.binary_ok = false;
        assert_eq!(format_for(&t, true), Format::Text);
    }

    #[test]
    fn a_plain_table_is_copied_as_it_is() {
        let (out, into) = copy_statements(&table(MB, 128), Format::Binary, None, None, true);
        assert_eq!(
            out,
            "COPY \"public\".\"t\" (\"id\", \"Name\") TO STDOUT (FORMAT binary)"
        );
        assert_eq!(
            into,
            "COPY \"public\".\"t\" (\"id\", \"Name\") FROM STDIN (FORMAT binary, FREEZE)"
        );
    }

    #[test]
    fn a_range_with_rules_reads_expressions_extras_and_filters() {
        let rule = TableRule {
            where_clause: Some("\"id\" > '5'".into()),
            expressions: BTreeMap::from([(1, "CAST('x' AS text)".to_string())]),
            extras: vec!["COALESCE((is_staff), false)".into()],
            ..Default::default()
        };
        let (out, into) = copy_statements(
            &table(MB, 128),
            Format::Text,
            Some(&rule),
            Some(range(10, Some(20))),
            false,
        );
        assert_eq!(
            out,
            "COPY (SELECT \"id\", CAST('x' AS text) AS \"Name\", COALESCE((is_staff), false) AS \"_fp_extra_0\" \
             FROM ONLY \"public\".\"t\" WHERE ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid AND (\"id\" > '5')) \
             TO STDOUT (FORMAT text)"
        );
        assert_eq!(
            into,
            "COPY \"public\".\"t\" (\"id\", \"Name\") FROM STDIN (FORMAT text)"
        );
    }
}
