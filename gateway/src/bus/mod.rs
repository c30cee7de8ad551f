//! The message bus: where a gateway publishes the messages its clients send
//! and from which it receives every room's messages, its own included.
//!
//! Two implementations sit behind [`Bus`]: [`memory::MemoryBus`] (one process,
//! the default) and [`kafka::KafkaBus`] (one topic keyed by room id, a
//! consumer group per gateway). Both deliver each room's messages to every
//! subscriber in one order. Kafka stores messages as [`record::Record`]s,
//! a versioned format of their own.

pub mod kafka;
pub mod memory;
pub mod record;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::protocol::ChatMessage;

/// Resolves once the bus has durably accepted a published message.
pub type Delivery = BoxFuture<'static, Result<(), BusError>>;

/// A message as it comes off the bus.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: ChatMessage,
    /// Unix milliseconds when the bus stored it (the broker's timestamp).
    pub bus_ts: i64,
}

/// What went wrong on the bus.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The bus did not accept the message; the client may retry.
    #[error("message bus unavailable: {0}")]
    Unavailable(String),
    /// A record on the bus could not be read as a message.
    #[error("unreadable record: {0}")]
    BadRecord(String),
    /// The bus could not be set up.
    #[error("message bus setup failed: {0}")]
    Setup(String),
}

impl BusError {
    /// Every [`BusError::metric_label`].
    pub const KINDS: [&'static str; 3] = ["unavailable", "bad_record", "setup"];

    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::BadRecord(_) => "bad_record",
            Self::Setup(_) => "setup",
        }
    }
}

/// A message bus.
pub trait Bus: Send + Sync + 'static {
    /// Publishes a message. The message is enqueued before this returns, so
    /// messages published one after another keep their order; the returned
    /// future says whether the bus durably accepted it.
    fn publish(&self, message: &ChatMessage) -> Delivery;

    /// Every room's messages, from those still unexpired when the gateway
    /// started onwards, each room's in one order. Unreadable records come
    /// out as errors and the stream goes on.
    fn subscribe(&self) -> BoxStream<'static, Result<Received, BusError>>;

    /// Whether the bus can accept messages now.
    fn is_ready(&self) -> bool;

    /// Waits, at most `timeout`, until every published message is delivered.
    fn flush(&self, timeout: std::time::Duration) -> BoxFuture<'static, ()>;
}
