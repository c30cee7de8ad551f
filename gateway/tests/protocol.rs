//! Protocol v1 rules, black-box over WebSockets against a gateway on the
//! embedded bus: every error code, every close code, the limits. The gateway
//! runs inside the test process, except where the process itself is tested
//! (signals, exit codes).

mod common;

use std::time::{Duration, Instant};

use common::{Client, Gateway, InProcess, http_get, token};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use whisper_gateway::config::Settings;

async fn error(client: &mut Client) -> Value {
    client.expect("error").await
}

#[tokio::test]
async fn every_validation_error_answers_and_keeps_the_connection() {
    let gw = InProcess::start(Settings {
        max_rooms: Some("2".into()),
        max_text_bytes: Some("10".into()),
        ..Settings::default()
    })
    .await;
    let mut c = Client::connect(&gw.url()).await;

    c.send(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(error(&mut c).await["code"], "bad_request", "frame before hello");
    c.send(json!({"type": "hello"})).await;
    assert_eq!(error(&mut c).await["code"], "bad_request", "hello without a name");
    for name in ["", "   ", &"x".repeat(33), "bad\u{1}name"] {
        c.send(json!({"type": "hello", "name": name})).await;
        assert_eq!(error(&mut c).await["code"], "invalid_name", "name {name:?}");
    }
    c.send(json!({"type": "hello", "name": "  alice  "})).await;
    let welcome = c.expect("welcome").await;
    assert_eq!(welcome["user"]["name"], "alice");
    assert_eq!(welcome["ttl_ms"], 300_000);
    assert_eq!(
        welcome["limits"],
        json!({"max_text_bytes": 10, "messages_per_second": 5, "burst": 10, "max_rooms": 2,
               "frames_per_second": 20, "frame_burst": 40, "min_ttl_ms": 1000})
    );
    assert!(welcome["gateway"].as_str().unwrap().starts_with("gw-"));

    let cases = [
        (json!({"type": "hello", "name": "again"}), "bad_request"),
        (json!({"type": "fly"}), "bad_request"),
        (json!({"type": "join"}), "bad_request"),
        (json!({"type": "join", "room": "Not Valid"}), "invalid_room"),
        (json!({"type": "join", "room": "-x"}), "invalid_room"),
        (json!({"type": "join", "room": "a".repeat(65)}), "invalid_room"),
        (json!({"type": "leave", "room": "lobby"}), "not_joined"),
        (json!({"type": "leave", "room": "Not Valid"}), "invalid_room"),
        (
            json!({"type": "send", "room": "lobby", "text": "hi", "ref": "r1"}),
            "not_joined",
        ),
    ];
    for (frame, code) in cases {
        c.send(frame.clone()).await;
        let e = error(&mut c).await;
        assert_eq!(e["code"], code, "{frame} gave {e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    c.send_raw(Message::text("{not json")).await;
    assert_eq!(error(&mut c).await["code"], "bad_request");
    c.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(error(&mut c).await["code"], "bad_request");

    c.join("lobby").await;
    c.join("lobby").await; // joining again is not another room
    c.join("other").await;
    c.send(json!({"type": "join", "room": "third"})).await;
    assert_eq!(error(&mut c).await["code"], "too_many_rooms");

    for (text, code) in [("", "empty"), ("  \n\t ", "empty"), ("12345678901", "too_large")] {
        c.send(json!({"type": "send", "room": "lobby", "text": text, "ref": "s1"}))
            .await;
        let e = error(&mut c).await;
        assert_eq!((e["code"].as_str().unwrap(), e["ref"].as_str()), (code, Some("s1")));
    }
    // Ten bytes exactly is allowed; multi-byte characters count in bytes.
    c.say("lobby", "1234567890").await;
    c.send(json!({"type": "send", "room": "lobby", "text": "ééééé!", "ref": "s2"}))
        .await;
    assert_eq!(error(&mut c).await["code"], "too_large");

    c.send(json!({"type": "leave", "room": "other"})).await;
    assert_eq!(c.expect("left").await["room"], "other");
    c.join("third").await;
    c.send(json!({"type": "ping", "ref": "still-open"})).await;
    assert_eq!(c.expect("pong").await["ref"], "still-open");
}

#[tokio::test]
async fn repeated_bad_frames_close_with_4000() {
    let gw = InProcess::start(Settings::default()).await;
    let mut c = Client::hello(&gw.url(), "mallory").await;
    for _ in 0..10 {
        c.send_raw(Message::text("garbage")).await;
        assert_eq!(error(&mut c).await["code"], "bad_request");
    }
    c.send(json!({"type": "ping"})).await;
    c.expect("pong").await; // a good frame resets the count
    for _ in 0..11 {
        c.send_raw(Message::text("garbage")).await;
    }
    assert_eq!(c.expect_close().await, Some(4000));
}

#[tokio::test]
async fn no_hello_within_ten_seconds_closes_with_4000() {
    let gw = InProcess::start(Settings::default()).await;
    let mut c = Client::connect(&gw.url()).await;
    let started = std::time::Instant::now();
    assert_eq!(c.expect_close().await, Some(4000));
    assert!(started.elapsed() >= Duration::from_secs(9), "closed too early");
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_with_1009() {
    let gw = InProcess::start(Settings::default()).await;
    let mut c = Client::hello(&gw.url(), "big").await;
    c.join("lobby").await;
    let text = "x".repeat(17 * 1024);
    c.send(json!({"type": "send", "room": "lobby", "text": text})).await;
    assert_eq!(c.expect_close().await, Some(1009));

    let mut c = Client::hello(&gw.url(), "huge").await;
    c.send_raw(Message::text("y".repeat(1 << 20))).await;
    assert_eq!(c.expect_close().await, Some(1009));

    // Binary frames are bad requests, but one over the limit is too large first.
    let mut c = Client::hello(&gw.url(), "binary").await;
    c.send_raw(Message::binary(vec![0u8; 17 * 1024])).await;
    assert_eq!(c.expect_close().await, Some(1009));
}

#[tokio::test]
async fn sending_faster_than_the_rate_is_refused_and_nothing_is_sent() {
    let gw = InProcess::start(Settings {
        rate: Some("1".into()),
        burst: Some("3".into()),
        ..Settings::default()
    })
    .await;
    let mut sender = Client::hello(&gw.url(), "fast").await;
    let mut reader = Client::hello(&gw.url(), "reader").await;
    sender.join("lobby").await;
    reader.join("lobby").await;
    for i in 0..5 {
        sender
            .send(json!({"type": "send", "room": "lobby", "text": format!("m{i}"), "ref": format!("r{i}")}))
            .await;
    }
    let mut acks = 0;
    let mut limited = Vec::new();
    while acks + limited.len() < 5 {
        let f = sender.recv().await;
        match f["type"].as_str().unwrap() {
            "ack" => acks += 1,
            "error" => {
                assert_eq!(f["code"], "rate_limited", "{f}");
                limited.push(f["ref"].as_str().unwrap().to_owned());
            }
            _ => {}
        }
    }
    assert_eq!((acks, limited), (3, vec!["r3".to_owned(), "r4".to_owned()]));
    let texts: Vec<Value> = [
        reader.next_message().await,
        reader.next_message().await,
        reader.next_message().await,
    ]
    .iter()
    .map(|m| m["text"].clone())
    .collect();
    assert_eq!(texts, ["m0", "m1", "m2"]);
    // The refused ones never arrive: the next message is a new one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sender.say("lobby", "later").await;
    assert_eq!(reader.next_message().await["text"], "later");
    assert_eq!(gw.metric("whisper_rate_limited_total"), 2.0);
}

#[tokio::test]
async fn sending_on_past_the_rate_limit_closes_with_4008() {
    let gw = InProcess::start(Settings {
        rate: Some("1".into()),
        burst: Some("1".into()),
        ..Settings::default()
    })
    .await;
    let mut flood = Client::hello(&gw.url(), "flood").await;
    let mut calm = Client::hello(&gw.url(), "calm").await;
    flood.join("lobby").await;
    calm.join("lobby").await;
    // One accepted, then refusals; the 51st refusal in a row ends it.
    flood
        .flood((0..60).map(|i| json!({"type": "send", "room": "lobby", "text": format!("m{i}"), "ref": i.to_string()})))
        .await;
    let (frames, code) = flood.frames_until_close().await;
    let refused = frames.iter().filter(|f| f["code"] == "rate_limited").count();
    assert_eq!((code, refused), (Some(4008), 51));
    // The room goes on for everyone else.
    calm.say("lobby", "still here").await;
    assert_eq!(calm.next_message().await["text"], "m0");
    assert_eq!(calm.next_message().await["text"], "still here");
}

#[tokio::test]
async fn jwt_auth_accepts_good_tokens_and_closes_4001_on_bad_ones() {
    let gw = InProcess::start(Settings {
        jwt_secret: Some("s3cret-that-is-at-least-32-bytes".into()),
        ..Settings::default()
    })
    .await;
    let mut c = Client::connect(&gw.url()).await;
    c.send(json!({"type": "hello", "name": "ignored", "token": token("s3cret-that-is-at-least-32-bytes", "user-7", Some("Alice"), 60)}))
        .await;
    let welcome = c.expect("welcome").await;
    assert_eq!(welcome["user"], json!({"id": "user-7", "name": "Alice"}));

    // Two connections of one user are one member.
    let mut again = Client::connect(&gw.url()).await;
    again
        .send(json!({"type": "hello", "name": "x", "token": token("s3cret-that-is-at-least-32-bytes", "user-7", None, 60)}))
        .await;
    assert_eq!(again.expect("welcome").await["user"]["name"], "x");
    c.join("lobby").await;
    let joined = again.join("lobby").await;
    assert_eq!(joined["members"].as_array().unwrap().len(), 1, "{joined}");

    for bad in [
        json!({"type": "hello", "name": "eve"}),
        json!({"type": "hello", "name": "eve", "token": token("wrong", "eve", None, 60)}),
        json!({"type": "hello", "name": "eve", "token": token("s3cret-that-is-at-least-32-bytes", "eve", None, -120)}),
        json!({"type": "hello", "name": "eve", "token": "not-a-jwt"}),
    ] {
        let mut c = Client::connect(&gw.url()).await;
        c.send(bad.clone()).await;
        let e = c.recv().await;
        assert_eq!(e["code"], "unauthorized", "{bad}: {e}");
        assert_eq!(c.expect_close().await, Some(4001), "{bad}");
    }
}

#[tokio::test]
async fn origins_and_the_connection_cap_are_checked_on_upgrade() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let gw = InProcess::start(Settings {
        allowed_origins: Some("https://chat.example, http://localhost:8080".into()),
        max_connections: Some("2".into()),
        ..Settings::default()
    })
    .await;
    let upgrade = |origin: &str| {
        let mut request = gw.url().into_client_request().unwrap();
        request.headers_mut().insert("Origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let refused = upgrade("https://evil.example").await.unwrap_err().to_string();
    assert!(refused.contains("403"), "{refused}");
    let first = upgrade("https://chat.example").await.unwrap();
    let second = upgrade("http://localhost:8080").await.unwrap();
    let third = upgrade("https://chat.example").await.unwrap_err().to_string();
    assert!(third.contains("503"), "{third}");
    drop((first, second));
}

/// A WebSocket handshake from the loopback address `source`.
async fn upgrade_from(
    gw: &Gateway,
    source: &str,
) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(gw.addr).await.unwrap();
    tokio_tungstenite::client_async(gw.url(), stream)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn one_address_gets_only_its_share_of_connections() {
    let gw = Gateway::start(&[("WHISPER_MAX_CONNECTIONS_PER_IP", "3")]).await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(upgrade_from(&gw, "127.0.0.1").await.unwrap());
    }
    let refused = upgrade_from(&gw, "127.0.0.1").await.unwrap_err().to_string();
    assert!(refused.contains("429"), "{refused}");
    let other = upgrade_from(&gw, "127.0.0.2").await;
    assert!(other.is_ok(), "another address is not affected");
    drop(mine.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while upgrade_from(&gw, "127.0.0.1").await.is_err() {
        assert!(Instant::now() < deadline, "a closed socket gives its place back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens a TCP connection and sends half a request's headers.
async fn half_a_request(gw: &Gateway) -> TcpStream {
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    tcp
}

#[tokio::test]
async fn a_request_whose_headers_never_end_is_dropped() {
    let gw = Gateway::start(&[]).await;
    let mut slow = half_a_request(&gw).await;
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still open after 20 s");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_ends_within_the_grace_whatever_clients_do() {
    let mut gw = Gateway::start(&[("WHISPER_SHUTDOWN_GRACE", "2s")]).await;
    let _slow = half_a_request(&gw).await;
    let _silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut reader = Client::hello(&gw.url(), "never-reads").await;
    reader.join("lobby").await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || gw.signal("TERM")).await.unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_too_slow_is_closed_with_4009_without_slowing_the_room() {
    let gw = InProcess::start(Settings {
        rate: Some("10000".into()),
        burst: Some("10000".into()),
        send_queue: Some("32".into()),
        max_text_bytes: Some("8000".into()),
        frame_rate: Some("100000".into()),
        frame_burst: Some("100000".into()),
        ..Settings::default()
    })
    .await;
    let mut slow = Client::hello(&gw.url(), "slow").await;
    slow.join("lobby").await;
    let mut fast = Client::hello(&gw.url(), "fast").await;
    fast.join("lobby").await;
    let mut sender = Client::hello(&gw.url(), "sender").await;
    sender.join("lobby").await;

    // Far more than the slow socket's kernel buffers hold, so its queue
    // overflows; the sender reads its own echoes as it goes.
    let text = "z".repeat(7000);
    let (total, chunk) = (4000, 8);
    let reader = tokio::spawn(async move {
        for _ in 0..total {
            fast.next_message().await;
        }
        total
    });
    for start in (0..total).step_by(chunk) {
        for i in start..start + chunk {
            sender
                .send(json!({"type": "send", "room": "lobby", "text": text, "ref": i.to_string()}))
                .await;
        }
        let mut frames = 0;
        while frames < 2 * chunk {
            let f = sender.recv().await;
            assert_ne!(f["type"], "error", "{f}");
            if f["type"] == "ack" || f["type"] == "message" {
                frames += 1;
            }
        }
    }
    assert_eq!(reader.await.unwrap(), total, "the fast reader got everything");
    assert_eq!(gw.metric("whisper_slow_consumers_total"), 1.0);
    // The slow reader finds its buffered frames, then the close.
    let code = slow.expect_close().await;
    assert!(matches!(code, Some(4009) | None), "{code:?}");
}

#[tokio::test]
async fn rejoining_with_since_gives_only_what_was_missed() {
    let gw = InProcess::start(Settings::default()).await;
    let mut a = Client::hello(&gw.url(), "a").await;
    let mut b = Client::hello(&gw.url(), "b").await;
    a.join("lobby").await;
    b.join("lobby").await;
    let first = a.say("lobby", "one").await;
    assert_eq!(b.next_message().await["id"], first.as_str());
    drop(b);
    let second = a.say("lobby", "two").await;
    let third = a.say("lobby", "three").await;

    let mut b = Client::hello(&gw.url(), "b").await;
    b.send(json!({"type": "join", "room": "lobby", "since": first})).await;
    let joined = b.expect("joined").await;
    let ids: Vec<&str> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), third.as_str()]);
    assert!(
        joined["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["type"] == "message")
    );
}

#[tokio::test]
async fn expired_messages_leave_history_and_memory() {
    let gw = InProcess::start(Settings {
        message_ttl: Some("2s".into()),
        ..Settings::default()
    })
    .await;
    let mut a = Client::hello(&gw.url(), "a").await;
    assert_eq!(a.join("lobby").await["history"], json!([]));
    a.say("lobby", "soon gone").await;
    let m = a.next_message().await;
    assert_eq!(m["expires_at"].as_i64().unwrap() - m["ts"].as_i64().unwrap(), 2000);
    let mut b = Client::hello(&gw.url(), "b").await;
    assert_eq!(b.join("lobby").await["history"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut c = Client::hello(&gw.url(), "c").await;
    assert_eq!(c.join("lobby").await["history"], json!([]), "never served after expiry");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gw.metric("whisper_history_messages") > 0.0 {
        assert!(std::time::Instant::now() < deadline, "still in memory 5 s after expiry");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gw.metric("whisper_history_expired_total") >= 1.0);
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits() {
    let mut gw = Gateway::start(&[("WHISPER_SHUTDOWN_GRACE", "5s")]).await;
    let mut a = Client::hello(&gw.url(), "a").await;
    a.join("lobby").await;
    let closing = tokio::spawn(async move { a.expect_close().await });
    let status = tokio::task::spawn_blocking(move || gw.signal("TERM")).await.unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert_eq!(closing.await.unwrap(), Some(1001));
}

#[tokio::test]
async fn http_endpoints_answer() {
    let gw = InProcess::start(Settings::default()).await;
    assert_eq!(http_get(gw.addr, "/healthz").await.unwrap().0, 200);
    let (code, body) = http_get(gw.addr, "/readyz").await.unwrap();
    assert_eq!((code, body.as_str()), (200, "bus: ok\npresence: ok\n"));
    let (code, body) = http_get(gw.addr, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("whisper_connections 0"), "{body}");
    // The UI is built into the binary (the test command builds it first).
    let (code, body) = http_get(gw.addr, "/").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<div id=\"root\""), "{body}");
    let (code, body) = http_get(gw.addr, "/room/lobby").await.unwrap();
    assert_eq!(code, 200, "client-side routes get the page: {body}");
}

#[test]
fn a_bad_setting_exits_64_naming_it() {
    for (var, value) in [
        ("WHISPER_MESSAGE_TTL", "forever"),
        ("WHISPER_LISTEN", "nowhere"),
        ("WHISPER_RATE", "0"),
        ("WHISPER_REDIS_URL", "http://x"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_whisper-gateway"))
            .env_clear()
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var), "{stderr}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_whisper-gateway"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("WHISPER_KAFKA_BROKERS"));
}
