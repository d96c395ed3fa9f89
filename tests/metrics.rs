//! A real Prometheus (Debian's package) scrapes a running fleet's `/metrics`
//! with the gateway token; the test asks Prometheus's HTTP API for the
//! reconcile, phase, engine and tool-call series after a server is approved
//! and called. Needs `scripts/debian-env.sh` (run by `scripts/test`).
mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::mcp_client::{McpClient, McpTransport};
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "metrics-token-0123456789abcdef";

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Prometheus scraping `target` (host:port) every second with the token.
fn prometheus(f: &Fleet, target: &str, port: u16) -> Prometheus {
    let bin = std::env::var("MCP_FLEET_PROMETHEUS")
        .expect("MCP_FLEET_PROMETHEUS: run the tests with scripts/test (scripts/debian-env.sh)");
    let token = f.path("prometheus-token");
    std::fs::write(&token, TOKEN).expect("token file");
    let config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
         scrape_configs:\n\
         - job_name: mcp-fleet\n  \
           authorization: {{credentials_file: {}}}\n  \
           static_configs: [{{targets: ['{target}']}}]\n",
        token.display()
    );
    std::fs::write(f.path("prometheus.yml"), config).expect("config");
    let log = std::fs::File::create(f.path("prometheus.log")).expect("log");
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            f.path("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", f.path("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    Prometheus(child)
}

/// The result vector of an instant query, or None while Prometheus is not up.
async fn query(port: u16, promql: &str) -> Option<Vec<Value>> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={encoded}");
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let body: Value = r.json().await.ok()?;
    body["data"]["result"].as_array().cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_reconciles_phases_and_tool_calls() {
    let mut f = Fleet::new("metrics").await;
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    let token_file = f.path("gateway-token");
    std::fs::write(&token_file, TOKEN).expect("token");
    f.start(&["--auth-token-file", &token_file.display().to_string()]);
    let base = f.gateway_url().await;
    f.until("time ready", Duration::from_secs(60), || async {
        let s = f.status()?;
        (s["servers"]["time"]["ready"]["status"] == json!(true)).then_some(())
    })
    .await;
    let mut c = McpClient::connect(&format!("{base}/mcp"), McpTransport::Http, Some(TOKEN)).await;
    let (is_error, text) = c.call("get_current_time", json!({"timezone": "UTC"})).await;
    assert!(!is_error, "{text}");
    c.close().await;

    // Without the token, /metrics is closed like /status.
    let r = reqwest::get(format!("{base}/metrics")).await.expect("get");
    assert_eq!(r.status(), 401);

    let port = free_port();
    let target = base.trim_start_matches("http://").to_string();
    let _prom = prometheus(&f, &target, port);
    for (what, promql) in [
        ("the scrape succeeding", "up{job=\"mcp-fleet\"} == 1"),
        (
            "reconciles",
            "mcp_fleet_reconciles_total{outcome=\"ok\"} > 0",
        ),
        (
            "reconcile latency",
            "mcp_fleet_reconcile_duration_seconds_count > 0",
        ),
        (
            "servers by phase",
            "mcp_fleet_servers{phase=\"Running\"} == 1",
        ),
        (
            "upstream readiness",
            "mcp_fleet_upstream_ready{server=\"time\"} == 1",
        ),
        (
            "engine calls",
            "mcp_fleet_engine_calls_total{verb=\"create\",outcome=\"ok\"} > 0",
        ),
        (
            "tool calls",
            "mcp_fleet_tool_calls_total{server=\"time\",outcome=\"ok\"} == 1",
        ),
        (
            "tool latency",
            "mcp_fleet_tool_call_duration_seconds_count{server=\"time\"} == 1",
        ),
        (
            "requests by method",
            "mcp_fleet_gateway_requests_total{method=\"tools/call\",outcome=\"ok\"} >= 1",
        ),
    ] {
        f.until(
            &format!("Prometheus to report {what} ({promql})"),
            Duration::from_secs(60),
            || async {
                query(port, promql)
                    .await
                    .filter(|r| !r.is_empty())
                    .map(|_| ())
            },
        )
        .await;
    }
    // Labels stay bounded: no series carries a session id or an argument.
    let all = query(port, "{__name__=~\"mcp_fleet_.+\"}")
        .await
        .expect("series");
    for series in &all {
        let labels = series["metric"].as_object().expect("labels");
        for key in labels.keys() {
            assert!(
                [
                    "__name__",
                    "instance",
                    "job",
                    "outcome",
                    "verb",
                    "phase",
                    "server",
                    "transport",
                    "method",
                    "le"
                ]
                .contains(&key.as_str()),
                "unexpected label {key} in {series}"
            );
        }
    }
}
