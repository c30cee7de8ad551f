//! Presence shared by every gateway, in Redis.
//!
//! Keys live under `whisper:{scope}:`, the scope being the cluster's Kafka
//! topic, so several chat clusters can share one Redis. All expire by
//! themselves, so nothing outlives the cluster:
//! - `…room:{room}`: hash, field `{instance}|{conn}` → member JSON.
//! - `…gw:{instance}`: this process's heartbeat, expiring after the
//!   heartbeat timeout.
//! - `…gw:{instance}:rooms`: set of rooms the process has members in.
//! - `…gateways`: set of instances, for reaping dead ones.
//!
//! An instance is `{gateway id}/{epoch}`, the epoch being fresh for every
//! process: a gateway restarted under the same id (a pod restart) never
//! renews its dead incarnation's members, and removes them when it starts.
//!
//! Changes are published on the channel `…presence`. Scripts make each
//! change atomic, so exactly one event goes out per member joining or
//! leaving, however many gateways race. An instance whose heartbeat expired
//! is reaped by whichever gateway notices first, and its members reported
//! left.
//!
//! The gateway's own view is authoritative: every heartbeat makes Redis
//! hold exactly this process's connections (adding what a failed or timed
//! out call missed, removing what a failed leave left), and after the event
//! subscription was lost, each local room is told the difference between
//! the members it last heard of and those Redis holds.

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// Removes every connection of one instance and publishes who left.
/// KEYS: the instance's room set, the gateways set, its heartbeat.
/// ARGV: field prefix, room key prefix, channel, instance.
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
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[4])
return #rooms
";

/// Refreshes the heartbeat. KEYS: the heartbeat, the gateways set, the
/// instance's room set. ARGV: heartbeat ttl, instance, key ttl.
const HEARTBEAT: &str = r"
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
";

/// Makes one room hold exactly the given connections of this instance,
/// and publishes who joined or left by the change.
/// KEYS: the room, the instance's room set. ARGV: field prefix, channel,
/// room, key ttl, then field and member JSON of each local connection.
const SYNC: &str = r"
local want, wanted = {}, false
for i = 5, #ARGV, 2 do want[ARGV[i]] = ARGV[i + 1]; wanted = true end
local before, after = {}, {}
local vals = redis.call('HGETALL', KEYS[1])
for i = 1, #vals, 2 do
  local member = cjson.decode(vals[i + 1])
  before[member.id] = member
  if string.sub(vals[i], 1, #ARGV[1]) == ARGV[1] and want[vals[i]] == nil then
    redis.call('HDEL', KEYS[1], vals[i])
  end
end
for field, member in pairs(want) do redis.call('HSET', KEYS[1], field, member) end
vals = redis.call('HGETALL', KEYS[1])
for i = 1, #vals, 2 do
  local member = cjson.decode(vals[i + 1])
  after[member.id] = member
end
local joined, left = {}, {}
for id, member in pairs(after) do if before[id] == nil then table.insert(joined, member) end end
for id, member in pairs(before) do if after[id] == nil then table.insert(left, member) end end
local event = {room = ARGV[3]}
if #joined > 0 then event.joined = joined end
if #left > 0 then event.left = left end
if #joined + #left > 0 then redis.call('PUBLISH', ARGV[2], cjson.encode(event)) end
if wanted then
  redis.call('SADD', KEYS[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('SREM', KEYS[2], ARGV[3])
end
return #joined + #left
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

/// Redis-backed presence for one gateway process.
pub struct RedisPresence {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    /// The gateway's id, shared by all its incarnations.
    gateway: String,
    /// This process: `{gateway}/{epoch}`.
    instance: String,
    timings: Timings,
    /// This process's connections: (room, conn) → member. What Redis is
    /// made to hold at every heartbeat.
    local: Mutex<HashMap<(String, String), Member>>,
    /// The members each local room last heard of, to tell it the
    /// difference after events were missed.
    known: Mutex<HashMap<String, BTreeMap<String, Member>>>,
    /// Joins and leaves (shared) against the heartbeat's sync of a room
    /// (exclusive): a sync never sees a connection that is half added or
    /// half removed.
    changes: tokio::sync::RwLock<()>,
    events: broadcast::Sender<PresenceEvent>,
    ready: AtomicBool,
    join: Script,
    leave: Script,
    reap: Script,
    heartbeat: Script,
    sync: Script,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("instance", &self.instance)
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
        let epoch = uuid::Uuid::new_v4().simple().to_string();
        let instance = format!("{gateway}/{}", &epoch[..12]);
        tracing::info!(instance, "presence instance");
        let presence = Arc::new(Self {
            client,
            conn,
            keys: Keys::new(scope),
            gateway: gateway.to_owned(),
            instance,
            timings: Timings::new(timeout),
            local: Mutex::default(),
            known: Mutex::default(),
            changes: tokio::sync::RwLock::new(()),
            events: broadcast::channel(4096).0,
            ready: AtomicBool::new(false),
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            reap: Script::new(REAP),
            heartbeat: Script::new(HEARTBEAT),
            sync: Script::new(SYNC),
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
        format!("{}|{conn}", self.instance)
    }

    /// Whether `instance` is an incarnation of this gateway (the bare id is
    /// how gateways before instances registered).
    fn is_incarnation(&self, instance: &str) -> bool {
        instance == self.gateway
            || instance
                .strip_prefix(self.gateway.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
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
            .key(self.keys.rooms_of(&self.instance))
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
        Ok(members_of(&values).into_values().collect())
    }

    /// Refreshes the heartbeat, then makes Redis hold exactly this
    /// process's connections. Returns whether Redis answered.
    async fn beat(&self) -> bool {
        let beat: Result<i64, _> = self
            .heartbeat
            .key(self.keys.heartbeat(&self.instance))
            .key(self.keys.gateways())
            .key(self.keys.rooms_of(&self.instance))
            .arg(self.timings.heartbeat_ttl.as_millis() as u64)
            .arg(&self.instance)
            .arg(self.timings.key_ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await;
        if let Err(e) = beat {
            tracing::warn!(error = %e, "presence heartbeat failed");
            return false;
        }
        match self.sync_all().await {
            Ok(0) => true,
            Ok(corrected) => {
                tracing::warn!(
                    corrected,
                    "presence in Redis had drifted from this gateway's; corrected"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "presence sync failed");
                false
            }
        }
    }

    /// Syncs every room this process has connections in, by its own record
    /// or by Redis's. Returns how many members joined or left by it.
    async fn sync_all(&self) -> Result<i64, PresenceError> {
        let mut rooms: HashSet<String> = self
            .conn
            .clone()
            .smembers(self.keys.rooms_of(&self.instance))
            .await
            .map_err(err)?;
        rooms.extend(
            self.local
                .lock()
                .expect("presence lock")
                .keys()
                .map(|(room, _)| room.clone()),
        );
        let mut corrected = 0;
        for room in rooms {
            let _exclusive = self.changes.write().await;
            let mut wanted = Vec::new();
            for ((r, conn), member) in self.local.lock().expect("presence lock").iter() {
                if *r == room {
                    wanted.push((
                        self.field(conn),
                        serde_json::to_string(&StoredMember::from(member)).map_err(err)?,
                    ));
                }
            }
            let mut call = self.sync.key(self.keys.room(&room));
            call.key(self.keys.rooms_of(&self.instance))
                .arg(format!("{}|", self.instance))
                .arg(self.keys.channel())
                .arg(&room)
                .arg(self.timings.key_ttl.as_millis() as u64);
            for (field, member) in wanted {
                call.arg(field).arg(member);
            }
            let changed: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(err)?;
            corrected += changed;
        }
        Ok(corrected)
    }

    /// Reaps every instance whose heartbeat has expired; on `start`, also
    /// every earlier incarnation of this gateway at once: it is dead,
    /// whatever its heartbeat says.
    async fn reap_dead(&self, start: bool) -> Result<(), PresenceError> {
        let mut conn = self.conn.clone();
        let instances: Vec<String> = conn.smembers(self.keys.gateways()).await.map_err(err)?;
        for instance in instances {
            if instance == self.instance {
                continue;
            }
            if start && self.is_incarnation(&instance) {
                tracing::info!(instance, "removing the presence of this gateway's previous incarnation");
                self.reap_instance(&instance).await?;
                continue;
            }
            let alive: bool = conn.exists(self.keys.heartbeat(&instance)).await.map_err(err)?;
            if !alive {
                tracing::info!(instance, "reaping the presence of a gateway that stopped heartbeating");
                self.reap_instance(&instance).await?;
            }
        }
        Ok(())
    }

    async fn reap_instance(&self, instance: &str) -> Result<(), PresenceError> {
        let _: i64 = self
            .reap
            .key(self.keys.rooms_of(instance))
            .key(self.keys.gateways())
            .key(self.keys.heartbeat(instance))
            .arg(format!("{instance}|"))
            .arg(self.keys.room_prefix())
            .arg(self.keys.channel())
            .arg(instance)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Applies an event to the member lists the local rooms know.
    fn note(&self, event: &PresenceEvent) {
        if let Some(members) = self.known.lock().expect("presence lock").get_mut(&event.room) {
            for m in &event.left {
                members.remove(&m.id);
            }
            for m in &event.joined {
                members.insert(m.id.clone(), m.clone());
            }
        }
    }

    /// After events may have been missed: tells each local room the
    /// difference between the members it knows and those Redis holds.
    async fn resync(&self) -> Result<(), PresenceError> {
        let rooms: Vec<String> = self.known.lock().expect("presence lock").keys().cloned().collect();
        for room in rooms {
            let values: Vec<String> = self.conn.clone().hvals(self.keys.room(&room)).await.map_err(err)?;
            let now = members_of(&values);
            let event = {
                let mut known = self.known.lock().expect("presence lock");
                let Some(before) = known.get_mut(&room) else { continue };
                let event = PresenceEvent {
                    joined: now.values().filter(|m| !before.contains_key(&m.id)).cloned().collect(),
                    left: before.values().filter(|m| !now.contains_key(&m.id)).cloned().collect(),
                    room,
                    origin: None,
                };
                *before = now;
                event
            };
            if !event.joined.is_empty() || !event.left.is_empty() {
                tracing::info!(
                    room = event.room,
                    joined = event.joined.len(),
                    left = event.left.len(),
                    "presence re-synced"
                );
                let _ = self.events.send(event);
            }
        }
        Ok(())
    }
}

/// Members by id from a room hash's values (a user with several
/// connections once).
fn members_of(values: &[String]) -> BTreeMap<String, Member> {
    values
        .iter()
        .filter_map(|v| serde_json::from_str::<StoredMember>(v).ok())
        .map(|m| (m.id.clone(), Member::from(m)))
        .collect()
}

/// Heartbeat and reaper loop, until the presence is dropped.
async fn maintain(presence: std::sync::Weak<RedisPresence>, timings: Timings) {
    let mut last_beat: Option<tokio::time::Instant> = None;
    let mut started = false;
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
        if ok {
            match presence.reap_dead(!started).await {
                Ok(()) => started = true,
                Err(e) => {
                    tracing::warn!(error = %e, "presence reaper failed");
                    ok = false;
                }
            }
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
/// Redis goes away; after each (re)subscription the local rooms are
/// re-synced, as events published meanwhile were lost.
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
                if let Some(presence) = presence.upgrade()
                    && let Err(e) = presence.resync().await
                {
                    tracing::warn!(error = %e, "presence re-sync failed");
                }
                while let Some(message) = messages.next().await {
                    let Some(presence) = presence.upgrade() else { return };
                    match serde_json::from_slice::<WireEvent>(message.get_payload_bytes()) {
                        Ok(e) => {
                            let event = PresenceEvent {
                                room: e.room,
                                joined: e.joined.into_iter().map(Member::from).collect(),
                                left: e.left.into_iter().map(Member::from).collect(),
                                origin: e.origin,
                            };
                            presence.note(&event);
                            let _ = presence.events.send(event);
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
            let _shared = self.changes.read().await;
            // Recorded first: should the call time out after Redis ran it,
            // the record is undone below and the next sync removes it.
            let key = (room.to_owned(), conn.to_owned());
            self.local
                .lock()
                .expect("presence lock")
                .insert(key.clone(), member.clone());
            match self.register(room, member, conn).await {
                Ok(members) => {
                    let known = members.iter().map(|m| (m.id.clone(), m.clone())).collect();
                    self.known.lock().expect("presence lock").insert(room.to_owned(), known);
                    Ok(members)
                }
                Err(e) => {
                    self.local.lock().expect("presence lock").remove(&key);
                    Err(e)
                }
            }
        })
    }

    fn leave<'a>(
        &'a self,
        room: &'a str,
        member: &'a Member,
        conn: &'a str,
    ) -> BoxFuture<'a, Result<(), PresenceError>> {
        Box::pin(async move {
            let _shared = self.changes.read().await;
            {
                let mut local = self.local.lock().expect("presence lock");
                local.remove(&(room.to_owned(), conn.to_owned()));
                if !local.keys().any(|(r, _)| r == room) {
                    self.known.lock().expect("presence lock").remove(room);
                }
            }
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
                .key(self.keys.rooms_of(&self.instance))
                .arg(self.field(conn))
                .arg(&member.id)
                .arg(self.keys.channel())
                .arg(event)
                .arg(room)
                .arg(format!("{}|", self.instance))
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
            self.known.lock().expect("presence lock").clear();
            if let Err(e) = self.reap_instance(&self.instance).await {
                tracing::warn!(error = %e, "could not remove this gateway's presence");
            }
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
