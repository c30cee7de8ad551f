//! Accepting connections, before anything is known of them: socket
//! options, a cap on open connections per source address, a cap on
//! connections that have not yet become WebSockets, a time limit on reading
//! a request's headers, and an end within the grace period at shutdown,
//! whatever clients do. A refused connection gets a plain HTTP answer and
//! is closed without being read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Time a client has to send a request's headers, the first as each
/// following one on a kept-alive connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted but not yet upgraded (or done with plain HTTP).
pub const MAX_PENDING: usize = 1024;

/// TCP keepalive on accepted sockets: first probe after this much silence,
/// then one every interval (the kernel gives up after 9 unanswered).
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The caps on connections.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Open connections per source address; 0 = no cap.
    pub per_address: usize,
    /// Connections before their upgrade.
    pub pending: usize,
    pub header_timeout: Duration,
}

/// Open connections by source address.
#[derive(Debug)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One connection's place in its address's count, given back when the
/// last holder (the HTTP connection, then its WebSocket) drops it. Handed
/// to request handlers as a request extension.
#[derive(Debug, Clone)]
pub struct AddressSlot {
    _held: Arc<SlotGuard>,
}

#[derive(Debug)]
struct SlotGuard {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().expect("address table lock");
        let count = open.entry(ip).or_default();
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            _held: Arc::new(SlotGuard {
                table: self.clone(),
                ip,
            }),
        })
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().expect("address table lock");
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled; then stops
/// accepting, lets requests in progress finish (a WebSocket session ends by
/// its own shutdown path) for at most `grace`, drops connections still
/// open then, and returns the end of the grace period: the deadline for
/// everything else that shuts down.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    caps: Caps,
    shutdown: CancellationToken,
    grace: Duration,
) -> tokio::time::Instant {
    let per_address = Arc::new(PerAddress {
        open: Mutex::default(),
        max: caps.per_address,
    });
    let pending = Arc::new(Semaphore::new(caps.pending));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(TCP_KEEPALIVE_INTERVAL);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(caps.header_timeout);
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        tracing::trace!(%peer, "connection accepted");
        let Some(slot) = per_address.take(peer.ip().to_canonical()) else {
            refuse(tcp, "429 Too Many Requests", "too many connections from your address\n");
            continue;
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            refuse(tcp, "503 Service Unavailable", "too many connections opening at once\n");
            continue;
        };
        // Without TCP_NODELAY, small frames wait for delayed ACKs (~40 ms).
        // TCP keepalive finds peers gone without a word (a dropped NAT
        // entry) even on a socket nothing is written to.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, "cannot set TCP keepalive");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(slot.clone());
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = http.serve_connection(TokioIo::new(tcp), service).with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            // Held until the upgrade (which ends this future) or the end of
            // plain HTTP on the connection.
            let _pending = permit;
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, async { while connections.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections still open after the grace period; dropping them"
        );
    }
    deadline
}

/// Answers a refused connection with `status` and closes it, without
/// reading it and without waiting on it.
fn refuse(tcp: TcpStream, status: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tracing::debug!(status, "connection refused");
    let _ = tcp.try_write(answer.as_bytes());
}
