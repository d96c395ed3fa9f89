//! The Docker Engine backend (bollard). The API version is negotiated, so
//! engines as old as 20.10 (API 1.41) work. Reads come from a store the
//! engine's events keep current, so a reconcile makes no engine call unless
//! it changes something.
mod read;
mod store;
mod watch;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use super::{Container, LABEL_FLEET, LABEL_SERVER, PullPolicy, Runtime, State, Stderr, Stdio};
use crate::catalog::ContainerServer;
use crate::{Error, Result};
use store::Store;

#[derive(Clone, Default)]
pub struct DockerRuntime {
    /// The client for `DOCKER_HOST` (or the default socket) with the API
    /// version the engine agreed to; made on the first call that reaches the
    /// engine (making it needs the socket to exist).
    api: Arc<OnceCell<Docker>>,
    /// What runs, kept current by `events` (see `store`).
    store: Arc<Store>,
}

impl DockerRuntime {
    /// A client that reaches the engine only when first used: an engine that
    /// is not up yet is not an error here, the calls fail until it answers.
    pub fn new() -> Self {
        DockerRuntime::default()
    }

    async fn docker(&self) -> Result<&Docker> {
        self.api
            .get_or_try_init(|| async {
                let unreachable = |e: DockerError| {
                    let host = std::env::var("DOCKER_HOST")
                        .unwrap_or_else(|_| "the default socket".to_string());
                    Error::Unreachable {
                        op: "connect".into(),
                        message: format!("cannot reach the engine at {host} (is it running?): {e}"),
                    }
                };
                Docker::connect_with_defaults()
                    .map_err(unreachable)?
                    .negotiate_version()
                    .await
                    .map_err(unreachable)
            })
            .await
    }
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// An engine call that failed: with the engine's answer, or without one
/// (the engine is down or restarting), which is no fault of the server.
fn call_error(op: impl Into<String>, e: DockerError) -> Error {
    match e {
        DockerError::SocketNotFoundError(_)
        | DockerError::IOError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HttpClientError { .. }
        | DockerError::RequestTimeoutError => Error::Unreachable {
            op: op.into(),
            message: e.to_string(),
        },
        e => Error::runtime(op, e),
    }
}

fn label_filter(fleet: &str, server: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{LABEL_FLEET}={fleet}")];
    if let Some(s) = server {
        labels.push(format!("{LABEL_SERVER}={s}"));
    }
    HashMap::from([("label".to_string(), labels)])
}

#[async_trait]
impl Runtime for DockerRuntime {
    /// From the event-fed store while its event stream runs; from the
    /// engine otherwise (before the first list, after a break, and in
    /// one-shot commands, which follow no events).
    async fn list(&self, fleet: &str, server: Option<&str>) -> Result<Vec<Container>> {
        if let Some(found) = self.store.read(fleet, server) {
            return Ok(found);
        }
        read::all(self.docker().await?, fleet, server).await
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<()> {
        let image_err = |message: String| Error::Image {
            image: image.to_string(),
            message,
        };
        if policy != PullPolicy::Always {
            match self.docker().await?.inspect_image(image).await {
                Ok(_) => return Ok(()),
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) if status_of(&e).is_some() => return Err(image_err(e.to_string())),
                Err(e) => return Err(call_error(format!("inspect image {image}"), e)),
            }
            if policy == PullPolicy::Never {
                return Err(image_err(
                    "not present on the engine and --pull is never".into(),
                ));
            }
        }
        let opts = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let pulled = self
            .docker()
            .await?
            .create_image(Some(opts), None, None)
            .try_for_each(|_| async { Ok(()) })
            .await;
        let outcome = if pulled.is_ok() { "ok" } else { "error" };
        crate::metrics::global()
            .image_pulls
            .get_or_create(&crate::metrics::Outcome { outcome })
            .inc();
        pulled.map_err(|e| image_err(format!("pull failed: {e}")))
    }

    async fn create(&self, fleet: &str, server: &str, desired: &ContainerServer) -> Result<String> {
        let spec = &desired.spec;
        let name = super::container_name(fleet, server);
        let limits = spec.limits;
        let host_config = HostConfig {
            init: Some(true),
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            memory: Some(limits.memory_bytes),
            nano_cpus: Some(limits.nano_cpus),
            pids_limit: Some(limits.pids),
            readonly_rootfs: Some(limits.read_only_rootfs),
            // A read-only root still needs a scratch directory.
            tmpfs: limits
                .read_only_rootfs
                .then(|| HashMap::from([("/tmp".to_string(), "rw,nosuid,size=64m".to_string())])),
            network_mode: (!spec.network).then(|| "none".to_string()),
            binds: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            // stdout is the MCP channel: the engine must not keep a copy of
            // it. stderr is captured by attaching (`attach_stderr`).
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // The only place a spec's values leave as text: to the engine.
            cmd: (!spec.command.is_empty()).then(|| {
                spec.command
                    .iter()
                    .map(|a| a.expose().to_string())
                    .collect()
            }),
            env: Some(
                spec.env
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.expose()))
                    .collect(),
            ),
            user: spec.user.clone(),
            labels: Some(super::labels(fleet, server, &desired.hash)),
            // The gateway attaches to stdio later: keep stdin open, no TTY.
            open_stdin: Some(true),
            stdin_once: Some(false),
            tty: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        let docker = self.docker().await?;
        match docker.create_container(Some(opts), body).await {
            Ok(created) => {
                let _order = self.store.writing().await;
                self.store.created(Container {
                    id: created.id.clone(),
                    name,
                    server: server.to_string(),
                    hash: desired.hash.clone(),
                    state: State::Created,
                    created: time::OffsetDateTime::now_utc().unix_timestamp(),
                    restarts: 0,
                });
                Ok(created.id)
            }
            Err(e) if status_of(&e) == Some(409) => Err(self.name_conflict(&name).await),
            Err(e) => Err(call_error(format!("create {name}"), e)),
        }
    }

    async fn start(&self, id: &str) -> Result<()> {
        let docker = self.docker().await?;
        match docker.start_container(id, None).await {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(304) => {}
            Err(e) => return Err(call_error(format!("start {}", short(id)), e)),
        }
        // Read back under the order lock rather than assumed running: it may
        // have died already, and its events may have been applied already.
        let _order = self.store.writing().await;
        match read::one(docker, id).await {
            Ok(Some(c)) => self.store.put(c),
            Ok(None) => self.store.forget(id),
            // Started all the same; its `start` event brings the store up to date.
            Err(e) => {
                tracing::debug!(container = short(id), error = %e, "no read-back after start")
            }
        }
        Ok(())
    }

    async fn remove(&self, id: &str, timeout: Duration) -> Result<()> {
        let t = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let stop = StopContainerOptionsBuilder::default().t(t).build();
        match self.docker().await?.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => {}
            Err(e) => return Err(call_error(format!("stop {}", short(id)), e)),
        }
        let rm = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker().await?.remove_container(id, Some(rm)).await {
            Ok(()) => {}
            // 404: gone already; 409: removal already in progress.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
            Err(e) => return Err(call_error(format!("remove {}", short(id)), e)),
        }
        let _order = self.store.writing().await;
        self.store.forget(id);
        Ok(())
    }

    async fn attach(&self, id: &str) -> Result<Stdio> {
        let (output, stdin) = self.attach_streams(id, true).await?;
        // stderr is not asked for here: `attach_stderr` captures it.
        Ok(Stdio {
            stdout: frames_of(output, |f| match f {
                LogOutput::StdOut { message } => Some(message),
                _ => None,
            }),
            stdin,
        })
    }

    async fn attach_stderr(&self, id: &str) -> Result<Stderr> {
        // The input half is dropped: nothing is ever written to this attach.
        let (output, _) = self.attach_streams(id, false).await?;
        Ok(frames_of(output, |f| match f {
            LogOutput::StdErr { message } => Some(message),
            _ => None,
        }))
    }

    /// Feeds the store as it goes (see `watch`); a stream that fails or
    /// is dropped stops serving reads from it.
    fn events(&self, fleet: &str) -> BoxStream<'static, Result<String>> {
        let follow = watch::follow(self.clone(), fleet.to_string());
        stream::once(follow)
            .flat_map(|followed| match followed {
                Ok(events) => events,
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            })
            .boxed()
    }

    async fn finished_at(&self, id: &str) -> Result<Option<SystemTime>> {
        let found = self
            .docker()
            .await?
            .inspect_container(id, None)
            .await
            .map_err(|e| call_error(format!("inspect {}", short(id)), e))?;
        let at = found.state.and_then(|s| s.finished_at);
        Ok(at.and_then(|t| {
            let t = time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                .ok()?;
            // The engine says 0001-01-01 for "never".
            (t.unix_timestamp() > 0).then(|| SystemTime::from(t))
        }))
    }
}

type Frames =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, DockerError>> + Send>>;

/// The bytes of the frames `pick` keeps, as one reader.
fn frames_of(
    output: Frames,
    pick: fn(LogOutput) -> Option<tokio_util::bytes::Bytes>,
) -> std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> {
    let bytes = output.filter_map(move |frame| async move {
        match frame {
            Ok(f) => pick(f).map(Ok),
            Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
        }
    });
    Box::pin(tokio_util::io::StreamReader::new(Box::pin(bytes)))
}

impl DockerRuntime {
    /// Attaches to `id`: stdin and stdout for the MCP session (`stdio`), or
    /// stderr alone. Never the logs from before (the engine keeps none).
    async fn attach_streams(
        &self,
        id: &str,
        stdio: bool,
    ) -> Result<(Frames, std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>)> {
        let opts = AttachContainerOptionsBuilder::default()
            .stdin(stdio)
            .stdout(stdio)
            .stderr(!stdio)
            .stream(true)
            .logs(false)
            .build();
        let what = if stdio { "attach" } else { "attach stderr of" };
        let attached = self
            .docker()
            .await?
            .attach_container(id, Some(opts))
            .await
            .map_err(|e| call_error(format!("{what} {}", short(id)), e))?;
        Ok((attached.output, attached.input))
    }

    /// Names who holds `name`, for a create refused with 409.
    async fn name_conflict(&self, name: &str) -> Error {
        let holder = match self.docker().await {
            Ok(d) => d.inspect_container(name, None).await.ok(),
            Err(_) => None,
        };
        let holder = holder.map(|c| {
            let image = c.config.and_then(|c| c.image).unwrap_or_default();
            let id = c.id.unwrap_or_default();
            format!("container {} (image {image})", short(&id))
        });
        Error::Conflict {
            name: name.to_string(),
            holder: holder.unwrap_or_else(|| "another container".to_string()),
        }
    }
}

/// Container ids are long; the first 12 characters are what `docker ps` shows.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
