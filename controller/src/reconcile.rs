//! One pass over one ChatCluster: level-based and idempotent. Each pass makes
//! Kafka ([`topic`]) and the owned objects ([`children`]) match the
//! ChatCluster, writes status ([`status`]) when it changed, and comes back
//! periodically to put back what was changed behind its back.

mod children;
mod secrets;
mod status;
mod topic;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use self::status::Gateways;
use crate::controller::{Context, MANAGER, event, key};
use crate::crd::{ChatCluster, ChatClusterStatus, DeletionPolicy, PAUSE_ANNOTATION};
use crate::error::Error;
use crate::topic::TopicError;

/// Guards the topic while a ChatCluster with `deletionPolicy: Delete` exists.
pub const FINALIZER: &str = "whisperrooms.io/topic";
/// How long deletion keeps retrying an unreachable Kafka before it lets the
/// ChatCluster go, leaving the topic behind, so a namespace never hangs.
pub const CLEANUP_GIVE_UP: Duration = Duration::from_secs(120);

/// One pass over one ChatCluster.
#[tracing::instrument(skip_all, fields(cluster = %key(&cluster)))]
pub async fn reconcile(cluster: Arc<ChatCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    ctx.caches.ready().await;
    let result = pass(&cluster, &ctx).await;
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures.lock().expect("failures lock").remove(&key(&cluster));
    }
    result
}

async fn pass(cluster: &ChatCluster, ctx: &Context) -> Result<Action, Error> {
    if cluster.annotated(PAUSE_ANNOTATION) {
        write_status(cluster, ctx, status::paused(cluster)).await?;
        return Ok(Action::await_change());
    }
    if cluster.metadata.deletion_timestamp.is_some() {
        return delete(cluster, ctx).await;
    }
    // The finalizer guards a topic that goes with the ChatCluster, and
    // nothing else: with Retain there is nothing to wait for.
    let wanted = cluster.spec.kafka.deletion_policy == DeletionPolicy::Delete;
    if wanted != has_finalizer(cluster) {
        set_finalizer(cluster, ctx, wanted).await?;
    }
    apply(cluster, ctx).await
}

async fn apply(cluster: &ChatCluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    // Ownership of the topic is recorded in status. Until it is, the cached
    // object may predate the status write of the pass that created the
    // topic: ask the API for the ChatCluster as it is.
    let fresh;
    let cluster = if cluster.status.as_ref().is_some_and(|s| s.topic.is_some()) {
        cluster
    } else {
        let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &namespace);
        fresh = api.get(&cluster.name_any()).await?;
        &fresh
    };
    let secrets = match secrets::read(cluster, ctx).await? {
        Ok(secrets) => secrets,
        Err(missing) => {
            write_status(cluster, ctx, status::secret_missing(cluster, missing)).await?;
            return Ok(Action::requeue(ctx.options.resync));
        }
    };
    let topic = match secrets::kafka(cluster, &secrets) {
        Ok(kafka) => topic::ensure_topic(cluster, ctx, &kafka).await,
        Err(problem) => Err(TopicError(problem)),
    };
    let topic_ready = topic.as_ref().is_ok_and(|t| t.problem.is_none());
    // Gateways start only on a topic that is ready: they never create it.
    let gateways = if topic_ready {
        children::apply_children(cluster, ctx, &namespace, &secrets.hash()).await
    } else {
        Ok(children::current_deployment(cluster, ctx, &namespace))
    };
    let gateways = match gateways {
        Ok(deployment) => Gateways::Deployment(deployment),
        Err(Error::Kube(kube::Error::Api(refused))) if children::rejected(&refused) => {
            Gateways::Rejected(refused.message)
        }
        Err(e) => return Err(e),
    };
    let new = status::desired(cluster, &topic, &gateways);
    write_status(cluster, ctx, new).await?;
    match topic {
        Ok(_) => Ok(Action::requeue(ctx.options.resync)),
        Err(e) => Err(e.into()),
    }
}

/// Writes status when it changed, with a Warning event for each problem
/// that just appeared in a condition.
async fn write_status(cluster: &ChatCluster, ctx: &Context, status: ChatClusterStatus) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    for condition in status::new_problems(cluster, &status) {
        event(
            ctx,
            cluster,
            EventType::Warning,
            &condition.reason,
            condition.message.clone(),
        )
        .await;
    }
    let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
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
    Ok(())
}

fn has_finalizer(cluster: &ChatCluster) -> bool {
    cluster.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds or removes the finalizer with a JSON patch that fails if the list
/// changed since it was read.
async fn set_finalizer(cluster: &ChatCluster, ctx: &Context, on: bool) -> Result<(), Error> {
    let finalizers = cluster.finalizers();
    let ops = if on && finalizers.is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else if on {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    } else {
        let index = finalizers.iter().position(|f| f == FINALIZER).unwrap_or_default();
        serde_json::json!([
            {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
            {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
        ])
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("a valid JSON patch");
    let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    api.patch::<ChatCluster>(&cluster.name_any(), &PatchParams::default(), &Patch::Json(patch))
        .await?;
    Ok(())
}

/// The ChatCluster is going: delete the topic if the finalizer says so,
/// then let it go.
async fn delete(cluster: &ChatCluster, ctx: &Context) -> Result<Action, Error> {
    if !has_finalizer(cluster) {
        return Ok(Action::await_change());
    }
    cleanup(cluster, ctx).await?;
    set_finalizer(cluster, ctx, false).await?;
    Ok(Action::await_change())
}

async fn cleanup(cluster: &ChatCluster, ctx: &Context) -> Result<(), Error> {
    if cluster.spec.kafka.deletion_policy == DeletionPolicy::Retain {
        retained(cluster, ctx, "deletionPolicy is Retain").await;
        return Ok(());
    }
    if !topic::owns(cluster) {
        retained(cluster, ctx, "this ChatCluster never owned it").await;
        return Ok(());
    }
    let deleted = match secrets::read(cluster, ctx).await? {
        Ok(secrets) => match secrets::kafka(cluster, &secrets) {
            Ok(kafka) => {
                // A topic made again behind this cluster's back is not its own.
                if let Ok(Some(state)) = ctx.topics.describe(&kafka, &cluster.topic()).await
                    && let Some((_, now)) = topic::replaced(cluster, &state)
                {
                    let why = format!("it was made again outside this ChatCluster (id {now})");
                    retained(cluster, ctx, &why).await;
                    return Ok(());
                }
                ctx.topics.delete(&kafka, &cluster.topic()).await
            }
            Err(problem) => Err(TopicError(problem)),
        },
        Err(missing) => Err(TopicError(missing)),
    };
    match deleted {
        Ok(()) => {
            event(
                ctx,
                cluster,
                EventType::Normal,
                "TopicDeleted",
                format!("deleted topic {}", cluster.topic()),
            )
            .await;
            Ok(())
        }
        Err(e) if deleting_for(cluster) > CLEANUP_GIVE_UP => {
            let message = format!(
                "could not delete topic {} for {} s ({e}); letting the ChatCluster go and leaving the topic",
                cluster.topic(),
                CLEANUP_GIVE_UP.as_secs()
            );
            event(ctx, cluster, EventType::Warning, "TopicNotDeleted", message).await;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Says why the topic stays as its ChatCluster goes.
async fn retained(cluster: &ChatCluster, ctx: &Context, why: &str) {
    let message = format!("kept topic {}: {why}", cluster.topic());
    event(ctx, cluster, EventType::Normal, "TopicRetained", message).await;
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

#[cfg(test)]
mod tests;
