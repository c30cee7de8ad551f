//! The WhisperRooms operator: reconciles `ChatCluster` resources into a Kafka
//! topic and the gateways that serve it.
//!
//! # Layout
//!
//! - [`crd`]: the `ChatCluster` types, from which the CRD YAML is generated.
//! - [`controller`]: the reconciler, its context, error policy and status.
//! - [`resources`]: the owned objects (Deployment, Service, HPA, PDB), built
//!   from the spec.
//! - [`topic`]: the Kafka admin operations, behind a trait.
//! - [`leader`]: leader election on a Lease.
//! - [`config`], [`metrics`], [`http`]: settings, Prometheus, the health and
//!   metrics endpoints.

pub mod config;
pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod resources;
pub mod topic;
