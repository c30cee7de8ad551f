//! One WebSocket connection: a reader that handles the client's frames and a
//! writer task that drains the connection's bounded outbox. Whichever side
//! ends first ends the session; then the connection leaves its rooms.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{FuturesUnordered, SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth;
use crate::bus::BusError;
use crate::clock::now_ms;
use crate::protocol::{
    ChatMessage, ClientFrame, ErrorCode, Member, RoomId, SendFrame, ServerFrame, clean_name, close, idempotent_id,
};
use crate::ratelimit::TokenBucket;
use crate::rooms::{Bounds, Outbox, Outgoing};
use crate::state::AppState;

/// Time a client has to say `hello` after the upgrade.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bad frames in a row after which the connection is closed (4000).
pub const MAX_BAD_FRAMES: u32 = 10;
/// Frames refused with `rate_limited` in a row (over the frame budget, or
/// sends over the message rate; none handled in between) after which the
/// client is abusing the limits and the connection is closed (4008).
pub const MAX_RATE_LIMITED: u32 = 50;
/// Time the writer gets to flush and send the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames the writer hands to the socket before flushing at most.
const WRITE_BATCH: usize = 64;

/// Why the gateway closes a socket: the code and reason of the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Close {
    code: u16,
    reason: &'static str,
}

impl Close {
    const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

/// Counts of refused frames in a row: the one place that decides when a
/// client stops being merely wrong and is closed.
#[derive(Debug, Default)]
struct Strikes {
    bad: u32,
    rate_limited: u32,
}

impl Strikes {
    /// A malformed frame: closes (4000) after [`MAX_BAD_FRAMES`] in a row.
    fn bad(&mut self) -> Option<Close> {
        self.bad += 1;
        (self.bad > MAX_BAD_FRAMES).then_some(Close::new(close::PROTOCOL, "too many bad frames"))
    }

    /// A frame refused with `rate_limited`: closes (4008) after
    /// [`MAX_RATE_LIMITED`] in a row.
    fn rate_limited(&mut self) -> Option<Close> {
        self.rate_limited += 1;
        (self.rate_limited > MAX_RATE_LIMITED).then_some(Close::new(close::POLICY, "kept sending past the rate limits"))
    }

    /// A well-formed frame: the bad streak ends.
    fn well_formed(&mut self) {
        self.bad = 0;
    }

    /// A frame handled within the limits: the rate-limited streak ends.
    fn within_limits(&mut self) {
        self.rate_limited = 0;
    }
}

/// Serves one upgraded WebSocket until either side ends it.
pub async fn serve(state: AppState, socket: WebSocket) {
    let conn: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    let span = tracing::info_span!("session", conn = %conn, user = tracing::field::Empty);
    async move {
        let (sink, stream) = socket.split();
        let too_slow = CancellationToken::new();
        let bounds = Bounds {
            frames: state.config.send_queue,
            bytes: state.config.send_queue_bytes,
        };
        let outbox = Outbox::new(conn, bounds, too_slow.clone());
        let (close_tx, close_rx) = oneshot::channel();
        let mut writer = tokio::spawn(write(sink, outbox.clone(), close_rx, state.clone()));
        state.metrics.connections.inc();
        let mut session = Session {
            outbox,
            bucket: TokenBucket::new(
                state.config.limits.messages_per_second,
                state.config.limits.burst,
                Instant::now(),
            ),
            frames: TokenBucket::new(
                state.config.limits.frames_per_second,
                state.config.limits.frame_burst,
                Instant::now(),
            ),
            heard: Instant::now(),
            token_deadline: None,
            state,
            user: None,
            rooms: HashSet::new(),
            strikes: Strikes::default(),
        };
        let reason = session.read(stream, too_slow).await;
        // Close first: the client hears why at once, even when the presence
        // store is slow to answer the leaves below.
        // When the client closed, there is nothing more to write: dropping
        // the sender ends the writer at once.
        match reason {
            Some(Close { code, reason }) => {
                tracing::debug!(code, reason, "closing");
                let _ = close_tx.send(CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                });
            }
            None => drop(close_tx),
        }
        session.leave_all().await;
        session.state.metrics.connections.dec();
        drop(session);
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut writer).await.is_err() {
            writer.abort();
        }
        tracing::debug!("session ended");
    }
    .instrument(span)
    .await
}

/// Sends queued frames, then the close frame when the session asks for it.
/// Whatever is queued when the writer wakes goes out as one batch with one
/// flush: under fan-out, one write system call carries many frames.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    outbox: Outbox,
    mut close: oneshot::Receiver<CloseFrame>,
    state: AppState,
) {
    let mut batch = VecDeque::new();
    loop {
        tokio::select! {
            biased;
            reason = &mut close => {
                if let Ok(frame) = reason {
                    finish(sink, &outbox, frame).await;
                }
                return;
            }
            () = outbox.take(&mut batch) => {}
        }
        if write_batch(&mut sink, &mut batch, &state).await.is_err() {
            return;
        }
    }
}

/// Writes `batch` (emptying it), flushing every [`WRITE_BATCH`] frames and
/// at the end, and counts the delivered messages.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    batch: &mut VecDeque<Outgoing>,
    state: &AppState,
) -> Result<(), axum::Error> {
    let now = now_ms();
    let mut unflushed = 0;
    let mut delivered = 0;
    while let Some(outgoing) = batch.pop_front() {
        if let Outgoing::Message { bus_ts, .. } = &outgoing {
            delivered += 1;
            state
                .metrics
                .fanout_latency
                .observe((now - bus_ts).max(0) as f64 / 1000.0);
        }
        sink.feed(outgoing.into_message()).await?;
        unflushed += 1;
        if unflushed == WRITE_BATCH {
            sink.flush().await?;
            unflushed = 0;
        }
    }
    sink.flush().await?;
    state.metrics.messages_delivered.inc_by(delivered);
    Ok(())
}

/// Sends what is still queued (so an error explaining the close arrives
/// first), unless the socket is being closed for not reading, then the
/// close frame; all within [`CLOSE_TIMEOUT`].
async fn finish(mut sink: SplitSink<WebSocket, Message>, outbox: &Outbox, close: CloseFrame) {
    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
    let sending = async {
        if close.code != close::TOO_SLOW {
            let mut batch = VecDeque::new();
            outbox.take_now(&mut batch);
            for outgoing in batch {
                sink.feed(outgoing.into_message()).await?;
            }
        }
        sink.send(Message::Close(Some(close))).await
    };
    let _ = tokio::time::timeout_at(deadline, sending).await;
}

/// A `send` the bus has answered: the client's ref, the room, the message
/// id, and whether the bus took it.
struct Pending {
    reference: Option<String>,
    room: String,
    id: String,
    result: Result<(), BusError>,
}

/// A `send` on its way to the bus.
type Delivery = futures::future::BoxFuture<'static, Pending>;

struct Session {
    state: AppState,
    outbox: Outbox,
    user: Option<Member>,
    rooms: HashSet<RoomId>,
    /// `messages_per_second` for `send`.
    bucket: TokenBucket,
    /// The frame budget: every client frame.
    frames: TokenBucket,
    /// When the client was last heard from (any frame, pongs included).
    heard: Instant,
    /// When the session's token expires (auth on): then it closes, 4001,
    /// unless an `auth` frame brought a fresh token.
    token_deadline: Option<tokio::time::Instant>,
    strikes: Strikes,
}

impl Session {
    /// Handles frames until the connection ends; returns the close code and
    /// reason to send, if the gateway is the one closing.
    async fn read(&mut self, mut stream: SplitStream<WebSocket>, too_slow: CancellationToken) -> Option<Close> {
        let shutdown = self.state.shutdown.clone();
        let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
        tokio::pin!(hello_deadline);
        let idle_timeout = self.state.config.idle_timeout;
        let mut liveness = tokio::time::interval_at(tokio::time::Instant::now() + idle_timeout / 3, idle_timeout / 3);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = FuturesUnordered::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    // What the bus was given is answered before the close:
                    // the client learns which of its messages went out.
                    while let Some(answer) = pending.next().await {
                        self.delivered(answer);
                    }
                    return Some(Close::new(close::GOING_AWAY, "gateway shutting down"));
                }
                () = too_slow.cancelled() => {
                    self.state.metrics.slow_consumers.inc();
                    return Some(Close::new(close::TOO_SLOW, "too slow: outbound queue overflowed"));
                }
                () = &mut hello_deadline, if self.user.is_none() => {
                    return Some(Close::new(close::PROTOCOL, "no hello within 10 seconds"));
                }
                () = sleep_until(self.token_deadline), if self.token_deadline.is_some() => {
                    self.error(ErrorCode::Unauthorized, "the token has expired; send a fresh one in an `auth` frame before it does", None);
                    return Some(Close::new(close::UNAUTHORIZED, "token expired"));
                }
                Some(answer) = pending.next() => self.delivered(answer),
                _ = liveness.tick() => {
                    if self.heard.elapsed() >= idle_timeout {
                        return Some(Close::new(close::IDLE, "idle: nothing heard within the idle timeout"));
                    }
                    self.outbox.push_ping();
                }
                frame = stream.next() => {
                    self.heard = Instant::now();
                    let size = match &frame {
                        Some(Ok(Message::Text(text))) => text.len(),
                        Some(Ok(Message::Binary(data))) => data.len(),
                        _ => 0,
                    };
                    if size > self.state.config.max_frame_bytes {
                        return Some(Close::new(close::TOO_BIG, "frame too large"));
                    }
                    let data_frame = matches!(frame, Some(Ok(Message::Text(_) | Message::Binary(_))));
                    if data_frame && !self.frames.try_take(Instant::now()) {
                        if let Some(close) = self.over_budget(frame) {
                            return Some(close);
                        }
                        continue;
                    }
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            if let Some(close) = self.bad_frame("binary frames are not part of the protocol", None) {
                                return Some(close);
                            }
                            continue;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) | None => return None,
                        Some(Err(e)) => return read_error(&e),
                    };
                    match ClientFrame::parse(text.as_str()) {
                        Ok(frame) => {
                            self.strikes.well_formed();
                            // Boxed: the handling of a frame (a join waits on
                            // presence) is then not part of what every idle
                            // socket keeps allocated.
                            match Box::pin(self.handle(frame)).await {
                                Ok(Some(delivery)) => pending.push(delivery),
                                Ok(None) => {}
                                Err(reason) => return Some(reason),
                            }
                        }
                        Err(bad) => {
                            if let Some(close) = self.bad_frame(&bad.message, bad.reference.as_deref()) {
                                return Some(close);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Answers a frame over the frame budget, unhandled; returns the close
    /// if the connection must close.
    fn over_budget(&mut self, frame: Option<Result<Message, axum::Error>>) -> Option<Close> {
        self.state.metrics.rate_limited.inc();
        let reference = match &frame {
            Some(Ok(Message::Text(text))) => match ClientFrame::parse(text.as_str()) {
                Ok(frame) => frame_ref(&frame).map(str::to_owned),
                Err(bad) => bad.reference,
            },
            _ => None,
        };
        let limits = self.state.config.limits;
        self.error(
            ErrorCode::RateLimited,
            &format!(
                "more than {} frames per second (burst {}); this one was not handled",
                limits.frames_per_second, limits.frame_burst
            ),
            reference.as_deref(),
        );
        self.strikes.rate_limited()
    }

    /// Answers a bad frame; returns the close if the connection must close.
    fn bad_frame(&mut self, message: &str, reference: Option<&str>) -> Option<Close> {
        self.error(ErrorCode::BadRequest, message, reference);
        self.strikes.bad()
    }

    fn push(&self, frame: ServerFrame<'_>) {
        self.outbox.push(frame.to_json().into());
    }

    fn error(&self, code: ErrorCode, message: &str, reference: Option<&str>) {
        self.push(ServerFrame::Error {
            code,
            message,
            reference,
        });
    }

    /// Handles one well-formed frame. A `send` that passed every check comes
    /// back as the future of its delivery.
    async fn handle(&mut self, frame: ClientFrame) -> Result<Option<Delivery>, Close> {
        let Some(user) = self.user.clone() else {
            return match frame {
                ClientFrame::Hello { name, token } => self.hello(name, token).map(|()| None),
                _ => {
                    self.error(ErrorCode::BadRequest, "say hello first", frame_ref(&frame));
                    Ok(None)
                }
            };
        };
        if !matches!(frame, ClientFrame::Send(_)) {
            self.strikes.within_limits();
        }
        match frame {
            ClientFrame::Hello { .. } => self.error(ErrorCode::BadRequest, "hello was already said", None),
            ClientFrame::Auth { token, reference } => self.refresh(&user, &token, reference.as_deref())?,
            ClientFrame::Ping { reference } => self.push(ServerFrame::Pong {
                reference: reference.as_deref(),
            }),
            ClientFrame::Join { room, since } => {
                let span = tracing::info_span!("join", room);
                self.join(&user, room, since).instrument(span).await;
            }
            ClientFrame::Leave { room } => {
                let span = tracing::info_span!("leave", room);
                self.leave(&user, room).instrument(span).await;
            }
            ClientFrame::Send(send) => return self.send(user, send),
        }
        Ok(None)
    }

    fn hello(&mut self, name: Option<String>, token: Option<String>) -> Result<(), Close> {
        let (id, claimed_name, expires_at) = match &self.state.config.auth {
            Some(rules) => match auth::verify(rules, token.as_deref()) {
                Ok(claims) => {
                    let expires_at = claims.exp_ms();
                    (claims.sub, claims.name, Some(expires_at))
                }
                Err(why) => {
                    self.error(ErrorCode::Unauthorized, &why.to_string(), None);
                    return Err(Close::new(close::UNAUTHORIZED, "unauthorized"));
                }
            },
            None => (uuid::Uuid::new_v4().simple().to_string(), None, None),
        };
        let Some(name) = claimed_name.as_deref().or(name.as_deref()) else {
            self.error(ErrorCode::BadRequest, "hello needs a name", None);
            return Ok(());
        };
        let name = match clean_name(name) {
            Ok(name) => name,
            Err(why) => {
                self.error(ErrorCode::InvalidName, why, None);
                return Ok(());
            }
        };
        let user = Member { id, name };
        tracing::Span::current().record("user", tracing::field::display(&user.id));
        let config = &self.state.config;
        self.push(ServerFrame::Welcome {
            session: self.outbox.conn(),
            user: &user,
            gateway: &config.gateway_id,
            ttl_ms: config.ttl.as_millis() as u64,
            limits: config.limits,
            idle_timeout_ms: config.idle_timeout.as_millis() as u64,
            encryption_required: config.require_encryption,
            token_expires_at: expires_at,
        });
        self.user = Some(user);
        self.token_deadline = expires_at.map(deadline_at);
        Ok(())
    }

    /// Takes a fresh token for the session (`auth`): it must be valid and
    /// for the same user, or the session ends (4001).
    fn refresh(&mut self, user: &Member, token: &str, reference: Option<&str>) -> Result<(), Close> {
        let Some(rules) = &self.state.config.auth else {
            self.error(ErrorCode::BadRequest, "this gateway does not use tokens", reference);
            return Ok(());
        };
        let claims = match auth::verify(rules, Some(token)) {
            Ok(claims) if claims.sub == user.id => claims,
            Ok(_) => {
                self.error(ErrorCode::Unauthorized, "the token is for another user", reference);
                return Err(Close::new(close::UNAUTHORIZED, "unauthorized"));
            }
            Err(why) => {
                self.error(ErrorCode::Unauthorized, &why.to_string(), reference);
                return Err(Close::new(close::UNAUTHORIZED, "unauthorized"));
            }
        };
        let expires_at = claims.exp_ms();
        self.token_deadline = Some(deadline_at(expires_at));
        self.push(ServerFrame::Authed { reference, expires_at });
        Ok(())
    }

    /// The room a frame names, checked once; an invalid one is answered.
    fn room(&self, room: String, reference: Option<&str>) -> Option<RoomId> {
        let parsed = RoomId::parse(room);
        if parsed.is_none() {
            self.error(ErrorCode::InvalidRoom, RoomId::RULE, reference);
        }
        parsed
    }

    async fn join(&mut self, user: &Member, room: String, since: Option<String>) {
        let Some(room) = self.room(room, None) else { return };
        if !self.rooms.contains(&room) && self.rooms.len() >= self.state.config.limits.max_rooms {
            return self.error(ErrorCode::TooManyRooms, "leave a room before joining another", None);
        }
        self.state.rooms.start_join(&room, self.outbox.conn_id());
        let members = match self.state.presence.join(&room, user, self.outbox.conn()).await {
            Ok(members) => members,
            Err(e) => {
                tracing::warn!(error = %e, "presence join failed");
                self.state.rooms.cancel_join(&room, self.outbox.conn());
                return self.error(ErrorCode::Unavailable, "presence store unavailable; try again", None);
            }
        };
        self.state
            .rooms
            .join(&room, &self.outbox, since.as_deref(), members, now_ms());
        self.rooms.insert(room);
    }

    async fn leave(&mut self, user: &Member, room: String) {
        let Some(room) = self.room(room, None) else { return };
        if !self.rooms.remove(&room) {
            return self.error(ErrorCode::NotJoined, "not in that room", None);
        }
        self.part(user, &room).await;
        self.push(ServerFrame::Left { room: &room });
    }

    /// Takes the socket out of a room, here and in presence: the one way out
    /// of a room, whether the client leaves it or goes away. A presence
    /// store that fails is corrected by its next heartbeat.
    async fn part(&self, user: &Member, room: &str) {
        self.state.rooms.leave(room, self.outbox.conn());
        if let Err(e) = self.state.presence.leave(room, user, self.outbox.conn()).await {
            tracing::warn!(error = %e, "presence leave failed");
        }
    }

    /// Checks a `send` and hands it to the bus; returns its delivery, or
    /// the close when the client keeps sending past the rate limits.
    fn send(&mut self, user: Member, send: SendFrame) -> Result<Option<Delivery>, Close> {
        let limits = self.state.config.limits;
        let ttl_ms = self.state.config.ttl.as_millis() as u64;
        let SendFrame {
            room,
            text,
            reference,
            cid,
            ttl_ms: lifetime,
            enc,
        } = send;
        let Some(room) = self.room(room, reference.as_deref()) else {
            return Ok(None);
        };
        let reject = if !self.rooms.contains(&room) {
            Some((ErrorCode::NotJoined, "join the room before sending to it".to_owned()))
        } else if text.trim().is_empty() {
            Some((ErrorCode::Empty, "message is empty".to_owned()))
        } else if text.len() > limits.max_text_bytes {
            Some((
                ErrorCode::TooLarge,
                format!("message is longer than {} bytes", limits.max_text_bytes),
            ))
        } else if lifetime.is_some_and(|t| !(limits.min_ttl_ms..=ttl_ms).contains(&t)) {
            Some((
                ErrorCode::InvalidTtl,
                format!("ttl_ms must be from {} to {ttl_ms}", limits.min_ttl_ms),
            ))
        } else if enc.is_none() && self.state.config.require_encryption {
            Some((
                ErrorCode::EncryptionRequired,
                "this gateway only carries end-to-end encrypted text (enc)".to_owned(),
            ))
        } else if enc.is_none()
            && self
                .state
                .config
                .content_filter
                .as_ref()
                .is_some_and(|f| f.blocks(&text))
        {
            self.state.metrics.messages_blocked.inc();
            Some((
                ErrorCode::Blocked,
                "the message was refused by this gateway's content policy".to_owned(),
            ))
        } else if !self.bucket.try_take(Instant::now()) {
            self.state.metrics.rate_limited.inc();
            if let Some(close) = self.strikes.rate_limited() {
                return Err(close);
            }
            Some((
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages per second; slow down",
                    limits.messages_per_second
                ),
            ))
        } else {
            None
        };
        if let Some((code, message)) = reject {
            self.error(code, &message, reference.as_deref());
            return Ok(None);
        }
        self.strikes.within_limits();
        let ts = now_ms();
        let id = match &cid {
            Some(cid) => idempotent_id(&room, cid),
            None => uuid::Uuid::now_v7().simple().to_string(),
        };
        let message = ChatMessage {
            room: room.into_string(),
            id,
            user,
            text,
            ts,
            expires_at: ts + lifetime.unwrap_or(ttl_ms) as i64,
            enc,
        };
        let span = tracing::info_span!("publish", room = message.room, id = message.id);
        let delivery = span.in_scope(|| self.state.bus.publish(&message));
        let ChatMessage { room, id, .. } = message;
        Ok(Some(Box::pin(
            async move {
                Pending {
                    reference,
                    room,
                    id,
                    result: delivery.await,
                }
            }
            .instrument(span),
        )))
    }

    fn delivered(&self, answer: Pending) {
        let Pending {
            reference,
            room,
            id,
            result,
        } = answer;
        match result {
            Ok(()) => {
                self.state.metrics.messages_received.inc();
                self.push(ServerFrame::Ack {
                    reference: reference.as_deref(),
                    room: &room,
                    id: &id,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "bus refused a message");
                self.state.metrics.bus_error(&e);
                self.error(
                    ErrorCode::Unavailable,
                    "the message bus did not take the message; it was not sent, try again",
                    reference.as_deref(),
                );
            }
        }
    }

    /// Leaves every room, locally and in presence.
    async fn leave_all(&mut self) {
        let Some(user) = self.user.clone() else { return };
        for room in std::mem::take(&mut self.rooms) {
            self.part(&user, &room).await;
        }
    }
}

fn frame_ref(frame: &ClientFrame) -> Option<&str> {
    match frame {
        ClientFrame::Send(SendFrame { reference, .. })
        | ClientFrame::Ping { reference }
        | ClientFrame::Auth { reference, .. } => reference.as_deref(),
        _ => None,
    }
}

/// The instant of a Unix time in milliseconds.
fn deadline_at(unix_ms: i64) -> tokio::time::Instant {
    let left = u64::try_from(unix_ms - now_ms()).unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_millis(left)
}

/// Sleeps until `deadline`; only polled while there is one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

/// The close to send after a read error: 1009 for a frame over the limit,
/// none when the connection is simply gone.
fn read_error(error: &axum::Error) -> Option<Close> {
    let source = std::error::Error::source(error);
    match source.and_then(|e| e.downcast_ref::<tungstenite::Error>()) {
        Some(tungstenite::Error::Capacity(_)) => Some(Close::new(close::TOO_BIG, "frame too large")),
        Some(tungstenite::Error::Utf8(_)) => Some(Close::new(close::PROTOCOL, "text frame is not UTF-8")),
        _ => None,
    }
}
