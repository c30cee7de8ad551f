//! The topic: checked against the admin's policy and the other ChatClusters,
//! created, or brought back to the spec.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::events::EventType;
use whisper_common::topic as rules;

use crate::controller::{Context, event};
use crate::crd::{ADOPT_ANNOTATION, ChatCluster};
use crate::topic::{Connection, TopicError, TopicSpec, TopicState};

/// The outcome of making the topic match the spec.
#[derive(Debug)]
pub(super) struct TopicOutcome {
    /// Whether this cluster owns the topic (created it, took it over, or
    /// its status records it).
    pub(super) owned: bool,
    /// The topic as Kafka has it, when this cluster owns it (a topic just
    /// created may not be described yet).
    pub(super) state: Option<TopicState>,
    /// Why the topic is not ready, as the TopicReady condition's reason and
    /// message; `None` when it is.
    pub(super) problem: Option<(&'static str, String)>,
}

impl TopicOutcome {
    fn refused(reason: &'static str, message: String) -> Self {
        Self {
            owned: false,
            state: None,
            problem: Some((reason, message)),
        }
    }
}

/// Creates the topic or brings it back to the spec; what cannot or may not
/// be done comes back as a problem, not an error.
pub(super) async fn ensure_topic(
    cluster: &ChatCluster,
    ctx: &Context,
    kafka: &Connection,
) -> Result<TopicOutcome, TopicError> {
    let spec = &cluster.spec.kafka;
    if let Some(refused) = disallowed_servers(&spec.bootstrap_servers, ctx.options.allowed_bootstrap_servers.as_ref()) {
        return Ok(TopicOutcome::refused("BootstrapServersNotAllowed", refused));
    }
    let name = cluster.topic();
    if let Some(other) = owner_before(cluster, &ctx.caches.clusters.state()) {
        return Ok(TopicOutcome::refused(
            "ResourceConflict",
            format!(
                "ChatCluster {}/{} already uses topic {name} on {}; choose another kafka.topic",
                other.namespace().unwrap_or_default(),
                other.name_any(),
                spec.bootstrap_servers
            ),
        ));
    }
    let desired = TopicSpec {
        name: name.clone(),
        partitions: spec.partitions,
        replication_factor: spec.replication_factor,
        configs: desired_configs(cluster, &ctx.options.topic_configs),
    };
    let Some(mut state) = ctx.topics.describe(kafka, &name).await? else {
        ctx.topics.create(kafka, &desired).await?;
        event(
            ctx,
            cluster,
            EventType::Normal,
            "TopicCreated",
            format!(
                "created topic {name} with {} partitions, replication factor {}, configs {}",
                desired.partitions,
                desired.replication_factor,
                show(&desired.configs)
            ),
        )
        .await;
        return Ok(TopicOutcome {
            owned: true,
            state: ctx.topics.describe(kafka, &name).await?,
            problem: None,
        });
    };
    if let Some((recorded, now)) = replaced(cluster, &state)
        && !cluster.annotated(ADOPT_ANNOTATION)
    {
        return Ok(TopicOutcome::refused(
            "TopicReplaced",
            format!(
                "topic {name} was deleted and made again outside this ChatCluster (its id was {recorded}, is {now}): it is not the topic this cluster made; annotate it with {ADOPT_ANNOTATION}: \"true\" to take the new one over"
            ),
        ));
    }
    if !owns(cluster) || replaced(cluster, &state).is_some() {
        if !cluster.annotated(ADOPT_ANNOTATION) {
            return Ok(TopicOutcome::refused(
                "TopicExists",
                format!(
                    "topic {name} exists and was not created by this ChatCluster; annotate it with {ADOPT_ANNOTATION}: \"true\" to take it over"
                ),
            ));
        }
        event(
            ctx,
            cluster,
            EventType::Normal,
            "TopicAdopted",
            format!("took over topic {name}"),
        )
        .await;
    }
    let mut problems = Vec::new();
    if state.partitions < desired.partitions {
        ctx.topics.add_partitions(kafka, &name, desired.partitions).await?;
        event(
            ctx,
            cluster,
            EventType::Normal,
            "PartitionsIncreased",
            format!(
                "grew topic {name} from {} to {} partitions",
                state.partitions, desired.partitions
            ),
        )
        .await;
        state.partitions = desired.partitions;
    } else if state.partitions > desired.partitions {
        problems.push(format!(
            "topic {name} has {} partitions, more than the {} asked for; partitions never shrink",
            state.partitions, desired.partitions
        ));
    }
    if state.replication_factor != desired.replication_factor {
        problems.push(format!(
            "topic {name} has replication factor {}, not {}; the controller does not reassign replicas",
            state.replication_factor, desired.replication_factor
        ));
    }
    // Only the configs the controller manages, and only those that differ;
    // every other override is left as it is.
    let drift: BTreeMap<String, String> = desired
        .configs
        .iter()
        .filter(|(k, v)| state.configs.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !drift.is_empty() {
        ctx.topics.alter_configs(kafka, &name, &drift).await?;
        let changes: Vec<String> = drift
            .iter()
            .map(|(k, v)| format!("{k}={v} (was {})", state.configs.get(k).map_or("unset", String::as_str)))
            .collect();
        event(
            ctx,
            cluster,
            EventType::Normal,
            "TopicConfigured",
            format!("set topic {name} config {}", changes.join(", ")),
        )
        .await;
        state.configs.extend(drift);
    }
    Ok(TopicOutcome {
        owned: true,
        state: Some(state),
        problem: (!problems.is_empty()).then(|| ("CannotMatchSpec", problems.join("; "))),
    })
}

/// Whether the topic is recorded as this cluster's (it created or adopted it).
pub(super) fn owns(cluster: &ChatCluster) -> bool {
    cluster.status.as_ref().and_then(|s| s.topic.as_deref()) == Some(cluster.topic().as_str())
}

/// The recorded and the present id, when the topic Kafka has is not the
/// one this cluster recorded (deleted and made again behind its back).
pub(super) fn replaced(cluster: &ChatCluster, state: &TopicState) -> Option<(String, String)> {
    let recorded = cluster.status.as_ref()?.topic_id.as_deref()?;
    let now = state.id.as_deref()?;
    (owns(cluster) && recorded != now).then(|| (recorded.to_owned(), now.to_owned()))
}

fn show(configs: &BTreeMap<String, String>) -> String {
    configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The topic-level configs the spec asks for, of those the admin lets the
/// controller manage.
fn desired_configs(cluster: &ChatCluster, managed: &BTreeSet<String>) -> BTreeMap<String, String> {
    let kafka = &cluster.spec.kafka;
    let ttl = Duration::from_millis(kafka.retention_ms.max(0) as u64);
    let min_insync = kafka
        .min_in_sync_replicas
        .unwrap_or_else(|| rules::default_min_insync_replicas(kafka.replication_factor));
    rules::configs(ttl)
        .into_iter()
        .chain([(rules::MIN_INSYNC_REPLICAS, min_insync.to_string())])
        .filter(|(k, _)| managed.contains(*k))
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// The bootstrap servers of a list, normalized.
fn servers(list: &str) -> BTreeSet<String> {
    list.split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Why `list` may not be used, when the admin restricted the servers.
fn disallowed_servers(list: &str, allowed: Option<&BTreeSet<String>>) -> Option<String> {
    let allowed = allowed?;
    let refused: Vec<String> = servers(list).into_iter().filter(|s| !allowed.contains(s)).collect();
    (!refused.is_empty()).then(|| {
        format!(
            "bootstrap servers {} are not allowed by the controller (allowed: {})",
            refused.join(","),
            allowed.iter().cloned().collect::<Vec<_>>().join(",")
        )
    })
}

/// Another ChatCluster on the same Kafka (a bootstrap server in common) and
/// topic that came first: the one that owns the topic, else the older one
/// (ties go by namespace and name).
fn owner_before(cluster: &ChatCluster, all: &[std::sync::Arc<ChatCluster>]) -> Option<std::sync::Arc<ChatCluster>> {
    let rank = |c: &ChatCluster| {
        (
            !owns(c),
            c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            c.namespace(),
            c.name_any(),
        )
    };
    let topic = cluster.topic();
    let ours = servers(&cluster.spec.kafka.bootstrap_servers);
    all.iter()
        .filter(|o| o.uid() != cluster.uid() && o.metadata.deletion_timestamp.is_none())
        .filter(|o| o.topic() == topic && !servers(&o.spec.kafka.bootstrap_servers).is_disjoint(&ours))
        .filter(|o| rank(o) < rank(cluster))
        .min_by_key(|o| rank(o))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChatClusterSpec, ChatClusterStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::sync::Arc;

    fn cluster(ns: &str, name: &str, servers: &str, created: i64) -> Arc<ChatCluster> {
        let spec: ChatClusterSpec = serde_json::from_value(serde_json::json!({
            "kafka": {"bootstrapServers": servers, "topic": "shared"}
        }))
        .unwrap();
        let mut c = ChatCluster::new(name, spec);
        c.metadata.namespace = Some(ns.into());
        c.metadata.uid = Some(format!("{ns}/{name}"));
        c.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()));
        Arc::new(c)
    }

    #[test]
    fn the_later_of_two_clusters_on_one_topic_is_refused() {
        let first = cluster("a", "demo", "kafka:9092", 100);
        let second = cluster("b", "demo", "KAFKA:9092, other:9092", 200);
        let elsewhere = cluster("c", "demo", "another-kafka:9092", 50);
        let all = vec![first.clone(), second.clone(), elsewhere];
        assert_eq!(owner_before(&second, &all).map(|c| c.name_any()), Some("demo".into()));
        assert!(owner_before(&first, &all).is_none());
        // The one that owns the topic keeps it, however old the other.
        let mut owner = (*second).clone();
        owner.status = Some(ChatClusterStatus {
            topic: Some("shared".into()),
            ..ChatClusterStatus::default()
        });
        let all = vec![first.clone(), Arc::new(owner.clone())];
        assert!(owner_before(&owner, &all).is_none());
        assert!(owner_before(&first, &all).is_some());
    }

    #[test]
    fn only_allowed_servers_pass_and_only_managed_configs_are_set() {
        let allowed = BTreeSet::from(["kafka:9092".to_owned()]);
        assert_eq!(disallowed_servers(" Kafka:9092 ", Some(&allowed)), None);
        assert!(
            disallowed_servers("kafka:9092,evil:9092", Some(&allowed))
                .unwrap()
                .contains("evil:9092")
        );
        assert_eq!(disallowed_servers("evil:9092", None), None);

        let c = cluster("a", "demo", "kafka:9092", 1);
        let all: BTreeSet<String> = rules::MANAGED_CONFIGS.iter().map(|s| s.to_string()).collect();
        let configs = desired_configs(&c, &all);
        assert_eq!(configs["min.insync.replicas"], "2");
        assert_eq!(configs["retention.ms"], "300000");
        let without_segment: BTreeSet<String> = all.into_iter().filter(|k| k != "segment.ms").collect();
        assert!(!desired_configs(&c, &without_segment).contains_key("segment.ms"));
    }
}
