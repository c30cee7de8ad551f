//! The walking skeleton on the real Kafka: two gateway processes sharing one
//! topic, and a check that the broker really is Apache Kafka.

mod common;

use std::time::Duration;

use common::{Client, Gateway, kafka, log_file, unique, wait_for_log};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Creates `topic` for messages living `ttl`, through the gateway's own code path.
async fn create_topic(brokers: &str, topic: &str, ttl: Duration) {
    whisper_gateway::bus::kafka::KafkaBus::connect(
        &whisper_gateway::config::KafkaConfig {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            create_topic: true,
            security: Default::default(),
        },
        "test",
        ttl,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_message_crosses_from_one_gateway_to_another_through_kafka() {
    let Some(brokers) = kafka() else { return };
    let topic = unique("skeleton");
    let settings = [
        ("WHISPER_KAFKA_BROKERS", brokers.as_str()),
        ("WHISPER_KAFKA_TOPIC", topic.as_str()),
    ];
    let one = Gateway::start(&settings).await;
    let two = Gateway::start(&settings).await;

    let mut alice = Client::hello(&one.url(), "alice").await;
    let mut bob = Client::hello(&two.url(), "bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;

    let id = alice.say("lobby", "across gateways").await;
    let got = bob.next_message().await;
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["text"], "across gateways");
    assert_eq!(got["user"]["name"], "alice");
    assert_eq!(alice.next_message().await["id"], id.as_str());

    // A gateway that starts later serves the history from Kafka.
    let three = Gateway::start(&settings).await;
    let mut carol = Client::hello(&three.url(), "carol").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let joined = carol.join("lobby").await;
        if joined["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|m| m["id"] == id.as_str()))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "late gateway never served history: {joined}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_gateway_told_not_to_create_the_topic_waits_for_it() {
    let Some(brokers) = kafka() else { return };
    let topic = unique("precreated");
    let (log, file) = log_file("no-create");
    let gw = Gateway::start_logging_to(
        &[
            ("WHISPER_KAFKA_BROKERS", brokers.as_str()),
            ("WHISPER_KAFKA_TOPIC", topic.as_str()),
            ("WHISPER_KAFKA_CREATE_TOPIC", "false"),
        ],
        file,
    )
    .await;
    wait_for_log(&log, "Unknown topic or partition").await;
    gw.wait_readyz(503).await;

    // Made by someone else (on Kubernetes, the controller).
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let created = admin
        .create_topics(
            [&NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    gw.wait_readyz(200).await;
    let mut alice = Client::hello(&gw.url(), "alice").await;
    alice.join("lobby").await;
    let id = alice.say("lobby", "on a topic made elsewhere").await;
    assert_eq!(alice.next_message().await["id"], id.as_str());
}

#[tokio::test]
async fn the_broker_is_apache_kafka() {
    let Some(brokers) = kafka() else { return };
    let topic = unique("roundtrip");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .create()
        .unwrap();
    create_topic(&brokers, &topic, Duration::from_secs(60)).await;
    let (partition, offset) = producer
        .send(
            FutureRecord::to(&topic).key("k").payload("ping"),
            Duration::from_secs(10),
        )
        .await
        .map(|d| (d.partition, d.offset))
        .unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("roundtrip"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
    assert_eq!(metadata.brokers().len(), 1);
    consumer.subscribe(&[&topic]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(Ok(record)) = consumer.poll(Duration::from_millis(200)) {
            assert_eq!(record.payload(), Some(&b"ping"[..]));
            assert_eq!((record.partition(), record.offset()), (partition, offset));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "record never came back");
    }
}

#[tokio::test]
async fn a_fresh_gateway_is_ready_only_once_it_holds_the_whole_history() {
    use whisper_gateway::bus::record::Record;
    use whisper_gateway::protocol::{ChatMessage, Member};
    let Some(brokers) = kafka() else { return };
    let topic = unique("catch-up");
    create_topic(&brokers, &topic, Duration::from_secs(300)).await;
    // History for a gateway to read at start: more than it reads at once.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let (rooms, per_room) = (2_000, 10);
    let now = whisper_gateway::clock::now_ms();
    let mut deliveries = Vec::new();
    for i in 0..rooms * per_room {
        let message = ChatMessage {
            room: format!("r{}", i % rooms),
            id: format!("m{i}"),
            user: Member {
                id: "u".into(),
                name: "filler".into(),
            },
            text: "x".repeat(100),
            ts: now,
            expires_at: now + 300_000,
            enc: None,
        };
        let payload = serde_json::to_vec(&Record::from(&message)).unwrap();
        let record = FutureRecord::to(&topic).key(&message.room).payload(&payload);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }

    let gw = Gateway::start(&[
        ("WHISPER_KAFKA_BROKERS", brokers.as_str()),
        ("WHISPER_KAFKA_TOPIC", topic.as_str()),
    ])
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while common::http_get(gw.addr, "/readyz").await.map(|(code, _)| code) != Some(200) {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The moment it is ready, every room's history is whole.
    let mut c = Client::hello(&gw.url(), "c").await;
    for room in [format!("r{}", rooms - 1), "r0".to_owned()] {
        let joined = c.join(&room).await;
        assert_eq!(joined["history"].as_array().unwrap().len(), per_room, "{room}");
    }
}
