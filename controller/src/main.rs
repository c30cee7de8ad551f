//! `whisper-controller`: the Kubernetes operator for `ChatCluster` resources.
//!
//! Not built yet: it parses its settings and says so. See the issue that
//! builds the reconciler.

use std::process::ExitCode;

use clap::Parser;

/// WhisperRooms Kubernetes operator for ChatCluster resources.
#[derive(Debug, Parser)]
#[command(name = "whisper-controller", version)]
struct Settings {
    /// Tracing filter
    #[arg(long, env = "WHISPER_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let settings = match Settings::try_parse() {
        Ok(settings) => settings,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(64);
        }
    };
    eprintln!(
        "whisper-controller: the reconciler is not implemented yet (log filter `{}`)",
        settings.log
    );
    ExitCode::FAILURE
}
