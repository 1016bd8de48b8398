//! In-flight anonymization: rules applied to rows while they stream from the
//! source's `COPY TO` into staging's `COPY FROM`, so personal data is never
//! written to staging.
//!
//! Layer: below the clone, above pg (whose catalog types and COPY codecs it
//! reads). It decides and transforms; connecting and copying are the
//! clone's.

pub mod apply;
pub mod bind;
pub mod decode;
pub mod detect;
pub mod fakes;
pub mod keyed;
pub mod patterns;
pub mod redact;
pub mod rewrite;
pub mod rules;
pub mod splice;
pub mod starter;
pub mod transform;
