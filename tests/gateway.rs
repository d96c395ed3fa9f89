//! The gateway end to end: the real binary, a real engine, real MCP servers
//! (fetch, time, our test server) and the official Python SDK as the client.
mod common;

use std::time::{Duration, Instant};

use common::mcp_client::{McpClient, McpTransport};
use common::*;
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);

const FETCH_DESC: &str =
    "description: Fetches a URL from the internet and extracts its contents as markdown.";

impl Fleet {
    fn registry(&self, servers: &[&str]) {
        let mut text = String::from("registry:\n");
        for s in servers {
            text.push_str(&format!("  {s}:\n    ref: \"\"\n"));
        }
        if servers.is_empty() {
            text = "registry: {}\n".into();
        }
        self.write_atomic("registry.yaml", &text);
    }
}

/// A fleet of `entries`, started with `args`, once each of `ready` has an MCP
/// session in the gateway.
async fn serving(test: &str, entries: &[String], args: &[&str], ready: &[&str]) -> Fleet {
    let mut f = Fleet::new(test).await;
    f.catalog(&catalog_of(entries));
    f.start(args);
    for server in ready {
        f.ready(server).await;
    }
    f
}

async fn client(f: &Fleet, transport: McpTransport) -> McpClient {
    let base = f.gateway_url().await;
    let path = if transport == McpTransport::Sse {
        "/sse"
    } else {
        "/mcp"
    };
    McpClient::connect(&format!("{base}{path}"), transport, None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn real_servers_over_mcp_and_sse() {
    let f = serving(
        "gw-serve",
        &[entry("fetch", FETCH, FETCH_DESC), entry("time", TIME, "")],
        &["--no-auth"],
        &["fetch", "time"],
    )
    .await;

    for transport in [
        McpTransport::Http,
        McpTransport::Sse,
        McpTransport::HttpDiscover,
    ] {
        let mut c = client(&f, transport).await;
        let names = c.tool_names().await;
        for want in [
            "fetch",
            "get_current_time",
            "convert_time",
            "mcp-find",
            "mcp-add",
            "mcp-remove",
        ] {
            assert!(
                names.contains(&want.to_string()),
                "{transport:?}: {want} in {names:?}"
            );
        }
        let (is_error, text) = c.call("get_current_time", json!({"timezone": "UTC"})).await;
        assert!(!is_error, "{transport:?}: {text}");
        assert!(text.contains("UTC"), "{transport:?}: {text}");
        c.close().await;
    }

    // `mcp-fleet status` reads the same status: all running and ready.
    let out = f.cli(&["status", "--config-dir", f.dir.path().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let table = stdout(&out);
    for server in ["fetch", "time"] {
        let line = table.lines().find(|l| l.starts_with(server)).expect(&table);
        assert!(line.contains("Running") && line.contains("yes"), "{table}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_reaches_an_open_session_and_revocation_removes_the_tool() {
    let mut f = Fleet::new("gw-live").await;
    f.catalog(&catalog_of(&[
        entry("time", TIME, ""),
        entry("test", TESTSERVER, ""),
    ]));
    f.registry(&["time"]);
    f.start(&["--no-auth"]);
    f.ready("time").await;
    let pid = f.controller_pid().unwrap();

    // Connected the way the motivating deployment's sandbox connects: /sse.
    let mut c = client(&f, McpTransport::Sse).await;
    assert!(!c.tool_names().await.contains(&"echo".to_string()));

    let approved = Instant::now();
    f.registry(&["time", "test"]);
    assert!(
        c.wait_list_changed("tools", MIN).await,
        "no tools/list_changed after approval"
    );
    eprintln!(
        "approval -> list_changed at the client: {:?}",
        approved.elapsed()
    );
    let names = c.tool_names().await;
    assert!(names.contains(&"echo".to_string()), "{names:?}");
    assert_eq!(
        c.call("echo", json!({"text": "hello"})).await,
        (false, "hello".to_string())
    );

    f.registry(&["time"]);
    assert!(
        c.wait_list_changed("tools", MIN).await,
        "no tools/list_changed after revocation"
    );
    let names = c.tool_names().await;
    assert!(!names.contains(&"echo".to_string()), "{names:?}");
    let answer = c
        .send(json!({"cmd": "call", "name": "echo", "arguments": {"text": "x"}}))
        .await;
    let refused = answer["ok"] == json!(false) || answer["is_error"] == json!(true);
    assert!(refused, "a revoked tool must not answer: {answer}");
    f.gone("test").await;

    // Same session, same gateway process.
    assert!(
        c.tool_names()
            .await
            .contains(&"get_current_time".to_string())
    );
    assert_eq!(f.controller_pid(), Some(pid));
    assert!(
        std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clashing_tool_names_are_prefixed_and_both_reachable() {
    let f = serving(
        "gw-clash",
        &[entry("one", TESTSERVER, ""), entry("two", TESTSERVER, "")],
        &["--no-auth"],
        &["one", "two"],
    )
    .await;
    let mut c = client(&f, McpTransport::Http).await;
    let names = c.tool_names().await;
    for want in ["one__echo", "two__echo", "one__add", "two__add"] {
        assert!(names.contains(&want.to_string()), "{want} in {names:?}");
    }
    assert!(!names.contains(&"echo".to_string()));
    assert_eq!(
        c.call("one__echo", json!({"text": "a"})).await,
        (false, "a".to_string())
    );
    assert_eq!(c.call("two__add", json!({"a": 2, "b": 3})).await.1, "5");
    let clashes = f.status().unwrap()["clashes"].to_string();
    assert!(clashes.contains("one__echo, two__echo"), "{clashes}");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_heals_under_an_open_session() {
    let f = serving(
        "gw-heal",
        &[entry("time", TIME, "")],
        &["--no-auth"],
        &["time"],
    )
    .await;
    let mut c = client(&f, McpTransport::Http).await;
    let before = f.container("time").await.unwrap();

    docker_cli(&["kill", &before.id]);
    f.until("time seen as not ready", MIN, || async {
        let s = f.status()?;
        let srv = &s["servers"]["time"];
        (srv["ready"]["status"] != json!(true) || srv["phase"] != json!("Running")).then_some(())
    })
    .await;
    // The call waits for the server to come back rather than failing.
    let (is_error, text) = c.call("get_current_time", json!({"timezone": "UTC"})).await;
    assert!(!is_error, "{text}");
    assert!(f.status().unwrap()["servers"]["time"]["restartCount"].as_u64() >= Some(1));
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_requires_a_token_and_rejects_foreign_origins() {
    let mut f = Fleet::new("gw-auth").await;
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    f.write("token", "s3cret-token-value\n");
    let token_file = f.path("token");
    f.start(&["--auth-token-file", token_file.to_str().unwrap()]);
    let base = f.gateway_url().await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let mcp = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];

    let (code, body) = raw_http(&base, "GET", "/health", &[], "");
    assert_eq!(code, 200, "{body}");
    for auth in [None, Some("Bearer wrong")] {
        let mut h = mcp.to_vec();
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        let (code, body) = raw_http(&base, "POST", "/mcp", &h, init);
        assert_eq!(code, 401, "{auth:?}: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(v["error"], "unauthorized");
    }
    let (code, _) = raw_http(&base, "GET", "/sse", &[], "");
    assert_eq!(code, 401);
    let good = ("Authorization", "Bearer s3cret-token-value");
    let (code, body) = raw_http(
        &base,
        "POST",
        "/mcp",
        &[mcp[0], mcp[1], good, ("Origin", "http://evil.example")],
        init,
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        serde_json::from_str::<Value>(&body).is_ok(),
        "JSON body: {body}"
    );
    let (code, body) = raw_http(&base, "GET", "/status", &[good], "");
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["fleet"],
        f.name.as_str()
    );
    // An authenticated client works, and the token is not in the logs.
    let mut c = McpClient::connect(
        &format!("{base}/mcp"),
        McpTransport::Http,
        Some("s3cret-token-value"),
    )
    .await;
    assert!(c.tool_names().await.contains(&"mcp-find".to_string()));
    c.close().await;
    assert!(!f.logs().contains("s3cret-token-value"));
}

async fn management_fleet(test: &str, policy: &str) -> (Fleet, McpClient) {
    let mut f = Fleet::new(test).await;
    f.catalog(&catalog_of(&[
        entry("fetch", FETCH, FETCH_DESC),
        entry("time", TIME, ""),
        entry("test", TESTSERVER, "description: A small echo server"),
    ]));
    f.registry(&["time"]);
    f.start(&["--no-auth", "--add-policy", policy]);
    f.ready("time").await;
    let c = client(&f, McpTransport::Http).await;
    (f, c)
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_find_and_mcp_add_request_policy() {
    let (f, mut c) = management_fleet("gw-request", "request").await;
    let (is_error, text) = c.call("mcp-find", json!({"query": "markdown"})).await;
    assert!(!is_error, "{text}");
    let found: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(found["matches"][0]["name"], "fetch", "{text}");
    assert_eq!(found["matches"][0]["approval"], "not approved");

    let (is_error, text) = c.call("mcp-add", json!({"server": "fetch"})).await;
    assert!(is_error && text.contains("name"), "{text}");
    let (is_error, text) = c.call("mcp-add", json!({"name": "nope"})).await;
    assert!(is_error && text.contains("not in the catalog"), "{text}");

    let (is_error, text) = c
        .call("mcp-add", json!({"name": "fetch", "reason": "read docs"}))
        .await;
    assert!(!is_error && text.contains("pending"), "{text}");
    let requests = std::fs::read_to_string(f.path("requests.yaml")).unwrap();
    assert!(
        requests.contains("\"fetch\"") && requests.contains("read docs"),
        "{requests}"
    );
    // The client and its session, as the call came.
    assert!(requests.contains(" (session "), "{requests}");
    let (_, text) = c.call("mcp-find", json!({"query": "fetch"})).await;
    assert!(text.contains("\"pending\""), "{text}");
    assert!(
        f.container("fetch").await.is_none(),
        "a request starts nothing"
    );
    assert!(
        !std::fs::read_to_string(f.path("registry.yaml"))
            .unwrap()
            .contains("fetch")
    );
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_add_and_remove_approve_policy() {
    let (f, mut c) = management_fleet("gw-approve", "approve").await;
    let (is_error, text) = c.call("mcp-add", json!({"name": "test"})).await;
    assert!(!is_error, "{text}");
    let answer: Value = serde_json::from_str(&text).expect(&text);
    // The test server's own tools, sorted (other tests add tools of their own).
    let tools: Vec<&str> = answer["tools"]
        .as_array()
        .expect(&text)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.is_sorted(), "{text}");
    for tool in ["add", "echo", "grow"] {
        assert!(tools.contains(&tool), "{text}");
    }
    assert!(
        std::fs::read_to_string(f.path("registry.yaml"))
            .unwrap()
            .contains("test:")
    );
    assert_eq!(f.running("test").await.server, "test");

    let (is_error, text) = c.call("mcp-remove", json!({"name": "test"})).await;
    assert!(!is_error, "{text}");
    f.gone("test").await;
    let registry = std::fs::read_to_string(f.path("registry.yaml")).unwrap();
    assert!(
        !registry.contains("test:") && registry.contains("time:"),
        "{registry}"
    );
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_add_deny_policy_explains() {
    let (f, mut c) = management_fleet("gw-deny", "deny").await;
    let (is_error, text) = c.call("mcp-add", json!({"name": "fetch"})).await;
    assert!(is_error && text.contains("--add-policy deny"), "{text}");
    assert!(!f.path("requests.yaml").exists());
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_is_not_ready_and_gets_replaced() {
    let f = serving(
        "gw-mute",
        &[
            entry("mute", TESTSERVER, "command: ['--never-answer']"),
            entry("time", TIME, ""),
        ],
        &["--no-auth", "--handshake-timeout", "2"],
        &["time"],
    )
    .await;
    let first = f.running("mute").await;
    f.until("mute replaced after a failed handshake", MIN, || async {
        let s = f.status()?;
        let replaced = s["servers"]["mute"]["containerId"].as_str()? != first.id;
        (replaced && s["servers"]["mute"]["restartCount"].as_u64()? >= 1).then_some(())
    })
    .await;
    let logs = f.logs();
    assert!(
        logs.contains("not ready: MCP handshake did not finish within 2s")
            || logs.contains("not ready: no MCP session within the handshake timeout (2s)"),
        "{logs}"
    );
    let now = f.container("mute").await.map(|c| c.id);
    assert_ne!(
        now.as_deref(),
        Some(first.id.as_str()),
        "a fresh container\n{logs}"
    );
    // The healthy server is unaffected, and the mute one's tools never appear.
    let mut c = client(&f, McpTransport::Http).await;
    let names = c.tool_names().await;
    assert!(names.contains(&"get_current_time".to_string()));
    assert!(!names.contains(&"echo".to_string()), "{names:?}");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_gateway_restart_every_server_serves_again() {
    let mut f = serving(
        "gw-restart",
        &[entry("time", TIME, ""), entry("test", TESTSERVER, "")],
        &["--no-auth"],
        &["time", "test"],
    )
    .await;
    let ids = (
        f.container("time").await.unwrap().id,
        f.container("test").await.unwrap().id,
    );
    f.stop("-TERM");
    std::fs::remove_file(f.status_path()).unwrap();

    f.start(&["--no-auth"]);
    f.ready("time").await;
    f.ready("test").await;
    let mut c = client(&f, McpTransport::Sse).await;
    assert_eq!(
        c.call("echo", json!({"text": "again"})).await,
        (false, "again".to_string())
    );
    let (is_error, text) = c.call("get_current_time", json!({"timezone": "UTC"})).await;
    assert!(!is_error, "{text}");
    // The same containers answered a second handshake: nothing was replaced.
    assert_eq!(f.container("time").await.unwrap().id, ids.0);
    assert_eq!(f.container("test").await.unwrap().id, ids.1);
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_entries_are_served_over_streamable_http_and_sse_with_their_headers() {
    // The remote server is a real streamable-HTTP MCP server: a second
    // mcp-fleet gateway, with a token, serving the test server.
    let mut upstream = Fleet::new("gw-remote-up").await;
    upstream.catalog(&catalog_of(&[entry("test", TESTSERVER, "")]));
    upstream.write("token", "remote-t0ken\n");
    let token_file = upstream.path("token");
    upstream.start(&["--auth-token-file", token_file.to_str().unwrap()]);
    upstream.ready("test").await;
    let base = upstream.gateway_url().await;

    let mut f = Fleet::new("gw-remote").await;
    f.write_atomic("mcp.env", "REMOTE_TOKEN=remote-t0ken\n");
    let remote = |name: &str, path: &str, transport: &str| {
        format!(
            "  {name}:\n    type: remote\n    prefix: {name}\n    remote:\n      url: {base}{path}\n      transport_type: {transport}\n      headers:\n        Authorization: Bearer $REMOTE_TOKEN\n"
        )
    };
    f.catalog(&format!(
        "registry:\n{}{}",
        remote("far", "/mcp", "streamable-http"),
        remote("old", "/sse", "sse")
    ));
    f.start(&["--no-auth"]);
    f.ready("far").await;
    f.ready("old").await;
    assert_eq!(f.status().unwrap()["servers"]["far"]["phase"], "Remote");
    let mut c = client(&f, McpTransport::Http).await;
    let names = c.tool_names().await;
    assert!(names.contains(&"far__echo".to_string()), "{names:?}");
    assert!(names.contains(&"old__echo".to_string()), "{names:?}");
    assert_eq!(
        c.call("far__echo", json!({"text": "far away"})).await,
        (false, "far away".to_string())
    );
    assert_eq!(
        c.call("old__add", json!({"a": 1, "b": 2})).await,
        (false, "3".to_string())
    );
    c.close().await;
    let status = std::fs::read_to_string(f.status_path()).unwrap();
    assert!(!status.contains("remote-t0ken") && !f.logs().contains("remote-t0ken"));
}

#[tokio::test(flavor = "multi_thread")]
async fn prompts_and_resources_are_aggregated_and_routed() {
    let f = serving(
        "gw-prompts",
        &[entry("one", TESTSERVER, ""), entry("two", TESTSERVER, "")],
        &["--no-auth"],
        &["one", "two"],
    )
    .await;
    let mut c = client(&f, McpTransport::Http).await;
    let prompts = c.ok(json!({"cmd": "list_prompts"})).await;
    assert_eq!(
        prompts["prompts"],
        json!(["one__greet", "two__greet"]),
        "{prompts}"
    );
    let greeting = c
        .ok(json!({"cmd": "get_prompt", "name": "two__greet", "arguments": {"name": "Ada"}}))
        .await;
    assert!(
        greeting["text"].as_str().unwrap().contains("Hello, Ada!"),
        "{greeting}"
    );
    // Both serve the same URI: it is listed once and read from one of them.
    let resources = c.ok(json!({"cmd": "list_resources"})).await;
    let info_entries = resources["resources"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| *r == "test://info")
        .count();
    assert_eq!(info_entries, 1, "{resources}");
    let info = c
        .ok(json!({"cmd": "read_resource", "uri": "test://info"}))
        .await;
    assert_eq!(info["text"], "mcp-fleet test server");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_own_list_changed_reaches_the_client() {
    let f = serving(
        "gw-grow",
        &[entry("test", TESTSERVER, "")],
        &["--no-auth"],
        &["test"],
    )
    .await;
    let mut c = client(&f, McpTransport::Http).await;
    // A 2026-07-28 client, whose changes come over `subscriptions/listen`.
    let mut modern = client(&f, McpTransport::HttpDiscover).await;
    assert!(!c.tool_names().await.contains(&"late".to_string()));

    // `grow` makes the server add a tool and send its own tools/list_changed.
    assert_eq!(
        c.call("grow", json!({})).await,
        (false, "grown".to_string())
    );
    assert!(
        c.wait_list_changed("tools", MIN).await,
        "no list_changed relayed"
    );
    assert!(
        modern.wait_list_changed("tools", MIN).await,
        "none on the listen stream"
    );
    assert!(c.tool_names().await.contains(&"late".to_string()));
    assert!(modern.tool_names().await.contains(&"late".to_string()));
    assert_eq!(
        c.call("late", json!({})).await,
        (false, "I was added later".to_string())
    );
    c.close().await;
    modern.close().await;
}
