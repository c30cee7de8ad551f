//! The expiring message history of every room this gateway has seen: the
//! newest [`PER_ROOM`] unexpired messages of each room, within a global
//! memory bound. Each message is kept as the `message` frame already
//! serialized for its live delivery, so serving history never serializes
//! again and shares the bytes with the sockets. A plain data structure; the
//! caller holds the lock and the clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use crate::protocol::ChatMessage;

/// Messages kept per room, newest first to go.
pub const PER_ROOM: usize = 200;

/// Bytes of bookkeeping per stored message, beyond its strings.
const OVERHEAD: usize = 160;

#[derive(Debug)]
struct Entry {
    seq: u64,
    bytes: usize,
    id: Box<str>,
    expires_at: i64,
    /// The message's `message` frame.
    frame: Utf8Bytes,
}

/// What one insert or sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Dropped because the room or the memory bound was full.
    pub evicted: usize,
    /// Dropped because they expired.
    pub expired: usize,
}

/// Per-room history with TTL and a memory bound.
#[derive(Debug)]
pub struct History {
    rooms: HashMap<Arc<str>, VecDeque<Entry>>,
    /// Every stored message by arrival, oldest first, to evict across rooms.
    /// Entries already dropped from their room are skipped when reached.
    arrivals: VecDeque<(u64, Arc<str>, i64)>,
    next_seq: u64,
    bytes: usize,
    len: usize,
    max_bytes: usize,
}

impl History {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            arrivals: VecDeque::new(),
            next_seq: 0,
            bytes: 0,
            len: 0,
            max_bytes,
        }
    }

    /// Stores a message, given with its `message` frame, unless it has
    /// already expired at `now_ms`.
    pub fn insert(&mut self, message: &ChatMessage, frame: Utf8Bytes, now_ms: i64) -> Removed {
        let mut removed = Removed::default();
        if message.expires_at <= now_ms {
            removed.expired = 1;
            return removed;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = OVERHEAD + frame.len() + message.id.len();
        let room: Arc<str> = match self.rooms.get_key_value(message.room.as_str()) {
            Some((room, _)) => room.clone(),
            None => message.room.as_str().into(),
        };
        self.arrivals.push_back((seq, room.clone(), message.expires_at));
        let entries = self.rooms.entry(room).or_default();
        entries.push_back(Entry {
            seq,
            bytes,
            id: message.id.as_str().into(),
            expires_at: message.expires_at,
            frame,
        });
        self.bytes += bytes;
        self.len += 1;
        if entries.len() > PER_ROOM {
            let old = entries.pop_front().expect("room is not empty");
            self.bytes -= old.bytes;
            self.len -= 1;
            removed.evicted += 1;
        }
        while self.bytes > self.max_bytes {
            let Some((seq, room, _)) = self.arrivals.pop_front() else {
                break;
            };
            let Some(entries) = self.rooms.get_mut(&room) else {
                continue;
            };
            if entries.front().is_some_and(|e| e.seq == seq) {
                let old = entries.pop_front().expect("front exists");
                self.bytes -= old.bytes;
                self.len -= 1;
                removed.evicted += 1;
                if entries.is_empty() {
                    self.rooms.remove(&room);
                }
            }
        }
        removed
    }

    /// The `message` frames of the room's unexpired messages, oldest first;
    /// with `since`, only those after that id. An unknown `since` (expired
    /// or never seen) gives the whole history: the client drops what it
    /// already has by id.
    pub fn since(&self, room: &str, since: Option<&str>, now_ms: i64) -> Vec<Utf8Bytes> {
        let Some(entries) = self.rooms.get(room) else {
            return Vec::new();
        };
        let start = since
            .and_then(|id| entries.iter().position(|e| &*e.id == id))
            .map_or(0, |i| i + 1);
        entries
            .iter()
            .skip(start)
            .filter(|e| e.expires_at > now_ms)
            .map(|e| e.frame.clone())
            .collect()
    }

    /// Drops every message expired at `now_ms`.
    pub fn sweep(&mut self, now_ms: i64) -> Removed {
        let mut expired = 0;
        let mut freed = 0;
        self.rooms.retain(|_, entries| {
            entries.retain(|e| {
                let keep = e.expires_at > now_ms;
                if !keep {
                    expired += 1;
                    freed += e.bytes;
                }
                keep
            });
            !entries.is_empty()
        });
        self.arrivals.retain(|(_, _, expires_at)| *expires_at > now_ms);
        self.bytes -= freed;
        self.len -= expired;
        Removed { evicted: 0, expired }
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Ids of the idempotent messages (sent with a `cid`) read within the
/// dedupe window, so that a retry read from the bus again is dropped. Every
/// gateway reads a room's records in one order, so all drop the same copy.
#[derive(Debug, Default)]
pub struct Recent {
    ids: HashSet<Arc<str>>,
    /// When each id may be forgotten, in the order read (nearly sorted: the
    /// times come from the senders' gateways' clocks).
    order: VecDeque<(i64, Arc<str>)>,
    bytes: usize,
}

impl Recent {
    /// Records `id` until `forget_at`; false when it is there already.
    pub fn first(&mut self, id: &str, forget_at: i64) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        let id: Arc<str> = id.into();
        self.bytes += RECENT_OVERHEAD + id.len();
        self.ids.insert(id.clone());
        self.order.push_back((forget_at, id));
        true
    }

    /// Forgets the ids whose time has come; costs what it forgets.
    pub fn forget(&mut self, now_ms: i64) {
        while let Some((forget_at, _)) = self.order.front() {
            if *forget_at > now_ms {
                break;
            }
            let (_, id) = self.order.pop_front().expect("front exists");
            self.bytes -= RECENT_OVERHEAD + id.len();
            self.ids.remove(&id);
        }
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Bytes of bookkeeping per remembered id, beyond the id.
const RECENT_OVERHEAD: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Member, ServerFrame};

    fn msg(room: &str, id: u32, expires_at: i64) -> ChatMessage {
        ChatMessage {
            room: room.into(),
            id: id.to_string(),
            user: Member {
                id: "u".into(),
                name: "n".into(),
            },
            text: "x".repeat(40),
            ts: expires_at - 1000,
            expires_at,
            enc: None,
        }
    }

    /// Stores a message with its frame, as the rooms do.
    fn put(h: &mut History, message: ChatMessage, now_ms: i64) -> Removed {
        let frame = ServerFrame::Message(&message).to_json().into();
        h.insert(&message, frame, now_ms)
    }

    fn ids(frames: &[Utf8Bytes]) -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
                v["id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_per_room_in_order() {
        let mut h = History::new(usize::MAX);
        for i in 0..250 {
            put(&mut h, msg("a", i, 10_000), 0);
        }
        put(&mut h, msg("b", 999, 10_000), 0);
        let a = h.since("a", None, 0);
        assert_eq!(a.len(), PER_ROOM);
        assert_eq!(ids(&a).first().unwrap(), "50");
        assert_eq!(ids(&a).last().unwrap(), "249");
        assert_eq!(h.len(), PER_ROOM + 1);
    }

    #[test]
    fn since_gives_what_came_after() {
        let mut h = History::new(usize::MAX);
        for i in 0..5 {
            put(&mut h, msg("a", i, 10_000), 0);
        }
        assert_eq!(ids(&h.since("a", Some("2"), 0)), ["3", "4"]);
        assert_eq!(ids(&h.since("a", Some("4"), 0)), Vec::<String>::new());
        assert_eq!(ids(&h.since("a", Some("gone"), 0)).len(), 5);
        assert!(h.since("nobody", None, 0).is_empty());
    }

    #[test]
    fn expired_messages_are_never_served_and_swept() {
        let mut h = History::new(usize::MAX);
        put(&mut h, msg("a", 1, 1_000), 0);
        put(&mut h, msg("a", 2, 5_000), 0);
        assert_eq!(put(&mut h, msg("a", 3, 500), 600).expired, 1);
        assert_eq!(ids(&h.since("a", None, 2_000)), ["2"]);
        assert_eq!(h.sweep(2_000).expired, 1);
        assert_eq!(h.len(), 1);
        h.sweep(6_000);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
        assert!(h.rooms.is_empty() && h.arrivals.is_empty());
    }

    #[test]
    fn memory_bound_evicts_the_oldest_across_rooms() {
        let mut h = History::new(1);
        put(&mut h, msg("a", 1, 10_000), 0);
        assert_eq!(h.bytes(), 0, "a single message over the bound is evicted at once");
        let mut h = History::new(usize::MAX);
        put(&mut h, msg("a", 1, 10_000), 0);
        let one = h.bytes();
        let mut h = History::new(3 * one);
        for (room, id) in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)] {
            put(&mut h, msg(room, id, 10_000), 0);
        }
        assert!(h.bytes() <= 3 * one);
        assert_eq!(h.len(), 3);
        assert_eq!(ids(&h.since("a", None, 0)), ["3"]);
        assert_eq!(ids(&h.since("b", None, 0)), ["5"]);
    }

    #[test]
    fn recent_ids_are_remembered_until_their_time() {
        let mut r = Recent::default();
        assert!(r.first("c-1", 1_000));
        assert!(!r.first("c-1", 2_000), "a retry is a duplicate");
        assert!(r.first("c-2", 1_500));
        r.forget(1_000);
        assert!(r.first("c-1", 3_000), "forgotten at its time");
        assert!(!r.first("c-2", 3_000));
        r.forget(10_000);
        assert_eq!(r.bytes(), 0);
    }
}
