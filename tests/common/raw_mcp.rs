//! Raw `/mcp` exchanges for tests that need what an SDK client hides: bad
//! bodies, exact headers, another caller's token on an open session. Every
//! request and body read has a 30 s deadline.
use std::time::Duration;

use serde_json::{Value, json};

pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// One raw HTTP exchange: status, headers, body text.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not a JSON body ({e}): {:?}", self.text))
    }

    /// The JSON-RPC message of a JSON or single-event SSE body.
    pub fn message(&self) -> Value {
        if !self.is_event_stream() {
            return self.json();
        }
        // Skip a priming event (empty data).
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|data| serde_json::from_str(data.trim()).ok())
            .unwrap_or_else(|| panic!("no message in the event stream: {:?}", self.text))
    }

    /// Every JSON-RPC message of a JSON (array) or SSE body.
    pub fn messages(&self) -> Vec<Value> {
        if !self.is_event_stream() {
            return match self.json() {
                Value::Array(all) => all,
                one => vec![one],
            };
        }
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim()).ok())
            .collect()
    }

    pub fn is_event_stream(&self) -> bool {
        self.headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    }
}

pub async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let client = reqwest::Client::new();
    let mut r = client.request(method.parse().expect("method"), url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(body) = body {
        r = r.body(body.to_string());
    }
    let response = tokio::time::timeout(Duration::from_secs(30), r.send())
        .await
        .expect("answer within 30s")
        .expect("HTTP request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    // Only complete bodies are read here (no open-ended streams).
    let text = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .expect("body within 30s")
        .expect("body");
    Answer {
        status,
        headers,
        text,
    }
}

pub async fn post_mcp(base: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut all = vec![
        ("accept", ACCEPT_BOTH),
        ("content-type", "application/json"),
    ];
    all.extend_from_slice(headers);
    http("POST", &format!("{base}/mcp"), &all, Some(body)).await
}

pub fn initialize(version: &str) -> String {
    initialize_declaring(version, json!({}))
}

/// `initialize` on `version` with the client `capabilities`.
pub fn initialize_declaring(version: &str, capabilities: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": capabilities,
        "clientInfo": {"name": "raw-mcp-test", "version": "1"}}})
    .to_string()
}

/// Opens a `/mcp` session on `version`; its id.
pub async fn open_session(base: &str, version: &str) -> String {
    open_session_with(base, version, &[]).await
}

/// Opens a `/mcp` session on `version`, every request with `headers` (such
/// as `authorization`); its id.
pub async fn open_session_with(base: &str, version: &str, headers: &[(&str, &str)]) -> String {
    open_session_declaring(base, version, json!({}), headers).await
}

/// Opens a `/mcp` session on `version` whose client declares `capabilities`,
/// every request with `headers`; its id.
pub async fn open_session_declaring(
    base: &str,
    version: &str,
    capabilities: Value,
    headers: &[(&str, &str)],
) -> String {
    let a = post_mcp(base, headers, &initialize_declaring(version, capabilities)).await;
    assert_eq!(a.status, 200, "initialize: {}", a.text);
    assert_eq!(a.message()["result"]["protocolVersion"], json!(version));
    let id = a.headers["mcp-session-id"].to_str().unwrap().to_string();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let mut with_id = headers.to_vec();
    with_id.push(("mcp-session-id", &id));
    let a = post_mcp(base, &with_id, &initialized.to_string()).await;
    assert_eq!(a.status, 202, "initialized: {}", a.text);
    id
}
