//! The reconciler against a mocked API server and a stand-in Kafka: each
//! request it makes is asserted, in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::controller::{CacheWriters, Options};
use crate::controller::{CrdProblem, backoff, check_crd, error_policy};
use crate::crd::{ChatClusterSpec, ChatClusterStatus};
use crate::metrics::Metrics;
use crate::topic::{Connection, TopicAdmin, TopicError, TopicSpec, TopicState};

fn show(configs: &BTreeMap<String, String>) -> String {
    configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Kafka as the reconciler sees it, recording what was asked.
#[derive(Default)]
struct FakeKafka {
    topic: Mutex<Option<TopicState>>,
    calls: Mutex<Vec<String>>,
    down: bool,
}

impl FakeKafka {
    fn with(state: TopicState) -> Self {
        Self {
            topic: Mutex::new(Some(state)),
            ..Self::default()
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn call(&self, what: String) -> Result<(), TopicError> {
        self.calls.lock().unwrap().push(what);
        if self.down {
            Err(TopicError("cannot reach Kafka at kafka:9092".into()))
        } else {
            Ok(())
        }
    }
}

impl TopicAdmin for FakeKafka {
    fn describe<'a>(
        &'a self,
        _: &'a Connection,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicState>, TopicError>> {
        Box::pin(async move {
            self.call(format!("describe {topic}"))?;
            Ok(self.topic.lock().unwrap().clone())
        })
    }
    fn create<'a>(&'a self, _: &'a Connection, spec: &'a TopicSpec) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move {
            self.call(format!(
                "create {} {} {}",
                spec.name, spec.partitions, spec.replication_factor
            ))?;
            *self.topic.lock().unwrap() = Some(TopicState {
                partitions: spec.partitions,
                replication_factor: spec.replication_factor,
                configs: spec.configs.clone(),
                id: Some("made-by-the-controller".into()),
            });
            Ok(())
        })
    }
    fn add_partitions<'a>(
        &'a self,
        _: &'a Connection,
        topic: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move { self.call(format!("add_partitions {topic} {total}")) })
    }
    fn alter_configs<'a>(
        &'a self,
        _: &'a Connection,
        topic: &'a str,
        configs: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move { self.call(format!("alter_configs {topic} {}", show(configs))) })
    }
    fn delete<'a>(&'a self, _: &'a Connection, topic: &'a str) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move { self.call(format!("delete {topic}")) })
    }
}

/// One expected request: method, path (query left out), and the answer.
struct Expect {
    method: Method,
    path: &'static str,
    status: StatusCode,
    body: Value,
}

fn expect(method: Method, path: &'static str, status: StatusCode, body: Value) -> Expect {
    Expect {
        method,
        path,
        status,
        body,
    }
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

/// Serves the expected requests in order and returns the bodies received.
fn api_server(expected: Vec<Expect>) -> (Client, tokio::task::JoinHandle<Vec<Value>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut bodies = Vec::new();
        for e in expected {
            let (request, send) = handle.next_request().await.expect("a request");
            assert_eq!(
                (request.method(), request.uri().path()),
                (&e.method, e.path),
                "unexpected request {} {}",
                request.method(),
                request.uri()
            );
            let bytes = request.into_body().collect_bytes().await.unwrap();
            bodies.push(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
            let response = Response::builder()
                .status(e.status)
                .body(Body::from(serde_json::to_vec(&e.body).unwrap()))
                .unwrap();
            send.send_response(response);
        }
        bodies
    });
    (Client::new(service, "chat"), task)
}

fn cluster(spec: Value) -> ChatCluster {
    let spec: ChatClusterSpec = serde_json::from_value(spec).unwrap();
    let mut cluster = ChatCluster::new("demo", spec);
    cluster.metadata.namespace = Some("chat".into());
    cluster.metadata.uid = Some("uid-1".into());
    cluster.metadata.generation = Some(1);
    cluster.metadata.resource_version = Some("1".into());
    cluster
}

/// The cluster once it owns its topic (recorded in status).
fn owning(mut cluster: ChatCluster) -> ChatCluster {
    cluster.status = Some(ChatClusterStatus {
        topic: Some(cluster.topic()),
        ..ChatClusterStatus::default()
    });
    cluster
}

/// The context, with its caches listed (empty: nothing owned exists yet).
fn context(client: Client, kafka: Arc<FakeKafka>) -> (Arc<Context>, CacheWriters) {
    let options = Options {
        gateway_image: "whisperrooms/gateway:test".into(),
        resync: Duration::from_secs(30),
        instance: Some("test".into()),
        allowed_bootstrap_servers: None,
        topic_configs: whisper_common::topic::MANAGED_CONFIGS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let (ctx, mut writers) = Context::new(client, kafka, Arc::new(Metrics::default()), options);
    listed(&mut writers.clusters, vec![]);
    listed(&mut writers.deployments, vec![]);
    listed(&mut writers.autoscalers, vec![]);
    listed(&mut writers.budgets, vec![]);
    (Arc::new(ctx), writers)
}

/// Feeds a cache a complete list, as a watch's first list does.
fn listed<K>(writer: &mut kube::runtime::reflector::store::Writer<K>, objects: Vec<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    use kube::runtime::watcher::Event;
    writer.apply_watcher_event(&Event::Init);
    for o in objects {
        writer.apply_watcher_event(&Event::InitApply(o));
    }
    writer.apply_watcher_event(&Event::InitDone);
}

fn deployment_answer(replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "demo-gateway", "namespace": "chat", "generation": 1},
           "spec": {"replicas": replicas, "selector": {}, "template": {}},
           "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
                      "updatedReplicas": replicas, "availableReplicas": replicas}})
}

fn cluster_answer() -> Value {
    json!({"apiVersion": "whisperrooms.io/v1alpha1", "kind": "ChatCluster", "metadata": {"name": "demo"}, "spec": {"kafka": {"bootstrapServers": "kafka:9092"}}})
}

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/chat/deployments/demo-gateway";
const SERVICE: &str = "/api/v1/namespaces/chat/services/demo-gateway";
const HPA: &str = "/apis/autoscaling/v2/namespaces/chat/horizontalpodautoscalers/demo-gateway";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/chat/events";
const CLUSTER: &str = "/apis/whisperrooms.io/v1alpha1/namespaces/chat/chatclusters/demo";
const STATUS: &str = "/apis/whisperrooms.io/v1alpha1/namespaces/chat/chatclusters/demo/status";

#[tokio::test]
async fn a_new_cluster_gets_its_topic_gateways_and_status() {
    let kafka = Arc::new(FakeKafka::default());
    let c = cluster(
        json!({"kafka": {"bootstrapServers": "kafka:9092", "partitions": 6, "replicationFactor": 1, "retentionMs": 120000},
                           "redis": {"url": "redis://redis:6379"}, "gateway": {"replicas": 3}}),
    );
    let (client, server) = api_server(vec![
        // No topic recorded yet: the ChatCluster is read fresh.
        expect(Method::GET, CLUSTER, StatusCode::OK, serde_json::to_value(&c).unwrap()),
        expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
        expect(Method::PATCH, DEPLOYMENT, StatusCode::OK, deployment_answer(3)),
        expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
        expect(
            Method::PATCH,
            SERVICE,
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo-gateway"}}),
        ),
        expect(Method::PATCH, STATUS, StatusCode::OK, cluster_answer()),
    ]);
    let (ctx, _writers) = context(client, kafka.clone());
    let action = reconcile(Arc::new(c), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    // No finalizer with Retain; no HPA or PDB asked for, none cached: no request.
    assert_eq!(
        kafka.calls(),
        [
            "describe chat.demo.messages",
            "create chat.demo.messages 6 1",
            "describe chat.demo.messages"
        ]
    );
    let bodies = server.await.unwrap()[1..].to_vec();
    assert_eq!(bodies[0]["reason"], "TopicCreated");
    assert!(bodies[0]["note"].as_str().unwrap().contains("min.insync.replicas=1"));
    let deployment = &bodies[1];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(env.contains(&json!({"name": "WHISPER_MESSAGE_TTL", "value": "120000ms"})));
    assert!(env.contains(&json!({"name": "WHISPER_KAFKA_CREATE_TOPIC", "value": "false"})));
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["kind"], "ChatCluster");
    assert_eq!(bodies[2]["reason"], "GatewaysCreated");
    let status = &bodies[4]["status"];
    assert_eq!(status["topic"], "chat.demo.messages");
    assert_eq!(status["partitions"], 6);
    assert_eq!(status["retentionMs"], 120000);
    assert_eq!(status["readyReplicas"], 3);
    assert_eq!(status["observedGeneration"], 1);
    let conditions: Vec<(&str, &str)> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conditions,
        [
            ("Ready", "True"),
            ("TopicReady", "True"),
            ("GatewaysReady", "True"),
            ("ReconciliationPaused", "False")
        ]
    );
}

#[tokio::test]
async fn drifted_managed_configs_are_altered_alone_and_shrinking_holds_the_gateways() {
    let kafka = Arc::new(FakeKafka::with(TopicState {
        partitions: 9,
        replication_factor: 1,
        configs: BTreeMap::from([
            ("cleanup.policy".into(), "delete".into()),
            ("retention.ms".into(), "999".into()),
            ("segment.ms".into(), "60000".into()),
            ("min.insync.replicas".into(), "1".into()),
            ("retention.bytes".into(), "1000".into()),
        ]),
        id: None,
    }));
    let (client, server) = api_server(vec![
        expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
        expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
        expect(Method::PATCH, STATUS, StatusCode::OK, cluster_answer()),
    ]);
    let c = owning(cluster(
        json!({"kafka": {"bootstrapServers": "kafka:9092", "partitions": 6, "replicationFactor": 1}}),
    ));
    let (ctx, _writers) = context(client, kafka.clone());
    reconcile(Arc::new(c), ctx).await.unwrap();
    // Only the one config that differs; retention.bytes is not the controller's.
    assert_eq!(
        kafka.calls(),
        [
            "describe chat.demo.messages",
            "alter_configs chat.demo.messages retention.ms=300000"
        ]
    );
    let bodies = server.await.unwrap();
    assert_eq!(bodies[0]["reason"], "TopicConfigured");
    assert!(
        bodies[0]["note"]
            .as_str()
            .unwrap()
            .contains("retention.ms=300000 (was 999)")
    );
    assert_eq!(
        (bodies[1]["type"].as_str(), bodies[1]["reason"].as_str()),
        (Some("Warning"), Some("CannotMatchSpec"))
    );
    let conditions = &bodies[2]["status"]["conditions"];
    assert_eq!(
        (conditions[1]["status"].as_str(), conditions[1]["reason"].as_str()),
        (Some("False"), Some("CannotMatchSpec"))
    );
    assert!(conditions[1]["message"].as_str().unwrap().contains("never shrink"));
    // The gateways wait for a topic that is ready: no Deployment was applied.
    assert_eq!(conditions[2]["reason"], "WaitingForTopic");
}

#[tokio::test]
async fn kafka_down_is_a_condition_a_warning_and_an_error_with_backoff() {
    let kafka = Arc::new(FakeKafka {
        down: true,
        ..FakeKafka::default()
    });
    let c = Arc::new(cluster(json!({"kafka": {"bootstrapServers": "kafka:9092"}})));
    let (client, server) = api_server(vec![
        expect(Method::GET, CLUSTER, StatusCode::OK, serde_json::to_value(&*c).unwrap()),
        expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
        expect(Method::PATCH, STATUS, StatusCode::OK, cluster_answer()),
    ]);
    let (ctx, _writers) = context(client, kafka);
    let error = reconcile(c.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(error.metric_label(), "kafka");
    let bodies = server.await.unwrap();
    assert_eq!(
        (bodies[1]["type"].as_str(), bodies[1]["reason"].as_str()),
        (Some("Warning"), Some("KafkaUnavailable"))
    );
    let topic_ready = &bodies[2]["status"]["conditions"][1];
    assert_eq!(topic_ready["reason"], "KafkaUnavailable");
    assert_eq!(
        error_policy(c.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        error_policy(c.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(
        error_policy(c, &error, ctx.clone()),
        Action::requeue(Duration::from_secs(4))
    );
    assert!(
        ctx.metrics
            .encode()
            .contains("whisper_controller_reconcile_failures_total{reason=\"kafka\"} 3")
    );
}

#[tokio::test]
async fn deleting_removes_an_owned_topic_only_with_delete_policy() {
    for (policy, owned, call, reason) in [
        ("Delete", true, Some("delete chat.demo.messages"), "TopicDeleted"),
        ("Delete", false, None, "TopicRetained"),
        ("Retain", true, None, "TopicRetained"),
    ] {
        let kafka = Arc::new(FakeKafka::default());
        let mut c = cluster(json!({"kafka": {"bootstrapServers": "kafka:9092", "deletionPolicy": policy}}));
        if owned {
            c = owning(c);
        }
        c.metadata.finalizers = Some(vec![FINALIZER.into()]);
        c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
        let (client, server) = api_server(vec![
            expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
            expect(Method::PATCH, CLUSTER, StatusCode::OK, cluster_answer()),
        ]);
        let (ctx, _writers) = context(client, kafka.clone());
        reconcile(Arc::new(c), ctx).await.unwrap();
        assert_eq!(kafka.calls().last().map(String::as_str), call, "{policy}");
        let bodies = server.await.unwrap();
        assert_eq!(bodies[0]["reason"], reason);
        // The finalizer is removed with a JSON patch.
        assert!(bodies[1].to_string().contains(FINALIZER), "{}", bodies[1]);
    }
}

#[tokio::test]
async fn the_finalizer_follows_the_deletion_policy() {
    for (policy, before, op) in [
        ("Delete", None, "add"),
        ("Retain", Some(vec![FINALIZER.to_owned()]), "remove"),
    ] {
        let kafka = Arc::new(FakeKafka {
            down: true,
            ..FakeKafka::default()
        });
        let mut c = cluster(json!({"kafka": {"bootstrapServers": "kafka:9092", "deletionPolicy": policy}}));
        c.metadata.finalizers = before;
        let (client, server) = api_server(vec![
            expect(Method::PATCH, CLUSTER, StatusCode::OK, cluster_answer()),
            expect(Method::GET, CLUSTER, StatusCode::OK, serde_json::to_value(&c).unwrap()),
            expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
            expect(Method::PATCH, STATUS, StatusCode::OK, cluster_answer()),
        ]);
        let (ctx, _writers) = context(client, kafka);
        let _ = reconcile(Arc::new(c), ctx).await;
        let bodies = server.await.unwrap();
        assert_eq!(bodies[0][1]["op"], op, "{policy}: {}", bodies[0]);
    }
}

#[tokio::test]
async fn a_paused_cluster_only_says_so() {
    let kafka = Arc::new(FakeKafka::default());
    let (client, server) = api_server(vec![expect(Method::PATCH, STATUS, StatusCode::OK, cluster_answer())]);
    let mut c = cluster(json!({"kafka": {"bootstrapServers": "kafka:9092", "deletionPolicy": "Delete"}}));
    c.metadata.annotations = Some(BTreeMap::from([(
        crate::crd::PAUSE_ANNOTATION.to_owned(),
        "true".to_owned(),
    )]));
    let (ctx, _writers) = context(client, kafka.clone());
    assert_eq!(reconcile(Arc::new(c), ctx).await.unwrap(), Action::await_change());
    assert!(kafka.calls().is_empty());
    let bodies = server.await.unwrap();
    let paused = &bodies[0]["status"]["conditions"][0];
    assert_eq!(
        (
            paused["type"].as_str(),
            paused["status"].as_str(),
            paused["reason"].as_str()
        ),
        (Some("ReconciliationPaused"), Some("True"), Some("Paused"))
    );
}

#[tokio::test]
async fn owned_objects_come_from_the_caches_and_only_cached_ones_are_deleted() {
    let kafka = Arc::new(FakeKafka::with(TopicState {
        partitions: 12,
        replication_factor: 3,
        configs: BTreeMap::from([
            ("cleanup.policy".into(), "delete".into()),
            ("retention.ms".into(), "300000".into()),
            ("segment.ms".into(), "60000".into()),
            ("min.insync.replicas".into(), "2".into()),
        ]),
        id: None,
    }));
    let (client, server) = api_server(vec![
        expect(Method::PATCH, DEPLOYMENT, StatusCode::OK, deployment_answer(2)),
        expect(
            Method::PATCH,
            SERVICE,
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo-gateway"}}),
        ),
        expect(
            Method::DELETE,
            HPA,
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
        expect(Method::PATCH, STATUS, StatusCode::OK, cluster_answer()),
    ]);
    let c = owning(cluster(json!({"kafka": {"bootstrapServers": "kafka:9092"}})));
    let (ctx, mut writers) = context(client, kafka);
    listed(
        &mut writers.deployments,
        vec![serde_json::from_value(deployment_answer(2)).unwrap()],
    );
    let hpa: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler = serde_json::from_value(
        json!({"metadata": {"name": "demo-gateway", "namespace": "chat"}, "spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "demo-gateway"}}}),
    )
    .unwrap();
    listed(&mut writers.autoscalers, vec![hpa]);
    reconcile(Arc::new(c), ctx).await.unwrap();
    // No GET of the Deployment, no DELETE of a PDB that does not exist.
    let bodies = server.await.unwrap();
    assert_eq!(bodies[3]["reason"], "AutoscalingDisabled");
}

#[test]
fn backoff_grows_and_is_capped() {
    assert_eq!(backoff(1), Duration::from_secs(1));
    assert_eq!(backoff(4), Duration::from_secs(8));
    assert_eq!(backoff(40), Duration::from_secs(300));
}

#[tokio::test]
async fn a_missing_or_older_crd_is_refused_saying_what_to_apply() {
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/chatclusters.whisperrooms.io";
    let crd = |version: &str| {
        let mut crd = serde_json::to_value(crate::crd::crd()).unwrap();
        crd["metadata"]["annotations"]["whisperrooms.io/schema-version"] = json!(version);
        crd
    };
    let (client, server) = api_server(vec![
        expect(Method::GET, path, StatusCode::NOT_FOUND, not_found()),
        expect(Method::GET, path, StatusCode::OK, crd("1")),
        expect(
            Method::GET,
            path,
            StatusCode::OK,
            crd(&crate::crd::SCHEMA_VERSION.to_string()),
        ),
    ]);
    assert!(matches!(check_crd(&client).await, Err(CrdProblem::Missing)));
    let older = check_crd(&client).await.unwrap_err().to_string();
    assert!(
        older.contains("schema version 1") && older.contains("kubectl apply --server-side -f k8s/crd.yaml"),
        "{older}"
    );
    check_crd(&client).await.unwrap();
    server.await.unwrap();
}
