//! Backups and restore: `pg_dump -Fc` of a database streamed into a store
//! with a manifest beside it ([`take`]), the backups a store holds
//! ([`catalog`]), and a restore into a new database swapped in atomically,
//! or a verification ([`restore`]). The naming and the manifest are in
//! [`manifest`]; the client programs in [`process`].
//!
//! Layer: a capability, beside the clone (it never uses it): it uses `pg`
//! (connections, pg_dump discovery, swap primitives) and `storage`. Its
//! failures are [`Error`]; steps and the CLI convert them at their boundary.

pub mod catalog;
mod error;
pub mod manifest;
pub mod process;
pub mod restore;
pub mod take;

pub use catalog::Which;
pub use error::{Error, Result};
pub use manifest::Manifest;
