//! The gateway's HTTP layer served on loopback and driven by the official
//! Python MCP SDK (streamable HTTP, both protocol generations, and legacy
//! SSE), plus raw HTTP for the auth, Host/Origin and probe endpoints.
//! Needs `MCP_FLEET_PYTHON` (scripts/test sets it); no Docker engine.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::mcp_client::{McpClient, McpTransport};
use mcp_fleet::gateway::auth::Auth;
use mcp_fleet::gateway::authn::Authenticator;
use mcp_fleet::gateway::http::{
    DEFAULT_MAX_SESSIONS, GatewayState, HttpConfig, Readiness, SHUTDOWN_GRACE, StatusSource,
    router, serve,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "test-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

/// One tool, `echo {text}`; hands each initialized session's peer to the test.
#[derive(Clone)]
struct Echo {
    peers: mpsc::UnboundedSender<Peer<RoleServer>>,
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        });
        let schema = schema.as_object().expect("object").clone();
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "echo",
            "Returns its text",
            Arc::new(schema),
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != "echo" {
            return Err(ErrorData::invalid_params(
                format!("no tool {:?}", request.name),
                None,
            ));
        }
        let text = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("text"))
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorData::invalid_params("echo needs {text: string}", None))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let _ = self.peers.send(context.peer.clone());
    }
}

struct TestState {
    ready: AtomicBool,
    changes: tokio::sync::watch::Sender<u64>,
}

impl StatusSource for TestState {
    fn status_json(&self) -> Value {
        json!({"servers": {"echo": {"phase": "running"}}})
    }
    fn status_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl GatewayState for TestState {
    fn metrics_text(&self) -> String {
        "# EOF\n".into()
    }
    fn readiness(&self) -> Readiness {
        Readiness {
            ready: self.ready.load(Ordering::SeqCst),
            detail: Default::default(),
        }
    }
}

struct Gateway {
    addr: SocketAddr,
    peers: mpsc::UnboundedReceiver<Peer<RoleServer>>,
    state: Arc<TestState>,
    shutdown: CancellationToken,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Gateway {
    async fn start(auth: Auth) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let (tx, peers) = mpsc::unbounded_channel();
        let state = Arc::new(TestState {
            ready: AtomicBool::new(false),
            changes: tokio::sync::watch::Sender::new(0),
        });
        let app = router(
            move || Echo { peers: tx.clone() },
            state.clone(),
            HttpConfig {
                authn: Arc::new(Authenticator::operator_only(auth)),
                allowed_hosts: vec![],
                max_sessions: DEFAULT_MAX_SESSIONS,
                shortcut: None,
            },
        );
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(serve(listener, app, shutdown.clone()));
        Gateway {
            addr,
            peers,
            state,
            shutdown,
            served: Some(served),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    /// The peer of the next session whose `initialized` notification arrives.
    async fn next_peer(&mut self) -> Peer<RoleServer> {
        tokio::time::timeout(WAIT, self.peers.recv())
            .await
            .expect("no session reached on_initialized within 10s")
            .expect("peer channel open")
    }

    /// Stops the server; it must return well before the grace period, i.e.
    /// open event streams must have been ended by the shutdown.
    async fn stop(mut self) {
        self.shutdown.cancel();
        let started = Instant::now();
        let served = self.served.take().unwrap();
        tokio::time::timeout(SHUTDOWN_GRACE * 2, served)
            .await
            .expect("serve() did not return after shutdown")
            .expect("serve task")
            .expect("serve() result");
        eprintln!("serve() stopped {:?} after shutdown", started.elapsed());
        assert!(
            started.elapsed() < SHUTDOWN_GRACE,
            "serve() took {:?} to stop: open streams were not ended by the shutdown",
            started.elapsed()
        );
    }
}

/// The common part of the session tests: list, call, and a list_changed
/// notification sent from the server side reaching the client.
async fn exercise_session(gw: &mut Gateway, client: &mut McpClient) {
    let peer = gw.next_peer().await;
    assert_eq!(client.tool_names().await, ["echo"]);
    assert_eq!(
        client.call("echo", json!({"text": "hello gateway"})).await,
        (false, "hello gateway".to_string())
    );
    peer.notify_tool_list_changed()
        .await
        .expect("notify_tool_list_changed");
    // A second notification marks the moment: it travels the same stream, so
    // once it is in, everything sent before it is in too.
    peer.notify_resource_list_changed()
        .await
        .expect("notify_resource_list_changed");
    assert!(
        client.wait_list_changed("resources", WAIT).await,
        "the marker did not reach the client\nclient stderr:\n{}",
        client.stderr()
    );
    assert_eq!(
        client.take_list_changed("tools").await,
        1,
        "exactly the one tools/list_changed (none announced before it)\nclient stderr:\n{}",
        client.stderr()
    );
    // The session still works after the notification.
    assert_eq!(client.tool_names().await, ["echo"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamable_http_session_lists_calls_and_receives_list_changed() {
    let mut gw = Gateway::start(Auth::Token(TOKEN.into())).await;
    let mut client = McpClient::connect(&gw.url("/mcp"), McpTransport::Http, Some(TOKEN)).await;
    assert_eq!(client.ready["protocol_version"], json!("2025-11-25"));
    exercise_session(&mut gw, &mut client).await;
    client.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_sse_session_lists_calls_and_receives_list_changed() {
    let mut gw = Gateway::start(Auth::Token(TOKEN.into())).await;
    let mut client = McpClient::connect(&gw.url("/sse"), McpTransport::Sse, Some(TOKEN)).await;
    exercise_session(&mut gw, &mut client).await;
    // Stop the server with the SSE stream still open: the stream is ended.
    gw.stop().await;
    drop(client);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamable_http_serves_the_2026_07_28_discover_lifecycle() {
    let gw = Gateway::start(Auth::Token(TOKEN.into())).await;
    let mut client =
        McpClient::connect(&gw.url("/mcp"), McpTransport::HttpDiscover, Some(TOKEN)).await;
    assert_eq!(client.ready["protocol_version"], json!("2026-07-28"));
    assert_eq!(client.tool_names().await, ["echo"]);
    assert_eq!(
        client.call("echo", json!({"text": "stateless"})).await,
        (false, "stateless".to_string())
    );
    client.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_auth_mode_needs_no_token() {
    let mut gw = Gateway::start(Auth::Disabled).await;
    let mut client = McpClient::connect(&gw.url("/sse"), McpTransport::Sse, None).await;
    gw.next_peer().await;
    assert_eq!(client.tool_names().await, ["echo"]);
    client.close().await;
    let mut client = McpClient::connect(&gw.url("/mcp"), McpTransport::Http, None).await;
    assert_eq!(client.tool_names().await, ["echo"]);
    client.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_with_a_wrong_token_is_refused() {
    let gw = Gateway::start(Auth::Token(TOKEN.into())).await;
    for (path, transport) in [("/mcp", McpTransport::Http), ("/sse", McpTransport::Sse)] {
        let refused = McpClient::try_connect(&gw.url(path), transport, Some("wrong")).await;
        let err = refused
            .err()
            .unwrap_or_else(|| panic!("{path}: a wrong token opened a session"));
        let first_line = err.lines().next().unwrap_or_default();
        eprintln!("{path}: refused as expected: {first_line}");
        // The SSE client reports the HTTP status; the streamable HTTP client
        // turns a non-JSON-RPC 4xx into a generic JSON-RPC error.
        assert!(
            first_line.contains("401") || first_line.contains("Server returned an error response"),
            "{path}: {err}"
        );
    }
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Raw HTTP: the exact status codes, headers and JSON bodies.

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.1 request with `Connection: close`; `Host` is the server's
/// loopback address unless `headers` sets one.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{}\r\n", addr.port()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no complete response within 10s"))
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
const MCP_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

fn with<'a>(base: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_host_and_origin_checks_answer_json() {
    let gw = Gateway::start(Auth::Token(TOKEN.into())).await;
    let a = gw.addr;
    let bearer = format!("Bearer {TOKEN}");
    let good = [("Authorization", bearer.as_str())];

    // /health: no token, any Host.
    for host in [None, Some("evil.example")] {
        let headers: Vec<_> = host.map(|h| ("Host", h)).into_iter().collect();
        let r = request(a, "GET", "/health", &headers, "").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), json!({"status": "ok"}));
    }

    // 401 without a token, with a wrong one, with another scheme: JSON and WWW-Authenticate.
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic dXNlcjpwdw=="),
        Some(TOKEN),
    ] {
        for (method, path) in [
            ("POST", "/mcp"),
            ("GET", "/sse"),
            ("POST", "/message?sessionId=x"),
            ("GET", "/status"),
            ("GET", "/readyz"),
        ] {
            let headers = with(
                &MCP_HEADERS,
                &auth
                    .map(|v| ("Authorization", v))
                    .into_iter()
                    .collect::<Vec<_>>(),
            );
            let r = request(a, method, path, &headers, INIT).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.body);
            assert_eq!(r.json()["error"], "unauthorized", "{method} {path}");
            assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{method} {path}: {}",
                r.head
            );
            assert!(!r.body.contains(TOKEN));
        }
    }

    // 403 for a foreign Origin or Host, even with the right token.
    for extra in [
        [("Origin", "http://evil.example")],
        [("Origin", "null")],
        [("Host", "evil.example:8811")],
        [("Host", "localhost.evil.example")],
    ] {
        for (method, path) in [("POST", "/mcp"), ("GET", "/sse"), ("GET", "/status")] {
            let headers = with(&with(&MCP_HEADERS, &good), &extra);
            let r = request(a, method, path, &headers, INIT).await;
            assert_eq!(r.status, 403, "{method} {path} with {extra:?}: {}", r.body);
            assert_eq!(r.json()["error"], "forbidden");
        }
    }

    // Loopback names and origins pass (port ignored): a real initialize.
    for extra in [
        [("Host", "localhost:1")],
        [("Host", "[::1]:8811")],
        [("Origin", "http://localhost:6274")],
    ] {
        let headers = with(&with(&MCP_HEADERS, &good), &extra);
        let r = request(a, "POST", "/mcp", &headers, INIT).await;
        assert_eq!(r.status, 200, "{extra:?}: {} {}", r.head, r.body);
        assert!(r.header("mcp-session-id").is_some(), "{}", r.head);
        assert!(
            r.body.contains("\"protocolVersion\":\"2025-06-18\""),
            "{}",
            r.body
        );
    }

    // /readyz follows GatewayState::readiness; /status is its JSON.
    let r = request(a, "GET", "/readyz", &good, "").await;
    assert_eq!((r.status, r.json()), (503, json!({"ready": false})));
    gw.state.ready.store(true, Ordering::SeqCst);
    let r = request(a, "GET", "/readyz", &good, "").await;
    assert_eq!((r.status, r.json()), (200, json!({"ready": true})));
    let r = request(a, "GET", "/status", &good, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["servers"]["echo"]["phase"], "running");

    // Unknown endpoints and sessions, bad bodies: JSON 4xx too.
    let r = request(a, "GET", "/nope", &good, "").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("not_found"))
    );
    let r = request(a, "POST", "/message?sessionId=0123", &good, INIT).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("not_found"))
    );
    let r = request(a, "POST", "/message", &good, INIT).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("bad_request"))
    );

    gw.stop().await;
}

/// Reads the first event of a raw `GET /sse` and returns the session's
/// message path; the stream stays open in `stream`.
async fn open_raw_sse(addr: SocketAddr, auth: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /sse HTTP/1.1\r\nHost: localhost:{}\r\nAccept: text/event-stream\r\nAuthorization: {auth}\r\n\r\n",
        addr.port()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(at) = text.find("event: endpoint\ndata: ") {
            let rest = &text[at + "event: endpoint\ndata: ".len()..];
            if let Some(end) = rest.find('\n') {
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                assert!(
                    text.to_ascii_lowercase()
                        .contains("content-type: text/event-stream"),
                    "{text}"
                );
                return (stream, rest[..end].to_owned());
            }
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no endpoint event within 10s; got {text:?}"))
            .unwrap();
        assert!(n > 0, "stream closed before the endpoint event: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_session_is_forgotten_when_its_stream_drops() {
    let mut gw = Gateway::start(Auth::Token(TOKEN.into())).await;
    let a = gw.addr;
    let bearer = format!("Bearer {TOKEN}");
    let good = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];

    let (mut stream, endpoint) = open_raw_sse(a, &bearer).await;
    assert!(endpoint.starts_with("/message?sessionId="), "{endpoint}");

    // Bad JSON is a 400; a real message is accepted and answered on the stream.
    let r = request(a, "POST", &endpoint, &good, "{not json").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("bad_request"))
    );
    let r = request(a, "POST", &endpoint, &good, INIT).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let mut seen = String::new();
    let deadline = Instant::now() + WAIT;
    while !seen.contains("event: message\ndata: {") || !seen.contains("\"id\":1") {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no initialize result on the stream; got {seen:?}"))
            .unwrap();
        assert!(n > 0, "stream closed: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    let r = request(
        a,
        "POST",
        &endpoint,
        &good,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(r.status, 202);
    gw.next_peer().await;

    // The client goes away: the session is cancelled and forgotten.
    drop(stream);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = request(
            a,
            "POST",
            &endpoint,
            &good,
            r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        )
        .await;
        if r.status == 404 {
            assert_eq!(r.json()["error"], "not_found");
            break;
        }
        assert_eq!(r.status, 202, "{}", r.body);
        assert!(
            Instant::now() < deadline,
            "session still known 10s after its stream dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

/// The status page's login: `/?token=` sets a cookie that holds no token and
/// opens only the read-only pages, never `/mcp` or `/sse`.
#[tokio::test(flavor = "multi_thread")]
async fn page_login_cookie_opens_only_read_only_pages() {
    let gw = Gateway::start(Auth::Token(TOKEN.into())).await;
    let a = gw.addr;
    let r = request(a, "GET", "/", &[], "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "unauthorized");
    let r = request(a, "GET", "/?token=wrong", &[], "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(!r.body.contains("wrong"));

    let r = request(a, "GET", &format!("/?token={TOKEN}"), &[], "").await;
    assert_eq!(r.status, 303, "{}", r.head);
    assert_eq!(r.header("location"), Some("/".to_string()));
    let set = r.header("set-cookie").expect("a cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(TOKEN),
        "the cookie must not hold the token: {set}"
    );
    let cookie = set.split(';').next().expect("name=value").to_string();

    let page = [("Cookie", cookie.as_str())];
    let r = request(a, "GET", "/", &page, "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<title>mcp-fleet</title>"));
    let r = request(a, "GET", "/status", &page, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["servers"]["echo"]["phase"], "running");
    for (method, path) in [("POST", "/mcp"), ("GET", "/sse"), ("GET", "/readyz")] {
        let headers = with(&MCP_HEADERS, &page);
        let r = request(a, method, path, &headers, INIT).await;
        assert_eq!(
            r.status, 401,
            "{method} {path} with the page cookie: {}",
            r.body
        );
    }
    // A foreign origin cannot use the cookie either.
    let r = request(
        a,
        "GET",
        "/",
        &[page[0], ("Origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(r.status, 403);
}
