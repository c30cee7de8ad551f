//! Settings of the controller: flags or `WHISPER_*` environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// The controller's settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "whisper-controller",
    version,
    about = "WhisperRooms Kubernetes operator for ChatCluster resources"
)]
pub struct Settings {
    /// Address of /metrics, /healthz and /readyz
    #[arg(long, env = "WHISPER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Tracing filter
    #[arg(long, env = "WHISPER_LOG", default_value = "info")]
    pub log: String,
    /// Gateway image for ChatClusters that name none [default: the gateway of this version]
    #[arg(long, env = "WHISPER_GATEWAY_IMAGE")]
    pub gateway_image: Option<String>,
    /// How often each ChatCluster is checked again for drift (e.g. 30s)
    #[arg(long, env = "WHISPER_RESYNC", default_value = "30s", value_parser = duration)]
    pub resync: Duration,
    /// Elect a leader on a Lease, so several replicas can run
    #[arg(long, env = "WHISPER_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease [default: the pod's namespace, else `default`]
    #[arg(long, env = "WHISPER_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Watch ChatClusters in this namespace only [default: all namespaces]
    #[arg(long, env = "WHISPER_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Name of this replica in the Lease and in Events [default: pod name or host name]
    #[arg(long, env = "WHISPER_CONTROLLER_ID")]
    pub id: Option<String>,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| format!("`{text}` is not a duration like 30s"))
}

impl Settings {
    /// The gateway image of this controller's own version.
    pub fn gateway_image(&self) -> String {
        self.gateway_image
            .clone()
            .unwrap_or_else(|| format!("whisperrooms/gateway:{}", env!("CARGO_PKG_VERSION")))
    }

    pub fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok())
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into())
    }

    pub fn id(&self) -> String {
        self.id
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "whisper-controller".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let s = Settings::try_parse_from(["whisper-controller"]).unwrap();
        assert_eq!(s.resync, Duration::from_secs(30));
        assert!(s.leader_election);
        assert!(s.gateway_image().starts_with("whisperrooms/gateway:"));
        let s = Settings::try_parse_from(["whisper-controller", "--leader-election", "false"]).unwrap();
        assert!(!s.leader_election);
        let err = Settings::try_parse_from(["whisper-controller", "--resync", "often"]).unwrap_err();
        assert!(err.to_string().contains("often"));
    }
}
