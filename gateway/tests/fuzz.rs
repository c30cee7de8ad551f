//! Fuzzing with proptest: the frame parser on arbitrary input, and the whole
//! session state machine on random sequences of client actions against a
//! gateway inside this process (embedded bus, in-memory presence), checked
//! frame by frame against a model of what docs/protocol.md promises.
//!
//! The session model takes one client action at a time (hello, join, leave,
//! send with or without `ref`/`cid`/`ttl_ms`/`enc`, bursts of sends written
//! at once, ping, malformed, binary and oversized frames, closes; valid and
//! invalid values of each) and waits for its answers; other clients' rooms
//! go on meanwhile. Checked:
//!
//! - the gateway never panics, and every frame it sends is JSON of a known
//!   type with that type's fields;
//! - every client frame gets exactly the answer the protocol names (its
//!   error code in the documented check order, the content filter's
//!   included; `ref` echoed when it had one), and closes come with their
//!   codes (4000 on the 11th bad frame in a row, 1009 over the frame limit);
//! - in a burst, each `send` gets one answer, refusals in the order sent; an
//!   `ack` waits for the bus, so later frames' answers may overtake it;
//! - a `message` or `presence` of a room reaches a connection only between
//!   its `joined` and its `left` for that room, as received: a message in
//!   flight when the client sent `leave` may still come, but before the
//!   `left`, never after it;
//! - within that span a connection receives the room's messages (history,
//!   then live) in bus order with none twice: all of them from the one after
//!   `since` on, or a prefix of them when the span ended early;
//! - every accepted `send` is acked with a new id, except a retry (same
//!   room and `cid`), which gets the first one's id and delivers nothing
//!   again; members receive the first accepted text, `enc` and lifetime;
//! - `joined.members` is exactly the welcomed connections in the room;
//!   `presence` never names the connection itself, only users it knows.
//!
//! Each property runs a fixed number of cases; `PROPTEST_CASES=N` runs N
//! instead, for a longer search.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{FRAME_TIMEOUT, InProcess};
use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::sample::select;
use regex::Regex;
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use whisper_gateway::config::Settings;
use whisper_gateway::protocol::{ClientFrame, SendFrame, clean_name, valid_room};

/// The test's settings, with `PROPTEST_CASES` overriding the case count.
fn cases(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The parser: whatever arrives, it never panics, and it accepts exactly the
// frames docs/protocol.md describes.

/// Strings near the protocol's edges (room ids, cids, schemes around their
/// length limits) mixed with arbitrary ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,70}",
        "[a-z0-9_-]{0,66}",
        "[A-Za-z0-9_-]{14,66}",
        "[a-z0-9-]{0,34}",
        select(vec!["lobby", "aes-gcm-v1", "AES", "", " ", "é"]).prop_map(String::from),
    ]
}

/// Any JSON value, kept small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5i64..400_000).prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON numbers are finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map(text(), inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object shaped like a client frame: a `type` (usually a known one)
/// and any of the fields frames have, each with any value.
fn frame_object() -> impl Strategy<Value = Map<String, Value>> {
    let kind = prop_oneof![
        4 => select(vec!["hello", "join", "leave", "send", "ping", "fly", "SEND"]).prop_map(Value::from),
        1 => json_value(),
    ];
    let fields = [
        "room", "text", "name", "token", "since", "ref", "cid", "ttl_ms", "enc", "extra",
    ];
    let values = prop::collection::vec(prop::option::weighted(0.6, json_value()), fields.len());
    (prop::option::weighted(0.95, kind), values).prop_map(move |(kind, values)| {
        let mut object: Map<String, Value> = fields
            .iter()
            .zip(values)
            .filter_map(|(field, value)| Some(((*field).to_owned(), value?)))
            .collect();
        if let Some(kind) = kind {
            object.insert("type".into(), kind);
        }
        object
    })
}

/// What docs/protocol.md says `object` parses to; `None` for a `bad_request`.
fn expected_frame(object: &Map<String, Value>) -> Option<ClientFrame> {
    let string = |field: &str| match object.get(field) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    };
    let word = |field: &str, lengths: std::ops::RangeInclusive<usize>, allowed: fn(char) -> bool| {
        string(field).filter(|v| {
            v.as_ref()
                .is_none_or(|v| lengths.contains(&v.len()) && v.chars().all(allowed))
        })
    };
    let reference = string("ref").filter(|r| r.as_ref().is_none_or(|r| r.len() <= 64))?;
    match object.get("type")?.as_str()? {
        "hello" => Some(ClientFrame::Hello {
            name: string("name")?,
            token: string("token")?,
        }),
        "join" => Some(ClientFrame::Join {
            room: string("room")??,
            since: string("since")?,
        }),
        "leave" => Some(ClientFrame::Leave { room: string("room")?? }),
        "send" => Some(ClientFrame::Send(SendFrame {
            room: string("room")??,
            text: string("text")??,
            reference,
            cid: word("cid", 16..=64, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-')?,
            enc: word("enc", 1..=32, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
            })?,
            ttl_ms: match object.get("ttl_ms") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) if n.is_u64() => n.as_u64(),
                Some(_) => return None,
            },
        })),
        "ping" => Some(ClientFrame::Ping { reference }),
        _ => None,
    }
}

/// A name as docs/protocol.md rules it: 1–32 scalar values after trimming,
/// no control characters, no bidirectional controls or invisible characters.
fn expected_name(name: &str) -> Option<String> {
    static FORBIDDEN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"[\p{Cc}\x{200B}-\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{2069}\x{061C}\x{FEFF}]")
            .expect("valid pattern")
    });
    let name = name.trim();
    ((1..=32).contains(&name.chars().count()) && !FORBIDDEN.is_match(name)).then(|| name.to_owned())
}

/// Characters that make names interesting: spaces, controls, direction
/// marks, joiners, emoji, and anything else.
fn name() -> impl Strategy<Value = String> {
    let special = select(vec![
        ' ', '\t', '\n', '\u{1}', '\u{7f}', '\u{85}', '\u{200B}', '\u{200D}', '\u{200E}', '\u{202E}', '\u{2066}',
        '\u{061C}', '\u{FEFF}', '\u{3000}', 'é', '😀',
    ]);
    prop::collection::vec(
        prop_oneof![3 => "[a-z]", 2 => special.prop_map(String::from), 1 => any::<char>().prop_map(String::from)],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = ClientFrame::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn frames_parse_exactly_as_documented(object in frame_object()) {
        let text = Value::Object(object.clone()).to_string();
        match (ClientFrame::parse(&text), expected_frame(&object)) {
            (Ok(parsed), Some(expected)) => prop_assert_eq!(parsed, expected),
            (Err(bad), None) => {
                prop_assert!(!bad.message.is_empty());
                let readable_ref = object.get("ref").and_then(Value::as_str).filter(|r| r.len() <= 64);
                prop_assert_eq!(bad.reference.as_deref(), readable_ref, "a readable ref is echoed");
            }
            (got, expected) => prop_assert!(false, "{text}: parsed {got:?}, documented {expected:?}"),
        }
    }

    #[test]
    fn a_cut_frame_is_a_bad_request_without_ref(object in frame_object(), cut in any::<prop::sample::Index>()) {
        let text = Value::Object(object).to_string();
        let at = text.char_indices().nth(cut.index(text.chars().count())).map_or(0, |(i, _)| i);
        let bad = ClientFrame::parse(&text[..at]).expect_err("a cut object is not JSON");
        prop_assert_eq!(bad.reference, None);
    }

    #[test]
    fn room_ids_follow_the_documented_pattern(room in text()) {
        static PATTERN: LazyLock<Regex> =
            LazyLock::new(|| Regex::new("^[a-z0-9][a-z0-9_-]{0,63}$").expect("valid pattern"));
        prop_assert_eq!(valid_room(&room), PATTERN.is_match(&room), "{:?}", room);
    }

    #[test]
    fn names_follow_the_documented_rules(name in name()) {
        prop_assert_eq!(clean_name(&name).ok(), expected_name(&name), "{:?}", name);
    }
}

// ---------------------------------------------------------------------------
// The session state machine.

/// Cases of random sessions in the test command (each starts a gateway).
const SESSION_CASES: u32 = 128;
/// Connections the actions are spread over.
const CLIENTS: usize = 3;
/// The gateway's settings under test, small so their edges are reached.
const MAX_ROOMS: usize = 2;
const MAX_TEXT_BYTES: &str = "16";
const MIN_TTL_MS: u64 = 60_000;
const TTL_MS: u64 = 300_000;
/// Bad frames in a row a connection survives (docs/protocol.md).
const MAX_BAD_FRAMES: u32 = 10;
/// A text frame over the default frame limit of 16 KiB.
const OVERSIZE_BYTES: usize = 17 * 1024;

/// Names for `hello`, with the name the gateway must welcome (`None`:
/// `invalid_name`).
const NAMES: [(&str, Option<&str>); 8] = [
    ("alice", Some("alice")),
    ("  bob\t", Some("bob")),
    ("Zoë 😀", Some("Zoë 😀")),
    ("", None),
    ("   ", None),
    ("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", None),
    ("bad\u{1}name", None),
    ("adm\u{202E}nimda", None),
];
const VALID_NAMES: usize = 3;
/// Room ids; the first three are well formed.
const ROOMS: [&str; 5] = ["r0", "r1", "r2", "Not Valid", "-x"];
const VALID_ROOMS: usize = 3;
/// What the gateway makes of a `send`'s text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    Fine,
    /// `empty` or `too_large` (at most 16 bytes).
    Refused(&'static str),
    /// Matches the content filter's [`DENY_RULE`]: `blocked`, unless `enc`
    /// says it is ciphertext.
    Denied,
}
const TEXTS: [(&str, Text); 7] = [
    ("hi", Text::Fine),
    ("sixteen bytes ok", Text::Fine),
    ("", Text::Refused("empty")),
    (" \n\t", Text::Refused("empty")),
    ("seventeen bytes!!", Text::Refused("too_large")),
    ("ééééééééé", Text::Refused("too_large")),
    ("no SPAM here", Text::Denied),
];
const VALID_TEXTS: usize = 2;
/// The content filter's one rule.
const DENY_RULE: &str = "(?i)spam";
/// `cid`s: three well-formed ones (so retries happen), then malformed ones.
const CIDS: [&str; 6] = [
    "cid-aaaaaaaaaaaa",
    "cid_bbbbbbbbbbbbbbbbbbbbbbb",
    "0123456789012345678901234567890123456789012345678901234567890123",
    "short",
    "has spaces, not ok!",
    "01234567890123456789012345678901234567890123456789012345678901234",
];
const VALID_CIDS: usize = 3;
/// `enc` schemes: two well formed, then malformed ones.
const ENCS: [&str; 5] = ["aes-gcm-v1", "x", "", "AES", "abcdefghijklmnopqrstuvwxyz0123456"];
const VALID_ENCS: usize = 2;

/// A `ttl_ms`: within `min_ttl_ms`…`ttl_ms`, outside it (`invalid_ttl`),
/// or not a whole number of milliseconds (`bad_request`).
#[derive(Debug, Clone)]
enum Ttl {
    Within(u64),
    Outside(u64),
    Malformed(Value),
}

/// Frames that are not well formed, and the `ref` their error echoes.
const GARBAGE: [(&str, Option<&str>); 9] = [
    ("{not json", None),
    ("[]", None),
    ("42", None),
    (r#"{"type":"fly","ref":"g1"}"#, Some("g1")),
    (r#"{"room":"r0"}"#, None),
    (r#"{"type":"join"}"#, None),
    (r#"{"type":"join","room":5}"#, None),
    (
        r#"{"type":"ping","ref":"rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"}"#,
        None,
    ),
    (r#"{"type":"send","room":"r0","ref":"g2"}"#, Some("g2")),
];

/// Which `since` a `join` carries.
#[derive(Debug, Clone, Copy)]
enum Since {
    Absent,
    /// An id no gateway has: the whole history comes back.
    Unknown,
    /// The last message id this connection received in the room, if any.
    LastSeen,
}

#[derive(Debug, Clone)]
struct Send {
    room: usize,
    text: usize,
    with_ref: bool,
    cid: Option<usize>,
    ttl: Option<Ttl>,
    enc: Option<usize>,
}

/// One thing a client does. A client without a connection opens one first.
#[derive(Debug, Clone)]
enum Action {
    /// `hello` with a name from [`NAMES`], or none.
    Hello(Option<usize>),
    Join(usize, Since),
    Leave(usize),
    Send(Send),
    /// Well-formed sends written at once, their answers read after.
    Burst(Vec<Send>),
    Ping {
        with_ref: bool,
    },
    /// One of [`GARBAGE`], this many times in a row.
    Garbage {
        kind: usize,
        times: u32,
    },
    Binary,
    /// A text or binary frame over the frame limit.
    Oversize {
        binary: bool,
    },
    Close,
}

/// An index into a pool whose first `good` entries are the well-formed
/// ones, which it picks four times in five.
fn pick(good: usize, all: usize) -> impl Strategy<Value = usize> + Clone {
    prop_oneof![4 => 0..good, 1 => good..all]
}

/// A `send`; a `well_formed` one has no malformed field (it may still be
/// refused for its values).
fn send(well_formed: bool) -> impl Strategy<Value = Send> {
    let within = select(vec![MIN_TTL_MS, TTL_MS]).prop_map(Ttl::Within);
    let outside = select(vec![MIN_TTL_MS - 1, TTL_MS + 1, 0]).prop_map(Ttl::Outside);
    let malformed = select(vec![json!(-1), json!(60_000.5), json!("60000")]).prop_map(Ttl::Malformed);
    let (ttl, cid, enc) = if well_formed {
        (
            prop_oneof![within, outside].boxed(),
            (0..VALID_CIDS).boxed(),
            (0..VALID_ENCS).boxed(),
        )
    } else {
        (
            prop_oneof![within, outside, malformed].boxed(),
            pick(VALID_CIDS, CIDS.len()).boxed(),
            pick(VALID_ENCS, ENCS.len()).boxed(),
        )
    };
    (
        pick(VALID_ROOMS, ROOMS.len()),
        pick(VALID_TEXTS, TEXTS.len()),
        any::<bool>(),
        prop::option::of(cid),
        prop::option::weighted(0.2, ttl),
        prop::option::weighted(0.2, enc),
    )
        .prop_map(|(room, text, with_ref, cid, ttl, enc)| Send {
            room,
            text,
            with_ref,
            cid,
            ttl,
            enc,
        })
}

fn action() -> impl Strategy<Value = Action> {
    let room = pick(VALID_ROOMS, ROOMS.len());
    let since = select(vec![Since::Absent, Since::Unknown, Since::LastSeen]);
    // Weighted so that connections mostly live long enough to say hello,
    // join and send.
    prop_oneof![
        8 => prop::option::weighted(0.9, pick(VALID_NAMES, NAMES.len())).prop_map(Action::Hello),
        12 => (room.clone(), since).prop_map(|(room, since)| Action::Join(room, since)),
        4 => room.prop_map(Action::Leave),
        24 => send(false).prop_map(Action::Send),
        4 => prop::collection::vec(send(true).prop_map(|send| Send { with_ref: true, ..send }), 2..6)
            .prop_map(Action::Burst),
        2 => any::<bool>().prop_map(|with_ref| Action::Ping { with_ref }),
        2 => (0..GARBAGE.len(), prop_oneof![3 => Just(1u32), 1 => 2..=MAX_BAD_FRAMES + 1])
            .prop_map(|(kind, times)| Action::Garbage { kind, times }),
        2 => Just(Action::Binary),
        1 => any::<bool>().prop_map(|binary| Action::Oversize { binary }),
        1 => Just(Action::Close),
    ]
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the server said, as far as the model cares.
#[derive(Debug)]
enum Event {
    Frame(Value),
    Closed(Option<u16>),
}

/// A message the model expects members to receive: from the first `send`
/// the gateway accepted for its id.
#[derive(Debug)]
struct Sent {
    room: String,
    user: Value,
    text: String,
    enc: Option<String>,
    ttl_ms: u64,
}

/// What must answer a `send`.
#[derive(Debug)]
enum SendAnswer {
    /// A malformed field: `bad_request`, counted as a bad frame.
    BadFrame(Option<String>),
    /// This error code, the `ref` echoed.
    Refused(&'static str, Option<String>),
    /// An `ack`: the message is new unless its room and `cid` were sent
    /// before.
    Ack {
        reference: Option<String>,
        cid: Option<String>,
        sent: Sent,
    },
}

impl SendAnswer {
    fn reference(&self) -> Option<&str> {
        match self {
            Self::BadFrame(reference) | Self::Refused(_, reference) | Self::Ack { reference, .. } => {
                reference.as_deref()
            }
        }
    }

    /// The answer's fields, as [`check_answer`] compares them.
    fn frame(&self) -> Value {
        let mut frame = match self {
            Self::BadFrame(_) => json!({"type": "error", "code": "bad_request"}),
            Self::Refused(code, _) => json!({"type": "error", "code": code}),
            Self::Ack { sent, .. } => json!({"type": "ack", "room": sent.room}),
        };
        if let Some(reference) = self.reference() {
            frame["ref"] = json!(reference);
        }
        frame
    }
}

/// A connection's view of one room, from a `joined` until its `left` (or
/// the next `joined`, or the connection's end): the messages it received,
/// which must be the room's messages in bus order from `start` on.
#[derive(Debug)]
struct Epoch {
    start: usize,
    received: Vec<Value>,
}

/// One open connection of a client, and what the model knows of it.
struct Conn {
    ws: Ws,
    /// The member `welcome` named.
    user: Option<Value>,
    /// The rooms the gateway has this connection in.
    rooms: BTreeSet<String>,
    bad_in_a_row: u32,
    /// The rooms as this connection's received frames show them.
    epochs: BTreeMap<String, Epoch>,
    last_seen: HashMap<String, String>,
}

/// Everything the gateway should have done so far.
#[derive(Default)]
struct Model {
    require_encryption: bool,
    clients: Vec<Option<Conn>>,
    /// Every user ever welcomed: id → name.
    users: HashMap<String, String>,
    /// Each room's messages in bus order: the order their sends were
    /// accepted, as steps are taken one at a time.
    log: HashMap<String, Vec<String>>,
    messages: HashMap<String, Sent>,
    /// The id of each (room, cid) that was accepted.
    cids: HashMap<(String, String), String>,
    refs: u64,
}

/// Counts panics on the gateway's threads (the test's own assertions fail
/// on the test thread and are proptest's to report).
static GATEWAY_PANICS: AtomicUsize = AtomicUsize::new(0);
const GATEWAY_THREAD: &str = "gateway-under-test";

fn count_gateway_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(GATEWAY_THREAD) {
                GATEWAY_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// Checks that `frame` has every field of `expected`, and no `ref` or
/// `room` that `expected` lacks.
fn check_answer(client: usize, frame: &Value, expected: &Value) {
    let fields = expected.as_object().unwrap();
    for (field, value) in fields {
        assert_eq!(
            &frame[field], value,
            "client {client}: expected {expected}, got {frame}"
        );
    }
    for field in ["ref", "room"] {
        if !fields.contains_key(field) {
            assert!(frame.get(field).is_none(), "client {client}: {frame} has a {field}");
        }
    }
}

/// Checks that a server frame is one the protocol defines, with its
/// fields' types.
fn check_shape(frame: &Value) {
    let member = |m: &Value| m["id"].is_string() && m["name"].is_string();
    let members = |ms: &Value| ms.as_array().is_some_and(|ms| ms.iter().all(member));
    let optional_ref = frame.get("ref").is_none_or(Value::is_string);
    let ok = match frame["type"].as_str() {
        Some("welcome") => frame["session"].is_string() && member(&frame["user"]) && frame["limits"].is_object(),
        Some("joined") => {
            frame["room"].is_string()
                && members(&frame["members"])
                && frame["history"]
                    .as_array()
                    .is_some_and(|h| h.iter().all(|m| m["type"] == "message"))
        }
        Some("left") => frame["room"].is_string(),
        Some("message") => {
            frame["room"].is_string()
                && frame["id"].is_string()
                && member(&frame["user"])
                && frame["text"].is_string()
                && frame["ts"].is_i64()
                && frame["expires_at"].is_i64()
                && frame.get("enc").is_none_or(Value::is_string)
        }
        Some("ack") => optional_ref && frame["room"].is_string() && frame["id"].is_string(),
        Some("presence") => frame["room"].is_string() && members(&frame["joined"]) && members(&frame["left"]),
        Some("error") => optional_ref && frame["code"].is_string() && frame["message"].is_string(),
        Some("pong") => optional_ref,
        _ => false,
    };
    assert!(ok, "not a protocol frame: {frame}");
}

impl Conn {
    async fn open(url: &str) -> Conn {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Conn {
            ws,
            user: None,
            rooms: BTreeSet::new(),
            bad_in_a_row: 0,
            epochs: BTreeMap::new(),
            last_seen: HashMap::new(),
        }
    }

    async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("the gateway reads while open");
    }

    /// The next text frame (checked to be a protocol frame) or the end.
    async fn next(&mut self) -> Event {
        loop {
            let next = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("the gateway answers in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("server frames are JSON");
                    check_shape(&frame);
                    return Event::Frame(frame);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(close))) => return Event::Closed(close.map(|c| c.code.into())),
                Some(Ok(other)) => panic!("the gateway sent a non-text frame: {other:?}"),
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }
}

impl Model {
    /// Handles a frame nobody asked for (`message`, `presence`); returns
    /// the frame back when it answers a client frame.
    fn unsolicited(&mut self, client: usize, frame: Value) -> Option<Value> {
        let conn = self.clients[client].as_mut().expect("open");
        let room = frame["room"].as_str().unwrap_or_default().to_owned();
        match frame["type"].as_str() {
            Some("message") => {
                let epoch = conn
                    .epochs
                    .get_mut(&room)
                    .unwrap_or_else(|| panic!("client {client} got a message of {room}, not joined: {frame}"));
                conn.last_seen.insert(room, frame["id"].as_str().unwrap().to_owned());
                epoch.received.push(frame);
                None
            }
            Some("presence") => {
                assert!(
                    conn.epochs.contains_key(&room),
                    "client {client} got presence of {room}, not joined: {frame}"
                );
                let own = &conn.user.as_ref().expect("welcomed")["id"];
                for member in frame["joined"]
                    .as_array()
                    .into_iter()
                    .chain(frame["left"].as_array())
                    .flatten()
                {
                    assert_ne!(&member["id"], own, "presence about the connection itself: {frame}");
                    let known = self.users.get(member["id"].as_str().unwrap());
                    assert_eq!(
                        known.map(String::as_str),
                        member["name"].as_str(),
                        "an unknown member: {frame}"
                    );
                }
                None
            }
            _ => Some(frame),
        }
    }

    /// Reads until the frame answering the client's last frame, or the end.
    async fn answer(&mut self, client: usize) -> Event {
        loop {
            let event = self.clients[client].as_mut().expect("open").next().await;
            match event {
                Event::Frame(frame) => {
                    if let Some(answer) = self.unsolicited(client, frame) {
                        return Event::Frame(answer);
                    }
                }
                closed => return closed,
            }
        }
    }

    /// Reads the answer and checks it is exactly `expected`'s type and
    /// fields; returns it.
    async fn expect(&mut self, client: usize, expected: Value) -> Value {
        let Event::Frame(frame) = self.answer(client).await else {
            panic!("client {client}: connection closed while waiting for {expected}");
        };
        check_answer(client, &frame, &expected);
        frame
    }

    async fn error(&mut self, client: usize, code: &str, reference: Option<&str>) {
        let mut expected = json!({"type": "error", "code": code});
        if let Some(reference) = reference {
            expected["ref"] = json!(reference);
        }
        self.expect(client, expected).await;
    }

    /// Reads until the connection ends and checks the close code; the
    /// connection's rooms end with it.
    async fn expect_close(&mut self, client: usize, code: Option<u16>) {
        match self.answer(client).await {
            Event::Frame(frame) => panic!("client {client}: {frame} where the close was expected"),
            Event::Closed(got) => assert_eq!(got, code, "client {client}: close code"),
        }
        let conn = self.clients[client].take().expect("open");
        for (room, epoch) in &conn.epochs {
            self.check_epoch(room, epoch, false);
        }
    }

    /// The messages an epoch received are the room's, in bus order, from its
    /// start on, each as first accepted: all of them when `complete`, else a
    /// prefix.
    fn check_epoch(&self, room: &str, epoch: &Epoch, complete: bool) {
        let log = self.log.get(room).map_or(&[][..], |log| &log[epoch.start..]);
        let ids: Vec<&str> = epoch.received.iter().map(|m| m["id"].as_str().unwrap()).collect();
        if complete {
            assert_eq!(ids, log, "{room}: every message once, in order");
        } else {
            let prefix = ids.len() <= log.len() && ids == log[..ids.len()];
            assert!(prefix, "{room}: {ids:?} is not a prefix of {log:?}");
        }
        for message in &epoch.received {
            let sent = &self.messages[message["id"].as_str().unwrap()];
            assert_eq!(message["room"], sent.room.as_str());
            assert_eq!(message["user"], sent.user, "{message}");
            assert_eq!(
                message["text"],
                sent.text.as_str(),
                "the first accepted text: {message}"
            );
            assert_eq!(message["enc"].as_str(), sent.enc.as_deref(), "{message}");
            let lifetime = message["expires_at"].as_i64().unwrap() - message["ts"].as_i64().unwrap();
            assert_eq!(lifetime, sent.ttl_ms as i64, "{message}");
        }
    }

    fn members(&self, room: &str) -> BTreeSet<String> {
        self.clients
            .iter()
            .flatten()
            .filter(|c| c.rooms.contains(room))
            .map(|c| c.user.as_ref().expect("welcomed").to_string())
            .collect()
    }

    fn next_ref(&mut self) -> String {
        self.refs += 1;
        format!("ref-{}", self.refs)
    }

    /// A bad frame was sent: expects its error, and the close after too
    /// many in a row.
    async fn bad_frame(&mut self, client: usize, reference: Option<&str>) {
        self.error(client, "bad_request", reference).await;
        let conn = self.clients[client].as_mut().expect("open");
        conn.bad_in_a_row += 1;
        if conn.bad_in_a_row > MAX_BAD_FRAMES {
            self.expect_close(client, Some(4000)).await;
        }
    }

    async fn step(&mut self, url: &str, client: usize, action: &Action) {
        if self.clients[client].is_none() {
            self.clients[client] = Some(Conn::open(url).await);
        }
        let conn = self.clients[client].as_mut().expect("open");
        let welcomed = conn.user.is_some();
        match action {
            Action::Hello(name) => {
                let mut frame = json!({"type": "hello"});
                if let Some(i) = name {
                    frame["name"] = json!(NAMES[*i].0);
                }
                conn.bad_in_a_row = 0;
                conn.send(Message::text(frame.to_string())).await;
                match name.map(|i| NAMES[i].1) {
                    _ if welcomed => self.error(client, "bad_request", None).await,
                    None => self.error(client, "bad_request", None).await,
                    Some(None) => self.error(client, "invalid_name", None).await,
                    Some(Some(expected)) => {
                        let welcome = self.expect(client, json!({"type": "welcome"})).await;
                        let user = welcome["user"].clone();
                        assert_eq!(user["name"], expected, "{welcome}");
                        let id = user["id"].as_str().unwrap().to_owned();
                        assert!(self.users.insert(id, expected.to_owned()).is_none(), "a new user id");
                        self.clients[client].as_mut().expect("open").user = Some(user);
                    }
                }
            }
            Action::Join(room, since) => {
                let room = ROOMS[*room];
                let mut frame = json!({"type": "join", "room": room});
                let since = match since {
                    Since::Absent => None,
                    Since::Unknown => Some("not-an-id".to_owned()),
                    Since::LastSeen => conn.last_seen.get(room).cloned(),
                };
                if let Some(since) = &since {
                    frame["since"] = json!(since);
                }
                conn.bad_in_a_row = 0;
                conn.send(Message::text(frame.to_string())).await;
                if !welcomed {
                    self.error(client, "bad_request", None).await;
                } else if !valid_room(room) {
                    self.error(client, "invalid_room", None).await;
                } else if !conn.rooms.contains(room) && conn.rooms.len() >= MAX_ROOMS {
                    self.error(client, "too_many_rooms", None).await;
                } else {
                    conn.rooms.insert(room.to_owned());
                    let members = self.members(room);
                    let joined = self.expect(client, json!({"type": "joined", "room": room})).await;
                    let got: BTreeSet<String> = joined["members"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(Value::to_string)
                        .collect();
                    assert_eq!(got, members, "members of {room}: {joined}");
                    let log = self.log.get(room).map_or(&[][..], Vec::as_slice);
                    let start = since
                        .and_then(|since| log.iter().position(|id| *id == since))
                        .map_or(0, |at| at + 1);
                    let epoch = Epoch {
                        start,
                        received: joined["history"].as_array().unwrap().clone(),
                    };
                    let conn = self.clients[client].as_mut().expect("open");
                    if let Some(last) = epoch.received.last() {
                        conn.last_seen
                            .insert(room.to_owned(), last["id"].as_str().unwrap().to_owned());
                    }
                    if let Some(previous) = conn.epochs.insert(room.to_owned(), epoch) {
                        self.check_epoch(room, &previous, false);
                    }
                }
            }
            Action::Leave(room) => {
                let room = ROOMS[*room];
                conn.bad_in_a_row = 0;
                conn.send(Message::text(json!({"type": "leave", "room": room}).to_string()))
                    .await;
                if !welcomed {
                    self.error(client, "bad_request", None).await;
                } else if !valid_room(room) {
                    self.error(client, "invalid_room", None).await;
                } else if !conn.rooms.remove(room) {
                    self.error(client, "not_joined", None).await;
                } else {
                    self.expect(client, json!({"type": "left", "room": room})).await;
                    let conn = self.clients[client].as_mut().expect("open");
                    let epoch = conn.epochs.remove(room).expect("left a joined room");
                    self.check_epoch(room, &epoch, false);
                }
            }
            Action::Send(send) => self.send(client, send).await,
            Action::Burst(sends) => self.burst(client, sends).await,
            Action::Ping { with_ref } => {
                let reference = with_ref.then(|| self.next_ref());
                let conn = self.clients[client].as_mut().expect("open");
                conn.bad_in_a_row = 0;
                conn.send(Message::text(json!({"type": "ping", "ref": reference}).to_string()))
                    .await;
                if welcomed {
                    let mut pong = json!({"type": "pong"});
                    if let Some(reference) = &reference {
                        pong["ref"] = json!(reference);
                    }
                    self.expect(client, pong).await;
                } else {
                    self.error(client, "bad_request", reference.as_deref()).await;
                }
            }
            Action::Garbage { kind, times } => {
                let (text, reference) = GARBAGE[*kind];
                for _ in 0..*times {
                    let Some(conn) = self.clients[client].as_mut() else {
                        break;
                    };
                    conn.send(Message::text(text)).await;
                    self.bad_frame(client, reference).await;
                }
            }
            Action::Binary => {
                conn.send(Message::binary(vec![1, 2, 3])).await;
                self.bad_frame(client, None).await;
            }
            Action::Oversize { binary } => {
                conn.send(if *binary {
                    Message::binary(vec![b'x'; OVERSIZE_BYTES])
                } else {
                    Message::text("x".repeat(OVERSIZE_BYTES))
                })
                .await;
                self.expect_close(client, Some(1009)).await;
            }
            Action::Close => {
                conn.send(Message::Close(None)).await;
                self.expect_close(client, None).await;
            }
        }
    }

    async fn send(&mut self, client: usize, send: &Send) {
        let (frame, answer) = self.send_frame(client, send);
        self.clients[client].as_mut().expect("open").send(frame).await;
        self.check_send(client, answer).await;
    }

    /// Several sends written at once, their answers read after. Refusals
    /// come as each frame is handled, in order; an `ack` comes when the bus
    /// has the message, so later frames' answers may overtake it: answers
    /// are matched by `ref`, and messages join the log in the order written
    /// (the order they were published).
    async fn burst(&mut self, client: usize, sends: &[Send]) {
        let mut expected = Vec::new();
        for send in sends {
            let (frame, answer) = self.send_frame(client, send);
            self.clients[client].as_mut().expect("open").send(frame).await;
            expected.push(answer);
        }
        let mut answers: HashMap<String, Value> = HashMap::new();
        let mut refusals = Vec::new();
        while answers.len() < expected.len() {
            let Event::Frame(frame) = self.answer(client).await else {
                panic!("client {client}: connection closed during a burst");
            };
            let reference = frame["ref"].as_str().map(str::to_owned);
            let reference = reference.unwrap_or_else(|| panic!("client {client}: {frame} answers nothing sent"));
            if frame["type"] == "error" {
                refusals.push(reference.clone());
            }
            assert!(
                answers.insert(reference, frame).is_none(),
                "client {client}: a frame answered twice"
            );
        }
        let refused: Vec<String> = expected
            .iter()
            .filter(|answer| !matches!(answer, SendAnswer::Ack { .. }))
            .map(|answer| answer.reference().expect("burst sends carry a ref").to_owned())
            .collect();
        assert_eq!(refusals, refused, "client {client}: refusals in the order sent");
        for answer in expected {
            let reference = answer.reference().expect("burst sends carry a ref");
            let frame = answers.remove(reference).expect("every send answered");
            check_answer(client, &frame, &answer.frame());
            if let SendAnswer::Ack { cid, sent, .. } = answer {
                self.accepted(&frame, cid, sent);
            }
        }
    }

    /// A `send`'s frame, and what must answer it.
    fn send_frame(&mut self, client: usize, send: &Send) -> (Message, SendAnswer) {
        let reference = send.with_ref.then(|| self.next_ref());
        let conn = self.clients[client].as_mut().expect("open");
        let room = ROOMS[send.room];
        let (text, kind) = TEXTS[send.text];
        let mut frame = json!({"type": "send", "room": room, "text": text, "ref": reference});
        let cid = send.cid.map(|i| CIDS[i]);
        if let Some(cid) = cid {
            frame["cid"] = json!(cid);
        }
        let enc = send.enc.map(|i| ENCS[i]);
        if let Some(enc) = enc {
            frame["enc"] = json!(enc);
        }
        if let Some(ttl) = &send.ttl {
            frame["ttl_ms"] = match ttl {
                Ttl::Within(ms) | Ttl::Outside(ms) => json!(ms),
                Ttl::Malformed(value) => value.clone(),
            };
        }
        let frame = Message::text(frame.to_string());
        let malformed = send.cid.is_some_and(|i| i >= VALID_CIDS)
            || send.enc.is_some_and(|i| i >= VALID_ENCS)
            || matches!(send.ttl, Some(Ttl::Malformed(_)));
        if malformed {
            return (frame, SendAnswer::BadFrame(reference));
        }
        conn.bad_in_a_row = 0;
        let refused = if conn.user.is_none() {
            Some("bad_request")
        } else if send.room >= VALID_ROOMS {
            Some("invalid_room")
        } else if !conn.rooms.contains(room) {
            Some("not_joined")
        } else if let Text::Refused(code) = kind {
            Some(code)
        } else if matches!(send.ttl, Some(Ttl::Outside(_))) {
            Some("invalid_ttl")
        } else if enc.is_none() && self.require_encryption {
            Some("encryption_required")
        } else if enc.is_none() && kind == Text::Denied {
            Some("blocked")
        } else {
            None
        };
        if let Some(code) = refused {
            return (frame, SendAnswer::Refused(code, reference));
        }
        let sent = Sent {
            room: room.to_owned(),
            user: conn.user.clone().expect("welcomed"),
            text: text.to_owned(),
            enc: enc.map(str::to_owned),
            ttl_ms: match send.ttl {
                Some(Ttl::Within(ms)) => ms,
                _ => TTL_MS,
            },
        };
        let cid = cid.map(str::to_owned);
        (frame, SendAnswer::Ack { reference, cid, sent })
    }

    /// Reads a `send`'s answer and checks it is `answer`.
    async fn check_send(&mut self, client: usize, answer: SendAnswer) {
        match answer {
            SendAnswer::BadFrame(reference) => self.bad_frame(client, reference.as_deref()).await,
            SendAnswer::Refused(..) => {
                self.expect(client, answer.frame()).await;
            }
            SendAnswer::Ack { .. } => {
                let ack = self.expect(client, answer.frame()).await;
                let SendAnswer::Ack { cid, sent, .. } = answer else {
                    unreachable!()
                };
                self.accepted(&ack, cid, sent);
            }
        }
    }

    /// An accepted message joins its room's log under the id its `ack`
    /// gave: a new one, unless its room and `cid` were sent before.
    fn accepted(&mut self, ack: &Value, cid: Option<String>, sent: Sent) {
        let id = ack["id"].as_str().unwrap().to_owned();
        let room = sent.room.clone();
        if let Some(cid) = cid {
            match self.cids.get(&(room.clone(), cid.clone())) {
                Some(earlier) => {
                    assert_eq!(*earlier, id, "a retry (same room and cid) has the first one's id");
                    return;
                }
                None => self.cids.insert((room.clone(), cid), id.clone()),
            };
        }
        assert!(
            self.messages.insert(id.clone(), sent).is_none(),
            "{id}: a new message has a new id"
        );
        self.log.entry(room).or_default().push(id);
    }

    /// Checks that every open connection had every frame it was owed: a
    /// last `ping` is answered with nothing else owed before it, then every
    /// message of the rooms it is in arrives, once and in order.
    async fn finish(&mut self) {
        for client in 0..CLIENTS {
            let Some(conn) = self.clients[client].as_mut() else {
                continue;
            };
            let welcomed = conn.user.is_some();
            let reference = format!("last-{client}");
            conn.send(Message::text(json!({"type": "ping", "ref": reference}).to_string()))
                .await;
            if welcomed {
                self.expect(client, json!({"type": "pong", "ref": reference})).await;
            } else {
                self.error(client, "bad_request", Some(&reference)).await;
            }
            while self.missing(client) {
                match self.clients[client].as_mut().expect("open").next().await {
                    Event::Frame(frame) => {
                        if let Some(answer) = self.unsolicited(client, frame) {
                            panic!("client {client}: {answer} answers nothing");
                        }
                    }
                    Event::Closed(code) => panic!("client {client}: closed ({code:?}) with messages missing"),
                }
            }
            for (room, epoch) in &self.clients[client].as_ref().expect("open").epochs {
                self.check_epoch(room, epoch, true);
            }
        }
    }

    /// Whether a connection still lacks messages of a room it is in.
    fn missing(&self, client: usize) -> bool {
        let conn = self.clients[client].as_ref().expect("open");
        conn.epochs
            .iter()
            .any(|(room, epoch)| epoch.start + epoch.received.len() < self.log.get(room).map_or(0, Vec::len))
    }

    fn open_connections(&self) -> i64 {
        self.clients.iter().flatten().count() as i64
    }
}

/// Connections shown by the gateway and by the model agree once the gateway
/// has finished with every closed one (left its rooms and presence).
async fn settle(gateway: &InProcess, model: &Model) {
    let deadline = Instant::now() + FRAME_TIMEOUT;
    while gateway.state.metrics().connections.get() != model.open_connections() {
        assert!(
            Instant::now() < deadline,
            "the gateway did not finish closed connections"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A file of its own in the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(common::unique("whisper-fuzz"));
        std::fs::write(&path, contents).expect("the temporary directory is writable");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `steps` against a new gateway and checks every frame on the way.
fn run(require_encryption: bool, steps: &[(usize, Action)]) {
    count_gateway_panics();
    let panics = GATEWAY_PANICS.load(Ordering::SeqCst);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(GATEWAY_THREAD)
        .enable_all()
        .build()
        .expect("a runtime");
    let rules = TempFile::new(&format!("{DENY_RULE}\n"));
    runtime.block_on(async {
        let gateway = InProcess::start(Settings {
            content_filter: Some(rules.0.to_str().expect("a UTF-8 path").into()),
            max_rooms: Some(MAX_ROOMS.to_string()),
            max_text_bytes: Some(MAX_TEXT_BYTES.into()),
            min_ttl: Some(format!("{MIN_TTL_MS}ms")),
            message_ttl: Some(format!("{TTL_MS}ms")),
            require_encryption: Some(require_encryption.to_string()),
            // Rate limits depend on timing: out of reach here, tested on
            // their own in the protocol tests.
            rate: Some("10000".into()),
            burst: Some("100000".into()),
            frame_rate: Some("100000".into()),
            frame_burst: Some("1000000".into()),
            ..Settings::default()
        })
        .await;
        let mut model = Model {
            require_encryption,
            clients: (0..CLIENTS).map(|_| None).collect(),
            ..Model::default()
        };
        let url = gateway.url();
        for (client, action) in steps {
            model.step(&url, *client, action).await;
            settle(&gateway, &model).await;
        }
        model.finish().await;
        drop(model);
        gateway.stop().await;
    });
    assert_eq!(GATEWAY_PANICS.load(Ordering::SeqCst), panics, "the gateway panicked");
}

proptest! {
    #![proptest_config(cases(SESSION_CASES))]

    #[test]
    fn sessions_keep_the_protocols_promises(
        require_encryption in prop::bool::weighted(0.2),
        opening in prop::collection::vec((pick(VALID_NAMES, NAMES.len()), 0..VALID_ROOMS), CLIENTS),
        steps in prop::collection::vec((0..CLIENTS, action()), 1..80),
    ) {
        // Every client starts with a hello (perhaps refused) and a join, so
        // that most steps are taken in rooms; connections opened later
        // start with nothing.
        let start = opening.into_iter().enumerate().flat_map(|(client, (name, room))| {
            [(client, Action::Hello(Some(name))), (client, Action::Join(room, Since::Absent))]
        });
        run(require_encryption, &start.chain(steps).collect::<Vec<_>>());
    }
}
