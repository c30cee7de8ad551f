//! The gateway process: wires the bus, presence and rooms together, serves
//! HTTP and WebSockets, and shuts down in order when told to.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::kafka::KafkaBus;
use crate::bus::memory::MemoryBus;
use crate::bus::{Bus, BusError};
use crate::clock::now_ms;
use crate::config::Config;
use crate::presence::Presence;
use crate::presence::memory::MemoryPresence;
use crate::presence::redis::RedisPresence;
use crate::state::{AppState, Shared};
use crate::{http, session, web};

/// How often expired messages are dropped from memory; the protocol allows 5 s.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes a socket reads at a time. Client frames are small (a typical
/// `send` fits); a larger one gets room for itself as it arrives (up to the
/// frame limit), so an idle socket holds no more than this (the library's
/// default is 128 KiB: 141 KiB of RSS per idle socket, now 7.5).
const READ_BUFFER_BYTES: usize = 512;
/// Bytes of frames a socket gathers before writing them out; the writer
/// flushes after each batch anyway.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// The server: the shared state and what only the server keeps, the cap
/// on open WebSockets and the sessions to wait for at shutdown.
struct Server {
    state: AppState,
    connections: Arc<Semaphore>,
    sessions: TaskTracker,
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("presence store setup failed: {0}")]
    Presence(String),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Connects to the bus and presence store named by the config.
pub async fn connect(config: Config) -> Result<AppState, Error> {
    let bus: Arc<dyn Bus> = match &config.kafka {
        Some(kafka) => Arc::new(KafkaBus::connect(kafka, &config.gateway_id, config.ttl).await?),
        None => Arc::new(MemoryBus::default()),
    };
    let presence: Arc<dyn Presence> = match &config.redis {
        Some(redis) => {
            // One Redis may serve several chat clusters: each is scoped by its topic.
            let scope = config.kafka.as_ref().map_or("local", |k| k.topic.as_str());
            RedisPresence::start(redis, scope, &config.gateway_id, config.presence_timeout)
                .map_err(|e| Error::Presence(e.to_string()))?
        }
        None => Arc::new(MemoryPresence::default()),
    };
    Ok(Arc::new(Shared::new(config, bus, presence)))
}

/// Serves on `listener` until `shutdown` resolves, then closes every socket
/// with 1001, leaves presence, flushes the bus and returns.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let background = CancellationToken::new();
    tokio::spawn(dispatch_messages(state.clone(), background.clone()));
    tokio::spawn(dispatch_presence(state.clone(), background.clone()));
    tokio::spawn(sweep(state.clone(), background.clone()));
    if let Some(filter) = &state.config.content_filter {
        tokio::spawn(filter.clone().watch(background.clone()));
    }

    let server = Arc::new(Server {
        state: state.clone(),
        connections: Arc::new(Semaphore::new(state.config.max_connections)),
        sessions: TaskTracker::new(),
    });
    let app = router(server.clone());
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        gateway = state.config.gateway_id,
        bus = if state.config.kafka.is_some() { "kafka" } else { "memory" },
        presence = if state.config.redis.is_some() { "redis" } else { "memory" },
        "gateway listening"
    );
    let host = if address.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        address.ip().to_string()
    };
    tracing::info!("chat at http://{host}:{}/ (open it in two tabs)", address.port());
    let token = state.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: closing sockets");
        token.cancel();
    });
    let caps = http::Caps {
        per_address: state.config.max_connections_per_ip,
        pending: http::MAX_PENDING,
        header_timeout: http::HEADER_TIMEOUT,
    };
    let deadline = http::serve(listener, app, caps, state.shutdown.clone(), state.config.shutdown_grace).await;

    server.sessions.close();
    if tokio::time::timeout_at(deadline, server.sessions.wait()).await.is_err() {
        tracing::warn!("sessions did not end within the grace period");
    }
    state.presence.clear().await;
    state.bus.flush(Duration::from_secs(5)).await;
    background.cancel();
    tracing::info!("gateway stopped");
    Ok(())
}

fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v1/ws", get(upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(web::serve)
        .with_state(server)
}

async fn upgrade(
    State(server): State<Arc<Server>>,
    slot: Option<Extension<http::AddressSlot>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let state = server.state.clone();
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "gateway shutting down\n").into_response();
    }
    if let Some(allowed) = &state.config.allowed_origins {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("");
        if !allowed.iter().any(|a| a == origin) {
            return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
        }
    }
    let Ok(permit) = server.connections.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    // Frames a little over the limit are read and closed with 1009 by the
    // session; the socket refuses anything far larger outright.
    let limit = state.config.max_frame_bytes * 2;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            server.sessions.track_future(async move {
                session::serve(state, socket).await;
                drop((permit, slot));
            })
        })
}

async fn ready(State(server): State<Arc<Server>>) -> Response {
    let state = &server.state;
    let bus = state.bus.is_ready();
    let presence = state.presence.is_ready();
    let body = format!("bus: {}\npresence: {}\n", up(bus), up(presence));
    if bus && presence && !state.shutdown.is_cancelled() {
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

fn up(ok: bool) -> &'static str {
    if ok { "ok" } else { "unavailable" }
}

async fn metrics(State(server): State<Arc<Server>>, _request: Request) -> Response {
    let state = &server.state;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.encode(),
    )
        .into_response()
}

/// Hands every message from the bus to the local rooms.
async fn dispatch_messages(state: AppState, stop: CancellationToken) {
    let mut messages = state.bus.subscribe();
    loop {
        let item = tokio::select! {
            () = stop.cancelled() => return,
            item = messages.next() => item,
        };
        match item {
            Some(Ok(received)) => {
                let now = now_ms();
                state
                    .metrics
                    .consumer_lag
                    .set((now - received.bus_ts).max(0) as f64 / 1000.0);
                let delivered = state.rooms.deliver(received.message, received.bus_ts, now);
                state.metrics.history_evicted.inc_by(delivered.removed.evicted as u64);
                state.metrics.history_expired.inc_by(delivered.removed.expired as u64);
                if delivered.duplicate {
                    state.metrics.duplicates_dropped.inc();
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "bus error");
                state.metrics.bus_error(&e);
            }
            None => {
                // At shutdown the bus may end its stream before `stop`.
                if !state.shutdown.is_cancelled() {
                    tracing::error!("the bus subscription ended");
                }
                return;
            }
        }
    }
}

/// Hands presence changes from every gateway to the local rooms.
async fn dispatch_presence(state: AppState, stop: CancellationToken) {
    let mut events = state.presence.subscribe();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => event,
        };
        let Some(event) = event else { return };
        state
            .rooms
            .presence(&event.room, &event.joined, &event.left, event.origin.as_deref());
    }
}

/// Drops expired messages and refreshes the gauges.
async fn sweep(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let removed = state.rooms.sweep(now_ms());
        state.metrics.history_expired.inc_by(removed.expired as u64);
        let (rooms, messages, bytes) = state.rooms.stats();
        state.metrics.rooms.set(rooms as i64);
        state.metrics.history_messages.set(messages as i64);
        state.metrics.history_bytes.set(bytes as i64);
    }
}
