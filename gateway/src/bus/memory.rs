//! The embedded bus: one process, no broker. Used when no Kafka is configured.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;

use super::{Bus, BusError, Delivery, Received};
use crate::protocol::ChatMessage;

/// Messages a slow subscriber may fall behind by before it misses some.
const CAPACITY: usize = 65_536;

/// An in-process broadcast of messages, in publish order.
#[derive(Debug)]
pub struct MemoryBus {
    sender: broadcast::Sender<ChatMessage>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Bus for MemoryBus {
    fn publish(&self, message: &ChatMessage) -> Delivery {
        // Sending fails only when nobody subscribes, and then nobody reads.
        let _ = self.sender.send(message.clone());
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self) -> BoxStream<'static, Result<Received, BusError>> {
        futures::stream::unfold(self.sender.subscribe(), |mut receiver| async move {
            let item = match receiver.recv().await {
                Ok(message) => Ok(Received {
                    bus_ts: message.ts,
                    message,
                }),
                Err(broadcast::error::RecvError::Lagged(n)) => Err(BusError::Unavailable(format!(
                    "subscriber fell behind, {n} messages lost"
                ))),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((item, receiver))
        })
        .boxed()
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn flush(&self, _timeout: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Member;

    fn message(room: &str, id: &str) -> ChatMessage {
        ChatMessage {
            room: room.into(),
            id: id.into(),
            user: Member {
                id: "u".into(),
                name: "n".into(),
            },
            text: "t".into(),
            ts: 1,
            expires_at: 2,
            enc: None,
        }
    }

    #[tokio::test]
    async fn subscribers_get_messages_in_publish_order() {
        let bus = MemoryBus::default();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        for id in ["1", "2", "3"] {
            bus.publish(&message("r", id)).await.unwrap();
        }
        for sub in [&mut a, &mut b] {
            let ids: Vec<String> = sub.by_ref().take(3).map(|r| r.unwrap().message.id).collect().await;
            assert_eq!(ids, ["1", "2", "3"]);
        }
    }
}
