//! PostgreSQL: connections, throwaway local clusters…

pub mod cluster;
pub mod connect;
pub mod copy;
pub mod swap;
