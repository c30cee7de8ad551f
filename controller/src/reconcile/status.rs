//! The status a pass writes: conditions, the topic as Kafka has it, the
//! gateways as their Deployment reports them.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::topic::TopicOutcome;
use crate::crd::{ChatCluster, ChatClusterStatus, PAUSE_ANNOTATION};
use crate::resources;
use crate::topic::TopicError;

/// What became of the gateways in this pass.
#[derive(Debug)]
pub(super) enum Gateways {
    /// The Deployment as the API has it; `None` while the topic is not ready.
    Deployment(Option<Box<Deployment>>),
    /// The API refused an owned object (admission webhook, quota, invalid
    /// name), with its message.
    Rejected(String),
}

/// The reasons of conditions that get a Warning event when they appear.
const WARNED: [&str; 5] = [
    "KafkaUnavailable",
    "CannotMatchSpec",
    "ChildRejected",
    "SecretNotFound",
    "TopicReplaced",
];

/// One condition, keeping its transition time while its status holds.
fn condition(
    old: &ChatClusterStatus,
    generation: Option<i64>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = old
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// Whether the gateways are ready, with the GatewaysReady reason and message.
fn gateways_state(gateways: &Gateways) -> (bool, &'static str, String) {
    let deployment = match gateways {
        Gateways::Rejected(message) => return (false, "ChildRejected", message.clone()),
        Gateways::Deployment(None) => {
            return (
                false,
                "WaitingForTopic",
                "the gateways start once the topic is ready".to_owned(),
            );
        }
        Gateways::Deployment(Some(d)) => d,
    };
    let status = deployment.status.clone().unwrap_or_default();
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = deployment.metadata.generation;
    let (updated, available, total) = (
        status.updated_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
        status.replicas.unwrap_or(0),
    );
    let stalled = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(stalled) = stalled {
        return (
            false,
            "ProgressDeadlineExceeded",
            stalled.message.clone().unwrap_or_else(|| "the rollout stalled".into()),
        );
    }
    if status.observed_generation < generation {
        return (
            false,
            "RolloutInProgress",
            "the Deployment's new spec is not yet seen".into(),
        );
    }
    if updated < wanted || total > updated {
        return (
            false,
            "RolloutInProgress",
            format!("{updated} of {wanted} gateways updated, {total} running"),
        );
    }
    if available < wanted {
        return (
            false,
            "GatewaysNotReady",
            format!("{available} of {wanted} gateways available"),
        );
    }
    (
        true,
        "GatewaysAvailable",
        format!("{available} of {wanted} gateways available"),
    )
}

/// The status for what this pass saw.
pub(super) fn desired(
    cluster: &ChatCluster,
    topic: &Result<TopicOutcome, TopicError>,
    gateways: &Gateways,
) -> ChatClusterStatus {
    let generation = cluster.metadata.generation;
    let old = cluster.status.clone().unwrap_or_default();
    let (topic_ok, topic_reason, topic_message) = match topic {
        Err(e) => (false, "KafkaUnavailable", e.to_string()),
        Ok(TopicOutcome {
            problem: Some((reason, message)),
            ..
        }) => (false, *reason, message.clone()),
        Ok(_) => (
            true,
            "TopicMatchesSpec",
            format!("topic {} matches the spec", cluster.topic()),
        ),
    };
    let state = topic.as_ref().ok().and_then(|o| o.state.as_ref());
    let (gateways_ok, gateways_reason, gateways_message) = gateways_state(gateways);
    let ready_message = match (topic_ok, gateways_ok) {
        (true, true) => "the chat cluster is serving".to_owned(),
        (false, _) => format!("topic: {topic_message}"),
        (true, false) => format!("gateways: {gateways_message}"),
    };
    let deployment_status = match gateways {
        Gateways::Deployment(Some(d)) => d.status.clone().unwrap_or_default(),
        _ => Default::default(),
    };
    let ready = topic_ok && gateways_ok;
    let condition =
        |type_: &str, ok: bool, reason: &str, message: String| condition(&old, generation, type_, ok, reason, message);
    ChatClusterStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                "Ready",
                ready,
                if ready { "Serving" } else { "NotReady" },
                ready_message,
            ),
            condition("TopicReady", topic_ok, topic_reason, topic_message),
            condition("GatewaysReady", gateways_ok, gateways_reason, gateways_message),
            condition(
                "ReconciliationPaused",
                false,
                "Reconciling",
                "the controller keeps the cluster to its spec".into(),
            ),
        ],
        // The topic is recorded once this cluster owns it (created or took it over).
        topic: if topic.as_ref().is_ok_and(|t| t.owned) {
            Some(cluster.topic())
        } else {
            old.topic
        },
        // Its id with it, to notice a topic made again under the same name.
        topic_id: match topic {
            Ok(t) if t.owned => state.and_then(|s| s.id.clone()).or(old.topic_id),
            _ => old.topic_id,
        },
        partitions: state.map(|s| s.partitions).or(old.partitions),
        retention_ms: state
            .and_then(|s| s.configs.get("retention.ms"))
            .and_then(|v| v.parse().ok())
            .or(old.retention_ms),
        replicas: deployment_status.replicas.unwrap_or(0),
        ready_replicas: deployment_status.ready_replicas.unwrap_or(0),
        selector: Some(resources::selector_string(cluster)),
    }
}

/// The status while paused: as it was, with ReconciliationPaused.
pub(super) fn paused(cluster: &ChatCluster) -> ChatClusterStatus {
    with_condition(
        cluster,
        "ReconciliationPaused",
        true,
        "Paused",
        format!("{PAUSE_ANNOTATION} is \"true\": the controller changes nothing"),
    )
}

/// The status when a referenced Secret or key is missing: nothing can go on.
pub(super) fn secret_missing(cluster: &ChatCluster, message: String) -> ChatClusterStatus {
    let mut status = with_condition(cluster, "Ready", false, "SecretNotFound", message.clone());
    let old = status.clone();
    set(
        &mut status,
        condition(
            &old,
            cluster.metadata.generation,
            "GatewaysReady",
            false,
            "SecretNotFound",
            message,
        ),
    );
    status
}

fn with_condition(cluster: &ChatCluster, type_: &str, ok: bool, reason: &str, message: String) -> ChatClusterStatus {
    let mut status = cluster.status.clone().unwrap_or_default();
    let c = condition(&status, cluster.metadata.generation, type_, ok, reason, message);
    set(&mut status, c);
    status
}

fn set(status: &mut ChatClusterStatus, condition: Condition) {
    match status.conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(c) => *c = condition,
        None => status.conditions.push(condition),
    }
}

/// The conditions of `new` whose reason deserves a Warning event and was not
/// on that condition before.
pub(super) fn new_problems<'a>(cluster: &ChatCluster, new: &'a ChatClusterStatus) -> Vec<&'a Condition> {
    let before = |type_: &str| {
        cluster
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == type_)
            .map(|c| c.reason.clone())
    };
    new.conditions
        .iter()
        .filter(|c| c.type_ != "Ready")
        .filter(|c| WARNED.contains(&c.reason.as_str()) && before(&c.type_).as_deref() != Some(c.reason.as_str()))
        .collect()
}
