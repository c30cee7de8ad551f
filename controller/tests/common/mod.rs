//! What the controller's integration tests share: the test services from the
//! environment, polling, and Kafka as a user would look at it.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

/// How long a test waits for the controller to get somewhere.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A tool's path or a test service's address, or `None` (skip) outside CI;
/// under `CI=true` a missing one fails the test.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{var} is not set: the test services are not running (scripts/services up, scripts/kube up; eval their env)"
            )
        }
        _ => {
            eprintln!("skipping: {var} is not set");
            None
        }
    }
}

pub fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Polls until `check` gives a value, or fails the test after [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap()
}

/// The topic's partition count and topic-level configs, if it exists.
pub async fn topic(brokers: &str, name: &str) -> Option<(usize, BTreeMap<String, String>)> {
    let admin = admin(brokers);
    let metadata = admin.inner().fetch_metadata(Some(name), Duration::from_secs(5)).ok()?;
    let t = metadata.topics().first()?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &AdminOptions::new())
        .await
        .ok()?
        .into_iter()
        .next()?
        .ok()?
        .entries
        .into_iter()
        .filter(|e| e.source == rdkafka::admin::ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name, e.value?)))
        .collect();
    Some((t.partitions().len(), configs))
}
