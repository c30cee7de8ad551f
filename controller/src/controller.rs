//! The reconciler: level-based and idempotent. Each pass makes Kafka and the
//! owned objects match the ChatCluster, writes status when it changed, and
//! comes back periodically to put back what was changed behind its back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{ChatCluster, ChatClusterStatus, DeletionPolicy};
use crate::metrics::Metrics;
use crate::resources;
use crate::topic::{TopicAdmin, TopicError, TopicSpec, TopicState};

/// The field manager of every server-side apply, and the event reporter.
pub const MANAGER: &str = "whisper-controller";
/// The field manager that holds the gateways' replica count while it passes
/// from the controller to the autoscaler.
const HANDOFF_MANAGER: &str = "whisper-controller-handoff";
/// Guards the topic while the ChatCluster exists.
pub const FINALIZER: &str = "whisperrooms.io/topic";
/// How long deletion keeps retrying an unreachable Kafka before it lets the
/// ChatCluster go, leaving the topic behind, so a namespace never hangs.
pub const CLEANUP_GIVE_UP: Duration = Duration::from_secs(120);

/// What went wrong in a pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kafka: {0}")]
    Kafka(#[from] TopicError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// Every [`Error::metric_label`].
    pub const REASONS: [&'static str; 3] = ["kubernetes", "kafka", "finalizer"];

    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kubernetes",
            Self::Kafka(_) => "kafka",
            Self::Finalizer(e) => match &**e {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
        }
    }
}

/// Everything a pass needs from outside.
pub struct Context {
    pub client: Client,
    pub topics: Arc<dyn TopicAdmin>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Image of the gateways when the spec names none.
    pub gateway_image: String,
    /// How often a healthy ChatCluster is checked again (drift).
    pub resync: Duration,
    /// Failures in a row per ChatCluster, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("gateway_image", &self.gateway_image)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: Client,
        topics: Arc<dyn TopicAdmin>,
        metrics: Arc<Metrics>,
        gateway_image: String,
        resync: Duration,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            topics,
            metrics,
            gateway_image,
            resync,
            failures: Mutex::default(),
        }
    }
}

/// Runs the controller over one namespace or all, until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let client = &ctx.client;
    let config = watcher::Config::default();
    Controller::new(api::<ChatCluster>(client, namespace), config.clone())
        .owns(api::<Deployment>(client, namespace), config.clone())
        .owns(api::<Service>(client, namespace), config.clone())
        .owns(api::<HorizontalPodAutoscaler>(client, namespace), config.clone())
        .owns(api::<PodDisruptionBudget>(client, namespace), config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}

fn key(cluster: &ChatCluster) -> String {
    format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any())
}

/// One pass over one ChatCluster.
pub async fn reconcile(cluster: Arc<ChatCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = tracing::info_span!("reconcile", cluster = %key(&cluster));
    let _enter = span.enter();
    let result = finalizer(&api, FINALIZER, cluster.clone(), |event| async {
        match event {
            finalizer::Event::Apply(cluster) => apply(&cluster, &ctx).await,
            finalizer::Event::Cleanup(cluster) => cleanup(&cluster, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures.lock().expect("failures lock").remove(&key(&cluster));
    }
    result
}

/// Backs off exponentially per ChatCluster: 1 s, 2 s, 4 s … at most 5 min.
pub fn error_policy(cluster: Arc<ChatCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error.metric_label());
    let failures = {
        let mut all = ctx.failures.lock().expect("failures lock");
        let n = all.entry(key(&cluster)).or_insert(0);
        *n += 1;
        *n
    };
    tracing::warn!(cluster = %key(&cluster), failures, error = %error, "reconcile failed");
    Action::requeue(backoff(failures))
}

/// The wait after `failures` failures in a row.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

/// The outcome of making the topic match the spec.
#[derive(Debug, Default)]
struct TopicOutcome {
    state: Option<TopicState>,
    /// What cannot be done, for the TopicReady condition.
    problems: Vec<String>,
}

async fn apply(cluster: &ChatCluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    let topic = ensure_topic(cluster, ctx).await;
    let deployment = apply_children(cluster, ctx, &namespace).await?;
    let status = desired_status(cluster, &topic, &deployment);
    if cluster.status.as_ref() != Some(&status) {
        let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": ChatCluster::api_version(&()),
            "kind": ChatCluster::kind(&()),
            "status": status,
        });
        api.patch_status(
            &cluster.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
    }
    match topic {
        Ok(_) => Ok(Action::requeue(ctx.resync)),
        Err(e) => Err(e.into()),
    }
}

/// Creates the topic or brings it back to the spec; what cannot be done
/// comes back as problems, not errors.
async fn ensure_topic(cluster: &ChatCluster, ctx: &Context) -> Result<TopicOutcome, TopicError> {
    let kafka = &cluster.spec.kafka;
    let brokers = kafka.bootstrap_servers.as_str();
    let desired = TopicSpec {
        name: cluster.topic(),
        partitions: kafka.partitions,
        replication_factor: kafka.replication_factor,
        configs: desired_configs(kafka.retention_ms),
    };
    let Some(state) = ctx.topics.describe(brokers, &desired.name).await? else {
        ctx.topics.create(brokers, &desired).await?;
        event(
            ctx,
            cluster,
            EventType::Normal,
            "TopicCreated",
            format!(
                "created topic {} with {} partitions, replication factor {}, retention.ms {}",
                desired.name, desired.partitions, desired.replication_factor, kafka.retention_ms
            ),
        )
        .await;
        let state = ctx.topics.describe(brokers, &desired.name).await?;
        return Ok(TopicOutcome {
            state,
            problems: vec![],
        });
    };
    let mut outcome = TopicOutcome::default();
    let mut state = state;
    if state.partitions < desired.partitions {
        ctx.topics
            .add_partitions(brokers, &desired.name, desired.partitions)
            .await?;
        event(
            ctx,
            cluster,
            EventType::Normal,
            "PartitionsIncreased",
            format!(
                "grew topic {} from {} to {} partitions",
                desired.name, state.partitions, desired.partitions
            ),
        )
        .await;
        state.partitions = desired.partitions;
    } else if state.partitions > desired.partitions {
        outcome.problems.push(format!(
            "topic {} has {} partitions, more than the {} asked for; partitions never shrink",
            desired.name, state.partitions, desired.partitions
        ));
    }
    if state.replication_factor != desired.replication_factor {
        outcome.problems.push(format!(
            "topic {} has replication factor {}, not {}; the controller does not reassign replicas",
            desired.name, state.replication_factor, desired.replication_factor
        ));
    }
    // The controller owns the topic's configuration: its own keys must have
    // their values, and any other topic-level override goes.
    let drift: Vec<String> = desired
        .configs
        .iter()
        .filter(|(k, v)| state.configs.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}={v} (was {})", state.configs.get(k).map_or("unset", String::as_str)))
        .chain(
            state
                .configs
                .iter()
                .filter(|(k, _)| !desired.configs.contains_key(*k))
                .map(|(k, v)| format!("{k} removed (was {v})")),
        )
        .collect();
    if !drift.is_empty() {
        ctx.topics.set_configs(brokers, &desired.name, &desired.configs).await?;
        event(
            ctx,
            cluster,
            EventType::Normal,
            "TopicConfigured",
            format!("set topic {} config {}", desired.name, drift.join(", ")),
        )
        .await;
        state.configs = desired.configs.clone();
    }
    outcome.state = Some(state);
    Ok(outcome)
}

fn desired_configs(retention_ms: i64) -> BTreeMap<String, String> {
    whisper_common::topic::configs(Duration::from_millis(retention_ms.max(0) as u64))
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Applies the Deployment, Service, and the HPA and PDB when asked for
/// (deleting them when not); returns the Deployment as the API has it.
async fn apply_children(cluster: &ChatCluster, ctx: &Context, namespace: &str) -> Result<Deployment, Error> {
    let name = resources::gateway_name(cluster);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let before = deployments.get_opt(&name).await?;
    if cluster.spec.gateway.autoscaling.is_some()
        && let Some(current) = before.as_ref().and_then(replicas_we_own)
    {
        // Autoscaling was just turned on. Our apply stops naming replicas;
        // were nobody else to own them, the API server would reset them to 1
        // until the HPA acts. Another manager keeps the current count.
        let keep = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": current},
        });
        deployments
            .patch(&name, &PatchParams::apply(HANDOFF_MANAGER).force(), &Patch::Apply(keep))
            .await?;
    }
    let desired = resources::deployment(cluster, &ctx.gateway_image);
    let after = server_side_apply(&deployments, &name, &desired).await?;
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas);
    match &before {
        None => {
            event(
                ctx,
                cluster,
                EventType::Normal,
                "GatewaysCreated",
                format!("created Deployment {name}"),
            )
            .await;
        }
        Some(old) if replicas(old) != replicas(&after) && cluster.spec.gateway.autoscaling.is_none() => {
            let show = |r: Option<i32>| r.map_or_else(|| "-".to_owned(), |r| r.to_string());
            let message = format!(
                "scaled {name} from {} to {}",
                show(replicas(old)),
                show(replicas(&after))
            );
            event(ctx, cluster, EventType::Normal, "GatewaysScaled", message).await;
        }
        _ => {}
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    server_side_apply(&services, &name, &resources::service(cluster)).await?;
    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), namespace);
    match resources::autoscaler(cluster) {
        Some(hpa) => {
            if autoscalers.get_opt(&name).await?.is_none() {
                event(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "AutoscalingEnabled",
                    format!("created HorizontalPodAutoscaler {name}"),
                )
                .await;
            }
            server_side_apply(&autoscalers, &name, &hpa).await?;
        }
        None => {
            if delete_if_present(&autoscalers, &name).await? {
                event(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "AutoscalingDisabled",
                    format!("deleted HorizontalPodAutoscaler {name}"),
                )
                .await;
            }
        }
    }
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), namespace);
    match resources::disruption_budget(cluster) {
        Some(pdb) => {
            server_side_apply(&budgets, &name, &pdb).await?;
        }
        None => {
            delete_if_present(&budgets, &name).await?;
        }
    }
    Ok(after)
}

async fn server_side_apply<K>(api: &Api<K>, name: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut value = serde_json::to_value(object).expect("objects serialize");
    value["apiVersion"] = K::api_version(&K::DynamicType::default()).into();
    value["kind"] = K::kind(&K::DynamicType::default()).into();
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(value))
        .await
}

/// The Deployment's replicas, when this controller's applied config owns them.
fn replicas_we_own(deployment: &Deployment) -> Option<i32> {
    let owned = deployment
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|f| f.manager.as_deref() == Some(MANAGER) && f.operation.as_deref() == Some("Apply"))
        .filter_map(|f| f.fields_v1.as_ref())
        .any(|f| f.0.get("f:spec").and_then(|spec| spec.get("f:replicas")).is_some());
    if owned {
        deployment.spec.as_ref()?.replicas
    } else {
        None
    }
}

/// Deletes the object if it exists; returns whether it did.
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The status for what this pass saw, keeping each condition's transition
/// time while its status holds.
fn desired_status(
    cluster: &ChatCluster,
    topic: &Result<TopicOutcome, TopicError>,
    deployment: &Deployment,
) -> ChatClusterStatus {
    let generation = cluster.metadata.generation;
    let old = cluster.status.clone().unwrap_or_default();
    let (topic_ok, topic_reason, topic_message) = match topic {
        Err(e) => (false, "KafkaUnavailable", e.to_string()),
        Ok(outcome) if !outcome.problems.is_empty() => (false, "CannotMatchSpec", outcome.problems.join("; ")),
        Ok(_) => (
            true,
            "TopicMatchesSpec",
            format!("topic {} matches the spec", cluster.topic()),
        ),
    };
    let state = topic.as_ref().ok().and_then(|o| o.state.as_ref());
    let deployment_status = deployment.status.clone().unwrap_or_default();
    let replicas = deployment_status.replicas.unwrap_or(0);
    let ready = deployment_status.ready_replicas.unwrap_or(0);
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(replicas);
    let gateways_ok = ready >= wanted && ready > 0 || wanted == 0;
    let gateways_message = format!("{ready} of {wanted} gateways ready");
    let gateways_reason = if gateways_ok {
        "GatewaysAvailable"
    } else {
        "GatewaysNotReady"
    };
    let ready_message = match (topic_ok, gateways_ok) {
        (true, true) => "the chat cluster is serving".to_owned(),
        (false, _) => format!("topic: {topic_message}"),
        (true, false) => format!("gateways: {gateways_message}"),
    };
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
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
    };
    ChatClusterStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                "Ready",
                topic_ok && gateways_ok,
                if topic_ok && gateways_ok { "Serving" } else { "NotReady" },
                ready_message,
            ),
            condition("TopicReady", topic_ok, topic_reason, topic_message),
            condition("GatewaysReady", gateways_ok, gateways_reason, gateways_message),
        ],
        topic: Some(cluster.topic()),
        partitions: state.map(|s| s.partitions).or(old.partitions),
        retention_ms: state
            .and_then(|s| s.configs.get("retention.ms"))
            .and_then(|v| v.parse().ok())
            .or(old.retention_ms),
        replicas,
        ready_replicas: ready,
        selector: Some(resources::selector_string(cluster)),
    }
}

async fn cleanup(cluster: &ChatCluster, ctx: &Context) -> Result<Action, Error> {
    if cluster.spec.kafka.deletion_policy == DeletionPolicy::Retain {
        event(
            ctx,
            cluster,
            EventType::Normal,
            "TopicRetained",
            format!("kept topic {} (deletionPolicy: Retain)", cluster.topic()),
        )
        .await;
        return Ok(Action::await_change());
    }
    match ctx
        .topics
        .delete(&cluster.spec.kafka.bootstrap_servers, &cluster.topic())
        .await
    {
        Ok(()) => {
            event(
                ctx,
                cluster,
                EventType::Normal,
                "TopicDeleted",
                format!("deleted topic {}", cluster.topic()),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) if deleting_for(cluster) > CLEANUP_GIVE_UP => {
            let message = format!(
                "could not delete topic {} for {} s ({e}); letting the ChatCluster go and leaving the topic",
                cluster.topic(),
                CLEANUP_GIVE_UP.as_secs()
            );
            event(ctx, cluster, EventType::Warning, "TopicNotDeleted", message).await;
            Ok(Action::await_change())
        }
        Err(e) => Err(e.into()),
    }
}

/// How long the ChatCluster has been waiting to be deleted.
fn deleting_for(cluster: &ChatCluster) -> Duration {
    cluster
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default()
}

/// Records a Kubernetes Event on the ChatCluster; failing to is only logged.
async fn event(ctx: &Context, cluster: &ChatCluster, type_: EventType, reason: &str, note: String) {
    tracing::info!(reason, note, "event");
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot record event");
    }
}

/// Whether the ChatCluster CRD is installed, asked where the controller
/// watches (so a namespace-only install needs no cluster-wide list).
pub async fn crd_installed(client: &Client, namespace: Option<&str>) -> Result<bool, kube::Error> {
    let api = match namespace {
        Some(ns) => Api::<ChatCluster>::namespaced(client.clone(), ns),
        None => Api::<ChatCluster>::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
