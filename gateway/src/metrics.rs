//! Prometheus metrics of one gateway. Every name here is public interface:
//! dashboards and alerts query them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::bus::BusError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub rooms: Gauge,
    pub messages_received: Counter,
    pub messages_delivered: Counter,
    pub fanout_latency: Histogram,
    pub consumer_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub history_messages: Gauge,
    pub history_bytes: Gauge,
    pub history_evicted: Counter,
    pub history_expired: Counter,
    pub rate_limited: Counter,
    pub slow_consumers: Counter,
    pub messages_blocked: Counter,
    pub duplicates_dropped: Counter,
    bus_errors: Family<KindLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("whisper"),
            connections: Gauge::default(),
            rooms: Gauge::default(),
            messages_received: Counter::default(),
            messages_delivered: Counter::default(),
            // 0.5 ms … ~16 s.
            fanout_latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0005, 2.0, 16,
            )),
            consumer_lag: Gauge::default(),
            history_messages: Gauge::default(),
            history_bytes: Gauge::default(),
            history_evicted: Counter::default(),
            history_expired: Counter::default(),
            rate_limited: Counter::default(),
            slow_consumers: Counter::default(),
            messages_blocked: Counter::default(),
            duplicates_dropped: Counter::default(),
            bus_errors: Family::default(),
        };
        let r = &mut m.registry;
        r.register("connections", "Open WebSocket connections", m.connections.clone());
        r.register("rooms", "Rooms with at least one local connection", m.rooms.clone());
        r.register(
            "messages_received",
            "Messages from this gateway's clients accepted by the bus",
            m.messages_received.clone(),
        );
        r.register(
            "messages_delivered",
            "Message frames written to sockets",
            m.messages_delivered.clone(),
        );
        r.register_with_unit(
            "fanout_latency",
            "Time from the bus timestamp of a message to its write on a socket",
            prometheus_client::registry::Unit::Seconds,
            m.fanout_latency.clone(),
        );
        r.register_with_unit(
            "consumer_lag",
            "How far behind the bus the consumer is: now minus the bus timestamp of the last message read",
            prometheus_client::registry::Unit::Seconds,
            m.consumer_lag.clone(),
        );
        r.register(
            "history_messages",
            "Unexpired messages held for history",
            m.history_messages.clone(),
        );
        r.register_with_unit(
            "history",
            "Approximate memory held by history",
            prometheus_client::registry::Unit::Bytes,
            m.history_bytes.clone(),
        );
        r.register(
            "history_evicted",
            "Messages dropped from history before expiry (room or memory bound full)",
            m.history_evicted.clone(),
        );
        r.register(
            "history_expired",
            "Messages dropped from history at expiry",
            m.history_expired.clone(),
        );
        r.register(
            "rate_limited",
            "Messages refused by the per-connection rate limit",
            m.rate_limited.clone(),
        );
        r.register(
            "slow_consumers",
            "Connections closed because they did not read fast enough (4009)",
            m.slow_consumers.clone(),
        );
        r.register(
            "messages_blocked",
            "Messages refused by the content filter",
            m.messages_blocked.clone(),
        );
        r.register(
            "duplicates_dropped",
            "Retried sends (same cid) read from the bus again and dropped",
            m.duplicates_dropped.clone(),
        );
        r.register("bus_errors", "Message bus errors by kind", m.bus_errors.clone());
        // Every kind starts at zero, so dashboards and alerts see a series
        // before the first error.
        for kind in BusError::KINDS {
            drop(m.bus_errors.get_or_create(&KindLabel { kind }));
        }
        m
    }
}

impl Metrics {
    /// Counts a bus error.
    pub fn bus_error(&self, error: &BusError) {
        self.bus_errors
            .get_or_create(&KindLabel {
                kind: error.metric_label(),
            })
            .inc();
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
        m.bus_error(&BusError::Unavailable("x".into()));
        m.fanout_latency.observe(0.01);
        let text = m.encode();
        for name in [
            "whisper_connections ",
            "whisper_rooms ",
            "whisper_messages_received_total ",
            "whisper_messages_delivered_total ",
            "whisper_fanout_latency_seconds_bucket",
            "whisper_consumer_lag_seconds ",
            "whisper_history_messages ",
            "whisper_history_bytes ",
            "whisper_history_evicted_total ",
            "whisper_history_expired_total ",
            "whisper_rate_limited_total ",
            "whisper_slow_consumers_total ",
            "whisper_messages_blocked_total ",
            "whisper_duplicates_dropped_total ",
            "whisper_bus_errors_total{kind=\"unavailable\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
