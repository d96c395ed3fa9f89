//! Prometheus metrics (OpenMetrics text on the gateway's `/metrics`).
//!
//! One process-wide set, so every layer can count without threading a handle
//! through its constructors. Label values are bounded: outcomes and verbs
//! are fixed words, methods are the MCP method names (anything else is
//! `other`), servers are the catalog's names (removed ones are forgotten at
//! the next scrape, see [`Metrics::forget_servers`]). Never a session id,
//! never an argument.
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Verb {
    pub verb: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Phase {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Server {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerOutcome {
    pub server: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Transport {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Method {
    pub method: &'static str,
    pub outcome: &'static str,
}

fn seconds_histogram() -> Histogram {
    // 0.25 ms … ~8 s: a relayed call's own overhead up to a slow tool.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<Outcome, Counter>,
    pub reconcile_seconds: Histogram,
    pub queue_depth: Gauge,
    pub servers: Family<Phase, Gauge>,
    pub restarts: Family<Server, Gauge>,
    pub engine_calls: Family<Verb, Counter>,
    pub image_pulls: Family<Outcome, Counter>,
    pub sessions: Family<Transport, Gauge>,
    pub requests: Family<Method, Counter>,
    pub tool_calls: Family<ServerOutcome, Counter>,
    pub tool_call_seconds: Family<Server, Histogram, fn() -> Histogram>,
    pub upstream_ready: Family<Server, Gauge>,
    pub list_changed: Counter,
    /// Servers with tool-call series, so removed ones can be forgotten.
    tool_servers: Mutex<HashSet<String>>,
}

impl Metrics {
    fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("mcp_fleet"),
            reconciles: Family::default(),
            reconcile_seconds: seconds_histogram(),
            queue_depth: Gauge::default(),
            servers: Family::default(),
            restarts: Family::default(),
            engine_calls: Family::default(),
            image_pulls: Family::default(),
            sessions: Family::default(),
            requests: Family::default(),
            tool_calls: Family::default(),
            tool_call_seconds: Family::new_with_constructor(seconds_histogram),
            upstream_ready: Family::default(),
            list_changed: Counter::default(),
            tool_servers: Mutex::new(HashSet::new()),
        };
        let r = &mut m.registry;
        r.register("reconciles", "Reconciles by result", m.reconciles.clone());
        r.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            m.reconcile_seconds.clone(),
        );
        r.register(
            "work_queue_depth",
            "Servers waiting to be reconciled",
            m.queue_depth.clone(),
        );
        r.register("servers", "Servers by phase", m.servers.clone());
        r.register(
            "server_restarts",
            "Restarts of each server's container",
            m.restarts.clone(),
        );
        r.register(
            "engine_calls",
            "Container engine calls by verb and outcome",
            m.engine_calls.clone(),
        );
        r.register(
            "image_pulls",
            "Image pulls by outcome",
            m.image_pulls.clone(),
        );
        r.register(
            "gateway_sessions",
            "Open client sessions by transport",
            m.sessions.clone(),
        );
        r.register(
            "gateway_requests",
            "Client requests by MCP method and outcome",
            m.requests.clone(),
        );
        r.register(
            "tool_calls",
            "Tool calls by server and outcome",
            m.tool_calls.clone(),
        );
        r.register(
            "tool_call_duration_seconds",
            "Tool call latency through the gateway, by server",
            m.tool_call_seconds.clone(),
        );
        r.register(
            "upstream_ready",
            "1 when the gateway has a ready MCP session to the server",
            m.upstream_ready.clone(),
        );
        r.register(
            "list_changed_sent",
            "list_changed notifications sent to client sessions",
            m.list_changed.clone(),
        );
        m
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// One finished reconcile.
    pub fn reconciled(&self, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.reconciles.get_or_create(&Outcome { outcome }).inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// One finished tool call.
    pub fn tool_call(&self, server: &str, outcome: &'static str, took: Duration) {
        let mut seen = self.tool_servers.lock().expect("metrics lock");
        if !seen.contains(server) {
            seen.insert(server.to_string());
        }
        drop(seen);
        self.tool_calls
            .get_or_create(&ServerOutcome {
                server: server.to_string(),
                outcome,
            })
            .inc();
        self.tool_call_seconds
            .get_or_create(&Server {
                server: server.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Drops the per-server series of servers that no longer exist.
    pub fn forget_servers(&self, keep: &dyn Fn(&str) -> bool) {
        let gone: Vec<String> = {
            let mut seen = self.tool_servers.lock().expect("metrics lock");
            let gone = seen.iter().filter(|s| !keep(s)).cloned().collect();
            seen.retain(|s| keep(s));
            gone
        };
        for server in gone {
            let label = Server { server };
            self.tool_call_seconds.remove(&label);
            for outcome in OUTCOMES {
                self.tool_calls.remove(&ServerOutcome {
                    server: label.server.clone(),
                    outcome,
                });
            }
        }
    }
}

/// The outcomes every counter here uses.
pub const OUTCOMES: [&str; 3] = ["ok", "error", "timeout"];

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The MCP method names counted by name; anything else is `other`, so a client
/// cannot grow the label set.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 22] = [
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "server/discover",
        "subscriptions/listen",
        "tasks/get",
        "tasks/list",
        "tasks/cancel",
        "tasks/result",
        "sampling/createMessage",
        "elicitation/create",
        "roots/list",
    ];
    KNOWN
        .iter()
        .find(|k| **k == method)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_openmetrics_with_bounded_labels() {
        let m = Metrics::new();
        m.tool_call("time", "ok", Duration::from_millis(2));
        m.tool_call("gone", "error", Duration::from_millis(2));
        m.requests
            .get_or_create(&Method {
                method: method_label("tools/call"),
                outcome: "ok",
            })
            .inc();
        assert_eq!(method_label("x/anything-a-client-sends"), "other");
        m.forget_servers(&|s| s == "time");
        let text = m.encode();
        assert!(text.contains("mcp_fleet_tool_calls_total{server=\"time\",outcome=\"ok\"} 1"));
        assert!(!text.contains("gone"), "{text}");
        assert!(
            text.contains(
                "mcp_fleet_gateway_requests_total{method=\"tools/call\",outcome=\"ok\"} 1"
            )
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
