//! Workflow files: parsing into a located YAML tree, strict reading into the
//! validated [`model`], interpolation and the step-graph checks.

pub mod diagnostics;
pub mod graph;
pub mod lexical;
pub mod load;
pub mod model;
pub mod reader;
pub mod template;
pub mod yaml;

pub use load::{LoadError, load, resolve};
