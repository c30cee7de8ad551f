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
    // Creating the topic through the gateway's own code path.
    whisper_gateway::bus::kafka::KafkaBus::connect(
        &whisper_gateway::config::KafkaConfig {
            brokers: brokers.clone(),
            topic: topic.clone(),
            create_topic: true,
            security: Default::default(),
        },
        "roundtrip",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
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
