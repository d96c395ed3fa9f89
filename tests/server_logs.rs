//! Server logs against the real engine and the real binary: each server's
//! stderr is captured (from before its container starts, and again after a
//! controller restart), served by `mcp-fleet logs` and
//! `GET /servers/{name}/logs`, quoted in crash messages; and the engine
//! keeps no copy of stdout, the MCP channel (`docker logs` holds no message).
mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::mcp_client::{McpClient, McpTransport};
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "logs-token-0123456789abcdef";
const MIN: Duration = Duration::from_secs(60);
const SECRET: &str = "flash-s3cret-0123456";

/// Starts a fleet with the gateway token; returns the gateway's base URL.
async fn start(f: &mut Fleet, servers: &[String]) -> String {
    f.catalog(&catalog_of(servers));
    f.write("gateway-token", TOKEN);
    let token_file = f.path("gateway-token").display().to_string();
    f.start(&["--auth-token-file", &token_file]);
    f.gateway_url().await
}

/// `mcp-fleet logs ARGS` against the fleet's gateway, with the token.
fn logs_cmd(base: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("logs")
        .args(args)
        .args(["--url", base])
        .env("MCP_GATEWAY_AUTH_TOKEN", TOKEN);
    c
}

/// The test base image (Debian with a shell): a server that is nothing but
/// `sh -c`, so it writes and exits within a millisecond of its start.
fn base_image() -> String {
    let images = docker_cli(&[
        "images",
        "mcp-fleet-test/base",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    images
        .lines()
        .next()
        .expect("mcp-fleet-test/base: run docker/test-images/build.sh")
        .to_string()
}

/// Waits until `server` is in CrashLoopBackOff with a message that quotes
/// stderr and ends with `ending` (one crash may be reported before its last
/// line is read; a later one then says it).
async fn crash_quote(f: &Fleet, server: &str, ending: &str) -> String {
    let what = format!("{server}'s crash message quoting stderr, ending with {ending}");
    f.until(&what, MIN, || async {
        let s = &f.status()?["servers"][server];
        let m = s["message"].as_str()?.to_string();
        let quoted = m.contains("; last stderr: ") && m.ends_with(ending);
        (s["phase"] == "CrashLoopBackOff" && quoted).then_some(m)
    })
    .await
}

/// The engine keeps no log of the container (log driver `none`, so `docker
/// logs` has nothing to read) and `docker logs` shows no MCP message.
async fn engine_keeps_no_mcp(f: &Fleet, id: &str, marker: &str) {
    let ctr = f.inspect(id).await;
    let driver = ctr
        .host_config
        .and_then(|h| h.log_config)
        .and_then(|l| l.typ);
    assert_eq!(driver.as_deref(), Some("none"), "log driver of {id}");
    let out = Command::new("docker")
        .args(["logs", id])
        .output()
        .expect("docker logs");
    let all = format!("{}{}", stdout(&out), stderr(&out));
    // The engine has nothing to show at all, not merely nothing of ours.
    assert!(
        !out.status.success() && all.contains("does not support reading"),
        "docker logs {id}: {all}"
    );
    for needle in ["jsonrpc", "initialize", marker] {
        assert!(!all.contains(needle), "docker logs holds {needle:?}: {all}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_servers_stderr_is_read_quoted_and_followed() {
    let mut f = Fleet::new("logs-crash").await;
    // It prints its own secret: that must show nowhere.
    f.write_atomic("mcp.env", &format!("FLASH_KEY={SECRET}\n"));
    let flash = entry(
        "flash",
        &base_image(),
        "secrets:\n  - {name: flash.key, env: FLASH_KEY}\n\
         command: ['sh', '-c', 'echo \"flash: key $(printenv FLASH_KEY) refused\" >&2; echo \"flash: giving up\" >&2; exit 7']",
    );
    let base = start(&mut f, &[flash]).await;

    // The status message quotes the last lines (a container that dies within
    // a millisecond of its start is read from its first byte on). The crash
    // is seen by the gateway (its session closes) or by the controller (the
    // container exited), whichever comes first; both messages quote.
    let message = crash_quote(
        &f,
        "flash",
        r#"last stderr: "flash: key <redacted> refused", "flash: giving up""#,
    )
    .await;
    eprintln!("status message: {message}");

    // `mcp-fleet logs` prints every line of every run, oldest first.
    let out = logs_cmd(&base, &["flash"])
        .output()
        .expect("mcp-fleet logs");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2 && lines.len().is_multiple_of(2), "{text}");
    for pair in lines.chunks(2) {
        assert_eq!(pair, ["flash: key <redacted> refused", "flash: giving up"]);
    }
    let tail = logs_cmd(&base, &["flash", "--tail", "1", "-t"])
        .output()
        .expect("mcp-fleet logs --tail");
    let tail = stdout(&tail);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.trim_end().ends_with(" flash: giving up"), "{tail}");

    // --follow --tail 0 prints only what comes next: the next run's lines.
    let mut follow = logs_cmd(&base, &["flash", "--follow", "--tail", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mcp-fleet logs --follow");
    let mut reader = BufReader::new(follow.stdout.take().expect("stdout"));
    let (next, mut reader) = tokio::time::timeout(
        MIN,
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read");
            (line, reader)
        }),
    )
    .await
    .expect("no line followed within 60 s")
    .expect("reader");
    assert_eq!(next.trim_end(), "flash: key <redacted> refused");

    // Removing the server ends the follower (after the lines still to come).
    f.catalog("name: docker-mcp\nregistry: {}\n");
    f.gone("flash").await;
    let ended = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        reader.read_to_string(&mut rest).expect("read");
        (rest, follow.wait())
    });
    let (rest, status) = tokio::time::timeout(MIN, ended)
        .await
        .expect("the follower did not end when its server left")
        .expect("join");
    assert!(status.expect("wait").success(), "{rest}");
    assert!(rest.lines().all(|l| l.starts_with("flash: ")), "{rest}");
    let status = std::fs::read_to_string(f.status_path()).unwrap_or_default();
    for (what, text) in [("status", status), ("log", f.logs()), ("logs", text)] {
        assert!(!text.contains(SECRET), "the secret is in the {what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_servers_log_survives_a_controller_restart_and_the_engine_keeps_no_mcp() {
    let mut f = Fleet::new("logs-healthy").await;
    let servers = [entry("echo", TESTSERVER, "")];
    let base = start(&mut f, &servers).await;

    f.ready("echo").await;
    let marker = "logs-marker-4f1c";
    let mut c = McpClient::connect(&format!("{base}/mcp"), McpTransport::Http, Some(TOKEN)).await;
    let (is_error, text) = c.call("echo", json!({"text": marker})).await;
    assert!(!is_error && text.contains(marker), "{text}");
    c.close().await;

    // The gateway serves the stderr it captured; the engine kept no stdout.
    let echo = f.running("echo").await;
    let url = format!("{base}/servers/echo/logs");
    let http = reqwest::Client::new();
    let body: Value = f
        .until("echo's startup lines", MIN, || async {
            let r = http.get(&url).bearer_auth(TOKEN).send().await.ok()?;
            let body: Value = r.json().await.ok()?;
            let text = body["lines"].to_string();
            text.contains("ready on stdio").then_some(body)
        })
        .await;
    let first = &body["lines"][0];
    assert_eq!(first["container"], json!(&echo.id[..12]), "{body}");
    assert!(
        first["text"].as_str().unwrap().contains("starting (mcp"),
        "{body}"
    );
    assert_eq!(body["dropped"], json!(0));
    assert!(
        !body.to_string().contains(marker),
        "stdout never reaches the log"
    );
    engine_keeps_no_mcp(&f, &echo.id, marker).await;

    // Errors: no token, an unknown server, a bad query; each with a JSON body.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    for (path, code) in [
        ("/servers/nope/logs", 404),
        ("/servers/echo/logs?tail=x", 400),
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), code, "{path}");
        let body: Value = r.json().await.expect("a JSON body");
        assert!(body["message"].is_string(), "{body}");
    }
    let out = logs_cmd(&base, &["nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no server named \"nope\""),
        "{}",
        stderr(&out)
    );

    // A controller killed and started again captures the running container
    // (adoption): its dying words reach the log and the crash message.
    let late = entry(
        "late",
        TESTSERVER,
        "command: ['--exit-after', '20', '--exit-code', '5']",
    );
    f.catalog(&catalog_of(&[servers[0].clone(), late]));
    let late = f.running("late").await;
    // (Checked while it runs: once it crashes it may be replaced.)
    engine_keeps_no_mcp(&f, &late.id, marker).await;
    f.until("late's startup lines", MIN, || async {
        let out = logs_cmd(&base, &["late"]).output().ok()?;
        stdout(&out).contains("ready on stdio").then_some(())
    })
    .await;
    f.stop("-KILL");
    f.start(&[
        "--auth-token-file",
        &f.path("gateway-token").display().to_string(),
    ]);
    let base = f.gateway_url().await;

    crash_quote(&f, "late", r#"--exit-after 20.0: exiting with code 5""#).await;
    // The new controller attached while the container ran: its log starts
    // with what the container wrote after that.
    let out = logs_cmd(&base, &["late"]).output().unwrap();
    let first = stdout(&out).lines().next().unwrap_or_default().to_string();
    assert!(
        first.ends_with("--exit-after 20.0: exiting with code 5"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}
