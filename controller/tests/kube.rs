//! The controller against a real kube-apiserver + etcd and the real Kafka:
//! `whisper-controller` processes reconcile ChatClusters applied through the
//! API, and the tests check Kafka and the API objects as a user would.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use serde_json::{Value, json};
use whisper_controller::crd::ChatCluster;

mod common;
use common::{admin, eventually, service, topic, uuid_like};

struct Env {
    kubeconfig: String,
    kubectl: String,
    brokers: String,
    client: Client,
    namespace: String,
    /// Held for the whole test: shared, or alone for a test that changes
    /// the CRD.
    _crd: CrdUse,
}

/// Tests share the one CRD; a test that changes it runs alone.
static CRD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

enum CrdUse {
    Shared {
        _guard: tokio::sync::RwLockReadGuard<'static, ()>,
    },
    Alone {
        _guard: tokio::sync::RwLockWriteGuard<'static, ()>,
    },
}

async fn env() -> Option<Env> {
    env_with(CrdUse::Shared {
        _guard: CRD.read().await,
    })
    .await
}

async fn env_with(crd: CrdUse) -> Option<Env> {
    let kubeconfig = service("WHISPER_TEST_KUBECONFIG")?;
    let kubectl = service("WHISPER_KUBECTL")?;
    let brokers = service("WHISPER_TEST_KAFKA_BROKERS")?;
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config).unwrap();
    install_crd(&client).await;
    let namespace = format!("t-{}", &uuid_like()[..12]);
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
    Some(Env {
        kubeconfig,
        kubectl,
        brokers,
        client,
        namespace,
        _crd: crd,
    })
}

/// Applies the committed CRD, as a user would, and waits until it serves.
async fn install_crd(client: &Client) {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/crd.yaml")).unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "chatclusters.whisperrooms.io",
        &PatchParams::apply("whisper-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    eventually("the CRD is established", || async {
        let crd = crds.get("chatclusters.whisperrooms.io").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// A `whisper-controller` process watching one namespace, killed on drop.
struct Controller {
    child: Child,
    port: u16,
}

impl Controller {
    fn start(env: &Env, id: &str) -> Controller {
        Self::start_with(env, id, &[])
    }

    /// A controller with extra settings.
    fn start_with(env: &Env, id: &str, settings: &[(&str, &str)]) -> Controller {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_whisper-controller"))
            .envs(settings.iter().copied())
            .env("KUBECONFIG", &env.kubeconfig)
            .env("WHISPER_LISTEN", format!("127.0.0.1:{port}"))
            .env("WHISPER_WATCH_NAMESPACE", &env.namespace)
            .env("WHISPER_LEASE_NAMESPACE", &env.namespace)
            .env("WHISPER_CONTROLLER_ID", id)
            .env("WHISPER_RESYNC", "2s")
            .env("WHISPER_LOG", "info,whisper_controller=debug")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Controller { child, port }
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let body = http_get(self.port, "/metrics").await?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    Some(out)
}

fn chat_cluster(env: &Env, name: &str, topic: &str, kafka: Value, gateway: Value) -> Value {
    let mut kafka_spec = json!({"bootstrapServers": env.brokers, "topic": topic, "replicationFactor": 1, "partitions": 3, "retentionMs": 60000});
    for (k, v) in kafka.as_object().unwrap() {
        kafka_spec[k] = v.clone();
    }
    json!({"apiVersion": "whisperrooms.io/v1alpha1", "kind": "ChatCluster",
           "metadata": {"name": name, "namespace": env.namespace},
           "spec": {"kafka": kafka_spec, "redis": {"url": "redis://redis:6379"}, "gateway": gateway}})
}

async fn apply(env: &Env, object: &Value) {
    let api: Api<ChatCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    api.patch(
        object["metadata"]["name"].as_str().unwrap(),
        &PatchParams::apply("whisper-tests").force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap();
}

/// Runs kubectl against the test API server; returns (success, stdout + stderr).
fn kubectl(env: &Env, args: &[&str]) -> (bool, String) {
    let out = Command::new(&env.kubectl)
        .args(["--kubeconfig", &env.kubeconfig, "-n", &env.namespace])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn kubectl_apply(env: &Env, object: &Value) -> (bool, String) {
    let file = std::env::temp_dir().join(format!("chat-{}.json", uuid_like()));
    std::fs::write(&file, object.to_string()).unwrap();
    let result = kubectl(
        env,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            file.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(file);
    result
}

async fn condition(env: &Env, name: &str, type_: &str) -> Option<(String, String)> {
    let api: Api<ChatCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let status = api.get(name).await.ok()?.status?;
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// (type, reason) of every Event in the namespace.
async fn events(env: &Env) -> Vec<(String, String)> {
    Api::<Event>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .into_iter()
                .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_condition(env: &Env, name: &str, type_: &str, expected: (&str, &str)) {
    eventually(&format!("{name} has {type_} {expected:?}"), || async {
        let (status, reason) = condition(env, name, type_).await?;
        (status == expected.0 && reason == expected.1).then_some(())
    })
    .await;
}

async fn wait_event(env: &Env, type_: &str, reason: &str) {
    eventually(&format!("a {type_} event {reason}"), || async {
        events(env)
            .await
            .iter()
            .any(|(t, r)| t == type_ && r == reason)
            .then_some(())
    })
    .await;
}

/// The gateway container's environment: name → (value, `secret/key` it
/// comes from).
fn gateway_env(pod: k8s_openapi::api::core::v1::PodSpec) -> BTreeMap<String, (Option<String>, Option<String>)> {
    pod.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let from = e
                .value_from
                .and_then(|f| f.secret_key_ref)
                .map(|s| format!("{}/{}", s.name, s.key));
            (e.name, (e.value, from))
        })
        .collect()
}

async fn deployment(env: &Env, name: &str) -> Option<Deployment> {
    Api::<Deployment>::namespaced(env.client.clone(), &env.namespace)
        .get_opt(name)
        .await
        .ok()?
}

#[tokio::test]
async fn a_chat_cluster_gets_its_topic_gateways_and_status_and_drift_is_put_back() {
    let Some(env) = env().await else { return };
    let controller = Controller::start(&env, "solo");
    let topic_name = format!("ctl-{}", &uuid_like()[..10]);
    apply(
        &env,
        &chat_cluster(&env, "demo", &topic_name, json!({}), json!({"replicas": 2})),
    )
    .await;

    let (partitions, configs) = eventually("the topic exists", || topic(&env.brokers, &topic_name)).await;
    assert_eq!(partitions, 3);
    assert_eq!(configs.get("retention.ms").map(String::as_str), Some("60000"));
    assert_eq!(configs.get("cleanup.policy").map(String::as_str), Some("delete"));
    assert!(configs.contains_key("segment.ms"));
    // acks=all is durable on min(2, replicationFactor) replicas.
    assert_eq!(configs.get("min.insync.replicas").map(String::as_str), Some("1"));

    let d = eventually("the Deployment exists", || deployment(&env, "demo-gateway")).await;
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let spread: Vec<String> = pod
        .topology_spread_constraints
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.topology_key)
        .collect();
    assert_eq!(spread, ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]);
    let env_vars = gateway_env(pod);
    for (name, value) in [
        ("WHISPER_KAFKA_BROKERS", env.brokers.as_str()),
        ("WHISPER_KAFKA_TOPIC", topic_name.as_str()),
        ("WHISPER_MESSAGE_TTL", "60000ms"),
        ("WHISPER_REDIS_URL", "redis://redis:6379"),
        ("WHISPER_KAFKA_CREATE_TOPIC", "false"),
    ] {
        assert_eq!(env_vars[name].0.as_deref(), Some(value), "{name}");
    }
    let owner = &d.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ChatCluster", "demo", Some(true))
    );
    let svc = Api::<Service>::namespaced(env.client.clone(), &env.namespace)
        .get("demo-gateway")
        .await
        .unwrap();
    assert_eq!(svc.metadata.owner_references.unwrap()[0].name, "demo");

    // No kubelet or Deployment controller here: the rollout never finishes,
    // and status says so.
    assert_eq!(
        eventually("TopicReady is set", || condition(&env, "demo", "TopicReady")).await,
        ("True".into(), "TopicMatchesSpec".into())
    );
    assert_eq!(
        condition(&env, "demo", "GatewaysReady").await,
        Some(("False".into(), "RolloutInProgress".into()))
    );
    assert_eq!(
        condition(&env, "demo", "Ready").await.map(|c| c.0),
        Some("False".into())
    );
    let status = Api::<ChatCluster>::namespaced(env.client.clone(), &env.namespace)
        .get("demo")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!((status.partitions, status.retention_ms), (Some(3), Some(60000)));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=demo,app.kubernetes.io/name=whisper-gateway")
    );
    let (ok, table) = kubectl(&env, &["get", "chat", "demo"]);
    assert!(ok && table.contains(&topic_name) && table.contains("60000"), "{table}");

    // A new retention reaches the topic.
    apply(
        &env,
        &chat_cluster(
            &env,
            "demo",
            &topic_name,
            json!({"retentionMs": 120000}),
            json!({"replicas": 2}),
        ),
    )
    .await;
    eventually("retention.ms follows the spec", || async {
        let (_, configs) = topic(&env.brokers, &topic_name).await?;
        (configs.get("retention.ms")? == "120000").then_some(())
    })
    .await;

    // A change behind the controller's back is put back.
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic_name))
        .set("retention.ms", "5000")
        .set("cleanup.policy", "delete");
    admin(&env.brokers)
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .unwrap();
    let configs = eventually("the drifted retention.ms is put back", || async {
        let (_, configs) = topic(&env.brokers, &topic_name).await?;
        (configs.get("retention.ms")? == "120000" && configs.contains_key("segment.ms")).then_some(configs)
    })
    .await;
    // An override the controller does not manage is left alone while a
    // managed one is put back.
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&topic_name)).set("max.message.bytes", "100000");
    for (key, value) in &configs {
        alter = alter.set(key, if key == "retention.ms" { "7000" } else { value });
    }
    admin(&env.brokers)
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .unwrap();
    let now = eventually("retention.ms is put back again", || async {
        let (_, now) = topic(&env.brokers, &topic_name).await?;
        (now.get("retention.ms")? == "120000").then_some(now)
    })
    .await;
    assert_eq!(now.get("max.message.bytes").map(String::as_str), Some("100000"));

    // Partitions grow.
    apply(
        &env,
        &chat_cluster(
            &env,
            "demo",
            &topic_name,
            json!({"retentionMs": 120000, "partitions": 5}),
            json!({"replicas": 2}),
        ),
    )
    .await;
    eventually("the topic has 5 partitions", || async {
        (topic(&env.brokers, &topic_name).await?.0 == 5).then_some(())
    })
    .await;

    // The leader reports each ChatCluster's readiness.
    let ready = format!(
        "whisper_controller_chatcluster_ready{{namespace=\"{}\",chatcluster=\"demo\"}}",
        env.namespace
    );
    assert_eq!(controller.metric(&ready).await, Some(0.0));

    let events: Vec<String> = eventually("events were recorded", || async {
        let list = Api::<Event>::namespaced(env.client.clone(), &env.namespace)
            .list(&ListParams::default())
            .await
            .ok()?;
        let reasons: Vec<String> = list.items.into_iter().filter_map(|e| e.reason).collect();
        reasons.iter().any(|r| r == "PartitionsIncreased").then_some(reasons)
    })
    .await;
    for reason in [
        "TopicCreated",
        "GatewaysCreated",
        "TopicConfigured",
        "PartitionsIncreased",
    ] {
        assert!(events.iter().any(|r| r == reason), "no {reason} event in {events:?}");
    }
}

#[tokio::test]
async fn admission_refuses_bad_specs_with_readable_messages() {
    let Some(env) = env().await else { return };
    let topic_name = format!("adm-{}", &uuid_like()[..10]);
    let good = chat_cluster(&env, "strict", &topic_name, json!({"partitions": 6}), json!({}));
    let (ok, out) = kubectl_apply(&env, &good);
    assert!(ok, "{out}");
    for (kafka, message) in [
        (json!({"partitions": 4}), "kafka.partitions can grow but never shrink"),
        (json!({"partitions": 6, "topic": "renamed"}), "kafka.topic is immutable"),
        (
            json!({"partitions": 6, "retentionMs": 500}),
            "kafka.retentionMs must be between 1000",
        ),
    ] {
        let mut bad = chat_cluster(&env, "strict", &topic_name, kafka, json!({}));
        if bad["spec"]["kafka"]["topic"] == "renamed" {
            bad["spec"]["kafka"]["topic"] = json!("renamed");
        }
        let (ok, out) = kubectl_apply(&env, &bad);
        assert!(!ok, "applied a bad spec: {bad}");
        assert!(out.contains(message), "message missing `{message}`: {out}");
    }
    let mut both = chat_cluster(&env, "redis-both", &topic_name, json!({}), json!({}));
    both["spec"]["redis"] = json!({"url": "redis://x", "urlSecretRef": {"name": "s", "key": "k"}});
    let (ok, out) = kubectl_apply(&env, &both);
    assert!(
        !ok && out.contains("set exactly one of redis.url and redis.urlSecretRef"),
        "{out}"
    );
    for (kafka, message) in [
        (
            json!({"replicationFactor": 1, "minInSyncReplicas": 2}),
            "kafka.minInSyncReplicas must not exceed replicationFactor",
        ),
        (
            json!({"auth": {"securityProtocol": "SASL_SSL"}}),
            "kafka.auth.sasl is required with SASL_PLAINTEXT and SASL_SSL",
        ),
        (
            json!({"auth": {"securityProtocol": "PLAINTEXT", "caSecretRef": {"name": "ca", "key": "ca.crt"}}}),
            "need securityProtocol SSL or SASL_SSL",
        ),
    ] {
        let bad = chat_cluster(&env, "auth-rules", &format!("{topic_name}-auth"), kafka, json!({}));
        let (ok, out) = kubectl_apply(&env, &bad);
        assert!(!ok && out.contains(message), "message missing `{message}`: {out}");
    }
}

/// The README's production ChatCluster is accepted as written.
#[tokio::test]
async fn the_readme_production_example_is_a_valid_chat_cluster() {
    let Some(env) = env().await else { return };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let yaml = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("securityProtocol: SASL_SSL") && block.contains("kind: ChatCluster"))
        .expect("a SASL_SSL ChatCluster in the README");
    let mut object: Value = serde_yaml::from_str(yaml).unwrap();
    object["metadata"]["namespace"] = json!(env.namespace);
    let file = std::env::temp_dir().join(format!("readme-{}.json", uuid_like()));
    std::fs::write(&file, object.to_string()).unwrap();
    let (ok, out) = kubectl(
        &env,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            file.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(file);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn kubectl_scale_and_autoscaling_drive_the_gateways() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    let topic_name = format!("scl-{}", &uuid_like()[..10]);
    let object = chat_cluster(&env, "scaled", &topic_name, json!({}), json!({"replicas": 2}));
    let (ok, out) = kubectl_apply(&env, &object);
    assert!(ok, "{out}");
    eventually("the Deployment exists", || deployment(&env, "scaled-gateway")).await;

    let (ok, out) = kubectl(&env, &["scale", "chatcluster/scaled", "--replicas=5"]);
    assert!(ok, "{out}");
    eventually("the Deployment follows kubectl scale", || async {
        (deployment(&env, "scaled-gateway").await?.spec?.replicas == Some(5)).then_some(())
    })
    .await;

    let object = chat_cluster(
        &env,
        "scaled",
        &topic_name,
        json!({}),
        json!({"replicas": 5, "autoscaling": {"minReplicas": 2, "maxReplicas": 8}}),
    );
    let (ok, out) = kubectl_apply(&env, &object);
    assert!(ok, "{out}");
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(env.client.clone(), &env.namespace);
    let hpa = eventually("the HPA exists", || async {
        hpas.get_opt("scaled-gateway").await.ok()?
    })
    .await;
    let spec = hpa.spec.unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 8));
    assert_eq!(spec.scale_target_ref.name, "scaled-gateway");
    // The controller no longer manages replicas: its applied config leaves them out.
    eventually("the controller lets go of replicas", || async {
        let d = deployment(&env, "scaled-gateway").await?;
        let managed = d.metadata.managed_fields.unwrap_or_default();
        let ours = managed
            .iter()
            .find(|f| f.manager.as_deref() == Some("whisper-controller"))?;
        let fields = serde_json::to_string(&ours.fields_v1).ok()?;
        (!fields.contains("f:replicas")).then_some(())
    })
    .await;
    // Handing replicas to the HPA keeps the gateways that run (no reset to 1).
    assert_eq!(
        deployment(&env, "scaled-gateway").await.unwrap().spec.unwrap().replicas,
        Some(5)
    );

    let object = chat_cluster(&env, "scaled", &topic_name, json!({}), json!({"replicas": 3}));
    let (ok, out) = kubectl_apply(&env, &object);
    assert!(ok, "{out}");
    eventually("autoscaling off removes the HPA", || async {
        hpas.get_opt("scaled-gateway").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("replicas are the controller's again", || async {
        (deployment(&env, "scaled-gateway").await?.spec?.replicas == Some(3)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deletion_removes_the_topic_only_with_delete_policy() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    let api: Api<ChatCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    for (name, policy, kept) in [("keep", "Retain", true), ("drop", "Delete", false)] {
        let topic_name = format!("del-{}", &uuid_like()[..10]);
        apply(
            &env,
            &chat_cluster(&env, name, &topic_name, json!({"deletionPolicy": policy}), json!({})),
        )
        .await;
        eventually("the topic exists", || topic(&env.brokers, &topic_name)).await;
        eventually("the status records the topic", || async {
            (api.get(name).await.ok()?.status?.topic? == topic_name).then_some(())
        })
        .await;
        let finalized = || async {
            let finalizers = api.get(name).await.ok()?.metadata.finalizers.unwrap_or_default();
            Some(finalizers.iter().any(|f| f == "whisperrooms.io/topic"))
        };
        if kept {
            assert_eq!(finalized().await, Some(false), "a finalizer with Retain");
        } else {
            eventually("the finalizer is on", || async { finalized().await?.then_some(()) }).await;
        }
        api.delete(name, &DeleteParams::default()).await.unwrap();
        eventually("the ChatCluster is gone", || async {
            api.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
        if kept {
            assert!(
                topic(&env.brokers, &topic_name).await.is_some(),
                "Retain deleted the topic"
            );
        } else {
            eventually("the topic is deleted", || async {
                topic(&env.brokers, &topic_name).await.is_none().then_some(())
            })
            .await;
        }
    }
}

#[tokio::test]
async fn with_two_replicas_only_the_leader_acts() {
    let Some(env) = env().await else { return };
    let mut first = Controller::start(&env, "first");
    eventually("the first replica leads", || async {
        (first.metric("whisper_controller_leader").await? == 1.0).then_some(())
    })
    .await;
    let second = Controller::start(&env, "second");
    eventually("the second replica serves metrics", || {
        second.metric("whisper_controller_leader")
    })
    .await;

    let topic_name = format!("lead-{}", &uuid_like()[..10]);
    apply(&env, &chat_cluster(&env, "led", &topic_name, json!({}), json!({}))).await;
    eventually("the topic exists", || topic(&env.brokers, &topic_name)).await;
    assert_eq!(second.metric("whisper_controller_leader").await, Some(0.0));
    assert!(first.metric("whisper_controller_reconciles_total").await.unwrap_or(0.0) >= 1.0);
    assert_eq!(second.metric("whisper_controller_reconciles_total").await, Some(0.0));

    // The leader stops cleanly and hands over: the standby acts.
    first.terminate();
    eventually("the second replica leads", || async {
        (second.metric("whisper_controller_leader").await? == 1.0).then_some(())
    })
    .await;
    let topic_two = format!("lead-{}", &uuid_like()[..10]);
    apply(&env, &chat_cluster(&env, "led-two", &topic_two, json!({}), json!({}))).await;
    eventually("the new leader created the topic", || topic(&env.brokers, &topic_two)).await;
}

#[test]
fn an_unreachable_api_server_or_a_bad_setting_fails_fast_and_says_why() {
    let dir = std::env::temp_dir().join(format!("kc-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_whisper-controller"))
        .env("KUBECONFIG", &kubeconfig)
        .env("WHISPER_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("whisper-controller:"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_whisper-controller"))
        .args(["--resync", "often"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

fn cluster_api(env: &Env) -> Api<ChatCluster> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

async fn annotate(env: &Env, name: &str, key: &str, value: Option<&str>) {
    cluster_api(env)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn topics_are_per_namespace_never_shared_and_taken_over_only_when_asked() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    // The default topic carries the namespace.
    let mut plain = chat_cluster(&env, "plain", "", json!({}), json!({}));
    plain["spec"]["kafka"].as_object_mut().unwrap().remove("topic");
    apply(&env, &plain).await;
    let default_topic = format!("{}.plain.messages", env.namespace);
    eventually("the default topic exists", || topic(&env.brokers, &default_topic)).await;
    eventually("status records the topic", || async {
        (cluster_api(&env).get("plain").await.ok()?.status?.topic? == default_topic).then_some(())
    })
    .await;

    // A second ChatCluster naming the same Kafka and topic creates nothing,
    // and deleting it with deletionPolicy: Delete leaves the topic alone.
    let copy = chat_cluster(
        &env,
        "copy",
        &default_topic,
        json!({"deletionPolicy": "Delete"}),
        json!({}),
    );
    apply(&env, &copy).await;
    wait_condition(&env, "copy", "TopicReady", ("False", "ResourceConflict")).await;
    assert!(deployment(&env, "copy-gateway").await.is_none());
    cluster_api(&env)
        .delete("copy", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the copy is gone", || async {
        cluster_api(&env).get_opt("copy").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        topic(&env.brokers, &default_topic).await.is_some(),
        "the owner's topic was deleted"
    );

    // A topic that exists is taken over only with the annotation.
    let foreign = format!("foreign-{}", &uuid_like()[..10]);
    let new = rdkafka::admin::NewTopic::new(&foreign, 1, rdkafka::admin::TopicReplication::Fixed(1));
    admin(&env.brokers)
        .create_topics([&new], &AdminOptions::new())
        .await
        .unwrap();
    apply(
        &env,
        &chat_cluster(&env, "adopter", &foreign, json!({"partitions": 1}), json!({})),
    )
    .await;
    wait_condition(&env, "adopter", "TopicReady", ("False", "TopicExists")).await;
    assert!(deployment(&env, "adopter-gateway").await.is_none());
    annotate(&env, "adopter", "whisperrooms.io/adopt-topic", Some("true")).await;
    wait_condition(&env, "adopter", "TopicReady", ("True", "TopicMatchesSpec")).await;
    eventually("the adopted topic gets its gateways", || {
        deployment(&env, "adopter-gateway")
    })
    .await;

    // Kafka's own topics are refused at admission.
    let (ok, out) = kubectl_apply(
        &env,
        &chat_cluster(&env, "internal", "__consumer_offsets", json!({}), json!({})),
    );
    assert!(!ok && out.contains("may not begin with _"), "{out}");
}

#[tokio::test]
async fn the_admin_restricts_bootstrap_servers_and_topic_configs() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start_with(
        &env,
        "restricted",
        &[
            ("WHISPER_ALLOWED_BOOTSTRAP_SERVERS", &env.brokers),
            ("WHISPER_TOPIC_CONFIGS", "cleanup.policy,retention.ms"),
        ],
    );
    let mut elsewhere = chat_cluster(&env, "elsewhere", "nowhere-topic", json!({}), json!({}));
    elsewhere["spec"]["kafka"]["bootstrapServers"] = json!("kafka.example.com:9092");
    apply(&env, &elsewhere).await;
    wait_condition(&env, "elsewhere", "TopicReady", ("False", "BootstrapServersNotAllowed")).await;

    let topic_name = format!("cfg-{}", &uuid_like()[..10]);
    apply(&env, &chat_cluster(&env, "limited", &topic_name, json!({}), json!({}))).await;
    wait_condition(&env, "limited", "TopicReady", ("True", "TopicMatchesSpec")).await;
    let (_, configs) = topic(&env.brokers, &topic_name).await.unwrap();
    assert_eq!(configs.get("retention.ms").map(String::as_str), Some("60000"));
    assert!(
        !configs.contains_key("segment.ms") && !configs.contains_key("min.insync.replicas"),
        "configs the controller may not alter were set: {configs:?}"
    );
}

#[tokio::test]
async fn gateways_wait_for_their_topic_and_failures_are_visible() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    let mut unreachable = chat_cluster(&env, "unreachable", "never", json!({}), json!({}));
    unreachable["spec"]["kafka"]["bootstrapServers"] = json!("127.0.0.1:1");
    apply(&env, &unreachable).await;
    wait_condition(&env, "unreachable", "TopicReady", ("False", "KafkaUnavailable")).await;
    wait_condition(&env, "unreachable", "GatewaysReady", ("False", "WaitingForTopic")).await;
    assert!(deployment(&env, "unreachable-gateway").await.is_none());
    wait_event(&env, "Warning", "KafkaUnavailable").await;

    // A child the API refuses: its message is in the condition and an event.
    let topic_name = format!("rej-{}", &uuid_like()[..10]);
    let refused = chat_cluster(
        &env,
        "refused",
        &topic_name,
        json!({}),
        json!({"podLabels": {"team": "not a label value!"}}),
    );
    apply(&env, &refused).await;
    wait_condition(&env, "refused", "GatewaysReady", ("False", "ChildRejected")).await;
    let status = cluster_api(&env).get("refused").await.unwrap().status.unwrap();
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "GatewaysReady")
        .unwrap()
        .message;
    assert!(message.contains("not a label value!"), "{message}");
    wait_event(&env, "Warning", "ChildRejected").await;

    // Names that would make invalid child names are refused at admission.
    let long = "n".repeat(56);
    let (ok, out) = kubectl_apply(&env, &chat_cluster(&env, &long, "long-topic", json!({}), json!({})));
    assert!(!ok && out.contains("metadata.name must be at most 55"), "{out}");
}

#[tokio::test]
async fn pausing_stops_every_change_until_resumed() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    let topic_name = format!("pause-{}", &uuid_like()[..10]);
    apply(&env, &chat_cluster(&env, "paused", &topic_name, json!({}), json!({}))).await;
    wait_condition(&env, "paused", "TopicReady", ("True", "TopicMatchesSpec")).await;
    annotate(&env, "paused", "whisperrooms.io/pause-reconciliation", Some("true")).await;
    wait_condition(&env, "paused", "ReconciliationPaused", ("True", "Paused")).await;
    apply(
        &env,
        &chat_cluster(
            &env,
            "paused",
            &topic_name,
            json!({"retentionMs": 90000}),
            json!({"replicas": 4}),
        ),
    )
    .await;
    // Several resync periods (2 s): nothing changes.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (_, configs) = eventually("the topic is described", || topic(&env.brokers, &topic_name)).await;
    assert_eq!(configs.get("retention.ms").map(String::as_str), Some("60000"));
    assert_eq!(
        deployment(&env, "paused-gateway").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );

    annotate(&env, "paused", "whisperrooms.io/pause-reconciliation", None).await;
    wait_condition(&env, "paused", "ReconciliationPaused", ("False", "Reconciling")).await;
    eventually("the change lands once resumed", || async {
        let (_, configs) = topic(&env.brokers, &topic_name).await?;
        (configs.get("retention.ms")? == "90000").then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_finalizer_is_there_only_while_deletion_policy_is_delete() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    let topic_name = format!("fin-{}", &uuid_like()[..10]);
    let finalized = || async {
        let finalizers = cluster_api(&env)
            .get("fin")
            .await
            .ok()?
            .metadata
            .finalizers
            .unwrap_or_default();
        Some(finalizers.iter().any(|f| f == "whisperrooms.io/topic"))
    };
    for (policy, expected) in [("Delete", true), ("Retain", false), ("Delete", true)] {
        apply(
            &env,
            &chat_cluster(&env, "fin", &topic_name, json!({"deletionPolicy": policy}), json!({})),
        )
        .await;
        eventually(&format!("finalizer {expected} with {policy}"), || async {
            (finalized().await? == expected).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn gateway_auth_comes_from_a_secret_and_a_changed_secret_rolls_the_gateways() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let secret = |value: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-jwt"}, "stringData": {"secret": value}});
    let topic_name = format!("auth-{}", &uuid_like()[..10]);
    let gateway = json!({
        "auth": {"jwtSecretRef": {"name": "chat-jwt", "key": "secret"}, "issuer": "https://id.example.com", "audience": "whisperrooms"},
        "allowedOrigins": ["https://chat.example.com"], "maxConnections": 500, "messagesPerSecond": 3,
        "logLevel": "debug", "otlpEndpoint": "http://otel:4318"
    });
    apply(&env, &chat_cluster(&env, "authed", &topic_name, json!({}), gateway)).await;
    // The Secret does not exist yet: said so, nothing started.
    wait_condition(&env, "authed", "GatewaysReady", ("False", "SecretNotFound")).await;
    assert!(deployment(&env, "authed-gateway").await.is_none());

    let put = |value: &str| {
        let secrets = secrets.clone();
        let body = secret(value);
        async move {
            secrets
                .patch(
                    "chat-jwt",
                    &PatchParams::apply("whisper-tests").force(),
                    &Patch::Apply(body),
                )
                .await
                .unwrap();
        }
    };
    put("0123456789abcdef0123456789abcdef-one").await;
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("whisperrooms.io/secret-hash")
            .cloned()
    };
    let first = eventually("the gateways start", || async {
        hash(&deployment(&env, "authed-gateway").await?)
    })
    .await;
    let d = deployment(&env, "authed-gateway").await.unwrap();
    let vars = gateway_env(d.spec.unwrap().template.spec.unwrap());
    assert_eq!(vars["WHISPER_JWT_SECRET"], (None, Some("chat-jwt/secret".into())));
    for (name, value) in [
        ("WHISPER_JWT_ISSUER", "https://id.example.com"),
        ("WHISPER_JWT_AUDIENCE", "whisperrooms"),
        ("WHISPER_ALLOWED_ORIGINS", "https://chat.example.com"),
        ("WHISPER_MAX_CONNECTIONS", "500"),
        ("WHISPER_RATE", "3"),
        ("WHISPER_LOG", "debug"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318"),
    ] {
        assert_eq!(vars[name].0.as_deref(), Some(value), "{name}");
    }

    // Rotation: a new value rolls the gateways.
    put("0123456789abcdef0123456789abcdef-two").await;
    eventually("the pod template follows the Secret", || async {
        let now = hash(&deployment(&env, "authed-gateway").await?)?;
        (now != first).then_some(())
    })
    .await;
}

#[tokio::test]
async fn ready_means_the_rollout_finished() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    let topic_name = format!("roll-{}", &uuid_like()[..10]);
    apply(
        &env,
        &chat_cluster(&env, "rolled", &topic_name, json!({}), json!({"replicas": 2})),
    )
    .await;
    let d = eventually("the Deployment exists", || deployment(&env, "rolled-gateway")).await;
    let generation = d.metadata.generation.unwrap();
    // No kubelet or Deployment controller here: the test plays them.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let report = |status: Value| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch_status(
                    "rolled-gateway",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
                .unwrap();
        }
    };
    // Old pods still running beside the new ones: not ready.
    report(json!({"observedGeneration": generation, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3})).await;
    wait_condition(&env, "rolled", "GatewaysReady", ("False", "RolloutInProgress")).await;
    report(json!({"observedGeneration": generation, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2})).await;
    wait_condition(&env, "rolled", "Ready", ("True", "Serving")).await;
    report(
        json!({"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                  "message": "ReplicaSet has timed out progressing"}]}),
    )
    .await;
    wait_condition(&env, "rolled", "GatewaysReady", ("False", "ProgressDeadlineExceeded")).await;
}

#[tokio::test]
async fn a_lease_is_timed_by_this_replicas_clock_not_the_holders() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;
    use std::time::Duration;
    use whisper_controller::leader::{Attempt, Elector, Timings};

    let Some(env) = env().await else { return };
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    // The holder's clock is an hour behind: every renewal it writes looks
    // long expired to a replica that trusts timestamps.
    let renewal = |n: i64| Lease {
        metadata: serde_json::from_value(json!({"name": "election"})).unwrap(),
        spec: Some(LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(2),
            renew_time: Some(MicroTime(
                Timestamp::from_second(Timestamp::now().as_second() - 3600 + n).unwrap(),
            )),
            ..LeaseSpec::default()
        }),
    };
    leases.create(&PostParams::default(), &renewal(0)).await.unwrap();
    let me = Elector::new(
        leases.clone(),
        "election",
        "me",
        Timings {
            lease: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(1),
            retry: Duration::from_millis(500),
        },
    );
    for n in 1..=4 {
        assert_eq!(
            me.try_acquire().await.unwrap(),
            Attempt::Following("other".into()),
            "renewal {n}"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut lease = leases.get("election").await.unwrap();
        lease.spec = renewal(n).spec;
        leases
            .replace("election", &PostParams::default(), &lease)
            .await
            .unwrap();
    }
    assert_eq!(me.try_acquire().await.unwrap(), Attempt::Following("other".into()));
    // The holder stopped: a lease duration after this replica saw the last
    // change, it takes over.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(me.try_acquire().await.unwrap(), Attempt::Leading);
    let holder = leases.get("election").await.unwrap().spec.unwrap().holder_identity;
    assert_eq!(holder.as_deref(), Some("me"));
}

#[tokio::test]
async fn the_controller_refuses_an_older_crd_and_says_what_to_apply() {
    let Some(env) = env_with(CrdUse::Alone {
        _guard: CRD.write().await,
    })
    .await
    else {
        return;
    };
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    // What an older chart's CRD looks like to this controller.
    crds.patch(
        "chatclusters.whisperrooms.io",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"whisperrooms.io/schema-version": "1"}}})),
    )
    .await
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_whisper-controller"))
        .env("KUBECONFIG", &env.kubeconfig)
        .env("WHISPER_LISTEN", "127.0.0.1:0")
        .env("WHISPER_WATCH_NAMESPACE", &env.namespace)
        .env("WHISPER_LEASE_NAMESPACE", &env.namespace)
        .output()
        .unwrap();
    install_crd(&env.client).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schema version 1") && stderr.contains("kubectl apply --server-side -f k8s/crd.yaml"),
        "{stderr}"
    );
}

/// An admin client of the secured Kafka, logged in as the test user.
fn secure_admin(
    brokers: &str,
    user: &str,
    password: &str,
    ca_file: &str,
) -> rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> {
    use whisper_common::kafka::{SaslMechanism, Secret, SecurityProtocol, SecuritySettings};
    let security = SecuritySettings {
        protocol: Some(SecurityProtocol::SaslSsl),
        mechanism: Some(SaslMechanism::ScramSha512),
        username: Some(user.to_owned()),
        password: Some(Secret(password.to_owned())),
        ca: Some(whisper_common::tls::Pem::File(ca_file.into())),
        cert: None,
        key: None,
    }
    .check()
    .unwrap();
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in security.properties() {
        config.set(key, value);
    }
    config.create().unwrap()
}

#[tokio::test]
async fn the_controller_logs_in_to_a_sasl_ssl_kafka_with_credentials_from_secrets() {
    let Some(env) = env().await else { return };
    let (Some(brokers), Some(user), Some(password), Some(ca_file)) = (
        service("WHISPER_TEST_SECURE_KAFKA_BROKERS"),
        service("WHISPER_TEST_SECURE_USERNAME"),
        service("WHISPER_TEST_SECURE_PASSWORD"),
        service("WHISPER_TEST_SECURE_CA_FILE"),
    ) else {
        return;
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let put = |name: &str, data: Value| {
        let secrets = secrets.clone();
        let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data});
        let name = name.to_owned();
        async move {
            secrets
                .patch(&name, &PatchParams::apply("whisper-tests").force(), &Patch::Apply(body))
                .await
                .unwrap();
        }
    };
    put(
        "kafka-ca",
        json!({"ca.crt": std::fs::read_to_string(&ca_file).unwrap()}),
    )
    .await;
    put("kafka-user", json!({"username": user, "password": "not-the-password"})).await;
    let _controller = Controller::start(&env, "solo");
    let topic_name = format!("sasl-{}", &uuid_like()[..10]);
    let auth = json!({"auth": {
        "securityProtocol": "SASL_SSL",
        "caSecretRef": {"name": "kafka-ca", "key": "ca.crt"},
        "sasl": {"mechanism": "SCRAM-SHA-512",
                 "usernameSecretRef": {"name": "kafka-user", "key": "username"},
                 "passwordSecretRef": {"name": "kafka-user", "key": "password"}}
    }, "bootstrapServers": brokers});
    apply(&env, &chat_cluster(&env, "secured", &topic_name, auth, json!({}))).await;

    // A wrong password: the broker refuses the login, and status says so.
    wait_condition(&env, "secured", "TopicReady", ("False", "KafkaUnavailable")).await;
    // The right one, from the same Secret: the topic is made on the secured broker.
    put("kafka-user", json!({"username": user, "password": password})).await;
    wait_condition(&env, "secured", "TopicReady", ("True", "TopicMatchesSpec")).await;
    let admin = secure_admin(&brokers, &user, &password, &ca_file);
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&topic_name), std::time::Duration::from_secs(10))
        .unwrap();
    let topic = &metadata.topics()[0];
    assert!(topic.error().is_none(), "{:?}", topic.error());
    assert_eq!(topic.partitions().len(), 3);
    let d = eventually("the gateways start", || deployment(&env, "secured-gateway")).await;
    let vars = gateway_env(d.spec.unwrap().template.spec.unwrap());
    assert_eq!(vars["WHISPER_KAFKA_SECURITY_PROTOCOL"].0.as_deref(), Some("SASL_SSL"));
    assert_eq!(vars["WHISPER_KAFKA_SASL_MECHANISM"].0.as_deref(), Some("SCRAM-SHA-512"));
    assert_eq!(
        vars["WHISPER_KAFKA_SASL_PASSWORD"],
        (None, Some("kafka-user/password".into())),
        "the password comes from the Secret, not the spec"
    );
}

/// Someone deletes the cluster's topic and makes one of the same name with
/// `partitions` (the cluster paused meanwhile, so the controller does not
/// make it again first); then `annotations` are set and the cluster resumes.
async fn replace_behind_the_controllers_back(
    env: &Env,
    cluster: &str,
    topic_name: &str,
    partitions: i32,
    annotations: &[(&str, &str)],
) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    annotate(env, cluster, "whisperrooms.io/pause-reconciliation", Some("true")).await;
    wait_condition(env, cluster, "ReconciliationPaused", ("True", "Paused")).await;
    let admin = admin(&env.brokers);
    admin.delete_topics(&[topic_name], &AdminOptions::new()).await.unwrap();
    let stranger = NewTopic::new(topic_name, partitions, TopicReplication::Fixed(1));
    eventually("the other topic is made", || async {
        let made = admin.create_topics([&stranger], &AdminOptions::new()).await.ok()?;
        made.into_iter().next()?.ok()
    })
    .await;
    for (key, value) in annotations {
        annotate(env, cluster, key, Some(value)).await;
    }
    annotate(env, cluster, "whisperrooms.io/pause-reconciliation", None).await;
}

#[tokio::test]
async fn a_topic_made_again_behind_the_controllers_back_is_noticed_and_not_taken_for_its_own() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    let topic_name = format!("again-{}", &uuid_like()[..10]);
    apply(
        &env,
        &chat_cluster(
            &env,
            "again",
            &topic_name,
            json!({"deletionPolicy": "Delete"}),
            json!({}),
        ),
    )
    .await;
    wait_condition(&env, "again", "TopicReady", ("True", "TopicMatchesSpec")).await;
    let clusters: Api<ChatCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let recorded_id = || async { clusters.get("again").await.ok()?.status?.topic_id };
    let first = eventually("the topic id is recorded", recorded_id).await;

    replace_behind_the_controllers_back(&env, "again", &topic_name, 1, &[]).await;

    wait_condition(&env, "again", "TopicReady", ("False", "TopicReplaced")).await;
    wait_event(&env, "Warning", "TopicReplaced").await;
    assert_eq!(recorded_id().await, Some(first.clone()), "the old id stays recorded");
    let (partitions, _) = topic(&env.brokers, &topic_name).await.unwrap();
    assert_eq!(partitions, 1, "the other topic is left as its maker made it");

    // Deleting the ChatCluster (deletionPolicy: Delete) keeps the topic that is not its own.
    clusters.delete("again", &DeleteParams::default()).await.unwrap();
    eventually("the ChatCluster is gone", || async {
        clusters.get_opt("again").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        topic(&env.brokers, &topic_name).await.is_some(),
        "the other topic is still there"
    );
}

#[tokio::test]
async fn a_topic_adopted_after_it_was_made_again_is_recorded_anew() {
    let Some(env) = env().await else { return };
    let _controller = Controller::start(&env, "solo");
    let topic_name = format!("readopt-{}", &uuid_like()[..10]);
    apply(&env, &chat_cluster(&env, "readopt", &topic_name, json!({}), json!({}))).await;
    wait_condition(&env, "readopt", "TopicReady", ("True", "TopicMatchesSpec")).await;
    let clusters: Api<ChatCluster> = Api::namespaced(env.client.clone(), &env.namespace);
    let recorded_id = || async { clusters.get("readopt").await.ok()?.status?.topic_id };
    let first = eventually("the topic id is recorded", recorded_id).await;
    replace_behind_the_controllers_back(
        &env,
        "readopt",
        &topic_name,
        3,
        &[("whisperrooms.io/adopt-topic", "true")],
    )
    .await;
    wait_condition(&env, "readopt", "TopicReady", ("True", "TopicMatchesSpec")).await;
    let second = eventually("the new id is recorded", || async {
        recorded_id().await.filter(|id| *id != first)
    })
    .await;
    assert_ne!(first, second);
    // Taken over: brought to the spec, configs and all.
    let (_, configs) = topic(&env.brokers, &topic_name).await.unwrap();
    assert_eq!(configs.get("retention.ms").map(String::as_str), Some("60000"));
}
