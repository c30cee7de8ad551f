//! Protocol v1.1 (docs/protocol.md, "Version 1.1"), black-box over
//! WebSockets against a gateway on the embedded bus: lifetimes, encrypted
//! text, idempotent sends, the content filter, the frame budget and
//! liveness. The gateway runs inside the test process, except for the test
//! of what its log holds.

mod common;

use std::time::Duration;

use common::{Client, Gateway, InProcess, token, unique};
use serde_json::{Value, json};
use whisper_gateway::config::Settings;

#[tokio::test]
async fn a_message_lives_as_long_as_its_sender_asked() {
    let gw = InProcess::start(Settings {
        message_ttl: Some("5m".into()),
        min_ttl: Some("1s".into()),
        ..Settings::default()
    })
    .await;
    let mut a = Client::hello(&gw.url(), "a").await;
    a.join("lobby").await;
    for ttl in [999, 300_001] {
        let e = a
            .request(json!({"type": "send", "room": "lobby", "text": "x", "ttl_ms": ttl}))
            .await;
        assert_eq!(e["code"], "invalid_ttl", "ttl_ms {ttl}: {e}");
    }
    let short = a
        .request(json!({"type": "send", "room": "lobby", "text": "short", "ttl_ms": 1000}))
        .await;
    let long = a
        .request(json!({"type": "send", "room": "lobby", "text": "long"}))
        .await;
    let first = a.next_message().await;
    assert_eq!(
        (first["id"].clone(), first["text"].clone()),
        (short["id"].clone(), json!("short"))
    );
    assert_eq!(
        first["expires_at"].as_i64().unwrap() - first["ts"].as_i64().unwrap(),
        1000
    );
    let second = a.next_message().await;
    assert_eq!(second["id"], long["id"]);
    assert_eq!(
        second["expires_at"].as_i64().unwrap() - second["ts"].as_i64().unwrap(),
        300_000
    );

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut late = Client::hello(&gw.url(), "late").await;
    let history = late.join("lobby").await["history"].clone();
    let texts: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["long"],
        "the 1 s message is gone, the refused ones were never sent"
    );
}

#[tokio::test]
async fn encrypted_text_passes_unread_and_can_be_required() {
    let gw = InProcess::start(Settings {
        require_encryption: Some("true".into()),
        ..Settings::default()
    })
    .await;
    let mut a = Client::connect(&gw.url()).await;
    a.send(json!({"type": "hello", "name": "a"})).await;
    let welcome = a.expect("welcome").await;
    assert_eq!(welcome["encryption_required"], true);
    assert_eq!(welcome["idle_timeout_ms"], 60_000);
    let mut b = Client::hello(&gw.url(), "b").await;
    a.join("vault").await;
    b.join("vault").await;
    let e = a
        .request(json!({"type": "send", "room": "vault", "text": "plain"}))
        .await;
    assert_eq!(e["code"], "encryption_required");
    let e = a
        .request(json!({"type": "send", "room": "vault", "text": "x", "enc": "Not-A-Scheme"}))
        .await;
    assert_eq!(e["code"], "bad_request");
    let ciphertext = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ";
    let ack = a
        .request(json!({"type": "send", "room": "vault", "text": ciphertext, "enc": "aes-gcm-v1"}))
        .await;
    assert_eq!(ack["type"], "ack");
    let got = b.next_message().await;
    assert_eq!(
        (got["text"].as_str(), got["enc"].as_str()),
        (Some(ciphertext), Some("aes-gcm-v1"))
    );
    let mut late = Client::hello(&gw.url(), "late").await;
    let history = late.join("vault").await["history"].clone();
    assert_eq!(history[0]["enc"], "aes-gcm-v1", "history keeps the scheme: {history}");
}

#[tokio::test]
async fn a_retried_cid_is_one_message_with_one_id() {
    let gw = InProcess::start(Settings::default()).await;
    let mut sender = Client::hello(&gw.url(), "sender").await;
    let mut member = Client::hello(&gw.url(), "member").await;
    sender.join("lobby").await;
    member.join("lobby").await;
    let send = json!({"type": "send", "room": "lobby", "text": "once", "cid": "retry-0123456789ab"});
    let first = sender.request(send.clone()).await;
    let again = sender.request(send.clone()).await;
    // After a reconnect the sender is another connection (and, auth off, another user).
    let mut reconnected = Client::hello(&gw.url(), "sender").await;
    reconnected.join("lobby").await;
    let third = reconnected.request(send.clone()).await;
    assert_eq!(first["type"], "ack");
    assert_eq!(first["id"], again["id"]);
    assert_eq!(first["id"], third["id"]);
    // The same cid in another room is another message.
    reconnected.join("other").await;
    let elsewhere = reconnected
        .request(json!({"type": "send", "room": "other", "text": "once", "cid": "retry-0123456789ab"}))
        .await;
    assert_ne!(elsewhere["id"], first["id"]);

    let after = sender.say("lobby", "after").await;
    let mut ids = Vec::new();
    loop {
        let m = member.next_message().await;
        ids.push(m["id"].as_str().unwrap().to_owned());
        if m["id"] == after.as_str() {
            break;
        }
    }
    assert_eq!(ids, [first["id"].as_str().unwrap(), after.as_str()], "delivered once");
    assert_eq!(gw.metric("whisper_duplicates_dropped_total"), 2.0);
}

#[tokio::test]
async fn the_content_filter_refuses_plain_text_and_follows_its_file() {
    let dir = std::env::temp_dir().join(unique("filter"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("deny.txt");
    std::fs::write(&rules, "# spam\n(?i)forbidden\n").unwrap();
    let gw = InProcess::start(Settings {
        content_filter: Some(rules.to_str().unwrap().into()),
        ..Settings::default()
    })
    .await;
    let mut a = Client::hello(&gw.url(), "a").await;
    let mut b = Client::hello(&gw.url(), "b").await;
    a.join("lobby").await;
    b.join("lobby").await;
    let e = a
        .request(json!({"type": "send", "room": "lobby", "text": "this is FORBIDDEN"}))
        .await;
    assert_eq!(e["code"], "blocked");
    // Ciphertext is not read.
    let ack = a
        .request(json!({"type": "send", "room": "lobby", "text": "forbidden", "enc": "aes-gcm-v1"}))
        .await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(
        b.next_message().await["id"],
        ack["id"],
        "the blocked message never arrived"
    );

    std::fs::write(&rules, "(?i)banned words\n").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let probe = a
            .request(json!({"type": "send", "room": "lobby", "text": "banned words"}))
            .await;
        if probe["code"] == "blocked" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new rules never applied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ok = a
        .request(json!({"type": "send", "room": "lobby", "text": "forbidden is fine now"}))
        .await;
    assert_eq!(ok["type"], "ack");
    assert!(gw.metric("whisper_messages_blocked_total") >= 2.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn frames_over_the_budget_are_refused_and_a_flood_closes_4008() {
    let gw = InProcess::start(Settings {
        frame_rate: Some("1".into()),
        frame_burst: Some("5".into()),
        ..Settings::default()
    })
    .await;
    let mut c = Client::hello(&gw.url(), "pinger").await;
    c.flood((0..70).map(|i| json!({"type": "ping", "ref": format!("p{i}")})))
        .await;
    let (frames, code) = c.frames_until_close().await;
    let pongs = frames.iter().filter(|f| f["type"] == "pong").count();
    let refused: Vec<&Value> = frames.iter().filter(|f| f["code"] == "rate_limited").collect();
    // hello spent one of the five; the refusals echo their refs.
    assert!((4..=5).contains(&pongs), "{pongs} pongs");
    assert_eq!(refused.len(), 51);
    assert_eq!(refused[0]["ref"], format!("p{pongs}"));
    assert_eq!(code, Some(4008));
}

#[tokio::test]
async fn a_silent_socket_is_closed_with_4010_and_leaves_and_a_live_one_stays() {
    let gw = InProcess::start(Settings {
        idle_timeout: Some("3s".into()),
        ..Settings::default()
    })
    .await;
    let mut silent = Client::hello(&gw.url(), "silent").await;
    silent.join("lobby").await;
    let mut live = Client::hello(&gw.url(), "live").await;
    live.join("lobby").await;
    // The live client only reads (all along: its WebSocket library answers
    // the pings as it reads); the silent one reads nothing, so it answers none.
    let watching = tokio::spawn(async move {
        let left = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                let f = live.expect("presence").await;
                if f["left"][0]["name"] == "silent" {
                    return;
                }
            }
        })
        .await;
        assert!(left.is_ok(), "the silent client was never reported left");
        // Well past the timeout, still reading, the live client is served.
        let closed = tokio::time::timeout(Duration::from_secs(4), live.expect_close()).await;
        assert!(closed.is_err(), "the live client was closed: {closed:?}");
        live.request(json!({"type": "ping"})).await["type"].clone()
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, code) = silent.frames_until_close().await;
    // Its library may fail to answer a queued ping on the closed socket
    // before reading the close frame: then the connection just ends.
    assert!(matches!(code, Some(4010) | None), "{code:?}");
    assert_eq!(watching.await.unwrap(), "pong");
}

#[tokio::test]
async fn no_log_line_carries_what_users_wrote_even_at_trace() {
    let path = std::env::temp_dir().join(unique("gateway-log"));
    let log = std::fs::File::create(&path).unwrap();
    let mut gw = Gateway::start_logging_to(&[("WHISPER_LOG", "trace")], log).await;
    let mut a = Client::hello(&gw.url(), "a").await;
    a.join("lobby").await;
    let secret = unique("words-only-for-the-room");
    a.say("lobby", &secret).await;
    a.next_message().await;
    gw.signal("TERM");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(text.contains("TRACE"), "a trace-level log was written:\n{text}");
    assert!(
        text.contains("closing") || text.contains("session"),
        "sessions are in the log:\n{text}"
    );
    assert!(!text.contains(&secret), "message text in the log:\n{text}");
}

#[tokio::test]
async fn a_session_lives_as_long_as_its_token_unless_refreshed() {
    const SECRET: &str = "refresh-secret-of-at-least-32-bytes";
    let gw = Gateway::start(&[("WHISPER_JWT_SECRET", SECRET)]).await;
    let hello = |sub: &str, lifetime: i64| json!({"type": "hello", "token": token(SECRET, sub, Some(sub), lifetime)});

    let mut kept = Client::connect(&gw.url()).await;
    kept.send(hello("kept", 2)).await;
    let welcome = kept.expect("welcome").await;
    let first_expiry = welcome["token_expires_at"]
        .as_i64()
        .expect("welcome says when the token expires");
    let refreshed = kept
        .request(json!({"type": "auth", "token": token(SECRET, "kept", None, 3600)}))
        .await;
    assert_eq!(refreshed["type"], "authed", "{refreshed}");
    assert!(refreshed["expires_at"].as_i64().unwrap() > first_expiry + 3_000_000);

    let mut lapsing = Client::connect(&gw.url()).await;
    lapsing.send(hello("lapsing", 2)).await;
    lapsing.expect("welcome").await;
    let (frames, code) = lapsing.frames_until_close().await;
    assert_eq!(code, Some(4001), "{frames:?}");
    assert_eq!(frames.last().unwrap()["code"], "unauthorized");

    // Past the first token's expiry the refreshed session goes on.
    assert_eq!(kept.request(json!({"type": "ping"})).await["type"], "pong");
    for bad in [
        token(SECRET, "someone-else", None, 3600),
        token(SECRET, "kept", None, -120),
    ] {
        let mut c = Client::connect(&gw.url()).await;
        c.send(hello("kept", 60)).await;
        c.expect("welcome").await;
        let refused = c.request(json!({"type": "auth", "token": bad})).await;
        assert_eq!(refused["code"], "unauthorized", "{refused}");
        assert_eq!(c.expect_close().await, Some(4001));
    }
    let anonymous = Gateway::start(&[]).await;
    let mut c = Client::hello(&anonymous.url(), "a").await;
    assert_eq!(
        c.request(json!({"type": "auth", "token": "x"})).await["code"],
        "bad_request",
        "a gateway without tokens says so and keeps the session"
    );
    assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");
}
