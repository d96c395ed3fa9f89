//! Counts every engine call by verb and outcome (`mcp_fleet_engine_calls`)
//! around any backend, so the controller stays unaware of it. Reads are the
//! exception: a backend counts the ones that reach its engine.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use super::{Capabilities, Container, PullPolicy, Runtime, Stderr, Stdio};
use crate::Result;
use crate::catalog::ContainerServer;
use crate::metrics::{self, Verb};

pub struct Metered(pub Arc<dyn Runtime>);

/// Counts one engine call; backends count the reads they make themselves
/// (a `list` is served from a watch-fed cache and reaches no engine).
pub(crate) fn count<T, E>(
    verb: &'static str,
    r: std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let outcome = if r.is_ok() { "ok" } else { "error" };
    metrics::global()
        .engine_calls
        .get_or_create(&Verb { verb, outcome })
        .inc();
    r
}

#[async_trait]
impl Runtime for Metered {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn list(&self, fleet: &str, server: Option<&str>) -> Result<Vec<Container>> {
        self.0.list(fleet, server).await
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<()> {
        count("ensure_image", self.0.ensure_image(image, policy).await)
    }

    async fn create(&self, fleet: &str, server: &str, desired: &ContainerServer) -> Result<String> {
        count("create", self.0.create(fleet, server, desired).await)
    }

    async fn start(&self, id: &str) -> Result<()> {
        count("start", self.0.start(id).await)
    }

    async fn remove(&self, id: &str, timeout: Duration) -> Result<()> {
        count("remove", self.0.remove(id, timeout).await)
    }

    async fn attach(&self, id: &str) -> Result<Stdio> {
        count("attach", self.0.attach(id).await)
    }

    async fn attach_stderr(&self, id: &str) -> Result<Stderr> {
        count("attach_stderr", self.0.attach_stderr(id).await)
    }

    async fn finished_at(&self, id: &str) -> Result<Option<std::time::SystemTime>> {
        count("inspect", self.0.finished_at(id).await)
    }

    fn events(&self, fleet: &str) -> BoxStream<'static, Result<String>> {
        self.0.events(fleet)
    }
}
