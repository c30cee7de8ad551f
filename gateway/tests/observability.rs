//! A real Prometheus scrapes two gateways (and a controller) while clients
//! chat; every query of the Grafana dashboard and every alert rule is then
//! evaluated through Prometheus' HTTP API. A metric renamed in code leaves a
//! dashboard query without data, and this test fails.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Gateway, http_get, kafka, redis, service, unique};
use serde_json::Value;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/whisperrooms/dashboards/whisperrooms.json"
);
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/whisperrooms/rules/whisperrooms.rules.yaml"
);

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The Prometheus binary: `WHISPER_PROMETHEUS`, else `prometheus` on PATH.
fn prometheus_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("WHISPER_PROMETHEUS") {
        return Some(path.into());
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file());
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("prometheus is not installed (apt-get install prometheus)");
    }
    found
}

/// The controller built beside this gateway, run against the test API
/// server, so the controller's metrics are real too.
fn start_controller(addr: SocketAddr) -> Option<Process> {
    let kubeconfig = service("WHISPER_TEST_KUBECONFIG")?;
    let binary = Path::new(env!("CARGO_BIN_EXE_whisper-gateway")).with_file_name("whisper-controller");
    assert!(
        binary.is_file(),
        "{} is not built: cargo build --workspace",
        binary.display()
    );
    let namespace = unique("obs");
    let child = Command::new(binary)
        .env("KUBECONFIG", kubeconfig)
        .env("WHISPER_LISTEN", addr.to_string())
        .env("WHISPER_WATCH_NAMESPACE", &namespace[..20])
        .env("WHISPER_LEADER_ELECTION", "false")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Some(Process(child))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs a query; returns Prometheus' answer.
async fn query(prometheus: SocketAddr, expr: &str) -> Value {
    let (code, body) = http_get(prometheus, &format!("/api/v1/query?query={}", percent_encode(expr)))
        .await
        .expect("prometheus answers");
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("success")),
        "{expr}: {body}"
    );
    answer
}

fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                panel["title"].as_str().unwrap().to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert!(queries.len() >= 15, "the dashboard lost its queries");
    queries
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(start) = expr[i..].find("whisper_").map(|s| s + i) {
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |e| e + start);
        if start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test]
async fn every_dashboard_query_and_alert_rule_works_on_real_metrics() {
    let (Some(brokers), Some(redis), Some(prometheus_bin)) = (kafka(), redis(), prometheus_binary()) else {
        return;
    };
    let topic = unique("obs");
    let settings = [
        ("WHISPER_KAFKA_BROKERS", brokers.as_str()),
        ("WHISPER_KAFKA_TOPIC", topic.as_str()),
        ("WHISPER_REDIS_URL", redis.as_str()),
    ];
    let gateways = [Gateway::start(&settings).await, Gateway::start(&settings).await];
    let controller_addr = free_addr();
    let controller = start_controller(controller_addr);

    let dir = std::env::temp_dir().join(unique("prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {RULES}\nscrape_configs:\n  - job_name: whisper-gateway\n    static_configs:\n      - targets: ['{}', '{}']\n",
        gateways[0].addr, gateways[1].addr
    );
    if controller.is_some() {
        config +=
            &format!("  - job_name: whisper-controller\n    static_configs:\n      - targets: ['{controller_addr}']\n");
    }
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let prometheus = free_addr();
    let _prometheus = Process(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={prometheus}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    // Chat across both gateways while Prometheus scrapes.
    let mut alice = Client::hello(&gateways[0].url(), "alice").await;
    let mut bob = Client::hello(&gateways[1].url(), "bob").await;
    alice.join("metrics").await;
    bob.join("metrics").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    loop {
        alice.say("metrics", &format!("tick {sent}")).await;
        bob.next_message().await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Prometheus may still be starting (its storage first): wait for it
        // to listen before asking.
        if sent >= 20
            && http_get(prometheus, "/-/ready")
                .await
                .is_some_and(|(code, _)| code == 200)
        {
            let up = query(prometheus, "count(up == 1)").await;
            let want = if controller.is_some() { "3" } else { "2" };
            let scraped = query(prometheus, "min(count_over_time(whisper_connections[1m]))").await;
            let enough = scraped["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                >= Some(4.0);
            if up["data"]["result"][0]["value"][1] == want && enough {
                break;
            }
        }
        assert!(Instant::now() < deadline, "Prometheus never scraped every target");
    }

    for (title, expr) in dashboard_queries() {
        let answer = query(prometheus, &expr).await;
        let result = answer["data"]["result"].as_array().unwrap();
        assert!(!result.is_empty(), "dashboard panel `{title}` has no data: {expr}");
    }

    let names: BTreeSet<String> = {
        let (_, body) = http_get(prometheus, "/api/v1/label/__name__/values").await.unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    };
    let rules_deadline = Instant::now() + Duration::from_secs(20);
    let rules = loop {
        let (_, body) = http_get(prometheus, "/api/v1/rules").await.unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        if !rules.is_empty()
            && rules
                .iter()
                .all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")))
        {
            break rules;
        }
        assert!(Instant::now() < rules_deadline, "rules never evaluated: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(rules.len() >= 5, "alert rules went missing");
    for rule in &rules {
        let expr = rule["query"].as_str().unwrap();
        assert_eq!(
            rule["health"], "ok",
            "rule {} failed: {}",
            rule["name"], rule["lastError"]
        );
        query(prometheus, expr).await;
        for name in metric_names(expr) {
            let base = name.trim_end_matches("_bucket");
            let exported = names.contains(&name)
                || names.contains(&format!("{base}_bucket"))
                || (controller.is_none() && name.starts_with("whisper_controller_"));
            assert!(exported, "alert {} uses {name}, which nothing exports", rule["name"]);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names("sum(rate(whisper_a_total[5m])) / whisper_b{x=\"y\"} + foo_whisper_d"),
        BTreeSet::from(["whisper_a_total".into(), "whisper_b".into()])
    );
}
