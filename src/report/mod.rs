//! The run report: one data model ([`model`]) rendered three ways — for the
//! terminal, as Markdown (summary table, per-step details, a mermaid graph
//! coloured by status) and as JSON. Renderers are pure functions of the model.

pub mod model;
