//! Integration tests of the 1Password, Infisical and Doppler backends against faithful fakes
//! (`tests/fakes/`): one test binary, one module per backend, shared fixtures.

#![cfg(all(feature = "onepassword", feature = "infisical", feature = "doppler"))]

pub mod fixtures;

mod config;
mod conformance;

mod doppler;
mod health;
mod infisical;
mod onepassword;
