//! Syntax: a leaf layer. The located YAML tree ([`yaml`]), problems rendered
//! against the file ([`diagnostics`]), strict reading of mappings into typed
//! values ([`reader`]), `${…}` templates ([`template`]) and where in a shell
//! word or SQL text a value lands ([`lexical`]).
//!
//! It knows nothing of workflows, steps or databases: every layer above may
//! use it to read its own part of a file, and it uses nothing but
//! [`crate::redact`].

pub mod diagnostics;
pub mod lexical;
pub mod reader;
pub mod template;
pub mod yaml;
