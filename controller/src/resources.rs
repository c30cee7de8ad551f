//! The Kubernetes objects a ChatCluster owns, built from its spec: pure
//! functions, applied by the reconciler with server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle,
    LifecycleHandler, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    SleepAction, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::crd::{CHILD_SUFFIX, ChatCluster, SecretKeyRef};

/// The port the gateway listens on in its pod.
pub const GATEWAY_PORT: i32 = 8080;

/// The name of the gateway Deployment, Service, HPA and PDB.
pub fn gateway_name(cluster: &ChatCluster) -> String {
    format!("{}{CHILD_SUFFIX}", cluster.metadata.name.as_deref().unwrap_or("chat"))
}

/// The labels that select a cluster's gateway pods.
pub fn selector_labels(cluster: &ChatCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "whisper-gateway".to_owned()),
        (
            "app.kubernetes.io/instance".to_owned(),
            cluster.metadata.name.clone().unwrap_or_default(),
        ),
    ])
}

/// The selector as the scale subresource reports it.
pub fn selector_string(cluster: &ChatCluster) -> String {
    selector_labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(cluster: &ChatCluster) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert("app.kubernetes.io/part-of".into(), "whisperrooms".into());
    labels.insert("app.kubernetes.io/managed-by".into(), "whisper-controller".into());
    labels
}

fn metadata(cluster: &ChatCluster) -> ObjectMeta {
    ObjectMeta {
        name: Some(gateway_name(cluster)),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(labels(cluster)),
        owner_references: cluster.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Annotation of the gateways' pod template: the hash of every referenced
/// Secret's value, so a change rolls the gateways.
pub const SECRET_HASH_ANNOTATION: &str = "whisperrooms.io/secret-hash";

/// Where Secret files are mounted in the gateway container.
const SECRETS_DIR: &str = "/etc/whisper";

/// A file of a Secret mounted into the gateways: the volume, its mount, and
/// the file's path.
struct SecretFiles {
    volume: &'static str,
    secret: String,
    /// (key in the Secret, file name)
    files: Vec<(String, &'static str)>,
}

impl SecretFiles {
    fn path(&self, file: &str) -> String {
        format!("{SECRETS_DIR}/{}/{file}", self.volume)
    }
}

/// The Secret files the spec asks for.
fn secret_files(cluster: &ChatCluster) -> Vec<SecretFiles> {
    let auth = cluster.spec.kafka.auth.as_ref();
    let mut out = Vec::new();
    if let Some(ca) = auth.and_then(|a| a.ca_secret_ref.as_ref()) {
        out.push(SecretFiles {
            volume: "kafka-ca",
            secret: ca.name.clone(),
            files: vec![(ca.key.clone(), "ca.crt")],
        });
    }
    if let Some(cert) = auth.and_then(|a| a.client_cert_secret_ref.as_ref()) {
        out.push(SecretFiles {
            volume: "kafka-client-cert",
            secret: cert.name.clone(),
            files: vec![(cert.cert_key.clone(), "tls.crt"), (cert.key_key.clone(), "tls.key")],
        });
    }
    if let Some(ca) = cluster.spec.redis.as_ref().and_then(|r| r.ca_secret_ref.as_ref()) {
        out.push(SecretFiles {
            volume: "redis-ca",
            secret: ca.name.clone(),
            files: vec![(ca.key.clone(), "ca.crt")],
        });
    }
    out
}

/// The gateway settings, as the operations contract names them.
fn gateway_env(cluster: &ChatCluster) -> Vec<EnvVar> {
    let spec = &cluster.spec;
    let gateway = &spec.gateway;
    let mut vars = vec![
        env("WHISPER_LISTEN", format!("0.0.0.0:{GATEWAY_PORT}")),
        env("WHISPER_KAFKA_BROKERS", &spec.kafka.bootstrap_servers),
        env("WHISPER_KAFKA_TOPIC", cluster.topic()),
        // The controller owns the topic: gateways never create it.
        env("WHISPER_KAFKA_CREATE_TOPIC", "false"),
        env("WHISPER_MESSAGE_TTL", format!("{}ms", spec.kafka.retention_ms)),
        EnvVar {
            name: "WHISPER_GATEWAY_ID".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
        },
    ];
    let files = secret_files(cluster);
    let file = |volume: &str, name: &str| files.iter().find(|f| f.volume == volume).map(|f| f.path(name));
    if let Some(auth) = &spec.kafka.auth {
        vars.push(env("WHISPER_KAFKA_SECURITY_PROTOCOL", auth.security_protocol.as_str()));
        if let Some(sasl) = &auth.sasl {
            vars.push(env("WHISPER_KAFKA_SASL_MECHANISM", sasl.mechanism.as_str()));
            vars.push(secret_env("WHISPER_KAFKA_SASL_USERNAME", &sasl.username_secret_ref));
            vars.push(secret_env("WHISPER_KAFKA_SASL_PASSWORD", &sasl.password_secret_ref));
        }
        vars.extend(file("kafka-ca", "ca.crt").map(|p| env("WHISPER_KAFKA_CA_FILE", p)));
        vars.extend(file("kafka-client-cert", "tls.crt").map(|p| env("WHISPER_KAFKA_CERT_FILE", p)));
        vars.extend(file("kafka-client-cert", "tls.key").map(|p| env("WHISPER_KAFKA_KEY_FILE", p)));
    }
    if let Some(redis) = &spec.redis {
        if let Some(url) = &redis.url {
            vars.push(env("WHISPER_REDIS_URL", url));
        } else if let Some(secret) = &redis.url_secret_ref {
            vars.push(secret_env("WHISPER_REDIS_URL", secret));
        }
        vars.extend(file("redis-ca", "ca.crt").map(|p| env("WHISPER_REDIS_CA_FILE", p)));
    }
    if let Some(auth) = &gateway.auth {
        vars.push(secret_env("WHISPER_JWT_SECRET", &auth.jwt_secret_ref));
        vars.extend(auth.issuer.as_ref().map(|v| env("WHISPER_JWT_ISSUER", v)));
        vars.extend(auth.audience.as_ref().map(|v| env("WHISPER_JWT_AUDIENCE", v)));
    }
    if !gateway.allowed_origins.is_empty() {
        vars.push(env("WHISPER_ALLOWED_ORIGINS", gateway.allowed_origins.join(",")));
    }
    if gateway.require_encryption {
        vars.push(env("WHISPER_REQUIRE_ENCRYPTION", "true"));
    }
    vars.extend(
        gateway
            .max_connections
            .map(|v| env("WHISPER_MAX_CONNECTIONS", v.to_string())),
    );
    vars.extend(gateway.messages_per_second.map(|v| env("WHISPER_RATE", v.to_string())));
    vars.extend(gateway.log_level.as_ref().map(|v| env("WHISPER_LOG", v)));
    vars.extend(
        gateway
            .otlp_endpoint
            .as_ref()
            .filter(|v| !v.is_empty())
            .map(|v| env("OTEL_EXPORTER_OTLP_ENDPOINT", v)),
    );
    vars
}

/// Spread over zones, then hosts, as far as the nodes allow (never blocks
/// scheduling).
fn default_spread(cluster: &ChatCluster) -> Vec<TopologySpreadConstraint> {
    ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                match_expressions: None,
            }),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The gateway Deployment. With autoscaling on, `replicas` is left out so
/// the HPA owns it. `secret_hash` goes on the pod template, so a changed
/// Secret rolls the gateways.
pub fn deployment(cluster: &ChatCluster, image: &str, secret_hash: &str) -> Deployment {
    let gateway = &cluster.spec.gateway;
    let files = secret_files(cluster);
    let container = Container {
        name: "gateway".into(),
        image: Some(gateway.image.clone().unwrap_or_else(|| image.to_owned())),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: GATEWAY_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(gateway_env(cluster)),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        // Let endpoints drop the pod before SIGTERM closes its sockets (1001).
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 5 }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(gateway.resources.clone().unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("128Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), Quantity("512Mi".into()))])),
            ..ResourceRequirements::default()
        })),
        volume_mounts: (!files.is_empty()).then(|| {
            files
                .iter()
                .map(|f| VolumeMount {
                    name: f.volume.into(),
                    mount_path: format!("{SECRETS_DIR}/{}", f.volume),
                    read_only: Some(true),
                    ..VolumeMount::default()
                })
                .collect()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let mut pod_annotations = gateway.pod_annotations.clone();
    pod_annotations.insert(SECRET_HASH_ANNOTATION.to_owned(), secret_hash.to_owned());
    // The user's labels first: the selector's and ours win.
    let mut pod_labels = gateway.pod_labels.clone();
    pod_labels.extend(labels(cluster));
    let volumes: Vec<Volume> = files
        .iter()
        .map(|f| Volume {
            name: f.volume.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(f.secret.clone()),
                items: Some(
                    f.files
                        .iter()
                        .map(|(key, file)| KeyToPath {
                            key: key.clone(),
                            path: (*file).into(),
                            mode: None,
                        })
                        .collect(),
                ),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        })
        .collect();
    Deployment {
        metadata: metadata(cluster),
        spec: Some(DeploymentSpec {
            replicas: gateway.autoscaling.is_none().then_some(gateway.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    // Gateways never talk to the Kubernetes API.
                    automount_service_account_token: Some(false),
                    node_selector: (!gateway.node_selector.is_empty()).then(|| gateway.node_selector.clone()),
                    tolerations: (!gateway.tolerations.is_empty()).then(|| gateway.tolerations.clone()),
                    affinity: gateway.affinity.clone(),
                    topology_spread_constraints: Some(
                        gateway
                            .topology_spread_constraints
                            .clone()
                            .unwrap_or_else(|| default_spread(cluster)),
                    )
                    .filter(|c| !c.is_empty()),
                    priority_class_name: gateway.priority_class_name.clone(),
                    image_pull_secrets: (!gateway.image_pull_secrets.is_empty())
                        .then(|| gateway.image_pull_secrets.clone()),
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        // Numeric, so the kubelet can check it is not root.
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The Service in front of the gateways.
pub fn service(cluster: &ChatCluster) -> Service {
    Service {
        metadata: metadata(cluster),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(cluster)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: GATEWAY_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The autoscaler, when the spec asks for one.
pub fn autoscaler(cluster: &ChatCluster) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = cluster.spec.gateway.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: metadata(cluster),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: gateway_name(cluster),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(autoscaling.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        }),
        status: None,
    })
}

/// The disruption budget, when the spec asks for one.
pub fn disruption_budget(cluster: &ChatCluster) -> Option<PodDisruptionBudget> {
    let budget = cluster.spec.gateway.pod_disruption_budget.as_ref()?;
    Some(PodDisruptionBudget {
        metadata: metadata(cluster),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(budget.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChatClusterSpec;

    fn cluster(spec: serde_json::Value) -> ChatCluster {
        let spec: ChatClusterSpec = serde_json::from_value(spec).unwrap();
        let mut cluster = ChatCluster::new("demo", spec);
        cluster.metadata.namespace = Some("chat".into());
        cluster.metadata.uid = Some("uid-1".into());
        cluster
    }

    fn env_of(d: &Deployment) -> BTreeMap<String, String> {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_else(|| "<from>".into())))
            .collect()
    }

    #[test]
    fn the_deployment_passes_the_settings_of_the_contract() {
        let c = cluster(serde_json::json!({
            "kafka": {"bootstrapServers": "kafka:9092", "retentionMs": 120000},
            "redis": {"url": "redis://redis:6379"},
            "gateway": {"replicas": 3}
        }));
        let d = deployment(&c, "whisperrooms/gateway:0.1.0", "h1");
        let env = env_of(&d);
        assert_eq!(env["WHISPER_KAFKA_BROKERS"], "kafka:9092");
        assert_eq!(env["WHISPER_KAFKA_TOPIC"], "chat.demo.messages");
        assert_eq!(env["WHISPER_KAFKA_CREATE_TOPIC"], "false");
        assert_eq!(env["WHISPER_MESSAGE_TTL"], "120000ms");
        assert_eq!(env["WHISPER_REDIS_URL"], "redis://redis:6379");
        assert_eq!(env["WHISPER_GATEWAY_ID"], "<from>");
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ChatCluster", "demo", Some(true))
        );
        let container = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("whisperrooms/gateway:0.1.0"));
        assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
        assert!(autoscaler(&c).is_none() && disruption_budget(&c).is_none());
    }

    #[test]
    fn autoscaling_hands_replicas_to_the_hpa() {
        let c = cluster(serde_json::json!({
            "kafka": {"bootstrapServers": "kafka:9092"},
            "redis": {"urlSecretRef": {"name": "redis", "key": "url"}},
            "gateway": {"autoscaling": {"minReplicas": 2, "maxReplicas": 9}, "podDisruptionBudget": {}}
        }));
        let d = deployment(&c, "img", "h1");
        assert_eq!(d.spec.as_ref().unwrap().replicas, None);
        let hpa = autoscaler(&c).unwrap();
        let spec = hpa.spec.unwrap();
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 9));
        assert_eq!(spec.scale_target_ref.name, "demo-gateway");
        let pdb = disruption_budget(&c).unwrap();
        assert_eq!(pdb.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(env_of(&d)["WHISPER_REDIS_URL"], "<from>");
        assert_eq!(
            selector_string(&c),
            "app.kubernetes.io/instance=demo,app.kubernetes.io/name=whisper-gateway"
        );
    }

    fn pod(d: &Deployment) -> (&ObjectMeta, &PodSpec) {
        let template = &d.spec.as_ref().unwrap().template;
        (template.metadata.as_ref().unwrap(), template.spec.as_ref().unwrap())
    }

    #[test]
    fn secured_kafka_redis_and_gateway_auth_reach_the_gateways_from_secrets() {
        let c = cluster(serde_json::json!({
            "kafka": {"bootstrapServers": "kafka:9093", "auth": {
                "securityProtocol": "SASL_SSL",
                "caSecretRef": {"name": "kafka-ca", "key": "ca.crt"},
                "clientCertSecretRef": {"name": "kafka-user", "certKey": "user.crt", "keyKey": "user.key"},
                "sasl": {"mechanism": "SCRAM-SHA-512",
                         "usernameSecretRef": {"name": "kafka-user", "key": "username"},
                         "passwordSecretRef": {"name": "kafka-user", "key": "password"}}}},
            "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "caSecretRef": {"name": "redis-ca", "key": "ca.crt"}},
            "gateway": {"auth": {"jwtSecretRef": {"name": "chat-jwt", "key": "secret"}, "issuer": "https://id.example.com", "audience": "whisperrooms"},
                        "allowedOrigins": ["https://chat.example.com", "https://b.example.com"],
                        "requireEncryption": true, "maxConnections": 500, "messagesPerSecond": 3,
                        "logLevel": "debug", "otlpEndpoint": "http://otel:4318"}
        }));
        let d = deployment(&c, "img", "abc");
        let env = env_of(&d);
        for (name, value) in [
            ("WHISPER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("WHISPER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("WHISPER_KAFKA_SASL_USERNAME", "<from>"),
            ("WHISPER_KAFKA_SASL_PASSWORD", "<from>"),
            ("WHISPER_KAFKA_CA_FILE", "/etc/whisper/kafka-ca/ca.crt"),
            ("WHISPER_KAFKA_CERT_FILE", "/etc/whisper/kafka-client-cert/tls.crt"),
            ("WHISPER_KAFKA_KEY_FILE", "/etc/whisper/kafka-client-cert/tls.key"),
            ("WHISPER_REDIS_URL", "<from>"),
            ("WHISPER_REDIS_CA_FILE", "/etc/whisper/redis-ca/ca.crt"),
            ("WHISPER_JWT_SECRET", "<from>"),
            ("WHISPER_JWT_ISSUER", "https://id.example.com"),
            ("WHISPER_JWT_AUDIENCE", "whisperrooms"),
            (
                "WHISPER_ALLOWED_ORIGINS",
                "https://chat.example.com,https://b.example.com",
            ),
            ("WHISPER_REQUIRE_ENCRYPTION", "true"),
            ("WHISPER_MAX_CONNECTIONS", "500"),
            ("WHISPER_RATE", "3"),
            ("WHISPER_LOG", "debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318"),
        ] {
            assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
        }
        let (meta, spec) = pod(&d);
        assert_eq!(meta.annotations.as_ref().unwrap()[SECRET_HASH_ANNOTATION], "abc");
        let volumes: Vec<(String, String)> = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| (v.name.clone(), v.secret.as_ref().unwrap().secret_name.clone().unwrap()))
            .collect();
        assert_eq!(
            volumes,
            [
                ("kafka-ca".to_owned(), "kafka-ca".to_owned()),
                ("kafka-client-cert".to_owned(), "kafka-user".to_owned()),
                ("redis-ca".to_owned(), "redis-ca".to_owned())
            ]
        );
        assert_eq!(spec.containers[0].volume_mounts.as_ref().unwrap().len(), 3);
    }

    #[test]
    fn the_pod_template_takes_scheduling_settings_and_spreads_by_default() {
        let c = cluster(serde_json::json!({
            "kafka": {"bootstrapServers": "kafka:9092"},
            "gateway": {"nodeSelector": {"pool": "chat"},
                        "tolerations": [{"key": "chat", "operator": "Exists", "effect": "NoSchedule"}],
                        "priorityClassName": "high", "imagePullSecrets": [{"name": "registry"}],
                        "resources": {"requests": {"cpu": "1"}},
                        "podAnnotations": {"team": "chat"},
                        "podLabels": {"team": "chat", "app.kubernetes.io/name": "mine"}}
        }));
        let d = deployment(&c, "img", "h");
        let (meta, spec) = pod(&d);
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.node_selector.as_ref().unwrap()["pool"], "chat");
        assert_eq!(spec.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("chat"));
        assert_eq!(spec.priority_class_name.as_deref(), Some("high"));
        assert_eq!(spec.image_pull_secrets.as_ref().unwrap()[0].name, "registry");
        let requests = spec.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert_eq!(requests["cpu"], Quantity("1".into()));
        assert_eq!(meta.annotations.as_ref().unwrap()["team"], "chat");
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "chat");
        assert_eq!(
            labels["app.kubernetes.io/name"], "whisper-gateway",
            "the selector's labels win"
        );
        assert!(!meta.annotations.as_ref().unwrap().contains_key("prometheus.io/scrape"));
        let keys: Vec<&str> = spec
            .topology_spread_constraints
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| t.topology_key.as_str())
            .collect();
        assert_eq!(keys, ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]);

        let mut none = c.clone();
        none.spec.gateway.topology_spread_constraints = Some(vec![]);
        assert!(
            pod(&deployment(&none, "img", "h"))
                .1
                .topology_spread_constraints
                .is_none()
        );
    }
}
