//! One benchmark connection: opens a session, joins its room (timing the
//! join), then sends when the scheduler says so and records every delivery's
//! latency until the scheduler hangs up.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wire::{Event, Protocol};

/// Time to open a session and join.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// History messages in flight at once while filling a room.
const FILL_WINDOW: usize = 32;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Counters every connection adds to.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) delivered: AtomicU64,
    /// Messages sent before this time (µs from `epoch`) are not counted:
    /// they were the warm-up.
    pub(crate) measure_from_us: AtomicU64,
    pub(crate) acked_per_room: Vec<AtomicU64>,
    /// Send times in message texts count from here.
    pub(crate) epoch: Instant,
}

impl Shared {
    /// Counters for `rooms` rooms; with a warm-up, nothing counts until it ends.
    pub(crate) fn new(rooms: usize, warmup: bool) -> Self {
        Self {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            measure_from_us: AtomicU64::new(if warmup { u64::MAX } else { 0 }),
            acked_per_room: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
        }
    }

    /// Deliveries owed: every acked message to every member of its room.
    pub(crate) fn expected(&self, members: &[u64]) -> u64 {
        self.acked_per_room
            .iter()
            .zip(members)
            .map(|(acked, m)| acked.load(Ordering::Relaxed) * m)
            .sum()
    }
}

/// What the scheduler asks of a connection.
#[derive(Debug)]
pub(crate) enum Command {
    Send,
}

/// What one connection saw.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) latencies_us: Vec<u32>,
    pub(crate) join_us: Vec<u32>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) closed_early: bool,
}

/// One connection to run.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) protocol: Protocol,
    pub(crate) url: String,
    pub(crate) source: SocketAddr,
    pub(crate) name: String,
    pub(crate) room: Arc<str>,
    pub(crate) room_index: usize,
    pub(crate) size: usize,
    pub(crate) shared: Arc<Shared>,
    /// Turns true when the run is over: stop reading and hang up.
    pub(crate) stop: watch::Receiver<bool>,
}

impl Client {
    /// Opens the session (holding `permit` while connecting), tells `ready`,
    /// then serves the scheduler's commands until it hangs up.
    pub(crate) async fn run(
        self,
        commands: mpsc::Receiver<Command>,
        ready: mpsc::Sender<anyhow::Result<()>>,
        permit: OwnedSemaphorePermit,
    ) -> Report {
        let mut report = Report::default();
        let opened = tokio::time::timeout(
            OPEN_TIMEOUT,
            open(self.protocol, &self.url, self.source, &self.name, &self.room),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no session within {OPEN_TIMEOUT:?}")));
        drop(permit);
        let ws = match opened {
            Ok((ws, join_us)) => {
                report.join_us.push(join_us);
                let _ = ready.send(Ok(())).await;
                ws
            }
            Err(e) => {
                let _ = ready.send(Err(e)).await;
                return report;
            }
        };
        self.serve(ws, commands, &mut report).await;
        report
    }

    async fn serve(&self, mut ws: Socket, mut commands: mpsc::Receiver<Command>, report: &mut Report) {
        let padding = "x".repeat(self.size - 21);
        let mut id = 3;
        // Send times of the sends not answered yet: a connection's answers
        // come in the order of its sends (one room, one partition).
        let mut unanswered = VecDeque::new();
        let mut stop = self.stop.clone();
        // After the last command the connection keeps reading what is still
        // on its way, until the run is over.
        let mut sending = true;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                command = commands.recv(), if sending => match command {
                    Some(Command::Send) => {
                        id += 1;
                        let now = self.shared.epoch.elapsed().as_micros() as u64;
                        let text = format!("{now:020} {padding}");
                        if ws.send(Message::text(self.protocol.send(&self.room, &text, id))).await.is_err() {
                            report.closed_early = true;
                            return;
                        }
                        unanswered.push_back(now);
                        if self.measured(now) {
                            self.shared.sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => sending = false,
                },
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        for event in self.protocol.events(text.as_str()) {
                            if let Some(pong) = self.record(event, &mut unanswered, report) {
                                let _ = ws.send(Message::text(pong)).await;
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        report.closed_early = true;
                        return;
                    }
                },
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }

    /// Whether a message sent at `sent_us` counts (after the warm-up).
    fn measured(&self, sent_us: u64) -> bool {
        sent_us >= self.shared.measure_from_us.load(Ordering::Relaxed)
    }

    /// Counts one event (of a message sent in the measured time); returns
    /// the answer it needs, if any.
    fn record(&self, event: Event<'_>, unanswered: &mut VecDeque<u64>, report: &mut Report) -> Option<&'static str> {
        let shared = &self.shared;
        match event {
            Event::Message { sent_us: Some(sent) } => {
                if self.measured(sent) {
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                    let now = shared.epoch.elapsed().as_micros() as u64;
                    report
                        .latencies_us
                        .push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                }
            }
            Event::Acked => {
                if unanswered.pop_front().is_some_and(|sent| self.measured(sent)) {
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                    shared.acked_per_room[self.room_index].fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::Error(code) => {
                if unanswered.pop_front().is_none_or(|sent| self.measured(sent)) {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    *report.errors.entry(code).or_default() += 1;
                }
            }
            Event::Ping => return self.protocol.pong(),
            Event::Message { sent_us: None } | Event::Connected | Event::Joined | Event::Other(_) => {}
        }
        None
    }
}

/// Connects from `source`, opens a session and joins `room`; returns the
/// socket and how long the join took (until its history arrived), in µs.
async fn open(
    protocol: Protocol,
    url: &str,
    source: SocketAddr,
    name: &str,
    room: &str,
) -> anyhow::Result<(Socket, u32)> {
    let mut ws = connect(url, source, None).await?;
    let [hello, join] = <[String; 2]>::try_from(protocol.open(name, room)).expect("two opening frames");
    ws.send(Message::text(hello)).await?;
    wait_for(protocol, &mut ws, |e| *e == Event::Connected).await?;
    let started = Instant::now();
    ws.send(Message::text(join)).await?;
    wait_for(protocol, &mut ws, |e| *e == Event::Joined).await?;
    Ok((ws, started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32))
}

/// Opens a WebSocket to `url` from `source`; `receive_buffer` shrinks the
/// socket's receive buffer (a client that stops reading then backs up into
/// the server sooner).
pub(crate) async fn connect(url: &str, source: SocketAddr, receive_buffer: Option<u32>) -> anyhow::Result<Socket> {
    let stream = tcp(url, source, receive_buffer).await?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(stream), Some(config))
        .await
        .with_context(|| format!("upgrade {url}"))?;
    Ok(ws)
}

/// A TCP connection to the host of `url` from `source`.
pub(crate) async fn tcp(url: &str, source: SocketAddr, receive_buffer: Option<u32>) -> anyhow::Result<TcpStream> {
    let target = target_address(url).await?;
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if target.is_ipv4() {
        socket.bind(source).with_context(|| format!("bind {source}"))?;
    }
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.connect(target).await.with_context(|| format!("connect {url}"))
}

/// Reads until an event matches, answering pings; an error frame fails.
pub(crate) async fn wait_for(
    protocol: Protocol,
    ws: &mut Socket,
    wanted: impl Fn(&Event<'_>) -> bool,
) -> anyhow::Result<()> {
    loop {
        let frame = ws.next().await.context("closed by the server")??;
        let Message::Text(text) = frame else { continue };
        let mut pong = false;
        for event in protocol.events(text.as_str()) {
            match event {
                Event::Error(code) => bail!("refused: {code}"),
                Event::Ping => pong = true,
                e if wanted(&e) => return Ok(()),
                _ => {}
            }
        }
        if let (true, Some(answer)) = (pong, protocol.pong()) {
            ws.send(Message::text(answer)).await?;
        }
    }
}

/// Resolves the URL's host and port (loopback was checked before).
async fn target_address(url: &str) -> anyhow::Result<SocketAddr> {
    let authority = url.split("//").nth(1).unwrap_or("").split('/').next().unwrap_or("");
    if let Some(port) = authority.strip_prefix("localhost:") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port.parse()?));
    }
    tokio::net::lookup_host(authority)
        .await?
        .next()
        .with_context(|| format!("{url}: no address"))
}

/// Stores `count` messages of `size` bytes in `room` through one connection
/// and waits until the server accepted all of them.
pub(crate) async fn fill(
    protocol: Protocol,
    url: &str,
    source: SocketAddr,
    room: &str,
    count: usize,
    size: usize,
) -> anyhow::Result<()> {
    let (mut ws, _) = open(protocol, url, source, &format!("seed-{room}"), room).await?;
    let text = format!("{:020} {}", 0, "h".repeat(size - 21));
    let (mut sent, mut acked) = (0, 0);
    while acked < count {
        while sent < count && sent - acked < FILL_WINDOW {
            sent += 1;
            ws.send(Message::text(protocol.send(room, &text, 3 + sent as u64)))
                .await?;
        }
        let frame = ws.next().await.context("closed while filling history")??;
        let Message::Text(frame) = frame else { continue };
        for event in protocol.events(frame.as_str()) {
            match event {
                Event::Acked => acked += 1,
                Event::Error(code) => bail!("filling history: refused: {code}"),
                Event::Ping => {
                    if let Some(answer) = protocol.pong() {
                        ws.send(Message::text(answer)).await?;
                    }
                }
                _ => {}
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
