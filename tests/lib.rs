//! The integration-test binary (see tests/support for the harness).

mod support;

mod anonymize;
mod anonymize_codec;
mod anonymize_detect;
mod anonymize_foreign;
mod anonymize_freetext;
mod anonymize_leaks;
mod anonymize_schema;
mod backup;
mod checks;
mod clone;
mod cluster;
mod engine;
mod git;
mod git_reset;
mod github_actions;
mod heroku;
mod input_files;
mod layers;
mod media;
mod pg_schema;
mod presets;
mod readonly;
mod scan;
mod secrets;
mod shipped;
mod staging_only;
mod steps;
mod storage;
mod tls;
mod validate;
