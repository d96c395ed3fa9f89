//! Secrets never leak: a fleet at `MCP_FLEET_LOG=trace` with distinct secret
//! values in `mcp.env` (a container's env, a remote's header), literally in a
//! remote's headers, in remote URLs' query and user info, and the gateway
//! token. The test goes through create, a crash loop, failing remotes (one
//! refused, one quoting its request's headers back), a working remote, tool calls, `/status`, `/metrics`, the status page, the
//! status file, `plan` and `status`, then greps everything mcp-fleet and the
//! engine wrote for every secret value. Two checks keep it honest: the
//! container's env (where a secret is meant to go) holds its value, and the
//! working remote really received its header and query secrets.
//!
//! Not covered yet: `GET /servers/{name}/logs` (being added on another
//! branch); add it to `written` below when it lands.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fixture::HttpFixture;
use common::mcp_client::{McpClient, McpTransport};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIN: Duration = Duration::from_secs(60);
const ENGINE_LOG: &str = "/tmp/mcp-fleet-docker/dockerd.log";

const ENV_SECRET: &str = "sek-env-a1b2c3d4";
const CRASH_SECRET: &str = "sek-crash-e5f6a7b8";
const HEADER_SECRET: &str = "sek-hdr-c9d0e1f2";
const LITERAL_HEADER: &str = "sek-lit-3a4b5c6d";
const QUERY_SECRET: &str = "sek-qry-7e8f9a0b";
const URL_USER: &str = "sek-usr-1c2d3e4f";
const URL_PASSWORD: &str = "sek-pwd-5a6b7c8d";
const GATEWAY_TOKEN: &str = "sek-gw-token-0123456789abcdef";
const SECRETS: [&str; 8] = [
    ENV_SECRET,
    CRASH_SECRET,
    HEADER_SECRET,
    LITERAL_HEADER,
    QUERY_SECRET,
    URL_USER,
    URL_PASSWORD,
    GATEWAY_TOKEN,
];

/// Forwards TCP from a local port to `target` and keeps every byte the
/// client sent, so the test can see what reached the remote.
async fn recording_proxy(target: String) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            let keep = keep.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = async {
                    let mut buf = [0u8; 8192];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        keep.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (port, seen)
}

/// A remote that answers every request `400` quoting the request's headers
/// back in its body, as a careless server might; returns its port.
async fn echoing_remote() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    match stream.read(&mut buf).await {
                        Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                    if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while got.len() < head_end + length {
                    match stream.read(&mut buf).await {
                        Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let body = format!("refused; you sent:\n{head}");
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

fn remote(name: &str, url: &str, transport: &str) -> String {
    format!(
        "  {name}:\n    type: remote\n    remote:\n      url: \"{url}\"\n      transport_type: {transport}\n      headers:\n        Authorization: \"Bearer $REMOTE_TOKEN\"\n        X-Api-Key: \"{LITERAL_HEADER}\"\n"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port() // dropped at once: nothing listens there
}

/// A GET with the gateway token; the body as text.
async fn get(url: &str, auth: &[(&str, &str)]) -> String {
    let mut request = reqwest::Client::new().get(url);
    for (k, v) in auth {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("GET");
    assert!(response.status().is_success(), "GET {url}: {response:?}");
    response.text().await.expect("body")
}

/// The status page as a browser gets it: log in with `/?token=`, then the
/// page and the first event of its status stream, with the cookie.
async fn status_page(base: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = client
        .get(format!("{base}/?token={GATEWAY_TOKEN}"))
        .send()
        .await
        .expect("GET /?token=");
    assert_eq!(login.status(), 303, "{login:?}");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie value")
        .to_string();
    let page = get(&format!("{base}/"), &[("cookie", &cookie)]).await;
    assert!(page.contains("<html"), "{page}");
    let mut events = client
        .get(format!("{base}/status/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET /status/events");
    let first = tokio::time::timeout(MIN, events.chunk())
        .await
        .expect("a status event within a minute")
        .expect("read the stream")
        .expect("an event");
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.contains("\"servers\""), "{first}");
    format!("{page}\n{first}")
}

/// Everything `docker inspect` shows of `server`'s container but its env,
/// after checking that the env holds `secret` (where it is meant to be).
async fn inspected(f: &Fleet, server: &str, env: &str, secret: &str) -> String {
    let c = f
        .until(&format!("{server}'s container"), MIN, || {
            f.container(server)
        })
        .await;
    let mut all = serde_json::to_value(f.inspect(&c.id).await).expect("inspect as JSON");
    let given = all["Config"]["Env"].take();
    let wanted = Value::String(format!("{env}={secret}"));
    assert!(
        given.as_array().is_some_and(|e| e.contains(&wanted)),
        "{server}'s env lacks its secret: the test would prove nothing"
    );
    all.to_string()
}

/// The fleet: `time` and `crashy` with env secrets from `mcp.env`; remotes
/// with header secrets (from `mcp.env` and literal) and query and user-info
/// secrets: `near` at `near_port` works, `far` and `farsse` are refused,
/// `echo` quotes its request back.
async fn start_fleet(near_port: u16) -> Fleet {
    let dead = free_port();
    let near = format!("http://127.0.0.1:{near_port}/mcp?token={QUERY_SECRET}");
    let far = format!("http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{dead}/mcp?token={QUERY_SECRET}");
    let farsse = format!("http://127.0.0.1:{dead}/sse?token={QUERY_SECRET}");
    let echo = format!("http://127.0.0.1:{}/mcp", echoing_remote().await);
    let secret_env =
        |name: &str, env: &str| format!("secrets:\n  - name: {name}\n    env: {env}\n");
    let crashy = format!(
        "command: ['--exit-after', '0.3']\n{}",
        secret_env("crashy.key", "CRASHY_KEY")
    );
    let entries = [
        entry("time", TIME, &secret_env("time.api_key", "TIME_API_KEY")),
        entry("crashy", TESTSERVER, &crashy),
        remote("near", &near, "streamable-http"),
        remote("far", &far, "streamable-http"),
        remote("farsse", &farsse, "sse"),
        remote("echo", &echo, "streamable-http"),
    ];
    let mut f = Fleet::new("secrets").await;
    f.write(
        "mcp.env",
        &format!(
            "TIME_API_KEY={ENV_SECRET}\nCRASHY_KEY={CRASH_SECRET}\nREMOTE_TOKEN={HEADER_SECRET}\n"
        ),
    );
    f.write("gateway-token", GATEWAY_TOKEN);
    f.catalog(&catalog_of(&entries));
    let token_file = f.path("gateway-token").display().to_string();
    f.start_env(
        &["--auth-token-file", &token_file, "--handshake-timeout", "2"],
        &[("MCP_FLEET_LOG", "trace")],
    );
    f
}

/// Create, a crash loop, failing remotes, tool calls through a container and
/// through the working remote. Returns the gateway's base URL.
async fn exercise(f: &Fleet) -> String {
    f.ready("time").await;
    f.ready("near").await;
    f.until("crashy restarted", MIN, || async {
        let s = f.status()?;
        (s["servers"]["crashy"]["restartCount"].as_u64()? >= 1).then_some(())
    })
    .await;
    let failures = [
        ("far", "cannot reach"),
        ("farsse", "cannot reach"),
        ("echo", "you sent"),
    ];
    for (server, says) in failures {
        let what = format!("{server}'s failure in the status");
        f.until(&what, MIN, || async {
            let s = f.status()?;
            let message = s["servers"][server]["ready"]["message"].as_str()?;
            message.contains(says).then_some(())
        })
        .await;
    }
    let base = f.gateway_url().await;
    let url = format!("{base}/mcp");
    let mut client = McpClient::connect(&url, McpTransport::Http, Some(GATEWAY_TOKEN)).await;
    let (is_error, text) = client
        .call("get_current_time", json!({"timezone": "UTC"}))
        .await;
    assert!(!is_error, "{text}");
    let (is_error, text) = client.call("test_simple_text", json!({})).await;
    assert!(!is_error, "{text}");
    client.close().await;
    base
}

/// Everything written, by where it was read; stops the controller.
async fn everything_written(
    f: &mut Fleet,
    base: &str,
    engine_from: u64,
) -> Vec<(&'static str, String)> {
    let bearer = format!("Bearer {GATEWAY_TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let mut written = vec![
        ("/status", get(&format!("{base}/status"), &auth).await),
        ("/metrics", get(&format!("{base}/metrics"), &auth).await),
        ("the status page", status_page(base).await),
        (
            "time's container",
            inspected(f, "time", "TIME_API_KEY", ENV_SECRET).await,
        ),
        (
            "crashy's container",
            inspected(f, "crashy", "CRASHY_KEY", CRASH_SECRET).await,
        ),
    ];
    let plan = f.plan();
    written.push(("plan", format!("{}{}", stdout(&plan), stderr(&plan))));
    let dir = f.dir.path().display().to_string();
    let status = f.cli(&["status", "--config-dir", &dir]);
    written.push(("status", format!("{}{}", stdout(&status), stderr(&status))));
    f.stop("-TERM");
    let file = std::fs::read_to_string(f.status_path()).expect("status file");
    written.push(("status file", file));
    let log = f.logs();
    assert!(
        log.contains("relay{") && log.contains("reconcile{"),
        "no spans in the log: it was not written at trace"
    );
    written.push(("log", log));
    let engine = std::fs::read(ENGINE_LOG).expect("engine log");
    let from = usize::try_from(engine_from).unwrap_or(0).min(engine.len());
    written.push((
        "engine log",
        String::from_utf8_lossy(&engine[from..]).into(),
    ));
    written
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_is_ever_written_anywhere() {
    let engine_from = std::fs::metadata(ENGINE_LOG).map_or(0, |m| m.len());
    let fixture = HttpFixture::start().await;
    let target = fixture
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("fixture address")
        .to_string();
    let (near_port, seen) = recording_proxy(target).await;
    let mut f = start_fleet(near_port).await;
    let base = exercise(&f).await;
    let sent = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    for secret in [HEADER_SECRET, LITERAL_HEADER, QUERY_SECRET] {
        assert!(
            sent.contains(secret),
            "the remote never got {secret}: the test would prove nothing"
        );
    }
    for (what, text) in everything_written(&mut f, &base, engine_from).await {
        for secret in SECRETS {
            if let Some(at) = text.find(secret) {
                // Up to 300 characters before it, on its line.
                let line = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let start = (line..=at)
                    .find(|&i| i + 300 >= at && text.is_char_boundary(i))
                    .unwrap_or(at);
                panic!(
                    "{secret} is in the {what}: …{}",
                    &text[start..at + secret.len()]
                );
            }
        }
    }
}
