//! Shared test harness: the real services, gateway processes, a gateway
//! inside the test process, and a WebSocket client that speaks protocol v1.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use whisper_gateway::config::{Config, Settings};
use whisper_gateway::server;
use whisper_gateway::state::AppState;

/// How long a test waits for an expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The address of a real service from `scripts/services env`, or `None`
/// (the test is skipped) outside CI. Under `CI=true` a missing service fails.
pub fn service(var: &str) -> Option<String> {
    service_of(var, "")
}

/// The same for the secured services, from `scripts/services env-secure`.
pub fn secure_service(var: &str) -> Option<String> {
    service_of(var, "-secure")
}

fn service_of(var: &str, set: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: the test services are not running (scripts/services up{set})")
        }
        _ => {
            eprintln!("skipping: {var} is not set (run `eval \"$(scripts/services env{set})\"`)");
            None
        }
    }
}

pub fn kafka() -> Option<String> {
    service("WHISPER_TEST_KAFKA_BROKERS")
}

pub fn redis() -> Option<String> {
    service("WHISPER_TEST_REDIS_URL")
}

/// An HS256 token for `sub`, expiring `exp_offset` seconds from now.
pub fn token(secret: &str, sub: &str, name: Option<&str>, exp_offset: i64) -> String {
    let exp = whisper_gateway::clock::now_ms() / 1000 + exp_offset;
    let mut claims = json!({"sub": sub, "exp": exp});
    if let Some(name) = name {
        claims["name"] = json!(name);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A variable `scripts/services env-secure` sets along with one already
/// found, so its absence is a broken setup, not a skip.
pub fn secure_service_var(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set (scripts/services env-secure sets it)"))
}

/// A file for a gateway's log and its path, in the system's temp folder.
pub fn log_file(name: &str) -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("{}.log", unique(name)));
    let file = std::fs::File::create(&path).expect("create log file");
    (path, file)
}

/// Waits until the log at `path` has a line containing `needle`; returns
/// the whole log.
pub async fn wait_for_log(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the log within 30 s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A topic name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `whisper-gateway` process, killed when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    pub id: String,
    child: Child,
}

impl Gateway {
    /// Starts a gateway with these settings and waits until it is ready.
    pub async fn start(settings: &[(&str, &str)]) -> Gateway {
        Self::spawn(settings, Stdio::inherit()).await
    }

    /// Starts a gateway whose log (stderr) goes to `log`.
    pub async fn start_logging_to(settings: &[(&str, &str)], log: std::fs::File) -> Gateway {
        Self::spawn(settings, Stdio::from(log)).await
    }

    async fn spawn(settings: &[(&str, &str)], stderr: Stdio) -> Gateway {
        let mut gateway = Self::launch(settings, stderr);
        gateway.wait_ready().await;
        gateway
    }

    /// Starts a gateway whose log goes to `log` and waits (at most 60 s)
    /// for it to exit by itself; returns its status.
    pub async fn run_to_exit(settings: &[(&str, &str)], log: std::fs::File) -> std::process::ExitStatus {
        let mut gateway = Self::launch(settings, Stdio::from(log));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = gateway.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn launch(settings: &[(&str, &str)], stderr: Stdio) -> Gateway {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let id = unique("gw");
        let mut command = Command::new(env!("CARGO_BIN_EXE_whisper-gateway"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WHISPER_LISTEN", addr.to_string())
            .env("WHISPER_GATEWAY_ID", &id)
            .env("WHISPER_LOG", "info,whisper_gateway=debug")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in settings {
            command.env(k, v);
        }
        let child = command.spawn().expect("start whisper-gateway");
        Gateway { addr, id, child }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gateway exited early with {status}");
            }
            if http_get(self.addr, "/healthz")
                .await
                .is_some_and(|(code, _)| code == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway on {} did not become ready", self.addr);
    }

    /// Waits until `/readyz` answers `want` (200 or 503).
    pub async fn wait_readyz(&self, want: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(self.addr, "/readyz").await.map(|(code, _)| code) != Some(want) {
            assert!(Instant::now() < deadline, "/readyz never answered {want}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// Sends a signal and waits for the process to exit; returns its status.
    pub fn signal(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The gateway's metric value (the first sample whose line starts with `name`).
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.addr, "/metrics").await.expect("metrics answer");
        metric(&body, name)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway running inside the test process, on the embedded bus and
/// in-memory presence: no process to spawn, and its state can be read.
pub struct InProcess {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), server::Error>>,
}

impl InProcess {
    /// Starts one on a free port of 127.0.0.1 with these settings (and,
    /// unless they name one, a gateway id of its own).
    pub async fn start(settings: Settings) -> InProcess {
        let config = Config::from_settings(Settings {
            listen: Some("127.0.0.1:0".into()),
            gateway_id: settings.gateway_id.clone().or_else(|| Some(unique("gw"))),
            ..settings
        })
        .expect("valid test settings");
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = server::connect(config).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        InProcess {
            addr,
            state,
            stop,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// The gateway's metric value, as `/metrics` shows it.
    pub fn metric(&self, name: &str) -> f64 {
        metric(&self.state.metrics().encode(), name)
    }

    /// Shuts the gateway down (its sockets are closed with 1001) and waits
    /// until it has stopped.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The value of the first sample of metric `name` in a Prometheus text
/// exposition.
fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found in\n{exposition}"))
}

/// A minimal HTTP/1.1 GET; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Some((code, if chunked { dechunk(body) } else { body.to_owned() }))
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A protocol v1 client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user: Value,
    /// Frames read while waiting for an `ack`, served first by `recv`: the
    /// message itself may overtake its ack (both follow the broker's answer).
    backlog: VecDeque<Value>,
}

impl Client {
    /// Connects without saying hello.
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Client {
            ws,
            user: Value::Null,
            backlog: VecDeque::new(),
        }
    }

    /// Connects and says hello; returns once welcomed.
    pub async fn hello(url: &str, name: &str) -> Client {
        let mut client = Client::connect(url).await;
        client.send(json!({"type": "hello", "name": name})).await;
        let welcome = client.expect("welcome").await;
        client.user = welcome["user"].clone();
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send frame");
    }

    /// Sends frames as fast as it can, stopping quietly when the server has
    /// closed the connection meanwhile (what a flood is for).
    pub async fn flood(&mut self, frames: impl IntoIterator<Item = Value>) {
        for frame in frames {
            if self.ws.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
        }
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send frame");
    }

    /// The next text frame as JSON; panics on timeout or close.
    pub async fn recv(&mut self) -> Value {
        match self.backlog.pop_front() {
            Some(frame) => frame,
            None => self.read().await,
        }
    }

    /// The next text frame from the socket, past the backlog.
    async fn read(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match next {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("frames are JSON"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads frames until one of this type; panics on any `error` frame
    /// unless that is what is expected.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
            assert_ne!(
                frame["type"], "error",
                "unexpected error while waiting for {kind}: {frame}"
            );
        }
    }

    /// Waits for the server to close the connection; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        self.frames_until_close().await.1
    }

    /// Every text frame until the server closes the connection, and the
    /// close code (`None` when the connection just ended).
    pub async fn frames_until_close(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut frames: Vec<Value> = self.backlog.drain(..).collect();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => frames.push(serde_json::from_str(&text).expect("frames are JSON")),
                Ok(Some(Ok(Message::Close(frame)))) => return (frames, frame.map(|f| f.code.into())),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => return (frames, None),
                Err(_) => panic!("the server did not close the connection"),
            }
        }
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join", "room": room})).await;
        self.expect("joined").await
    }

    /// Sends a message and returns its id from the ack; every other frame
    /// that arrives meanwhile stays for `recv`.
    pub async fn say(&mut self, room: &str, text: &str) -> String {
        let answer = self.request(json!({"type": "send", "room": room, "text": text})).await;
        assert_eq!(answer["type"], "ack", "send refused: {answer}");
        answer["id"].as_str().unwrap().to_owned()
    }

    /// Sends a frame with a fresh `ref` and returns what answers it (`ack`,
    /// `pong`, `authed` or `error`); every other frame that arrives
    /// meanwhile stays for `recv`.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let reference = unique("ref");
        frame["ref"] = json!(reference);
        self.send(frame).await;
        loop {
            let frame = self.read().await;
            if frame["ref"] == reference.as_str()
                && ["ack", "pong", "authed", "error"].iter().any(|t| frame["type"] == *t)
            {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    /// The next `message` frame, skipping acks and presence.
    pub async fn next_message(&mut self) -> Value {
        self.expect("message").await
    }
}
