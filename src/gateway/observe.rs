//! `/metrics`: the process-wide counters plus the gauges that are read off
//! the fleet's status at scrape time (servers by phase, restarts, upstream
//! readiness), so they can never drift from what `/status` says.
use rmcp::ErrorData;

use crate::metrics::{self, Phase, Server};
use crate::status::FleetStatus;

/// The OpenMetrics text for a scrape.
pub fn metrics_text(status: &FleetStatus) -> String {
    // The status gauges are cleared and refilled: one scrape at a time, so a
    // concurrent scrape never reads them half-filled.
    static SCRAPE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SCRAPE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let m = metrics::global();
    m.servers.clear();
    m.restarts.clear();
    m.upstream_ready.clear();
    for (name, s) in &status.servers {
        m.servers
            .get_or_create(&Phase {
                phase: format!("{:?}", s.phase),
            })
            .inc();
        let server = Server {
            server: name.clone(),
        };
        m.restarts
            .get_or_create(&server)
            .set(i64::from(s.restart_count));
        if let Some(ready) = &s.ready {
            m.upstream_ready
                .get_or_create(&server)
                .set(i64::from(ready.status));
        }
    }
    m.forget_servers(&|server| status.servers.contains_key(server));
    m.encode()
}

/// Counts a client request by method and outcome
/// (`mcp_fleet_gateway_requests`) and hands its result on.
pub fn counted<T>(method: &'static str, result: Result<T, ErrorData>) -> Result<T, ErrorData> {
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::global()
        .requests
        .get_or_create(&metrics::Method { method, outcome })
        .inc();
    result
}
