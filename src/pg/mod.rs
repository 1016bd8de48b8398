//! PostgreSQL: connections, throwaway local clusters…

pub mod catalog;
pub mod clone;
pub mod cluster;
pub mod connect;
pub mod copy;
pub mod in_place;
pub mod readonly;
pub mod schema;
pub mod snapshot;
pub mod swap;
pub mod url;
pub mod wait;
