//! Who is in which room, across every gateway: [`memory::MemoryPresence`]
//! for one process, [`redis::RedisPresence`] for many. A user with several connections in a
//! room is one member, who leaves when the last connection does.

pub mod memory;
pub mod redis;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;

use crate::protocol::Member;

/// A change of a room's members, seen by every gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    pub room: String,
    pub joined: Vec<Member>,
    pub left: Vec<Member>,
    /// The connection whose join or leave caused the event; it is told by
    /// `joined`/`left` instead.
    pub origin: Option<String>,
}

/// The presence store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("presence store unavailable: {0}")]
pub struct PresenceError(pub String);

/// A presence store.
pub trait Presence: Send + Sync + 'static {
    /// Adds connection `conn` of `member` to `room` and returns the room's
    /// members now, `member` included.
    fn join<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        conn: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>>;

    /// Removes connection `conn` of `member` from `room`.
    fn leave<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        conn: &'a str,
    ) -> BoxFuture<'a, Result<(), PresenceError>>;

    /// Every change of every room's members, from any gateway.
    fn subscribe(&self) -> BoxStream<'static, PresenceEvent>;

    /// Whether the store answers.
    fn is_ready(&self) -> bool;

    /// Removes everything this gateway added (on shutdown).
    fn clear(&self) -> BoxFuture<'_, ()>;
}

/// The events of a broadcast channel as a stream; a subscriber that falls
/// behind skips what it missed, with a warning.
fn broadcast_stream(receiver: broadcast::Receiver<PresenceEvent>) -> BoxStream<'static, PresenceEvent> {
    futures::stream::unfold(receiver, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "presence events fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}
