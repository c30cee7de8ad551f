//! The Kafka side: what a topic looks like, and the admin operations the
//! reconciler needs, behind [`TopicAdmin`] so tests can stand in for Kafka.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::native;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A topic as Kafka has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level configs that are set on the topic (not broker defaults).
    pub configs: BTreeMap<String, String>,
    /// Kafka's id of the topic; a topic deleted and made again under the
    /// same name has a new one. `None` from brokers that keep no ids.
    pub id: Option<String>,
}

/// A topic as the ChatCluster asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub configs: BTreeMap<String, String>,
}

/// How to reach one Kafka cluster: bootstrap servers and librdkafka client
/// properties (security protocol, TLS material, SASL credentials).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    pub brokers: String,
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for Connection {
    /// Names the properties, never their values (they hold credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("brokers", &self.brokers)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Kafka could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopicError(pub String);

/// The admin operations on one Kafka cluster's topics.
pub trait TopicAdmin: Send + Sync + 'static {
    /// The topic, or `None` when it does not exist.
    fn describe<'a>(
        &'a self,
        kafka: &'a Connection,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicState>, TopicError>>;
    fn create<'a>(&'a self, kafka: &'a Connection, spec: &'a TopicSpec) -> BoxFuture<'a, Result<(), TopicError>>;
    /// Grows the topic to `total` partitions.
    fn add_partitions<'a>(
        &'a self,
        kafka: &'a Connection,
        topic: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), TopicError>>;
    /// Sets these topic-level configs, leaving every other one as it is.
    fn alter_configs<'a>(
        &'a self,
        kafka: &'a Connection,
        topic: &'a str,
        configs: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), TopicError>>;
    /// Deletes the topic; a missing topic is not an error.
    fn delete<'a>(&'a self, kafka: &'a Connection, topic: &'a str) -> BoxFuture<'a, Result<(), TopicError>>;
}

/// [`TopicAdmin`] on real Kafka, one admin client per connection.
#[derive(Default)]
pub struct KafkaAdmin {
    clients: Mutex<HashMap<Connection, Arc<AdminClient<DefaultClientContext>>>>,
}

impl std::fmt::Debug for KafkaAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAdmin").finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> TopicError {
    TopicError(e.to_string())
}

impl KafkaAdmin {
    fn client(&self, kafka: &Connection) -> Result<Arc<AdminClient<DefaultClientContext>>, TopicError> {
        let mut clients = self.clients.lock().expect("admin clients lock");
        if let Some(client) = clients.get(kafka) {
            return Ok(client.clone());
        }
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &kafka.brokers)
            .set("client.id", "whisper-controller")
            .set("reconnect.backoff.max.ms", "1000")
            // Looking a topic up must never create it with the broker's defaults.
            .set("allow.auto.create.topics", "false");
        for (key, value) in &kafka.properties {
            config.set(key, value);
        }
        let client: AdminClient<DefaultClientContext> = config
            .create()
            .map_err(|e| TopicError(format!("cannot make a Kafka client for {}: {e}", kafka.brokers)))?;
        let client = Arc::new(client);
        clients.insert(kafka.clone(), client.clone());
        Ok(client)
    }

    /// The topic-level configs set on the topic (not broker defaults).
    async fn dynamic_configs(
        client: &AdminClient<DefaultClientContext>,
        topic: &str,
    ) -> Result<BTreeMap<String, String>, TopicError> {
        let described = client
            .describe_configs([&ResourceSpecifier::Topic(topic)], &Self::options())
            .await
            .map_err(err)?;
        let resource = described
            .into_iter()
            .next()
            .ok_or_else(|| err("no config answer"))?
            .map_err(err)?;
        Ok(resource
            .entries
            .into_iter()
            .filter(|e| e.source == rdkafka::admin::ConfigSource::DynamicTopic)
            .filter_map(|e| Some((e.name, e.value?)))
            .collect())
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(TIMEOUT))
            .operation_timeout(Some(TIMEOUT))
    }
}

/// The first result of a one-topic admin call, with "already so" codes as
/// success.
fn single(
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
    fine: &[RDKafkaErrorCode],
) -> Result<(), TopicError> {
    match results.into_iter().next() {
        Some(Ok(_)) | None => Ok(()),
        Some(Err((_, code))) if fine.contains(&code) => Ok(()),
        Some(Err((topic, code))) => Err(TopicError(format!("{topic}: {code}"))),
    }
}

impl TopicAdmin for KafkaAdmin {
    fn describe<'a>(
        &'a self,
        kafka: &'a Connection,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicState>, TopicError>> {
        Box::pin(async move {
            let client = self.client(kafka)?;
            let metadata = {
                let client = client.clone();
                let topic = topic.to_owned();
                tokio::task::spawn_blocking(move || client.inner().fetch_metadata(Some(&topic), TIMEOUT))
                    .await
                    .map_err(err)?
                    .map_err(|e| TopicError(format!("cannot reach Kafka at {}: {e}", kafka.brokers)))?
            };
            let Some(t) = metadata.topics().first() else {
                return Ok(None);
            };
            match t.error() {
                None => {}
                Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => return Ok(None),
                Some(e) => return Err(TopicError(format!("topic {topic}: {}", RDKafkaErrorCode::from(e)))),
            }
            let partitions = t.partitions().len() as i32;
            let replication_factor = t.partitions().first().map_or(0, |p| p.replicas().len() as i32);
            let configs = Self::dynamic_configs(&client, topic).await?;
            let id = {
                let topic = topic.to_owned();
                tokio::task::spawn_blocking(move || native::topic_id(&client, &topic, TIMEOUT))
                    .await
                    .map_err(err)?
                    .map_err(TopicError)?
            };
            Ok(Some(TopicState {
                partitions,
                replication_factor,
                configs,
                id,
            }))
        })
    }

    fn create<'a>(&'a self, kafka: &'a Connection, spec: &'a TopicSpec) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move {
            let mut topic = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(spec.replication_factor),
            );
            for (key, value) in &spec.configs {
                topic = topic.set(key, value);
            }
            let results = self
                .client(kafka)?
                .create_topics([&topic], &Self::options())
                .await
                .map_err(err)?;
            single(results, &[RDKafkaErrorCode::TopicAlreadyExists])
        })
    }

    fn add_partitions<'a>(
        &'a self,
        kafka: &'a Connection,
        topic: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move {
            let partitions = NewPartitions::new(topic, total as usize);
            let results = self
                .client(kafka)?
                .create_partitions([&partitions], &Self::options())
                .await
                .map_err(err)?;
            single(results, &[])
        })
    }

    fn alter_configs<'a>(
        &'a self,
        kafka: &'a Connection,
        topic: &'a str,
        configs: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move {
            // Incremental: only these keys change, atomically; overrides the
            // controller does not manage are never read and sent back.
            let client = self.client(kafka)?;
            let (topic, configs) = (topic.to_owned(), configs.clone());
            tokio::task::spawn_blocking(move || native::incremental_alter(&client, &topic, &configs, TIMEOUT))
                .await
                .map_err(err)?
                .map_err(TopicError)
        })
    }

    fn delete<'a>(&'a self, kafka: &'a Connection, topic: &'a str) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move {
            let results = self
                .client(kafka)?
                .delete_topics(&[topic], &Self::options())
                .await
                .map_err(err)?;
            single(results, &[RDKafkaErrorCode::UnknownTopicOrPartition])
        })
    }
}
