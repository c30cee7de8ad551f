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
use crate::crd::ChatClusterSpec;
use crate::metrics::Metrics;
use crate::topic::{TopicError, TopicSpec, TopicState};

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
    fn describe<'a>(&'a self, _: &'a str, topic: &'a str) -> BoxFuture<'a, Result<Option<TopicState>, TopicError>> {
        Box::pin(async move {
            self.call(format!("describe {topic}"))?;
            Ok(self.topic.lock().unwrap().clone())
        })
    }
    fn create<'a>(&'a self, _: &'a str, spec: &'a TopicSpec) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move {
            self.call(format!(
                "create {} {} {}",
                spec.name, spec.partitions, spec.replication_factor
            ))?;
            *self.topic.lock().unwrap() = Some(TopicState {
                partitions: spec.partitions,
                replication_factor: spec.replication_factor,
                configs: spec.configs.clone(),
            });
            Ok(())
        })
    }
    fn add_partitions<'a>(&'a self, _: &'a str, topic: &'a str, total: i32) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move { self.call(format!("add_partitions {topic} {total}")) })
    }
    fn set_configs<'a>(
        &'a self,
        _: &'a str,
        topic: &'a str,
        configs: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move { self.call(format!("set_configs {topic} retention.ms={}", configs["retention.ms"])) })
    }
    fn delete<'a>(&'a self, _: &'a str, topic: &'a str) -> BoxFuture<'a, Result<(), TopicError>> {
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

fn cluster(spec: Value) -> Arc<ChatCluster> {
    let spec: ChatClusterSpec = serde_json::from_value(spec).unwrap();
    let mut cluster = ChatCluster::new("demo", spec);
    cluster.metadata.namespace = Some("chat".into());
    cluster.metadata.uid = Some("uid-1".into());
    cluster.metadata.generation = Some(1);
    cluster.metadata.resource_version = Some("1".into());
    cluster.metadata.finalizers = Some(vec![FINALIZER.into()]);
    Arc::new(cluster)
}

fn context(client: Client, kafka: Arc<FakeKafka>) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        kafka,
        Arc::new(Metrics::default()),
        "whisperrooms/gateway:test".into(),
        Duration::from_secs(30),
        Some("test".into()),
    ))
}

fn deployment_answer(replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "demo-gateway", "namespace": "chat"},
           "spec": {"replicas": replicas, "selector": {}, "template": {}},
           "status": {"replicas": replicas, "readyReplicas": replicas}})
}

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/chat/deployments/demo-gateway";
const SERVICE: &str = "/api/v1/namespaces/chat/services/demo-gateway";
const HPA: &str = "/apis/autoscaling/v2/namespaces/chat/horizontalpodautoscalers/demo-gateway";
const PDB: &str = "/apis/policy/v1/namespaces/chat/poddisruptionbudgets/demo-gateway";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/chat/events";
const STATUS: &str = "/apis/whisperrooms.io/v1alpha1/namespaces/chat/chatclusters/demo/status";

#[tokio::test]
async fn a_new_cluster_gets_its_topic_gateways_and_status() {
    let kafka = Arc::new(FakeKafka::default());
    let (client, server) = api_server(vec![
        expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
        expect(Method::GET, DEPLOYMENT, StatusCode::NOT_FOUND, not_found()),
        expect(Method::PATCH, DEPLOYMENT, StatusCode::OK, deployment_answer(3)),
        expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
        expect(
            Method::PATCH,
            SERVICE,
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo-gateway"}}),
        ),
        expect(Method::DELETE, HPA, StatusCode::NOT_FOUND, not_found()),
        expect(Method::DELETE, PDB, StatusCode::NOT_FOUND, not_found()),
        expect(
            Method::PATCH,
            STATUS,
            StatusCode::OK,
            json!({"apiVersion": "whisperrooms.io/v1alpha1", "kind": "ChatCluster", "metadata": {"name": "demo"}, "spec": {"kafka": {"bootstrapServers": "kafka:9092"}}}),
        ),
    ]);
    let c = cluster(
        json!({"kafka": {"bootstrapServers": "kafka:9092", "partitions": 6, "replicationFactor": 1, "retentionMs": 120000},
                           "redis": {"url": "redis://redis:6379"}, "gateway": {"replicas": 3}}),
    );
    let action = reconcile(c, context(client, kafka.clone())).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    assert_eq!(
        kafka.calls(),
        [
            "describe demo-messages",
            "create demo-messages 6 1",
            "describe demo-messages"
        ]
    );
    let bodies = server.await.unwrap();
    assert_eq!(bodies[0]["reason"], "TopicCreated");
    let deployment = &bodies[2];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(env.contains(&json!({"name": "WHISPER_MESSAGE_TTL", "value": "120000ms"})));
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["kind"], "ChatCluster");
    assert_eq!(bodies[3]["reason"], "GatewaysCreated");
    let status = &bodies[7]["status"];
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
        [("Ready", "True"), ("TopicReady", "True"), ("GatewaysReady", "True")]
    );
}

#[tokio::test]
async fn drifted_config_is_put_back_and_shrinking_is_reported() {
    let kafka = Arc::new(FakeKafka::with(TopicState {
        partitions: 9,
        replication_factor: 1,
        configs: BTreeMap::from([
            ("retention.ms".into(), "999".into()),
            ("retention.bytes".into(), "1000".into()),
        ]),
    }));
    let (client, server) = api_server(vec![
        expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
        expect(Method::GET, DEPLOYMENT, StatusCode::OK, deployment_answer(2)),
        expect(Method::PATCH, DEPLOYMENT, StatusCode::OK, deployment_answer(2)),
        expect(
            Method::PATCH,
            SERVICE,
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo-gateway"}}),
        ),
        expect(Method::DELETE, HPA, StatusCode::NOT_FOUND, not_found()),
        expect(Method::DELETE, PDB, StatusCode::NOT_FOUND, not_found()),
        expect(
            Method::PATCH,
            STATUS,
            StatusCode::OK,
            json!({"apiVersion": "whisperrooms.io/v1alpha1", "kind": "ChatCluster", "metadata": {"name": "demo"}, "spec": {"kafka": {"bootstrapServers": "kafka:9092"}}}),
        ),
    ]);
    let c = cluster(json!({"kafka": {"bootstrapServers": "kafka:9092", "partitions": 6, "replicationFactor": 1}}));
    reconcile(c, context(client, kafka.clone())).await.unwrap();
    assert_eq!(
        kafka.calls(),
        [
            "describe demo-messages",
            "set_configs demo-messages retention.ms=300000"
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
    assert!(
        bodies[0]["note"]
            .as_str()
            .unwrap()
            .contains("retention.bytes removed (was 1000)")
    );
    let topic_ready = &bodies[6]["status"]["conditions"][1];
    assert_eq!(
        (topic_ready["status"].as_str(), topic_ready["reason"].as_str()),
        (Some("False"), Some("CannotMatchSpec"))
    );
    assert!(topic_ready["message"].as_str().unwrap().contains("never shrink"));
}

#[tokio::test]
async fn kafka_down_is_a_condition_and_an_error_with_backoff() {
    let kafka = Arc::new(FakeKafka {
        down: true,
        ..FakeKafka::default()
    });
    let (client, server) = api_server(vec![
        expect(Method::GET, DEPLOYMENT, StatusCode::OK, deployment_answer(2)),
        expect(Method::PATCH, DEPLOYMENT, StatusCode::OK, deployment_answer(2)),
        expect(
            Method::PATCH,
            SERVICE,
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo-gateway"}}),
        ),
        expect(Method::DELETE, HPA, StatusCode::NOT_FOUND, not_found()),
        expect(Method::DELETE, PDB, StatusCode::NOT_FOUND, not_found()),
        expect(
            Method::PATCH,
            STATUS,
            StatusCode::OK,
            json!({"apiVersion": "whisperrooms.io/v1alpha1", "kind": "ChatCluster", "metadata": {"name": "demo"}, "spec": {"kafka": {"bootstrapServers": "kafka:9092"}}}),
        ),
    ]);
    let c = cluster(json!({"kafka": {"bootstrapServers": "kafka:9092"}}));
    let ctx = context(client, kafka);
    let error = reconcile(c.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(error.metric_label(), "kafka");
    let bodies = server.await.unwrap();
    let topic_ready = &bodies[5]["status"]["conditions"][1];
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
async fn deleting_removes_the_topic_only_with_delete_policy() {
    for (policy, call) in [("Delete", Some("delete demo-messages")), ("Retain", None)] {
        let kafka = Arc::new(FakeKafka::default());
        let mut c = (*cluster(json!({"kafka": {"bootstrapServers": "kafka:9092", "deletionPolicy": policy}}))).clone();
        c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
        let (client, server) = api_server(vec![
            expect(Method::POST, EVENTS, StatusCode::CREATED, json!({})),
            expect(
                Method::PATCH,
                "/apis/whisperrooms.io/v1alpha1/namespaces/chat/chatclusters/demo",
                StatusCode::OK,
                json!({"apiVersion": "whisperrooms.io/v1alpha1", "kind": "ChatCluster", "metadata": {"name": "demo"}, "spec": {"kafka": {"bootstrapServers": "kafka:9092"}}}),
            ),
        ]);
        reconcile(Arc::new(c), context(client, kafka.clone())).await.unwrap();
        assert_eq!(kafka.calls().first().map(String::as_str), call, "{policy}");
        let bodies = server.await.unwrap();
        assert_eq!(
            bodies[0]["reason"],
            if policy == "Delete" {
                "TopicDeleted"
            } else {
                "TopicRetained"
            }
        );
        // The finalizer is removed with a JSON patch.
        assert!(bodies[1].to_string().contains(FINALIZER), "{}", bodies[1]);
    }
}

#[test]
fn backoff_grows_and_is_capped() {
    assert_eq!(backoff(1), Duration::from_secs(1));
    assert_eq!(backoff(4), Duration::from_secs(8));
    assert_eq!(backoff(40), Duration::from_secs(300));
}

#[tokio::test]
async fn a_missing_crd_is_told_apart_from_other_errors() {
    let path = "/apis/whisperrooms.io/v1alpha1/chatclusters";
    let (client, server) = api_server(vec![
        expect(Method::GET, path, StatusCode::NOT_FOUND, not_found()),
        expect(
            Method::GET,
            path,
            StatusCode::OK,
            json!({"apiVersion": "whisperrooms.io/v1alpha1", "kind": "ChatClusterList", "metadata": {}, "items": []}),
        ),
    ]);
    assert!(!crd_installed(&client, None).await.unwrap());
    assert!(crd_installed(&client, None).await.unwrap());
    server.await.unwrap();
}
