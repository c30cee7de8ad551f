//! What the gateway and the controller must agree on, and share.
//!
//! # Layout
//!
//! - [`topic`]: the configuration of the message topic (retention = TTL).
//! - [`telemetry`]: logs to stderr and OTLP traces.
//! - [`signal`]: SIGTERM and SIGINT, which end both binaries gracefully.

pub mod signal;
pub mod telemetry;
pub mod topic;
