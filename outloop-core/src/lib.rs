//! Outloop's core: the vocabulary as types and the broker that runs the request flow.
//!
//! An agent working in a bound **workspace** asks for an approved **action**. The
//! [`Broker`](broker::Broker) resolves the workspace's **tenant** from the host config, asks the
//! **policy** for a decision, resolves the tenant's **credentials** from a
//! [`SecretBackend`], performs the call host-side, **redacts** the result
//! and appends an **audit record**. See DESIGN.md for the vocabulary and the request flow.

pub mod action;
pub mod approval;
pub mod audit;
pub mod backend;
pub mod broker;
pub mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod error;
pub mod exec;
pub mod http;
pub mod policy;
pub mod ratelimit;
pub mod redact;
pub mod reference;
pub mod secret;
pub mod workspace;

pub use backend::{Capabilities, MemoryBackend, SecretBackend};
pub use error::{Error, ErrorKind, Result};
pub use reference::{BackendKind, SecretRef};
pub use secret::SecretValue;
