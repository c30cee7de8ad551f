//! The expiring message history of every room this gateway has seen: the
//! newest [`PER_ROOM`] unexpired messages of each room, within a global
//! memory bound. Each message is kept as the `message` frame already
//! serialized for its live delivery, so serving history never serializes
//! again and shares the bytes with the sockets. A plain data structure; the
//! caller holds the lock and the clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use crate::protocol::ChatMessage;

/// Messages kept per room, newest first to go.
pub const PER_ROOM: usize = 200;

/// Bytes of bookkeeping per stored message, beyond its strings: the entry
/// and its place in both indexes.
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

/// Per-room history with TTL and a memory bound. Every stored message is in
/// its room and in two indexes, and leaves all three together, whatever
/// removes it: so the indexes never outgrow what is stored, and each
/// removal costs O(log n) plus a room's length, not a walk of everything.
#[derive(Debug)]
pub struct History {
    /// Each room's messages in arrival order (rising `seq`).
    rooms: HashMap<Arc<str>, VecDeque<Entry>>,
    /// Every stored message by arrival: the oldest go first under the
    /// memory bound.
    arrivals: BTreeMap<u64, Arc<str>>,
    /// Every stored message by expiry (lifetimes differ per message): the
    /// sweep takes only what has expired.
    expiries: BTreeSet<(i64, u64)>,
    next_seq: u64,
    bytes: usize,
    max_bytes: usize,
}

impl History {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            arrivals: BTreeMap::new(),
            expiries: BTreeSet::new(),
            next_seq: 0,
            bytes: 0,
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
        self.arrivals.insert(seq, room.clone());
        self.expiries.insert((message.expires_at, seq));
        self.bytes += bytes;
        let entries = self.rooms.entry(room.clone()).or_default();
        entries.push_back(Entry {
            seq,
            bytes,
            id: message.id.as_str().into(),
            expires_at: message.expires_at,
            frame,
        });
        if entries.len() > PER_ROOM {
            let oldest = entries.front().expect("room is not empty").seq;
            self.remove(&room, oldest);
            removed.evicted += 1;
        }
        while self.bytes > self.max_bytes {
            let Some((&oldest, room)) = self.arrivals.first_key_value() else {
                break;
            };
            let room = room.clone();
            self.remove(&room, oldest);
            removed.evicted += 1;
        }
        removed
    }

    /// Removes message `seq` of `room` from the room and both indexes.
    fn remove(&mut self, room: &Arc<str>, seq: u64) {
        let Some(entries) = self.rooms.get_mut(room) else {
            return;
        };
        let Ok(at) = entries.binary_search_by_key(&seq, |e| e.seq) else {
            return;
        };
        let entry = entries.remove(at).expect("found it");
        if entries.is_empty() {
            self.rooms.remove(room);
        }
        self.arrivals.remove(&seq);
        self.expiries.remove(&(entry.expires_at, seq));
        self.bytes -= entry.bytes;
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

    /// Drops every message expired at `now_ms`, touching only those.
    pub fn sweep(&mut self, now_ms: i64) -> Removed {
        let mut expired = 0;
        while let Some(&(expires_at, seq)) = self.expiries.first() {
            if expires_at > now_ms {
                break;
            }
            let room = self.arrivals.get(&seq).expect("every expiry has its arrival").clone();
            self.remove(&room, seq);
            expired += 1;
        }
        Removed { evicted: 0, expired }
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }

    /// Approximate bytes held, indexes included.
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

    impl History {
        /// Every stored message is in its room and in both indexes, and
        /// nothing else is; the byte count is theirs.
        fn check(&self) {
            let stored: usize = self.rooms.values().map(VecDeque::len).sum();
            assert_eq!((self.arrivals.len(), self.expiries.len()), (stored, stored));
            let bytes: usize = self.rooms.values().flatten().map(|e| e.bytes).sum();
            assert_eq!(self.bytes, bytes);
            for (room, entries) in &self.rooms {
                for e in entries {
                    assert_eq!(self.arrivals.get(&e.seq), Some(room));
                    assert!(self.expiries.contains(&(e.expires_at, e.seq)));
                }
            }
        }
    }

    #[test]
    fn room_eviction_leaves_no_index_entry_behind() {
        let mut h = History::new(usize::MAX);
        for i in 0..10 * PER_ROOM as u32 {
            put(&mut h, msg("busy", i, 1_000_000), 0);
        }
        h.check();
        assert_eq!(h.len(), PER_ROOM);
        assert_eq!(
            h.arrivals.len(),
            PER_ROOM,
            "the evicted are gone from the arrival index"
        );
    }

    #[test]
    fn the_sweep_takes_only_what_expired_whatever_the_lifetimes() {
        let mut h = History::new(usize::MAX);
        for i in 0..100 {
            // Long and short lifetimes interleaved, as `ttl_ms` allows.
            let expires_at = if i % 2 == 0 { 100_000 } else { 1_000 + i64::from(i) };
            put(&mut h, msg(&format!("r{}", i % 7), i, expires_at), 0);
        }
        assert_eq!(h.sweep(1_049).expired, 25);
        h.check();
        assert_eq!(h.sweep(2_000).expired, 25);
        h.check();
        assert_eq!(h.len(), 50);
        assert_eq!(h.sweep(100_000).expired, 50);
        assert!(h.is_empty() && h.bytes() == 0);
    }

    #[test]
    fn a_flood_across_many_rooms_stays_within_the_bound() {
        let mut h = History::new(1 << 20);
        for i in 0..50_000 {
            put(&mut h, msg(&format!("room-{}", i % 10_000), i, 1_000_000), 0);
        }
        h.check();
        assert!(h.bytes() <= 1 << 20);
        assert_eq!(h.len(), h.arrivals.len());
        assert_eq!(h.sweep(0).expired, 0);
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
        h.check();
        assert!(h.rooms.is_empty() && h.arrivals.is_empty() && h.expiries.is_empty());
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
