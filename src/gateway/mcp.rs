//! `/mcp`: rmcp's streamable HTTP transport (stateful sessions for the
//! initialize-based revisions 2025-03-26..2025-11-25, and the session-less
//! 2026-07-28 revision, served statelessly on the same path), behind a front
//! that fills in what rmcp leaves out:
//!
//! - a body that is not JSON gets 400 with a JSON-RPC parse error (-32700),
//!   one that is not a JSON-RPC message 400 with -32600 (rmcp: 415, text);
//! - a new session (`initialize` without `Mcp-Session-Id`) is admitted only
//!   under the [`SessionCap`]: 503 with a JSON-RPC error otherwise;
//! - a JSON-RPC batch is served where the session's revision has batches
//!   (2025-03-26, which sends no `MCP-Protocol-Version` header): each
//!   message goes to rmcp on its own, unchanged, and the answers come back
//!   as one JSON array, or as one event stream when any answer streams;
//! - every 4xx rmcp answers in plain text (wrong `Accept`, missing or
//!   unknown session, bad protocol version header, ...) gets a JSON-RPC
//!   error body with the same text.
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header, request};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::future::join_all;
use futures_util::stream::{self, BoxStream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, GetExtensions};
use rmcp::transport::streamable_http_server::session::SessionId;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;

use crate::identity::Identity;

use super::direct_post;
use super::presented::DirectRequest;
use super::shortcut::{Handover, Served, Sessions, Shortcut};
use super::wire::{self, Refusal, SERVER_ERROR, SessionCap, VERSION_HEADER};

/// Path of the streamable HTTP transport.
pub const MCP_PATH: &str = "/mcp";
/// A streamable HTTP session with no traffic at all for this long is closed.
/// rmcp's default is 5 minutes, too short for an agent that idles between
/// tasks; an open GET stream's keep-alives do not count as traffic.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// The one revision whose streamable HTTP transport has JSON-RPC batches.
const BATCH_REVISION: &str = "2025-03-26";
const SESSION_HEADER: &str = "mcp-session-id";
/// Longest plain-text error body of rmcp's that is turned into JSON.
const MAX_ERROR_BODY: usize = 64 * 1024;

struct Front<S: rmcp::ServerHandler + Send + 'static> {
    inner: StreamableHttpService<S, Sessions>,
    sessions: Arc<Sessions>,
    cap: Arc<SessionCap>,
    shortcut: Option<Arc<dyn Shortcut>>,
}

/// The `/mcp` routes. `hosts` and `origins` go to rmcp's own checks;
/// `shortcut` may serve some requests itself (see [`super::shortcut`]).
pub fn router<S, F>(
    new_handler: F,
    hosts: Vec<String>,
    origins: Vec<String>,
    max_sessions: usize,
    shortcut: Option<Arc<dyn Shortcut>>,
) -> (Router, Arc<SessionCap>)
where
    F: Fn() -> S + Send + Sync + 'static,
    S: rmcp::ServerHandler + Send + 'static,
{
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(SESSION_IDLE_TIMEOUT);
    let sessions = Arc::new(sessions);
    // legacy_session_mode keeps stateful sessions for initialize-based
    // clients. Plain JSON answers where a request has nothing to stream
    // (rmcp falls back to an event stream when it does).
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(true)
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins);
    let manager = Arc::new(Sessions::new(sessions.clone(), shortcut.clone()));
    let inner = StreamableHttpService::new(move || Ok(new_handler()), manager.clone(), config);
    let cap = SessionCap::new(max_sessions, sessions);
    let front = Arc::new(Front {
        inner,
        sessions: manager,
        cap: cap.clone(),
        shortcut,
    });
    let router = Router::new()
        .route(MCP_PATH, any(handle::<S>))
        .with_state(front);
    (router, cap)
}

async fn handle<S: rmcp::ServerHandler + Send + 'static>(
    State(front): State<Arc<Front<S>>>,
    request: Request,
) -> Response {
    if request.method() != Method::POST {
        return front.call(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, wire::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return wire::jsonrpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                SERVER_ERROR,
                &format!(
                    "cannot read the body (limit {} bytes): {e}",
                    wire::MAX_BODY_BYTES
                ),
            );
        }
    };
    if parts.headers.contains_key(SESSION_HEADER) && wire::is_single(&bytes) {
        return front.in_session(parts, bytes).await;
    }
    match wire::parse_body(&bytes) {
        Err(refusal) => refusal.into_response(),
        Ok(wire::Body::Batch(items)) => front.batch(parts, items).await,
        Ok(wire::Body::One(message)) => {
            let opens_session =
                !parts.headers.contains_key(SESSION_HEADER) && is_initialize(&message);
            let request = Request::from_parts(parts, Body::from(bytes));
            if opens_session {
                front
                    .cap
                    .admit(front.call(request))
                    .await
                    .unwrap_or_else(|full| full)
            } else {
                front.call(request).await
            }
        }
    }
}

fn is_initialize(message: &ClientJsonRpcMessage) -> bool {
    matches!(message, ClientJsonRpcMessage::Request(r)
        if matches!(r.request, ClientRequest::InitializeRequest(_)))
}

impl<S: rmcp::ServerHandler + Send + 'static> Front<S> {
    async fn call(&self, request: Request) -> Response {
        // Boxed so the routing futures that carry this one stay small.
        json_errors(Box::pin(self.inner.handle(request)).await.map(Body::new)).await
    }

    /// One message on an open session, the path of every call: a plain
    /// `tools/call` goes to the shortcut (see [`Self::direct`]); else rmcp
    /// parses it, and the front only when rmcp refuses it as not a message
    /// (415), to say how (-32700 or -32600), as for any other body.
    async fn in_session(&self, parts: request::Parts, bytes: Bytes) -> Response {
        let parts = match self.direct(parts, &bytes).await {
            Ok(answer) => return answer,
            Err(parts) => parts,
        };
        let request = Request::from_parts(parts, Body::from(bytes.clone()));
        let response = Box::pin(self.inner.handle(request)).await.map(Body::new);
        if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE
            && let Err(refusal) = wire::parse_body(&bytes)
        {
            return refusal.into_response();
        }
        json_errors(response).await
    }

    /// Serves a plain `tools/call` (see [`direct_post`]) with the shortcut.
    /// A call whose response is all it sends is answered here in plain JSON,
    /// one write with nothing to parse as an event stream. Any other, and
    /// one the shortcut declines, gives back its parts for rmcp, with a
    /// [`Handover`]: rmcp then serves the call's event stream, or the
    /// request itself.
    async fn direct(
        &self,
        mut parts: request::Parts,
        bytes: &[u8],
    ) -> Result<Response, request::Parts> {
        let Some(shortcut) = &self.shortcut else {
            return Err(parts);
        };
        let Some(id) = parts
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(parts);
        };
        let Some(mut request) = direct_post::call_tool(&parts.headers, bytes) else {
            return Err(parts);
        };
        let session = SessionId::from(id);
        let direct = DirectRequest {
            identity: parts.extensions.get::<Arc<Identity>>().cloned(),
            session: session.clone(),
        };
        request.request.extensions_mut().insert(direct);
        self.sessions.keep_worker(&session).await;
        let served = shortcut.serve(&session, ClientJsonRpcMessage::Request(request));
        let handover = match served {
            Ok(held) => match held.await {
                Served::Answer(answer) => return Ok(answer.into_response()),
                Served::Stream(events) => Handover::with(events),
            },
            Err(_) => Handover::default(),
        };
        parts.extensions.insert(handover);
        Err(parts)
    }

    /// Serves a batch message by message; see the module doc.
    async fn batch(
        &self,
        parts: request::Parts,
        items: Vec<(Value, ClientJsonRpcMessage)>,
    ) -> Response {
        if let Err(refusal) = batch_allowed(&parts.headers, &items) {
            return refusal.into_response();
        }
        let calls = items.iter().map(|(raw, message)| {
            let mut request = Request::new(Body::from(raw.to_string()));
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = parts.uri.clone();
            *request.headers_mut() = parts.headers.clone();
            // Who the batch is for (see `http::guard`), for each of its requests.
            *request.extensions_mut() = parts.extensions.clone();
            let expects_answer = matches!(message, ClientJsonRpcMessage::Request(_));
            async move { (expects_answer, self.call(request).await) }
        });
        let mut answers: Vec<(bool, Response)> = join_all(calls).await;
        if let Some(i) = answers.iter().position(|(_, r)| !r.status().is_success()) {
            return answers.swap_remove(i).1;
        }
        let answers: Vec<Response> = answers
            .into_iter()
            .filter_map(|(expects, r)| expects.then_some(r))
            .collect();
        if answers.is_empty() {
            return StatusCode::ACCEPTED.into_response();
        }
        if answers.iter().all(|r| is_json(r.headers())) {
            let mut all = Vec::with_capacity(answers.len());
            for r in answers {
                match axum::body::to_bytes(r.into_body(), usize::MAX).await {
                    Ok(b) => all.push(serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null)),
                    Err(e) => tracing::warn!(error = %e, "a batch answer could not be read"),
                }
            }
            return axum::Json(Value::Array(all)).into_response();
        }
        merged_event_stream(answers)
    }
}

/// A batch is a 2025-03-26 feature, and never carries `initialize`.
fn batch_allowed(
    headers: &HeaderMap,
    items: &[(Value, ClientJsonRpcMessage)],
) -> Result<(), Refusal> {
    if !headers.contains_key(SESSION_HEADER) || items.iter().any(|(_, m)| is_initialize(m)) {
        return Err(Refusal::invalid(
            "Invalid Request: a batch cannot open a session; send `initialize` on its own",
        ));
    }
    match headers
        .get(VERSION_HEADER)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some(BATCH_REVISION) => Ok(()),
        Some(v) => Err(Refusal::invalid(format!(
            "Invalid Request: JSON-RPC batches belong to protocol revision {BATCH_REVISION} \
             only; this request is on {v}: send one message per POST"
        ))),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// One event stream from several answers: JSON ones become one `message`
/// event each; streamed ones pass through (rmcp writes one event per frame).
fn merged_event_stream(answers: Vec<Response>) -> Response {
    let streams: Vec<BoxStream<'static, Result<Bytes, axum::Error>>> = answers
        .into_iter()
        .map(|r| {
            if is_json(r.headers()) {
                let event = async move {
                    let b = axum::body::to_bytes(r.into_body(), usize::MAX).await?;
                    let data = String::from_utf8_lossy(&b).replace('\n', "");
                    Ok(Bytes::from(format!("event: message\ndata: {data}\n\n")))
                };
                stream::once(event).boxed()
            } else {
                r.into_body().into_data_stream().boxed()
            }
        })
        .collect();
    let mut response = Body::from_stream(stream::select_all(streams)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// rmcp answers some refusals in plain text; give them a JSON-RPC error body.
async fn json_errors(response: Response) -> Response {
    if !response.status().is_client_error() || is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_ERROR_BODY).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let text = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("refused")
            .to_string()
    } else {
        text
    };
    let json = wire::jsonrpc_error(parts.status, SERVER_ERROR, &text);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, json.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(json: &str) -> Vec<(Value, ClientJsonRpcMessage)> {
        match wire::parse_body(json.as_bytes()).unwrap() {
            wire::Body::Batch(b) => b,
            wire::Body::One(_) => panic!("not a batch"),
        }
    }

    #[test]
    fn batches_only_inside_a_2025_03_26_session() {
        let pings = items(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
        let mut h = HeaderMap::new();
        assert!(batch_allowed(&h, &pings).is_err(), "no session");
        h.insert(SESSION_HEADER, "abc".parse().unwrap());
        assert!(batch_allowed(&h, &pings).is_ok());
        h.insert(VERSION_HEADER, "2025-03-26".parse().unwrap());
        assert!(batch_allowed(&h, &pings).is_ok());
        h.insert(VERSION_HEADER, "2025-06-18".parse().unwrap());
        let r = batch_allowed(&h, &pings).unwrap_err();
        assert!(r.message.contains("2025-06-18"), "{}", r.message);
        h.remove(VERSION_HEADER);
        let init = items(
            r#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}]"#,
        );
        assert!(batch_allowed(&h, &init).is_err());
    }

    #[tokio::test]
    async fn plain_text_refusals_get_json_rpc_bodies() {
        let plain = Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("Not Found: Session not found"))
            .unwrap();
        let r = json_errors(plain).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(is_json(r.headers()));
        let b = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["code"], SERVER_ERROR);
        assert_eq!(v["error"]["message"], "Not Found: Session not found");
    }
}
