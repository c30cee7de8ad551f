//! The Kubernetes objects a ChatCluster owns, built from its spec: pure
//! functions, applied by the reconciler with server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, SleepAction,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::crd::ChatCluster;

/// The port the gateway listens on in its pod.
pub const GATEWAY_PORT: i32 = 8080;

/// The name of the gateway Deployment, Service, HPA and PDB.
pub fn gateway_name(cluster: &ChatCluster) -> String {
    format!("{}-gateway", cluster.metadata.name.as_deref().unwrap_or("chat"))
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

/// The gateway settings, as the operations contract names them.
fn gateway_env(cluster: &ChatCluster) -> Vec<EnvVar> {
    let spec = &cluster.spec;
    let mut vars = vec![
        env("WHISPER_LISTEN", format!("0.0.0.0:{GATEWAY_PORT}")),
        env("WHISPER_KAFKA_BROKERS", &spec.kafka.bootstrap_servers),
        env("WHISPER_KAFKA_TOPIC", cluster.topic()),
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
    if let Some(redis) = &spec.redis {
        if let Some(url) = &redis.url {
            vars.push(env("WHISPER_REDIS_URL", url));
        } else if let Some(secret) = &redis.url_secret_ref {
            vars.push(EnvVar {
                name: "WHISPER_REDIS_URL".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: secret.key.clone(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
            });
        }
    }
    vars
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
/// the HPA owns it.
pub fn deployment(cluster: &ChatCluster, image: &str) -> Deployment {
    let gateway = &cluster.spec.gateway;
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
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("128Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), Quantity("512Mi".into()))])),
            ..ResourceRequirements::default()
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
    let mut pod_annotations = BTreeMap::new();
    pod_annotations.insert("prometheus.io/scrape".to_owned(), "true".to_owned());
    pod_annotations.insert("prometheus.io/port".to_owned(), GATEWAY_PORT.to_string());
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
                    labels: Some(labels(cluster)),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
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
        let d = deployment(&c, "whisperrooms/gateway:0.1.0");
        let env = env_of(&d);
        assert_eq!(env["WHISPER_KAFKA_BROKERS"], "kafka:9092");
        assert_eq!(env["WHISPER_KAFKA_TOPIC"], "demo-messages");
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
        let d = deployment(&c, "img");
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
}
