//! The WhisperRooms gateway: accepts WebSockets, publishes what clients send
//! to the message bus, reads every room's messages back from it, keeps the
//! unexpired ones for history and fans them out to local sockets.
//!
//! # Layout
//!
//! - [`config`]: settings from flags, `WHISPER_*` env and a YAML file.
//! - [`protocol`]: the frames of protocol v1, their parsing and validation.
//! - [`server`]: wiring, HTTP routes, background tasks, shutdown.
//! - [`http`]: accepting connections: caps per address and before the
//!   upgrade, the header timeout, the end of the grace period.
//! - [`session`]: one WebSocket connection.
//! - [`state`]: what the parts share (settings, bus, presence, rooms,
//!   metrics, the shutdown signal).
//! - [`rooms`]: local fan-out to the sockets in each room, over [`history`].
//! - [`history`]: the expiring per-room message store.
//! - [`bus`]: where messages travel: in memory or Kafka.
//! - [`presence`]: who is in which room across gateways.
//! - [`auth`], [`ratelimit`]: per-connection checks; [`filter`]: the content filter.
//! - [`metrics`]: Prometheus metrics (logs, traces and the topic policy: the `whisper-common` crate).
//! - [`web`], [`clock`]: the bundled UI, time.

pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
pub mod filter;
pub mod history;
pub mod http;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod ratelimit;
pub mod rooms;
pub mod server;
pub mod session;
pub mod state;
pub mod web;
