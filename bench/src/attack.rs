//! `whisper-bench attack KIND`: a client that misbehaves on purpose for a
//! bounded time, then says on its last line of output what the gateway did
//! about it; it exits non-zero when the gateway did not hold the line.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Socket, connect, tcp, wait_for};
use crate::source_address;
use crate::wire::{self, Event, Protocol};

/// Sockets per source address where an attack uses many (the gateways cap
/// sockets per address; one-address attacks say so).
const PER_SOURCE: usize = 50;
/// Time for one session to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// One member of a busy room that stops reading: closed with 4009
    SlowReader,
    /// One member that reads until the process is stopped (SIGSTOP): closed by the gateway
    Paused,
    /// One connection sending messages as fast as it can: closed with 4008
    SendFlood,
    /// One connection sending pings as fast as it can: closed with 4008
    PingFlood,
    /// One connection joining and leaving a room of `--count` members as fast as it can
    JoinFlood,
    /// `--count` sessions from one source address: at most `--limit` accepted
    Connections,
    /// `--count` HTTP requests whose headers never end: each closed by the gateway
    Slowloris,
    /// Two messages of `--size` bytes into each of `--rooms` rooms
    HistoryFlood,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    kind: Kind,
    /// Gateway WebSocket URLs (loopback only)
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
    url: Vec<String>,
    /// How long to misbehave
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Connections (join-flood: room members; connections; slowloris)
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Sessions the gateway should accept from one address (connections)
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Rooms (history-flood)
    #[arg(long, default_value_t = 10_000)]
    rooms: usize,
    /// Bytes of text per message (slow-reader feeders, history-flood)
    #[arg(long, default_value_t = 1900)]
    size: usize,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    for url in &args.url {
        if !crate::is_loopback(url) {
            bail!("{url}: whisper-bench only targets loopback addresses");
        }
    }
    let verdict = match args.kind {
        Kind::SlowReader => slow_reader(&args).await,
        Kind::Paused => paused(&args).await,
        Kind::SendFlood => {
            let nonce = rand_ish();
            flood(&args.url[0], args.duration, |i| {
                wire::send_once("attack", "flood", &format!("flood-{nonce:x}-{i}"))
            })
            .await
        }
        Kind::PingFlood => flood(&args.url[0], args.duration, |_| wire::ping()).await,
        Kind::JoinFlood => join_flood(&args).await,
        Kind::Connections => connections(&args).await,
        Kind::Slowloris => slowloris(&args).await,
        Kind::HistoryFlood => history_flood(&args).await,
    };
    // The last line of output is the verdict, also when it is a failure.
    let line = match &verdict {
        Ok(verdict) => verdict.clone(),
        Err(e) => format!("{e:#}"),
    };
    writeln!(std::io::stdout(), "{line}")?;
    verdict.map(drop)
}

/// Block `n` of 127.0.0.0/8 for an attack's source addresses.
fn block(n: u8) -> u32 {
    u32::from(Ipv4Addr::new(127, 70 + n, 0, 1))
}

/// A session joined to `room`.
async fn member(url: &str, source: SocketAddr, room: &str, receive_buffer: Option<u32>) -> anyhow::Result<Socket> {
    let mut ws = timeout(OPEN_TIMEOUT, connect(url, source, receive_buffer))
        .await
        .context("connect timed out")??;
    ws.send(Message::text(wire::hello("attacker"))).await?;
    wait_for(Protocol::Whisper, &mut ws, |e| *e == Event::Connected).await?;
    ws.send(Message::text(wire::join(room, None))).await?;
    wait_for(Protocol::Whisper, &mut ws, |e| *e == Event::Joined).await?;
    Ok(ws)
}

/// Reads until the gateway closes the socket (within `limit`); its close code.
async fn close_code(ws: &mut Socket, limit: Duration) -> Option<String> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(close))) => {
                    return close.map_or("closed without code".into(), |c| u16::from(c.code).to_string());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return format!("reset ({e})"),
                None => return "closed".into(),
            }
        }
    };
    timeout(limit, read).await.ok()
}

/// Members of `room` that send `--size` byte messages at the default rate
/// limit (5/s) and read everything, until dropped.
fn feeders(args: &Args, room: &'static str, count: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|i| {
            let url = args.url[0].clone();
            let text = "f".repeat(args.size);
            tokio::spawn(async move {
                let Ok(mut ws) = member(&url, source_address(block(1), PER_SOURCE, i), room, None).await else {
                    return;
                };
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if ws.send(Message::text(wire::send_once(room, &text, &format!("feed-{i}-{:016}", rand_ish())))).await.is_err() {
                                return;
                            }
                        }
                        frame = ws.next() => if !matches!(frame, Some(Ok(_))) { return },
                    }
                }
            })
        })
        .collect()
}

/// A number that differs between calls (fresh `cid`s without a RNG crate).
fn rand_ish() -> u128 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    nanos ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 100
}

async fn slow_reader(args: &Args) -> anyhow::Result<String> {
    const ROOM: &str = "attack-slow";
    let mut slow = member(
        &args.url[0],
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 70, 0, 1)), 0),
        ROOM,
        Some(4096),
    )
    .await?;
    let feeding = feeders(args, ROOM, 20);
    tokio::time::sleep(args.duration).await;
    for f in &feeding {
        f.abort();
    }
    // The gateway closes with 4009; the close frame may be stuck behind the
    // bytes the reader never took, and then the socket is reset instead.
    match close_code(&mut slow, Duration::from_secs(20)).await {
        Some(code) if code == "4009" || code.starts_with("reset") => {
            Ok(format!("the reader that stopped was dropped by the gateway: {code}"))
        }
        Some(code) => bail!("the reader that stopped was closed with {code}, not 4009"),
        None => bail!("the reader that stopped was still open"),
    }
}

async fn paused(args: &Args) -> anyhow::Result<String> {
    let mut ws = member(
        &args.url[0],
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 70, 0, 2)), 0),
        "attack-paused",
        None,
    )
    .await?;
    // Read (and so answer pings) until the time is up; a SIGSTOP freezes
    // this loop, and the gateway should give up on us meanwhile.
    let until = Instant::now() + args.duration;
    let closed = loop {
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => break None,
            frame = ws.next() => match frame {
                Some(Ok(Message::Close(close))) => break Some(close.map_or("no code".into(), |c| u16::from(c.code).to_string())),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(format!("reset ({e})")),
                None => break Some("closed".into()),
            },
        }
    };
    match closed.or(close_code(&mut ws, Duration::from_secs(5)).await) {
        Some(code) => Ok(format!("the paused client was closed by the gateway: {code}")),
        None => bail!("the paused client was still open when it woke up"),
    }
}

/// Sends `frame(i)` as fast as the socket takes it (at most 2,000 a
/// second), reconnecting whenever the gateway closes it.
async fn flood(url: &str, duration: Duration, mut frame: impl FnMut(u64) -> String) -> anyhow::Result<String> {
    let until = Instant::now() + duration;
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 70, 0, 3)), 0);
    let (mut sent, mut limited, mut acked, mut closes_4008, mut other_closes) = (0u64, 0u64, 0u64, 0u64, Vec::new());
    while Instant::now() < until {
        let mut ws = member(url, source, "attack", None).await?;
        let ended = loop {
            if Instant::now() >= until {
                break None;
            }
            for _ in 0..20 {
                sent += 1;
                if ws.feed(Message::text(frame(sent))).await.is_err() {
                    break;
                }
            }
            let _ = ws.flush().await;
            let reading = async {
                while let Ok(Some(next)) = timeout(Duration::from_millis(10), ws.next()).await {
                    match next {
                        Ok(Message::Text(text)) => match wire::frame(text.as_str()) {
                            wire::Frame::Error { code, .. } if code == "rate_limited" => limited += 1,
                            wire::Frame::Ack { .. } | wire::Frame::Other => acked += 1,
                            _ => {}
                        },
                        Ok(Message::Close(close)) => return Some(close.map_or(0, |c| u16::from(c.code))),
                        Ok(_) => {}
                        Err(_) => return Some(0),
                    }
                }
                None
            };
            if let Some(code) = reading.await {
                break Some(code);
            }
        };
        match ended {
            Some(4008) => closes_4008 += 1,
            Some(code) => other_closes.push(code),
            None => {}
        }
    }
    let summary = format!(
        "{sent} frames, {acked} answered, {limited} rate_limited, closed with 4008 {closes_4008}×{}",
        if other_closes.is_empty() {
            String::new()
        } else {
            format!(", other closes {other_closes:?}")
        }
    );
    if closes_4008 == 0 {
        bail!("never closed with 4008: {summary}");
    }
    Ok(summary)
}

async fn join_flood(args: &Args) -> anyhow::Result<String> {
    const ROOM: &str = "attack-crowd";
    let open = Arc::new(Semaphore::new(100));
    let crowd: Vec<_> = (0..args.count)
        .map(|i| {
            let url = args.url[i % args.url.len()].clone();
            let open = open.clone();
            tokio::spawn(async move {
                let permit = open.acquire_owned().await.expect("never closed");
                let mut ws = member(&url, source_address(block(2), PER_SOURCE, i), ROOM, None).await?;
                drop(permit);
                // Read until the gateway closes us (it should not).
                Ok::<_, anyhow::Error>(close_code(&mut ws, Duration::from_secs(3600)).await)
            })
        })
        .collect();
    let mut toggle = false;
    let verdict = flood(&args.url[0], args.duration, move |_| {
        toggle = !toggle;
        if toggle {
            wire::join(ROOM, None)
        } else {
            wire::leave(ROOM)
        }
    })
    .await;
    let mut closed = 0;
    let mut failed = 0;
    for member in crowd {
        if member.is_finished() {
            match member.await {
                Ok(Ok(_)) => closed += 1,
                _ => failed += 1,
            }
        } else {
            member.abort();
        }
    }
    let verdict = verdict?;
    if closed + failed > 0 {
        bail!(
            "{closed} of {} crowd members were closed and {failed} never joined; flooder: {verdict}",
            args.count
        );
    }
    Ok(format!("all {} crowd members stayed; flooder: {verdict}", args.count))
}

async fn connections(args: &Args) -> anyhow::Result<String> {
    // One source address for all of them: the point of the attack.
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 70, 0, 4)), 0);
    let open = Arc::new(Semaphore::new(200));
    let tasks: Vec<_> = (0..args.count)
        .map(|_| {
            let (url, open) = (args.url[0].clone(), open.clone());
            tokio::spawn(async move {
                let permit = open.acquire_owned().await.expect("never closed");
                let mut ws = timeout(OPEN_TIMEOUT, connect(&url, source, None)).await.ok()?.ok()?;
                ws.send(Message::text(wire::hello("attacker"))).await.ok()?;
                timeout(
                    OPEN_TIMEOUT,
                    wait_for(Protocol::Whisper, &mut ws, |e| *e == Event::Connected),
                )
                .await
                .ok()?
                .ok()?;
                drop(permit);
                Some(ws)
            })
        })
        .collect();
    let mut held = Vec::new();
    for task in tasks {
        if let Ok(Some(ws)) = task.await {
            held.push(ws);
        }
    }
    let accepted = held.len();
    tokio::time::sleep(args.duration).await;
    for mut ws in held {
        let _ = timeout(Duration::from_millis(100), ws.close(None)).await;
    }
    let summary = format!("{accepted} of {} sessions from one address accepted", args.count);
    if accepted > args.limit {
        bail!("{summary}, more than the limit of {}", args.limit);
    }
    Ok(summary)
}

async fn slowloris(args: &Args) -> anyhow::Result<String> {
    let started = Instant::now();
    let closed_after = Arc::new(std::sync::Mutex::new(Vec::new()));
    let open = Arc::new(Semaphore::new(200));
    let tasks: Vec<_> = (0..args.count)
        .map(|i| {
            let (url, open, closed_after) = (args.url[0].clone(), open.clone(), closed_after.clone());
            let duration = args.duration;
            tokio::spawn(async move {
                let permit = open.acquire_owned().await.expect("never closed");
                let Ok(Ok(mut stream)) =
                    timeout(OPEN_TIMEOUT, tcp(&url, source_address(block(3), PER_SOURCE, i), None)).await
                else {
                    return;
                };
                drop(permit);
                let opened = Instant::now();
                let path = url
                    .split("//")
                    .nth(1)
                    .and_then(|a| a.split_once('/'))
                    .map_or("/", |(_, p)| p);
                let head = format!("GET /{path} HTTP/1.1\r\nHost: x\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // One more header line every 2 s; the request never ends.
                let mut buf = [0u8; 512];
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(2)) => {
                            if opened.elapsed() >= duration || stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                                break;
                            }
                        }
                        read = stream.read(&mut buf) => if !matches!(read, Ok(n) if n > 0) { break },
                    }
                }
                if opened.elapsed() < duration {
                    closed_after
                        .lock()
                        .expect("not poisoned")
                        .push(opened.elapsed().as_secs_f64());
                }
            })
        })
        .collect();
    // Meanwhile an honest client must still get a session, once a second.
    let (mut honest, mut refused) = (0, 0);
    while started.elapsed() < args.duration {
        let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 70, 0, 5)), 0);
        match member(&args.url[0], source, "attack-honest", None).await {
            Ok(mut ws) => {
                honest += 1;
                let _ = ws.close(None).await;
            }
            Err(_) => refused += 1,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut closed = closed_after.lock().expect("not poisoned").clone();
    closed.sort_by(f64::total_cmp);
    let summary = format!(
        "{} of {} never-ending requests closed by the gateway (slowest after {:.1} s); honest sessions meanwhile {honest} ok, {refused} refused",
        closed.len(),
        args.count,
        closed.last().copied().unwrap_or(f64::NAN)
    );
    if closed.len() < args.count || refused > 0 {
        bail!("{summary}");
    }
    Ok(summary)
}

async fn history_flood(args: &Args) -> anyhow::Result<String> {
    // Each connection takes every 100th room: join, two messages, leave,
    // paced to stay inside the default limits (5 messages, 20 frames a second).
    const CONNECTIONS: usize = 100;
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (url, acked) = (args.url[c % args.url.len()].clone(), acked.clone());
            let (rooms, text, limit) = (args.rooms, "h".repeat(args.size), args.duration);
            tokio::spawn(async move {
                let source = source_address(block(4), PER_SOURCE, c);
                let mut ws = member(&url, source, &format!("flood-{c}"), None).await?;
                let mut tick = tokio::time::interval(Duration::from_millis(450));
                for r in (c..rooms).step_by(CONNECTIONS) {
                    if started.elapsed() > limit {
                        break;
                    }
                    tick.tick().await;
                    let room = format!("flood-{r}");
                    ws.send(Message::text(wire::join(&room, None))).await?;
                    for m in 0..2 {
                        let cid = format!("hist-{r}-{m}-{:x}", rand_ish());
                        ws.send(Message::text(wire::send_once(&room, &text, &cid))).await?;
                    }
                    ws.send(Message::text(wire::leave(&room))).await?;
                    let mut answered = 0;
                    while answered < 2 {
                        let Message::Text(frame) = ws.next().await.context("closed")?? else {
                            continue;
                        };
                        match wire::frame(frame.as_str()) {
                            wire::Frame::Ack { .. } => {
                                answered += 1;
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            wire::Frame::Error { reference: Some(_), .. } => answered += 1,
                            _ => {}
                        }
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let mut failed = 0;
    for task in tasks {
        if !matches!(task.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let acked = acked.load(Ordering::Relaxed);
    let summary = format!(
        "{acked} messages of {} B acked into {} rooms in {:.0} s",
        args.size,
        args.rooms,
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        bail!("{summary}; {failed} of {CONNECTIONS} connections failed");
    }
    Ok(summary)
}
