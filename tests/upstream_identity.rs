//! Identity to remote upstreams (issue 11, item 4), against the real binary,
//! the Python SDK as client and a real HTTP MCP server that records every
//! request's headers (`docker/test-images/testserver/headers_server.py`),
//! served to the fleet as two remote entries: `far` (streamable HTTP) and
//! `old` (HTTP+SSE).
//!
//! `remote_upstreams_hear_who_calls_and_never_the_clients_headers` runs with
//! the operator's token; `each_user_has_its_own_bounded_session` with users
//! told apart by their tokens in `users.yaml`.
mod common;

use std::collections::HashSet;

use common::fixture::HttpFixture;
use common::mcp_client::{McpClient, McpTransport};
use common::{Fleet, catalog_of};
use serde_json::{Map, Value, json};

const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/docker/test-images/testserver/headers_server.py"
);
const GATEWAY_TOKEN: &str = "gateway-t0ken-of-the-client";
const SECRET: &str = "shared-s3cret-for-upstreams";
const UPSTREAM_KEY: &str = "upstream-api-key";

/// Headers a client sends that must never reach an upstream.
const SPOOFED: [&str; 5] = [
    "X-Mcp-UserId: mallory",
    "X-Mcp-UserName: Mallory",
    "X-Mcp-Roles: mcp.admin",
    "Cookie: session=stolen-cookie",
    "X-CSRF-Token: csrf-from-the-client",
];

type Headers = Map<String, Value>;

/// The header server as `far` and `old`; `far`'s catalog entry has its own
/// `Authorization`, a vendor `X-MCP-Toolsets`, and an `X-Mcp-UserId` that the
/// user's identity must replace.
fn remote_catalog(base: &str) -> String {
    let far = format!(
        "  far:\n    type: remote\n    prefix: far\n    remote:\n      url: {base}/mcp\n      transport_type: streamable-http\n      headers:\n        Authorization: Bearer {UPSTREAM_KEY}\n        X-MCP-Toolsets: repos\n        X-Mcp-UserId: from-the-catalog\n"
    );
    let old = format!(
        "  old:\n    type: remote\n    prefix: old\n    remote:\n      url: {base}/sse\n      transport_type: sse\n"
    );
    catalog_of(&[far, old])
}

/// A fleet serving the header server with a gateway token, the shared secret
/// and `users`, started with `args` besides.
async fn fleet(test: &str, base: &str, users: &[User], args: &[&str]) -> Fleet {
    let mut f = Fleet::new(test).await;
    f.catalog(&remote_catalog(base));
    if !users.is_empty() {
        write_users(&f, users);
    }
    f.write("upstream-secret", &format!("{SECRET}\n"));
    f.write("token", &format!("{GATEWAY_TOKEN}\n"));
    let (secret, token) = (f.path("upstream-secret"), f.path("token"));
    let mut all = vec![
        "--upstream-identity-secret-file",
        secret.to_str().unwrap(),
        "--auth-token-file",
        token.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    f.start(&all);
    f.ready("far").await;
    f.ready("old").await;
    f
}

async fn client(f: &Fleet, transport: McpTransport, token: &str) -> McpClient {
    let base = f.gateway_url().await;
    let url = match transport {
        McpTransport::Sse => format!("{base}/sse"),
        _ => format!("{base}/mcp"),
    };
    let mut args = vec!["--token", token];
    for h in SPOOFED {
        args.extend(["--header", h]);
    }
    McpClient::connect_with(&url, transport, &args).await
}

/// Calls a tool that answers JSON; panics unless it succeeds.
async fn json_tool(c: &mut McpClient, tool: &str) -> Value {
    let (is_error, text) = c.call(tool, json!({})).await;
    assert!(!is_error, "{tool} failed: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool} answered {text}: {e}"))
}

/// The headers of the HTTP request that carried the call of `server`'s `whoami`.
async fn whoami(c: &mut McpClient, server: &str) -> Headers {
    let v = json_tool(c, &format!("{server}__whoami")).await;
    v.as_object().cloned().expect("whoami answers an object")
}

/// A request the header server received: method, path, headers.
type Request = (String, String, Headers);

/// Every request the header server received (both entries share it).
async fn seen(c: &mut McpClient) -> Vec<Request> {
    let v = json_tool(c, "far__seen").await;
    v.as_array()
        .expect("seen answers a list")
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
                r["headers"].as_object().unwrap().clone(),
            )
        })
        .collect()
}

fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.get(&name.to_ascii_lowercase()).and_then(Value::as_str)
}

/// What no request to an upstream may carry, whoever it is for.
fn assert_nothing_of_the_client(requests: &[Request]) {
    for (method, _, h) in requests {
        for name in ["cookie", "x-csrf-token"] {
            assert!(header(h, name).is_none(), "{method} carried {name}: {h:?}");
        }
        for (name, value) in h {
            let value = value.as_str().unwrap_or_default();
            assert!(
                !value.contains(GATEWAY_TOKEN) && !value.contains("allory"),
                "{method} carried the client's {name}: {value}"
            );
        }
        assert!(
            header(h, "x-mcp-gateway-secret") == Some(SECRET),
            "{method} without the shared secret: {h:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_upstreams_hear_who_calls_and_never_the_clients_headers() {
    let server = HttpFixture::spawn(SERVER, &[]).await;
    let f = fleet("upid-op", &server.url, &[], &[]).await;
    // Both gateway transports, one operator: one pooled session per server.
    let mut over_mcp = client(&f, McpTransport::Http, GATEWAY_TOKEN).await;
    let mut over_sse = client(&f, McpTransport::Sse, GATEWAY_TOKEN).await;
    for c in [&mut over_mcp, &mut over_sse] {
        for server in ["far", "old"] {
            let h = whoami(c, server).await;
            assert_eq!(
                header(&h, "x-mcp-userid"),
                Some("operator"),
                "{server}: {h:?}"
            );
            assert_eq!(header(&h, "x-mcp-username"), Some("operator"), "{h:?}");
            assert_eq!(header(&h, "x-mcp-roles"), Some("mcp.admin"), "{h:?}");
            assert_eq!(header(&h, "x-mcp-gateway-secret"), Some(SECRET), "{h:?}");
            let (auth, toolsets) = (header(&h, "authorization"), header(&h, "x-mcp-toolsets"));
            if server == "far" {
                assert_eq!(auth, Some(format!("Bearer {UPSTREAM_KEY}").as_str()));
                assert_eq!(toolsets, Some("repos"));
            } else {
                assert_eq!((auth, toolsets), (None, None), "{h:?}");
            }
        }
    }
    // What an upstream sends during a call on a user's session reaches the caller.
    for (c, server) in [(&mut over_mcp, "far"), (&mut over_sse, "old")] {
        let call = json!({"cmd": "call", "name": format!("{server}__count"),
            "arguments": {"steps": 3}, "progress": true});
        let answer = c.ok(call).await;
        assert_eq!(answer["text"], "operator", "{answer}");
        assert_eq!(
            answer["progress"].as_array().map(Vec::len),
            Some(3),
            "{answer}"
        );
    }
    let requests = seen(&mut over_mcp).await;
    assert_nothing_of_the_client(&requests);
    let (users, listing): (Vec<_>, Vec<_>) = requests
        .iter()
        .partition(|(_, _, h)| header(h, "x-mcp-userid").is_some());
    assert!(!listing.is_empty() && !users.is_empty());
    for (_, _, h) in &users {
        assert_eq!(header(h, "x-mcp-userid"), Some("operator"), "{h:?}");
    }
    for (_, _, h) in &listing {
        for name in ["x-mcp-username", "x-mcp-roles"] {
            assert!(header(h, name).is_none(), "the listing session sent {name}");
        }
    }
    // One upstream session for the operator per server, whichever client
    // called: one streamable-HTTP session id, one SSE event stream.
    let far_sessions: HashSet<&str> = users
        .iter()
        .filter_map(|(_, _, h)| header(h, "mcp-session-id"))
        .collect();
    assert_eq!(far_sessions.len(), 1, "{far_sessions:?}");
    let old_streams = users
        .iter()
        .filter(|(m, path, _)| m == "GET" && path == "/sse")
        .count();
    assert_eq!(old_streams, 1);
    over_mcp.close().await;
    over_sse.close().await;
    let logs = f.logs();
    assert!(!logs.contains(SECRET) && !logs.contains(GATEWAY_TOKEN));
}

/// A user: id, name, roles (as in YAML), token.
type User = (&'static str, &'static str, &'static str, &'static str);

/// Writes the users the gateway tells apart, each with its own token.
///
/// Writes `users.yaml` (id, name, roles and the token's SHA-256 per user).
fn write_users(f: &Fleet, users: &[User]) {
    use sha2::{Digest, Sha256};
    let mut text = String::from("users:\n");
    for (id, name, roles, token) in users {
        let digest: String = Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        text.push_str(&format!(
            "  - id: {id}\n    name: {name}\n    roles: [{roles}]\n    token_sha256: {digest}\n"
        ));
    }
    f.write_atomic("users.yaml", &text);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_user_has_its_own_bounded_session() {
    let users = [
        ("alice", "Alice", "dev", "alice-t0ken"),
        ("bob", "Bob", "ops", "bob-t0ken"),
        ("carol", "Carol", "dev, ops", "carol-t0ken"),
    ];
    let server = HttpFixture::spawn(SERVER, &[]).await;
    let args = ["--upstream-user-sessions", "2"];
    let f = fleet("upid-users", &server.url, &users, &args).await;
    let mut clients = Vec::new();
    for (id, name, roles, token) in users {
        let mut c = client(&f, McpTransport::Http, token).await;
        let h = whoami(&mut c, "far").await;
        assert_eq!(header(&h, "x-mcp-userid"), Some(id), "{h:?}");
        assert_eq!(header(&h, "x-mcp-username"), Some(name), "{h:?}");
        assert_eq!(
            header(&h, "x-mcp-roles"),
            Some(roles.replace(' ', "").as_str())
        );
        clients.push(c);
    }
    // Three users, room for two: the least recently used idle one (alice)
    // was closed, which the upstream hears as a DELETE of her session.
    let requests = seen_until(&mut clients[2], "alice's session closed", |r| {
        count(r, "DELETE", "alice") == 1
    })
    .await;
    assert_eq!(
        count(&requests, "DELETE", "bob") + count(&requests, "DELETE", "carol"),
        0
    );
    let open: HashSet<&str> = requests
        .iter()
        .filter(|(_, _, h)| matches!(header(h, "x-mcp-userid"), Some("bob" | "carol")))
        .filter_map(|(_, _, h)| header(h, "mcp-session-id"))
        .collect();
    assert_eq!(open.len(), 2, "bob's and carol's sessions: {open:?}");
    // Alice again: a new session, closing bob's (now the least recently used).
    let h = whoami(&mut clients[0], "far").await;
    assert_eq!(header(&h, "x-mcp-userid"), Some("alice"));
    let requests = seen_until(&mut clients[2], "bob's session closed", |r| {
        count(r, "DELETE", "bob") == 1
    })
    .await;
    assert_eq!(count(&requests, "DELETE", "carol"), 0);
    assert_nothing_of_the_client(&requests);
    for c in clients {
        c.close().await;
    }
}

/// Requests of `method` to the streamable-HTTP entry for `user`.
fn count(requests: &[Request], method: &str, user: &str) -> usize {
    requests
        .iter()
        .filter(|(m, p, h)| m == method && p == "/mcp" && header(h, "x-mcp-userid") == Some(user))
        .count()
}

/// What the header server received, once `done` holds of it (within 15 s):
/// a session is closed after the call that made room returns.
async fn seen_until(
    c: &mut McpClient,
    what: &str,
    done: impl Fn(&[Request]) -> bool,
) -> Vec<Request> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let requests = seen(c).await;
        if done(&requests) {
            return requests;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
