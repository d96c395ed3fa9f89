//! The status page in a real headless browser (Debian's Chromium driven by
//! playwright-core): opened before a server is approved, it shows the server
//! Running and ready without being reloaded. Needs `scripts/node-env.sh` and
//! `scripts/debian-env.sh` (run by `scripts/test`).
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn page_shows_an_approval_live() {
    let modules = std::env::var("MCP_FLEET_NODE_MODULES")
        .expect("MCP_FLEET_NODE_MODULES: run the tests with scripts/test (scripts/node-env.sh)");
    let mut f = Fleet::new("page").await;
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    f.write_atomic("registry.yaml", "registry: {}\n");
    let token = "page-token-0123456789abcdef";
    f.write("gateway-token", token);
    let token_file = f.path("gateway-token").display().to_string();
    f.start(&["--auth-token-file", &token_file]);
    let base = f.gateway_url().await;

    let shot = f.path("page.png");
    let mut browser = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/status_page.mjs"
        ))
        .arg(format!("{base}/?token={token}"))
        .arg("time")
        .arg(&shot)
        .env("MCP_FLEET_NODE_MODULES", modules)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let first = tokio::task::spawn_blocking(move || {
        let first = lines.next();
        (first, lines)
    });
    let (first, mut lines) = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("the page did not go live within 60 s")
        .expect("reader");
    assert_eq!(first.and_then(Result::ok).as_deref(), Some("loaded"));

    // Approve while the page is open.
    f.write_atomic("registry.yaml", "registry:\n  time:\n    ref: \"\"\n");
    let seen = tokio::time::timeout(
        Duration::from_secs(150),
        tokio::task::spawn_blocking(move || lines.next()),
    )
    .await
    .expect("the page did not show time Running and ready within 150 s")
    .expect("reader")
    .expect("a line from the browser")
    .expect("utf-8");
    let status = browser.wait().expect("node");
    assert!(status.success(), "browser script failed: {status}");
    let seen: Value = serde_json::from_str(&seen).expect("json from the browser");
    assert_eq!(seen["sameDocument"], true, "the page was reloaded: {seen}");
    assert_eq!(seen["navigations"], 1, "{seen}");
    assert_eq!(
        seen["path"], "/",
        "the token stays in the address bar: {seen}"
    );
    assert_eq!(seen["row"][1], "Running", "{seen}");
    assert_eq!(seen["row"][2], "ready", "{seen}");
    // mcp-server-time lists get_current_time and convert_time.
    assert_eq!(seen["row"][4], "2", "tool count: {seen}");
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    if let Ok(dir) = std::env::var("MCP_FLEET_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&shot, format!("{dir}/status-page.png"));
    }
}
