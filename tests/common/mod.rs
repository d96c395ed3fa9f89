//! Shared pieces of the integration tests: a fleet with its own config
//! directory and name, the real `mcp-fleet` binary, and a real Docker engine
//! (from DOCKER_HOST; `scripts/test` starts one and builds the test images).
#![allow(dead_code)]
pub mod engine_proxy;
pub mod fixture;
pub mod mcp_client;
pub mod pocketbase;
pub mod raw_mcp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use serde_json::Value;

pub const FETCH: &str = "mcp-fleet-test/fetch:latest";
pub const TIME: &str = "mcp-fleet-test/time:latest";
pub const TESTSERVER: &str = "mcp-fleet-test/testserver:latest";

/// The binary under test; `MCP_FLEET_TEST_BIN` points the tests at another
/// build (e.g. an older one, to see a new test fail before its fix).
pub fn bin() -> String {
    std::env::var("MCP_FLEET_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mcp-fleet").into())
}

pub async fn docker() -> Docker {
    Docker::connect_with_defaults()
        .expect("DOCKER_HOST")
        .negotiate_version()
        .await
        .expect("a Docker engine must answer at DOCKER_HOST: run the tests with scripts/test")
}

/// One test's fleet: a unique name, a config directory, and a controller.
pub struct Fleet {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub docker: Docker,
    controller: Option<Child>,
    runs: usize,
}

impl Fleet {
    pub async fn new(test: &str) -> Self {
        let name = format!("t-{test}-{}", std::process::id());
        let fleet = Fleet {
            name,
            dir: tempfile::tempdir().expect("tempdir"),
            docker: docker().await,
            controller: None,
            runs: 0,
        };
        fleet.remove_all().await;
        fleet
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn status_path(&self) -> PathBuf {
        self.path("mcp-status.json")
    }

    /// Writes a file the way an editor or PocketBase would: in place.
    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.path(file), text).expect("write config file");
    }

    /// Writes a file atomically: temp file, then rename.
    pub fn write_atomic(&self, file: &str, text: &str) {
        let tmp = self.path(&format!(".{file}.tmp"));
        std::fs::write(&tmp, text).expect("write temp");
        std::fs::rename(&tmp, self.path(file)).expect("rename");
    }

    pub fn catalog(&self, text: &str) {
        self.write_atomic("docker-mcp.yaml", text);
    }

    /// Starts `mcp-fleet run` on this fleet with fast test timings.
    pub fn start(&mut self, extra: &[&str]) {
        self.start_env(extra, &[]);
    }

    /// Like [`Fleet::start`], with extra environment (e.g. another DOCKER_HOST).
    pub fn start_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        assert!(self.controller.is_none(), "controller already running");
        self.runs += 1;
        let log = std::fs::File::create(self.path(&format!("controller-{}.log", self.runs)))
            .expect("log file");
        let child = Command::new(bin())
            .args(["run", "--config-dir"])
            .arg(self.dir.path())
            .args([
                "--fleet",
                &self.name,
                "--resync",
                "2",
                "--stop-timeout",
                "2",
            ])
            .args(["--backoff-min", "0.5", "--backoff-max", "4"])
            // A free port per controller: tests run in parallel.
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("MCP_FLEET_LOG", "info,mcp_fleet=debug")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            // stdout too: every byte the daemon writes is in its log.
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn mcp-fleet");
        self.controller = Some(child);
    }

    /// Stops the controller with SIGTERM (or SIGKILL) and waits for it.
    pub fn stop(&mut self, signal: &str) {
        if let Some(mut child) = self.controller.take() {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            let status = child.wait().expect("wait controller");
            if signal == "-TERM" {
                assert!(
                    status.success(),
                    "controller exited with {status} on SIGTERM"
                );
            }
        }
    }

    /// The gateway's base URL (`http://127.0.0.1:PORT`), from the log of the
    /// running controller.
    pub async fn gateway_url(&self) -> String {
        let log = self.path(&format!("controller-{}.log", self.runs));
        self.until("gateway listening", Duration::from_secs(30), || async {
            let text = std::fs::read_to_string(&log).ok()?;
            let rest = text.split("gateway listening on http://").nth(1)?;
            let addr = rest.split('/').next()?;
            Some(format!("http://{addr}"))
        })
        .await
    }

    pub fn controller_pid(&self) -> Option<u32> {
        self.controller.as_ref().map(Child::id)
    }

    /// The exit status of the controller if it has exited.
    pub fn controller_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.controller.as_mut()?.try_wait().ok()?
    }

    /// The log of the current controller run only.
    pub fn current_log(&self) -> String {
        std::fs::read_to_string(self.path(&format!("controller-{}.log", self.runs)))
            .unwrap_or_default()
    }

    /// How many lines of all runs' logs contain every one of `parts`.
    pub fn log_count(&self, parts: &[&str]) -> usize {
        self.logs()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    pub fn logs(&self) -> String {
        (1..=self.runs)
            .map(|i| {
                std::fs::read_to_string(self.path(&format!("controller-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- next run ---\n")
    }

    /// Runs a one-shot subcommand (`plan`, `validate`) against this fleet.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .output()
            .expect("run mcp-fleet")
    }

    pub fn plan(&self) -> Output {
        Command::new(bin())
            .args(["plan", "--config-dir"])
            .arg(self.dir.path())
            .args(["--fleet", &self.name])
            .output()
            .expect("run mcp-fleet plan")
    }

    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.status_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn phase(&self, server: &str) -> Option<String> {
        self.status()?["servers"][server]["phase"]
            .as_str()
            .map(str::to_string)
    }

    /// This fleet's containers, by server label.
    pub async fn containers(&self) -> Vec<Ctr> {
        list_by_label(&self.docker, &format!("io.mcp-fleet.fleet={}", self.name)).await
    }

    pub async fn container(&self, server: &str) -> Option<Ctr> {
        let mut all: Vec<Ctr> = self
            .containers()
            .await
            .into_iter()
            .filter(|c| c.server == server)
            .collect();
        assert!(
            all.len() <= 1,
            "more than one container for {server}: {all:?}"
        );
        all.pop()
    }

    pub async fn inspect(&self, id: &str) -> ContainerInspectResponse {
        self.docker
            .inspect_container(id, None)
            .await
            .expect("inspect container")
    }

    /// Waits (bounded) until `f` yields a value; panics with the controller
    /// log when it does not.
    pub async fn until<T, F, Fut>(&self, what: &str, timeout: Duration, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\nstatus: {}\ncontroller log:\n{}",
                    self.status().map(|s| s.to_string()).unwrap_or_default(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `server`'s container runs with the status saying so.
    pub async fn running(&self, server: &str) -> Ctr {
        self.until(
            &format!("{server} running"),
            Duration::from_secs(60),
            || async {
                let c = self.container(server).await?;
                (c.state == "running" && self.phase(server).as_deref() == Some("Running"))
                    .then_some(c)
            },
        )
        .await
    }

    /// Waits until `server` has been restarted at least once and runs again,
    /// with the status saying so.
    pub async fn restarted(&self, server: &str) {
        self.until(
            &format!("{server} restarted"),
            Duration::from_secs(60),
            || async {
                let s = self.status()?;
                let restarts = s["servers"][server]["restartCount"].as_u64()?;
                let now = self.container(server).await?;
                let phase = &s["servers"][server]["phase"];
                (restarts >= 1 && now.state == "running" && phase == "Running").then_some(())
            },
        )
        .await
    }

    /// Waits until the gateway has an MCP session to `server`.
    pub async fn ready(&self, server: &str) {
        self.until(
            &format!("{server} ready in the gateway"),
            Duration::from_secs(60),
            || async {
                let s = self.status()?;
                (s["servers"][server]["ready"]["status"] == Value::Bool(true)).then_some(())
            },
        )
        .await
    }

    pub async fn gone(&self, server: &str) {
        self.until(
            &format!("{server} removed"),
            Duration::from_secs(60),
            || async {
                let c = self.container(server).await;
                (c.is_none() && self.status()?["servers"].get(server).is_none()).then_some(())
            },
        )
        .await
    }

    async fn remove_all(&self) {
        for c in self.containers().await {
            remove(&self.docker, &c.id).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Clean up this fleet's containers (the engine may outlive the test).
        let _ = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.mcp-fleet.fleet={}", self.name),
            ])
            .output()
            .map(|out| {
                let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                if !ids.is_empty() {
                    let _ = Command::new("docker")
                        .args(["rm", "-f"])
                        .args(&ids)
                        .output();
                }
            });
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctr {
    pub id: String,
    pub name: String,
    pub server: String,
    pub hash: String,
    pub state: String,
    pub labels: HashMap<String, String>,
}

pub async fn list_by_label(docker: &Docker, label: &str) -> Vec<Ctr> {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(opts))
        .await
        .expect("list containers")
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            Ctr {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                server: labels
                    .get("io.mcp-fleet.server")
                    .cloned()
                    .unwrap_or_default(),
                hash: labels
                    .get("io.mcp-fleet.spec-hash")
                    .cloned()
                    .unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                labels,
            }
        })
        .collect()
}

pub async fn remove(docker: &Docker, id: &str) {
    let _ = docker
        .remove_container(
            id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
}

/// Runs a `docker` CLI command against the test engine and returns stdout.
pub fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker cli");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Starts a container the test owns (`docker run -d -i --network none` plus
/// `args`, ending with the image) and returns its id.
pub fn run_detached(args: &[&str]) -> String {
    docker_cli(&[&["run", "-d", "-i", "--network", "none"], args].concat())
}

/// A catalog entry for one of the test images, with no network.
pub fn entry(name: &str, image: &str, extra: &str) -> String {
    let mut s =
        format!("  {name}:\n    type: server\n    image: {image}\n    disableNetwork: true\n");
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str("    ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// This checkout's test server script: mounted over the image's in
/// [`testserver_entry`] (the image's tag is shared by every checkout that
/// builds it), or run on the host.
pub const TESTSERVER_PY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/docker/test-images/testserver/server.py"
);

/// A catalog entry for the test server, running this checkout's script.
pub fn testserver_entry(name: &str) -> String {
    let volume = format!("volumes:\n  - {TESTSERVER_PY}:/opt/testserver/server.py:ro");
    entry(name, TESTSERVER, &volume)
}

pub fn catalog_of(entries: &[String]) -> String {
    format!("name: docker-mcp\nregistry:\n{}", entries.concat())
}

/// The back-off delays a controller logged for `server`, in order. One wait
/// can be logged twice with a new message (the gateway saw the server stop
/// answering, then the engine saw it exit), so repeats in a row count once.
/// Every status change is logged, so the log holds every delay even when the
/// machine is too busy for a poller to see each one.
pub fn backoff_delays(log: &str, server: &str) -> Vec<f64> {
    let mut delays: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("CrashLoopBackOff") && l.contains(&format!("server=\"{server}\"")))
        .filter_map(|l| l.split("back-off ").nth(1)?.split('s').next()?.parse().ok())
        .collect();
    delays.dedup();
    delays
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// One raw HTTP/1.0 request (so never a chunked answer); returns (status, body).
pub fn raw_http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}
