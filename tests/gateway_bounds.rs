//! Deadlines, bounds and supervision of the gateway, against the real binary
//! and a real engine: a remote that never answers, a list_changed storm, a
//! background task that dies, the session cap and malformed `/mcp` bodies.
mod common;

use std::time::{Duration, Instant};

use common::mcp_client::{McpClient, McpTransport};
use common::raw_mcp::*;
use common::*;
use serde_json::json;
use tokio::sync::mpsc;

const MIN: Duration = Duration::from_secs(60);
async fn readyz(base: &str) -> Answer {
    http("GET", &format!("{base}/readyz"), &[], None).await
}

/// A started fleet with no servers, once its catalog was read.
async fn empty_fleet(test: &str, args: &[&str], env: &[(&str, &str)]) -> (Fleet, String) {
    let mut f = Fleet::new(test).await;
    f.catalog("name: docker-mcp\nregistry: {}\n");
    f.start_env(args, env);
    let base = f.gateway_url().await;
    (f, base)
}

/// A host that accepts connections and never sends a byte; reports each
/// connection's time.
async fn silent_host() -> (u16, mpsc::UnboundedReceiver<Instant>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted, connections) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            let _ = accepted.send(Instant::now());
        }
    });
    (port, connections)
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_remotes_are_not_ready_within_the_handshake_timeout_and_retried() {
    let (sse_port, sse) = silent_host().await;
    let (http_port, http_) = silent_host().await;
    let mut f = Fleet::new("gb-silent").await;
    let remote = |name: &str, url: String, transport: &str| {
        format!(
            "  {name}:\n    type: remote\n    remote:\n      url: {url}\n      \
             transport_type: {transport}\n"
        )
    };
    f.catalog(&format!(
        "name: docker-mcp\nregistry:\n{}{}",
        remote(
            "silent-sse",
            format!("http://127.0.0.1:{sse_port}/sse"),
            "sse"
        ),
        remote(
            "silent-http",
            format!("http://127.0.0.1:{http_port}/mcp"),
            "streamable-http"
        )
    ));
    let handshake = Duration::from_secs(2);
    f.start(&["--no-auth", "--handshake-timeout", "2"]);
    let base = f.gateway_url().await;

    for (server, mut connections) in [("silent-sse", sse), ("silent-http", http_)] {
        let first = tokio::time::timeout(MIN, connections.recv())
            .await
            .expect("the gateway connects to the remote")
            .unwrap();
        let message = f
            .until(&format!("{server}: not ready, saying why"), MIN, || async {
                let ready = f.status()?["servers"][server]["ready"].clone();
                let message = ready["message"].as_str()?.to_string();
                (ready["status"] == json!(false) && message.contains("handshake timeout"))
                    .then_some(message)
            })
            .await;
        let took = first.elapsed();
        println!(
            "{server}: not ready within {took:?} of connecting (handshake timeout {handshake:?}): {message}"
        );
        assert!(
            took < handshake + Duration::from_secs(10),
            "{server} not ready only after {took:?}"
        );

        // One server that is not ready keeps the gateway in service, and says so.
        let r = readyz(&base).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            r.json()["notReady"][server]
                .as_str()
                .is_some_and(|m| m.contains("handshake timeout")),
            "{}",
            r.text
        );

        // Retried with back-off: another connection comes.
        let again = tokio::time::timeout(MIN, connections.recv())
            .await
            .expect("the gateway retries the remote")
            .unwrap();
        println!(
            "{server}: retried {:?} after the first attempt",
            again - first
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_changed_storm_causes_a_bounded_number_of_relists() {
    const STORM: u32 = 20_000;
    let mut f = Fleet::new("gb-storm").await;
    f.catalog(&catalog_of(&[entry("storm", TESTSERVER, "")]));
    f.start(&["--no-auth"]);
    f.until("storm ready in the gateway", MIN, || async {
        (f.status()?["servers"]["storm"]["ready"]["status"] == json!(true)).then_some(())
    })
    .await;
    let base = f.gateway_url().await;
    let mut c = McpClient::connect(&format!("{base}/mcp"), McpTransport::Http, None).await;
    let count = |text: String| -> u64 { text.trim().parse().expect("a count") };
    let names = c.tool_names().await;
    assert!(
        names.contains(&"storm".to_string()),
        "{TESTSERVER} has no `storm` tool ({names:?}): rebuild it with docker/test-images/build.sh"
    );

    let (_, before) = c.call("list_calls_so_far", json!({})).await;
    let started = Instant::now();
    let answer = c
        .send_timeout(
            json!({"cmd": "call", "name": "storm", "arguments": {"n": STORM}}),
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(answer["text"], json!(format!("sent {STORM}")), "{answer}");
    // The last notification announced `storm_done`: once the gateway lists
    // it, the storm has been taken in.
    let deadline = Instant::now() + MIN;
    while !c.tool_names().await.contains(&"storm_done".to_string()) {
        assert!(
            Instant::now() < deadline,
            "storm_done never listed\n{}",
            f.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, after) = c.call("list_calls_so_far", json!({})).await;
    let took = started.elapsed();
    let relists = count(after) - count(before);
    println!("{STORM} list_changed -> {relists} tools/list calls in {took:?}");
    // One at a time per server, at least 250 ms apart (RELIST_GAP), so at
    // most 4 a second; the one in flight when the clock started and the one
    // queued at the end come on top.
    let bound = (took.as_secs_f64() * 4.0).ceil() as u64 + 2;
    assert!(
        (1..=bound).contains(&relists),
        "{relists} relists for {STORM} notifications in {took:?} (bound {bound})"
    );
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_background_task_turns_readyz_503() {
    // Control: the same fleet without the fault is ready.
    let (mut f, base) = empty_fleet("gb-killed", &["--no-auth"], &[]).await;
    f.until("ready", MIN, || async {
        (readyz(&base).await.status == 200).then_some(())
    })
    .await;
    f.stop("-TERM");

    f.start_env(&["--no-auth"], &[("MCP_FLEET_TEST_PANIC", "pool")]);
    let base = f.gateway_url().await;
    let body = f
        .until("readyz 503 naming the dead task", MIN, || async {
            let r = readyz(&base).await;
            let body = r.json();
            let named = body["reasons"]
                .as_array()?
                .iter()
                .any(|r| r.as_str().is_some_and(|r| r.contains("`pool` panicked")));
            (r.status == 503 && named).then_some(body)
        })
        .await;
    assert_eq!(body["ready"], json!(false));
    let logs = f.logs();
    assert!(
        logs.contains("ERROR") && logs.contains("background task died"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_over_the_cap_get_503_with_json() {
    let (_f, base) = empty_fleet("gb-cap", &["--no-auth", "--max-sessions", "2"], &[]).await;
    let first = open_session(&base, "2025-06-18").await;
    let _second = open_session(&base, "2025-06-18").await;

    let third = post_mcp(&base, &[], &initialize("2025-06-18")).await;
    assert_eq!(third.status, 503, "{}", third.text);
    let error = &third.json()["error"];
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("--max-sessions")),
        "{}",
        third.text
    );
    let sse = http(
        "GET",
        &format!("{base}/sse"),
        &[("accept", "text/event-stream")],
        None,
    )
    .await;
    assert_eq!(sse.status, 503, "{}", sse.text);
    assert!(sse.json()["error"]["message"].is_string(), "{}", sse.text);

    // Closing a session makes room.
    let closed = http(
        "DELETE",
        &format!("{base}/mcp"),
        &[("mcp-session-id", &first)],
        None,
    )
    .await;
    assert!(
        closed.status < 300,
        "DELETE: {} {}",
        closed.status,
        closed.text
    );
    open_session(&base, "2025-06-18").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_mcp_requests_get_4xx_with_json_bodies_and_2025_03_26_batches_work() {
    let (_f, base) = empty_fleet("gb-http", &["--no-auth"], &[]).await;

    let a = post_mcp(&base, &[], "{not json").await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, json!(-32700)),
        "{}",
        a.text
    );
    let a = post_mcp(&base, &[], r#"{"hello": 1}"#).await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, json!(-32600)),
        "{}",
        a.text
    );

    // rmcp's own refusals, in JSON.
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let wrong_accept = http(
        "POST",
        &format!("{base}/mcp"),
        &[
            ("accept", "application/json"),
            ("content-type", "application/json"),
        ],
        Some(&ping),
    )
    .await;
    assert_eq!(wrong_accept.status, 406, "{}", wrong_accept.text);
    assert!(wrong_accept.json()["error"]["message"].is_string());
    let unknown = post_mcp(&base, &[("mcp-session-id", "no-such-session")], &ping).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert!(unknown.json()["error"]["message"].is_string());

    // A batch in a 2025-03-26 session: both answers in one response (a JSON
    // array, or an event stream when rmcp streams them).
    let id = open_session(&base, "2025-03-26").await;
    // The same bad bodies inside a session, where rmcp parses first.
    for (body, code) in [("{not json", -32700), (r#"{"hello": 1}"#, -32600)] {
        let a = post_mcp(&base, &[("mcp-session-id", &id)], body).await;
        assert_eq!(
            (a.status, a.json()["error"]["code"].clone()),
            (400, json!(code)),
            "{body}: {}",
            a.text
        );
    }
    let batch = json!([
        {"jsonrpc": "2.0", "id": 7, "method": "ping"},
        {"jsonrpc": "2.0", "id": 8, "method": "tools/list"},
        {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    ])
    .to_string();
    let a = post_mcp(&base, &[("mcp-session-id", &id)], &batch).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let mut ids: Vec<i64> = a
        .messages()
        .iter()
        .map(|m| m["id"].as_i64().expect("an answer"))
        .collect();
    ids.sort();
    assert_eq!(ids, [7, 8], "{}", a.text);
    // Not on a later revision.
    let later = open_session(&base, "2025-06-18").await;
    let a = post_mcp(
        &base,
        &[
            ("mcp-session-id", &later),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        &batch,
    )
    .await;
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (400, json!(-32600)),
        "{}",
        a.text
    );
}

/// A remote whose URL carries credentials (user info, a token in the query)
/// and cannot be reached: the status says so in plain words, and neither the
/// status, `/status` nor the log at `trace` ever shows the credentials.
#[tokio::test(flavor = "multi_thread")]
async fn a_remote_urls_credentials_never_show() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port(); // dropped at once: nothing listens there
    let secrets = ["sek-user-7f3a", "sek-pass-91c2", "sek-token-55d0"];
    let entries = [
        format!(
            "  far:\n    type: remote\n    remote:\n      url: \"http://{}:{}@127.0.0.1:{port}/mcp?token={}\"\n      transport_type: streamable-http\n",
            secrets[0], secrets[1], secrets[2]
        ),
        format!(
            "  farsse:\n    type: remote\n    remote:\n      url: \"http://127.0.0.1:{port}/sse?token={}\"\n      transport_type: sse\n",
            secrets[2]
        ),
    ];
    let mut f = Fleet::new("gb-redact").await;
    f.catalog(&catalog_of(&entries));
    f.start_env(
        &["--no-auth", "--handshake-timeout", "2"],
        &[("MCP_FLEET_LOG", "trace")],
    );
    let want = format!("cannot reach http://127.0.0.1:{port}/");
    for server in ["far", "farsse"] {
        f.until(&format!("{server} reported unreachable"), MIN, || async {
            let s = f.status()?;
            let message = s["servers"][server]["ready"]["message"]
                .as_str()?
                .to_string();
            message.contains(&want).then_some(())
        })
        .await;
    }
    let base = f.gateway_url().await;
    let live = reqwest::get(format!("{base}/status"))
        .await
        .expect("GET /status")
        .text()
        .await
        .expect("body");
    let file = std::fs::read_to_string(f.status_path()).expect("status file");
    for (what, text) in [("log", f.logs()), ("/status", live), ("status file", file)] {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in the {what}");
        }
    }
}
