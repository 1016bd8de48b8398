//! The workflow model: loading a file into the validated [`model`] (strict
//! reading through [`crate::syntax`], `${VAR}` interpolation, target and
//! step checks) and the step graph.
//!
//! Layer: below `engine`, above `steps` — the model holds each step's parsed
//! parameters, so it may name step types; steps never name this module.

pub mod graph;
pub mod heroku;
pub mod load;
pub mod model;

pub use load::{LoadError, load, resolve};
