//! The engine: plans every step, then executes the step graph.

pub mod redact;
