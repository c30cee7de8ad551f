//! The embedded bus, in one process: what a newcomer's first command runs.

mod common;

use common::{Client, InProcess};
use serde_json::json;

#[tokio::test]
async fn two_clients_chat_on_the_embedded_bus() {
    let gw = InProcess::start(Default::default()).await;
    let mut alice = Client::hello(&gw.url(), "alice").await;
    let mut bob = Client::hello(&gw.url(), "bob").await;
    alice.join("lobby").await;
    let joined = bob.join("lobby").await;
    assert_eq!(joined["members"].as_array().unwrap().len(), 2, "{joined}");

    let id = alice.say("lobby", "hello bob").await;
    let got = bob.next_message().await;
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["text"], "hello bob");
    assert_eq!(got["user"]["name"], "alice");
    assert_eq!(
        got["expires_at"].as_i64().unwrap() - got["ts"].as_i64().unwrap(),
        300_000
    );
    let echo = alice.next_message().await;
    assert_eq!(echo["id"], id.as_str(), "the sender gets its own message too");

    alice.send(json!({"type": "ping", "ref": "p-1"})).await;
    assert_eq!(alice.expect("pong").await["ref"], "p-1");

    let mut carol = Client::hello(&gw.url(), "carol").await;
    let history = carol.join("lobby").await;
    assert_eq!(history["history"][0]["id"], id.as_str(), "history on join");

    gw.stop().await;
    assert_eq!(alice.expect_close().await, Some(1001), "shutdown closes with 1001");
}
