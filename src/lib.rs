//! flightpath: reset a staging environment from production, safely.

pub mod anonymize;
pub mod cli;
pub mod engine;
pub mod pg;
pub mod progress;
pub mod report;
pub mod steps;
pub mod workflow;
