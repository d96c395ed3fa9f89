//! The reconcile loop. Level-triggered, like a Kubernetes controller: whatever
//! woke it, `reconcile` compares one server's desired state with its
//! containers and moves them one step closer. Work is keyed per server (a
//! server is never reconciled twice at once) and runs with bounded parallelism.
pub mod crash;
pub mod queue;
pub mod view;
pub mod watch;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, ContainerServer, Desired, DesiredState, LoadOptions};
use crate::plan::{Change, RecreateReason, RemoveReason, UnhealthyReport, plan_server};
use crate::runtime::{PullPolicy, Runtime, State, docker::short};
use crate::status::{CatalogStatus, Phase, StatusStore, Update};
use crate::supervise::Supervisor;
use crate::{Error, Result};

pub use crash::BackoffSettings;
use crash::CrashState;
use queue::WorkQueue;
use view::{Upstream, View};
use watch::Trigger;

#[derive(Debug, Clone)]
pub struct Settings {
    pub fleet: String,
    pub config_dir: PathBuf,
    pub load: LoadOptions,
    pub pull: PullPolicy,
    pub resync: Duration,
    pub concurrency: usize,
    pub stop_timeout: Duration,
    pub backoff: BackoffSettings,
    pub status_file: PathBuf,
}

/// What every reconcile shares, passed as one `Arc`.
pub struct Context {
    pub runtime: Arc<dyn Runtime>,
    pub settings: Settings,
    pub status: StatusStore,
    /// What runs, for the upstream pool.
    pub view: View,
    /// Watches every background task.
    pub tasks: Supervisor,
    desired: RwLock<Option<Arc<DesiredState>>>,
    crashes: Mutex<HashMap<String, CrashState>>,
    /// Containers the gateway found not answering MCP, by server.
    unhealthy: Mutex<HashMap<String, UnhealthyReport>>,
    queue: WorkQueue,
}

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing until something changes (or the next resync).
    Await,
    RequeueAfter(Duration),
}

impl Context {
    pub fn new(runtime: Arc<dyn Runtime>, settings: Settings, tasks: Supervisor) -> Arc<Self> {
        Arc::new(Context {
            runtime,
            status: StatusStore::new(&settings.fleet),
            view: View::default(),
            tasks,
            settings,
            desired: RwLock::new(None),
            crashes: Mutex::new(HashMap::new()),
            unhealthy: Mutex::new(HashMap::new()),
            queue: WorkQueue::default(),
        })
    }

    /// The desired state in force (`None` before the first good read).
    pub fn desired(&self) -> Option<Arc<DesiredState>> {
        self.desired.read().expect("desired lock").clone()
    }

    /// Health feeds back into the loop: the gateway could not talk MCP to
    /// this container, so the next reconcile replaces it (with back-off).
    pub fn report_unhealthy(&self, server: &str, container_id: &str, message: &str) {
        self.unhealthy.lock().expect("unhealthy lock").insert(
            server.to_string(),
            UnhealthyReport {
                container_id: container_id.to_string(),
                message: message.to_string(),
            },
        );
        self.queue.add(server);
    }

    fn crash<T>(&self, server: &str, f: impl FnOnce(&mut CrashState) -> T) -> T {
        let mut all = self.crashes.lock().expect("crash lock");
        let st = all
            .entry(server.to_string())
            .or_insert_with(|| CrashState::new(self.settings.backoff));
        f(st)
    }

    /// Re-reads the config directory. On success the new desired state is in
    /// force and `true` is returned if it differs; on error the last good
    /// state stays and the error is reported.
    fn reload(&self, tx: &mpsc::UnboundedSender<Trigger>) -> bool {
        match catalog::load(&self.settings.config_dir, &self.settings.load) {
            Ok(state) => {
                self.status.set_catalog(CatalogStatus {
                    error: None,
                    warnings: state.warnings.clone(),
                });
                let mut slot = self.desired.write().expect("desired lock");
                if slot.as_deref() == Some(&state) {
                    return false;
                }
                tracing::info!(servers = state.servers.len(), "catalog loaded");
                *slot = Some(Arc::new(state));
                true
            }
            Err(Error::Incomplete { path, retry_after }) => {
                tracing::info!(path = %path.display(), "catalog is being written; reading it again shortly");
                let tx = tx.clone();
                // A one-shot: it ends by design, so it is only caught, not a service.
                tokio::spawn(async move {
                    let sent = crate::supervise::catch(async move {
                        tokio::time::sleep(retry_after).await;
                        let _ = tx.send(Trigger::ConfigChanged);
                    });
                    if let Err(panic) = sent.await {
                        tracing::error!(%panic, "the delayed catalog re-read panicked");
                    }
                });
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "config not loaded; the last good state stays in force");
                let warnings = self.status.snapshot().catalog.warnings;
                self.status.set_catalog(CatalogStatus {
                    error: Some(e.to_string()),
                    warnings,
                });
                false
            }
        }
    }

    /// Queues every server that is desired or has a container.
    async fn enqueue_all(&self) -> Result<()> {
        let actual = self.runtime.list(&self.settings.fleet, None).await?;
        let mut names: BTreeSet<String> = actual.into_iter().map(|c| c.server).collect();
        if let Some(d) = self.desired() {
            names.extend(d.servers.keys().cloned());
        }
        names.extend(self.status.snapshot().servers.into_keys());
        for n in &names {
            self.queue.add(n);
        }
        Ok(())
    }
}

/// Runs the controller until `shutdown`; leaves every container running.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Watch before the first read, so that no change falls in between.
    let _watcher = watch::config_dir(&ctx.settings.config_dir, tx.clone())?;
    ctx.tasks.spawn(
        "engine-watch",
        watch::engine_events(
            ctx.runtime.clone(),
            ctx.settings.fleet.clone(),
            tx.clone(),
            shutdown.clone(),
        ),
    );
    ctx.tasks.spawn(
        "status-writer",
        ctx.status
            .clone()
            .write_loop(ctx.settings.status_file.clone()),
    );

    // Nothing is reconciled before the first catalog read and container list.
    // An engine that is not up yet (a host booting) is waited for, not fatal.
    ctx.reload(&tx);
    let mut delay = Duration::from_millis(500);
    while let Err(e) = ctx.enqueue_all().await {
        tracing::warn!(error = %e, "cannot list containers; retrying in {delay:?}");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..ctx.settings.concurrency.max(1) {
        workers.spawn(ctx.tasks.guard("reconcile-worker", worker(ctx.clone())));
    }

    let mut resync = tokio::time::interval(ctx.settings.resync);
    resync.tick().await;
    loop {
        let trigger = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = resync.tick() => Trigger::All,
            t = rx.recv() => t.unwrap_or(Trigger::All),
        };
        let result = match trigger {
            Trigger::ConfigChanged => {
                if ctx.reload(&tx) {
                    ctx.enqueue_all().await
                } else {
                    Ok(())
                }
            }
            Trigger::All => ctx.enqueue_all().await,
            Trigger::Server(name) => {
                ctx.queue.add(&name);
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "listing containers failed; retrying at the next trigger");
        }
    }
    workers.abort_all();
    // One last write so the file reflects the final state.
    let _ = crate::status::write_atomic(
        &ctx.settings.status_file,
        serde_json::to_string_pretty(&ctx.status.snapshot())
            .expect("status serialises")
            .as_bytes(),
    )
    .await;
    tracing::info!("controller stopped; containers left running");
    Ok(())
}

async fn worker(ctx: Arc<Context>) {
    loop {
        let server = ctx.queue.next().await;
        let started = Instant::now();
        let result = reconcile(&server, &ctx).await;
        crate::metrics::global().reconciled(result.is_ok(), started.elapsed());
        let next = match result {
            Ok(n) => n,
            Err(e) => error_policy(&server, &e, &ctx),
        };
        ctx.queue.done(&server);
        if let Next::RequeueAfter(d) = next {
            ctx.queue.add_after(&server, d);
        }
    }
}

/// Moves one server's containers one step towards what the catalog says.
pub async fn reconcile(server: &str, ctx: &Context) -> Result<Next> {
    let Some(desired) = ctx.desired() else {
        return Ok(Next::Await);
    };
    let fleet = &ctx.settings.fleet;
    let want = desired.servers.get(server);
    let containers = ctx.runtime.list(fleet, Some(server)).await?;
    let running = containers.iter().find(|c| c.state.is_running());
    let running_id = running.map(|c| c.id.as_str());
    let running_hash = running.map(|c| c.hash.as_str());

    if !matches!(want, Some(Desired::Container(_) | Desired::Remote { .. })) {
        ctx.view.set(server, None);
    }
    match want {
        None if containers.is_empty() => {
            ctx.status.forget(server);
            ctx.crashes.lock().expect("crash lock").remove(server);
            return Ok(Next::Await);
        }
        Some(Desired::Invalid { error }) => ctx.status.update(
            server,
            Update::phase(Phase::Invalid, error).container(running_id, running_hash),
        ),
        Some(Desired::Remote { url, transport, .. }) => {
            ctx.view.set(server, want.and_then(Upstream::remote));
            ctx.status.update(
                server,
                Update::phase(
                    Phase::Remote,
                    format!("remote {transport} server at {}", redact_url(url)),
                )
                .container(None, None),
            )
        }
        Some(Desired::Unsupported { reason }) => ctx.status.update(
            server,
            Update::phase(Phase::Unsupported, reason).container(None, None),
        ),
        _ => {}
    }

    let unhealthy = ctx
        .unhealthy
        .lock()
        .expect("unhealthy lock")
        .get(server)
        .cloned();
    for change in plan_server(fleet, server, want, &containers, unhealthy.as_ref()) {
        if let Next::RequeueAfter(d) = apply(change, want, ctx).await? {
            return Ok(Next::RequeueAfter(d));
        }
    }

    if let (Some(Desired::Container(c)), Some(r)) = (want, running)
        && r.hash == c.hash
    {
        let restarts = ctx.crash(server, |s| s.restarts);
        ctx.view
            .set(server, Some(Upstream::running(&r.id, restarts, c)));
        ctx.status.update(
            server,
            Update::phase(Phase::Running, running_message(c))
                .container(Some(&r.id), Some(&r.hash))
                .restarts(restarts),
        );
    }
    if want.is_none() {
        ctx.status.forget(server);
        ctx.crashes.lock().expect("crash lock").remove(server);
        ctx.unhealthy.lock().expect("unhealthy lock").remove(server);
    }
    Ok(Next::Await)
}

/// A URL for the status: no user info, query or fragment (they may hold tokens).
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(unparsable url)".to_string(),
    }
}

fn running_message(c: &ContainerServer) -> String {
    match c.warnings.as_slice() {
        [] => "running".to_string(),
        w => format!("running; {}", w.join("; ")),
    }
}

async fn apply(change: Change, want: Option<&Desired>, ctx: &Context) -> Result<Next> {
    let s = &ctx.settings;
    let want_container = match want {
        Some(Desired::Container(c)) => Some(c),
        _ => None,
    };
    match change {
        Change::Remove { server, id, reason } => {
            ctx.view.remove_container(&server, &id);
            if reason != RemoveReason::Duplicate {
                ctx.status.update(
                    &server,
                    Update::phase(Phase::Removing, format!("removing {}", short(&id))),
                );
            }
            ctx.runtime.remove(&id, s.stop_timeout).await?;
            tracing::info!(server, container = short(&id), ?reason, "container removed");
        }
        Change::Create { server, .. } => {
            let want = want_container.expect("create implies a container spec");
            create_and_start(&server, want, false, ctx).await?;
        }
        Change::Recreate { server, id, reason } => {
            ctx.view.remove_container(&server, &id);
            let want = want_container.expect("recreate implies a container spec");
            if let RecreateReason::Unhealthy { message } = &reason {
                // A container that does not answer is handled like one that
                // crashed: replaced after a growing back-off.
                let wait = ctx.crash(&server, |c| c.on_exited(Instant::now()));
                if !wait.is_zero() {
                    let (restarts, delay) = ctx.crash(&server, |c| (c.restarts, c.last_delay));
                    ctx.status.update(
                        &server,
                        Update::phase(
                            Phase::CrashLoopBackOff,
                            format!(
                                "not answering MCP ({message}); back-off {}s before replacing it",
                                delay.as_secs_f32()
                            ),
                        )
                        .restarts(restarts),
                    );
                    return Ok(Next::RequeueAfter(wait));
                }
            }
            // Have the new image before the old container goes away.
            ctx.runtime.ensure_image(&want.spec.image, s.pull).await?;
            ctx.status.update(
                &server,
                Update::phase(Phase::Creating, format!("{reason}: recreating")),
            );
            ctx.runtime.remove(&id, s.stop_timeout).await?;
            ctx.unhealthy
                .lock()
                .expect("unhealthy lock")
                .remove(&server);
            if matches!(reason, RecreateReason::SpecChanged { .. }) {
                ctx.crashes.lock().expect("crash lock").remove(&server);
            }
            let restart = matches!(reason, RecreateReason::Unhealthy { .. });
            create_and_start(&server, want, restart, ctx).await?;
        }
        Change::Start { server, id, state } => {
            ctx.view.remove_container(&server, &id);
            let restart = matches!(state, State::Exited(_));
            if restart {
                let wait = ctx.crash(&server, |c| c.on_exited(Instant::now()));
                if !wait.is_zero() {
                    let (restarts, delay) = ctx.crash(&server, |c| (c.restarts, c.last_delay));
                    let code = match state {
                        State::Exited(Some(code)) => format!(" (exit code {code})"),
                        _ => String::new(),
                    };
                    ctx.status.update(
                        &server,
                        Update::phase(
                            Phase::CrashLoopBackOff,
                            format!(
                                "container exited{code}; back-off {}s before restart",
                                delay.as_secs_f32()
                            ),
                        )
                        .container(Some(&id), want_container.map(|c| c.hash.as_str()))
                        .restarts(restarts),
                    );
                    return Ok(Next::RequeueAfter(wait));
                }
            }
            ctx.runtime.start(&id).await?;
            let restarts = ctx.crash(&server, |c| {
                c.on_started(Instant::now(), restart);
                c.on_success();
                c.restarts
            });
            ctx.unhealthy
                .lock()
                .expect("unhealthy lock")
                .remove(&server);
            tracing::info!(server, container = short(&id), restart, "container started");
            if let Some(want) = want_container {
                ctx.view
                    .set(&server, Some(Upstream::running(&id, restarts, want)));
                ctx.status.update(
                    &server,
                    Update::phase(Phase::Running, running_message(want))
                        .container(Some(&id), Some(&want.hash))
                        .restarts(restarts),
                );
            }
        }
    }
    Ok(Next::Await)
}

async fn create_and_start(
    server: &str,
    want: &ContainerServer,
    restart: bool,
    ctx: &Context,
) -> Result<()> {
    let s = &ctx.settings;
    ctx.status.update(
        server,
        Update::phase(
            Phase::Creating,
            format!("creating from {}", want.spec.image),
        ),
    );
    ctx.runtime.ensure_image(&want.spec.image, s.pull).await?;
    let id = ctx.runtime.create(&s.fleet, server, want).await?;
    ctx.runtime.start(&id).await?;
    let restarts = ctx.crash(server, |c| {
        c.on_started(Instant::now(), restart);
        c.on_success();
        c.restarts
    });
    // A report about the previous incarnation says nothing about this one.
    ctx.unhealthy.lock().expect("unhealthy lock").remove(server);
    tracing::info!(server, container = short(&id), hash = %want.hash, "container created and started");
    ctx.view
        .set(server, Some(Upstream::running(&id, restarts, want)));
    ctx.status.update(
        server,
        Update::phase(Phase::Running, running_message(want))
            .container(Some(&id), Some(&want.hash))
            .restarts(restarts),
    );
    Ok(())
}

/// A failed reconcile is retried with back-off; the status says why.
pub fn error_policy(server: &str, err: &Error, ctx: &Context) -> Next {
    let delay = ctx.crash(server, |c| c.on_failure());
    let message = format!("{err}; retrying in {}s", delay.as_secs_f32());
    let update = match err {
        Error::Image { .. } => Update::phase(Phase::ImagePullBackOff, message),
        _ => Update {
            message: Some(message),
            ..Default::default()
        },
    };
    ctx.status.update(server, update);
    Next::RequeueAfter(delay)
}

#[cfg(test)]
mod tests;
