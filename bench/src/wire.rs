//! The two protocols the bench speaks: WhisperRooms v1 and Centrifugo's
//! bidirectional JSON protocol. Building frames and reading the few fields
//! the bench needs from the server's frames, without parsing whole
//! documents on the hot path (a fan-out run reads hundreds of thousands of
//! frames a second on the same cores as the server).

use serde_json::{Value, json};

/// Which server the bench talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    /// WhisperRooms protocol v1 (`/v1/ws`).
    Whisper,
    /// Centrifugo v6 bidirectional JSON (`/connection/websocket`).
    Centrifugo,
}

/// One thing a server said, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// The session is open (`welcome`; Centrifugo's connect reply).
    Connected,
    /// The join finished, history included (`joined`; Centrifugo's history reply).
    Joined,
    /// A message of a room; `sent_us` is the send time the bench wrote into its text.
    Message { sent_us: Option<u64> },
    /// The server accepted a message (`ack`; Centrifugo's publish reply).
    Acked,
    /// The server refused something, with its error code.
    Error(String),
    /// A server ping that needs an answer (Centrifugo's `{}`).
    Ping,
    /// Anything else (presence, subscribe replies, pongs).
    Other(&'a str),
}

impl Protocol {
    /// The frames that open a session and join `room`. Their replies end
    /// with one [`Event::Connected`] and then one [`Event::Joined`].
    pub(crate) fn open(self, name: &str, room: &str) -> Vec<String> {
        match self {
            Self::Whisper => vec![hello(name), join(room, None)],
            // Centrifugo returns no history on subscribe unless recovering a
            // position; the equivalent of `joined` is subscribe + history.
            Self::Centrifugo => vec![
                json!({"id": 1, "connect": {"name": name}}).to_string(),
                format!(
                    "{}\n{}",
                    json!({"id": 2, "subscribe": {"channel": room}}),
                    json!({"id": 3, "history": {"channel": room, "limit": 200}})
                ),
            ],
        }
    }

    /// A message into `room`. `id` numbers the connection's commands
    /// (Centrifugo replies by id; ids 1–3 are taken by [`Protocol::open`]).
    pub(crate) fn send(self, room: &str, text: &str, id: u64) -> String {
        match self {
            Self::Whisper => json!({"type": "send", "room": room, "text": text}).to_string(),
            Self::Centrifugo => json!({"id": id, "publish": {"channel": room, "data": {"text": text}}}).to_string(),
        }
    }

    /// The answer to a server ping, if the protocol wants one.
    pub(crate) fn pong(self) -> Option<&'static str> {
        match self {
            Self::Whisper => None,
            Self::Centrifugo => Some("{}"),
        }
    }

    /// Reads one WebSocket text frame, which for Centrifugo may hold several
    /// newline-separated replies.
    pub(crate) fn events(self, frame: &str) -> impl Iterator<Item = Event<'_>> {
        frame
            .split('\n')
            .filter(|part| !part.is_empty())
            .map(move |part| match self {
                Self::Whisper => whisper_event(part),
                Self::Centrifugo => centrifugo_event(part),
            })
    }
}

fn whisper_event(frame: &str) -> Event<'_> {
    // The gateway serializes the `type` tag first.
    let Some(rest) = frame.strip_prefix(r#"{"type":""#) else {
        return Event::Other(frame);
    };
    let kind = rest.split('"').next().unwrap_or("");
    match kind {
        "message" => Event::Message {
            sent_us: sent_us(frame),
        },
        "ack" => Event::Acked,
        "welcome" => Event::Connected,
        "joined" => Event::Joined,
        "error" => Event::Error(error_code(frame, "code")),
        _ => Event::Other(frame),
    }
}

fn centrifugo_event(frame: &str) -> Event<'_> {
    if frame == "{}" {
        return Event::Ping;
    }
    if frame.starts_with(r#"{"push":"#) {
        return if frame.contains(r#""pub":"#) {
            Event::Message {
                sent_us: sent_us(frame),
            }
        } else {
            Event::Other(frame)
        };
    }
    if frame.contains(r#""error":"#) {
        return Event::Error(error_code(frame, "error"));
    }
    // Replies carry the command's id; 1–3 answer `open`, the rest publishes.
    match reply_id(frame) {
        Some(1) => Event::Connected,
        Some(3) => Event::Joined,
        Some(id) if id > 3 => Event::Acked,
        _ => Event::Other(frame),
    }
}

/// WhisperRooms `hello`.
pub(crate) fn hello(name: &str) -> String {
    json!({"type": "hello", "name": name}).to_string()
}

/// WhisperRooms `join`, resuming after `since` when given.
pub(crate) fn join(room: &str, since: Option<&str>) -> String {
    match since {
        Some(since) => json!({"type": "join", "room": room, "since": since}),
        None => json!({"type": "join", "room": room}),
    }
    .to_string()
}

/// WhisperRooms `leave`.
pub(crate) fn leave(room: &str) -> String {
    json!({"type": "leave", "room": room}).to_string()
}

/// An idempotent WhisperRooms `send` (v1.1): `cid` names the message, and
/// is its `ref` too, so answers are matched to it.
pub(crate) fn send_once(room: &str, text: &str, cid: &str) -> String {
    json!({"type": "send", "room": room, "text": text, "cid": cid, "ref": cid}).to_string()
}

/// A WhisperRooms `ping`.
pub(crate) fn ping() -> String {
    json!({"type": "ping"}).to_string()
}

/// A message as one member received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) id: String,
    /// The send time the sender wrote at the start of the text.
    pub(crate) sent_us: Option<u64>,
}

/// A WhisperRooms server frame read in full: the fault suite's clients
/// need ids, refs and members, and send few enough frames to parse them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Welcome {
        user: String,
    },
    Joined {
        history: Vec<Delivery>,
        members: Vec<String>,
    },
    Message(Delivery),
    Ack {
        reference: Option<String>,
        id: String,
    },
    Error {
        code: String,
        reference: Option<String>,
    },
    Presence {
        joined: Vec<String>,
        left: Vec<String>,
    },
    Other,
}

/// Reads one WhisperRooms frame.
pub(crate) fn frame(text: &str) -> Frame {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Frame::Other;
    };
    let string = |v: &Value| v.as_str().map(str::to_owned);
    let ids = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().filter_map(|m| string(&m["id"])).collect())
            .unwrap_or_default()
    };
    let delivery = |m: &Value| {
        Some(Delivery {
            id: string(&m["id"])?,
            sent_us: m["text"].as_str().and_then(leading_number),
        })
    };
    match v["type"].as_str().unwrap_or("") {
        "welcome" => string(&v["user"]["id"]).map_or(Frame::Other, |user| Frame::Welcome { user }),
        "joined" => Frame::Joined {
            history: v["history"]
                .as_array()
                .map(|h| h.iter().filter_map(delivery).collect())
                .unwrap_or_default(),
            members: ids(&v["members"]),
        },
        "message" => delivery(&v).map_or(Frame::Other, Frame::Message),
        "ack" => string(&v["id"]).map_or(Frame::Other, |id| Frame::Ack {
            reference: string(&v["ref"]),
            id,
        }),
        "error" => Frame::Error {
            code: string(&v["code"]).unwrap_or_default(),
            reference: string(&v["ref"]),
        },
        "presence" => Frame::Presence {
            joined: ids(&v["joined"]),
            left: ids(&v["left"]),
        },
        _ => Frame::Other,
    }
}

/// The digits at the start of a text, as a number.
fn leading_number(text: &str) -> Option<u64> {
    let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    text[..end].parse().ok()
}

/// The send time at the start of a message's text: `"text":"<µs> …"`.
fn sent_us(frame: &str) -> Option<u64> {
    let start = frame.find(r#""text":""#)? + 8;
    leading_number(&frame[start..])
}

fn reply_id(frame: &str) -> Option<u64> {
    let rest = frame.strip_prefix(r#"{"id":"#)?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// The error code of an error frame, parsed in full (errors are rare).
fn error_code(frame: &str, field: &str) -> String {
    let value: Value = serde_json::from_str(frame).unwrap_or(Value::Null);
    match &value[field] {
        Value::String(code) => code.clone(),
        Value::Object(error) => format!("{} {}", error["code"], error["message"].as_str().unwrap_or("")),
        _ => "unreadable".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(protocol: Protocol, frame: &str) -> Vec<Event<'_>> {
        protocol.events(frame).collect()
    }

    #[test]
    fn reads_whisper_frames() {
        let p = Protocol::Whisper;
        assert_eq!(
            all(
                p,
                r#"{"type":"message","room":"r","id":"1","user":{"id":"u","name":"n"},"text":"1234 xx","ts":1,"expires_at":2}"#
            ),
            [Event::Message { sent_us: Some(1234) }]
        );
        assert_eq!(all(p, r#"{"type":"ack","room":"r","id":"1"}"#), [Event::Acked]);
        assert_eq!(
            all(p, r#"{"type":"joined","room":"r","history":[],"members":[]}"#),
            [Event::Joined]
        );
        assert_eq!(
            all(p, r#"{"type":"error","code":"rate_limited","message":"slow down"}"#),
            [Event::Error("rate_limited".into())]
        );
        assert!(matches!(all(p, r#"{"type":"presence"}"#)[0], Event::Other(_)));
    }

    #[test]
    fn reads_centrifugo_frames_batched_by_newline() {
        let p = Protocol::Centrifugo;
        let frame = concat!(
            r#"{"id":1,"connect":{"client":"c","version":"6","ping":25,"pong":true}}"#,
            "\n",
            r#"{"id":3,"history":{"publications":[],"epoch":"e"}}"#,
            "\n",
            r#"{"push":{"channel":"r","pub":{"data":{"text":"77 x"},"offset":1}}}"#,
            "\n",
            r#"{"id":9,"publish":{}}"#,
            "\n",
            r#"{"id":10,"error":{"code":103,"message":"permission denied"}}"#,
            "\n{}"
        );
        assert_eq!(
            all(p, frame),
            [
                Event::Connected,
                Event::Joined,
                Event::Message { sent_us: Some(77) },
                Event::Acked,
                Event::Error("103 permission denied".into()),
                Event::Ping,
            ]
        );
    }

    #[test]
    fn reads_whole_whisper_frames() {
        let message = r#"{"type":"message","room":"r","id":"m1","user":{"id":"u","name":"n"},"text":"42 x","ts":1,"expires_at":2}"#;
        assert_eq!(
            frame(message),
            Frame::Message(Delivery {
                id: "m1".into(),
                sent_us: Some(42)
            })
        );
        assert_eq!(
            frame(&format!(
                r#"{{"type":"joined","room":"r","history":[{message}],"members":[{{"id":"u","name":"n"}}]}}"#
            )),
            Frame::Joined {
                history: vec![Delivery {
                    id: "m1".into(),
                    sent_us: Some(42)
                }],
                members: vec!["u".into()]
            }
        );
        assert_eq!(
            frame(r#"{"type":"error","code":"unavailable","message":"m","ref":"c1"}"#),
            Frame::Error {
                code: "unavailable".into(),
                reference: Some("c1".into())
            }
        );
        assert_eq!(
            frame(r#"{"type":"presence","room":"r","joined":[],"left":[{"id":"u","name":"n"}]}"#),
            Frame::Presence {
                joined: vec![],
                left: vec!["u".into()]
            }
        );
        assert_eq!(frame("not json"), Frame::Other);
    }

    #[test]
    fn frames_it_sends_are_json_the_servers_read() {
        for p in [Protocol::Whisper, Protocol::Centrifugo] {
            for sent in p.open("bench-1", "room-1").iter().chain([&p.send("room-1", "1 x", 4)]) {
                for line in sent.split('\n') {
                    serde_json::from_str::<Value>(line).expect("valid JSON");
                }
            }
        }
    }
}
