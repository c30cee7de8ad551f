//! What the gateway's parts share: the settings, the bus, presence, the
//! local rooms, the metrics and the shutdown signal. A session gets this and
//! nothing of the server's own bookkeeping (its connection cap and the
//! tracking of sessions for shutdown).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::rooms::Rooms;

/// The shared state, cheap to clone.
pub type AppState = Arc<Shared>;

/// The gateway's shared state.
pub struct Shared {
    pub(crate) config: Config,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) presence: Arc<dyn Presence>,
    pub(crate) rooms: Rooms,
    pub(crate) metrics: Metrics,
    /// Cancelled when the gateway starts shutting down.
    pub(crate) shutdown: CancellationToken,
}

impl Shared {
    pub(crate) fn new(config: Config, bus: Arc<dyn Bus>, presence: Arc<dyn Presence>) -> Self {
        Self {
            rooms: Rooms::new(config.history_max_bytes, config.ttl.as_millis() as i64),
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            config,
            bus,
            presence,
        }
    }

    /// The metrics, as `/metrics` shows them.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
