//! `whisper-bench chaos`: steady chat through one fault, and what it cost.
//!
//! Members chat the way the protocol tells clients to: every message has a
//! fresh `cid` and is retried with the same `cid` after `unavailable` or a
//! connection lost before its `ack`; a member whose connection ends connects
//! to the next gateway and re-joins with `since` = the last id it saw. The
//! fault is a command (run with `sh -c`); the fault lasts while it runs.
//! Afterwards the members' records are compared: every acked message must
//! have reached every member of its room exactly once, and the room's member
//! list (asked through a probe connection) must name exactly who is there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Socket, connect};
use crate::stats::Percentiles;
use crate::wire::{self, Delivery, Frame};
use crate::{procfs, source_address};

/// Time to connect, say hello and join.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before connecting again after a connection ended.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// Pause before a refused send (or join) is tried again.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// A send unanswered this long means the connection is dead: move on.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// After the load: how long pending sends may still be retried, and how
/// long deliveries may take to arrive.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);
const SETTLE_LIMIT: Duration = Duration::from_secs(15);
/// Connections per source address (the gateways cap sockets per address).
const PER_SOURCE: usize = 50;
/// The members' first source address, and the presence probe's.
const MEMBER_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 60, 0, 1);
const PROBE_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 61, 0, 1);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Gateway WebSocket URLs (loopback only); a member that loses its
    /// connection moves on to the next one
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
    url: Vec<String>,
    /// Members (one connection each)
    #[arg(long, default_value_t = 90)]
    members: usize,
    /// Rooms: the first half spread over every gateway, each of the others
    /// on one gateway only
    #[arg(long, default_value_t = 30)]
    rooms: usize,
    /// Messages per second sent in total
    #[arg(long, default_value_t = 60.0)]
    rate: f64,
    /// Bytes of text per message
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Steady load before the fault
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    before: Duration,
    /// Steady load after the fault
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    after: Duration,
    /// The fault: a shell command; the fault lasts while it runs. Its last
    /// line of output is shown with the row; a non-zero exit fails the row
    #[arg(long)]
    fault: String,
    /// The fault command is stopped (and the row fails) after this
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    fault_limit: Duration,
    /// Index in --url of the gateway the fault hits: rooms with a member
    /// there are affected, the others' latency is the row's
    #[arg(long)]
    faulted_gateway: Option<usize>,
    /// Recovery counts from the fault's start (an instant fault such as a
    /// kill) instead of its end (a service coming back)
    #[arg(long)]
    recovery_from_start: bool,
    /// Fail unless recovered within this
    #[arg(long, value_parser = humantime::parse_duration)]
    recover_within: Option<Duration>,
    /// Fail unless every room lists exactly its members within this of the
    /// fault's end
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    presence_within: Duration,
    /// Fail when the p99 latency of unaffected rooms during the fault is above this
    #[arg(long)]
    p99_bound_ms: Option<f64>,
    /// Pids of gateways that must survive the row; their RSS is read too
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Fail when a gateway's RSS goes above this many MiB
    #[arg(long)]
    rss_bound_mib: Option<f64>,
    /// Name of the row
    #[arg(long)]
    label: String,
    /// Print the row as one JSON line on stdout too
    #[arg(long)]
    pub(crate) json: bool,
}

/// What every member shares with the run.
struct Run {
    urls: Vec<String>,
    epoch: Instant,
    /// Time between one member's messages.
    period: Duration,
    size: usize,
    /// Makes this run's `cid`s its own.
    nonce: String,
    /// Cleared when the load ends: no new messages, pending ones still retried.
    sending: AtomicBool,
    /// Messages not acked yet, over all members.
    pending: AtomicU64,
    /// Per room: acked messages, and distinct deliveries to members.
    acked: Vec<AtomicU64>,
    delivered: Vec<AtomicU64>,
    /// Members that have joined at least once.
    joined: AtomicU64,
    /// Each member's user id while it is in its room.
    present: Mutex<Vec<Option<String>>>,
}

impl Run {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// A message not acked yet.
struct Pending {
    cid: String,
    text: String,
    in_flight_since: Option<Instant>,
    retry_at: Option<Instant>,
}

/// What one member saw.
#[derive(Default)]
struct Record {
    room: usize,
    sent: u64,
    attempts: u64,
    /// Ids acked to this member, with when.
    acked: Vec<(String, u64)>,
    /// Every id delivered, with the send time from its text and when it arrived.
    delivered: HashMap<String, (Option<u64>, u64)>,
    /// Deliveries of an id already delivered.
    duplicated: u64,
    /// History entries already delivered before (a re-join's history).
    replayed: u64,
    errors: BTreeMap<String, u64>,
    /// Times something went wrong (connection lost, connect failed, send refused).
    trouble_us: Vec<u64>,
    /// User ids, one per session, in order.
    users: Vec<String>,
    /// User ids presence told this member joined (or listed on join) or left.
    seen_joined: HashSet<String>,
    seen_left: HashSet<String>,
    /// The member list of each `joined`, with when it came: one that no
    /// longer lists a session shows it gone, as an event would.
    member_lists: Vec<(u64, HashSet<String>)>,
}

struct Member {
    index: usize,
    room: usize,
    room_id: String,
    home: usize,
    run: Arc<Run>,
    stop: watch::Receiver<bool>,
    record: Record,
    pending: Option<Pending>,
    seq: u64,
    last_seen: Option<String>,
}

/// How a session ended.
enum Ended {
    Stop,
    Lost(String),
}

impl Member {
    async fn run(mut self) -> Record {
        let n = self.run.urls.len();
        let mut gateway = self.home;
        let mut first = true;
        let source = source_address(u32::from(MEMBER_SOURCE), PER_SOURCE, self.index);
        while !*self.stop.borrow() {
            let url = self.run.urls[gateway].clone();
            let ended = match timeout(OPEN_TIMEOUT, self.open(&url, source)).await {
                Ok(Ok(ws)) => {
                    if first {
                        first = false;
                        self.run.joined.fetch_add(1, Ordering::Relaxed);
                    }
                    self.chat(ws).await
                }
                Ok(Err(e)) => Ended::Lost(format!("{e:#}")),
                Err(_) => Ended::Lost("no session in time".into()),
            };
            self.run.present.lock().expect("not poisoned")[self.index] = None;
            match ended {
                Ended::Stop => break,
                Ended::Lost(why) => {
                    self.record.trouble_us.push(self.run.now_us());
                    *self.record.errors.entry(reason(&why)).or_default() += 1;
                    if let Some(p) = &mut self.pending {
                        p.in_flight_since = None;
                    }
                }
            }
            gateway = (gateway + 1) % n;
            tokio::select! {
                _ = self.stop.changed() => {}
                () = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
        self.record
    }

    /// Connects, says hello and joins the room with `since`.
    async fn open(&mut self, url: &str, source: SocketAddr) -> anyhow::Result<Socket> {
        let mut ws = connect(url, source, None).await?;
        ws.send(Message::text(wire::hello(&format!("m-{}", self.index))))
            .await?;
        loop {
            if let Frame::Welcome { user } = next_frame(&mut ws).await? {
                self.record.users.push(user);
                break;
            }
        }
        loop {
            ws.send(Message::text(wire::join(&self.room_id, self.last_seen.as_deref())))
                .await?;
            loop {
                match next_frame(&mut ws).await? {
                    Frame::Joined { history, members } => {
                        for d in history {
                            self.deliver(d, true);
                        }
                        let members: HashSet<String> = members.into_iter().collect();
                        self.record.seen_joined.extend(members.iter().cloned());
                        self.record.member_lists.push((self.run.now_us(), members));
                        let user = self.record.users.last().cloned();
                        self.run.present.lock().expect("not poisoned")[self.index] = user;
                        return Ok(ws);
                    }
                    // The presence store refused the join: try again.
                    Frame::Error { code, .. } => {
                        *self.record.errors.entry(format!("join: {code}")).or_default() += 1;
                        self.record.trouble_us.push(self.run.now_us());
                        tokio::time::sleep(RETRY_DELAY).await;
                        break;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends on schedule and records what arrives, until the connection
    /// ends or the run stops.
    async fn chat(&mut self, mut ws: Socket) -> Ended {
        let stagger = self.run.period.mul_f64((self.index % 97) as f64 / 97.0);
        let mut next_send = Instant::now() + stagger;
        loop {
            if let Some(p) = &self.pending
                && p.in_flight_since.is_none()
                && p.retry_at.is_none_or(|t| t <= Instant::now())
            {
                let frame = wire::send_once(&self.room_id, &p.text, &p.cid);
                if let Err(e) = ws.send(Message::text(frame)).await {
                    return Ended::Lost(e.to_string());
                }
                self.record.attempts += 1;
                let p = self.pending.as_mut().expect("checked above");
                p.in_flight_since = Some(Instant::now());
                p.retry_at = None;
            }
            let wake = match &self.pending {
                Some(Pending {
                    in_flight_since: Some(t),
                    ..
                }) => next_send.min(*t + ANSWER_TIMEOUT),
                Some(Pending { retry_at: Some(t), .. }) => next_send.min(*t),
                _ => next_send,
            };
            tokio::select! {
                _ = self.stop.changed() => {
                    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
                    return Ended::Stop;
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    if let Some(Pending { in_flight_since: Some(t), .. }) = &self.pending
                        && t.elapsed() >= ANSWER_TIMEOUT
                    {
                        return Ended::Lost("send unanswered".into());
                    }
                    if Instant::now() >= next_send {
                        next_send += self.run.period;
                        self.new_message();
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.handle(wire::frame(text.as_str())),
                    Some(Ok(Message::Close(close))) => {
                        let code = close.map_or("no code".into(), |c| u16::from(c.code).to_string());
                        return Ended::Lost(format!("closed {code}"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Lost("closed".into()),
                },
            }
        }
    }

    /// Starts a new message unless one is still pending or the load is over.
    fn new_message(&mut self) {
        if self.pending.is_some() || !self.run.sending.load(Ordering::Relaxed) {
            return;
        }
        self.seq += 1;
        let cid = format!("{}-{}-{}", self.run.nonce, self.index, self.seq);
        let head = format!("{:020} {cid} ", self.run.now_us());
        let text = format!("{head}{}", "x".repeat(self.run.size.saturating_sub(head.len()).max(1)));
        self.record.sent += 1;
        self.run.pending.fetch_add(1, Ordering::Relaxed);
        self.pending = Some(Pending {
            cid,
            text,
            in_flight_since: None,
            retry_at: None,
        });
    }

    fn handle(&mut self, frame: Frame) {
        let mine = |reference: &Option<String>, pending: &Option<Pending>| matches!((reference, pending), (Some(r), Some(p)) if *r == p.cid);
        match frame {
            Frame::Message(d) => self.deliver(d, false),
            Frame::Ack { reference, id } if mine(&reference, &self.pending) => {
                self.pending = None;
                self.run.pending.fetch_sub(1, Ordering::Relaxed);
                self.record.acked.push((id, self.run.now_us()));
                self.run.acked[self.room].fetch_add(1, Ordering::Relaxed);
            }
            Frame::Error { code, reference } if mine(&reference, &self.pending) => {
                *self.record.errors.entry(code).or_default() += 1;
                self.record.trouble_us.push(self.run.now_us());
                let p = self.pending.as_mut().expect("matched above");
                p.in_flight_since = None;
                p.retry_at = Some(Instant::now() + RETRY_DELAY);
            }
            Frame::Error { code, .. } => *self.record.errors.entry(code).or_default() += 1,
            Frame::Presence { joined, left } => {
                self.record.seen_joined.extend(joined);
                self.record.seen_left.extend(left);
            }
            Frame::Ack { .. } | Frame::Welcome { .. } | Frame::Joined { .. } | Frame::Other => {}
        }
    }

    fn deliver(&mut self, d: Delivery, from_history: bool) {
        self.last_seen = Some(d.id.clone());
        if self.record.delivered.contains_key(&d.id) {
            if from_history {
                self.record.replayed += 1;
            } else {
                self.record.duplicated += 1;
            }
            return;
        }
        self.record.delivered.insert(d.id, (d.sent_us, self.run.now_us()));
        self.run.delivered[self.room].fetch_add(1, Ordering::Relaxed);
    }
}

/// The next WhisperRooms frame (within the open timeout of the caller).
async fn next_frame(ws: &mut Socket) -> anyhow::Result<Frame> {
    loop {
        match ws.next().await.context("closed by the gateway")?? {
            Message::Text(text) => return Ok(wire::frame(text.as_str())),
            Message::Close(close) => bail!("closed {:?}", close.map(|c| u16::from(c.code))),
            _ => {}
        }
    }
}

/// A connection error as a short counter key.
fn reason(why: &str) -> String {
    let short: String = why.chars().take(60).collect();
    format!("session: {short}")
}

/// Who each room lists that is not there (ghosts), and who is there but
/// not listed (missing), asked through one probe connection.
async fn probe_presence(run: &Run, rooms: &[String]) -> anyhow::Result<(u64, u64)> {
    let source = SocketAddr::new(IpAddr::V4(PROBE_SOURCE), 0);
    let mut last_error = None;
    for url in &run.urls {
        match timeout(Duration::from_secs(20), probe_through(run, url, source, rooms)).await {
            Ok(Ok(found)) => return Ok(found),
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => last_error = Some(anyhow::anyhow!("probe took too long")),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no gateway")))
}

async fn probe_through(run: &Run, url: &str, source: SocketAddr, rooms: &[String]) -> anyhow::Result<(u64, u64)> {
    let mut ws = connect(url, source, None).await?;
    ws.send(Message::text(wire::hello("probe"))).await?;
    let me = loop {
        if let Frame::Welcome { user } = next_frame(&mut ws).await? {
            break user;
        }
    };
    let (mut ghosts, mut missing) = (0, 0);
    // One join per room and no leave: a fresh connection's frame burst
    // covers that many rooms; a refused join is tried again.
    for (r, room) in rooms.iter().enumerate() {
        let listed: HashSet<String> = 'joined: loop {
            ws.send(Message::text(wire::join(room, None))).await?;
            loop {
                match next_frame(&mut ws).await? {
                    Frame::Joined { members, .. } => break 'joined members.into_iter().filter(|m| *m != me).collect(),
                    Frame::Error { code, .. } if code == "rate_limited" => break,
                    Frame::Error { code, .. } => bail!("join refused: {code}"),
                    _ => {}
                }
            }
            tokio::time::sleep(RETRY_DELAY).await;
        };
        let present: HashSet<String> = {
            let present = run.present.lock().expect("not poisoned");
            present
                .iter()
                .enumerate()
                .filter(|(i, _)| i % rooms.len() == r)
                .filter_map(|(_, u)| u.clone())
                .collect()
        };
        ghosts += listed.difference(&present).count() as u64;
        missing += present.difference(&listed).count() as u64;
    }
    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
    Ok((ghosts, missing))
}

/// Runs the fault command; returns when it started and ended (µs), its
/// last line of output, and whether it succeeded.
async fn run_fault(run: &Run, command: &str, limit: Duration) -> (u64, u64, String, bool) {
    let start = run.now_us();
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return (start, run.now_us(), format!("fault command did not start: {e}"), false),
    };
    let mut out = child.stdout.take().expect("piped");
    let finished = timeout(limit, async {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text).await;
        (child.wait().await, text)
    })
    .await;
    let end = run.now_us();
    match finished {
        Ok((status, text)) => {
            let note = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned();
            let ok = status.is_ok_and(|s| s.success());
            (start, end, note, ok)
        }
        Err(_) => (
            start,
            end,
            format!("fault command still running after {limit:?}"),
            false,
        ),
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    for url in &args.url {
        if !crate::is_loopback(url) {
            bail!("{url}: whisper-bench only targets loopback addresses");
        }
    }
    if args.members < args.rooms || args.rooms == 0 || args.rooms > 32 || args.rate <= 0.0 || args.size < 64 {
        bail!(
            "need 1-32 --rooms (the presence probe joins them all), at least one member per room, --rate > 0 and --size >= 64"
        );
    }
    if args.faulted_gateway.is_some_and(|g| g >= args.url.len()) {
        bail!("--faulted-gateway must index --url");
    }
    let gateways = args.url.len();
    let epoch = Instant::now();
    let nonce = format!(
        "r{:x}{:08x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
    );
    let run = Arc::new(Run {
        urls: args.url.clone(),
        epoch,
        period: Duration::from_secs_f64(args.members as f64 / args.rate),
        size: args.size,
        nonce,
        sending: AtomicBool::new(true),
        pending: AtomicU64::new(0),
        acked: (0..args.rooms).map(|_| AtomicU64::new(0)).collect(),
        delivered: (0..args.rooms).map(|_| AtomicU64::new(0)).collect(),
        joined: AtomicU64::new(0),
        present: Mutex::new(vec![None; args.members]),
    });
    let rooms: Vec<String> = (0..args.rooms).map(|r| format!("chaos-{r}")).collect();
    // Member i is in room i % rooms; in a spread room its j-th member is on
    // gateway j % gateways, a local room r has all its members on r % gateways.
    let home = |i: usize| {
        let (room, j) = (i % args.rooms, i / args.rooms);
        if room < args.rooms.div_ceil(2) {
            j % gateways
        } else {
            room % gateways
        }
    };
    let affected: Vec<bool> = (0..args.rooms)
        .map(|r| {
            args.faulted_gateway
                .is_some_and(|g| (0..args.members).any(|i| i % args.rooms == r && home(i) == g))
        })
        .collect();
    let members_in: Vec<u64> = (0..args.rooms)
        .map(|r| (0..args.members).filter(|i| i % args.rooms == r).count() as u64)
        .collect();

    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = (0..args.members)
        .map(|i| {
            let member = Member {
                index: i,
                room: i % args.rooms,
                room_id: rooms[i % args.rooms].clone(),
                home: home(i),
                run: run.clone(),
                stop: stopped.clone(),
                record: Record {
                    room: i % args.rooms,
                    ..Record::default()
                },
                pending: None,
                seq: 0,
                last_seen: None,
            };
            tokio::spawn(member.run())
        })
        .collect();
    let joining = Instant::now();
    while run.joined.load(Ordering::Relaxed) < args.members as u64 {
        if joining.elapsed() > Duration::from_secs(60) {
            stop.send_replace(true);
            bail!(
                "only {} of {} members joined within 60 s",
                run.joined.load(Ordering::Relaxed),
                args.members
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // RSS of the gateways, every 250 ms, for the whole row.
    let peak_rss = Arc::new(Mutex::new(vec![0u64; args.pid.len()]));
    let sampler = {
        let (pids, peak, mut stopped) = (args.pid.clone(), peak_rss.clone(), stopped.clone());
        tokio::spawn(async move {
            loop {
                for (p, &pid) in peak.lock().expect("not poisoned").iter_mut().zip(&pids) {
                    *p = (*p).max(procfs::sample(pid).map_or(0, |s| s.rss));
                }
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        })
    };

    let load_start = run.now_us();
    tokio::time::sleep(args.before).await;
    let (fault_start, fault_end, note, fault_ok) = run_fault(&run, &args.fault, args.fault_limit).await;
    eprintln!(
        "chaos {}: fault ran {:.1} s: {note}",
        args.label,
        (fault_end - fault_start) as f64 / 1e6
    );
    // Presence: asked from the fault's end until every room lists exactly
    // its members (beside the load), and once more after it.
    let presence_deadline = Instant::now() + args.presence_within;
    let watching = {
        let (run, rooms) = (run.clone(), rooms.clone());
        tokio::spawn(async move {
            loop {
                if let Ok((0, 0)) = probe_presence(&run, &rooms).await {
                    return Some(run.now_us().saturating_sub(fault_end) as f64 / 1e6);
                }
                if Instant::now() >= presence_deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    tokio::time::sleep(args.after).await;
    run.sending.store(false, Ordering::Relaxed);
    let load_end = run.now_us();

    // Let pending sends be retried to an answer, then deliveries arrive.
    let drain = Instant::now();
    while run.pending.load(Ordering::Relaxed) > 0 && drain.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settle = Instant::now();
    while settle.elapsed() < SETTLE_LIMIT
        && (0..args.rooms)
            .any(|r| run.delivered[r].load(Ordering::Relaxed) < run.acked[r].load(Ordering::Relaxed) * members_in[r])
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let presence_after = watching.await.context("presence probe")?;
    let (ghosts, missing, probe_error) = match probe_presence(&run, &rooms).await {
        Ok((g, m)) => (g, m, None),
        Err(e) => (0, 0, Some(format!("{e:#}"))),
    };

    stop.send_replace(true);
    let mut records = Vec::with_capacity(tasks.len());
    for task in tasks {
        records.push(task.await.context("member task")?);
    }
    let _ = sampler.await;
    let exited: Vec<u32> = args
        .pid
        .iter()
        .copied()
        .filter(|&p| procfs::sample(p).is_none())
        .collect();
    let peak_rss = peak_rss.lock().expect("not poisoned").clone();

    let window = Window {
        load_start,
        fault_start,
        fault_end,
        load_end,
    };
    let mut row = summarize(&args, &records, &affected, &window);
    row["fault_note"] = json!(note);
    row["presence_after_s"] = json!(presence_after);
    row["ghosts"] = json!(ghosts);
    row["missing"] = json!(missing);
    row["rss_peak_mib"] = json!(peak_rss.iter().map(|&b| b as f64 / 1048576.0).collect::<Vec<_>>());
    row["gateways_exited"] = json!(exited);

    let mut failures: Vec<String> = Vec::new();
    if !fault_ok {
        failures.push(format!("fault: {note}"));
    }
    let num = |k: &str| row[k].as_u64().unwrap_or(0);
    if num("acked") == 0 {
        failures.push("nothing acked".into());
    }
    if num("lost") > 0 {
        failures.push(format!("{} acked messages lost", num("lost")));
    }
    if num("duplicated") > 0 {
        failures.push(format!("{} duplicate deliveries", num("duplicated")));
    }
    if presence_after.is_none() {
        failures.push(format!(
            "presence still wrong {:.0} s after the fault",
            args.presence_within.as_secs_f64()
        ));
    }
    if let Some(e) = probe_error {
        failures.push(format!("presence not readable at the end: {e}"));
    } else if ghosts + missing > 0 {
        failures.push(format!("presence at the end: {ghosts} ghosts, {missing} missing"));
    }
    if num("left_back_unseen") > 0 {
        failures.push(format!(
            "{} moved members not seen left and back by their rooms",
            num("left_back_unseen")
        ));
    }
    match row["recovery_s"].as_f64() {
        None => failures.push("a member never recovered".into()),
        Some(s) if args.recover_within.is_some_and(|w| s > w.as_secs_f64()) => failures.push(format!(
            "recovered in {s:.1} s, more than {:.0} s",
            args.recover_within.unwrap_or_default().as_secs_f64()
        )),
        Some(_) => {}
    }
    if let (Some(bound), Some(p99)) = (args.p99_bound_ms, row["p99_during_ms"].as_f64())
        && p99 > bound
    {
        failures.push(format!(
            "p99 of unaffected rooms {p99:.0} ms above the bound {bound:.0} ms"
        ));
    }
    if !exited.is_empty() {
        failures.push(format!("gateway process(es) {exited:?} exited"));
    }
    if let Some(bound) = args.rss_bound_mib
        && let Some(peak) = peak_rss.iter().map(|&b| b as f64 / 1048576.0).reduce(f64::max)
        && peak > bound
    {
        failures.push(format!("RSS peak {peak:.0} MiB above the bound {bound:.0} MiB"));
    }
    row["failures"] = json!(failures);
    row["ok"] = json!(failures.is_empty());
    Ok(row)
}

/// The row's phases, in µs from the run's epoch.
struct Window {
    load_start: u64,
    fault_start: u64,
    fault_end: u64,
    load_end: u64,
}

fn summarize(args: &Args, records: &[Record], affected: &[bool], w: &Window) -> Value {
    let rooms = affected.len();
    let mut acked_in: Vec<HashSet<&str>> = vec![HashSet::new(); rooms];
    let mut errors = BTreeMap::<String, u64>::new();
    let (mut sent, mut attempts, mut duplicated, mut replayed, mut delivered) = (0, 0, 0, 0, 0);
    for r in records {
        sent += r.sent;
        attempts += r.attempts;
        duplicated += r.duplicated;
        replayed += r.replayed;
        acked_in[r.room].extend(r.acked.iter().map(|(id, _)| id.as_str()));
        for (code, n) in &r.errors {
            *errors.entry(code.clone()).or_default() += n;
        }
    }
    // Lost: an acked id some member of its room never got.
    let mut lost_ids: HashSet<&str> = HashSet::new();
    let mut expected = 0;
    for r in records {
        for id in &acked_in[r.room] {
            expected += 1;
            if r.delivered.contains_key(*id) {
                delivered += 1;
            } else {
                lost_ids.insert(id);
            }
        }
    }
    // Latency of unaffected rooms' messages sent before and during the fault.
    let (mut before, mut during) = (Vec::new(), Vec::new());
    for r in records.iter().filter(|r| !affected[r.room]) {
        for &(sent_us, at) in r.delivered.values() {
            let Some(sent_us) = sent_us else { continue };
            let latency = at.saturating_sub(sent_us).min(u64::from(u32::MAX)) as u32;
            if (w.load_start..w.fault_start).contains(&sent_us) {
                before.push(latency);
            } else if (w.fault_start..w.fault_end.max(w.fault_start + 1)).contains(&sent_us) {
                during.push(latency);
            }
        }
    }
    let (before, during) = (Percentiles::new(before), Percentiles::new(during));
    // Recovery: per member, from its last trouble to its next ack; the row's
    // is the latest, counted from the fault's start or end.
    let reference = if args.recovery_from_start {
        w.fault_start
    } else {
        w.fault_end
    };
    // Each member must also receive again: a message sent after the
    // reference, counted when it arrived.
    let mut recovered_at = Some(reference);
    for r in records {
        let received = r
            .delivered
            .values()
            .filter(|(sent, _)| sent.is_some_and(|s| s >= reference))
            .map(|&(_, at)| at)
            .min();
        let acked_again = match r.trouble_us.iter().filter(|&&t| t >= w.fault_start).max() {
            Some(&last) => r.acked.iter().map(|&(_, at)| at).find(|&at| at > last),
            None => Some(reference),
        };
        recovered_at = match (recovered_at, received, acked_again) {
            (Some(a), Some(b), Some(c)) => Some(a.max(b).max(c)),
            _ => None,
        };
    }
    // Moved members: their rooms saw each old session leave (an event, or a
    // member list after the move without it: a member that moved too joined
    // again after the event) and the new one join.
    let mut left_back_unseen = 0;
    for (i, r) in records.iter().enumerate() {
        let Some((new, old)) = r.users.split_last() else {
            continue;
        };
        if old.is_empty() {
            continue;
        }
        let moved_at = r
            .trouble_us
            .iter()
            .copied()
            .filter(|&t| t >= w.fault_start)
            .min()
            .unwrap_or(w.fault_start);
        let others = records.iter().enumerate().filter(|(j, o)| *j != i && o.room == r.room);
        let (mut left, mut joined) = (HashSet::new(), HashSet::new());
        for (_, o) in others {
            left.extend(o.seen_left.iter());
            joined.extend(o.seen_joined.iter());
            for (at, members) in &o.member_lists {
                if *at > moved_at {
                    left.extend(old.iter().filter(|u| !members.contains(*u)));
                }
            }
        }
        if !joined.contains(new) || old.iter().any(|u| !left.contains(u)) {
            eprintln!(
                "chaos: room {} member {i}: new {new} seen joined {}, old {old:?} seen left {:?}, others {}",
                r.room,
                joined.contains(new),
                old.iter().map(|u| left.contains(u)).collect::<Vec<_>>(),
                records.iter().filter(|o| o.room == r.room).count() - 1
            );
            left_back_unseen += 1;
        }
    }
    let moved = records.iter().filter(|r| r.users.len() > 1).count();
    json!({
        "label": args.label,
        "members": records.len(),
        "rooms": rooms,
        "gateways": args.url.len(),
        "rate": args.rate,
        "load_s": (w.load_end - w.load_start) as f64 / 1e6,
        "fault_s": (w.fault_end - w.fault_start) as f64 / 1e6,
        "sent": sent,
        "attempts": attempts,
        "acked": acked_in.iter().map(|a| a.len() as u64).sum::<u64>(),
        "delivered": delivered,
        "expected": expected,
        "lost": lost_ids.len(),
        "duplicated": duplicated,
        "replayed": replayed,
        "moved": moved,
        "left_back_unseen": left_back_unseen,
        "recovery_s": recovered_at.map(|t| t.saturating_sub(reference) as f64 / 1e6),
        "affected_rooms": affected.iter().filter(|&&a| a).count(),
        "p99_before_ms": (before.len() > 0).then(|| before.ms(0.99)),
        "p99_during_ms": (during.len() > 0).then(|| during.ms(0.99)),
        "errors": errors,
    })
}

/// The row for a person: one line per fact.
pub(crate) fn human(row: &Value) -> String {
    format!(
        "{}: sent {} acked {} delivered {}/{} lost {} duplicated {} (replayed {}), recovery {} s, p99 {} ms before / {} ms during, presence after {} s (ghosts {}, missing {}), moved {}, errors {}, RSS MiB {}, fault: {}\n  {}",
        row["label"].as_str().unwrap_or(""),
        row["sent"],
        row["acked"],
        row["delivered"],
        row["expected"],
        row["lost"],
        row["duplicated"],
        row["replayed"],
        row["recovery_s"],
        row["p99_before_ms"],
        row["p99_during_ms"],
        row["presence_after_s"],
        row["ghosts"],
        row["missing"],
        row["moved"],
        row["errors"],
        row["rss_peak_mib"],
        row["fault_note"].as_str().unwrap_or(""),
        if row["ok"] == true {
            "ok".to_owned()
        } else {
            format!("FAILED: {}", row["failures"])
        }
    )
}

const HEADER: [&str; 10] = [
    "fault",
    "sent",
    "acked",
    "delivered / owed",
    "lost",
    "dup",
    "recovery s",
    "p99 ms unaffected rooms, before / during",
    "presence right after s",
    "result",
];

/// The reliability table of several rows (the JSON lines of `chaos --json`).
pub(crate) fn table(rows: &[Value], markdown: bool) -> String {
    let secs = |v: &Value| v.as_f64().map_or("-".to_owned(), |s| format!("{s:.1}"));
    let ms = |v: &Value| v.as_f64().map_or("-".to_owned(), |s| format!("{s:.0}"));
    let cells = rows
        .iter()
        .map(|r| {
            let result = if r["ok"] == true {
                format!("ok; {}", r["fault_note"].as_str().unwrap_or(""))
            } else {
                let failures: Vec<&str> = r["failures"]
                    .as_array()
                    .map(|f| f.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                format!("FAIL: {}", failures.join("; "))
            };
            vec![
                r["label"].as_str().unwrap_or("").to_owned(),
                r["sent"].to_string(),
                r["acked"].to_string(),
                format!("{} / {}", r["delivered"], r["expected"]),
                r["lost"].to_string(),
                r["duplicated"].to_string(),
                secs(&r["recovery_s"]),
                format!("{} / {}", ms(&r["p99_before_ms"]), ms(&r["p99_during_ms"])),
                secs(&r["presence_after_s"]),
                result.replace('|', "/"),
            ]
        })
        .collect();
    crate::table::grid(&HEADER, cells, markdown)
}
