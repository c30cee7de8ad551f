//! Local fan-out: which of this gateway's sockets are in which room, and the
//! rooms' history. One lock covers both, so a joining socket gets its
//! `joined` (with history) strictly before any later message of the room:
//! nothing missed, nothing twice. The lock is never held across `.await`;
//! frames are serialized once per room, outside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::history::{History, Removed};
use crate::protocol::{ChatMessage, Member, MessageFrame, ServerFrame};

/// A frame on its way to a socket; a message frame carries the bus
/// timestamp of its message, to measure fan-out latency at the write.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub frame: Utf8Bytes,
    pub bus_ts: Option<i64>,
}

/// The sending half of one socket: a bounded queue of frames, and the
/// token that closes the socket as too slow when the queue overflows.
#[derive(Debug, Clone)]
pub struct Outbox {
    conn: Arc<str>,
    frames: mpsc::Sender<Outgoing>,
    too_slow: CancellationToken,
}

impl Outbox {
    pub fn new(conn: Arc<str>, frames: mpsc::Sender<Outgoing>, too_slow: CancellationToken) -> Self {
        Self { conn, frames, too_slow }
    }

    /// The connection id.
    pub fn conn(&self) -> &str {
        &self.conn
    }

    /// Queues a frame without waiting. A full queue marks the socket too
    /// slow, so it gets closed (4009) instead of slowing the room down.
    /// Returns whether the frame was queued.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        self.push_outgoing(Outgoing { frame, bus_ts: None })
    }

    fn push_outgoing(&self, outgoing: Outgoing) -> bool {
        match self.frames.try_send(outgoing) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.too_slow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
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
}

#[derive(Debug)]
struct State {
    /// Room → connection id → outbox.
    members: HashMap<String, HashMap<Arc<str>, Outbox>>,
    history: History,
}

/// This gateway's rooms.
#[derive(Debug)]
pub struct Rooms {
    state: Mutex<State>,
}

impl Rooms {
    pub fn new(history_max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                members: HashMap::new(),
                history: History::new(history_max_bytes),
            }),
        }
    }

    /// Adds the socket to the room (again, if it is in already) and queues
    /// its `joined` frame with the history after `since`.
    pub fn join(&self, room: &str, outbox: &Outbox, since: Option<&str>, members: &[Member], now_ms: i64) {
        let mut state = self.state.lock().expect("rooms lock");
        let history = state.history.since(room, since, now_ms);
        let frame = ServerFrame::Joined {
            room,
            history: history.iter().map(|m| MessageFrame(m)).collect(),
            members,
        };
        outbox.push(frame.to_json().into());
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

    /// Stores a message from the bus and queues it to the room's sockets.
    pub fn deliver(&self, message: ChatMessage, bus_ts: i64, now_ms: i64) -> Delivered {
        if message.expires_at <= now_ms {
            return Delivered {
                removed: Removed { expired: 1, evicted: 0 },
                ..Delivered::default()
            };
        }
        let outgoing = Outgoing {
            frame: ServerFrame::Message(&message).to_json().into(),
            bus_ts: Some(bus_ts),
        };
        let room = message.room.clone();
        let mut state = self.state.lock().expect("rooms lock");
        let removed = state.history.insert(Arc::new(message), now_ms);
        let mut delivered = Delivered {
            removed,
            ..Delivered::default()
        };
        for outbox in state.members.get(&room).into_iter().flat_map(|s| s.values()) {
            if outbox.push_outgoing(outgoing.clone()) {
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
        let state = self.state.lock().expect("rooms lock");
        for outbox in state.members.get(room).into_iter().flat_map(|s| s.values()) {
            if Some(outbox.conn()) != origin {
                outbox.push(frame.clone());
            }
        }
    }

    /// Drops expired messages.
    pub fn sweep(&self, now_ms: i64) -> Removed {
        self.state.lock().expect("rooms lock").history.sweep(now_ms)
    }

    /// Rooms with a socket here, messages held, bytes held.
    pub fn stats(&self) -> (usize, usize, usize) {
        let state = self.state.lock().expect("rooms lock");
        (state.members.len(), state.history.len(), state.history.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(conn: &str, capacity: usize) -> (Outbox, mpsc::Receiver<Outgoing>, CancellationToken) {
        let (tx, rx) = mpsc::channel(capacity);
        let token = CancellationToken::new();
        (Outbox::new(conn.into(), tx, token.clone()), rx, token)
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
        }
    }

    fn frame_type(out: &Outgoing) -> (String, String) {
        let v: serde_json::Value = serde_json::from_str(out.frame.as_str()).unwrap();
        (
            v["type"].as_str().unwrap().into(),
            v["id"].as_str().unwrap_or("").into(),
        )
    }

    #[test]
    fn joined_carries_history_and_precedes_new_messages() {
        let rooms = Rooms::new(usize::MAX);
        rooms.deliver(message("r", "1"), 0, 0);
        let (a, mut rx, _) = outbox("a", 8);
        rooms.join("r", &a, None, &[], 0);
        rooms.deliver(message("r", "2"), 0, 0);
        rooms.deliver(message("other", "3"), 0, 0);
        let first = rx.try_recv().unwrap();
        let v: serde_json::Value = serde_json::from_str(first.frame.as_str()).unwrap();
        assert_eq!(v["type"], "joined");
        assert_eq!(v["history"][0]["id"], "1");
        assert_eq!(frame_type(&rx.try_recv().unwrap()), ("message".into(), "2".into()));
        assert!(rx.try_recv().is_err(), "no frame of another room");
    }

    #[test]
    fn a_full_queue_marks_only_that_socket_too_slow() {
        let rooms = Rooms::new(usize::MAX);
        let (slow, _slow_rx, slow_token) = outbox("slow", 2);
        let (fast, mut fast_rx, fast_token) = outbox("fast", 64);
        rooms.join("r", &slow, None, &[], 0);
        rooms.join("r", &fast, None, &[], 0);
        let mut last = Delivered::default();
        for i in 0..5 {
            last = rooms.deliver(message("r", &i.to_string()), 0, 0);
        }
        assert!(slow_token.is_cancelled());
        assert!(!fast_token.is_cancelled());
        assert_eq!(last.too_slow, 1);
        assert_eq!(std::iter::from_fn(|| fast_rx.try_recv().ok()).count(), 6);
    }

    #[test]
    fn presence_skips_its_origin_and_expired_messages_are_dropped() {
        let rooms = Rooms::new(usize::MAX);
        let (a, mut a_rx, _) = outbox("a", 8);
        let (b, mut b_rx, _) = outbox("b", 8);
        rooms.join("r", &a, None, &[], 0);
        rooms.join("r", &b, None, &[], 0);
        a_rx.try_recv().unwrap();
        b_rx.try_recv().unwrap();
        rooms.presence("r", &[], &[], Some("a"));
        assert!(a_rx.try_recv().is_err());
        assert_eq!(frame_type(&b_rx.try_recv().unwrap()).0, "presence");
        assert_eq!(rooms.deliver(message("r", "late"), 0, 5_000).removed.expired, 1);
        assert!(b_rx.try_recv().is_err());
        rooms.leave("r", "a");
        rooms.leave("r", "b");
        assert_eq!(rooms.stats().0, 0);
    }
}
