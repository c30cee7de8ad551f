//! The Kafka bus: one topic keyed by room id, so each room lives on one
//! partition and keeps one order. Every gateway reads every partition with a
//! consumer group of its own, starting at now − TTL, so a gateway that just
//! started already holds every unexpired message.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::record::Record;
use super::{Bus, BusError, Delivery, Received};
use crate::config::KafkaConfig;
use crate::protocol::ChatMessage;

/// How long the broker may take to accept a message before librdkafka gives
/// up on it and `send` answers `unavailable` (so an `unavailable` message is
/// really not sent). librdkafka checks timeouts once a second, and retries a
/// lost broker at most every second, so the answer comes within 5 s.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(4);
/// How often the gateway checks the broker for readiness and new partitions.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Time without a record after which the consumer is checked for being
/// stuck behind the broker.
const STALL_AFTER: Duration = Duration::from_secs(5);
/// How long creating the topic at start may take, brokers unreachable or
/// refusing the login included, before the gateway gives up and exits.
const CREATE_TIMEOUT: Duration = Duration::from_secs(15);

/// A producer and a consumer on one topic.
pub struct KafkaBus {
    producer: FutureProducer<LastError>,
    config: KafkaConfig,
    group: String,
    ttl: Duration,
    /// The broker answers.
    ready: Arc<AtomicBool>,
    /// The consumer has read every partition up to the end it had when the
    /// gateway started: history is complete.
    caught_up: Arc<AtomicBool>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("config", &self.config)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Connects to the brokers and, unless told not to, creates the topic
    /// if it does not exist (on Kubernetes the controller creates it and
    /// tells the gateway not to; by hand, this does).
    pub async fn connect(config: &KafkaConfig, gateway_id: &str, ttl: Duration) -> Result<Self, BusError> {
        let reasons = LastError::default();
        let producer: FutureProducer<LastError> = client_config(config)
            .set("client.id", gateway_id)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // The readiness check looks the topic up; that must never create
            // it with the broker's defaults (the topic is made on purpose).
            .set("allow.auto.create.topics", "false")
            .set("reconnect.backoff.max.ms", "1000")
            .set("retry.backoff.max.ms", "1000")
            .set("linger.ms", "2")
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            .create_with_context(reasons.clone())
            .map_err(|e| BusError::Setup(format!("Kafka producer: {e}")))?;
        if config.create_topic {
            ensure_topic(config, ttl, &reasons).await?;
        } else {
            tracing::info!(
                topic = config.topic,
                "not creating the Kafka topic (WHISPER_KAFKA_CREATE_TOPIC=false): not ready until it exists"
            );
        }
        let bus = Self {
            producer,
            config: config.clone(),
            group: format!("whisper-gateway-{gateway_id}"),
            ttl,
            ready: Arc::new(AtomicBool::new(true)),
            caught_up: Arc::new(AtomicBool::new(false)),
        };
        bus.watch_readiness();
        Ok(bus)
    }

    /// Keeps `ready` up to date with whether the broker answers.
    fn watch_readiness(&self) {
        let ready = Arc::downgrade(&self.ready);
        let producer = self.producer.clone();
        let topic = self.config.topic.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_INTERVAL);
            loop {
                tick.tick().await;
                let Some(ready) = ready.upgrade() else { return };
                let producer = producer.clone();
                let topic = topic.clone();
                let ok = tokio::task::spawn_blocking(move || {
                    producer
                        .client()
                        .fetch_metadata(Some(&topic), CHECK_INTERVAL)
                        .is_ok_and(|m| {
                            m.topics()
                                .iter()
                                .any(|t| t.error().is_none() && !t.partitions().is_empty())
                        })
                })
                .await
                .unwrap_or(false);
                if ready.swap(ok, Ordering::Relaxed) != ok {
                    tracing::warn!(ready = ok, "Kafka readiness changed");
                }
            }
        });
    }
}

/// A consumer of the topic for the gateway's group.
fn consumer(config: &KafkaConfig, group: &str) -> Result<StreamConsumer, BusError> {
    client_config(config)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        .create()
        .map_err(|e| BusError::Setup(format!("Kafka consumer: {e}")))
}

impl Bus for KafkaBus {
    fn publish(&self, message: &ChatMessage) -> Delivery {
        let payload = serde_json::to_vec(&Record::from(message)).expect("records always serialize");
        let record = FutureRecord::to(&self.config.topic)
            .key(message.room.as_bytes())
            .payload(&payload)
            .timestamp(message.ts);
        match self.producer.send_result(record) {
            Ok(delivery) => Box::pin(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(BusError::Unavailable(e.to_string())),
                    Err(_) => Err(BusError::Unavailable("producer went away".into())),
                }
            }),
            Err((e, _)) => Box::pin(async move { Err(BusError::Unavailable(e.to_string())) }),
        }
    }

    fn subscribe(&self) -> BoxStream<'static, Result<Received, BusError>> {
        let (tx, rx) = mpsc::channel(1024);
        let (config, group) = (self.config.clone(), self.group.clone());
        let make = move || consumer(&config, &group);
        match make() {
            Ok(first) => {
                let reader = Reader {
                    topic: self.config.topic.clone(),
                    make: Box::new(make),
                    producer: self.producer.clone(),
                };
                let start = crate::clock::now_ms() - self.ttl.as_millis() as i64;
                tokio::spawn(consume(reader, Arc::new(first), start, tx, self.caught_up.clone()));
            }
            Err(e) => {
                let _ = tx.try_send(Err(e));
            }
        }
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.caught_up.load(Ordering::Relaxed)
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<'static, ()> {
        let producer = self.producer.clone();
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        })
    }
}

/// A client of the brokers, with the security settings every client
/// (producer, consumer, admin) needs.
fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in config.security.properties() {
        client.set(key, value);
    }
    client
}

/// What the reading task needs besides its consumer: the topic, a way to
/// make a consumer anew, and the producer's client to ask the broker how
/// far its partitions go.
struct Reader {
    topic: String,
    make: Box<dyn Fn() -> Result<StreamConsumer, BusError> + Send + Sync>,
    producer: FutureProducer<LastError>,
}

/// Assigns every partition from `start_ms` on and forwards records until the
/// receiver goes away, assigning partitions added later from their start.
/// Sets `caught_up` once every first-assigned partition was read up to the
/// end it had at assignment. A consumer that stopped fetching while the
/// broker has newer records is made anew where it was.
async fn consume(
    reader: Reader,
    mut consumer: Arc<StreamConsumer>,
    start_ms: i64,
    tx: mpsc::Sender<Result<Received, BusError>>,
    caught_up: Arc<AtomicBool>,
) {
    let topic = reader.topic.as_str();
    let mut assigned = 0;
    let mut last_record = tokio::time::Instant::now();
    // Partition → the offset it must be read up to before history is whole.
    let mut behind: HashMap<i32, i64> = HashMap::new();
    // The last problem logged: a lasting one (no topic, no access) is
    // logged once, not every check.
    let mut problem = None;
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match assign_new_partitions(&consumer, topic, assigned, start_ms).await {
                    Ok((count, ends)) => {
                        if assigned == 0 && count > 0 {
                            behind = ends;
                        }
                        assigned = count;
                        problem = None;
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if problem.as_ref() != Some(&text) {
                            tracing::warn!(topic, error = text, "cannot assign Kafka partitions yet; not ready");
                            problem = Some(text);
                        }
                    }
                }
                // Positions also move past what is never handed out.
                if let Ok(positions) = consumer.position() {
                    behind.retain(|p, end| {
                        positions
                            .find_partition(topic, *p)
                            .is_none_or(|e| !matches!(e.offset(), Offset::Offset(at) if at >= *end))
                    });
                }
                if assigned > 0 && last_record.elapsed() >= STALL_AFTER {
                    if let Some(fresh) = unstick(&reader, &consumer, assigned).await {
                        consumer = fresh;
                    }
                    last_record = tokio::time::Instant::now();
                }
            }
            record = consumer.recv(), if assigned > 0 => {
                let item = match record {
                    Ok(record) => {
                        last_record = tokio::time::Instant::now();
                        if behind.get(&record.partition()).is_some_and(|end| record.offset() + 1 >= *end) {
                            behind.remove(&record.partition());
                        }
                        decode(record.payload(), record.timestamp().to_millis())
                    }
                    Err(e) => Err(BusError::Unavailable(e.to_string())),
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        }
        if assigned > 0 && behind.is_empty() && !caught_up.swap(true, Ordering::Relaxed) {
            tracing::info!(
                topic,
                "read the topic up to where it ended at start: history is complete"
            );
        }
    }
}

/// When the consumer reads nothing while the broker has records past its
/// position (a librdkafka consumer with assigned partitions sometimes never
/// resumes fetching after its broker restarts), a new consumer assigned at
/// the old one's positions; else `None`.
async fn unstick(reader: &Reader, consumer: &Arc<StreamConsumer>, assigned: usize) -> Option<Arc<StreamConsumer>> {
    let positions = consumer.position().ok()?;
    let producer = reader.producer.clone();
    let topic = reader.topic.clone();
    let behind = tokio::task::spawn_blocking(move || {
        (0..assigned as i32).any(|p| {
            let Some(Offset::Offset(at)) = positions.find_partition(&topic, p).map(|e| e.offset()) else {
                return false;
            };
            producer
                .client()
                .fetch_watermarks(&topic, p, METADATA_TIMEOUT)
                .is_ok_and(|(_, high)| high > at)
        })
    })
    .await
    .ok()?;
    if !behind {
        return None;
    }
    let mut list = TopicPartitionList::new();
    let positions = consumer.position().ok()?;
    for p in 0..assigned as i32 {
        // A partition never read from holds only what expired before the
        // gateway started (dropped on arrival) before its first record.
        let offset = match positions.find_partition(&reader.topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(at)) => Offset::Offset(at),
            _ => Offset::Beginning,
        };
        list.add_partition_offset(&reader.topic, p, offset).ok()?;
    }
    let fresh = (reader.make)()
        .inspect_err(|e| tracing::warn!(error = %e, "cannot make a new Kafka consumer"))
        .ok()?;
    fresh
        .assign(&list)
        .inspect_err(|e| tracing::warn!(error = %e, "cannot assign the new Kafka consumer"))
        .ok()?;
    tracing::warn!(
        topic = reader.topic,
        "the Kafka consumer had stopped fetching while the broker had newer records; made it anew where it was"
    );
    Some(Arc::new(fresh))
}

/// Assigns partitions `assigned..` of the topic; the first ones from the
/// offsets at `start_ms`, later ones (the topic grew) from their beginning.
/// Returns how many partitions are now assigned and, on the first
/// assignment, the end offsets of those with records to read up to.
async fn assign_new_partitions(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    assigned: usize,
    start_ms: i64,
) -> Result<(usize, HashMap<i32, i64>), KafkaError> {
    let consumer = consumer.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(&topic), METADATA_TIMEOUT)?;
        let partitions = match metadata.topics().first() {
            // A missing topic is "unknown topic or partition".
            Some(t) => match t.error() {
                Some(e) => return Err(KafkaError::MetadataFetch(e.into())),
                None => t.partitions().len(),
            },
            None => 0,
        };
        if partitions <= assigned {
            return Ok((assigned, HashMap::new()));
        }
        let mut behind = HashMap::new();
        let mut list = TopicPartitionList::new();
        for p in assigned..partitions {
            let offset = if assigned == 0 {
                Offset::Offset(start_ms)
            } else {
                Offset::Beginning
            };
            list.add_partition_offset(&topic, p as i32, offset)?;
        }
        if assigned == 0 {
            // A partition with nothing newer than `start_ms` starts at the end
            // it had *before* the lookup: every record past that end is newer.
            // ("End" itself would mean the end when fetching starts, and lose
            // what arrives in between.)
            let mut ends = Vec::new();
            for p in 0..partitions as i32 {
                ends.push(consumer.fetch_watermarks(&topic, p, METADATA_TIMEOUT)?.1);
            }
            list = consumer.offsets_for_times(list, METADATA_TIMEOUT)?;
            for (p, end) in ends.into_iter().enumerate() {
                let p = p as i32;
                match list.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(start)) => {
                        if start < end {
                            behind.insert(p, end);
                        }
                    }
                    _ => list.set_partition_offset(&topic, p, Offset::Offset(end))?,
                }
            }
        }
        consumer.incremental_assign(&list)?;
        tracing::info!(topic, from = assigned, to = partitions, "assigned Kafka partitions");
        Ok((partitions, behind))
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

fn decode(payload: Option<&[u8]>, broker_ts: Option<i64>) -> Result<Received, BusError> {
    let payload = payload.ok_or_else(|| BusError::BadRecord("record without payload".into()))?;
    let record: Record = serde_json::from_slice(payload).map_err(|e| BusError::BadRecord(e.to_string()))?;
    let message = ChatMessage::from(record);
    Ok(Received {
        bus_ts: broker_ts.unwrap_or(message.ts),
        message,
    })
}

/// The producer's context: logs what librdkafka reports, as the default
/// context does, and keeps the last reason beyond "all brokers are down",
/// so a failed start-up step can say why (a refused login, an untrusted
/// certificate). (An admin client's own reports are never polled.)
/// Clones share the reason.
#[derive(Debug, Clone, Default)]
struct LastError(Arc<std::sync::Mutex<Option<String>>>);

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!("librdkafka: {error}: {reason}");
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
        }
    }
}

impl LastError {
    /// ` (<the last reason>)`, or nothing.
    fn suffix(&self) -> String {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().map(|reason| format!(" ({reason})")).unwrap_or_default()
    }
}

/// Creates the topic with the retention of the message TTL, unless it exists.
async fn ensure_topic(config: &KafkaConfig, ttl: Duration, reasons: &LastError) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .create()
        .map_err(|e| BusError::Setup(format!("Kafka admin client: {e}")))?;
    let configs = whisper_common::topic::configs(ttl);
    // -1: the broker's default partition count and replication factor.
    let mut topic = NewTopic::new(&config.topic, -1, TopicReplication::Fixed(-1));
    for (key, value) in &configs {
        topic = topic.set(key, value);
    }
    let options = AdminOptions::new()
        .operation_timeout(Some(METADATA_TIMEOUT))
        .request_timeout(Some(CREATE_TIMEOUT));
    let results = admin.create_topics([&topic], &options).await.map_err(|e| {
        let why = reasons.suffix();
        BusError::Setup(format!("cannot reach Kafka at {}: {e}{why}", config.brokers))
    })?;
    match results.into_iter().next() {
        Some(Ok(_)) => {
            tracing::info!(topic = config.topic, ttl = ?ttl, "created Kafka topic");
            Ok(())
        }
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(()),
        Some(Err((_, code))) => Err(BusError::Setup(format!("cannot create topic {}: {code}", config.topic))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Member;

    #[tokio::test]
    async fn a_consumer_that_stops_fetching_is_made_anew_where_it_was() {
        let Ok(brokers) = std::env::var("WHISPER_TEST_KAFKA_BROKERS") else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "WHISPER_TEST_KAFKA_BROKERS is not set: the test services are not running"
            );
            return;
        };
        let config = KafkaConfig {
            brokers,
            topic: format!("stall-{}", uuid::Uuid::new_v4().simple()),
            create_topic: true,
            security: Default::default(),
        };
        let bus = KafkaBus::connect(&config, "stall", Duration::from_secs(300))
            .await
            .unwrap();
        let make = {
            let config = config.clone();
            move || consumer(&config, "whisper-gateway-stall-test")
        };
        let first = Arc::new(make().unwrap());
        let reader = Reader {
            topic: config.topic.clone(),
            make: Box::new(make),
            producer: bus.producer.clone(),
        };
        let (tx, mut rx) = mpsc::channel(16);
        let start = crate::clock::now_ms() - 300_000;
        tokio::spawn(consume(
            reader,
            first.clone(),
            start,
            tx,
            Arc::new(AtomicBool::new(false)),
        ));
        let message = |id: &str| ChatMessage {
            room: "r".into(),
            id: id.into(),
            user: Member {
                id: "u".into(),
                name: "n".into(),
            },
            text: "t".into(),
            ts: crate::clock::now_ms(),
            expires_at: crate::clock::now_ms() + 300_000,
            enc: None,
        };
        let mut next = async || loop {
            if let Ok(received) = rx.recv().await.expect("the reader runs") {
                return received.message.id;
            }
        };
        bus.publish(&message("before")).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(20), next()).await.unwrap(),
            "before"
        );
        // The consumer stops fetching, as librdkafka's sometimes does after
        // its broker restarts.
        first.pause(&first.assignment().unwrap()).unwrap();
        bus.publish(&message("after")).await.unwrap();
        let after = tokio::time::timeout(Duration::from_secs(20), next()).await;
        assert_eq!(after.expect("read by a new consumer"), "after");
    }

    #[test]
    fn decodes_records_and_rejects_garbage() {
        let msg = r#"{"room":"r","id":"1","user":{"id":"u","name":"n"},"text":"t","ts":5,"expires_at":9}"#;
        let got = decode(Some(msg.as_bytes()), Some(7)).unwrap();
        assert_eq!((got.message.ts, got.bus_ts), (5, 7));
        assert!(matches!(decode(Some(b"{}"), None), Err(BusError::BadRecord(_))));
        assert!(matches!(decode(None, None), Err(BusError::BadRecord(_))));
    }
}
