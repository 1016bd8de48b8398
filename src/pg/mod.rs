//! PostgreSQL mechanics: connections and TLS ([`connect`]), the catalog,
//! pg_dump and schema entries ([`schema`]), COPY and its binary/text field
//! codecs ([`copy`], [`codec`]), the read-only guard ([`readonly`]), swap
//! primitives, lock waits and throwaway local clusters.
//!
//! Layer: below the clone and the anonymizer, above the leaves. It knows
//! nothing of steps or workflows; its failures are [`Error`], which the
//! layers above convert.

pub mod catalog;
pub mod catalog_schema;
pub mod cluster;
pub mod codec;
pub mod connect;
pub mod conninfo;
pub mod copy;
pub mod error;
pub mod ident;
pub mod large_objects;
pub mod readonly;
pub mod schema;
pub mod snapshot;
pub mod swap;
pub mod url;
pub mod wait;

pub use error::Error;
