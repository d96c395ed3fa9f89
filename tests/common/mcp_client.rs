//! A real MCP client for the tests: the official Python SDK, driven through
//! `tests/clients/mcp_session.py` (one JSON command per line on its stdin, one
//! JSON answer per line on its stdout). The interpreter comes from
//! `MCP_FLEET_PYTHON`, which `scripts/test` sets up via `scripts/python-env.sh`.
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long one command may take by default (a session's setup included).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mcp_session.py");

/// Which MCP transport the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpTransport {
    /// Streamable HTTP (`/mcp`) with the `initialize` handshake.
    Http,
    /// Streamable HTTP with the 2026-07-28 `server/discover` lifecycle.
    HttpDiscover,
    /// The legacy HTTP+SSE transport (`/sse`).
    Sse,
}

/// The Python interpreter of the test venv; panics with instructions if unset.
pub fn python() -> String {
    match std::env::var("MCP_FLEET_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "MCP_FLEET_PYTHON is not set: these tests drive the official Python MCP SDK. \
             Run them with scripts/test, or first: eval \"$(scripts/python-env.sh)\""
        ),
    }
}

/// One open MCP session in a Python client process (killed on drop).
pub struct McpClient {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    /// What the client reported when ready (`protocol_version`...).
    pub ready: Value,
}

impl McpClient {
    /// Opens a session; panics (with the client's stderr) if it cannot.
    pub async fn connect(url: &str, transport: McpTransport, token: Option<&str>) -> Self {
        match Self::try_connect(url, transport, token).await {
            Ok(client) => client,
            Err(e) => panic!("MCP client could not open a session at {url}: {e}"),
        }
    }

    /// Opens a session, or returns why not (the client's answer and stderr).
    pub async fn try_connect(
        url: &str,
        transport: McpTransport,
        token: Option<&str>,
    ) -> Result<Self, String> {
        Self::try_connect_with(url, transport, token, &[]).await
    }

    /// Opens a session with more arguments for the client (`--sampling TEXT`,
    /// `--elicit TEXT`, `--root URI`: see the script); panics if it cannot.
    pub async fn connect_with(url: &str, transport: McpTransport, args: &[&str]) -> Self {
        match Self::try_connect_with(url, transport, None, args).await {
            Ok(client) => client,
            Err(e) => panic!("MCP client could not open a session at {url}: {e}"),
        }
    }

    async fn try_connect_with(
        url: &str,
        transport: McpTransport,
        token: Option<&str>,
        args: &[&str],
    ) -> Result<Self, String> {
        let mut cmd = Command::new(python());
        cmd.arg(SCRIPT).arg(url).args(args).arg("--transport");
        match transport {
            McpTransport::Http => cmd.arg("http"),
            McpTransport::HttpDiscover => cmd.args(["http", "--mode", "discover"]),
            McpTransport::Sse => cmd.arg("sse"),
        };
        if let Some(token) = token {
            cmd.args(["--token", token]);
        }
        let mut child = cmd
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {} {SCRIPT}: {e}", python()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        let stderr_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut client = McpClient {
            child,
            stdin,
            stdout,
            stderr,
            stderr_task: Some(stderr_task),
            ready: Value::Null,
        };
        let ready = match client.read_line(DEFAULT_TIMEOUT).await {
            Ok(ready) if ready["ready"] == json!(true) => ready,
            Ok(answer) => {
                let stderr = client.exited_stderr().await;
                return Err(format!(
                    "client reported {answer}\nclient stderr:\n{stderr}"
                ));
            }
            Err(e) => {
                let stderr = client.exited_stderr().await;
                return Err(format!("{e}\nclient stderr:\n{stderr}"));
            }
        };
        client.ready = ready;
        Ok(client)
    }

    /// The client's stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The whole stderr of a client that is exiting (killed after 5s).
    async fn exited_stderr(&mut self) -> String {
        let bound = Duration::from_secs(5);
        if tokio::time::timeout(bound, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(bound, task).await;
        }
        self.stderr()
    }

    /// Sends one command and returns its answer ([`DEFAULT_TIMEOUT`]).
    pub async fn send(&mut self, command: Value) -> Value {
        self.send_timeout(command, DEFAULT_TIMEOUT).await
    }

    /// Sends one command and returns its answer; panics after `timeout`.
    pub async fn send_timeout(&mut self, command: Value, timeout: Duration) -> Value {
        let line = format!("{command}\n");
        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
            panic!(
                "MCP client is gone ({e}) before {command}\nclient stderr:\n{}",
                self.stderr()
            );
        }
        let _ = self.stdin.flush().await;
        match self.read_line(timeout).await {
            Ok(answer) => answer,
            Err(e) => panic!("{command}: {e}\nclient stderr:\n{}", self.stderr()),
        }
    }

    /// Sends a command without waiting for its answer (e.g. a call that will
    /// not end before the client is killed).
    pub async fn begin(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("MCP client stdin");
        self.stdin.flush().await.expect("MCP client stdin");
    }

    /// Sends a command that must succeed and returns its answer.
    pub async fn ok(&mut self, command: Value) -> Value {
        let answer = self.send(command.clone()).await;
        assert_eq!(
            answer["ok"],
            json!(true),
            "{command} answered {answer}\nclient stderr:\n{}",
            self.stderr()
        );
        answer
    }

    /// The names of the server's tools.
    pub async fn tool_names(&mut self) -> Vec<String> {
        let answer = self.ok(json!({"cmd": "list_tools"})).await;
        serde_json::from_value(answer["tools"].clone()).expect("tool names")
    }

    /// Calls a tool: `(is_error, text)`.
    pub async fn call(&mut self, name: &str, arguments: Value) -> (bool, String) {
        let answer = self
            .ok(json!({"cmd": "call", "name": name, "arguments": arguments}))
            .await;
        (
            answer["is_error"] == json!(true),
            answer["text"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Waits up to `timeout` for a `notifications/<kind>/list_changed` that
    /// arrived since the last wait; true if one did.
    pub async fn wait_list_changed(&mut self, kind: &str, timeout: Duration) -> bool {
        let answer = self
            .send_timeout(
                json!({"cmd": "wait_list_changed", "kind": kind, "timeout": timeout.as_secs_f64()}),
                timeout + DEFAULT_TIMEOUT,
            )
            .await;
        answer["ok"] == json!(true)
    }

    /// How many `notifications/<kind>/list_changed` arrived since the last
    /// wait or take (consumes them).
    pub async fn take_list_changed(&mut self, kind: &str) -> u64 {
        let answer = self
            .send(json!({"cmd": "take_list_changed", "kind": kind}))
            .await;
        answer["count"].as_u64().expect("a count")
    }

    /// Closes the session and waits for the client to exit.
    pub async fn close(mut self) {
        let _ = self.send(json!({"cmd": "close"})).await;
        drop(self.stdin);
        match tokio::time::timeout(DEFAULT_TIMEOUT, self.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = self.child.kill().await;
            }
        }
    }

    async fn read_line(&mut self, timeout: Duration) -> Result<Value, String> {
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Err(_) => Err(format!("no answer from the MCP client within {timeout:?}")),
            Ok(Err(e)) => Err(format!("cannot read the MCP client's stdout: {e}")),
            Ok(Ok(None)) => Err("the MCP client exited".into()),
            Ok(Ok(Some(line))) => {
                serde_json::from_str(&line).map_err(|e| format!("bad line {line:?}: {e}"))
            }
        }
    }
}
