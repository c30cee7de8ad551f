//! The WhisperRooms operator: reconciles `ChatCluster` resources into a Kafka
//! topic and a gateway Deployment.
//!
//! # Layout
//!
//! - [`crd`]: the `ChatCluster` types, from which the CRD YAML is generated.

pub mod crd;
