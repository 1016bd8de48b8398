//! flightpath: reset a staging environment from production, safely.

pub mod engine;
pub mod progress;
pub mod report;
pub mod steps;
pub mod workflow;
