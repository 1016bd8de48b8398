//! The test harness: real services and a builder that runs the real binary.
//!
//! - [`pg`]: one throwaway PostgreSQL cluster per test binary, a fresh
//!   database per test (or an existing server, `FLIGHTPATH_TEST_DATABASE_URL`).
//! - [`http`]: an in-process HTTP server with scripted replies that records
//!   what it receives, for `http.check` and `notify`.
//! - [`s3`]: an in-process S3 server (s3s over s3s-fs) for the storage tests.
//! - [`cli`]: `Test`, which writes files into a temp dir, runs `flightpath`
//!   there and returns its exit code and output.
//! - [`snapshot`]: the filters for whole-output snapshots.
//! - [`small_site`]: a small Wagtail-shaped site of made-up people, with
//!   the rules that cover it (tests/fixtures/small_site.yaml), for `scan`.
//!
//! Not every test uses every helper.
#![allow(dead_code)]

pub mod cli;
pub mod http;
pub mod pg;
pub mod s3;
pub mod small_site;
pub mod snapshot;
