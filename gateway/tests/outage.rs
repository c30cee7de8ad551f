//! Broker trouble: the real Kafka is stopped and started again under a
//! running gateway. Its own test binary, so no other test runs meanwhile.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Gateway, kafka, redis, unique};
use serde_json::json;

fn services(command: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services");
    let status = Command::new(script)
        .arg(command)
        .status()
        .expect("run scripts/services");
    assert!(status.success(), "scripts/services {command} failed");
}

#[tokio::test]
async fn kafka_down_answers_unavailable_and_traffic_resumes_when_it_returns() {
    let (Some(brokers), Some(redis)) = (kafka(), redis()) else {
        return;
    };
    let topic = unique("outage");
    let gw = Gateway::start(&[
        ("WHISPER_KAFKA_BROKERS", &brokers),
        ("WHISPER_KAFKA_TOPIC", &topic),
        ("WHISPER_REDIS_URL", &redis),
    ])
    .await;
    gw.wait_readyz(200).await;
    let mut alice = Client::hello(&gw.url(), "alice").await;
    let mut bob = Client::hello(&gw.url(), "bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.say("lobby", "before").await;
    assert_eq!(bob.next_message().await["text"], "before");

    services("kafka-stop");
    let result = std::panic::AssertUnwindSafe(async {
        let asked = Instant::now();
        alice
            .send(json!({"type": "send", "room": "lobby", "text": "during", "ref": "d1"}))
            .await;
        let answer = alice.expect("error").await;
        assert_eq!(
            (answer["code"].as_str(), answer["ref"].as_str()),
            (Some("unavailable"), Some("d1"))
        );
        eprintln!("unavailable answered after {:?}", asked.elapsed());
        assert!(
            asked.elapsed() < Duration::from_secs(6),
            "answered after {:?}",
            asked.elapsed()
        );
        gw.wait_readyz(503).await;
        assert!(gw.metric("whisper_bus_errors_total{kind=\"unavailable\"}").await >= 1.0);
    });
    let during = futures::FutureExt::catch_unwind(result).await;
    services("kafka-start");
    if let Err(panic) = during {
        std::panic::resume_unwind(panic);
    }

    gw.wait_readyz(200).await;
    // The refused message was never sent; new ones flow again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        alice
            .send(json!({"type": "send", "room": "lobby", "text": "after", "ref": "a1"}))
            .await;
        let answer = loop {
            let f = alice.recv().await;
            if f["type"] == "ack" || f["type"] == "error" {
                break f;
            }
        };
        if answer["type"] == "ack" {
            break;
        }
        assert!(Instant::now() < deadline, "sending never worked again: {answer}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        bob.next_message().await["text"],
        "after",
        "nothing refused was delivered"
    );
}

#[tokio::test]
async fn events_missed_while_the_subscription_was_down_are_made_up() {
    let (Some(brokers), Some(redis_url)) = (kafka(), redis()) else {
        return;
    };
    let topic = unique("resync");
    let settings = [
        ("WHISPER_KAFKA_BROKERS", brokers.as_str()),
        ("WHISPER_KAFKA_TOPIC", topic.as_str()),
        ("WHISPER_REDIS_URL", redis_url.as_str()),
    ];
    let one = Gateway::start(&settings).await;
    let two = Gateway::start(&settings).await;
    one.wait_readyz(200).await;
    two.wait_readyz(200).await;
    let mut alice = Client::hello(&one.url(), "alice").await;
    alice.join("lobby").await;

    // Every gateway loses its event subscription; bob joins before they
    // are back, so his `joined` event reaches nobody.
    let mut admin = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed >= 2, "killed {killed} subscriptions");
    let mut bob = Client::hello(&two.url(), "bob").await;
    bob.join("lobby").await;

    let event = tokio::time::timeout(Duration::from_secs(5), alice.expect("presence"))
        .await
        .expect("the missed join is made up once the subscription is back");
    assert_eq!(event["joined"][0]["name"], "bob");
}
