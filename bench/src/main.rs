//! `whisper-bench`: a load generator speaking protocol v1. It opens many
//! connections to one or more gateways, spreads them over rooms, sends at a
//! steady rate for a bounded time and reports throughput and end-to-end
//! latency (send to delivery on every member). Loopback targets only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

/// Load generator for WhisperRooms gateways.
#[derive(Debug, Parser)]
#[command(name = "whisper-bench", version)]
struct Args {
    /// Gateway WebSocket URLs; clients are spread over them
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
    url: Vec<String>,
    /// Connections
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Rooms; client i joins room i % rooms
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Messages per second each client sends
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// How long clients send
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Bytes of text per message
    #[arg(long, default_value_t = 100)]
    size: usize,
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for url in &args.url {
        let host = url
            .split("//")
            .nth(1)
            .unwrap_or("")
            .split([':', '/'])
            .next()
            .unwrap_or("");
        if !(host == "localhost" || host.starts_with("127.") || host == "[::1]") {
            bail!("{url}: whisper-bench only targets loopback addresses");
        }
    }
    if args.rate <= 0.0 || args.clients == 0 || args.rooms == 0 {
        bail!("--clients, --rooms and --rate must be positive");
    }
    let start = Instant::now();
    let stats = Arc::new(Stats::default());
    let mut sockets = Vec::new();
    for i in 0..args.clients {
        let url = &args.url[i % args.url.len()];
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
            .await
            .with_context(|| format!("connect {url}"))?;
        ws.send(Message::text(
            json!({"type": "hello", "name": format!("bench-{i}")}).to_string(),
        ))
        .await?;
        ws.send(Message::text(
            json!({"type": "join", "room": format!("bench-{}", i % args.rooms)}).to_string(),
        ))
        .await?;
        sockets.push(ws);
    }
    let connected = start.elapsed();
    // Wait until every client is in its room.
    let mut clients = Vec::new();
    for mut ws in sockets {
        loop {
            let frame = ws.next().await.context("closed while joining")??;
            if let Message::Text(text) = frame
                && serde_json::from_str::<Value>(&text)?["type"] == "joined"
            {
                break;
            }
        }
        clients.push(ws);
    }
    let epoch = Instant::now();
    let sending = args.duration;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let padding = "x".repeat(args.size.saturating_sub(24));
    let mut tasks = Vec::new();
    for (i, ws) in clients.into_iter().enumerate() {
        let stats = stats.clone();
        let padding = padding.clone();
        let room = format!("bench-{}", i % args.rooms);
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let reader_stats = stats.clone();
            let reader = tokio::spawn(async move {
                while let Some(Ok(Message::Text(text))) = stream.next().await {
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    match frame["type"].as_str() {
                        Some("message") => {
                            let sent_us = frame["text"]
                                .as_str()
                                .and_then(|t| t.split(' ').next())
                                .and_then(|t| t.parse::<u64>().ok());
                            if let Some(sent_us) = sent_us {
                                let now = epoch.elapsed().as_micros() as u64;
                                reader_stats.latencies_us.lock().await.push(now.saturating_sub(sent_us));
                            }
                            reader_stats.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("ack") => {
                            reader_stats.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("error") => {
                            reader_stats.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            });
            // Spread the first sends over one interval.
            tokio::time::sleep(interval.mul_f64((i % 100) as f64 / 100.0)).await;
            let mut tick = tokio::time::interval(interval);
            while epoch.elapsed() < sending {
                tick.tick().await;
                let text = format!("{} {padding}", epoch.elapsed().as_micros());
                let frame = json!({"type": "send", "room": room, "text": text});
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            // Let the last messages arrive, then hang up.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = sink.close().await;
            reader.abort();
        }));
    }
    for task in tasks {
        task.await?;
    }
    report(&args, &stats, connected, epoch.elapsed()).await;
    Ok(())
}

async fn report(args: &Args, stats: &Stats, connected: Duration, elapsed: Duration) {
    let sent = stats.sent.load(Ordering::Relaxed);
    let acked = stats.acked.load(Ordering::Relaxed);
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let members = args.clients as f64 / args.rooms as f64;
    let expected = (acked as f64 * members).round() as u64;
    let mut latencies = stats.latencies_us.lock().await.clone();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    let seconds = args.duration.as_secs_f64();
    let lines = [
        format!(
            "clients            {} over {} gateway(s), {} rooms",
            args.clients,
            args.url.len(),
            args.rooms
        ),
        format!("connect+hello      {:.2} s", connected.as_secs_f64()),
        format!("sent               {sent} ({:.0}/s)", sent as f64 / seconds),
        format!("acked              {acked}"),
        format!("refused            {}", stats.refused.load(Ordering::Relaxed)),
        format!(
            "delivered          {delivered} of ~{expected} expected ({:.0}/s)",
            delivered as f64 / seconds
        ),
        format!(
            "latency ms         p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
            pct(0.5),
            pct(0.95),
            pct(0.99),
            pct(1.0)
        ),
        format!("run                {:.1} s", elapsed.as_secs_f64()),
    ];
    for line in lines {
        eprintln!("{line}");
    }
}
