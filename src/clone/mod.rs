//! The clone: production's database copied into staging from one snapshot,
//! with the anonymizer applied inside the copy stream. Owns the pipeline,
//! one file per phase, the way pgcopydb names its steps:
//!
//! 1. [`plan`] — the dry run's checks: privileges, the sessions a swap
//!    ends, the rules' SQL tried on the source, the per-table plan rows.
//! 2. [`source`] — a coordinator exports a snapshot; the tables in it, the
//!    rules bound to them (refused before anything is written) and the
//!    schema all come from it.
//! 3. [`queue`] — what runs next: copies largest first, a table's index,
//!    key and trigger builds as soon as its data is in, foreign keys once
//!    both of their tables are built.
//! 4. [`table`] — one table's (or block range's) COPY out, transform, COPY in.
//! 5. [`post_data`] — indexes, constraints, triggers, foreign keys, and
//!    sequences set from the source's values.
//! 6. [`swap`] — load a new database, rename it in for staging; at the
//!    run's end, drop or swap back. [`in_place`] instead reloads staging in
//!    one transaction.
//!
//! [`spec`] is the resolved plan every phase reads; [`error`] is the one
//! error type, converted by the step at its boundary. Calls `anonymize` and
//! `pg` directly; never names a step, the engine or the workflow, never
//! prints, and never writes to the source.

pub mod budget;
pub mod carry;
pub mod error;
pub mod in_place;
pub mod large_objects;
pub mod plan;
pub mod post_data;
pub mod queue;
pub mod source;
pub mod spec;
pub mod staging_only;
pub mod swap;
pub mod table;

pub use error::Error;
pub use spec::{CloneSpec, Strategy, TableRule, TransformFactory};
pub use swap::{Cloned, maintenance_client, run};
pub use table::{BlockRange, TableCopied, format_for, ranges_for};

pub use crate::pg::copy::Format;
