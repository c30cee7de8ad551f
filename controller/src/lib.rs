//! The WhisperRooms operator: reconciles `ChatCluster` resources into a Kafka
//! topic and the gateways that serve it.
//!
//! # Layout
//!
//! - [`crd`]: the `ChatCluster` types, from which the CRD YAML is generated.
//! - [`controller`]: what is watched, the context of every pass, the error
//!   policy (backoff), Events.
//! - [`reconcile`]: one pass: the topic, the owned objects, the status.
//! - [`error`]: what can go wrong in a pass.
//! - [`resources`]: the owned objects (Deployment, Service, HPA, PDB), built
//!   from the spec.
//! - [`topic`]: the Kafka admin operations, behind a trait; `native`: the
//!   two (IncrementalAlterConfigs, DescribeTopics) made on librdkafka
//!   directly, the workspace's only unsafe code.
//! - [`leader`]: leader election on a Lease.
//! - [`config`], [`metrics`], [`http`]: settings, Prometheus, the health and
//!   metrics endpoints.

pub mod config;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
mod native;
pub mod reconcile;
pub mod resources;
pub mod topic;
