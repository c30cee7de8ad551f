//! `whisper-bench`: a load generator for WhisperRooms gateways, and for
//! Centrifugo beside them, so both get the same connections, rooms and rates
//! in one run.
//!
//! `whisper-bench run` opens N WebSocket connections (from several source
//! addresses of 127.0.0.0/8 when N exceeds what one address should carry),
//! spreads them over R rooms, optionally fills each room with history first,
//! sends M messages/s of S bytes in total for T seconds, and reports connect
//! rate, join latency, messages sent/acked/delivered, deliveries per second,
//! end-to-end latency (send to receive, per delivered copy), errors by code,
//! and the servers' RSS and CPU read from `/proc`. `whisper-bench table`
//! turns the JSON lines of several runs into one comparison table.
//!
//! `whisper-bench chaos` keeps members chatting through one fault (a
//! command it runs) and checks that nothing acked was lost or doubled;
//! `whisper-bench attack` is the misbehaving client of some faults;
//! `whisper-bench chaos-table` prints their rows as one table.
//!
//! It only ever targets loopback addresses, and every phase is bounded in
//! time: it stops by itself.
//!
//! # Layout
//! - `wire`: the two protocols' frames.
//! - `client`: one connection's task.
//! - `chaos`: members that ride out a fault, and the reliability table.
//! - `attack`: clients that misbehave on purpose.
//! - `procfs`: RSS and CPU of the servers under test.
//! - `stats`: percentiles.
//! - `table`: the comparison table.

mod attack;
mod chaos;
mod client;
mod procfs;
mod stats;
mod table;
mod wire;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::client::{Client, Command, Report, Shared};
use crate::stats::Percentiles;
use crate::wire::Protocol;

/// Load generator for WhisperRooms gateways (and Centrifugo, for comparison).
#[derive(Debug, Parser)]
#[command(name = "whisper-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs one scenario and reports it.
    Run(Args),
    /// Prints the comparison table of the JSON lines in FILE (from `run --json`).
    Table {
        file: std::path::PathBuf,
        /// Markdown instead of plain text.
        #[arg(long)]
        markdown: bool,
    },
    /// Keeps members chatting through one fault and reports what it cost.
    Chaos(chaos::Args),
    /// A client that misbehaves on purpose, for a bounded time.
    Attack(attack::Args),
    /// Prints the reliability table of the JSON lines in FILE (from `chaos --json`).
    ChaosTable {
        file: std::path::PathBuf,
        /// Markdown instead of plain text.
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Server WebSocket URLs (loopback only); connections are spread over them
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
    url: Vec<String>,
    /// Protocol of the servers
    #[arg(long, value_enum, default_value_t = Protocol::Whisper)]
    protocol: Protocol,
    /// Connections
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Rooms; connection i joins room i % rooms
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Messages per second sent in total, spread over all connections (0: idle)
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Bytes of text per message
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// How long to send (or, idle, to hold the connections), measured
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long to send first without measuring (JIT, caches, new partitions)
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Messages stored in each room before the connections join it
    #[arg(long, default_value_t = 0)]
    history: usize,
    /// Pids of the servers, to report their memory and CPU
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Scenario name for the report
    #[arg(long, default_value = "run")]
    label: String,
    /// Connections opened at once
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Connections per source address (127.x.y.z); more use further addresses
    #[arg(long, default_value_t = 10_000)]
    per_source: usize,
    /// Print the report as one JSON line on stdout too
    #[arg(long)]
    json: bool,
    /// Exit 1 unless every acked message reached every member and nothing was refused
    #[arg(long)]
    check: bool,
}

/// How long connecting, seeding and draining may take at most.
const PHASE_LIMIT: Duration = Duration::from_secs(120);
/// How long to wait after the last send for deliveries still on their way.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run(args) => run(args).await,
        Cmd::Table { file, markdown } => {
            writeln!(std::io::stdout(), "{}", table::render(&json_lines(&file)?, markdown))?;
            Ok(())
        }
        Cmd::Chaos(args) => {
            let json = args.json;
            let row = chaos::run(args).await?;
            eprintln!("{}", chaos::human(&row));
            if json {
                writeln!(std::io::stdout(), "{row}")?;
            }
            Ok(())
        }
        Cmd::Attack(args) => attack::run(args).await,
        Cmd::ChaosTable { file, markdown } => {
            writeln!(std::io::stdout(), "{}", chaos::table(&json_lines(&file)?, markdown))?;
            Ok(())
        }
    }
}

/// The JSON documents of a file, one a line.
fn json_lines(file: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()
        .context("parse runs")
}

fn check_args(args: &Args) -> anyhow::Result<()> {
    for url in &args.url {
        if !is_loopback(url) {
            bail!("{url}: whisper-bench only targets loopback addresses");
        }
    }
    if args.clients == 0 || args.rooms == 0 || args.rooms > args.clients {
        bail!("--clients and --rooms must be positive, with at least one client per room");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a number of messages per second, 0 or more");
    }
    if args.size < 24 {
        bail!("--size must be at least 24 bytes (the send time is written into the text)");
    }
    if args.per_source == 0 || args.per_source > 25_000 {
        bail!("--per-source must be 1-25000 (one address has about 28,000 ephemeral ports)");
    }
    Ok(())
}

/// Whether a `ws://host:port/path` URL names a loopback address.
pub(crate) fn is_loopback(url: &str) -> bool {
    let authority = url.split("//").nth(1).unwrap_or("").split('/').next().unwrap_or("");
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Connections in each room: connection i joins room i % rooms.
fn room_sizes(clients: usize, rooms: usize) -> Vec<u64> {
    (0..rooms).map(|r| (clients - r).div_ceil(rooms) as u64).collect()
}

/// The source address of connection `i`: a fresh block of 127.0.0.0/8 per
/// run (so ports still in TIME_WAIT from an earlier run do not collide).
pub(crate) fn source_address(base: u32, per_source: usize, i: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(base + (i / per_source) as u32);
    SocketAddr::new(IpAddr::V4(ip), 0)
}

async fn run(args: Args) -> anyhow::Result<()> {
    check_args(&args)?;
    let protocol = args.protocol;
    let rooms: Vec<Arc<str>> = (0..args.rooms).map(|r| format!("bench-{r}").into()).collect();
    let members = room_sizes(args.clients, args.rooms);
    let shared = Arc::new(Shared::new(args.rooms, !args.warmup.is_zero()));
    let before: Vec<_> = args.pid.iter().map(|&p| procfs::sample(p)).collect();
    // 127.<pid-derived>.0.1 onwards: another run's sockets are elsewhere.
    let base = u32::from(Ipv4Addr::new(127, 100 + (std::process::id() % 100) as u8, 0, 1));

    if args.history > 0 {
        let started = Instant::now();
        tokio::time::timeout(PHASE_LIMIT, seed(&args, &rooms, base + 200))
            .await
            .context("storing history took too long")??;
        eprintln!(
            "stored {} messages in each of {} rooms in {:.1} s",
            args.history,
            args.rooms,
            started.elapsed().as_secs_f64()
        );
    }

    // Connect everyone, `connect_concurrency` at a time.
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut tasks = Vec::with_capacity(args.clients);
    let mut commands = Vec::with_capacity(args.clients);
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(args.clients);
    let (stop, stopped) = watch::channel(false);
    for i in 0..args.clients {
        let (tx, rx) = mpsc::channel(64);
        commands.push(tx);
        let client = Client {
            protocol,
            url: args.url[i % args.url.len()].clone(),
            source: source_address(base, args.per_source, i),
            name: format!("bench-{i}"),
            room: rooms[i % args.rooms].clone(),
            room_index: i % args.rooms,
            size: args.size,
            shared: shared.clone(),
            stop: stopped.clone(),
        };
        let permits = permits.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await.expect("semaphore is never closed");
            client.run(rx, ready, permit).await
        }));
    }
    drop(ready_tx);
    let mut connect_errors = BTreeMap::<String, u64>::new();
    let connecting = async {
        for _ in 0..args.clients {
            match ready_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => *connect_errors.entry(format!("{e:#}")).or_default() += 1,
                None => break,
            }
        }
    };
    if tokio::time::timeout(PHASE_LIMIT, connecting).await.is_err() {
        bail!("connecting {} clients took longer than {PHASE_LIMIT:?}", args.clients);
    }
    let connect_time = started.elapsed();
    if !connect_errors.is_empty() {
        eprintln!("connect errors: {connect_errors:?}");
    }

    // Let the servers settle, then read their memory with everyone connected.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connected: Vec<_> = args.pid.iter().map(|&p| procfs::sample(p)).collect();

    // Send `rate` messages per second in total, round-robin over the
    // connections: first the warm-up, then the measured time. Only messages
    // sent in the measured time count (their texts carry when).
    let warmup_start = Instant::now();
    let mut connected = connected;
    let mut load_start = warmup_start;
    let mut measuring = args.warmup.is_zero();
    let mut dispatched = 0u64;
    let mut next = 0usize;
    let mut busy = 0u64;
    let mut peak_rss = vec![0u64; args.pid.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut last_sample = Instant::now();
    while !measuring || load_start.elapsed() < args.duration {
        tick.tick().await;
        if !measuring && warmup_start.elapsed() >= args.warmup {
            measuring = true;
            load_start = Instant::now();
            shared
                .measure_from_us
                .store(shared.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
            connected = args.pid.iter().map(|&p| procfs::sample(p)).collect();
        }
        let due = (args.rate * warmup_start.elapsed().as_secs_f64()) as u64;
        while dispatched < due {
            if commands[next % args.clients].try_send(Command::Send).is_err() && measuring {
                busy += 1;
            }
            dispatched += 1;
            next += 1;
        }
        if last_sample.elapsed() >= Duration::from_millis(250) {
            last_sample = Instant::now();
            for (peak, &pid) in peak_rss.iter_mut().zip(&args.pid) {
                *peak = (*peak).max(procfs::sample(pid).map_or(0, |s| s.rss));
            }
        }
    }
    let load_time = load_start.elapsed();
    let loaded: Vec<_> = args.pid.iter().map(|&p| procfs::sample(p)).collect();
    if busy > 0 {
        connect_errors.insert("not sent: the connection was still busy sending".into(), busy);
    }

    // No more sends; wait for what is still on its way, within DRAIN_LIMIT:
    // until every send is answered and every delivery arrived, twice in a
    // row 100 ms apart (a send may still leave a connection's queue).
    drop(commands);
    let drain_start = Instant::now();
    let mut settled = 0;
    while drain_start.elapsed() < DRAIN_LIMIT && settled < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answered = shared.acked.load(Ordering::Relaxed) + shared.refused.load(Ordering::Relaxed);
        let done = answered >= shared.sent.load(Ordering::Relaxed)
            && shared.delivered.load(Ordering::Relaxed) >= shared.expected(&members);
        settled = if done { settled + 1 } else { 0 };
    }
    stop.send_replace(true);
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        reports.push(task.await.context("client task")?);
    }

    let report = summarize(
        &args,
        &shared,
        &members,
        reports,
        Timing {
            connect: connect_time,
            load: load_time,
        },
        Servers {
            before,
            connected,
            loaded,
            peak_rss,
        },
        connect_errors,
    );
    eprintln!("{}", human(&report));
    if args.json {
        writeln!(std::io::stdout(), "{report}")?;
    }
    if args.check {
        let ok = report["delivered"] == report["expected"]
            && report["acked"] == report["sent"]
            && report["sent"].as_u64() > Some(0)
            && report["errors"].as_object().is_some_and(|e| e.is_empty());
        if !ok {
            bail!("check failed: not every acked message reached every member, or something was refused");
        }
    }
    Ok(())
}

/// Fills each room with `args.history` messages, one connection per room,
/// a few rooms at a time.
async fn seed(args: &Args, rooms: &[Arc<str>], base: u32) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(8));
    let mut tasks = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        let permit = permits.clone().acquire_owned().await?;
        let (url, room, history, size) = (args.url[0].clone(), room.clone(), args.history, args.size);
        let source = source_address(base, args.per_source, i);
        let protocol = args.protocol;
        tasks.push(tokio::spawn(async move {
            let result = client::fill(protocol, &url, source, &room, history, size).await;
            drop(permit);
            result
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

struct Timing {
    connect: Duration,
    load: Duration,
}

/// Server readings: before connecting, with everyone connected, after the load.
struct Servers {
    before: Vec<Option<procfs::Sample>>,
    connected: Vec<Option<procfs::Sample>>,
    loaded: Vec<Option<procfs::Sample>>,
    peak_rss: Vec<u64>,
}

fn summarize(
    args: &Args,
    shared: &Shared,
    members: &[u64],
    reports: Vec<Report>,
    timing: Timing,
    servers: Servers,
    connect_errors: BTreeMap<String, u64>,
) -> Value {
    let mut errors = connect_errors;
    let mut latencies = Vec::new();
    let mut joins = Vec::new();
    let mut closed_early = 0;
    for report in reports {
        latencies.extend(report.latencies_us);
        joins.extend(report.join_us);
        closed_early += u64::from(report.closed_early);
        for (code, n) in report.errors {
            *errors.entry(code).or_default() += n;
        }
    }
    if closed_early > 0 {
        errors.insert("connection closed by the server".into(), closed_early);
    }
    let latency = Percentiles::new(latencies);
    let join = Percentiles::new(joins);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let seconds = timing.load.as_secs_f64();
    let rss_connected: u64 = servers.connected.iter().flatten().map(|s| s.rss).sum();
    let rss_before: u64 = servers.before.iter().flatten().map(|s| s.rss).sum();
    let cpu: Option<f64> = servers
        .connected
        .iter()
        .zip(&servers.loaded)
        .map(|(a, b)| Some(b.as_ref()?.cpu - a.as_ref()?.cpu))
        .sum();
    let cpu_seconds = cpu.filter(|_| !args.pid.is_empty());
    json!({
        "label": args.label,
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "servers": args.url.len(),
        "clients": args.clients,
        "rooms": args.rooms,
        "rate": args.rate,
        "size": args.size,
        "history": args.history,
        "seconds": seconds,
        "connect_seconds": timing.connect.as_secs_f64(),
        "connect_per_second": args.clients as f64 / timing.connect.as_secs_f64(),
        "join_ms": join.summary(),
        "sent": shared.sent.load(Ordering::Relaxed),
        "acked": shared.acked.load(Ordering::Relaxed),
        "delivered": delivered,
        "expected": shared.expected(members),
        "deliveries_per_second": delivered as f64 / seconds,
        "latency_ms": latency.summary(),
        "latency_samples": latency.len(),
        "errors": errors,
        "rss_bytes": rss_connected,
        "rss_peak_bytes": servers.peak_rss.iter().sum::<u64>().max(rss_connected),
        "rss_per_connection_bytes": (rss_connected.saturating_sub(rss_before)) as f64 / args.clients as f64,
        "cpu_cores": cpu_seconds.map(|c| c / seconds),
        "cpu_ms_per_1k_deliveries": cpu_seconds.filter(|_| delivered > 0).map(|c| c * 1e6 / delivered as f64),
    })
}

fn human(r: &Value) -> String {
    let ms = |key: &str| -> String {
        let v = r[key]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect::<Vec<_>>());
        match v.as_deref() {
            Some([p50, p90, p99, p999, max]) => {
                format!("p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  p99.9 {p999:.2}  max {max:.2}")
            }
            _ => "-".into(),
        }
    };
    let num = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    let mib = |key: &str| num(key) / (1024.0 * 1024.0);
    [
        format!(
            "scenario           {} ({}, {} server(s))",
            r["label"].as_str().unwrap_or(""),
            r["protocol"].as_str().unwrap_or(""),
            r["servers"]
        ),
        format!(
            "clients            {} in {} rooms; {} msg/s of {} B for {:.1} s",
            r["clients"],
            r["rooms"],
            r["rate"],
            r["size"],
            num("seconds")
        ),
        format!(
            "connect            {:.2} s ({:.0}/s)",
            num("connect_seconds"),
            num("connect_per_second")
        ),
        format!("join latency ms    {}", ms("join_ms")),
        format!(
            "messages           sent {}  acked {}  delivered {} of {} expected ({:.0}/s)",
            r["sent"],
            r["acked"],
            r["delivered"],
            r["expected"],
            num("deliveries_per_second")
        ),
        format!("latency ms         {}", ms("latency_ms")),
        format!("errors             {}", r["errors"]),
        format!(
            "server memory      {:.1} MiB connected, {:.1} MiB peak, {:.0} B per connection",
            mib("rss_bytes"),
            mib("rss_peak_bytes"),
            num("rss_per_connection_bytes")
        ),
        format!(
            "server cpu         {:.2} cores, {:.1} ms per 1k deliveries",
            num("cpu_cores"),
            num("cpu_ms_per_1k_deliveries")
        ),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, anyhow::Error> {
        let mut argv = vec!["whisper-bench", "run"];
        argv.extend(extra);
        let Cmd::Run(args) = Cli::try_parse_from(argv)?.command else {
            unreachable!()
        };
        check_args(&args)?;
        Ok(args)
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(args(&["--url", "ws://127.0.0.1:8080/v1/ws"]).is_ok());
        assert!(args(&["--url", "ws://localhost:8080/v1/ws"]).is_ok());
        assert!(args(&["--url", "ws://[::1]:8080/v1/ws"]).is_ok());
        assert!(args(&["--url", "ws://10.0.0.1:8080/v1/ws"]).is_err());
        assert!(args(&["--url", "ws://example.com/v1/ws"]).is_err());
        assert!(args(&["--url", "ws://127.0.0.1.example.com/v1/ws"]).is_err());
        assert!(args(&["--url", "ws://127.0.0.1:1/,ws://10.1.1.1:1/"]).is_err());
    }

    #[test]
    fn source_addresses_move_on_every_per_source_connections() {
        let base = u32::from(Ipv4Addr::new(127, 100, 0, 1));
        assert_eq!(source_address(base, 2, 0).to_string(), "127.100.0.1:0");
        assert_eq!(source_address(base, 2, 1).to_string(), "127.100.0.1:0");
        assert_eq!(source_address(base, 2, 2).to_string(), "127.100.0.2:0");
    }

    #[test]
    fn rooms_get_every_client_once() {
        assert_eq!(room_sizes(10, 3), [4, 3, 3]);
        assert_eq!(room_sizes(4, 4), [1, 1, 1, 1]);
    }
}
