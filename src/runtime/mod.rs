//! The container engine behind a small trait: Docker today, Kubernetes later.
//! The controller only sees [`Container`]s (what runs, with our labels) and a
//! handful of verbs; everything engine-specific stays in the backend module.
pub mod docker;
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Created but never started (e.g. the controller died in between).
    Created,
    Running,
    /// Stopped; the exit code when the engine knows it.
    Exited(Option<i64>),
    /// Anything else (paused, restarting, dead, removing).
    Other(String),
}

impl State {
    pub fn is_running(&self) -> bool {
        matches!(self, State::Running)
    }
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
    /// Containers carrying this fleet's label (and this server's, if given).
    async fn list(&self, fleet: &str, server: Option<&str>) -> Result<Vec<Container>>;
    /// Makes sure the image is present under `policy`.
    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<()>;
    /// Creates (does not start) the server's container; returns its id.
    async fn create(&self, fleet: &str, server: &str, desired: &ContainerServer) -> Result<String>;
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
