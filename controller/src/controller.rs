//! The controller around the reconcile pass: what it watches, the context
//! every pass gets, the error policy (backoff), and Events.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::crd::{ChatCluster, SCHEMA_VERSION, SCHEMA_VERSION_ANNOTATION};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::reconcile::reconcile;
use crate::topic::TopicAdmin;

/// The field manager of every server-side apply, and the event reporter.
pub const MANAGER: &str = "whisper-controller";

/// Label every owned object carries; owned objects are watched by it alone.
pub const OWNED_SELECTOR: &str = "app.kubernetes.io/managed-by=whisper-controller";

/// What the admin decides for every ChatCluster (controller settings).
#[derive(Debug, Clone)]
pub struct Options {
    /// Image of the gateways when the spec names none.
    pub gateway_image: String,
    /// How often a healthy ChatCluster is checked again (drift).
    pub resync: Duration,
    /// Names this replica in Events.
    pub instance: Option<String>,
    /// When set, the only bootstrap servers a ChatCluster may name.
    pub allowed_bootstrap_servers: Option<BTreeSet<String>>,
    /// The topic configs the controller may set; others are left alone.
    pub topic_configs: BTreeSet<String>,
}

/// What the watches have seen: ChatClusters and the owned objects a pass
/// reads, so a pass asks the API only to change something.
#[derive(Debug, Clone)]
pub struct Caches {
    pub clusters: Store<ChatCluster>,
    pub deployments: Store<Deployment>,
    pub autoscalers: Store<HorizontalPodAutoscaler>,
    pub budgets: Store<PodDisruptionBudget>,
}

/// The writing side of [`Caches`], fed by [`run`]'s watches (or a test).
#[derive(Debug)]
pub struct CacheWriters {
    pub clusters: Writer<ChatCluster>,
    pub deployments: Writer<Deployment>,
    pub autoscalers: Writer<HorizontalPodAutoscaler>,
    pub budgets: Writer<PodDisruptionBudget>,
}

impl Caches {
    fn new() -> (Self, CacheWriters) {
        let (clusters, clusters_writer) = reflector::store();
        let (deployments, deployments_writer) = reflector::store();
        let (autoscalers, autoscalers_writer) = reflector::store();
        let (budgets, budgets_writer) = reflector::store();
        (
            Self {
                clusters,
                deployments,
                autoscalers,
                budgets,
            },
            CacheWriters {
                clusters: clusters_writer,
                deployments: deployments_writer,
                autoscalers: autoscalers_writer,
                budgets: budgets_writer,
            },
        )
    }

    /// Waits until every cache has had its first list.
    pub(crate) async fn ready(&self) {
        // A writer is dropped only when the controller stops.
        let _ = tokio::join!(
            self.clusters.wait_until_ready(),
            self.deployments.wait_until_ready(),
            self.autoscalers.wait_until_ready(),
            self.budgets.wait_until_ready(),
        );
    }
}

/// Everything a pass needs from outside.
pub struct Context {
    pub client: Client,
    pub topics: Arc<dyn TopicAdmin>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub options: Options,
    pub caches: Caches,
    /// Failures in a row per ChatCluster, for backoff.
    pub(crate) failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The context, and the writers [`run`] feeds its caches with.
    pub fn new(
        client: Client,
        topics: Arc<dyn TopicAdmin>,
        metrics: Arc<Metrics>,
        options: Options,
    ) -> (Self, CacheWriters) {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: options.instance.clone(),
        };
        let (caches, writers) = Caches::new();
        metrics.watch_clusters(caches.clusters.clone());
        let ctx = Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            topics,
            metrics,
            options,
            caches,
            failures: Mutex::default(),
        };
        (ctx, writers)
    }
}

/// Runs the controller over one namespace or all, until `shutdown` resolves.
/// Owned objects are watched by their label only; Secrets by metadata only,
/// and a change reaches just the ChatClusters that reference the Secret.
pub async fn run(
    ctx: Arc<Context>,
    writers: CacheWriters,
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
    fn cached<K>(writer: Writer<K>, api: Api<K>) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let owned = watcher::Config::default().labels(OWNED_SELECTOR);
        reflector(writer, watcher(api, owned))
            .default_backoff()
            .touched_objects()
    }
    let client = &ctx.client;
    let clusters = reflector(
        writers.clusters,
        watcher(api::<ChatCluster>(client, namespace), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let referencing = ctx.caches.clusters.clone();
    let secrets = watcher(
        api::<PartialObjectMeta<Secret>>(client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    Controller::for_stream(clusters, ctx.caches.clusters.clone())
        .owns_stream(cached(writers.deployments, api(client, namespace)))
        .owns_stream(cached(writers.autoscalers, api(client, namespace)))
        .owns_stream(cached(writers.budgets, api(client, namespace)))
        .owns(
            api::<Service>(client, namespace),
            watcher::Config::default().labels(OWNED_SELECTOR),
        )
        .watches_stream(secrets, move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            referencing
                .state()
                .into_iter()
                .filter(|c| c.namespace() == namespace && c.secret_names().contains(&name.as_str()))
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}

pub(crate) fn key(cluster: &ChatCluster) -> String {
    format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any())
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

/// Records a Kubernetes Event on the ChatCluster; failing to is only logged.
pub(crate) async fn event(ctx: &Context, cluster: &ChatCluster, type_: EventType, reason: &str, note: String) {
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

/// Why the controller cannot run against the installed CRD.
#[derive(Debug, thiserror::Error)]
pub enum CrdProblem {
    #[error(
        "the ChatCluster CRD (chatclusters.whisperrooms.io) is not installed: `kubectl apply --server-side -f k8s/crd.yaml` or `helm install` the chart first"
    )]
    Missing,
    #[error(
        "the ChatCluster CRD has schema version {found}, this controller needs {needed}: `helm upgrade` does not update CRDs; apply the new one first with `kubectl apply --server-side -f k8s/crd.yaml` (the chart's crds/chatcluster.yaml is the same file)"
    )]
    Older { found: String, needed: u32 },
    #[error("cannot read the ChatCluster CRD: {0}")]
    Kube(#[from] kube::Error),
}

/// Checks that the installed CRD is at least as new as this controller.
pub async fn check_crd(client: &Client) -> Result<(), CrdProblem> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get_opt(&format!("{}.{}", ChatCluster::plural(&()), ChatCluster::group(&())))
        .await?
        .ok_or(CrdProblem::Missing)?;
    let found = crd
        .annotations()
        .get(SCHEMA_VERSION_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| "none".into());
    match found.parse::<u32>() {
        Ok(version) if version >= SCHEMA_VERSION => Ok(()),
        _ => Err(CrdProblem::Older {
            found,
            needed: SCHEMA_VERSION,
        }),
    }
}
