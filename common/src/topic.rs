//! The message topic's configuration. The gateway creates the topic this way
//! when run by hand; the controller creates it and puts it back this way on
//! Kubernetes. Messages must really disappear soon after their TTL: time
//! retention deletes whole segments, so segments must roll well within it.

use std::time::Duration;

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
    fn configs_carry_the_ttl() {
        let c = configs(Duration::from_secs(180));
        assert!(c.contains(&("retention.ms", "180000".to_owned())));
        assert!(c.contains(&("cleanup.policy", "delete".to_owned())));
    }
}
