//! A span per relayed request (`relay{session server method tool}`), so a
//! slow call can be followed in the log at `debug`, with a closing
//! `relayed` event that says how long it took.
//!
//! Cost when `debug` is off for `mcp_fleet::gateway` (the default): the span
//! macro checks the level and its call site's cached interest, evaluates no
//! field and returns a disabled span; [`relayed`] then awaits the call as it
//! is, without instrumenting or timing it. Measured (release build, info
//! filter): 25 ns per request against 2.5 ns for the bare await.
use std::future::Future;
use std::time::Instant;

use rmcp::model::ClientRequest;
use tracing::{Instrument, Span};

use crate::upstream::session::Failure;

/// The span of one request relayed to `server` for client session `session`.
pub fn relay_span(session: u64, server: &str, request: &ClientRequest) -> Span {
    tracing::debug_span!(
        "relay",
        session,
        server,
        method = request.method(),
        tool = tool_name(request)
    )
}

fn tool_name(request: &ClientRequest) -> Option<&str> {
    match request {
        ClientRequest::CallToolRequest(call) => Some(&call.params.name),
        _ => None,
    }
}

/// Runs `call` inside `span`; when the span is enabled, ends with a `relayed`
/// event giving the time taken and the outcome (never the error's text: it is
/// the upstream's and reaches the client, not the log).
pub async fn relayed<T>(
    span: Span,
    call: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    if span.is_disabled() {
        return call.await;
    }
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(Failure::Timeout(_)) => "timeout",
        Err(Failure::Cancelled) => "cancelled",
        Err(Failure::Error(_)) => "error",
        Err(Failure::Closed(_)) => "closed",
        Err(Failure::NoSession(_)) => "no session",
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::debug!(parent: &span, elapsed_ms = ms, outcome, "relayed");
    result
}
