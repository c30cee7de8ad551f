//! The message topic: its name, its TTL and its configuration. The gateway
//! creates the topic this way when run by hand; the controller creates it
//! and puts it back this way on Kubernetes (and builds its admission rules
//! from the same constants). Messages must really disappear soon after their
//! TTL: time retention deletes whole segments, so segments must roll well
//! within it.

use std::time::Duration;

/// Shortest message TTL (and so topic `retention.ms`).
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest message TTL.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Longest topic name Kafka accepts.
pub const MAX_NAME_LEN: usize = 249;
/// The characters a topic name may hold, as a regular-expression class.
pub const NAME_CHARS: &str = "a-zA-Z0-9._-";
/// Names starting with this are Kafka's own (`__consumer_offsets`) or
/// tools' (`_schemas`): never a chat topic.
pub const RESERVED_PREFIX: &str = "_";

/// Why `name` cannot be a chat topic, if it cannot.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        Some(format!("topic name must be 1-{MAX_NAME_LEN} characters"))
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some(format!("topic name may hold only {NAME_CHARS}"))
    } else if name.starts_with(RESERVED_PREFIX) {
        Some(format!("topic names beginning with {RESERVED_PREFIX} are reserved"))
    } else if name == "." || name == ".." {
        Some("topic name may not be . or ..".to_owned())
    } else {
        None
    }
}

/// The topic-level configs the controller sets; others it leaves alone.
pub const MANAGED_CONFIGS: [&str; 4] = ["cleanup.policy", "retention.ms", "segment.ms", MIN_INSYNC_REPLICAS];

/// The config that makes an `acks=all` write durable on that many replicas.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// `min.insync.replicas` when the spec names none: 2, or fewer when the
/// topic has fewer replicas (a write must remain possible).
pub fn default_min_insync_replicas(replication_factor: i32) -> i32 {
    replication_factor.clamp(1, 2)
}

/// `segment.ms` for a topic whose `retention.ms` is `ttl`: short enough that
/// the active segment rolls and expired messages are deleted soon after they
/// expire (a record lives at most about TTL + segment.ms + the broker's
/// retention check), long enough not to make a segment per message.
pub fn segment_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64 / 5).clamp(1_000, 60_000)
}

/// Every topic-level config the topic must have, for a message TTL.
pub fn configs(ttl: Duration) -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", "delete".to_owned()),
        ("retention.ms", ttl.as_millis().to_string()),
        ("segment.ms", segment_ms(ttl).to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_roll_well_within_the_ttl() {
        assert_eq!(segment_ms(Duration::from_secs(3)), 1_000);
        assert_eq!(segment_ms(Duration::from_secs(120)), 24_000);
        assert_eq!(segment_ms(Duration::from_secs(300)), 60_000);
        assert_eq!(segment_ms(Duration::from_secs(86_400)), 60_000);
    }

    #[test]
    fn topic_names_follow_kafka_and_leave_reserved_ones_alone() {
        assert_eq!(name_problem("team-a.demo.messages"), None);
        for bad in ["", "__consumer_offsets", "_schemas", "a b", "..", &"x".repeat(250)] {
            assert!(name_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn min_insync_replicas_defaults_below_the_replication_factor() {
        assert_eq!(default_min_insync_replicas(1), 1);
        assert_eq!(default_min_insync_replicas(3), 2);
    }

    #[test]
    fn configs_carry_the_ttl() {
        let c = configs(Duration::from_secs(180));
        assert!(c.contains(&("retention.ms", "180000".to_owned())));
        assert!(c.contains(&("cleanup.policy", "delete".to_owned())));
    }
}
