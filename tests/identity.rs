//! Identity and access end to end: the real binary, a real engine, real MCP
//! servers, the official Python SDK as the client, and real JWTs made with
//! PyJWT (`tests/clients/jwt_tool.py`).
mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mcp_client::{McpClient, McpTransport, python};
use common::raw_mcp::{Answer, open_session_with, post_mcp};
use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const OPERATOR: &str = "operator-token-for-identity-tests";
const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "mcp-fleet";
const JWT_TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/jwt_tool.py");

/// Runs `jwt_tool.py` with `args`; its one line of output.
fn jwt_tool(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(JWT_TOOL)
        .args(args)
        .output()
        .expect("run jwt_tool.py");
    assert!(out.status.success(), "jwt_tool {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn claims(sub: &str, roles: &[&str], extra: Value) -> String {
    let mut c = json!({"sub": sub, "name": sub.to_uppercase(), "roles": roles,
        "iss": ISSUER, "aud": AUDIENCE, "exp": "+600"});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    c.to_string()
}

/// The catalog: `time` for role `timekeeper`, our test server with
/// `test_rule` (lines under its `x-mcp-fleet` extension key).
fn catalog(test_rule: &str) -> String {
    catalog_of(&[
        entry("time", TIME, "x-mcp-fleet:\n  required_roles: [timekeeper]"),
        entry("test", TESTSERVER, &format!("x-mcp-fleet:\n{test_rule}")),
    ])
}

/// A fleet of [`catalog`] with the test server for role `tester`, started
/// once `files` are written. `{dir}` in `args` is the config directory, which
/// holds `jwt-secret`.
async fn fleet(test: &str, args: &[&str], files: &[(&str, String)]) -> Fleet {
    let mut f = Fleet::new(test).await;
    f.catalog(&catalog("  required_roles: [tester]"));
    f.write("jwt-secret", SECRET);
    for (name, text) in files {
        f.write(name, text);
    }
    let dir = f.dir.path().to_str().unwrap().to_string();
    let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &dir)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    f.start_env(&args, &[("MCP_GATEWAY_AUTH_TOKEN", OPERATOR)]);
    f.ready("time").await;
    f.ready("test").await;
    f
}

async fn connect(f: &Fleet, transport: McpTransport, token: &str) -> McpClient {
    let base = f.gateway_url().await;
    let path = if transport == McpTransport::Sse {
        "/sse"
    } else {
        "/mcp"
    };
    McpClient::connect(&format!("{base}{path}"), transport, Some(token)).await
}

/// `GET path` with `token`: the status and the JSON body.
async fn get(f: &Fleet, path: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", f.gateway_url().await))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert!(
        !text.contains(token) || token.is_empty(),
        "the answer echoes the token: {text}"
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The error a call answers with, with `name` replaced by `X`.
async fn call_error(c: &mut McpClient, cmd: Value, name: &str) -> String {
    let answer = c.send(cmd).await;
    assert_eq!(answer["ok"], json!(false), "{answer}");
    answer["error"].as_str().unwrap().replace(name, "X")
}

/// What a caller of `roles` sees and may call, over `transport`.
async fn sees_only_its_servers(f: &Fleet, transport: McpTransport, token: &str, tester: bool) {
    let mut c = connect(f, transport, token).await;
    let names = c.tool_names().await;
    let (mine, hidden) = if tester {
        ("echo", "get_current_time")
    } else {
        ("get_current_time", "echo")
    };
    assert!(
        names.contains(&mine.to_string()),
        "{transport:?}: {names:?}"
    );
    assert!(
        !names.contains(&hidden.to_string()),
        "{transport:?}: {names:?}"
    );
    assert!(names.contains(&"mcp-find".to_string()), "{names:?}");
    let args = |tool: &str| {
        if tool == "echo" {
            json!({"text": "never-in-the-audit-log"})
        } else {
            json!({"timezone": "Pacific/Auckland"})
        }
    };
    let (is_error, text) = c.call(mine, args(mine)).await;
    assert!(!is_error, "{transport:?}: {text}");
    // A hidden tool answers exactly like one that does not exist.
    let call = |n: &str| json!({"cmd": "call", "name": n, "arguments": args(n)});
    let hidden_err = call_error(&mut c, call(hidden), hidden).await;
    let unknown_err = call_error(&mut c, call("no_such_tool"), "no_such_tool").await;
    assert_eq!(hidden_err, unknown_err);
    // Prompts and resources of the test server are its users' only.
    let prompts = c.ok(json!({"cmd": "list_prompts"})).await;
    let resources = c.ok(json!({"cmd": "list_resources"})).await;
    assert_eq!(
        prompts["prompts"]
            .as_array()
            .unwrap()
            .contains(&json!("greet")),
        tester
    );
    assert_eq!(
        resources["resources"]
            .as_array()
            .unwrap()
            .contains(&json!("test://info")),
        tester
    );
    if !tester {
        let get = |n: &str| json!({"cmd": "get_prompt", "name": n, "arguments": {"name": "x"}});
        let hidden = call_error(&mut c, get("greet"), "greet").await;
        assert_eq!(hidden, call_error(&mut c, get("no_such"), "no_such").await);
        let read = |u: &str| json!({"cmd": "read_resource", "uri": u});
        let hidden = call_error(&mut c, read("test://info"), "test://info").await;
        assert_eq!(
            hidden,
            call_error(&mut c, read("test://none"), "test://none").await
        );
    }
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hs256_users_see_and_call_only_what_their_roles_allow() {
    let f = fleet(
        "id-hs256",
        &[
            "--jwt-secret-file",
            "{dir}/jwt-secret",
            "--jwt-audience",
            AUDIENCE,
            "--jwt-issuer",
            ISSUER,
        ],
        &[],
    )
    .await;
    let secret = f.path("jwt-secret");
    let secret = secret.to_str().unwrap();
    let ann = jwt_tool(&["hs256", secret, &claims("ann", &["timekeeper"], json!({}))]);
    let bob = jwt_tool(&["hs256", secret, &claims("bob", &["tester"], json!({}))]);
    for transport in [McpTransport::Http, McpTransport::Sse] {
        sees_only_its_servers(&f, transport, &ann, false).await;
        sees_only_its_servers(&f, transport, &bob, true).await;
    }
    // The operator (admin) sees everything.
    let mut op = connect(&f, McpTransport::Http, OPERATOR).await;
    let names = op.tool_names().await;
    assert!(names.contains(&"echo".into()) && names.contains(&"get_current_time".into()));
    op.close().await;

    // Bad tokens: 401 with a JSON body that says why, never the token.
    let expired = jwt_tool(&["hs256", secret, &claims("ann", &[], json!({"exp": "-600"}))]);
    let wrong_aud = jwt_tool(&[
        "hs256",
        secret,
        &claims("ann", &[], json!({"aud": "other"})),
    ]);
    let wrong_iss = jwt_tool(&[
        "hs256",
        secret,
        &claims("ann", &[], json!({"iss": "https://x"})),
    ]);
    let later = jwt_tool(&["hs256", secret, &claims("ann", &[], json!({"nbf": "+600"}))]);
    f.write("other-secret", "another-secret-of-at-least-32-bytes!!");
    let forged = jwt_tool(&[
        "hs256",
        f.path("other-secret").to_str().unwrap(),
        &claims("ann", &["timekeeper"], json!({})),
    ]);
    for (token, why) in [
        (&expired, "expired"),
        (&wrong_aud, "audience"),
        (&wrong_iss, "issuer"),
        (&later, "not valid yet"),
        (&forged, "signature"),
    ] {
        let (status, body) = get(&f, "/readyz", token).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["error"], "unauthorized");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(why), "{why}: {message}");
    }
    // /status and /metrics are the admin's.
    assert_eq!(get(&f, "/status", &bob).await.0, 403);
    assert_eq!(get(&f, "/metrics", &bob).await.0, 403);
    assert_eq!(get(&f, "/status", OPERATOR).await.0, 200);

    // One audit line per call: who, which server, how it ended; never arguments.
    // The `audit` service writes a line just after its response left: wait for them.
    let wanted: [&[&str]; 3] = [
        &[
            "user=ann",
            "server=\"time\"",
            "name=\"get_current_time\"",
            "outcome=\"ok\"",
            "kind=\"tools/call\"",
        ],
        &[
            "user=bob",
            "server=\"test\"",
            "name=\"echo\"",
            "outcome=\"ok\"",
            "duration_ms=",
        ],
        &[
            "user=ann",
            "server=\"test\"",
            "name=\"echo\"",
            "outcome=\"hidden\"",
        ],
    ];
    let audit: Vec<String> = f
        .until("the three audit lines", Duration::from_secs(10), || async {
            let audit: Vec<String> = f
                .logs()
                .lines()
                .filter(|l| l.contains(" audit: "))
                .map(str::to_owned)
                .collect();
            let has = |parts: &[&str]| audit.iter().any(|l| parts.iter().all(|p| l.contains(p)));
            wanted.iter().all(|w| has(w)).then_some(audit)
        })
        .await;
    assert!(
        !audit
            .iter()
            .any(|l| l.contains("never-in-the-audit-log") || l.contains("Auckland")),
        "{audit:#?}"
    );
}

/// A JWKS served on loopback by the test, whose keys it can rotate.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve_jwks(keys: &[&str]) -> JwksServer {
    let body = Arc::new(Mutex::new(format!("{{\"keys\": [{}]}}", keys.join(","))));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (b, n) = (body.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (b, n) = (b.clone(), n.clone());
            async move {
                n.fetch_add(1, Ordering::SeqCst);
                b.lock().unwrap().clone()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer { url, body, fetches }
}

#[tokio::test(flavor = "multi_thread")]
async fn rs256_through_a_jwks_on_loopback_with_a_rotated_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let k1 = jwt_tool(&["rsa-key", d, "k1"]);
    let k2 = jwt_tool(&["rsa-key", d, "k2"]);
    let jwks = serve_jwks(&[&k1]).await;
    let f = fleet(
        "id-jwks",
        &["--jwt-jwks-url", &jwks.url, "--jwt-audience", AUDIENCE],
        &[],
    )
    .await;
    let pem = |kid: &str| format!("{d}/{kid}.pem");
    let token = |kid: &str, sub: &str, extra: Value| {
        jwt_tool(&["rs256", &pem(kid), kid, &claims(sub, &["tester"], extra)])
    };
    sees_only_its_servers(
        &f,
        McpTransport::Http,
        &token("k1", "carol", json!({})),
        true,
    )
    .await;

    // Rotation: the JWKS now holds k2 only. A k2 token names a kid the
    // gateway does not hold, which makes it fetch the JWKS again (at most
    // every 10 s, however many such tokens arrive).
    *jwks.body.lock().unwrap() = format!("{{\"keys\": [{k2}]}}");
    let before = jwks.fetches.load(Ordering::SeqCst);
    let rotated = token("k2", "dave", json!({}));
    let started = Instant::now();
    f.until("a k2 token accepted", Duration::from_secs(30), || async {
        (get(&f, "/readyz", &rotated).await.0 != 401).then_some(())
    })
    .await;
    let refetches = jwks.fetches.load(Ordering::SeqCst) - before;
    let allowed = 1 + started.elapsed().as_secs() as usize / 10;
    assert!(
        (1..=allowed).contains(&refetches),
        "{refetches} fetches in {:?}",
        started.elapsed()
    );
    sees_only_its_servers(&f, McpTransport::Sse, &rotated, true).await;
    // A fresh token of the retired key no longer passes.
    let (status, body) = get(&f, "/readyz", &token("k1", "erin", json!({}))).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("kid"), "{body}");
    for (extra, why) in [
        (json!({"exp": "-600"}), "expired"),
        (json!({"aud": "somebody-else"}), "audience"),
    ] {
        let (status, body) = get(&f, "/readyz", &token("k2", "dave", extra)).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(why),
            "{why}: {body}"
        );
    }
}

fn users_yaml(users: &[(&str, &str, &[&str])]) -> String {
    let mut text = String::from("users:\n");
    for (id, token, roles) in users {
        let digest: String = Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        text.push_str(&format!(
            "  - id: {id}\n    roles: [{}]\n    token_sha256: {digest}\n",
            roles.join(", ")
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_change_reaches_the_affected_session_only() {
    let (ann, bob) = ("ann-static-token", "bob-static-token");
    let users = users_yaml(&[("ann", ann, &["tester"]), ("bob", bob, &["tester"])]);
    let f = fleet("id-users", &[], &[("users.yaml", users)]).await;
    let mut a = connect(&f, McpTransport::Http, ann).await;
    let mut b = connect(&f, McpTransport::Sse, bob).await;
    // ann again, on the 2026-07-28 lifecycle: changes come on a listen stream.
    let mut a2 = connect(&f, McpTransport::HttpDiscover, ann).await;
    for c in [&mut a, &mut b] {
        let names = c.tool_names().await;
        assert!(names.contains(&"echo".into()) && !names.contains(&"get_current_time".into()));
    }

    // 1. ann becomes a timekeeper (and no longer a tester).
    f.write(
        "users.yaml",
        &users_yaml(&[("ann", ann, &["timekeeper"]), ("bob", bob, &["tester"])]),
    );
    assert!(a.wait_list_changed("tools", Duration::from_secs(30)).await);
    let names = a.tool_names().await;
    assert!(names.contains(&"get_current_time".into()) && !names.contains(&"echo".into()));
    assert!(a2.wait_list_changed("tools", Duration::from_secs(30)).await);
    assert_eq!(a2.tool_names().await, names);
    // 2. bob gains timekeeper. He is told once: for this change, not for ann's.
    f.write(
        "users.yaml",
        &users_yaml(&[
            ("ann", ann, &["timekeeper"]),
            ("bob", bob, &["tester", "timekeeper"]),
        ]),
    );
    assert_eq!(
        count_after_one(&f, &mut b).await,
        1,
        "bob was told of ann's change"
    );
    let names = b.tool_names().await;
    assert!(
        names.contains(&"get_current_time".into()),
        "{names:?}\n{}",
        f.current_log()
    );
    // 3. ann gains tester back: she too is told once (not of bob's change).
    f.write(
        "users.yaml",
        &users_yaml(&[
            ("ann", ann, &["timekeeper", "tester"]),
            ("bob", bob, &["tester", "timekeeper"]),
        ]),
    );
    assert_eq!(
        count_after_one(&f, &mut a).await,
        1,
        "ann was told of bob's change"
    );
    // 4. The test server's rule changes to role `auditor`, creator bob: ann
    // loses it, bob keeps it, and its container is left alone.
    let before = f.container("test").await.unwrap().id;
    f.catalog(&catalog("  required_roles: [auditor]\n  creator: bob"));
    assert!(a.wait_list_changed("tools", Duration::from_secs(30)).await);
    assert!(!a.tool_names().await.contains(&"echo".into()));
    assert!(b.tool_names().await.contains(&"echo".into()));
    assert_eq!(f.container("test").await.unwrap().id, before);
    // ann may still find it and ask for it: the request names her.
    let found = a
        .ok(json!({"cmd": "call", "name": "mcp-find", "arguments": {"query": "test"}}))
        .await;
    let found: Value = serde_json::from_str(found["text"].as_str().unwrap()).unwrap();
    let entry = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "test");
    assert_eq!(entry.unwrap()["approval"], "not approved", "{found}");
    assert_eq!(entry.unwrap()["phase"], Value::Null, "{found}");
    let (is_error, text) = a
        .call("mcp-add", json!({"name": "test", "reason": "echo"}))
        .await;
    assert!(!is_error && text.contains("pending"), "{text}");
    let requests = std::fs::read_to_string(f.path("requests.yaml")).unwrap();
    assert!(
        requests.contains("server: \"test\"") && requests.contains("user: \"ann\""),
        "{requests}"
    );
    // An invalid users file keeps the last good one, and says where.
    f.write(
        "users.yaml",
        "users:\n  - id: ann\n    token_sha256: nope\n",
    );
    f.until(
        "the users file error logged",
        Duration::from_secs(30),
        || async { f.current_log().contains("users.yaml:3:").then_some(()) },
    )
    .await;
    assert!(a.tool_names().await.contains(&"get_current_time".into()));
    a.close().await;
    b.close().await;
    a2.close().await;
}

/// How many tools list_changed `c` has got, once at least one has arrived
/// and a round trip later (notifications sent before it have arrived too).
async fn count_after_one(f: &Fleet, c: &mut McpClient) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut total = 0;
    while total == 0 {
        assert!(
            Instant::now() < deadline,
            "no list_changed\n{}",
            f.current_log()
        );
        total += c.take_list_changed("tools").await;
        if total == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    c.ok(json!({"cmd": "ping"})).await;
    total + c.take_list_changed("tools").await
}

/// `tools/list` on `session`, with `auth` as its `Authorization` header.
async fn list_on(base: &str, session: &str, auth: &str, id: u64) -> Answer {
    let list = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}).to_string();
    let headers = [("authorization", auth), ("mcp-session-id", session)];
    post_mcp(base, &headers, &list).await
}

fn tool_names(answer: &Value) -> Vec<String> {
    let tools = answer["result"]["tools"].as_array();
    let tools = tools.unwrap_or_else(|| panic!("no tools in {answer}"));
    tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// ES256 through a JWKS, and a token refreshed on a live session: the same
/// subject with new roles keeps its session and sees what the new roles
/// allow at once; another subject's token on that session is refused.
#[tokio::test(flavor = "multi_thread")]
async fn es256_and_a_token_refreshed_on_a_live_session() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let jwks = serve_jwks(&[&jwt_tool(&["ec-key", d, "e1"])]).await;
    let f = fleet(
        "id-es256",
        &["--jwt-jwks-url", &jwks.url, "--jwt-audience", AUDIENCE],
        &[],
    )
    .await;
    let pem = format!("{d}/e1.pem");
    let token = |sub: &str, roles: &[&str]| {
        jwt_tool(&["es256", &pem, "e1", &claims(sub, roles, json!({}))])
    };
    sees_only_its_servers(&f, McpTransport::Http, &token("frank", &["tester"]), true).await;

    let base = f.gateway_url().await;
    let bearer = |t: &str| format!("Bearer {t}");
    let first = bearer(&token("gina", &["timekeeper"]));
    let session = open_session_with(&base, "2025-06-18", &[("authorization", &first)]).await;
    let before = tool_names(&list_on(&base, &session, &first, 2).await.message());
    assert!(
        before.contains(&"get_current_time".to_string()),
        "{before:?}"
    );
    assert!(!before.contains(&"echo".to_string()), "{before:?}");

    let refreshed = bearer(&token("gina", &["timekeeper", "tester"]));
    let refreshed = list_on(&base, &session, &refreshed, 3).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let after = tool_names(&refreshed.message());
    assert!(after.contains(&"echo".to_string()), "{after:?}");
    assert!(after.contains(&"get_current_time".to_string()), "{after:?}");

    let other = bearer(&token("hank", &["tester"]));
    let refused = list_on(&base, &session, &other, 4).await.message();
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("belongs to another caller"), "{refused}");
}
