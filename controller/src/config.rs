//! Settings of the controller: flags or `WHISPER_*` environment variables.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::controller::Options;

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
    /// Comma list of the only Kafka bootstrap servers (host:port) ChatClusters may use [default: any]
    #[arg(long, env = "WHISPER_ALLOWED_BOOTSTRAP_SERVERS", value_delimiter = ',')]
    pub allowed_bootstrap_servers: Vec<String>,
    /// Comma list of the topic configs the controller may set; others are left alone
    #[arg(
        long,
        env = "WHISPER_TOPIC_CONFIGS",
        value_delimiter = ',',
        default_value = "cleanup.policy,retention.ms,segment.ms,min.insync.replicas",
        value_parser = topic_config
    )]
    pub topic_configs: Vec<String>,
}

fn topic_config(text: &str) -> Result<String, String> {
    let text = text.trim();
    if whisper_common::topic::MANAGED_CONFIGS.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a topic config the controller manages ({})",
            whisper_common::topic::MANAGED_CONFIGS.join(", ")
        ))
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| format!("`{text}` is not a duration like 30s"))
}

impl Settings {
    /// What the admin decided for every ChatCluster.
    pub fn options(&self) -> Options {
        let allowed: BTreeSet<String> = self
            .allowed_bootstrap_servers
            .iter()
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        Options {
            gateway_image: self.gateway_image(),
            resync: self.resync,
            instance: Some(self.id()),
            allowed_bootstrap_servers: (!allowed.is_empty()).then_some(allowed),
            topic_configs: self.topic_configs.iter().cloned().collect(),
        }
    }

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
        assert_eq!(s.options().topic_configs.len(), 4);
        assert_eq!(s.options().allowed_bootstrap_servers, None);
        let s = Settings::try_parse_from([
            "whisper-controller",
            "--topic-configs",
            "retention.ms,cleanup.policy",
            "--allowed-bootstrap-servers",
            "Kafka:9092,kafka-2:9092",
        ])
        .unwrap();
        let options = s.options();
        assert_eq!(options.topic_configs.len(), 2);
        assert!(options.allowed_bootstrap_servers.unwrap().contains("kafka:9092"));
        let err = Settings::try_parse_from(["whisper-controller", "--topic-configs", "max.message.bytes"]).unwrap_err();
        assert!(err.to_string().contains("max.message.bytes"));
    }
}
