//! The owned objects: the gateway Deployment, its Service, and the HPA and
//! PDB when asked for.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::sync::Arc;

use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::Status;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::controller::{Context, MANAGER, event};
use crate::crd::ChatCluster;
use crate::error::Error;
use crate::resources;

/// The field manager that holds the gateways' replica count while it passes
/// from the controller to the autoscaler.
const HANDOFF_MANAGER: &str = "whisper-controller-handoff";

/// The object of `store` named `name` in `namespace`, as last watched.
fn cached<K>(store: &Store<K>, name: &str, namespace: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

/// The gateway Deployment as last watched, when it exists.
pub(super) fn current_deployment(cluster: &ChatCluster, ctx: &Context, namespace: &str) -> Option<Box<Deployment>> {
    cached(&ctx.caches.deployments, &resources::gateway_name(cluster), namespace).map(|d| Box::new((*d).clone()))
}

/// Whether the API refused an object for what it is (admission webhook,
/// quota, invalid name or field) rather than failing to answer.
pub(super) fn rejected(error: &Status) -> bool {
    matches!(error.code, 400 | 403 | 409 | 422)
}

/// Applies the Deployment (its pod template carrying `secret_hash`),
/// Service, and the HPA and PDB when asked for (deleting them when not);
/// returns the Deployment as the API has it.
pub(super) async fn apply_children(
    cluster: &ChatCluster,
    ctx: &Context,
    namespace: &str,
    secret_hash: &str,
) -> Result<Option<Box<Deployment>>, Error> {
    let name = resources::gateway_name(cluster);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let before = cached(&ctx.caches.deployments, &name, namespace);
    if cluster.spec.gateway.autoscaling.is_some()
        && let Some(current) = before.as_deref().and_then(replicas_we_own)
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
    let desired = resources::deployment(cluster, &ctx.options.gateway_image, secret_hash);
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
            if cached(&ctx.caches.autoscalers, &name, namespace).is_none() {
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
        None if cached(&ctx.caches.autoscalers, &name, namespace).is_some()
            && delete_if_present(&autoscalers, &name).await? =>
        {
            event(
                ctx,
                cluster,
                EventType::Normal,
                "AutoscalingDisabled",
                format!("deleted HorizontalPodAutoscaler {name}"),
            )
            .await;
        }
        None => {}
    }
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), namespace);
    match resources::disruption_budget(cluster) {
        Some(pdb) => {
            server_side_apply(&budgets, &name, &pdb).await?;
        }
        None if cached(&ctx.caches.budgets, &name, namespace).is_some() => {
            delete_if_present(&budgets, &name).await?;
        }
        None => {}
    }
    Ok(Some(Box::new(after)))
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
