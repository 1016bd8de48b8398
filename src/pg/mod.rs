//! PostgreSQL: connections, throwaway local clusters…

pub mod catalog;
pub mod cluster;
pub mod codec;
pub mod connect;
pub mod conninfo;
pub mod copy;
pub mod error;
pub mod ident;
pub mod readonly;
pub mod schema;
pub mod snapshot;
pub mod swap;
pub mod url;
pub mod wait;

pub use error::Error;
