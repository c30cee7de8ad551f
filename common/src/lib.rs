//! What the gateway and the controller must agree on, and share.
//!
//! # Layout
//!
//! - [`topic`]: the message topic: TTL bounds, the name rule, the configs
//!   (retention = TTL) and which of them the controller manages.
//! - [`kafka`]: how a client reaches Kafka (TLS, SASL, mTLS), as librdkafka
//!   properties.
//! - [`tls`]: PEM material, from a file or inline.
//! - [`telemetry`]: logs to stderr and OTLP traces.
//! - [`signal`]: SIGTERM and SIGINT, which end both binaries gracefully.

pub mod kafka;
pub mod signal;
pub mod telemetry;
pub mod tls;
pub mod topic;
