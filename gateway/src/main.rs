//! `whisper-gateway`: parse settings, set up logs, serve until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use whisper_gateway::config::{Config, Settings};
use whisper_gateway::server;

/// The exit status for a bad setting (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::try_parse() {
        Ok(settings) => settings,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = match Config::load(settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("whisper-gateway: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The WebSocket library traces whole frames, message text included: it
    // stays silent at every level, so no log line carries what users wrote.
    let filter = match EnvFilter::try_new(&config.log) {
        Ok(filter) => filter
            .add_directive("tungstenite=off".parse().expect("a valid directive"))
            .add_directive("tokio_tungstenite=off".parse().expect("a valid directive")),
        Err(e) => {
            eprintln!("whisper-gateway: WHISPER_LOG: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _telemetry = match whisper_common::telemetry::init("whisper-gateway", filter) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("whisper-gateway: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let state = server::connect(config).await?;
    server::run(state, listener, whisper_common::signal::shutdown()).await?;
    Ok(())
}
