//! What can go wrong in a reconcile pass, with a stable label per kind for
//! metrics.

use crate::topic::TopicError;

/// What went wrong in a pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kafka: {0}")]
    Kafka(#[from] TopicError),
}

impl Error {
    /// Every [`Error::metric_label`].
    pub const REASONS: [&'static str; 2] = ["kubernetes", "kafka"];

    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kubernetes",
            Self::Kafka(_) => "kafka",
        }
    }
}
