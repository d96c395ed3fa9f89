//! The container engine behind a small trait: Docker or Kubernetes.
//! The controller only sees [`Container`]s (one workload per server: a
//! container, or a Pod; what runs, with our labels) and a handful of verbs;
//! everything engine-specific stays in the backend module. What a backend
//! does on its own (kubelet restarts crashed containers with its own back-off
//! and pulls images itself) it says in [`Capabilities`], and the controller
//! then leaves that to it and reports what the backend observes.
pub mod choice;
pub mod docker;
pub mod kubernetes;
pub mod metered;

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::Result;
use crate::catalog::ContainerServer;

pub use docker::DockerRuntime;

pub const LABEL_FLEET: &str = "io.mcp-fleet.fleet";
pub const LABEL_SERVER: &str = "io.mcp-fleet.server";
pub const LABEL_HASH: &str = "io.mcp-fleet.spec-hash";

/// The name a server's container gets: `mcp-fleet-<fleet>-<server>`.
pub fn container_name(fleet: &str, server: &str) -> String {
    format!("mcp-fleet-{fleet}-{server}")
}

/// Exactly the labels every container of ours carries (ours plus Docker's).
pub fn labels(fleet: &str, server: &str, hash: &str) -> HashMap<String, String> {
    [
        (LABEL_FLEET, fleet),
        (LABEL_SERVER, server),
        (LABEL_HASH, hash),
        ("docker-mcp", "true"),
        ("docker-mcp-name", server),
        ("docker-mcp-transport", "stdio"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A container of this fleet as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub server: String,
    pub hash: String,
    pub state: State,
    /// Seconds since the epoch, for choosing among duplicates.
    pub created: i64,
    /// Restarts the backend made on its own (kubelet's restart count); 0
    /// where the controller does the restarting (Docker).
    pub restarts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Created but never started (e.g. the controller died in between).
    Created,
    Running,
    /// Not running yet, or between two runs the backend makes itself, with
    /// its reason (Kubernetes: `ImagePullBackOff`, `CrashLoopBackOff`,
    /// `ContainerCreating`, ...) and message.
    Waiting {
        reason: String,
        message: String,
    },
    /// Stopped; the exit code when the engine knows it.
    Exited(Option<i64>),
    /// Ended for good: the backend will not run it again (a Pod that failed
    /// or was evicted). Only a new workload brings the server back.
    Failed(String),
    /// Anything else (paused, restarting, dead, removing).
    Other(String),
}

impl State {
    pub fn is_running(&self) -> bool {
        matches!(self, State::Running)
    }
}

/// What a backend does itself, so the controller must not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// It restarts a workload that exits, with its own back-off (kubelet):
    /// the controller never starts one and reports the backend's restarts.
    pub restarts: bool,
    /// It pulls images as it starts workloads (kubelet, by `imagePullPolicy`):
    /// the controller does not call [`Runtime::ensure_image`].
    pub pulls: bool,
}

/// When to pull a server's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull only when the engine does not have the image.
    Missing,
    /// Pull before every create.
    Always,
    /// Never pull; a missing image is an error.
    Never,
}

/// A container's stdio: its stdout (only) to read, its stdin to write.
pub struct Stdio {
    pub stdout: Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    pub stdin: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// A container's stderr, as it is written (the server's log).
pub type Stderr = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// Every engine call the controller makes. Reads are `list`; all the others
/// write, which is why a no-op reconcile calls nothing but `list`.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// What this backend does itself (Docker: nothing).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    /// Workloads carrying this fleet's label (and this server's, if given).
    async fn list(&self, fleet: &str, server: Option<&str>) -> Result<Vec<Container>>;
    /// Makes sure the image is present under `policy`.
    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<()>;
    /// Makes a new workload matching `desired` for the server; returns its
    /// id. Docker creates without starting; a Pod starts as it is created.
    async fn create(&self, fleet: &str, server: &str, desired: &ContainerServer) -> Result<String>;
    /// Starts a created workload (a no-op where creating starts it).
    async fn start(&self, id: &str) -> Result<()>;
    /// Stops (SIGTERM, then SIGKILL after `timeout`) and removes; a container
    /// that is already gone is not an error.
    async fn remove(&self, id: &str, timeout: Duration) -> Result<()>;
    /// Attaches to a running container's stdin and stdout.
    async fn attach(&self, id: &str) -> Result<Stdio>;
    /// Attaches to a container's stderr only, until it stops. Attached
    /// before `start`, it misses nothing the container writes. A backend
    /// that cannot separate stderr says so (the server then has no log).
    async fn attach_stderr(&self, id: &str) -> Result<Stderr> {
        Err(crate::Error::runtime(
            format!("attach stderr {id}"),
            "this container backend does not capture stderr",
        ))
    }
    /// Names of servers whose containers changed state, as they change.
    fn events(&self, fleet: &str) -> BoxStream<'static, Result<String>>;
    /// When a stopped container stopped (`None` if the engine does not say).
    async fn finished_at(&self, id: &str) -> Result<Option<std::time::SystemTime>>;
}
