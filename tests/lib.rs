//! The integration-test binary (see tests/support for the harness).
