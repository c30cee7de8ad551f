//! The expiring message history of every room this gateway has seen: the
//! newest [`PER_ROOM`] unexpired messages of each room, within a global
//! memory bound. A plain data structure; the caller holds the lock and the
//! clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::protocol::ChatMessage;

/// Messages kept per room, newest first to go.
pub const PER_ROOM: usize = 200;

/// Bytes of bookkeeping per stored message, beyond its strings.
const OVERHEAD: usize = 160;

#[derive(Debug)]
struct Entry {
    seq: u64,
    bytes: usize,
    message: Arc<ChatMessage>,
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

    /// Stores a message unless it has already expired at `now_ms`.
    pub fn insert(&mut self, message: Arc<ChatMessage>, now_ms: i64) -> Removed {
        let mut removed = Removed::default();
        if message.expires_at <= now_ms {
            removed.expired = 1;
            return removed;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = OVERHEAD + message.text.len() + message.id.len() + message.user.id.len() + message.user.name.len();
        let room: Arc<str> = match self.rooms.get_key_value(message.room.as_str()) {
            Some((room, _)) => room.clone(),
            None => message.room.as_str().into(),
        };
        self.arrivals.push_back((seq, room.clone(), message.expires_at));
        let entries = self.rooms.entry(room).or_default();
        entries.push_back(Entry { seq, bytes, message });
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

    /// The room's unexpired messages, oldest first; with `since`, only those
    /// after that id. An unknown `since` (expired or never seen) gives the
    /// whole history: the client drops what it already has by id.
    pub fn since(&self, room: &str, since: Option<&str>, now_ms: i64) -> Vec<Arc<ChatMessage>> {
        let Some(entries) = self.rooms.get(room) else {
            return Vec::new();
        };
        let start = since
            .and_then(|id| entries.iter().position(|e| e.message.id == id))
            .map_or(0, |i| i + 1);
        entries
            .iter()
            .skip(start)
            .filter(|e| e.message.expires_at > now_ms)
            .map(|e| e.message.clone())
            .collect()
    }

    /// Drops every message expired at `now_ms`.
    pub fn sweep(&mut self, now_ms: i64) -> Removed {
        let mut expired = 0;
        let mut freed = 0;
        self.rooms.retain(|_, entries| {
            entries.retain(|e| {
                let keep = e.message.expires_at > now_ms;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Member;

    fn msg(room: &str, id: u32, expires_at: i64) -> Arc<ChatMessage> {
        Arc::new(ChatMessage {
            room: room.into(),
            id: id.to_string(),
            user: Member {
                id: "u".into(),
                name: "n".into(),
            },
            text: "x".repeat(40),
            ts: expires_at - 1000,
            expires_at,
        })
    }

    fn ids(messages: &[Arc<ChatMessage>]) -> Vec<String> {
        messages.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn keeps_the_newest_per_room_in_order() {
        let mut h = History::new(usize::MAX);
        for i in 0..250 {
            h.insert(msg("a", i, 10_000), 0);
        }
        h.insert(msg("b", 999, 10_000), 0);
        let a = h.since("a", None, 0);
        assert_eq!(a.len(), PER_ROOM);
        assert_eq!(a.first().unwrap().id, "50");
        assert_eq!(a.last().unwrap().id, "249");
        assert_eq!(h.len(), PER_ROOM + 1);
    }

    #[test]
    fn since_gives_what_came_after() {
        let mut h = History::new(usize::MAX);
        for i in 0..5 {
            h.insert(msg("a", i, 10_000), 0);
        }
        assert_eq!(ids(&h.since("a", Some("2"), 0)), ["3", "4"]);
        assert_eq!(ids(&h.since("a", Some("4"), 0)), Vec::<String>::new());
        assert_eq!(ids(&h.since("a", Some("gone"), 0)).len(), 5);
        assert!(h.since("nobody", None, 0).is_empty());
    }

    #[test]
    fn expired_messages_are_never_served_and_swept() {
        let mut h = History::new(usize::MAX);
        h.insert(msg("a", 1, 1_000), 0);
        h.insert(msg("a", 2, 5_000), 0);
        assert_eq!(h.insert(msg("a", 3, 500), 600).expired, 1);
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
        let one = {
            h.insert(msg("a", 1, 10_000), 0);
            h.bytes()
        };
        assert_eq!(one, 0, "a single message over the bound is evicted at once");
        let mut h = History::new(3 * 250);
        for (room, id) in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)] {
            h.insert(msg(room, id, 10_000), 0);
        }
        assert!(h.bytes() <= 3 * 250);
        assert_eq!(h.len(), 3);
        assert!(h.since("a", None, 0).iter().all(|m| m.id == "3"));
        assert_eq!(ids(&h.since("b", None, 0)), ["5"]);
    }
}
