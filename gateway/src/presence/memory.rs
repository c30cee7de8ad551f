//! Presence for a single gateway, kept in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use super::{Presence, PresenceError, PresenceEvent};
use crate::protocol::Member;

/// Room → user id → (member, their connections).
type Rooms = HashMap<String, BTreeMap<String, (Member, HashSet<String>)>>;

/// In-memory presence: exact, and gone with the process.
#[derive(Debug)]
pub struct MemoryPresence {
    rooms: Mutex<Rooms>,
    events: broadcast::Sender<PresenceEvent>,
}

impl Default for MemoryPresence {
    fn default() -> Self {
        Self {
            rooms: Mutex::default(),
            events: broadcast::channel(4096).0,
        }
    }
}

impl MemoryPresence {
    fn emit(&self, room: &str, member: &Member, conn: &str, joined: bool) {
        let (joined, left) = if joined {
            (vec![member.clone()], vec![])
        } else {
            (vec![], vec![member.clone()])
        };
        let _ = self.events.send(PresenceEvent {
            room: room.to_owned(),
            joined,
            left,
            origin: Some(conn.to_owned()),
        });
    }
}

impl Presence for MemoryPresence {
    fn join<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        conn: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>> {
        let (members, new) = {
            let mut rooms = self.rooms.lock().expect("presence lock");
            let users = rooms.entry(room.to_owned()).or_default();
            let (_, conns) = users
                .entry(member.id.clone())
                .or_insert_with(|| (member.clone(), HashSet::new()));
            let new = conns.is_empty();
            conns.insert(conn.to_owned());
            (users.values().map(|(m, _)| m.clone()).collect(), new)
        };
        if new {
            self.emit(room, member, conn, true);
        }
        Box::pin(async move { Ok(members) })
    }

    fn leave<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        conn: &'a str,
    ) -> BoxFuture<'a, Result<(), PresenceError>> {
        let gone = {
            let mut rooms = self.rooms.lock().expect("presence lock");
            let mut gone = false;
            if let Some(users) = rooms.get_mut(room) {
                if let Some((_, conns)) = users.get_mut(&member.id) {
                    gone = conns.remove(conn) && conns.is_empty();
                    if conns.is_empty() {
                        users.remove(&member.id);
                    }
                }
                if users.is_empty() {
                    rooms.remove(room);
                }
            }
            gone
        };
        if gone {
            self.emit(room, member, conn, false);
        }
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self) -> BoxStream<'static, PresenceEvent> {
        super::broadcast_stream(self.events.subscribe())
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        self.rooms.lock().expect("presence lock").clear();
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            name: id.to_uppercase(),
        }
    }

    #[tokio::test]
    async fn a_user_with_two_connections_is_one_member() {
        let p = MemoryPresence::default();
        let mut events = p.subscribe();
        let alice = member("a");
        assert_eq!(p.join("r", &alice, "c1").await.unwrap(), vec![alice.clone()]);
        assert_eq!(p.join("r", &alice, "c2").await.unwrap(), vec![alice.clone()]);
        let bob = member("b");
        assert_eq!(p.join("r", &bob, "c3").await.unwrap().len(), 2);
        p.leave("r", &alice, "c1").await.unwrap();
        p.leave("r", &alice, "c2").await.unwrap();
        let got: Vec<PresenceEvent> = events.by_ref().take(3).collect().await;
        assert_eq!(got[0].joined, vec![alice.clone()]);
        assert_eq!(got[1].joined, vec![bob.clone()]);
        assert_eq!(got[2].left, vec![alice.clone()]);
        assert_eq!(got[2].origin.as_deref(), Some("c2"));
        assert_eq!(p.join("r", &bob, "c3").await.unwrap(), [bob]);
    }
}
