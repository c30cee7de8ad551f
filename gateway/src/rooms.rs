//! Local fan-out: which of this gateway's sockets are in which room, and the
//! rooms' history. One lock covers both, so a joining socket gets its
//! `joined` (with history) strictly before any later message of the room:
//! nothing missed, nothing twice. The lock is never held across `.await`;
//! frames are serialized once per room, outside it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::history::{History, Recent, Removed};
use crate::protocol::{ChatMessage, Member, ServerFrame, joined_frame};

/// A frame on its way to a socket.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A frame ready to write.
    Frame(Utf8Bytes),
    /// A room's message, with the bus timestamp of the message, to measure
    /// fan-out latency at the write.
    Message { frame: Utf8Bytes, bus_ts: i64 },
    /// A `joined` frame, serialized by the socket's writer rather than under
    /// the rooms lock: its history is the messages' frames, shared.
    Joined(Box<Joined>),
    /// A WebSocket ping (liveness).
    Ping,
}

/// The parts of a `joined` frame.
#[derive(Debug, Clone)]
pub struct Joined {
    pub room: String,
    pub history: Vec<Utf8Bytes>,
    pub members: Vec<Member>,
}

impl Outgoing {
    /// Bytes the frame will take on the wire (about, for a `joined`).
    fn len(&self) -> usize {
        match self {
            Self::Frame(frame) | Self::Message { frame, .. } => frame.len(),
            Self::Joined(joined) => 64 + joined.history.iter().map(|f| f.len() + 1).sum::<usize>(),
            Self::Ping => 0,
        }
    }

    /// The WebSocket message to write, serializing a `joined` frame now.
    pub fn into_message(self) -> Message {
        match self {
            Self::Frame(frame) | Self::Message { frame, .. } => Message::Text(frame),
            Self::Joined(joined) => Message::Text(joined_frame(&joined.room, &joined.history, &joined.members).into()),
            Self::Ping => Message::Ping(Bytes::new()),
        }
    }
}

/// The sending half of one socket: a bounded queue of frames that the
/// socket's writer drains in batches, and the token that closes the socket
/// as too slow when the queue overflows. Cheap to clone. A plain deque
/// behind a mutex rather than a channel: nothing is allocated while the
/// socket is idle, and the writer takes everything queued in one go.
#[derive(Debug, Clone)]
pub struct Outbox {
    conn: Arc<str>,
    queue: Arc<Queue>,
}

#[derive(Debug)]
struct Queue {
    frames: Mutex<Frames>,
    /// Frames the queue holds at most.
    capacity: usize,
    /// Bytes the queue holds at most (but one frame larger than this fits
    /// an empty queue, or a big `joined` could never be sent).
    max_bytes: usize,
    ready: Notify,
    too_slow: CancellationToken,
}

#[derive(Debug, Default)]
struct Frames {
    queued: VecDeque<Outgoing>,
    bytes: usize,
}

/// How much one socket may have queued.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub frames: usize,
    pub bytes: usize,
}

impl Outbox {
    pub fn new(conn: Arc<str>, bounds: Bounds, too_slow: CancellationToken) -> Self {
        Self {
            conn,
            queue: Arc::new(Queue {
                frames: Mutex::new(Frames::default()),
                capacity: bounds.frames,
                max_bytes: bounds.bytes,
                ready: Notify::new(),
                too_slow,
            }),
        }
    }

    /// The connection id.
    pub fn conn(&self) -> &str {
        &self.conn
    }

    /// The connection id, shared.
    pub fn conn_id(&self) -> &Arc<str> {
        &self.conn
    }

    /// Queues a frame without waiting. A full queue marks the socket too
    /// slow, so it gets closed (4009) instead of slowing the room down.
    /// Returns whether the frame was queued.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        self.push_outgoing(Outgoing::Frame(frame))
    }

    /// Queues a WebSocket ping.
    pub fn push_ping(&self) -> bool {
        self.push_outgoing(Outgoing::Ping)
    }

    fn push_outgoing(&self, outgoing: Outgoing) -> bool {
        let queue = &self.queue;
        let len = outgoing.len();
        {
            let mut frames = queue.frames.lock().expect("outbox lock");
            let full = frames.queued.len() >= queue.capacity
                || (!frames.queued.is_empty() && frames.bytes + len > queue.max_bytes);
            if full {
                drop(frames);
                queue.too_slow.cancel();
                return false;
            }
            frames.bytes += len;
            frames.queued.push_back(outgoing);
        }
        queue.ready.notify_one();
        true
    }

    /// Waits until frames are queued, then moves them all into `batch`.
    pub async fn take(&self, batch: &mut VecDeque<Outgoing>) {
        loop {
            self.take_now(batch);
            if !batch.is_empty() {
                return;
            }
            self.queue.ready.notified().await;
        }
    }

    /// Moves whatever is queued into `batch`, without waiting.
    pub fn take_now(&self, batch: &mut VecDeque<Outgoing>) {
        let mut frames = self.queue.frames.lock().expect("outbox lock");
        batch.extend(frames.queued.drain(..));
        frames.bytes = 0;
    }
}

/// What a delivery did, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Sockets the frame was queued to.
    pub sockets: usize,
    /// Sockets found too slow.
    pub too_slow: usize,
    pub removed: Removed,
    /// The message was a retry of one already read, and dropped.
    pub duplicate: bool,
}

#[derive(Debug)]
struct State {
    /// Room → connection id → outbox.
    members: HashMap<String, HashMap<Arc<str>, Outbox>>,
    /// Room → connection id → the presence frames for a socket whose join
    /// is waiting on the presence store: what changes while its member
    /// list is read still reaches it, after its `joined`.
    joining: HashMap<String, HashMap<Arc<str>, Vec<Utf8Bytes>>>,
    history: History,
    recent: Recent,
}

/// This gateway's rooms.
#[derive(Debug)]
pub struct Rooms {
    state: Mutex<State>,
    /// How long after a message's `ts` a retry of it is still a duplicate
    /// (the gateway's TTL, the longest any message lives).
    dedupe_ms: i64,
}

impl Rooms {
    pub fn new(history_max_bytes: usize, dedupe_ms: i64) -> Self {
        Self {
            state: Mutex::new(State {
                members: HashMap::new(),
                joining: HashMap::new(),
                history: History::new(history_max_bytes),
                recent: Recent::default(),
            }),
            dedupe_ms,
        }
    }

    /// Starts a join, before the room's members are read from the presence
    /// store: presence changes from now on are kept for the socket and
    /// follow its `joined`, so none falls between the list and the events.
    pub fn start_join(&self, room: &str, conn: &Arc<str>) {
        let mut state = self.state.lock().expect("rooms lock");
        state
            .joining
            .entry(room.to_owned())
            .or_default()
            .insert(conn.clone(), Vec::new());
    }

    /// Ends a join that failed (the socket stays in the room if it was).
    pub fn cancel_join(&self, room: &str, conn: &str) {
        let mut state = self.state.lock().expect("rooms lock");
        take_joining(&mut state.joining, room, conn);
    }

    /// Adds the socket to the room (again, if it is in already) and queues
    /// its `joined` frame with the history after `since`, then the presence
    /// changes seen since [`Self::start_join`]. Under the lock the history
    /// is only gathered (shared frames); the writer serializes it.
    pub fn join(&self, room: &str, outbox: &Outbox, since: Option<&str>, members: Vec<Member>, now_ms: i64) {
        let mut state = self.state.lock().expect("rooms lock");
        let missed = take_joining(&mut state.joining, room, outbox.conn());
        let history = state.history.since(room, since, now_ms);
        outbox.push_outgoing(Outgoing::Joined(Box::new(Joined {
            room: room.to_owned(),
            history,
            members,
        })));
        for frame in missed {
            outbox.push(frame);
        }
        state
            .members
            .entry(room.to_owned())
            .or_default()
            .insert(outbox.conn.clone(), outbox.clone());
    }

    /// Removes the socket from the room.
    pub fn leave(&self, room: &str, conn: &str) {
        let mut state = self.state.lock().expect("rooms lock");
        if let Some(sockets) = state.members.get_mut(room) {
            sockets.remove(conn);
            if sockets.is_empty() {
                state.members.remove(room);
            }
        }
    }

    /// Stores a message from the bus and queues it to the room's sockets,
    /// unless it is a retry of one already read.
    pub fn deliver(&self, message: ChatMessage, bus_ts: i64, now_ms: i64) -> Delivered {
        if message.expires_at <= now_ms {
            return Delivered {
                removed: Removed { expired: 1, evicted: 0 },
                ..Delivered::default()
            };
        }
        let frame: Utf8Bytes = ServerFrame::Message(&message).to_json().into();
        let mut state = self.state.lock().expect("rooms lock");
        if message.is_idempotent() && !state.recent.first(&message.id, message.ts + self.dedupe_ms) {
            return Delivered {
                duplicate: true,
                ..Delivered::default()
            };
        }
        let removed = state.history.insert(&message, frame.clone(), now_ms);
        let mut delivered = Delivered {
            removed,
            ..Delivered::default()
        };
        for outbox in state.members.get(&message.room).into_iter().flat_map(|s| s.values()) {
            let outgoing = Outgoing::Message {
                frame: frame.clone(),
                bus_ts,
            };
            if outbox.push_outgoing(outgoing) {
                delivered.sockets += 1;
            } else {
                delivered.too_slow += 1;
            }
        }
        delivered
    }

    /// Queues a presence change to the room's sockets but the one that
    /// caused it.
    pub fn presence(&self, room: &str, joined: &[Member], left: &[Member], origin: Option<&str>) {
        let frame: Utf8Bytes = ServerFrame::Presence { room, joined, left }.to_json().into();
        let mut state = self.state.lock().expect("rooms lock");
        for outbox in state.members.get(room).into_iter().flat_map(|s| s.values()) {
            if Some(outbox.conn()) != origin {
                outbox.push(frame.clone());
            }
        }
        for (conn, missed) in state.joining.get_mut(room).into_iter().flatten() {
            if Some(&**conn) != origin {
                missed.push(frame.clone());
            }
        }
    }

    /// Drops expired messages, and forgets the ids of messages too old to
    /// be retried.
    pub fn sweep(&self, now_ms: i64) -> Removed {
        let mut state = self.state.lock().expect("rooms lock");
        state.recent.forget(now_ms);
        state.history.sweep(now_ms)
    }

    /// Rooms with a socket here, messages held, bytes held (history and the
    /// ids remembered to drop retries).
    pub fn stats(&self) -> (usize, usize, usize) {
        let state = self.state.lock().expect("rooms lock");
        let bytes = state.history.bytes() + state.recent.bytes();
        (state.members.len(), state.history.len(), bytes)
    }
}

/// Ends the join of `conn` to `room`, returning the presence frames kept
/// for it.
fn take_joining(
    joining: &mut HashMap<String, HashMap<Arc<str>, Vec<Utf8Bytes>>>,
    room: &str,
    conn: &str,
) -> Vec<Utf8Bytes> {
    let Some(conns) = joining.get_mut(room) else {
        return Vec::new();
    };
    let missed = conns.remove(conn).unwrap_or_default();
    if conns.is_empty() {
        joining.remove(room);
    }
    missed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(conn: &str, capacity: usize) -> (Outbox, CancellationToken) {
        let token = CancellationToken::new();
        let bounds = Bounds {
            frames: capacity,
            bytes: usize::MAX,
        };
        (Outbox::new(conn.into(), bounds, token.clone()), token)
    }

    fn message(room: &str, id: &str) -> ChatMessage {
        ChatMessage {
            room: room.into(),
            id: id.into(),
            user: Member {
                id: "u".into(),
                name: "n".into(),
            },
            text: "hi".into(),
            ts: 0,
            expires_at: 1_000,
            enc: None,
        }
    }

    /// Takes every queued frame, as JSON.
    fn drain(outbox: &Outbox) -> Vec<serde_json::Value> {
        let mut batch = VecDeque::new();
        outbox.take_now(&mut batch);
        batch
            .into_iter()
            .map(|out| match out.into_message() {
                Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
                other => panic!("not a text frame: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn joined_carries_history_and_precedes_new_messages() {
        let rooms = Rooms::new(usize::MAX, 1_000);
        rooms.deliver(message("r", "1"), 0, 0);
        let (a, _) = outbox("a", 8);
        rooms.join("r", &a, None, vec![], 0);
        rooms.deliver(message("r", "2"), 0, 0);
        rooms.deliver(message("other", "3"), 0, 0);
        let frames = drain(&a);
        assert_eq!(frames.len(), 2, "no frame of another room: {frames:?}");
        assert_eq!(frames[0]["type"], "joined");
        assert_eq!(frames[0]["history"][0]["id"], "1");
        assert_eq!(frames[0]["history"][0]["type"], "message");
        assert_eq!((&frames[1]["type"], &frames[1]["id"]), (&"message".into(), &"2".into()));
    }

    #[test]
    fn a_full_queue_marks_only_that_socket_too_slow() {
        let rooms = Rooms::new(usize::MAX, 1_000);
        let (slow, slow_token) = outbox("slow", 2);
        let (fast, fast_token) = outbox("fast", 64);
        rooms.join("r", &slow, None, vec![], 0);
        rooms.join("r", &fast, None, vec![], 0);
        let mut last = Delivered::default();
        for i in 0..5 {
            last = rooms.deliver(message("r", &i.to_string()), 0, 0);
        }
        assert!(slow_token.is_cancelled());
        assert!(!fast_token.is_cancelled());
        assert_eq!(last.too_slow, 1);
        assert_eq!(drain(&fast).len(), 6);
    }

    #[test]
    fn presence_skips_its_origin_and_expired_messages_are_dropped() {
        let rooms = Rooms::new(usize::MAX, 1_000);
        let (a, _) = outbox("a", 8);
        let (b, _) = outbox("b", 8);
        rooms.join("r", &a, None, vec![], 0);
        rooms.join("r", &b, None, vec![], 0);
        drain(&a);
        drain(&b);
        rooms.presence("r", &[], &[], Some("a"));
        assert!(drain(&a).is_empty());
        assert_eq!(drain(&b)[0]["type"], "presence");
        assert_eq!(rooms.deliver(message("r", "late"), 0, 5_000).removed.expired, 1);
        assert!(drain(&b).is_empty());
        rooms.leave("r", "a");
        rooms.leave("r", "b");
        assert_eq!(rooms.stats().0, 0);
    }

    #[test]
    fn presence_changes_while_a_join_reads_the_members_follow_its_joined() {
        let rooms = Rooms::new(usize::MAX, 1_000);
        let (a, _) = outbox("a", 8);
        rooms.start_join("r", a.conn_id());
        // Bob joins between the member list being read and the socket
        // being in the room.
        let bob = Member {
            id: "b".into(),
            name: "bob".into(),
        };
        rooms.presence("r", std::slice::from_ref(&bob), &[], Some("bob's-conn"));
        rooms.join("r", &a, None, vec![], 0);
        let frames = drain(&a);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[0]["type"], "joined");
        assert_eq!(frames[1]["joined"][0]["name"], "bob");

        let (c, _) = outbox("c", 8);
        rooms.start_join("r", c.conn_id());
        rooms.cancel_join("r", "c");
        rooms.presence("r", &[bob], &[], None);
        assert!(drain(&c).is_empty(), "a cancelled join keeps nothing");
    }

    #[tokio::test]
    async fn the_writer_takes_everything_queued_at_once() {
        let (a, _) = outbox("a", 8);
        let waiting = tokio::spawn({
            let a = a.clone();
            async move {
                let mut batch = VecDeque::new();
                a.take(&mut batch).await;
                batch.len()
            }
        });
        tokio::task::yield_now().await;
        a.push("1".into());
        let first = waiting.await.unwrap();
        a.push("2".into());
        a.push("3".into());
        let mut batch = VecDeque::new();
        a.take(&mut batch).await;
        assert_eq!((first, batch.len()), (1, 2));
    }

    #[test]
    fn a_retried_message_is_delivered_once() {
        let rooms = Rooms::new(usize::MAX, 1_000);
        let (a, _) = outbox("a", 8);
        rooms.join("r", &a, None, vec![], 0);
        let id = crate::protocol::idempotent_id("r", "0123456789abcdef");
        let first = rooms.deliver(message("r", &id), 0, 0);
        let again = rooms.deliver(message("r", &id), 0, 0);
        assert!(!first.duplicate && again.duplicate);
        let plain = rooms.deliver(message("r", "0199aa"), 0, 0);
        assert!(!rooms.deliver(message("r", "0199aa"), 0, 0).duplicate && !plain.duplicate);
        assert_eq!(
            drain(&a).len(),
            4,
            "joined, the retried message once, the plain one twice"
        );
        rooms.sweep(1_001);
        assert!(
            !rooms.deliver(message("r", &id), 0, 0).duplicate,
            "forgotten after the window"
        );
    }

    #[test]
    fn the_queue_is_bounded_by_bytes_but_takes_one_big_frame() {
        let token = CancellationToken::new();
        let bounds = Bounds { frames: 100, bytes: 10 };
        let a = Outbox::new("a".into(), bounds, token.clone());
        assert!(
            a.push("0123456789abcdef".into()),
            "one frame over the bound fits an empty queue"
        );
        assert!(!token.is_cancelled());
        assert!(!a.push("x".into()), "nothing more fits beside it");
        assert!(token.is_cancelled());

        let token = CancellationToken::new();
        let b = Outbox::new("b".into(), bounds, token.clone());
        assert!(b.push("12345".into()) && b.push("12345".into()));
        let mut batch = VecDeque::new();
        b.take_now(&mut batch);
        assert_eq!(batch.len(), 2);
        assert!(
            b.push("12345".into()) && b.push("12345".into()),
            "taking frees the bytes"
        );
        assert!(!token.is_cancelled());
        assert!(!b.push("1".into()));
        assert!(token.is_cancelled());
    }
}
