//! The conformance fixture server (`docker/test-images/conformance/server.py`)
//! over streamable HTTP on the host, and the Node packages (the official
//! conformance suite and TypeScript SDK) that `scripts/node-env.sh` installs.
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::mcp_client::python;
use super::{Fleet, catalog_of, entry};

pub const CONFORMANCE: &str = "mcp-fleet-test/conformance:latest";

const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/docker/test-images/conformance/server.py"
);

/// `node_modules` holding the conformance suite and the TypeScript SDK;
/// panics with instructions if unset.
pub fn node_modules() -> PathBuf {
    match std::env::var("MCP_FLEET_NODE_MODULES") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "MCP_FLEET_NODE_MODULES is not set: these tests drive the official MCP conformance \
             suite and TypeScript SDK. Run them with scripts/test, or first: \
             eval \"$(scripts/node-env.sh)\""
        ),
    }
}

/// A test server on 127.0.0.1 (killed on drop): by default the conformance
/// fixture over streamable HTTP.
pub struct HttpFixture {
    /// What the server printed: `http://127.0.0.1:PORT/mcp` for the fixture.
    pub url: String,
    _child: Child,
}

impl HttpFixture {
    pub async fn start() -> Self {
        Self::spawn(SERVER, &["--http", "127.0.0.1:0"]).await
    }

    /// Runs a Python test server that prints `listening on URL` once bound.
    pub async fn spawn(script: &str, args: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {script}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{script} did not report its address within 30 s"))
            .expect("read the fixture's stdout");
        let url = first
            .as_deref()
            .and_then(|l| l.strip_prefix("listening on "))
            .unwrap_or_else(|| panic!("unexpected first line from the fixture: {first:?}"))
            .to_string();
        HttpFixture { url, _child: child }
    }
}

/// The name the fixture has in the fleets of [`fixture_gateway`].
pub const FIXTURE: &str = "conformance";

/// The fixture as a container entry (stdio).
pub fn container_entry() -> String {
    entry(FIXTURE, CONFORMANCE, "")
}

/// The fixture at `url` as a remote entry (streamable HTTP).
pub fn remote_entry(url: &str) -> String {
    format!(
        "  {FIXTURE}:\n    type: remote\n    remote:\n      url: {url}\n      transport_type: streamable-http\n"
    )
}

/// A fleet serving the one `entry` without a token (the conformance suite's
/// client sends none), once the gateway has a session to it.
pub async fn fixture_gateway(test: &str, entry: String) -> Fleet {
    let mut f = Fleet::new(test).await;
    f.catalog(&catalog_of(&[entry]));
    f.start(&["--no-auth"]);
    f.ready(FIXTURE).await;
    f
}
