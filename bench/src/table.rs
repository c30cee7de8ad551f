//! One table of several runs (the JSON lines of `run --json`): a row per
//! scenario and server, and where a scenario ran on both servers, a row of
//! ratios WhisperRooms ÷ Centrifugo.

use serde_json::Value;

const HEADER: [&str; 11] = [
    "scenario",
    "server",
    "conns",
    "deliveries/s",
    "latency p50 / p99 / p99.9 ms",
    "join p50 / p99 ms",
    "RSS per conn",
    "RSS",
    "CPU cores",
    "CPU ms per 1k deliveries",
    "delivered / expected, errors",
];

/// Renders the table, as Markdown or as aligned plain text.
pub(crate) fn render(runs: &[Value], markdown: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut labels: Vec<&str> = runs.iter().filter_map(|r| r["label"].as_str()).collect();
    labels.dedup();
    for label in labels {
        let of = |protocol: &str| {
            runs.iter()
                .find(|r| r["label"].as_str() == Some(label) && r["protocol"].as_str() == Some(protocol))
        };
        let (ours, theirs) = (of("whisper"), of("centrifugo"));
        for run in [ours, theirs].into_iter().flatten() {
            rows.push(row(label, run));
        }
        if let (Some(a), Some(b)) = (ours, theirs) {
            rows.push(ratios(a, b));
        }
    }
    grid(&HEADER, rows, markdown)
}

/// Rows under a header, as Markdown or as aligned plain text.
pub(crate) fn grid(header: &[&str], rows: Vec<Vec<String>>, markdown: bool) -> String {
    if markdown {
        let mut out = format!("| {} |\n|{}\n", header.join(" | "), " --- |".repeat(header.len()));
        for r in rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    } else {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        std::iter::once(line(header.iter().map(|h| (*h).to_owned()).collect()))
            .chain(rows.into_iter().map(line))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn num(run: &Value, key: &str) -> f64 {
    run[key].as_f64().unwrap_or(f64::NAN)
}

fn pct(run: &Value, key: &str, i: usize) -> f64 {
    run[key][i].as_f64().unwrap_or(f64::NAN)
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".into()
    }
}

fn bytes(v: f64) -> String {
    match v {
        v if !v.is_finite() => "-".into(),
        v if v >= 1024.0 * 1024.0 => format!("{:.1} MiB", v / (1024.0 * 1024.0)),
        v => format!("{:.1} KiB", v / 1024.0),
    }
}

fn row(label: &str, run: &Value) -> Vec<String> {
    let server = match run["protocol"].as_str() {
        Some("whisper") => "WhisperRooms",
        Some("centrifugo") => "Centrifugo",
        _ => "?",
    };
    let errors: u64 = run["errors"]
        .as_object()
        .map_or(0, |e| e.values().filter_map(Value::as_u64).sum());
    let sending = num(run, "rate") > 0.0;
    vec![
        label.to_owned(),
        format!("{server} ×{}", run["servers"]),
        run["clients"].to_string(),
        if sending {
            fmt(num(run, "deliveries_per_second"), 0)
        } else {
            "-".into()
        },
        if sending {
            format!(
                "{} / {} / {}",
                fmt(pct(run, "latency_ms", 0), 1),
                fmt(pct(run, "latency_ms", 2), 1),
                fmt(pct(run, "latency_ms", 3), 1)
            )
        } else {
            "-".into()
        },
        format!(
            "{} / {}",
            fmt(pct(run, "join_ms", 0), 2),
            fmt(pct(run, "join_ms", 2), 2)
        ),
        bytes(num(run, "rss_per_connection_bytes")),
        bytes(num(run, "rss_peak_bytes")),
        fmt(num(run, "cpu_cores"), 2),
        if sending {
            fmt(num(run, "cpu_ms_per_1k_deliveries"), 1)
        } else {
            "-".into()
        },
        format!("{} / {}, {errors}", run["delivered"], run["expected"]),
    ]
}

/// WhisperRooms ÷ Centrifugo for the numbers where one of them is better:
/// above 1 is better for throughput, below 1 for latency, memory and CPU.
fn ratios(ours: &Value, theirs: &Value) -> Vec<String> {
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{}×", fmt(a / b, 2))
        } else {
            "-".into()
        }
    };
    let sending = num(ours, "rate") > 0.0;
    let lat = |i| ratio(pct(ours, "latency_ms", i), pct(theirs, "latency_ms", i));
    vec![
        String::new(),
        "ratio WR ÷ C".into(),
        String::new(),
        if sending {
            ratio(num(ours, "deliveries_per_second"), num(theirs, "deliveries_per_second"))
        } else {
            String::new()
        },
        if sending {
            format!("{} / {} / {}", lat(0), lat(2), lat(3))
        } else {
            String::new()
        },
        format!(
            "{} / {}",
            ratio(pct(ours, "join_ms", 0), pct(theirs, "join_ms", 0)),
            ratio(pct(ours, "join_ms", 2), pct(theirs, "join_ms", 2))
        ),
        ratio(
            num(ours, "rss_per_connection_bytes"),
            num(theirs, "rss_per_connection_bytes"),
        ),
        ratio(num(ours, "rss_peak_bytes"), num(theirs, "rss_peak_bytes")),
        ratio(num(ours, "cpu_cores"), num(theirs, "cpu_cores")),
        if sending {
            ratio(
                num(ours, "cpu_ms_per_1k_deliveries"),
                num(theirs, "cpu_ms_per_1k_deliveries"),
            )
        } else {
            String::new()
        },
        String::new(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(protocol: &str, deliveries: f64) -> Value {
        json!({"label": "fan-out", "protocol": protocol, "servers": 1, "clients": 1000, "rate": 20.0,
               "deliveries_per_second": deliveries, "latency_ms": [1.0, 2.0, 4.0, 8.0, 9.0],
               "join_ms": [0.5, 1.0, 2.0, 3.0, 4.0], "rss_per_connection_bytes": 4096.0,
               "rss_peak_bytes": 1048576.0, "cpu_cores": 0.5, "cpu_ms_per_1k_deliveries": 2.0,
               "delivered": 10, "expected": 10, "errors": {}})
    }

    #[test]
    fn a_scenario_on_both_servers_gets_a_ratio_row() {
        let text = render(&[run("whisper", 40_000.0), run("centrifugo", 20_000.0)], true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[2].starts_with("| fan-out | WhisperRooms ×1 | 1000 | 40000 | 1.0 / 4.0 / 8.0 |"));
        assert!(lines[4].contains("| 2.00× |"), "{text}");
        assert!(!render(&[run("whisper", 1.0)], false).contains("ratio"));
    }
}
