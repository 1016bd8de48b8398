//! PostgreSQL: connections, throwaway local clusters…

pub mod cluster;
pub mod connect;
pub mod copy;
pub mod snapshot;
pub mod swap;
pub mod url;
// pub mod clone; (waits for catalog and schema)
