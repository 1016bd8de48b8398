//! flightpath: reset a staging environment from production, safely.

pub mod anonymize;
pub mod backup;
pub mod cli;
pub mod clone;
pub mod engine;
pub mod git;
pub mod heroku;
pub mod human;
pub mod media;
pub mod pg;
pub mod progress;
pub mod redact;
pub mod report;
pub mod steps;
pub mod storage;
pub mod syntax;
pub mod workflow;
