//! What the gateway and the controller must agree on, and share.
//!
//! # Layout
//!
//! - [`topic`]: the message topic: TTL bounds, the name rule, the configs
//!   (retention = TTL) and which of them the controller manages.
//! - [`telemetry`]: logs to stderr and OTLP traces.
//! - [`signal`]: SIGTERM and SIGINT, which end both binaries gracefully.

pub mod signal;
pub mod telemetry;
pub mod topic;
