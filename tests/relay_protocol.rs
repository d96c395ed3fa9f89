//! The gateway as a relay of the whole protocol, per client session: the real
//! binary, a real engine, our test server (in a container over stdio, and as a
//! host process over streamable HTTP behind a remote entry) and the official
//! Python SDK as the clients.
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::mcp_client::{McpClient, McpTransport};
use common::*;
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
enum Upstream {
    /// The test server image, over the container's stdio.
    Stdio,
    /// The same server on the host, over streamable HTTP (a remote entry).
    Http,
}

/// A fleet with one test server named `relay`, ready in the gateway.
struct Relay {
    fleet: Fleet,
    mcp: String,
    _server: Option<tokio::process::Child>,
}

impl Relay {
    async fn start(test: &str, upstream: Upstream, args: &[&str]) -> Self {
        let mut fleet = Fleet::new(test).await;
        let (entry, server) = match upstream {
            Upstream::Stdio => (testserver_entry("relay"), None),
            Upstream::Http => {
                let (port, child) = http_server(&fleet).await;
                let entry = format!(
                    "  relay:\n    type: remote\n    remote:\n      url: http://127.0.0.1:{port}/mcp\n      transport_type: streamable-http\n"
                );
                (entry, Some(child))
            }
        };
        fleet.catalog(&catalog_of(&[entry]));
        fleet.start(&[&["--no-auth"], args].concat());
        fleet
            .until("relay ready in the gateway", MIN, || async {
                let s = fleet.status()?;
                (s["servers"]["relay"]["ready"]["status"] == json!(true)).then_some(())
            })
            .await;
        let mcp = format!("{}/mcp", fleet.gateway_url().await);
        Relay {
            fleet,
            mcp,
            _server: server,
        }
    }

    async fn client(&self, args: &[&str]) -> McpClient {
        McpClient::connect_with(&self.mcp, McpTransport::Http, args).await
    }
}

/// The test server on a free local port, once it accepts connections.
async fn http_server(fleet: &Fleet) -> (u16, tokio::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = std::fs::File::create(fleet.path("upstream.log")).expect("log file");
    let child = tokio::process::Command::new(mcp_client::python())
        .arg(TESTSERVER_PY)
        .args(["--http", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("run the test server");
    fleet
        .until("the HTTP test server listening", MIN, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    (port, child)
}

fn text(answer: &Value) -> &str {
    answer["text"].as_str().unwrap_or_default()
}

async fn call(c: &mut McpClient, name: &str, arguments: Value) -> Value {
    c.ok(json!({"cmd": "call", "name": name, "arguments": arguments}))
        .await
}

/// Two sessions call the same progress tool at once; each gets its own
/// progress (under its own token), none of the other's. With a 2 s call
/// timeout, 4 steps 0.8 s apart also show that progress restarts the deadline.
async fn progress_reaches_only_its_caller(upstream: Upstream, test: &str) {
    let r = Relay::start(test, upstream, &["--call-timeout", "2"]).await;
    let mut a = r.client(&[]).await;
    let mut b = r.client(&[]).await;
    let progress = |tag: &str| {
        json!({"cmd": "call", "name": "progress", "progress": true,
               "arguments": {"steps": 4, "delay": 0.8, "tag": tag}})
    };
    let (ra, rb) = tokio::join!(a.ok(progress("a")), b.ok(progress("b")));
    for (answer, tag) in [(&ra, "a"), (&rb, "b")] {
        assert_eq!(answer["is_error"], json!(false), "{answer}");
        assert_eq!(text(answer), format!("{tag}: 4 steps"));
        let got: Vec<&str> = answer["progress"]
            .as_array()
            .expect("progress list")
            .iter()
            .map(|p| p[2].as_str().unwrap_or_default())
            .collect();
        // All of it, in order, before the result.
        let want: Vec<String> = (1..=4).map(|i| format!("{tag} {i}")).collect();
        assert_eq!(got, want, "session {tag}");
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_reaches_only_the_calling_session_over_stdio() {
    progress_reaches_only_its_caller(Upstream::Stdio, "relay-progress").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_reaches_only_the_calling_session_over_http() {
    progress_reaches_only_its_caller(Upstream::Http, "relay-progress-http").await;
}

/// Sampling, elicitation and roots requests of an upstream reach the client
/// that made the call, and its answers reach the tool; a client without the
/// capability gets the upstream a JSON-RPC error, not an invented answer.
async fn server_requests_reach_their_caller(upstream: Upstream, test: &str) {
    let r = Relay::start(test, upstream, &[]).await;
    let mut able = r
        .client(&[
            "--sampling",
            "four",
            "--elicit",
            "blue",
            "--root",
            "file:///work/repo",
        ])
        .await;
    let mut plain = r.client(&[]).await;

    let answer = call(&mut able, "ask_model", json!({"prompt": "2+2?"})).await;
    assert_eq!(text(&answer), "model said: four <- 2+2?", "{answer}");
    let answer = call(&mut able, "ask_user", json!({"question": "colour?"})).await;
    assert_eq!(text(&answer), "accept: blue", "{answer}");
    let answer = call(&mut able, "ask_roots", json!({})).await;
    assert_eq!(text(&answer), "file:///work/repo", "{answer}");

    for (tool, args, capability) in [
        ("ask_model", json!({"prompt": "2+2?"}), "sampling"),
        ("ask_user", json!({"question": "colour?"}), "elicitation"),
        ("ask_roots", json!({}), "roots"),
    ] {
        let answer = call(&mut plain, tool, args).await;
        let t = text(&answer);
        assert!(
            t.contains("failed") && t.contains(&format!("did not declare the `{capability}`")),
            "{tool} from a client without {capability}: {answer}"
        );
    }
    able.close().await;
    plain.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_elicitation_and_roots_reach_the_caller_over_stdio() {
    server_requests_reach_their_caller(Upstream::Stdio, "relay-ask").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_elicitation_and_roots_reach_the_caller_over_http() {
    server_requests_reach_their_caller(Upstream::Http, "relay-ask-http").await;
}

/// Two sessions' calls ask for sampling while both are in flight.
async fn concurrent_sampling(upstream: Upstream, test: &str) -> (Value, Value) {
    let r = Relay::start(test, upstream, &[]).await;
    let mut a = r.client(&["--sampling", "A"]).await;
    let mut b = r.client(&["--sampling", "B"]).await;
    let ask = |prompt: &str| json!({"prompt": prompt, "delay": 1.0, "linger": 1.0});
    let (ra, rb) = tokio::join!(
        call(&mut a, "ask_model", ask("from a")),
        call(&mut b, "ask_model", ask("from b"))
    );
    a.close().await;
    b.close().await;
    (ra, rb)
}

/// Over streamable HTTP the stream a request arrives on says whose call it
/// is: each client answers its own.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_server_requests_follow_their_stream_over_http() {
    let (a, b) = concurrent_sampling(Upstream::Http, "relay-both-http").await;
    assert_eq!(text(&a), "model said: A <- from a", "{a}");
    assert_eq!(text(&b), "model said: B <- from b", "{b}");
}

/// Over stdio nothing says whose call a request belongs to when two
/// sessions have calls in flight: the upstream gets an error, not a guess.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_server_requests_over_stdio_are_refused_not_guessed() {
    let (a, b) = concurrent_sampling(Upstream::Stdio, "relay-both").await;
    for answer in [&a, &b] {
        let t = text(answer);
        assert!(
            t.starts_with("sampling failed") && t.contains("cannot tell which client"),
            "{answer}"
        );
    }
}

/// Polls the upstream's `tool` (a list of tags) until it names `tag`.
async fn upstream_lists(r: &Relay, c: &mut McpClient, tool: &str, tag: &str) {
    let until = Instant::now() + MIN;
    loop {
        let answer = call(c, tool, json!({})).await;
        if text(&answer).split(' ').any(|t| t == tag) {
            return;
        }
        assert!(
            Instant::now() < until,
            "the upstream's {tool} never listed {tag}\n{}",
            r.fleet.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client's `notifications/cancelled` reaches the upstream (ids mapped),
/// and so does a client that goes away in the middle of a call.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_or_abandoned_call_is_cancelled_upstream() {
    let r = Relay::start("relay-cancel", Upstream::Stdio, &[]).await;
    let mut c = r.client(&[]).await;
    let answer = c
        .send(json!({"cmd": "call", "name": "hang", "arguments": {"tag": "h2"}, "read_timeout": 1}))
        .await;
    assert_eq!(answer["ok"], json!(false), "the client gave up: {answer}");
    upstream_lists(&r, &mut c, "cancelled", "h2").await;

    let sse = r.mcp.replace("/mcp", "/sse");
    let mut gone = McpClient::connect(&sse, McpTransport::Sse, None).await;
    gone.begin(json!({"cmd": "call", "name": "hang", "arguments": {"tag": "h3"}}))
        .await;
    upstream_lists(&r, &mut c, "started", "h3").await;
    drop(gone); // killed: its SSE stream, and so its session, ends
    upstream_lists(&r, &mut c, "cancelled", "h3").await;
    c.close().await;
}

/// A call to a stdio server is written on the gateway's own lane (ids from
/// 2^40 up), a call to a remote through rmcp's session (ids from 0): the
/// upstream sees which.
#[tokio::test(flavor = "multi_thread")]
async fn stdio_calls_take_the_lane_and_remote_calls_rmcps_session() {
    for (upstream, test, lane) in [
        (Upstream::Stdio, "relay-lane", true),
        (Upstream::Http, "relay-lane-http", false),
    ] {
        let r = Relay::start(test, upstream, &[]).await;
        let mut c = r.client(&[]).await;
        for _ in 0..2 {
            let answer = call(&mut c, "request_id", json!({})).await;
            let id: i64 = text(&answer)
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{test}: not a number id: {answer}"));
            assert_eq!(id >= 1 << 40, lane, "{test}: the upstream saw id {id}");
        }
        c.close().await;
    }
}

/// A call the upstream never answers ends at `--call-timeout` with a tool
/// error that says so, and the upstream is told to cancel it.
async fn unanswered_call_ends_at_the_deadline(upstream: Upstream, test: &str) {
    let r = Relay::start(test, upstream, &["--call-timeout", "2"]).await;
    let mut c = r.client(&[]).await;
    let started = Instant::now();
    let answer = call(&mut c, "hang", json!({"tag": "h1"})).await;
    let took = started.elapsed();
    assert_eq!(answer["is_error"], json!(true), "{answer}");
    assert!(
        text(&answer).contains("did not answer `hang` within 2s; the call was cancelled"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    // The upstream saw notifications/cancelled: its handler was cancelled.
    upstream_lists(&r, &mut c, "cancelled", "h1").await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_is_never_answered_ends_at_the_deadline() {
    unanswered_call_ends_at_the_deadline(Upstream::Stdio, "relay-deadline").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_is_never_answered_ends_at_the_deadline_over_http() {
    unanswered_call_ends_at_the_deadline(Upstream::Http, "relay-deadline-http").await;
}

/// `notifications/resources/updated` reaches only subscribed sessions; log
/// messages of a call reach its caller, filtered by its `logging/setLevel`;
/// `completion/complete` is answered by the server that owns the prompt.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_logs_and_completions_reach_only_who_asked() {
    let r = Relay::start("relay-subs", Upstream::Stdio, &[]).await;
    let mut a = r.client(&[]).await;
    let mut b = r.client(&[]).await;

    // A subscribes; B does not. Each check that a notification did not
    // arrive first waits for a later one on the same session.
    a.ok(json!({"cmd": "subscribe", "uri": "test://info"}))
        .await;
    call(&mut b, "touch", json!({"uri": "test://info"})).await;
    a.ok(json!({"cmd": "wait_updated", "uri": "test://info", "timeout": 30}))
        .await;
    call(&mut b, "chatter", json!({"tag": "p1"})).await;
    b.ok(json!({"cmd": "wait_log", "contains": "debug p1", "timeout": 30}))
        .await;
    let count = b.ok(json!({"cmd": "updated", "uri": "test://info"})).await;
    assert_eq!(count["count"], json!(0), "B is not subscribed");
    // After unsubscribing, A no longer gets the updates.
    a.ok(json!({"cmd": "unsubscribe", "uri": "test://info"}))
        .await;
    call(&mut b, "touch", json!({"uri": "test://info"})).await;
    call(&mut a, "chatter", json!({"tag": "p2"})).await;
    a.ok(json!({"cmd": "wait_log", "contains": "debug p2", "timeout": 30}))
        .await;
    let count = a.ok(json!({"cmd": "updated", "uri": "test://info"})).await;
    assert_eq!(count["count"], json!(1), "A unsubscribed after one update");

    a.ok(json!({"cmd": "set_level", "level": "error"})).await;
    let answer = call(&mut a, "chatter", json!({"tag": "x1"})).await;
    assert_eq!(text(&answer), "logged x1");
    let logs = a
        .ok(json!({"cmd": "wait_log", "contains": "error x1", "timeout": 30}))
        .await;
    a.ok(json!({"cmd": "ping"})).await;
    let logs_text = logs["logs"].to_string();
    assert!(!logs_text.contains("debug x1"), "below A's level: {logs}");
    // B set no level and made no call: the caller's logs are not B's.
    let answer = call(&mut b, "chatter", json!({"tag": "y1"})).await;
    assert_eq!(text(&answer), "logged y1");
    let b_logs = b
        .ok(json!({"cmd": "wait_log", "contains": "debug y1", "timeout": 30}))
        .await;
    assert!(
        !b_logs["logs"].to_string().contains("x1"),
        "A's call logs reached B: {b_logs}"
    );

    let done = a
        .ok(json!({"cmd": "complete", "prompt": "greet", "argument": "name", "value": "Al"}))
        .await;
    assert_eq!(done["values"], json!(["Alice", "Albert"]));
    a.close().await;
    b.close().await;
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
        .expect("the gateway's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// One whole streamable-HTTP session: initialize, initialized, tools/list,
/// DELETE. Panics on any unexpected answer.
async fn one_session(http: &reqwest::Client, url: &str) {
    let post = |body: Value, session: Option<&str>| {
        let mut req = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(s) = session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        req.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "rss-test", "version": "1"}}});
    let resp = post(init, None).await.expect("initialize");
    assert!(resp.status().is_success(), "initialize: {}", resp.status());
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_string();
    resp.bytes().await.expect("initialize body");
    let resp = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    )
    .await
    .expect("initialized");
    assert!(resp.status().is_success(), "initialized: {}", resp.status());
    let resp = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        Some(&session),
    )
    .await
    .expect("tools/list");
    assert!(resp.status().is_success(), "tools/list: {}", resp.status());
    resp.bytes().await.expect("tools/list body");
    let resp = http
        .delete(url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("DELETE");
    assert!(resp.status().is_success(), "DELETE: {}", resp.status());
}

async fn sessions(http: &reqwest::Client, url: &str, count: usize) {
    const PARALLEL: usize = 8;
    let workers = (0..PARALLEL).map(|w| async move {
        for _ in (w..count).step_by(PARALLEL) {
            one_session(http, url).await;
        }
    });
    futures_util::future::join_all(workers).await;
}

/// Sessions opened and closed leave nothing behind: the gateway's RSS after
/// 10,000 of them is within 5 MB of where it was (after a warm-up of 1,000,
/// which lets the allocator and rmcp's pools reach their working size).
#[tokio::test(flavor = "multi_thread")]
async fn memory_stays_flat_over_many_sessions() {
    let mut f = Fleet::new("relay-rss").await;
    f.catalog("name: docker-mcp\nregistry: {}\n");
    f.start(&["--no-auth"]);
    let url = format!("{}/mcp", f.gateway_url().await);
    let pid = f.controller_pid().expect("controller running");
    let http = reqwest::Client::new();
    sessions(&http, &url, 1_000).await;
    let start = vm_rss_kb(pid);
    sessions(&http, &url, 10_000).await;
    let end = vm_rss_kb(pid);
    eprintln!("gateway VmRSS: {start} kB after warm-up, {end} kB after 10,000 more sessions");
    assert!(
        end <= start + 5 * 1024,
        "RSS grew from {start} kB to {end} kB over 10,000 sessions"
    );
    f.stop("-TERM");
}
