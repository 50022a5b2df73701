//! Outloop's secret backends. Each lives in its own module behind its own cargo feature.

#[cfg(feature = "vault")]
pub mod vault;
