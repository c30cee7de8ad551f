//! The `ChatCluster` resource: what a user asks for (spec) and what the
//! controller reports (status). The CRD YAML in `k8s/` and the chart is
//! generated from these types by `crdgen`, never written by hand.

// The schema derives re-declare these types in generated code, which the
// lint cannot see through; they are public API all the same.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::{Message, Rule};
use kube::{CustomResource, CustomResourceExt, KubeSchema, ResourceExt};
use serde::{Deserialize, Serialize};
use whisper_common::topic as rules;

/// Annotation that stops all changes to a ChatCluster and its children.
pub const PAUSE_ANNOTATION: &str = "whisperrooms.io/pause-reconciliation";
/// Annotation that lets a ChatCluster take over a topic it did not create.
pub const ADOPT_ANNOTATION: &str = "whisperrooms.io/adopt-topic";

/// The suffix of every owned object's name.
pub const CHILD_SUFFIX: &str = "-gateway";
/// The longest `metadata.name` whose children's names are valid DNS labels
/// (Services need at most 63 characters).
pub const MAX_NAME_LEN: usize = 63 - CHILD_SUFFIX.len();

/// `metadata.name` must make valid child names: a DNS-1035 label once
/// `-gateway` is added.
fn name_rule() -> Rule {
    Rule::new(format!(
        "self.metadata.name.size() <= {MAX_NAME_LEN} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    ))
    .message(Message::Message(format!(
        "metadata.name must be at most {MAX_NAME_LEN} characters of a-z, 0-9 and -, starting with a letter and ending with a letter or digit (the gateway Service is named <name>{CHILD_SUFFIX})"
    )))
}

/// The topic-name rule of [`whisper_common::topic::name_problem`], in CEL.
fn topic_rule() -> Rule {
    Rule::new(format!(
        "self.matches('^[{chars}]{{1,{max}}}$') && !self.startsWith('{reserved}') && self != '.' && self != '..'",
        chars = rules::NAME_CHARS,
        max = rules::MAX_NAME_LEN,
        reserved = rules::RESERVED_PREFIX,
    ))
    .message(Message::Message(format!(
        "kafka.topic must be 1-{max} of {chars}, not . or .., and may not begin with {reserved} (reserved for Kafka's own topics)",
        chars = rules::NAME_CHARS,
        max = rules::MAX_NAME_LEN,
        reserved = rules::RESERVED_PREFIX,
    )))
}

/// The TTL bounds of [`whisper_common::topic`], in CEL.
fn retention_rule() -> Rule {
    let (min, max) = (rules::MIN_TTL.as_millis(), rules::MAX_TTL.as_millis());
    Rule::new(format!("self >= {min} && self <= {max}")).message(Message::Message(format!(
        "kafka.retentionMs must be between {min} ({} s) and {max} ({} h)",
        rules::MIN_TTL.as_secs(),
        rules::MAX_TTL.as_secs() / 3600
    )))
}

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
    validation = name_rule(),
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
#[x_kube(validation = Rule::new("!has(self.minInSyncReplicas) || self.minInSyncReplicas <= self.replicationFactor").message("kafka.minInSyncReplicas must not exceed replicationFactor"))]
pub struct KafkaSpec {
    /// Bootstrap servers, e.g. `kafka.kafka.svc:9092`.
    #[x_kube(validation = Rule::new("self.size() > 0").message("kafka.bootstrapServers must not be empty"))]
    pub bootstrap_servers: String,
    /// Topic name; default `<namespace>.<name>.messages` (clusters made
    /// before keep the topic recorded in their status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = topic_rule())]
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
    #[x_kube(validation = retention_rule())]
    pub retention_ms: i64,
    /// `min.insync.replicas` of the topic: how many replicas have a message
    /// before it is acknowledged; default min(2, replicationFactor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("kafka.minInSyncReplicas must be at least 1"))]
    pub min_in_sync_replicas: Option<i32>,
    /// What happens to the topic when the ChatCluster is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// How the gateways and the controller authenticate to Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<KafkaAuth>,
}

/// TLS and SASL towards Kafka; every secret comes from a Secret in the
/// ChatCluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.securityProtocol.startsWith('SASL_') == has(self.sasl)").message("kafka.auth.sasl is required with SASL_PLAINTEXT and SASL_SSL, and only with them"))]
#[x_kube(validation = Rule::new("self.securityProtocol.endsWith('SSL') || !(has(self.caSecretRef) || has(self.clientCertSecretRef))").message("kafka.auth.caSecretRef and clientCertSecretRef need securityProtocol SSL or SASL_SSL"))]
pub struct KafkaAuth {
    pub security_protocol: SecurityProtocol,
    /// CA bundle (PEM) to verify the brokers; default: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Client certificate and key (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<CertSecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<Sasl>,
}

/// Kafka's `security.protocol`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum SecurityProtocol {
    PLAINTEXT,
    SSL,
    SASL_PLAINTEXT,
    SASL_SSL,
}

impl SecurityProtocol {
    /// The name Kafka clients use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PLAINTEXT => "PLAINTEXT",
            Self::SSL => "SSL",
            Self::SASL_PLAINTEXT => "SASL_PLAINTEXT",
            Self::SASL_SSL => "SASL_SSL",
        }
    }
}

/// SASL credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username_secret_ref: SecretKeyRef,
    pub password_secret_ref: SecretKeyRef,
}

/// Kafka's `sasl.mechanism`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka clients use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A client certificate and its key, two keys of one Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertSecretRef {
    pub name: String,
    pub cert_key: String,
    pub key_key: String,
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
    /// CA bundle (PEM) to verify a `rediss://` server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
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
    /// When set, `hello` must carry a valid token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<GatewayAuth>,
    /// `Origin`s allowed to open a WebSocket; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Refuse `send` without `enc`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_encryption: bool,
    /// Open WebSockets per gateway; default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000000").message("gateway.maxConnections must be between 1 and 1000000"))]
    pub max_connections: Option<i32>,
    /// Messages per second per connection; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10000").message("gateway.messagesPerSecond must be between 1 and 10000"))]
    pub messages_per_second: Option<i32>,
    /// Tracing filter of the gateways, e.g. `info` or `debug`; default info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Where the gateways send traces (OTLP over HTTP); default: nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Resources of the gateway container; default requests 100m CPU and
    /// 128Mi, limit 512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Default (when absent): spread over zones and hosts, as far as the
    /// nodes allow. `[]`: no constraints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Added to the gateway pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Added to the gateway pods (the controller's own labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
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
            auth: None,
            allowed_origins: Vec::new(),
            require_encryption: false,
            max_connections: None,
            messages_per_second: None,
            log_level: None,
            otlp_endpoint: None,
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            topology_spread_constraints: None,
            priority_class_name: None,
            image_pull_secrets: Vec::new(),
            pod_annotations: BTreeMap::new(),
            pod_labels: BTreeMap::new(),
        }
    }
}

/// Token checks of the gateways (HS256).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAuth {
    /// The HS256 secret (at least 32 bytes).
    pub jwt_secret_ref: SecretKeyRef,
    /// When set, tokens must carry this `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
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
    /// Kafka's id of the topic when this cluster recorded it: a topic
    /// deleted and made again under the same name has another, and is not
    /// taken for this cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
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
    /// The topic name: as given; else the one recorded in status (clusters
    /// made before the default changed keep theirs); else
    /// `<namespace>.<name>.messages`.
    pub fn topic(&self) -> String {
        self.spec
            .kafka
            .topic
            .clone()
            .or_else(|| self.status.as_ref().and_then(|s| s.topic.clone()))
            .unwrap_or_else(|| {
                format!(
                    "{}.{}.messages",
                    self.namespace().unwrap_or_else(|| "default".into()),
                    self.name_any()
                )
            })
    }

    /// Whether the annotation `key` is `"true"`.
    pub fn annotated(&self, key: &str) -> bool {
        self.annotations().get(key).is_some_and(|v| v == "true")
    }

    /// Every key of a Secret the spec references, as (Secret, key), sorted.
    pub fn secret_keys(&self) -> Vec<(&str, &str)> {
        let spec = &self.spec;
        fn key(r: &SecretKeyRef) -> (&str, &str) {
            (r.name.as_str(), r.key.as_str())
        }
        let mut keys = Vec::new();
        if let Some(auth) = &spec.kafka.auth {
            keys.extend(auth.ca_secret_ref.as_ref().map(key));
            if let Some(cert) = &auth.client_cert_secret_ref {
                keys.push((cert.name.as_str(), cert.cert_key.as_str()));
                keys.push((cert.name.as_str(), cert.key_key.as_str()));
            }
            if let Some(sasl) = &auth.sasl {
                keys.push(key(&sasl.username_secret_ref));
                keys.push(key(&sasl.password_secret_ref));
            }
        }
        if let Some(redis) = &spec.redis {
            keys.extend(redis.url_secret_ref.as_ref().map(key));
            keys.extend(redis.ca_secret_ref.as_ref().map(key));
        }
        keys.extend(spec.gateway.auth.as_ref().map(|a| key(&a.jwt_secret_ref)));
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Every Secret the spec references.
    pub fn secret_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.secret_keys().into_iter().map(|(name, _)| name).collect();
        names.dedup();
        names
    }
}

/// Annotation of the CRD naming its schema version.
pub const SCHEMA_VERSION_ANNOTATION: &str = "whisperrooms.io/schema-version";
/// The schema version of the CRD these types generate. Raise it with every
/// schema change: a controller refuses to run against an older CRD, whose
/// API server would drop the fields it does not know.
pub const SCHEMA_VERSION: u32 = 3;

/// The CRD, with its schema version.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = ChatCluster::crd();
    crd.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(SCHEMA_VERSION_ANNOTATION.into(), SCHEMA_VERSION.to_string());
    crd
}

/// The CRD as YAML, as `crdgen` writes it.
pub fn crd_yaml() -> String {
    let yaml = serde_yaml::to_string(&crd()).expect("the CRD serializes");
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
        let mut cluster = ChatCluster::new("demo", spec);
        cluster.metadata.namespace = Some("team-a".into());
        assert_eq!(cluster.topic(), "team-a.demo.messages");
        // A cluster made before keeps the topic its status records.
        cluster.status = Some(ChatClusterStatus {
            topic: Some("demo-messages".into()),
            ..ChatClusterStatus::default()
        });
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
