//! `whisper-controller`: parse settings, connect to Kubernetes, win the
//! leader lease, reconcile ChatClusters until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
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
    controller::check_crd(&client).await?;
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    tokio::spawn(http::serve(listener, metrics.clone()));

    let id = settings.id();
    // One token stops everything: SIGTERM/SIGINT, or the lease lost.
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            signal::shutdown().await;
            stop.cancel();
        }
    });
    let elector = settings.leader_election.then(|| {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &settings.lease_namespace());
        Elector::new(leases, "whisper-controller", &id, Timings::default())
    });
    if let Some(elector) = &elector {
        tracing::info!(id, "waiting for the leader lease");
        tokio::select! {
            () = elector.acquire() => {}
            () = stop.cancelled() => return Ok(()),
        }
        tracing::info!(id, "leading");
    }
    metrics.leader.set(1);

    let (ctx, caches) = Context::new(
        client,
        Arc::new(KafkaAdmin::default()),
        metrics.clone(),
        settings.options(),
    );
    // Whether leadership was lost (rather than a signal received).
    let holder = elector.clone().map(|elector| {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = elector.hold() => {
                    stop.cancel();
                    true
                }
                () = stop.cancelled() => false,
            }
        })
    });
    controller::run(
        Arc::new(ctx),
        caches,
        settings.watch_namespace.as_deref(),
        stop.cancelled_owned(),
    )
    .await;
    metrics.leader.set(0);
    let lost = match holder {
        Some(holder) => holder.await.unwrap_or(true),
        None => false,
    };
    if lost {
        anyhow::bail!("lost the leader lease; exiting so a fresh replica can stand by");
    }
    if let Some(elector) = &elector {
        elector.release().await;
    }
    Ok(())
}
