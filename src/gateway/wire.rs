//! What the two MCP transports (`/mcp` in [`super::mcp`], `/sse` in
//! [`super::sse`]) and the router ([`super::http`]) share: JSON error bodies,
//! the body limit, JSON-RPC message parsing and the session cap.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

/// The streamable HTTP transport's protocol version header.
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// Largest accepted POST body on either transport (rmcp's own default).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// JSON-RPC's own error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
/// Transport-level refusals (unknown session, wrong headers), as the
/// official SDKs answer them.
pub const SERVER_ERROR: i64 = -32000;

/// A JSON error response: `{"error": kind, "message": message}`.
pub fn json_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": kind, "message": message})),
    )
        .into_response()
}

/// A JSON-RPC error response with no request id (the request could not be read).
pub fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": code, "message": message}
        })),
    )
        .into_response()
}

/// What a POST body holds. A batch keeps each message's JSON as it came,
/// to pass it on unchanged.
#[derive(Debug)]
pub enum Body {
    One(Box<ClientJsonRpcMessage>),
    Batch(Vec<(Value, ClientJsonRpcMessage)>),
}

/// Why a body is refused, as a JSON-RPC error.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: i64,
    pub message: String,
}

impl Refusal {
    pub fn invalid(message: impl Into<String>) -> Self {
        Refusal {
            code: INVALID_REQUEST,
            message: message.into(),
        }
    }

    /// 400 with the JSON-RPC error.
    pub fn into_response(self) -> Response {
        jsonrpc_error(StatusCode::BAD_REQUEST, self.code, &self.message)
    }
}

fn first_char(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// True if a body looks like one message (a JSON object), not a batch.
pub fn is_single(bytes: &[u8]) -> bool {
    first_char(bytes) == Some(b'{')
}

/// Parses a POST body: one JSON-RPC message or a non-empty batch. A single
/// message is read in one pass.
pub fn parse_body(bytes: &[u8]) -> Result<Body, Refusal> {
    if first_char(bytes) != Some(b'[') {
        return serde_json::from_slice::<ClientJsonRpcMessage>(bytes)
            .map(|m| Body::One(Box::new(m)))
            .map_err(|e| match serde_json::from_slice::<IgnoredAny>(bytes) {
                Ok(_) => not_a_message(e),
                Err(e) => parse_error(e),
            });
    }
    let items: Vec<Value> = serde_json::from_slice(bytes).map_err(|e| {
        if serde_json::from_slice::<IgnoredAny>(bytes).is_ok() {
            Refusal::invalid("Invalid Request: a batch is an array of JSON-RPC messages")
        } else {
            parse_error(e)
        }
    })?;
    if items.is_empty() {
        return Err(Refusal::invalid("Invalid Request: an empty batch"));
    }
    items
        .into_iter()
        .map(|v| {
            ClientJsonRpcMessage::deserialize(&v)
                .map(|m| (v, m))
                .map_err(not_a_message)
        })
        .collect::<Result<_, _>>()
        .map(Body::Batch)
}

fn parse_error(e: serde_json::Error) -> Refusal {
    Refusal {
        code: PARSE_ERROR,
        message: format!("Parse error: the body is not JSON ({e})"),
    }
}

fn not_a_message(e: serde_json::Error) -> Refusal {
    Refusal::invalid(format!(
        "Invalid Request: not a JSON-RPC 2.0 client message ({e})"
    ))
}

/// One limit on the MCP sessions open at once, `/mcp` and `/sse` together.
/// Sessions are created one at a time, so the limit is exact.
pub struct SessionCap {
    max: usize,
    mcp: Arc<LocalSessionManager>,
    sse: AtomicUsize,
    creating: tokio::sync::Mutex<()>,
}

impl SessionCap {
    pub fn new(max: usize, mcp: Arc<LocalSessionManager>) -> Arc<Self> {
        Arc::new(SessionCap {
            max,
            mcp,
            sse: AtomicUsize::new(0),
            creating: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs `create` (which opens one session) if the cap allows another
    /// session; else the 503 the client gets.
    pub async fn admit<T>(&self, create: impl Future<Output = T>) -> Result<T, Response> {
        let _one_at_a_time = self.creating.lock().await;
        if self.open().await >= self.max {
            tracing::warn!(max = self.max, "session refused: --max-sessions reached");
            return Err(self.full());
        }
        Ok(create.await)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Sessions open now, on both transports.
    pub async fn open(&self) -> usize {
        self.mcp.sessions.read().await.len() + self.sse.load(Ordering::SeqCst)
    }

    /// Sets `mcp_fleet_gateway_sessions` by transport (at scrape time).
    pub async fn record_open(&self) {
        let sessions = &crate::metrics::global().sessions;
        let mcp = self.mcp.sessions.read().await.len();
        for (transport, n) in [
            ("streamable-http", mcp),
            ("sse", self.sse.load(Ordering::SeqCst)),
        ] {
            sessions
                .get_or_create(&crate::metrics::Transport { transport })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn sse_opened(&self) {
        self.sse.fetch_add(1, Ordering::SeqCst);
    }

    pub fn sse_closed(&self) {
        self.sse.fetch_sub(1, Ordering::SeqCst);
    }

    /// The 503 a client gets when the cap is reached.
    pub fn full(&self) -> Response {
        let mut r = jsonrpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER_ERROR,
            &format!(
                "too many open MCP sessions (the limit is {}, set by --max-sessions): close \
                 sessions you no longer use (DELETE /mcp) or try again later",
                self.max
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let one = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert!(matches!(parse_body(one), Ok(Body::One(_))));
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
                         {"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
        assert!(matches!(parse_body(batch), Ok(Body::Batch(b)) if b.len() == 2));
        assert_eq!(parse_body(b"{not json").unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse_body(b"").unwrap_err().code, PARSE_ERROR);
        assert_eq!(
            parse_body(br#"{"hello":1}"#).unwrap_err().code,
            INVALID_REQUEST
        );
        assert_eq!(parse_body(b"[]").unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse_body(b"[1]").unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse_body(b" [1").unwrap_err().code, PARSE_ERROR);
        let spaced = b" \n [{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]";
        assert!(matches!(parse_body(spaced), Ok(Body::Batch(b)) if b.len() == 1));
    }
}
