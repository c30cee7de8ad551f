//! Prometheus metrics of the controller.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The controller's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    failures: Family<ReasonLabel, Counter>,
    pub duration: Histogram,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("whisper_controller"),
            reconciles: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            leader: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register("reconciles", "ChatCluster reconciliations run", m.reconciles.clone());
        r.register(
            "reconcile_failures",
            "ChatCluster reconciliations that failed, by reason",
            m.failures.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "Time one reconciliation took",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease",
            m.leader.clone(),
        );
        // Every reason starts at zero, so alerts see a series before the
        // first failure.
        for reason in crate::controller::Error::REASONS {
            drop(m.failures.get_or_create(&ReasonLabel { reason }));
        }
        m
    }
}

impl Metrics {
    /// Counts a failed reconciliation.
    pub fn failure(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names() {
        let m = Metrics::default();
        m.failure("kafka");
        m.reconciles.inc();
        let text = m.encode();
        for name in [
            "whisper_controller_reconciles_total 1",
            "whisper_controller_reconcile_failures_total{reason=\"kafka\"} 1",
            "whisper_controller_reconcile_failures_total{reason=\"kubernetes\"} 0",
            "whisper_controller_reconcile_duration_seconds_bucket",
            "whisper_controller_leader 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
