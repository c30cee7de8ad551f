//! Prometheus metrics of the controller.

use std::sync::OnceLock;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::crd::ChatCluster;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabel {
    ready: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    chatcluster: String,
}

/// The controller's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    failures: Family<ReasonLabel, Counter>,
    pub duration: Histogram,
    pub leader: Gauge,
    ready: Family<ClusterLabels, Gauge>,
    /// ChatClusters by readiness; both series always exist (alerts need a
    /// series before the first ChatCluster).
    counts: Family<ReadyLabel, Gauge>,
    /// The ChatClusters this replica reconciles, read at each scrape (so a
    /// deleted one leaves no series behind).
    clusters: OnceLock<Store<ChatCluster>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("whisper_controller"),
            reconciles: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            leader: Gauge::default(),
            ready: Family::default(),
            counts: Family::default(),
            clusters: OnceLock::new(),
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
        r.register(
            "chatcluster_ready",
            "1 while the ChatCluster's Ready condition is True, per ChatCluster this replica reconciles",
            m.ready.clone(),
        );
        r.register(
            "chatclusters",
            "ChatClusters this replica reconciles, by whether their Ready condition is True",
            m.counts.clone(),
        );
        for ready in ["true", "false"] {
            drop(m.counts.get_or_create(&ReadyLabel { ready }));
        }
        // Every reason starts at zero, so alerts see a series before the
        // first failure.
        for reason in crate::error::Error::REASONS {
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

    /// Reports the readiness of the ChatClusters in `store` from now on.
    pub fn watch_clusters(&self, store: Store<ChatCluster>) {
        let _ = self.clusters.set(store);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        if let Some(store) = self.clusters.get() {
            self.ready.clear();
            let mut counts = [0, 0];
            for cluster in store.state() {
                let ready = cluster
                    .status
                    .iter()
                    .flat_map(|s| &s.conditions)
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let labels = ClusterLabels {
                    namespace: cluster.namespace().unwrap_or_default(),
                    chatcluster: cluster.name_any(),
                };
                self.ready.get_or_create(&labels).set(i64::from(ready));
                counts[usize::from(ready)] += 1;
            }
            for (ready, count) in ["false", "true"].into_iter().zip(counts) {
                self.counts.get_or_create(&ReadyLabel { ready }).set(count);
            }
        }
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
            "whisper_controller_chatclusters{ready=\"false\"} 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }

    #[test]
    fn each_reconciled_cluster_has_a_ready_series_until_it_is_gone() {
        let m = Metrics::default();
        let (store, mut writer) = kube::runtime::reflector::store();
        m.watch_clusters(store);
        let cluster: ChatCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "whisperrooms.io/v1alpha1", "kind": "ChatCluster",
            "metadata": {"name": "demo", "namespace": "a"},
            "spec": {"kafka": {"bootstrapServers": "kafka:9092"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Serving", "message": "",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(cluster.clone()));
        let series = "whisper_controller_chatcluster_ready{namespace=\"a\",chatcluster=\"demo\"}";
        assert!(m.encode().contains(&format!("{series} 1")), "{}", m.encode());
        assert!(m.encode().contains("whisper_controller_chatclusters{ready=\"true\"} 1"));
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Delete(cluster));
        assert!(!m.encode().contains(series));
    }
}
