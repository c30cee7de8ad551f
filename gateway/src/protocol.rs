//! The wire protocol, version 1: client and server frames, their validation,
//! error and close codes. This module is the only place that knows the JSON
//! shape of a frame.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest accepted name, in Unicode scalar values, after trimming.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest accepted room id, in bytes (the pattern is ASCII only).
pub const MAX_ROOM_BYTES: usize = 64;
/// Longest accepted client `ref`, in bytes; longer ones are a `bad_request`.
pub const MAX_REF_BYTES: usize = 64;

/// WebSocket close codes of the protocol.
pub mod close {
    /// The gateway is shutting down; reconnect elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame was larger than the frame limit.
    pub const TOO_BIG: u16 = 1009;
    /// Protocol violation: no hello in time, repeated bad frames.
    pub const PROTOCOL: u16 = 4000;
    /// Missing, invalid or expired token.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Abuse beyond rate limiting.
    pub const POLICY: u16 = 4008;
    /// The client did not read and its outbound queue overflowed.
    pub const TOO_SLOW: u16 = 4009;
    /// Nothing heard from the client (no frame, no pong) for the idle timeout.
    pub const IDLE: u16 = 4010;

    /// Every close code the gateway sends; the web client's `CloseCode` and
    /// the docs are checked against it.
    pub const ALL: [u16; 7] = [GOING_AWAY, TOO_BIG, PROTOCOL, UNAUTHORIZED, POLICY, TOO_SLOW, IDLE];
}

/// A user as the protocol shows it: in `welcome`, messages and member lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub name: String,
}

/// One chat message: what a `message` frame carries and what history holds.
/// On Kafka it travels as a [`crate::bus::record::Record`], converted
/// explicitly, so the wire and the storage formats change apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub room: String,
    pub id: String,
    pub user: Member,
    pub text: String,
    /// Unix milliseconds when the gateway accepted the message.
    pub ts: i64,
    /// Unix milliseconds after which nobody may see the message.
    pub expires_at: i64,
    /// The end-to-end encryption scheme of `text`, when it is ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc: Option<String>,
}

impl ChatMessage {
    /// Whether the message's id was derived from a client's `cid`, so that
    /// a retry of it carries the same id and is dropped where consumed.
    pub fn is_idempotent(&self) -> bool {
        self.id.starts_with(IDEMPOTENT_ID_PREFIX)
    }
}

/// Marks message ids derived from a `cid` ([`idempotent_id`]); the others
/// are UUIDv7 in hex, which never start with it.
const IDEMPOTENT_ID_PREFIX: &str = "c-";

/// The message id of a `send` with a `cid`: the same for every retry of it,
/// from any connection or user (with auth off a reconnect is a new user) and
/// on any gateway, and distinct for another room or cid. SHA-256 of both, so
/// an id seen by the room's members does not reveal its cid; the cid itself
/// (128 random bits from the sender) is never sent to anyone else.
pub fn idempotent_id(room: &str, cid: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(room)
        .chain_update([0])
        .chain_update(cid)
        .finalize();
    let mut id = String::with_capacity(IDEMPOTENT_ID_PREFIX.len() + 32);
    id.push_str(IDEMPOTENT_ID_PREFIX);
    for byte in &digest[..16] {
        use std::fmt::Write;
        write!(id, "{byte:02x}").expect("writing to a String cannot fail");
    }
    id
}

/// The limits announced in `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub max_text_bytes: usize,
    pub messages_per_second: u32,
    pub burst: u32,
    pub max_rooms: usize,
    /// Client frames of any kind per second (v1.1).
    pub frames_per_second: u32,
    pub frame_burst: u32,
    /// Shortest `ttl_ms` a `send` may ask for (v1.1).
    pub min_ttl_ms: u64,
}

/// Every error code of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidRoom,
    InvalidName,
    TooLarge,
    Empty,
    NotJoined,
    TooManyRooms,
    RateLimited,
    Unavailable,
    Unauthorized,
    InvalidTtl,
    EncryptionRequired,
    Blocked,
}

impl ErrorCode {
    /// Every code, in the order of docs/protocol.md's table; the web client's
    /// `ERROR_CODES` and the docs are checked against it.
    pub const ALL: [ErrorCode; 13] = [
        Self::BadRequest,
        Self::InvalidRoom,
        Self::InvalidName,
        Self::TooLarge,
        Self::Empty,
        Self::NotJoined,
        Self::TooManyRooms,
        Self::RateLimited,
        Self::Unavailable,
        Self::Unauthorized,
        Self::InvalidTtl,
        Self::EncryptionRequired,
        Self::Blocked,
    ];
}

/// A frame the client sends, after validation of its shape (not of its
/// values: room ids, names and texts are checked by the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Hello {
        name: Option<String>,
        token: Option<String>,
    },
    Join {
        room: String,
        since: Option<String>,
    },
    Leave {
        room: String,
    },
    Send(SendFrame),
    Ping {
        reference: Option<String>,
    },
    /// A fresh token for the session (v1.1).
    Auth {
        token: String,
        reference: Option<String>,
    },
}

/// A `send`, its shape checked (its values are checked by the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFrame {
    pub room: String,
    pub text: String,
    pub reference: Option<String>,
    /// Idempotency key (v1.1), checked: 16-64 of A-Z a-z 0-9 _ -.
    pub cid: Option<String>,
    /// Requested lifetime in ms (v1.1), not yet checked against the limits.
    pub ttl_ms: Option<u64>,
    /// Encryption scheme of `text` (v1.1), checked: 1-32 of a-z 0-9 -.
    pub enc: Option<String>,
}

/// Why a text frame could not be read as a client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    pub message: String,
    /// The frame's `ref`, when it had a usable one, to echo in the error.
    pub reference: Option<String>,
}

impl ClientFrame {
    /// Parses one text frame. Every failure is a `bad_request`.
    pub fn parse(text: &str) -> Result<Self, BadFrame> {
        let value: Value = serde_json::from_str(text).map_err(|e| BadFrame {
            message: format!("frame is not valid JSON: {e}"),
            reference: None,
        })?;
        let Value::Object(object) = value else {
            return Err(BadFrame {
                message: "frame must be a JSON object".into(),
                reference: None,
            });
        };
        let reference = match object.get("ref") {
            None | Some(Value::Null) => None,
            Some(Value::String(r)) if r.len() <= MAX_REF_BYTES => Some(r.clone()),
            Some(_) => {
                return Err(BadFrame {
                    message: format!("`ref` must be a string of at most {MAX_REF_BYTES} bytes"),
                    reference: None,
                });
            }
        };
        let bad = |message: String| BadFrame {
            message,
            reference: reference.clone(),
        };
        let string = |field: &str| -> Result<Option<String>, BadFrame> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(format!("`{field}` must be a string"))),
            }
        };
        let required = |field: &str| -> Result<String, BadFrame> {
            string(field)?.ok_or_else(|| bad(format!("missing field `{field}`")))
        };
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.as_str(),
            _ => return Err(bad("missing string field `type`".into())),
        };
        match kind {
            "hello" => Ok(Self::Hello {
                name: string("name")?,
                token: string("token")?,
            }),
            "join" => Ok(Self::Join {
                room: required("room")?,
                since: string("since")?,
            }),
            "leave" => Ok(Self::Leave {
                room: required("room")?,
            }),
            "send" => Ok(Self::Send(SendFrame {
                room: required("room")?,
                text: required("text")?,
                cid: word(string("cid")?, "cid", 16..=64, CID_ALPHABET).map_err(bad)?,
                enc: word(string("enc")?, "enc", 1..=32, ENC_ALPHABET).map_err(bad)?,
                ttl_ms: match object.get("ttl_ms") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
                    Some(_) => return Err(bad("`ttl_ms` must be a whole number of milliseconds".into())),
                },
                reference,
            })),
            "ping" => Ok(Self::Ping { reference }),
            "auth" => Ok(Self::Auth {
                token: required("token")?,
                reference,
            }),
            other => Err(bad(format!("unknown frame type `{other}`"))),
        }
    }
}

/// A frame the gateway sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        session: &'a str,
        user: &'a Member,
        gateway: &'a str,
        ttl_ms: u64,
        limits: Limits,
        idle_timeout_ms: u64,
        encryption_required: bool,
        /// When the session's token expires (auth on only).
        #[serde(skip_serializing_if = "Option::is_none")]
        token_expires_at: Option<i64>,
    },
    Left {
        room: &'a str,
    },
    Message(&'a ChatMessage),
    Ack {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
        room: &'a str,
        id: &'a str,
    },
    Presence {
        room: &'a str,
        joined: &'a [Member],
        left: &'a [Member],
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    /// A token refresh was accepted; the session now lasts until `expires_at`.
    Authed {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
        expires_at: i64,
    },
}

/// The `joined` frame. Its history entries are exactly `message` frames,
/// `type` included, so clients handle history and live messages with one
/// code path; they come already serialized (as sent live) and are not
/// serialized again.
pub fn joined_frame(room: &str, history: &[impl std::ops::Deref<Target = str>], members: &[Member]) -> String {
    let room = serde_json::to_string(room).expect("a string always serializes");
    let members = serde_json::to_string(members).expect("members always serialize");
    let history_bytes: usize = history.iter().map(|f| f.len() + 1).sum();
    let mut out = String::with_capacity(48 + room.len() + members.len() + history_bytes);
    out.push_str(r#"{"type":"joined","room":"#);
    out.push_str(&room);
    out.push_str(r#","history":["#);
    for (i, frame) in history.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(frame);
    }
    out.push_str(r#"],"members":"#);
    out.push_str(&members);
    out.push('}');
    out
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with
        // non-string keys, no custom serializers.
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// The characters a `cid` may hold: `A-Z a-z 0-9 _ -`.
const CID_ALPHABET: (&str, fn(u8) -> bool) = ("A-Z a-z 0-9 _ -", |b| {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
});
/// The characters an `enc` scheme may hold: `a-z 0-9 -`.
const ENC_ALPHABET: (&str, fn(u8) -> bool) = ("a-z 0-9 -", |b| {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
});

/// Checks an optional identifier-like field: `length` bytes, each of the
/// alphabet (its description for the error, and its test).
fn word(
    value: Option<String>,
    field: &str,
    length: std::ops::RangeInclusive<usize>,
    (alphabet, allowed): (&str, fn(u8) -> bool),
) -> Result<Option<String>, String> {
    match value {
        Some(v) if !(length.contains(&v.len()) && v.bytes().all(allowed)) => Err(format!(
            "`{field}` must be {}-{} of {alphabet}",
            length.start(),
            length.end()
        )),
        v => Ok(v),
    }
}

/// A room id that matches the protocol's pattern, checked once where a
/// frame names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomId(String);

impl RoomId {
    /// What a room id must be, for error messages.
    pub const RULE: &'static str = "room ids are 1-64 of a-z 0-9 _ -, starting with a letter or digit";

    pub fn parse(room: String) -> Option<Self> {
        valid_room(&room).then_some(Self(room))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::ops::Deref for RoomId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RoomId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Checks a room id against `^[a-z0-9][a-z0-9_-]{0,63}$`.
pub fn valid_room(room: &str) -> bool {
    let bytes = room.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ROOM_BYTES
        && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Characters that change how text around them reads without being seen:
/// bidirectional controls (which can make a name display as another) and
/// zero-width characters.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' // zero-width space, non-joiner, joiner; LRM, RLM
        | '\u{202A}'..='\u{202E}' // embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // isolates
        | '\u{061C}' // Arabic letter mark
        | '\u{FEFF}' // zero-width no-break space
    )
}

/// Trims a display name and checks it: 1–32 Unicode scalar values, no
/// control characters, no direction overrides or invisible characters.
/// Returns the trimmed name.
pub fn clean_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 {
        Err("name must not be empty")
    } else if chars > MAX_NAME_CHARS {
        Err("name must be at most 32 characters")
    } else if name.chars().any(char::is_control) {
        Err("name must not contain control characters")
    } else if name.chars().any(invisible) {
        Err("name must not contain direction overrides or invisible characters")
    } else {
        Ok(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn idempotent_ids_depend_on_room_and_cid_only() {
        let id = idempotent_id("lobby", "0123456789abcdef");
        assert_eq!(id, idempotent_id("lobby", "0123456789abcdef"));
        assert_ne!(id, idempotent_id("lobby2", "0123456789abcdef"));
        assert_ne!(id, idempotent_id("lobby", "0123456789abcdeF"));
        assert_eq!(id.len(), 34);
        let msg = |id: &str| ChatMessage {
            room: "r".into(),
            id: id.into(),
            user: Member {
                id: "u".into(),
                name: "n".into(),
            },
            text: "t".into(),
            ts: 0,
            expires_at: 1,
            enc: None,
        };
        assert!(msg(&id).is_idempotent());
        assert!(!msg(&uuid::Uuid::now_v7().simple().to_string()).is_idempotent());
    }

    #[test]
    fn parses_every_client_frame() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"hello","name":"alice"}"#),
            Ok(ClientFrame::Hello {
                name: Some("alice".into()),
                token: None
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"join","room":"lobby","since":"m1"}"#),
            Ok(ClientFrame::Join {
                room: "lobby".into(),
                since: Some("m1".into())
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"leave","room":"lobby"}"#),
            Ok(ClientFrame::Leave { room: "lobby".into() })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"send","room":"lobby","text":"hi","ref":"c-1"}"#),
            Ok(ClientFrame::Send(SendFrame {
                room: "lobby".into(),
                text: "hi".into(),
                reference: Some("c-1".into()),
                cid: None,
                ttl_ms: None,
                enc: None,
            }))
        );
        assert_eq!(
            ClientFrame::parse(
                r#"{"type":"send","room":"r","text":"x","cid":"0123456789abcdef_-AZ","ttl_ms":30000,"enc":"aes-gcm-v1"}"#
            ),
            Ok(ClientFrame::Send(SendFrame {
                room: "r".into(),
                text: "x".into(),
                reference: None,
                cid: Some("0123456789abcdef_-AZ".into()),
                ttl_ms: Some(30_000),
                enc: Some("aes-gcm-v1".into()),
            }))
        );
        for bad in [
            r#"{"type":"send","room":"r","text":"x","cid":"short"}"#,
            r#"{"type":"send","room":"r","text":"x","cid":"0123456789abcdef!"}"#,
            r#"{"type":"send","room":"r","text":"x","enc":""}"#,
            r#"{"type":"send","room":"r","text":"x","enc":"AES"}"#,
            r#"{"type":"send","room":"r","text":"x","ttl_ms":-1}"#,
            r#"{"type":"send","room":"r","text":"x","ttl_ms":1.5}"#,
            r#"{"type":"send","room":"r","text":"x","ttl_ms":"30000"}"#,
        ] {
            assert!(ClientFrame::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping { reference: None })
        );
    }

    #[test]
    fn rejects_bad_frames_with_their_ref() {
        let err = ClientFrame::parse(r#"{"type":"send","room":"lobby","ref":"c-9"}"#).unwrap_err();
        assert_eq!(err.reference.as_deref(), Some("c-9"));
        assert!(err.message.contains("text"), "{}", err.message);
        for bad in [
            "",
            "nope",
            "[]",
            "42",
            r#"{"room":"x"}"#,
            r#"{"type":7}"#,
            r#"{"type":"fly"}"#,
            r#"{"type":"join","room":5}"#,
            r#"{"type":"ping","ref":1}"#,
        ] {
            assert!(ClientFrame::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn room_pattern() {
        for ok in ["lobby", "a", "0", "a-b_c", &"a".repeat(64)] {
            assert!(valid_room(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", "Lobby", "a b", "é", "a.b", &"a".repeat(65)] {
            assert!(!valid_room(bad), "{bad}");
        }
    }

    #[test]
    fn name_rules() {
        assert_eq!(clean_name("  alice "), Ok("alice".into()));
        assert_eq!(clean_name(&"é".repeat(32)), Ok("é".repeat(32)));
        assert!(clean_name(&"é".repeat(33)).is_err());
        assert!(clean_name("   ").is_err());
        assert!(clean_name("a\u{7}b").is_err());
        for spoof in [
            "adm\u{202E}nimda",
            "ali\u{200B}ce",
            "bob\u{2066}",
            "\u{FEFF}eve",
            "x\u{200D}y",
        ] {
            assert!(clean_name(spoof).is_err(), "{spoof:?}");
        }
        assert_eq!(
            clean_name("Zoë 👩‍💻"),
            Err("name must not contain direction overrides or invisible characters")
        );
        assert_eq!(clean_name("Zoë 😀"), Ok("Zoë 😀".into()));
    }

    #[test]
    fn server_frames_match_the_spec() {
        let user = Member {
            id: "u1".into(),
            name: "alice".into(),
        };
        let msg = ChatMessage {
            room: "lobby".into(),
            id: "m1".into(),
            user: user.clone(),
            text: "hi".into(),
            ts: 1,
            expires_at: 2,
            enc: None,
        };
        let v: Value = serde_json::from_str(&ServerFrame::Message(&msg).to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"message","room":"lobby","id":"m1",
                "user":{"id":"u1","name":"alice"},"text":"hi","ts":1,"expires_at":2})
        );
        let live = ServerFrame::Message(&msg).to_json();
        let joined = joined_frame("lobby", &[live.as_str(), live.as_str()], std::slice::from_ref(&user));
        let v: Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(v["type"], "joined");
        assert_eq!(v["room"], "lobby");
        assert_eq!(v["history"][0], serde_json::from_str::<Value>(&live).unwrap());
        assert_eq!(v["history"].as_array().unwrap().len(), 2);
        assert_eq!(v["members"][0]["name"], "alice");
        let empty: Value = serde_json::from_str(&joined_frame("a\"b", &[] as &[&str], &[])).unwrap();
        assert_eq!(
            empty,
            serde_json::json!({"type":"joined","room":"a\"b","history":[],"members":[]})
        );
        let err = ServerFrame::Error {
            code: ErrorCode::TooManyRooms,
            message: "m",
            reference: None,
        };
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"too_many_rooms","message":"m"}"#
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = ClientFrame::parse(&s);
        }

        #[test]
        fn parse_handles_arbitrary_json_objects(
            kind in prop::sample::select(vec!["hello", "join", "leave", "send", "ping", "x"]),
            room in prop::option::of(".*"),
            text in prop::option::of(".*"),
            reference in prop::option::of(".{0,80}"),
        ) {
            let frame = serde_json::json!({"type": kind, "room": room, "text": text, "ref": reference});
            match ClientFrame::parse(&frame.to_string()) {
                Ok(ClientFrame::Send(SendFrame { room: r, text: t, .. })) => {
                    prop_assert_eq!(Some(r), room);
                    prop_assert_eq!(Some(t), text);
                }
                Ok(_) => prop_assert!(kind != "x"),
                Err(e) => prop_assert!(!e.message.is_empty()),
            }
        }

        #[test]
        fn room_validation_matches_the_regex_definition(s in "[a-z0-9_.A-Z-]{0,70}") {
            let expected = !s.is_empty() && s.len() <= 64
                && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            prop_assert_eq!(valid_room(&s), expected);
        }
    }

    /// The web client and docs/protocol.md name exactly the codes this
    /// module defines: one source (here), the others checked against it.
    #[test]
    fn the_web_client_and_the_docs_know_every_code() {
        let client = include_str!("../../web/src/protocol.ts");
        let docs = include_str!("../../docs/protocol.md");
        let quoted = |text: &str, start: &str, end: &str| -> Vec<String> {
            let from = text.find(start).expect("list start") + start.len();
            let to = from + text[from..].find(end).expect("list end");
            text[from..to]
                .split('\'')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let ours: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| serde_json::to_value(c).unwrap().as_str().unwrap().to_owned())
            .collect();
        assert_eq!(quoted(client, "export const ERROR_CODES = [", "] as const"), ours);
        for code in &ours {
            assert!(
                docs.contains(&format!("| `{code}` |")),
                "docs/protocol.md has no row for {code}"
            );
        }
        let block = &client[client.find("export const CloseCode = {").expect("CloseCode")..];
        let block = &block[..block.find("} as const").expect("CloseCode end")];
        let mut theirs: Vec<u16> = block
            .lines()
            .filter_map(|l| l.trim().split_once(": ")?.1.trim_end_matches(',').parse().ok())
            .collect();
        theirs.sort_unstable();
        let mut ours = close::ALL.to_vec();
        ours.sort_unstable();
        assert_eq!(theirs, ours, "web/src/protocol.ts CloseCode");
        for code in ours {
            assert!(
                docs.contains(&format!("| {code} |")),
                "docs/protocol.md has no row for close {code}"
            );
        }
    }
}
