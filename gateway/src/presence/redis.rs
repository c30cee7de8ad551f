//! Presence shared by every gateway, in Redis.
//!
//! Keys live under `whisper:{scope}:`, the scope being the cluster's Kafka
//! topic, so several chat clusters can share one Redis. All expire by
//! themselves, so nothing outlives the cluster:
//! - `…room:{room}`: hash, field `{gateway}|{conn}` → member JSON.
//! - `…gw:{gateway}`: this gateway's heartbeat, expiring after the
//!   heartbeat timeout.
//! - `…gw:{gateway}:rooms`: set of rooms the gateway has members in.
//! - `…gateways`: set of gateways, for reaping dead ones.
//!
//! Changes are published on the channel `…presence`. Scripts make each
//! change atomic, so exactly one event goes out per member joining or
//! leaving, however many gateways race. A gateway whose heartbeat expired is
//! reaped by whichever gateway notices first, and its members reported left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script, TlsCertificates};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{Presence, PresenceError, PresenceEvent};
use crate::config::RedisConfig;
use crate::protocol::Member;

/// The key names of one scope.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(scope: &str) -> Self {
        Self {
            prefix: format!("whisper:{scope}:"),
        }
    }

    fn channel(&self) -> String {
        format!("{}presence", self.prefix)
    }

    fn gateways(&self) -> String {
        format!("{}gateways", self.prefix)
    }

    fn room_prefix(&self) -> String {
        format!("{}room:", self.prefix)
    }

    fn room(&self, room: &str) -> String {
        format!("{}room:{room}", self.prefix)
    }

    fn heartbeat(&self, gateway: &str) -> String {
        format!("{}gw:{gateway}", self.prefix)
    }

    fn rooms_of(&self, gateway: &str) -> String {
        format!("{}gw:{gateway}:rooms", self.prefix)
    }
}
/// How often dead gateways are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How long one Redis command may take before presence counts as down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Adds a connection; publishes `joined` if the user was not in the room.
/// Returns the room's member JSON values.
const JOIN: &str = r"
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
local present = existed
if not present then
  local vals = redis.call('HGETALL', KEYS[1])
  for i = 1, #vals, 2 do
    if cjson.decode(vals[i + 1]).id == ARGV[3] then present = true end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if not present then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return redis.call('HVALS', KEYS[1])
";

/// Removes a connection; publishes `left` if it was the user's last one.
const LEAVE: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local vals = redis.call('HGETALL', KEYS[1])
local present, mine = false, false
for i = 1, #vals, 2 do
  if cjson.decode(vals[i + 1]).id == ARGV[2] then present = true end
  if string.sub(vals[i], 1, #ARGV[6]) == ARGV[6] then mine = true end
end
if not mine then redis.call('SREM', KEYS[2], ARGV[5]) end
if not present then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
";

/// Removes every connection of one gateway and publishes who left.
/// KEYS: the gateway's room set, the gateways set. ARGV: field prefix,
/// room key prefix, channel, gateway id.
const REAP: &str = r"
local rooms = redis.call('SMEMBERS', KEYS[1])
for _, room in ipairs(rooms) do
  local key = ARGV[2] .. room
  local vals = redis.call('HGETALL', key)
  local gone, stays = {}, {}
  for i = 1, #vals, 2 do
    local member = cjson.decode(vals[i + 1])
    if string.sub(vals[i], 1, #ARGV[1]) == ARGV[1] then
      redis.call('HDEL', key, vals[i])
      gone[member.id] = member
    else
      stays[member.id] = true
    end
  end
  local left = {}
  for id, member in pairs(gone) do
    if not stays[id] then table.insert(left, member) end
  end
  if #left > 0 then
    redis.call('PUBLISH', ARGV[3], cjson.encode({room = room, left = left}))
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[4])
return #rooms
";

/// Refreshes the heartbeat and the expiry of every key of this gateway.
/// Returns 0 when the heartbeat had lapsed (the gateway may have been reaped).
const HEARTBEAT: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
for _, room in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('PEXPIRE', ARGV[4] .. room, ARGV[3])
end
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return existed
";

/// The timings that follow from the heartbeat timeout: a dead gateway's
/// members are reported left within `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long a heartbeat lives.
    pub heartbeat_ttl: Duration,
    /// How often the heartbeat is refreshed.
    pub heartbeat_every: Duration,
    /// How long any key lives without a refresh.
    pub key_ttl: Duration,
}

impl Timings {
    pub fn new(timeout: Duration) -> Self {
        let margin = (REAP_INTERVAL * 2).min(timeout / 2);
        let heartbeat_ttl = timeout.saturating_sub(margin).max(Duration::from_millis(500));
        Self {
            heartbeat_ttl,
            heartbeat_every: heartbeat_ttl / 3,
            key_ttl: (timeout * 3).max(Duration::from_secs(60)),
        }
    }
}

/// A member as Redis stores it (room hash values, channel events, the Lua
/// scripts): its own type, converted explicitly from the protocol's
/// [`Member`], so a protocol change cannot change what gateways of another
/// version read during a rolling upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredMember {
    id: String,
    name: String,
}

impl From<&Member> for StoredMember {
    fn from(m: &Member) -> Self {
        Self {
            id: m.id.clone(),
            name: m.name.clone(),
        }
    }
}

impl From<StoredMember> for Member {
    fn from(m: StoredMember) -> Self {
        Self { id: m.id, name: m.name }
    }
}

/// The JSON of an event on the channel.
#[derive(Debug, Serialize, Deserialize)]
struct WireEvent {
    room: String,
    #[serde(default)]
    joined: Vec<StoredMember>,
    #[serde(default)]
    left: Vec<StoredMember>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
}

/// Redis-backed presence for one gateway.
pub struct RedisPresence {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    gateway: String,
    timings: Timings,
    /// What this gateway has registered, to register again if it was reaped
    /// while cut off from Redis: (room, conn) → member.
    local: Mutex<HashMap<(String, String), Member>>,
    events: broadcast::Sender<PresenceEvent>,
    ready: AtomicBool,
    join: Script,
    leave: Script,
    reap: Script,
    heartbeat: Script,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("gateway", &self.gateway)
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> PresenceError {
    PresenceError(e.to_string())
}

impl RedisPresence {
    /// Sets up presence on the Redis `config` names, for the chat cluster
    /// named `scope`, and starts its heartbeat, reaper and event
    /// subscription. Redis need not be up yet: until it is, presence
    /// reports not ready and joins fail.
    pub fn start(
        config: &RedisConfig,
        scope: &str,
        gateway: &str,
        timeout: Duration,
    ) -> Result<Arc<Self>, PresenceError> {
        // rediss:// goes through rustls, which takes the process's crypto
        // provider: ring, the one built in. A second install changes nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match &config.ca {
            Some(ca) => {
                let certificates = TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.as_bytes().to_vec()),
                };
                redis::Client::build_with_tls(config.url.as_str(), certificates)
            }
            None => redis::Client::open(config.url.as_str()),
        }
        .map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(err)?;
        let presence = Arc::new(Self {
            client,
            conn,
            keys: Keys::new(scope),
            gateway: gateway.to_owned(),
            timings: Timings::new(timeout),
            local: Mutex::default(),
            events: broadcast::channel(4096).0,
            ready: AtomicBool::new(false),
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            reap: Script::new(REAP),
            heartbeat: Script::new(HEARTBEAT),
        });
        tokio::spawn(maintain(Arc::downgrade(&presence), presence.timings));
        tokio::spawn(listen(
            Arc::downgrade(&presence),
            presence.client.clone(),
            presence.keys.channel(),
        ));
        Ok(presence)
    }

    fn field(&self, conn: &str) -> String {
        format!("{}|{conn}", self.gateway)
    }

    async fn register(&self, room: &str, member: &Member, conn: &str) -> Result<Vec<Member>, PresenceError> {
        let event = serde_json::to_string(&WireEvent {
            room: room.to_owned(),
            joined: vec![member.into()],
            left: vec![],
            origin: Some(conn.to_owned()),
        })
        .map_err(err)?;
        let values: Vec<String> = self
            .join
            .key(self.keys.room(room))
            .key(self.keys.rooms_of(&self.gateway))
            .arg(self.field(conn))
            .arg(serde_json::to_string(&StoredMember::from(member)).map_err(err)?)
            .arg(&member.id)
            .arg(self.timings.key_ttl.as_millis() as u64)
            .arg(self.keys.channel())
            .arg(event)
            .arg(room)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        let mut members: Vec<Member> = values
            .iter()
            .filter_map(|v| serde_json::from_str::<StoredMember>(v).ok())
            .map(Member::from)
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|a, b| a.id == b.id);
        Ok(members)
    }

    /// Refreshes the heartbeat; after a lapse, registers every local
    /// connection again. Returns whether Redis answered.
    async fn beat(&self) -> bool {
        let existed: Result<i64, _> = self
            .heartbeat
            .key(self.keys.heartbeat(&self.gateway))
            .key(self.keys.gateways())
            .key(self.keys.rooms_of(&self.gateway))
            .arg(self.timings.heartbeat_ttl.as_millis() as u64)
            .arg(&self.gateway)
            .arg(self.timings.key_ttl.as_millis() as u64)
            .arg(self.keys.room_prefix())
            .invoke_async(&mut self.conn.clone())
            .await;
        match existed {
            Ok(1) => true,
            Ok(_) => {
                let local: Vec<_> = self
                    .local
                    .lock()
                    .expect("presence lock")
                    .iter()
                    .map(|(k, m)| (k.clone(), m.clone()))
                    .collect();
                if !local.is_empty() {
                    tracing::warn!(connections = local.len(), "heartbeat had lapsed; registering again");
                }
                for ((room, conn), member) in local {
                    if let Err(e) = self.register(&room, &member, &conn).await {
                        tracing::warn!(error = %e, "presence re-registration failed");
                        return false;
                    }
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "presence heartbeat failed");
                false
            }
        }
    }

    /// Reaps every gateway whose heartbeat has expired.
    async fn reap_dead(&self) -> Result<(), PresenceError> {
        let mut conn = self.conn.clone();
        let gateways: Vec<String> = conn.smembers(self.keys.gateways()).await.map_err(err)?;
        for gateway in gateways {
            let alive: bool = conn.exists(self.keys.heartbeat(&gateway)).await.map_err(err)?;
            if !alive && gateway != self.gateway {
                tracing::info!(gateway, "reaping the presence of a gateway that stopped heartbeating");
                self.reap_gateway(&gateway).await?;
            }
        }
        Ok(())
    }

    async fn reap_gateway(&self, gateway: &str) -> Result<(), PresenceError> {
        let _: i64 = self
            .reap
            .key(self.keys.rooms_of(gateway))
            .key(self.keys.gateways())
            .arg(format!("{gateway}|"))
            .arg(self.keys.room_prefix())
            .arg(self.keys.channel())
            .arg(gateway)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(())
    }
}

/// Heartbeat and reaper loop, until the presence is dropped.
async fn maintain(presence: std::sync::Weak<RedisPresence>, timings: Timings) {
    let mut last_beat: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(REAP_INTERVAL.min(timings.heartbeat_every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(presence) = presence.upgrade() else { return };
        let due = last_beat.is_none_or(|t| t.elapsed() >= timings.heartbeat_every);
        let mut ok = presence.ready.load(Ordering::Relaxed);
        if due || !ok {
            ok = presence.beat().await;
            if ok {
                last_beat = Some(tokio::time::Instant::now());
            }
        }
        if ok && let Err(e) = presence.reap_dead().await {
            tracing::warn!(error = %e, "presence reaper failed");
            ok = false;
        }
        if presence.ready.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("Redis presence is ready");
            } else {
                tracing::warn!("Redis presence is unavailable");
            }
        }
    }
}

/// Forwards the presence channel to local subscribers, reconnecting when
/// Redis goes away.
async fn listen(presence: std::sync::Weak<RedisPresence>, client: redis::Client, channel: String) {
    loop {
        if presence.strong_count() == 0 {
            return;
        }
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, subscribed).await {
            Ok(Ok(mut messages)) => {
                while let Some(message) = messages.next().await {
                    let Some(presence) = presence.upgrade() else { return };
                    match serde_json::from_slice::<WireEvent>(message.get_payload_bytes()) {
                        Ok(e) => {
                            let _ = presence.events.send(PresenceEvent {
                                room: e.room,
                                joined: e.joined.into_iter().map(Member::from).collect(),
                                left: e.left.into_iter().map(Member::from).collect(),
                                origin: e.origin,
                            });
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable presence event"),
                    }
                }
                tracing::warn!("presence subscription ended; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot subscribe to presence events"),
            Err(_) => tracing::warn!("subscribing to presence events timed out"),
        }
        tokio::time::sleep(REAP_INTERVAL).await;
    }
}

impl Presence for RedisPresence {
    fn join<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        conn: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Member>, PresenceError>> {
        Box::pin(async move {
            let members = self.register(room, member, conn).await?;
            self.local
                .lock()
                .expect("presence lock")
                .insert((room.to_owned(), conn.to_owned()), member.clone());
            Ok(members)
        })
    }

    fn leave<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        conn: &'a str,
    ) -> BoxFuture<'a, Result<(), PresenceError>> {
        Box::pin(async move {
            self.local
                .lock()
                .expect("presence lock")
                .remove(&(room.to_owned(), conn.to_owned()));
            let event = serde_json::to_string(&WireEvent {
                room: room.to_owned(),
                joined: vec![],
                left: vec![member.into()],
                origin: Some(conn.to_owned()),
            })
            .map_err(err)?;
            let _: i64 = self
                .leave
                .key(self.keys.room(room))
                .key(self.keys.rooms_of(&self.gateway))
                .arg(self.field(conn))
                .arg(&member.id)
                .arg(self.keys.channel())
                .arg(event)
                .arg(room)
                .arg(format!("{}|", self.gateway))
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    fn subscribe(&self) -> BoxStream<'static, PresenceEvent> {
        super::broadcast_stream(self.events.subscribe())
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.local.lock().expect("presence lock").clear();
            if let Err(e) = self.reap_gateway(&self.gateway).await {
                tracing::warn!(error = %e, "could not remove this gateway's presence");
            }
            let _: Result<i64, _> = self.conn.clone().del(self.keys.heartbeat(&self.gateway)).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_gateway_is_noticed_within_the_timeout() {
        for secs in [3, 5, 30, 120] {
            let timeout = Duration::from_secs(secs);
            let t = Timings::new(timeout);
            assert!(t.heartbeat_ttl + REAP_INTERVAL <= timeout, "{t:?}");
            assert!(t.heartbeat_every * 2 < t.heartbeat_ttl, "{t:?}");
            assert!(t.key_ttl > t.heartbeat_ttl);
        }
    }

    #[test]
    fn members_are_stored_as_the_scripts_and_older_gateways_read_them() {
        let member = Member {
            id: "u1".into(),
            name: "Ann".into(),
        };
        let stored = serde_json::to_string(&StoredMember::from(&member)).unwrap();
        assert_eq!(stored, r#"{"id":"u1","name":"Ann"}"#);
        let back: StoredMember = serde_json::from_str(&stored).unwrap();
        assert_eq!(Member::from(back), member);
    }

    #[test]
    fn events_from_the_reaper_script_parse() {
        let e: WireEvent = serde_json::from_str(r#"{"room":"r","left":[{"id":"u","name":"n"}]}"#).unwrap();
        assert!(e.joined.is_empty());
        assert_eq!(e.left.len(), 1);
    }
}
