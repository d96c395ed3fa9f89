//! The reconcile loop. Level-triggered, like a Kubernetes controller: whatever
//! woke it, `reconcile` compares one server's desired state with its
//! containers and moves them one step closer. Work is keyed per server (a
//! server is never reconciled twice at once) and runs with bounded parallelism.
pub mod crash;
pub mod logbuf;
pub mod logs;
mod observe;
pub mod queue;
mod reconcile;
pub mod view;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog::{self, ContainerServer, DesiredState, LoadOptions};
use crate::plan::UnhealthyReport;
use crate::runtime::{Container, PullPolicy, Runtime};
use crate::status::{CatalogStatus, EngineStatus, FleetStatus, ServerStatus, StatusStore};
use crate::supervise::Supervisor;
use crate::{Error, Result};

pub use crash::BackoffSettings;
use crash::CrashState;
use queue::WorkQueue;
pub use reconcile::{error_policy, reconcile};
use view::View;
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

/// An in-place write is read once it has been left alone this long.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A container that stopped this long before the engine went away was
/// stopped by the engine's shutdown, not by a crash of its own.
const ENGINE_STOP_GRACE: Duration = Duration::from_secs(30);

/// What every reconcile shares, passed as one `Arc`.
pub struct Context {
    pub runtime: Arc<dyn Runtime>,
    pub settings: Settings,
    pub status: StatusStore,
    /// What runs, for the upstream pool.
    pub view: View,
    /// Watches every background task.
    pub tasks: Supervisor,
    /// Each server's stderr.
    pub logs: logs::ServerLogs,
    desired: RwLock<Option<Arc<DesiredState>>>,
    /// Ticks whenever a new desired state is in force (the gateway's access
    /// rules follow it).
    desired_changed: tokio::sync::watch::Sender<()>,
    crashes: Mutex<HashMap<String, CrashState>>,
    /// Containers the gateway found not answering MCP, by server.
    unhealthy: Mutex<HashMap<String, UnhealthyReport>>,
    /// Each server's last valid spec, to heal with while its entry is invalid.
    last_good: Mutex<HashMap<String, ContainerServer>>,
    /// The previous controller's word on each server (restart count and
    /// back-off), taken up when the same container is still there.
    previous: Mutex<BTreeMap<String, ServerStatus>>,
    /// When the config directory last changed (removals wait for quiet).
    config_changed: Mutex<Instant>,
    /// When the engine went away and when it answered again, if it did.
    engine_outage: Mutex<Option<(SystemTime, Option<SystemTime>)>>,
    queue: WorkQueue,
}

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing until something changes (or the next resync).
    Await,
    RequeueAfter(Duration),
}

/// What a read of the config directory found.
#[derive(Debug, PartialEq, Eq)]
enum Reload {
    Changed,
    Unchanged,
    /// Half-written: read again after this long.
    Retry(Duration),
}

impl Context {
    pub fn new(runtime: Arc<dyn Runtime>, settings: Settings, tasks: Supervisor) -> Arc<Self> {
        Arc::new(Context {
            logs: logs::ServerLogs::new(runtime.clone(), tasks.clone()),
            runtime,
            status: StatusStore::new(&settings.fleet),
            view: View::default(),
            tasks,
            settings,
            desired: RwLock::new(None),
            desired_changed: tokio::sync::watch::Sender::new(()),
            crashes: Mutex::new(HashMap::new()),
            unhealthy: Mutex::new(HashMap::new()),
            last_good: Mutex::new(HashMap::new()),
            previous: Mutex::new(BTreeMap::new()),
            config_changed: Mutex::new(Instant::now()),
            engine_outage: Mutex::new(None),
            queue: WorkQueue::default(),
        })
    }

    /// The desired state in force (`None` before the first good read).
    pub fn desired(&self) -> Option<Arc<DesiredState>> {
        self.desired.read().expect("desired lock").clone()
    }

    /// Wakes whenever a new desired state is in force.
    pub fn watch_desired(&self) -> tokio::sync::watch::Receiver<()> {
        self.desired_changed.subscribe()
    }

    /// Ready to serve: the catalog has been read and the engine answers.
    pub fn ready(&self) -> bool {
        self.desired().is_some() && self.status.snapshot().engine.reachable
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

    /// Takes up the previous controller's restart count and back-off for
    /// `server` if its container is still the one that status described.
    fn resume(&self, server: &str, containers: &[Container]) {
        let Some(prev) = self.previous.lock().expect("previous lock").remove(server) else {
            return;
        };
        let same = prev
            .container_id
            .as_ref()
            .and_then(|id| containers.iter().find(|c| &c.id == id));
        if let Some(c) = same {
            let st = CrashState::resume(
                self.settings.backoff,
                prev.restart_count,
                prev.backoff_ms.map(Duration::from_millis),
                c.state.is_running(),
            );
            // Taken once, at the server's first reconcile: whatever state
            // exists by then is fresh and knows less.
            self.crashes
                .lock()
                .expect("crash lock")
                .insert(server.to_string(), st);
        }
    }

    /// Reads the status file a previous run left, for [`Context::resume`].
    fn load_previous(&self) {
        let Ok(text) = std::fs::read_to_string(&self.settings.status_file) else {
            return;
        };
        match serde_json::from_str::<FleetStatus>(&text) {
            Ok(prev) if prev.fleet == self.settings.fleet => {
                *self.previous.lock().expect("previous lock") = prev.servers;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(path = %self.settings.status_file.display(), error = %e,
                "previous status file not readable; restart counts start from zero"),
        }
    }

    /// Re-reads the config directory. On success the new desired state is in
    /// force; on error the last good state stays and the error is reported.
    fn reload(&self) -> Reload {
        match catalog::load(&self.settings.config_dir, &self.settings.load) {
            Ok(state) => {
                self.status.set_catalog(CatalogStatus {
                    error: None,
                    warnings: state.warnings.clone(),
                });
                let mut slot = self.desired.write().expect("desired lock");
                if slot.as_deref() == Some(&state) {
                    return Reload::Unchanged;
                }
                tracing::info!(servers = state.servers.len(), "catalog loaded");
                *slot = Some(Arc::new(state));
                self.desired_changed.send_replace(());
                Reload::Changed
            }
            Err(Error::Incomplete { path, retry_after }) => {
                tracing::info!(path = %path.display(), "catalog is being written; reading it again shortly");
                Reload::Retry(retry_after)
            }
            Err(e) => {
                tracing::error!(error = %e, "config not loaded; the last good state stays in force");
                let warnings = self.status.snapshot().catalog.warnings;
                self.status.set_catalog(CatalogStatus {
                    error: Some(e.to_string()),
                    warnings,
                });
                Reload::Unchanged
            }
        }
    }

    /// The config directory changed: removals wait until it is quiet again.
    fn config_touched(&self) {
        *self.config_changed.lock().expect("config lock") = Instant::now();
    }

    /// How long removals must still wait for the catalog to settle.
    fn settle_wait(&self) -> Duration {
        let since = self.config_changed.lock().expect("config lock").elapsed();
        self.settings.load.settle.saturating_sub(since)
    }

    /// Queues every server that is desired or has a container; the list
    /// call also tells whether the engine answers.
    async fn enqueue_all(&self) -> Result<()> {
        let actual = match self.runtime.list(&self.settings.fleet, None).await {
            Ok(a) => a,
            Err(e) => {
                self.engine_unreachable(&e);
                return Err(e);
            }
        };
        self.engine_reachable();
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

    pub(super) fn engine_unreachable(&self, e: &Error) {
        self.engine_lost();
        self.status.set_engine(EngineStatus {
            reachable: false,
            error: Some(e.to_string()),
        });
    }

    pub(super) fn engine_reachable(&self) {
        if let Some((_, back @ None)) = &mut *self.engine_outage.lock().expect("engine lock") {
            *back = Some(SystemTime::now());
        }
        self.status.set_engine(EngineStatus {
            reachable: true,
            error: None,
        });
    }

    /// The engine (or its event stream) went away: containers that stop
    /// around now were stopped by it, not by crashes of their own.
    fn engine_lost(&self) {
        let mut outage = self.engine_outage.lock().expect("engine lock");
        if !matches!(*outage, Some((_, None))) {
            *outage = Some((SystemTime::now(), None));
        }
    }

    /// Whether a container that stopped at `finished` was stopped by an
    /// engine restart (it stopped during the last outage).
    fn stopped_by_engine(&self, finished: SystemTime) -> bool {
        let Some((lost, back)) = *self.engine_outage.lock().expect("engine lock") else {
            return false;
        };
        let from = lost.checked_sub(ENGINE_STOP_GRACE).unwrap_or(lost);
        finished >= from && back.is_none_or(|b| finished <= b)
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
    ctx.load_previous();
    ctx.tasks.spawn(
        "status-writer",
        ctx.status
            .clone()
            .write_loop(ctx.settings.status_file.clone()),
    );

    // Nothing is reconciled before the first catalog read and container list.
    let mut read_at = match ctx.reload() {
        Reload::Retry(d) => Some(tokio::time::Instant::now() + d),
        _ => None,
    };
    if !wait_for_engine(&ctx, &shutdown).await {
        return Ok(());
    }

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..ctx.settings.concurrency.max(1) {
        workers.spawn(worker(ctx.clone()));
    }

    let mut resync = tokio::time::interval(ctx.settings.resync);
    resync.tick().await;
    loop {
        let trigger = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = resync.tick() => Trigger::All,
            _ = sleep_until(read_at) => {
                read_at = None;
                Trigger::ReadAgain
            }
            Some(done) = workers.join_next() => {
                // A worker only ends by panicking: say so and replace it.
                tracing::error!(error = ?done.err(), "reconcile worker died; starting a new one");
                workers.spawn(worker(ctx.clone()));
                continue;
            }
            t = rx.recv() => t.unwrap_or(Trigger::All),
        };
        let result = match trigger {
            Trigger::ConfigWritten => {
                // Read once the writer has stopped for a moment.
                ctx.config_touched();
                read_at = Some(tokio::time::Instant::now() + DEBOUNCE);
                Ok(())
            }
            Trigger::ConfigReplaced | Trigger::ReadAgain => {
                if trigger == Trigger::ConfigReplaced {
                    ctx.config_touched();
                }
                match ctx.reload() {
                    Reload::Changed => ctx.enqueue_all().await,
                    Reload::Retry(d) => {
                        read_at = Some(tokio::time::Instant::now() + d);
                        Ok(())
                    }
                    Reload::Unchanged => Ok(()),
                }
            }
            Trigger::All => ctx.enqueue_all().await,
            Trigger::Server(name) => {
                ctx.queue.add(&name);
                Ok(())
            }
            Trigger::EngineLost => {
                ctx.engine_lost();
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

/// Sleeps until `at`, or forever when there is nothing to wait for.
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits, with back-off, until the engine answers a container list (a host
/// still booting, an engine restarting). `false` if shut down meanwhile.
async fn wait_for_engine(ctx: &Context, shutdown: &CancellationToken) -> bool {
    let mut delay = Duration::from_millis(250);
    while let Err(e) = ctx.enqueue_all().await {
        tracing::warn!(error = %e, "waiting for the container engine; next try in {delay:?}");
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    true
}

async fn worker(ctx: Arc<Context>) {
    loop {
        let server = ctx.queue.next().await;
        let started = Instant::now();
        // `change` is filled in once the step is planned (see `reconcile`).
        let span = tracing::debug_span!("reconcile", server, change = tracing::field::Empty);
        let result = reconcile(&server, &ctx).instrument(span.clone()).await;
        let elapsed = started.elapsed();
        crate::metrics::global().reconciled(result.is_ok(), elapsed);
        let next = span.in_scope(|| {
            let next = match result {
                Ok(n) => n,
                Err(e) => error_policy(&server, &e, &ctx),
            };
            let ms = elapsed.as_secs_f64() * 1e3;
            tracing::debug!(server, ?next, elapsed_ms = ms, "reconciled");
            next
        });
        ctx.queue.done(&server);
        if let Next::RequeueAfter(d) = next {
            ctx.queue.add_after(&server, d);
        }
    }
}

#[cfg(test)]
mod kube_tests;
#[cfg(test)]
mod tests;
