//! `whisper-controller`: parse settings, connect to Kubernetes, win the
//! leader lease, reconcile ChatClusters until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tracing_subscriber::EnvFilter;
use whisper_common::signal;
use whisper_controller::config::Settings;
use whisper_controller::controller::{self, Context};
use whisper_controller::http;
use whisper_controller::leader::{Elector, Timings};
use whisper_controller::metrics::Metrics;
use whisper_controller::topic::KafkaAdmin;

const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::try_parse() {
        Ok(settings) => settings,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let filter = match EnvFilter::try_new(&settings.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("whisper-controller: WHISPER_LOG: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _telemetry = match whisper_common::telemetry::init("whisper-controller", filter) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("whisper-controller: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whisper-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to Kubernetes (KUBECONFIG or in-cluster config): {e}"))?;
    if !controller::crd_installed(&client, settings.watch_namespace.as_deref()).await? {
        anyhow::bail!(
            "the ChatCluster CRD (chatclusters.whisperrooms.io) is not installed: `kubectl apply -f k8s/crd.yaml` or `helm install` the chart first"
        );
    }
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    tokio::spawn(http::serve(listener, metrics.clone()));

    let id = settings.id();
    let elector = settings.leader_election.then(|| {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &settings.lease_namespace());
        Elector::new(leases, "whisper-controller", &id, Timings::default())
    });
    if let Some(elector) = &elector {
        tracing::info!(id, "waiting for the leader lease");
        tokio::select! {
            () = elector.acquire() => {}
            () = signal::shutdown() => return Ok(()),
        }
        tracing::info!(id, "leading");
    }
    metrics.leader.set(1);

    let ctx = Arc::new(Context::new(
        client,
        Arc::new(KafkaAdmin::default()),
        metrics.clone(),
        settings.gateway_image(),
        settings.resync,
        Some(id),
    ));
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
    if let Some(elector) = elector.clone() {
        tokio::spawn(async move {
            elector.hold().await;
            let _ = lost_tx.send(());
        });
    }
    let lost = async move { lost_rx.await.is_ok() };
    let stop = async move {
        tokio::select! {
            () = signal::shutdown() => false,
            lost = lost => lost,
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let lost = stop.await;
        let _ = stop_tx.send(lost);
    });
    let mut watch = stop_rx.clone();
    controller::run(ctx, settings.watch_namespace.as_deref(), async move {
        let _ = watch.changed().await;
    })
    .await;
    metrics.leader.set(0);
    if let Some(elector) = &elector
        && !*stop_rx.borrow()
    {
        elector.release().await;
    }
    if *stop_rx.borrow() {
        anyhow::bail!("lost the leader lease; exiting so a fresh replica can stand by");
    }
    Ok(())
}
