//! The `ChatCluster` resource: what a user asks for (spec) and what the
//! controller reports (status). The CRD YAML in `k8s/` and the chart is
//! generated from these types by `crdgen`, never written by hand.

// The schema derives re-declare these types in generated code, which the
// lint cannot see through; they are public API all the same.
#![allow(unreachable_pub)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// Shortest message TTL (and so `retentionMs`) a cluster may ask for.
pub const MIN_RETENTION_MS: i64 = 1_000;
/// Longest message TTL a cluster may ask for.
pub const MAX_RETENTION_MS: i64 = 86_400_000;

/// What the user asks for: the topic, the presence store and the gateways.
// Several printer columns share a type: not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "whisperrooms.io",
    version = "v1alpha1",
    kind = "ChatCluster",
    namespaced,
    shortname = "chat",
    category = "whisperrooms",
    status = "ChatClusterStatus",
    doc = "A WhisperRooms chat cluster: one Kafka topic and the gateways that serve it",
    scale(
        spec_replicas_path = ".spec.gateway.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Topic", type_ = "string", json_path = ".status.topic"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".status.partitions"),
    printcolumn(
        name = "Retention",
        type_ = "integer",
        json_path = ".status.retentionMs",
        description = "retention.ms of the topic: the message TTL"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ChatClusterSpec {
    pub kafka: KafkaSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    #[serde(default)]
    pub gateway: GatewaySpec,
}

/// The Kafka topic of the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.topic) == has(oldSelf.topic) && (!has(self.topic) || self.topic == oldSelf.topic)").message("kafka.topic is immutable: create a new ChatCluster for a new topic"))]
pub struct KafkaSpec {
    /// Bootstrap servers, e.g. `kafka.kafka.svc:9092`.
    #[x_kube(validation = Rule::new("self.size() > 0").message("kafka.bootstrapServers must not be empty"))]
    pub bootstrap_servers: String,
    /// Topic name; default `<metadata.name>-messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9._-]{1,249}$')").message("kafka.topic must be 1-249 of a-z A-Z 0-9 . _ -"))]
    pub topic: Option<String>,
    /// Partitions of the topic; may grow, never shrink.
    #[serde(default = "default_partitions")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10000").message("kafka.partitions must be between 1 and 10000"))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("kafka.partitions can grow but never shrink"))]
    pub partitions: i32,
    /// Replication factor of the topic, fixed at creation.
    #[serde(default = "default_replication_factor")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 32").message("kafka.replicationFactor must be between 1 and 32"))]
    pub replication_factor: i32,
    /// `retention.ms` of the topic, which is also the message TTL of the
    /// gateways: 1 s to 24 h; 2–5 minutes is typical.
    #[serde(default = "default_retention_ms")]
    #[x_kube(validation = Rule::new("self >= 1000 && self <= 86400000").message("kafka.retentionMs must be between 1000 (1 s) and 86400000 (24 h)"))]
    pub retention_ms: i64,
    /// What happens to the topic when the ChatCluster is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_partitions() -> i32 {
    12
}

fn default_replication_factor() -> i32 {
    3
}

fn default_retention_ms() -> i64 {
    300_000
}

/// What happens to the topic when its ChatCluster goes.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep the topic (its messages still expire by retention).
    #[default]
    Retain,
    /// Delete the topic with the resource.
    Delete,
}

/// Where presence lives.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("set exactly one of redis.url and redis.urlSecretRef"))]
pub struct RedisSpec {
    /// `redis://host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A key of a Secret holding the URL (when it carries a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the ChatCluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// The gateway Deployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Gateway image; default: the gateway of the controller's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Gateway pods, when no autoscaling is set.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1000").message("gateway.replicas must be between 0 and 1000"))]
    pub replicas: i32,
    /// When set, a HorizontalPodAutoscaler owns the number of gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// When set, a PodDisruptionBudget keeps gateways up during node drains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<DisruptionBudgetSpec>,
}

fn default_replicas() -> i32 {
    2
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_replicas(),
            autoscaling: None,
            pod_disruption_budget: None,
        }
    }
}

/// Autoscaling of the gateways on CPU.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct AutoscalingSpec {
    #[x_kube(validation = Rule::new("self >= 1").message("autoscaling.minReplicas must be at least 1"))]
    pub min_replicas: i32,
    pub max_replicas: i32,
    #[serde(default = "default_cpu_target")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("targetCPUUtilizationPercentage must be between 1 and 100"))]
    #[serde(rename = "targetCPUUtilizationPercentage")]
    pub target_cpu_utilization_percentage: i32,
}

fn default_cpu_target() -> i32 {
    70
}

/// How many gateways a voluntary disruption may take down at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudgetSpec {
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new("self >= 1").message("podDisruptionBudget.maxUnavailable must be at least 1"))]
    pub max_unavailable: i32,
}

fn default_max_unavailable() -> i32 {
    1
}

/// What the controller observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `TopicReady` and `GatewaysReady`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The topic's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The topic's actual partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// The topic's actual `retention.ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<i64>,
    /// Gateway pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Gateway pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the gateway pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

impl ChatCluster {
    /// The topic name: as given, or `<name>-messages`.
    pub fn topic(&self) -> String {
        self.spec
            .kafka
            .topic
            .clone()
            .unwrap_or_else(|| format!("{}-messages", self.metadata.name.as_deref().unwrap_or("chat")))
    }
}

/// The CRD as YAML, as `crdgen` writes it.
pub fn crd_yaml() -> String {
    let yaml = serde_yaml::to_string(&ChatCluster::crd()).expect("the CRD serializes");
    format!("# Generated by `cargo run -p whisper-controller --bin crdgen`: do not edit.\n{yaml}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_follow_the_contract() {
        let spec: ChatClusterSpec = serde_json::from_value(serde_json::json!({
            "kafka": {"bootstrapServers": "kafka:9092"}
        }))
        .unwrap();
        assert_eq!(spec.kafka.partitions, 12);
        assert_eq!(spec.kafka.retention_ms, 300_000);
        assert_eq!(spec.kafka.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(spec.gateway.replicas, 2);
        let cluster = ChatCluster::new("demo", spec);
        assert_eq!(cluster.topic(), "demo-messages");
    }

    #[test]
    fn the_crd_has_scale_status_printer_columns_and_cel_rules() {
        let crd = serde_json::to_value(ChatCluster::crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "chat");
        assert_eq!(
            version["subresources"]["scale"]["specReplicasPath"],
            ".spec.gateway.replicas"
        );
        assert_eq!(
            version["subresources"]["scale"]["labelSelectorPath"],
            ".status.selector"
        );
        assert!(version["subresources"]["status"].is_object());
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            ["Topic", "Partitions", "Retention", "Replicas", "Ready", "Age"]
        );
        let text = crd.to_string();
        for rule in [
            "self >= oldSelf",
            "self.topic == oldSelf.topic",
            "self >= 1000 && self <= 86400000",
        ] {
            assert!(text.contains(rule), "missing rule {rule}");
        }
    }

    #[test]
    fn the_committed_crd_is_what_the_types_generate() {
        let generated = crd_yaml();
        for path in ["../k8s/crd.yaml", "../charts/whisperrooms/crds/chatcluster.yaml"] {
            let committed = std::fs::read_to_string(path).unwrap_or_default();
            assert!(
                committed == generated,
                "{path} is stale: run `cargo run -p whisper-controller --bin crdgen`"
            );
        }
    }
}
