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
    ChatMessage, ClientFrame, ErrorCode, Member, SendFrame, ServerFrame, clean_name, close, idempotent_id, valid_room,
};
use crate::ratelimit::TokenBucket;
use crate::rooms::{Bounds, Outbox, Outgoing};
use crate::server::AppState;

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
            state,
            user: None,
            rooms: HashSet::new(),
            bad_in_a_row: 0,
            rate_limited_in_a_row: 0,
        };
        let reason = session.read(stream, too_slow).await;
        // Close first: the client hears why at once, even when the presence
        // store is slow to answer the leaves below.
        // When the client closed, there is nothing more to write: dropping
        // the sender ends the writer at once.
        match reason {
            Some((code, why)) => {
                tracing::debug!(code, why, "closing");
                let _ = close_tx.send(CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(why),
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

/// A `send` on its way to the bus: the client's ref, the room, the message
/// id, and whether the bus took it.
type Pending = (Option<String>, String, String, Result<(), BusError>);

struct Session {
    state: AppState,
    outbox: Outbox,
    user: Option<Member>,
    rooms: HashSet<String>,
    /// `messages_per_second` for `send`.
    bucket: TokenBucket,
    /// The frame budget: every client frame.
    frames: TokenBucket,
    /// When the client was last heard from (any frame, pongs included).
    heard: Instant,
    bad_in_a_row: u32,
    /// Frames refused with `rate_limited` in a row: over the frame budget,
    /// or sends over `messages_per_second`.
    rate_limited_in_a_row: u32,
}

impl Session {
    /// Handles frames until the connection ends; returns the close code and
    /// reason to send, if the gateway is the one closing.
    async fn read(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        too_slow: CancellationToken,
    ) -> Option<(u16, &'static str)> {
        let shutdown = self.state.shutdown.clone();
        let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
        tokio::pin!(hello_deadline);
        let idle_timeout = self.state.config.idle_timeout;
        let mut liveness = tokio::time::interval_at(tokio::time::Instant::now() + idle_timeout / 3, idle_timeout / 3);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = FuturesUnordered::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Some((close::GOING_AWAY, "gateway shutting down")),
                () = too_slow.cancelled() => {
                    self.state.metrics.slow_consumers.inc();
                    return Some((close::TOO_SLOW, "too slow: outbound queue overflowed"));
                }
                () = &mut hello_deadline, if self.user.is_none() => {
                    return Some((close::PROTOCOL, "no hello within 10 seconds"));
                }
                Some((reference, room, id, result)) = pending.next() => self.delivered(reference, room, id, result),
                _ = liveness.tick() => {
                    if self.heard.elapsed() >= idle_timeout {
                        return Some((close::IDLE, "idle: nothing heard within the idle timeout"));
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
                        return Some((close::TOO_BIG, "frame too large"));
                    }
                    let data_frame = matches!(frame, Some(Ok(Message::Text(_) | Message::Binary(_))));
                    if data_frame && !self.frames.try_take(Instant::now()) {
                        if self.over_budget(frame) {
                            return Some((close::POLICY, "kept sending past the rate limits"));
                        }
                        continue;
                    }
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            if self.bad_frame("binary frames are not part of the protocol", None) {
                                return Some((close::PROTOCOL, "too many bad frames"));
                            }
                            continue;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) | None => return None,
                        Some(Err(e)) => return read_error(&e),
                    };
                    match ClientFrame::parse(text.as_str()) {
                        Ok(frame) => {
                            self.bad_in_a_row = 0;
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
                            if self.bad_frame(&bad.message, bad.reference.as_deref()) {
                                return Some((close::PROTOCOL, "too many bad frames"));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Answers a frame over the frame budget, unhandled; returns whether the
    /// connection must close.
    fn over_budget(&mut self, frame: Option<Result<Message, axum::Error>>) -> bool {
        self.rate_limited_in_a_row += 1;
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
        self.rate_limited_in_a_row > MAX_RATE_LIMITED
    }

    /// Answers a bad frame; returns whether the connection must close.
    fn bad_frame(&mut self, message: &str, reference: Option<&str>) -> bool {
        self.bad_in_a_row += 1;
        self.error(ErrorCode::BadRequest, message, reference);
        self.bad_in_a_row > MAX_BAD_FRAMES
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
    async fn handle(
        &mut self,
        frame: ClientFrame,
    ) -> Result<Option<futures::future::BoxFuture<'static, Pending>>, (u16, &'static str)> {
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
            self.rate_limited_in_a_row = 0;
        }
        match frame {
            ClientFrame::Hello { .. } => self.error(ErrorCode::BadRequest, "hello was already said", None),
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
            ClientFrame::Send(send) => {
                let delivery = self.send(user, send);
                if self.rate_limited_in_a_row > MAX_RATE_LIMITED {
                    return Err((close::POLICY, "kept sending past the rate limits"));
                }
                return Ok(delivery);
            }
        }
        Ok(None)
    }

    fn hello(&mut self, name: Option<String>, token: Option<String>) -> Result<(), (u16, &'static str)> {
        let (id, claimed_name) = match &self.state.config.auth {
            Some(rules) => match auth::verify(rules, token.as_deref()) {
                Ok(claims) => (claims.sub, claims.name),
                Err(why) => {
                    self.error(ErrorCode::Unauthorized, &why.to_string(), None);
                    return Err((close::UNAUTHORIZED, "unauthorized"));
                }
            },
            None => (uuid::Uuid::new_v4().simple().to_string(), None),
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
        });
        self.user = Some(user);
        Ok(())
    }

    async fn join(&mut self, user: &Member, room: String, since: Option<String>) {
        if !valid_room(&room) {
            return self.error(
                ErrorCode::InvalidRoom,
                "room ids are 1-64 of a-z 0-9 _ -, starting with a letter or digit",
                None,
            );
        }
        if !self.rooms.contains(&room) && self.rooms.len() >= self.state.config.limits.max_rooms {
            return self.error(ErrorCode::TooManyRooms, "leave a room before joining another", None);
        }
        let members = match self.state.presence.join(&room, user, self.outbox.conn()).await {
            Ok(members) => members,
            Err(e) => {
                tracing::warn!(error = %e, "presence join failed");
                return self.error(ErrorCode::Unavailable, "presence store unavailable; try again", None);
            }
        };
        self.state
            .rooms
            .join(&room, &self.outbox, since.as_deref(), members, now_ms());
        self.rooms.insert(room);
    }

    async fn leave(&mut self, user: &Member, room: String) {
        if !valid_room(&room) {
            return self.error(ErrorCode::InvalidRoom, "invalid room id", None);
        }
        if !self.rooms.remove(&room) {
            return self.error(ErrorCode::NotJoined, "not in that room", None);
        }
        self.state.rooms.leave(&room, self.outbox.conn());
        if let Err(e) = self.state.presence.leave(&room, user, self.outbox.conn()).await {
            tracing::warn!(error = %e, "presence leave failed");
        }
        self.push(ServerFrame::Left { room: &room });
    }

    fn send(&mut self, user: Member, send: SendFrame) -> Option<futures::future::BoxFuture<'static, Pending>> {
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
        let reject = if !valid_room(&room) {
            Some((ErrorCode::InvalidRoom, "invalid room id".to_owned()))
        } else if !self.rooms.contains(&room) {
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
            self.rate_limited_in_a_row += 1;
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
            return None;
        }
        self.rate_limited_in_a_row = 0;
        let ts = now_ms();
        let id = match &cid {
            Some(cid) => idempotent_id(&room, cid),
            None => uuid::Uuid::now_v7().simple().to_string(),
        };
        let message = ChatMessage {
            room,
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
        Some(Box::pin(
            async move { (reference, room, id, delivery.await) }.instrument(span),
        ))
    }

    fn delivered(&self, reference: Option<String>, room: String, id: String, result: Result<(), BusError>) {
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
            self.state.rooms.leave(&room, self.outbox.conn());
            if let Err(e) = self.state.presence.leave(&room, &user, self.outbox.conn()).await {
                tracing::warn!(error = %e, "presence leave failed");
            }
        }
    }
}

fn frame_ref(frame: &ClientFrame) -> Option<&str> {
    match frame {
        ClientFrame::Send(SendFrame { reference, .. }) | ClientFrame::Ping { reference } => reference.as_deref(),
        _ => None,
    }
}

/// The close to send after a read error: 1009 for a frame over the limit,
/// none when the connection is simply gone.
fn read_error(error: &axum::Error) -> Option<(u16, &'static str)> {
    let source = std::error::Error::source(error);
    match source.and_then(|e| e.downcast_ref::<tungstenite::Error>()) {
        Some(tungstenite::Error::Capacity(_)) => Some((close::TOO_BIG, "frame too large")),
        Some(tungstenite::Error::Utf8(_)) => Some((close::PROTOCOL, "text frame is not UTF-8")),
        _ => None,
    }
}
