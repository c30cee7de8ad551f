//! Settings: flags, `WHISPER_*` environment variables and a YAML file, merged
//! (flag beats env beats file beats default) and checked before anything
//! starts. A bad setting is a [`ConfigError`] naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use whisper_common::kafka::{KafkaSecurity, Part, Secret, SecurityError, SecuritySettings};
use whisper_common::tls::Pem;

use crate::auth::{MIN_SECRET_BYTES, TokenRules};
use crate::filter::ContentFilter;
use crate::protocol::Limits;

/// Declares the raw settings once: each becomes a flag, an environment
/// variable and a YAML key of the same name.
macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $field:ident = $env:literal, )*) => {
        /// Raw settings as given, before defaults and checks.
        #[derive(Debug, Default, Parser)]
        #[command(name = "whisper-gateway", version, about = "WhisperRooms WebSocket gateway")]
        pub struct Settings {
            /// YAML file of settings, keyed by the flag names with `_` (e.g. `message_ttl: 2m`).
            #[arg(long, env = "WHISPER_CONFIG")]
            pub config: Option<PathBuf>,
            // `--help` names each variable but never shows its value: some are secrets.
            $( $(#[doc = $doc])* #[arg(long, env = $env, hide_env_values = true)] pub $field: Option<String>, )*
        }

        impl Settings {
            /// Fills every setting not given by flag or env from the file's
            /// keys, and returns the keys nobody knows.
            fn fill_from(&mut self, mut file: BTreeMap<String, String>) -> Vec<String> {
                $( if self.$field.is_none() { self.$field = file.remove(stringify!($field)); } else { file.remove(stringify!($field)); } )*
                file.into_keys().collect()
            }
        }
    };
}

settings! {
    /// HTTP and WebSocket address [default: 0.0.0.0:8080]
    listen = "WHISPER_LISTEN",
    /// Kafka bootstrap servers; unset = embedded in-memory bus (one process only)
    kafka_brokers = "WHISPER_KAFKA_BROKERS",
    /// The one Kafka topic, keyed by room id [default: chat-messages]
    kafka_topic = "WHISPER_KAFKA_TOPIC",
    /// `false`: never create the topic; wait, not ready, until it exists [default: true]
    kafka_create_topic = "WHISPER_KAFKA_CREATE_TOPIC",
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL [default: PLAINTEXT]
    kafka_security_protocol = "WHISPER_KAFKA_SECURITY_PROTOCOL",
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (needed with SASL_*)
    kafka_sasl_mechanism = "WHISPER_KAFKA_SASL_MECHANISM",
    /// SASL user name (needed with SASL_*)
    kafka_sasl_username = "WHISPER_KAFKA_SASL_USERNAME",
    /// SASL password (needed with SASL_*)
    kafka_sasl_password = "WHISPER_KAFKA_SASL_PASSWORD",
    /// PEM file of the CAs that sign the brokers' certificates (SSL, SASL_SSL) [default: the system's]
    kafka_ca_file = "WHISPER_KAFKA_CA_FILE",
    /// PEM file of the client certificate for mTLS (SSL, SASL_SSL; with the key)
    kafka_cert_file = "WHISPER_KAFKA_CERT_FILE",
    /// PEM file of the client certificate's private key (with the certificate)
    kafka_key_file = "WHISPER_KAFKA_KEY_FILE",
    /// Redis URL of the presence store (redis:// or rediss://, may carry user:password@); unset = in-memory presence (one process only)
    redis_url = "WHISPER_REDIS_URL",
    /// PEM file of the CAs that sign the Redis server's certificate (rediss:// only) [default: the system's]
    redis_ca_file = "WHISPER_REDIS_CA_FILE",
    /// Message lifetime, 1s to 24h (e.g. 90s, 5m) [default: 5m]
    message_ttl = "WHISPER_MESSAGE_TTL",
    /// Names this gateway in presence, metrics and its Kafka consumer group [default: host name + random suffix]
    gateway_id = "WHISPER_GATEWAY_ID",
    /// HS256 secret of at least 32 bytes; when set, `hello` must carry a valid token
    jwt_secret = "WHISPER_JWT_SECRET",
    /// When set (with a secret), tokens must carry this `iss`
    jwt_issuer = "WHISPER_JWT_ISSUER",
    /// When set (with a secret), tokens must carry this `aud`
    jwt_audience = "WHISPER_JWT_AUDIENCE",
    /// Longest message text in bytes [default: 2000]
    max_text_bytes = "WHISPER_MAX_TEXT_BYTES",
    /// Messages per second per connection [default: 5]
    rate = "WHISPER_RATE",
    /// Burst of messages per connection above the rate [default: 10]
    burst = "WHISPER_BURST",
    /// Rooms one connection may be in at once [default: 32]
    max_rooms = "WHISPER_MAX_ROOMS",
    /// Comma list of allowed Origins for the WebSocket upgrade [default: any]
    allowed_origins = "WHISPER_ALLOWED_ORIGINS",
    /// Tracing filter [default: info]
    log = "WHISPER_LOG",
    /// Open WebSocket connections this gateway accepts [default: 10000]
    max_connections = "WHISPER_MAX_CONNECTIONS",
    /// Open connections per source address; 0 = no cap (behind a proxy that limits them) [default: 100]
    max_connections_per_ip = "WHISPER_MAX_CONNECTIONS_PER_IP",
    /// Largest accepted frame in bytes [default: 16384]
    max_frame_bytes = "WHISPER_MAX_FRAME_BYTES",
    /// Frames queued for one socket before it is closed as too slow (4009) [default: 256]
    send_queue = "WHISPER_SEND_QUEUE",
    /// Bytes queued for one socket before it is closed as too slow (4009), e.g. 1MiB [default: 1MiB]
    send_queue_bytes = "WHISPER_SEND_QUEUE_BYTES",
    /// Memory bound of the message history, e.g. 64MiB [default: 64MiB]
    history_max_bytes = "WHISPER_HISTORY_MAX_BYTES",
    /// Members of a gateway that stopped heartbeating are gone after this [default: 30s]
    presence_timeout = "WHISPER_PRESENCE_TIMEOUT",
    /// Time allowed to drain on SIGTERM [default: 10s]
    shutdown_grace = "WHISPER_SHUTDOWN_GRACE",
    /// Client frames of any kind per second per connection [default: 20]
    frame_rate = "WHISPER_FRAME_RATE",
    /// Burst of client frames per connection above the frame rate [default: 40]
    frame_burst = "WHISPER_FRAME_BURST",
    /// Close with 4010 a socket silent this long; pings every third of it [default: 60s]
    idle_timeout = "WHISPER_IDLE_TIMEOUT",
    /// Shortest lifetime (`ttl_ms`) a message may ask for [default: 1s]
    min_ttl = "WHISPER_MIN_TTL",
    /// `true`: refuse `send` without `enc` (only end-to-end encrypted text) [default: false]
    require_encryption = "WHISPER_REQUIRE_ENCRYPTION",
    /// File of deny rules, one regular expression a line; matching plain text is refused (`blocked`)
    content_filter = "WHISPER_CONTENT_FILTER",
}

/// A setting that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The environment variable naming the setting.
    pub setting: &'static str,
    pub problem: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

/// Where the bus is, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    /// Create the topic when it is missing; `false`: wait for it.
    pub create_topic: bool,
    pub security: KafkaSecurity,
}

/// Where the presence store is.
#[derive(Clone)]
pub struct RedisConfig {
    /// May carry a password: never log it, log [`redact_url`] of it.
    pub url: String,
    /// PEM text of the CAs for `rediss://`; `None`: the system's.
    pub ca: Option<String>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("ca", &self.ca.as_ref().map(|_| ".."))
            .finish()
    }
}

/// The checked configuration of one gateway.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None`: the embedded in-memory bus.
    pub kafka: Option<KafkaConfig>,
    /// `None`: in-memory presence.
    pub redis: Option<RedisConfig>,
    pub ttl: Duration,
    pub gateway_id: String,
    /// `None`: anonymous users.
    pub auth: Option<TokenRules>,
    pub limits: Limits,
    /// `None`: any origin.
    pub allowed_origins: Option<Vec<String>>,
    pub log: String,
    pub max_connections: usize,
    /// 0: no cap.
    pub max_connections_per_ip: usize,
    pub max_frame_bytes: usize,
    pub send_queue: usize,
    pub send_queue_bytes: usize,
    pub history_max_bytes: usize,
    pub presence_timeout: Duration,
    pub shutdown_grace: Duration,
    pub idle_timeout: Duration,
    pub require_encryption: bool,
    /// The content filter, its file read and checked once, at start.
    pub content_filter: Option<Arc<ContentFilter>>,
}

impl Config {
    /// Reads flags and environment, then the YAML file they name, and checks
    /// the result.
    pub fn load(mut settings: Settings) -> Result<Self, ConfigError> {
        if let Some(path) = settings.config.clone() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad("WHISPER_CONFIG", format!("cannot read {}: {e}", path.display())))?;
            let unknown = settings.fill_from(parse_yaml(&text)?);
            if let Some(key) = unknown.first() {
                return Err(bad("WHISPER_CONFIG", format!("unknown setting `{key}`")));
            }
        }
        Self::from_settings(settings)
    }

    /// Applies defaults and checks every setting.
    pub fn from_settings(s: Settings) -> Result<Self, ConfigError> {
        let listen = s.listen.as_deref().unwrap_or("0.0.0.0:8080");
        let listen = listen.parse().map_err(|_| {
            bad(
                "WHISPER_LISTEN",
                format!("`{listen}` is not an address like 0.0.0.0:8080"),
            )
        })?;
        let topic = s.kafka_topic.unwrap_or_else(|| "chat-messages".into());
        if let Some(problem) = whisper_common::topic::name_problem(&topic) {
            return Err(bad("WHISPER_KAFKA_TOPIC", format!("`{topic}`: {problem}")));
        }
        let create_topic = boolean("WHISPER_KAFKA_CREATE_TOPIC", s.kafka_create_topic.as_deref(), true)?;
        let pem_file = |path: String| Pem::File(path.into());
        let security = SecuritySettings {
            protocol: parsed("WHISPER_KAFKA_SECURITY_PROTOCOL", s.kafka_security_protocol)?,
            mechanism: parsed("WHISPER_KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism)?,
            username: s.kafka_sasl_username,
            password: s.kafka_sasl_password.map(Secret),
            ca: s.kafka_ca_file.map(pem_file),
            cert: s.kafka_cert_file.map(pem_file),
            key: s.kafka_key_file.map(pem_file),
        }
        .check()
        .map_err(security_error)?;
        let kafka = match s.kafka_brokers.map(|b| b.trim().to_owned()) {
            None if security != KafkaSecurity::default() => {
                return Err(bad(
                    "WHISPER_KAFKA_BROKERS",
                    "is needed with the Kafka security settings (WHISPER_KAFKA_SECURITY_PROTOCOL...)",
                ));
            }
            None => None,
            Some(b) if b.is_empty() => {
                return Err(bad("WHISPER_KAFKA_BROKERS", "is empty; unset it for the embedded bus"));
            }
            Some(brokers) => Some(KafkaConfig {
                brokers,
                topic,
                create_topic,
                security,
            }),
        };
        let redis_url = match s.redis_url {
            Some(url) if !(url.starts_with("redis://") || url.starts_with("rediss://")) => {
                return Err(bad(
                    "WHISPER_REDIS_URL",
                    format!("`{}` must start with redis:// or rediss://", redact_url(&url)),
                ));
            }
            Some(url) => {
                if redis::IntoConnectionInfo::into_connection_info(url.as_str()).is_err() {
                    // The library's message may quote the URL: ours does not.
                    return Err(bad(
                        "WHISPER_REDIS_URL",
                        format!("`{}` is not a Redis URL like redis://host:6379", redact_url(&url)),
                    ));
                }
                Some(url)
            }
            None => None,
        };
        let redis_ca = match s.redis_ca_file {
            Some(path) if redis_url.as_ref().is_some_and(|url| url.starts_with("rediss://")) => Some(
                Pem::File(path.into())
                    .load()
                    .map_err(|e| bad("WHISPER_REDIS_CA_FILE", e))?,
            ),
            Some(_) => {
                return Err(bad(
                    "WHISPER_REDIS_CA_FILE",
                    "is set, but WHISPER_REDIS_URL is not a rediss:// URL",
                ));
            }
            None => None,
        };
        let redis = redis_url.map(|url| RedisConfig { url, ca: redis_ca });
        let ttl = duration("WHISPER_MESSAGE_TTL", s.message_ttl, "5m")?;
        if !(whisper_common::topic::MIN_TTL..=whisper_common::topic::MAX_TTL).contains(&ttl) {
            return Err(bad("WHISPER_MESSAGE_TTL", "must be between 1s and 24h"));
        }
        let gateway_id = match s.gateway_id {
            Some(id) if valid_gateway_id(&id) => id,
            Some(id) => {
                return Err(bad(
                    "WHISPER_GATEWAY_ID",
                    format!("`{id}` must be 1-100 of a-z A-Z 0-9 . _ -"),
                ));
            }
            None => default_gateway_id(),
        };
        let auth = match s.jwt_secret {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => {
                return Err(bad(
                    "WHISPER_JWT_SECRET",
                    format!("must be at least {MIN_SECRET_BYTES} bytes (it has {})", secret.len()),
                ));
            }
            Some(secret) => Some(TokenRules {
                secret,
                issuer: s.jwt_issuer.filter(|i| !i.is_empty()),
                audience: s.jwt_audience.filter(|a| !a.is_empty()),
            }),
            None if s.jwt_issuer.is_some() || s.jwt_audience.is_some() => {
                return Err(bad(
                    "WHISPER_JWT_SECRET",
                    "is needed when WHISPER_JWT_ISSUER or WHISPER_JWT_AUDIENCE is set",
                ));
            }
            None => None,
        };
        let min_ttl = duration("WHISPER_MIN_TTL", s.min_ttl, "1s")?;
        if min_ttl < Duration::from_millis(100) || min_ttl > ttl {
            return Err(bad("WHISPER_MIN_TTL", "must be between 100ms and WHISPER_MESSAGE_TTL"));
        }
        let limits = Limits {
            max_text_bytes: number("WHISPER_MAX_TEXT_BYTES", s.max_text_bytes, 2000, 1..=1_000_000)?,
            messages_per_second: number("WHISPER_RATE", s.rate, 5, 1..=10_000)?,
            burst: number("WHISPER_BURST", s.burst, 10, 1..=100_000)?,
            max_rooms: number("WHISPER_MAX_ROOMS", s.max_rooms, 32, 1..=10_000)?,
            frames_per_second: number("WHISPER_FRAME_RATE", s.frame_rate, 20, 1..=100_000)?,
            frame_burst: number("WHISPER_FRAME_BURST", s.frame_burst, 40, 1..=1_000_000)?,
            min_ttl_ms: min_ttl.as_millis() as u64,
        };
        let idle_timeout = duration("WHISPER_IDLE_TIMEOUT", s.idle_timeout, "60s")?;
        if idle_timeout < Duration::from_secs(3) || idle_timeout > Duration::from_secs(3600) {
            return Err(bad("WHISPER_IDLE_TIMEOUT", "must be between 3s and 1h"));
        }
        let require_encryption = boolean("WHISPER_REQUIRE_ENCRYPTION", s.require_encryption.as_deref(), false)?;
        let content_filter = match s.content_filter {
            Some(path) => Some(Arc::new(
                ContentFilter::load(Path::new(&path)).map_err(|e| bad("WHISPER_CONTENT_FILTER", e))?,
            )),
            None => None,
        };
        let allowed_origins = s.allowed_origins.map(|list| {
            list.split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect()
        });
        let max_frame_bytes = number("WHISPER_MAX_FRAME_BYTES", s.max_frame_bytes, 16 * 1024, 1024..=16 << 20)?;
        if max_frame_bytes < limits.max_text_bytes {
            return Err(bad(
                "WHISPER_MAX_FRAME_BYTES",
                "must be at least WHISPER_MAX_TEXT_BYTES",
            ));
        }
        Ok(Self {
            listen,
            kafka,
            redis,
            ttl,
            gateway_id,
            auth,
            limits,
            allowed_origins,
            log: s.log.unwrap_or_else(|| "info".into()),
            max_connections: number("WHISPER_MAX_CONNECTIONS", s.max_connections, 10_000, 1..=1_000_000)?,
            max_connections_per_ip: number(
                "WHISPER_MAX_CONNECTIONS_PER_IP",
                s.max_connections_per_ip,
                100,
                0..=1_000_000,
            )?,
            max_frame_bytes,
            send_queue: number("WHISPER_SEND_QUEUE", s.send_queue, 256, 1..=1_000_000)?,
            send_queue_bytes: bytes("WHISPER_SEND_QUEUE_BYTES", s.send_queue_bytes, 1 << 20)?,
            history_max_bytes: bytes("WHISPER_HISTORY_MAX_BYTES", s.history_max_bytes, 64 << 20)?,
            presence_timeout: duration("WHISPER_PRESENCE_TIMEOUT", s.presence_timeout, "30s")?,
            shutdown_grace: duration("WHISPER_SHUTDOWN_GRACE", s.shutdown_grace, "10s")?,
            idle_timeout,
            require_encryption,
            content_filter,
        })
    }
}

fn parse_yaml(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let map: BTreeMap<String, serde_yaml::Value> =
        serde_yaml::from_str(text).map_err(|e| bad("WHISPER_CONFIG", format!("not a YAML map of settings: {e}")))?;
    map.into_iter()
        .map(|(key, value)| {
            let value = match value {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                _ => return Err(bad("WHISPER_CONFIG", format!("`{key}` must be a string or a number"))),
            };
            Ok((key, value))
        })
        .collect()
}

fn boolean(setting: &'static str, raw: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match raw.map(str::trim) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(bad(setting, format!("`{other}` must be true or false"))),
    }
}

/// A setting parsed by its type's `FromStr`, whose error says what is wrong.
fn parsed<T: std::str::FromStr<Err = String>>(
    setting: &'static str,
    raw: Option<String>,
) -> Result<Option<T>, ConfigError> {
    raw.map(|r| r.parse()).transpose().map_err(|e| bad(setting, e))
}

/// Names the setting a Kafka security problem is about.
fn security_error(e: SecurityError) -> ConfigError {
    let setting = match e.part {
        Part::Mechanism => "WHISPER_KAFKA_SASL_MECHANISM",
        Part::Username => "WHISPER_KAFKA_SASL_USERNAME",
        Part::Password => "WHISPER_KAFKA_SASL_PASSWORD",
        Part::Ca => "WHISPER_KAFKA_CA_FILE",
        Part::Cert => "WHISPER_KAFKA_CERT_FILE",
        Part::Key => "WHISPER_KAFKA_KEY_FILE",
    };
    bad(setting, e.problem)
}

fn number<T>(
    setting: &'static str,
    raw: Option<String>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(bad(
            setting,
            format!(
                "`{raw}` must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn duration(setting: &'static str, raw: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let raw = raw.unwrap_or_else(|| default.to_owned());
    humantime::parse_duration(raw.trim()).map_err(|_| bad(setting, format!("`{raw}` is not a duration like 90s or 5m")))
}

fn bytes(setting: &'static str, raw: Option<String>, default: usize) -> Result<usize, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    let text = raw.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => 0,
    };
    match digits.parse::<usize>() {
        Ok(n) if scale > 0 && n > 0 => Ok(n.saturating_mul(scale)),
        _ => Err(bad(setting, format!("`{raw}` is not a size like 64MiB"))),
    }
}

/// The URL with the password of its user part (`user:password@`) hidden,
/// for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

fn valid_gateway_id(id: &str) -> bool {
    (1..=100).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn default_gateway_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| valid_gateway_id(h) && h.len() <= 80)
        .unwrap_or_else(|| "gw".into());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use whisper_common::kafka::SecurityProtocol;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["whisper-gateway"];
        argv.extend_from_slice(args);
        Config::from_settings(Settings::try_parse_from(argv).expect("flags parse"))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::from_settings(Settings::default()).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.kafka, None);
        assert_eq!(c.ttl, Duration::from_secs(300));
        assert_eq!(c.limits.max_text_bytes, 2000);
        assert_eq!(
            (c.limits.messages_per_second, c.limits.burst, c.limits.max_rooms),
            (5, 10, 32)
        );
        assert_eq!(c.max_frame_bytes, 16384);
        assert!(c.gateway_id.len() > 7);
        assert_eq!(
            (c.limits.frames_per_second, c.limits.frame_burst, c.limits.min_ttl_ms),
            (20, 40, 1000)
        );
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.send_queue_bytes, 1 << 20);
        assert!(!c.require_encryption);
        assert!(c.content_filter.is_none());
    }

    #[test]
    fn every_bad_setting_is_named() {
        for (flag, value, setting) in [
            ("--listen", "nowhere", "WHISPER_LISTEN"),
            ("--message-ttl", "0s", "WHISPER_MESSAGE_TTL"),
            ("--message-ttl", "soon", "WHISPER_MESSAGE_TTL"),
            ("--message-ttl", "25h", "WHISPER_MESSAGE_TTL"),
            ("--rate", "0", "WHISPER_RATE"),
            ("--burst", "lots", "WHISPER_BURST"),
            ("--kafka-topic", "bad topic", "WHISPER_KAFKA_TOPIC"),
            ("--redis-url", "http://x", "WHISPER_REDIS_URL"),
            ("--redis-url", "redis://", "WHISPER_REDIS_URL"),
            ("--redis-url", "redis://host:port", "WHISPER_REDIS_URL"),
            ("--gateway-id", "a/b", "WHISPER_GATEWAY_ID"),
            ("--history-max-bytes", "lots", "WHISPER_HISTORY_MAX_BYTES"),
            ("--max-frame-bytes", "1024", "WHISPER_MAX_FRAME_BYTES"),
            ("--frame-rate", "0", "WHISPER_FRAME_RATE"),
            ("--frame-burst", "lots", "WHISPER_FRAME_BURST"),
            ("--idle-timeout", "1s", "WHISPER_IDLE_TIMEOUT"),
            ("--min-ttl", "10ms", "WHISPER_MIN_TTL"),
            ("--min-ttl", "6m", "WHISPER_MIN_TTL"),
            ("--require-encryption", "yes", "WHISPER_REQUIRE_ENCRYPTION"),
            ("--send-queue-bytes", "much", "WHISPER_SEND_QUEUE_BYTES"),
            ("--jwt-secret", "short", "WHISPER_JWT_SECRET"),
            ("--jwt-issuer", "https://id.example.com", "WHISPER_JWT_SECRET"),
            ("--content-filter", "/nonexistent/rules.txt", "WHISPER_CONTENT_FILTER"),
            ("--kafka-create-topic", "maybe", "WHISPER_KAFKA_CREATE_TOPIC"),
            ("--kafka-security-protocol", "TLS", "WHISPER_KAFKA_SECURITY_PROTOCOL"),
            ("--kafka-sasl-mechanism", "GSSAPI", "WHISPER_KAFKA_SASL_MECHANISM"),
            ("--kafka-ca-file", "/nonexistent/ca.pem", "WHISPER_KAFKA_CA_FILE"),
            ("--redis-ca-file", "/nonexistent/ca.pem", "WHISPER_REDIS_CA_FILE"),
        ] {
            let err = parse(&[flag, value]).unwrap_err();
            assert_eq!(err.setting, setting, "{flag} {value}: {err}");
        }
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let dir = std::env::temp_dir().join(format!("whisper-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.yaml");
        std::fs::write(&path, "message_ttl: 2m\nrate: 7\nlisten: 127.0.0.1:9000\n").unwrap();
        let settings = Settings::try_parse_from([
            "whisper-gateway",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9100",
        ])
        .unwrap();
        let c = Config::load(settings).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.ttl, Duration::from_secs(120));
        assert_eq!(c.limits.messages_per_second, 7);

        std::fs::write(&path, "mesage_ttl: 2m\n").unwrap();
        let settings = Settings::try_parse_from(["whisper-gateway", "--config", path.to_str().unwrap()]).unwrap();
        let err = Config::load(settings).unwrap_err();
        assert_eq!(err.setting, "WHISPER_CONFIG");
        assert!(err.problem.contains("mesage_ttl"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(bytes("X", Some("64MiB".into()), 0), Ok(64 << 20));
        assert_eq!(bytes("X", Some("1000".into()), 0), Ok(1000));
        assert!(bytes("X", Some("1TB".into()), 0).is_err());
        assert!(bytes("X", Some("0".into()), 0).is_err());
    }

    #[test]
    fn a_redis_password_never_reaches_an_error() {
        assert_eq!(
            redact_url("redis://app:hunter2@cache:6379/0"),
            "redis://app:***@cache:6379/0"
        );
        assert_eq!(redact_url("rediss://:hunter2@cache:6380"), "rediss://:***@cache:6380");
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        for url in ["http://app:hunter2@cache", "redis://app:hunter2@cache:port"] {
            let err = parse(&["--redis-url", url]).unwrap_err();
            assert_eq!(err.setting, "WHISPER_REDIS_URL");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    /// A CA file for the tests, in a folder of this test's own.
    fn ca_file(test: &str) -> String {
        let dir = std::env::temp_dir().join(format!("whisper-config-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn kafka_security_settings_are_checked_together() {
        let ca = ca_file("kafka");
        let sasl = [
            "--kafka-brokers",
            "kafka:9093",
            "--kafka-security-protocol",
            "SASL_SSL",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            "chat",
            "--kafka-sasl-password",
            "hunter2",
            "--kafka-ca-file",
            &ca,
        ];
        let c = parse(&sasl).unwrap();
        let kafka = c.kafka.as_ref().unwrap();
        assert!(kafka.create_topic);
        assert_eq!(kafka.security.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(kafka.security.ca, Some(Pem::File(ca.clone().into())));
        assert!(!format!("{c:?}").contains("hunter2"));
        let mut no_create = sasl.to_vec();
        no_create.extend(["--kafka-create-topic", "false"]);
        assert!(!parse(&no_create).unwrap().kafka.unwrap().create_topic);

        for (args, setting) in [
            (&sasl[..4], "WHISPER_KAFKA_SASL_MECHANISM"),
            (&sasl[..8], "WHISPER_KAFKA_SASL_PASSWORD"),
            (&sasl[2..], "WHISPER_KAFKA_BROKERS"),
            (
                &["--kafka-brokers", "k:9092", "--kafka-sasl-password", "hunter2"][..],
                "WHISPER_KAFKA_SASL_PASSWORD",
            ),
            (
                &[
                    "--kafka-brokers",
                    "k:9092",
                    "--kafka-security-protocol",
                    "SSL",
                    "--kafka-cert-file",
                    &ca,
                ][..],
                "WHISPER_KAFKA_KEY_FILE",
            ),
            (
                &[
                    "--kafka-brokers",
                    "k:9092",
                    "--kafka-security-protocol",
                    "SSL",
                    "--kafka-ca-file",
                    "/nonexistent/ca.pem",
                ][..],
                "WHISPER_KAFKA_CA_FILE",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.setting, setting, "{args:?}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn a_redis_ca_needs_rediss_and_a_readable_file() {
        let ca = ca_file("redis");
        let c = parse(&["--redis-url", "rediss://app:hunter2@cache:6380", "--redis-ca-file", &ca]).unwrap();
        assert!(
            c.redis
                .as_ref()
                .unwrap()
                .ca
                .as_ref()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        for url in ["redis://cache:6379", "rediss://cache:6380"] {
            let file = if url.starts_with("rediss") {
                "/nonexistent/ca.pem"
            } else {
                ca.as_str()
            };
            let err = parse(&["--redis-url", url, "--redis-ca-file", file]).unwrap_err();
            assert_eq!(err.setting, "WHISPER_REDIS_CA_FILE", "{err}");
        }
    }
}
