//! Supervision of background tasks: nothing dies silently.
//!
//! A *service* (the pool loop, the notify loop, reconcile workers, watchers,
//! the status writer, the signal handler) must run until shutdown. If one
//! panics or returns early, the [`Supervisor`] logs it as an error and
//! remembers why; `/readyz` then answers 503 with that reason. Services are
//! not restarted: their state may be half-updated, and a restart loop would
//! hide a bug that a person should see.
//!
//! Short-lived work (an upstream handshake, a re-listing, one SSE session)
//! is wrapped with [`catch`] by its owner, which turns a panic into an
//! ordinary failure of that one piece of work (the upstream is retried, the
//! SSE session ends). Work spawned on its own (a container's stderr capture)
//! goes through [`Supervisor::spawn_work`], which does the same and logs it.
//!
//! The services, by name: `pool` (upstream sessions), `notify` (list_changed
//! to clients), `reconcile-worker` (each of `--concurrency`), `engine-watch`,
//! `status-writer`, `signals`, `audit`. The HTTP server is not one: if it stops, the
//! process shuts down (with nothing serving, there is no `/readyz` to ask).
//!
//! Test-only fault hook: when the environment variable [`FAULT_ENV`] names a
//! service (e.g. `pool`), that service panics as soon as it starts.
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

/// Names a service that panics at start (for tests of supervision).
pub const FAULT_ENV: &str = "MCP_FLEET_TEST_PANIC";

/// Watches services; cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct Supervisor(Arc<Inner>);

#[derive(Default)]
struct Inner {
    shutdown: CancellationToken,
    /// Services that died, by name, with why. Bounded by the service names.
    dead: Mutex<BTreeMap<String, String>>,
    fault: Option<String>,
}

impl Supervisor {
    /// A supervisor whose services are expected to end once `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken, fault: Option<String>) -> Self {
        Supervisor(Arc::new(Inner {
            shutdown,
            dead: Mutex::default(),
            fault,
        }))
    }

    /// As [`Supervisor::new`], with the fault hook read from [`FAULT_ENV`].
    pub fn from_env(shutdown: CancellationToken) -> Self {
        let fault = std::env::var(FAULT_ENV).ok().filter(|v| !v.is_empty());
        if let Some(name) = &fault {
            tracing::warn!(task = %name, "{FAULT_ENV} is set: that task will panic (test only)");
        }
        Self::new(shutdown, fault)
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    /// Spawns `task` as the service `name`.
    pub fn spawn(&self, name: &str, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(self.guard(name, task));
    }

    /// `task`, watched as the service `name` (for callers that spawn it
    /// themselves, e.g. into a `JoinSet`). Dropping the future is not a death.
    pub fn guard(
        &self,
        name: &str,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let me = self.clone();
        let name = name.to_string();
        let inject = self.0.fault.as_deref() == Some(name.as_str());
        async move {
            let outcome = catch(async move {
                if inject {
                    panic!("fault injected by {FAULT_ENV}");
                }
                task.await
            })
            .await;
            me.ended(name, outcome);
        }
    }

    /// Spawns short-lived `work` that belongs to one thing (e.g. one
    /// container's stderr capture), not a service: its end is normal, a
    /// panic is logged as an error naming `name` and ends only that work.
    /// The work is dropped at shutdown. Abort it with the returned handle.
    pub fn spawn_work(
        &self,
        name: String,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::AbortHandle {
        let shutdown = self.0.shutdown.clone();
        tokio::spawn(async move {
            let run = catch(shutdown.run_until_cancelled(work));
            if let Err(panic) = run.await {
                tracing::error!(task = %name, reason = %panic, "background work panicked");
            }
        })
        .abort_handle()
    }

    fn ended(&self, name: String, outcome: Result<(), String>) {
        let why = match outcome {
            Ok(()) if self.0.shutdown.is_cancelled() => return,
            Ok(()) => "stopped unexpectedly".to_string(),
            Err(panic) => format!("panicked: {panic}"),
        };
        tracing::error!(task = %name, reason = %why, "background task died; /readyz now reports it");
        self.0
            .dead
            .lock()
            .expect("supervisor lock")
            .insert(name, why);
    }

    /// Why services died, one line each; empty while all run.
    pub fn failures(&self) -> Vec<String> {
        self.0
            .dead
            .lock()
            .expect("supervisor lock")
            .iter()
            .map(|(name, why)| format!("background task `{name}` {why}"))
            .collect()
    }
}

/// Runs `work`, turning a panic into `Err(message)`.
pub async fn catch<T>(work: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn settle(s: &Supervisor, name: &str, task: impl Future<Output = ()> + Send + 'static) {
        s.guard(name, task).await;
    }

    #[tokio::test]
    async fn a_panic_or_an_early_return_is_a_failure() {
        let s = Supervisor::default();
        settle(&s, "a", async { panic!("boom") }).await;
        settle(&s, "b", async {}).await;
        assert_eq!(
            s.failures(),
            [
                "background task `a` panicked: boom",
                "background task `b` stopped unexpectedly"
            ]
        );
    }

    #[tokio::test]
    async fn returning_after_shutdown_is_fine() {
        let shutdown = CancellationToken::new();
        let s = Supervisor::new(shutdown.clone(), None);
        shutdown.cancel();
        settle(&s, "a", async {}).await;
        assert!(s.failures().is_empty());
    }

    #[tokio::test]
    async fn the_fault_hook_panics_the_named_task_only() {
        let s = Supervisor::new(CancellationToken::new(), Some("pool".into()));
        let ran = Arc::new(Mutex::new(Vec::new()));
        for name in ["pool", "notify"] {
            let ran = ran.clone();
            settle(&s, name, async move {
                ran.lock().unwrap().push(name);
                std::future::pending::<()>().await
            })
            .now_or_never();
        }
        assert_eq!(*ran.lock().unwrap(), ["notify"]);
        assert_eq!(
            s.failures(),
            [format!(
                "background task `pool` panicked: fault injected by {FAULT_ENV}"
            )]
        );
    }

    #[tokio::test]
    async fn work_may_end_or_panic_without_failing_the_services_and_stops_at_shutdown() {
        let shutdown = CancellationToken::new();
        let s = Supervisor::new(shutdown.clone(), None);
        let ended = s.spawn_work("a".into(), async {});
        let panicked = s.spawn_work("b".into(), async { panic!("boom") });
        let forever = s.spawn_work("c".into(), std::future::pending());
        tokio::task::yield_now().await;
        shutdown.cancel();
        for h in [ended, panicked, forever] {
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !h.is_finished() {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("work ends");
        }
        assert!(s.failures().is_empty());
    }

    #[tokio::test]
    async fn catch_reports_string_panics() {
        let n = 3;
        let r = catch(async move { panic!("{n} bad") }).await;
        assert_eq!(r, Err::<(), _>("3 bad".into()));
    }
}
