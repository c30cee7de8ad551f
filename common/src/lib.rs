//! What the gateway and the controller must agree on, and share.
//!
//! # Layout
//!
//! - [`topic`]: the configuration of the message topic (retention = TTL).
//! - [`telemetry`]: logs to stderr and OTLP traces.

pub mod telemetry;
pub mod topic;
