//! End-to-end tests of the `outloop` binary against a real httpbin (see scripts/test.sh) and
//! a recording loopback upstream.

mod e2e;
#[path = "../../outloop-backends/tests/support/keyring.rs"]
mod keyring;
mod support;
