//! Each server's stderr, captured from the moment its container starts and
//! kept in a bounded [`LogBuffer`] per server (the gateway serves it at
//! `GET /servers/{name}/logs`; crash messages quote its last lines).
//!
//! The engine keeps no logs of our containers (log driver `none`: stdout is
//! the MCP channel), so stderr exists only while someone is attached. A
//! container we start is attached to *before* `start` ([`ServerLogs::before_start`]),
//! so a server that writes and dies at once is still read; one found running
//! without a capture (after a controller restart, or when the attach broke)
//! is attached to by [`ServerLogs::adopt`]. One capture per server: a new
//! one replaces the old. Each capture is short-lived work under the
//! [`Supervisor`] and ends when its container stops.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::logbuf::{LineSplitter, LogBuffer, redact};
use crate::catalog::Secret;
use crate::runtime::{Runtime, Stderr, docker::short};
use crate::supervise::Supervisor;

/// How long attaching to a container may take.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a crash report waits for the rest of a stopped container's stderr.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
/// A container listed as running this long after its stderr stream ended
/// has lost the stream, not stopped: it is attached to again.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Every server's log buffer and capture; cheap to clone (shared).
#[derive(Clone)]
pub struct ServerLogs {
    all: Arc<Mutex<HashMap<String, Entry>>>,
    runtime: Arc<dyn Runtime>,
    tasks: Supervisor,
}

#[derive(Default)]
struct Entry {
    buffer: Arc<LogBuffer>,
    capture: Option<Capture>,
    /// Captures so far (each line records which one read it).
    runs: u64,
}

struct Capture {
    container: String,
    run: u64,
    /// Cancelled when the capture ends, however it ends.
    ended: CancellationToken,
    /// When the engine closed the stream (the container stopped, or the
    /// connection to the engine went); unset while it runs or if the attach
    /// failed or broke.
    closed: Arc<OnceLock<Instant>>,
    task: Option<AbortHandle>,
}

/// What a capture's work needs of its registration.
struct Run {
    run: u64,
    ended: CancellationToken,
    closed: Arc<OnceLock<Instant>>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl ServerLogs {
    /// Captures through `runtime`, as work under `tasks`.
    pub fn new(runtime: Arc<dyn Runtime>, tasks: Supervisor) -> Self {
        ServerLogs {
            all: Arc::default(),
            runtime,
            tasks,
        }
    }

    /// `server`'s buffer, if it has one.
    pub fn buffer(&self, server: &str) -> Option<Arc<LogBuffer>> {
        let all = self.all.lock().expect("logs lock");
        all.get(server).map(|e| e.buffer.clone())
    }

    /// `server`'s buffer, made empty if it has none yet (for a follower
    /// waiting for a server that is known but not started).
    pub fn buffer_or_new(&self, server: &str) -> Arc<LogBuffer> {
        let mut all = self.all.lock().expect("logs lock");
        all.entry(server.to_string()).or_default().buffer.clone()
    }

    /// Attaches to container `id`'s stderr before it is started (bounded by
    /// [`ATTACH_TIMEOUT`]), then reads it in the background. A failure is
    /// logged and leaves the server without a log; it never stops the start.
    /// Each of `secrets` is redacted from every line.
    pub async fn before_start(&self, server: &str, id: &str, secrets: Vec<Secret>) {
        match attach(&self.runtime, id).await {
            Ok(stderr) => {
                let run = self.begin(server, id);
                self.spawn(server, id, run, secrets, async move { Ok(stderr) });
            }
            Err(e) => {
                tracing::warn!(server, container = short(id), error = %e,
                    "cannot capture stderr; the server's log will miss this run");
            }
        }
    }

    /// Container `id` runs: captures its stderr from now on, unless that is
    /// already being done (a no-op then, so every reconcile may call it).
    /// A capture of `id` whose stream the engine closed less than
    /// [`STOP_GRACE`] ago counts as done too: the list may still say
    /// "running" for a container that is just stopping, and an attach to a
    /// stopped container would wait for its next start (which
    /// [`ServerLogs::before_start`] attaches to anyway). Still running after
    /// that, it lost the stream (the engine restarted, or someone else
    /// restarted it), and is attached to again, as is one whose attach failed.
    pub fn adopt(&self, server: &str, id: &str, secrets: Vec<Secret>) {
        let (covered, retry) = {
            let all = self.all.lock().expect("logs lock");
            let capture = all.get(server).and_then(|e| e.capture.as_ref());
            let same = capture.filter(|c| c.container == id);
            let closing = |c: &Capture| c.closed.get().is_some_and(|at| at.elapsed() < STOP_GRACE);
            let covered = same.is_some_and(|c| !c.ended.is_cancelled() || closing(c));
            (covered, same.is_some_and(|c| c.closed.get().is_none()))
        };
        if covered {
            return;
        }
        let run = self.begin(server, id);
        let (runtime, owned) = (self.runtime.clone(), id.to_string());
        let name = server.to_string();
        self.spawn(server, id, run, secrets, async move {
            let attached = attach(&runtime, &owned).await;
            if let Err(e) = &attached {
                let (container, why) = (
                    short(&owned),
                    "cannot capture stderr; trying again at the next reconcile",
                );
                // A backend that cannot capture says so once, not at every reconcile.
                match retry {
                    false => tracing::warn!(server = %name, container, error = %e, "{why}"),
                    true => tracing::debug!(server = %name, container, error = %e, "{why}"),
                }
            }
            attached
        });
    }

    /// Waits (at most [`SETTLE_TIMEOUT`]) until the capture of stopped
    /// container `id` has read everything, then returns its last `n` lines.
    pub async fn last_lines(&self, server: &str, id: &str, n: usize) -> Vec<String> {
        let Some((ended, run, buffer)) = self.current(server, id) else {
            return vec![];
        };
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, ended.cancelled()).await;
        buffer.last_of_run(run, n)
    }

    /// The last `n` lines of container `id`'s current run, without waiting.
    pub fn last_lines_now(&self, server: &str, id: &str, n: usize) -> Vec<String> {
        self.current(server, id)
            .map(|(_, run, buffer)| buffer.last_of_run(run, n))
            .unwrap_or_default()
    }

    /// `server` left the fleet: its capture stops and its log goes.
    pub fn forget(&self, server: &str) {
        let gone = self.all.lock().expect("logs lock").remove(server);
        if let Some(e) = gone {
            e.buffer.close();
        }
    }

    fn current(&self, server: &str, id: &str) -> Option<(CancellationToken, u64, Arc<LogBuffer>)> {
        let all = self.all.lock().expect("logs lock");
        let e = all.get(server)?;
        let c = e.capture.as_ref().filter(|c| c.container == id)?;
        Some((c.ended.clone(), c.run, e.buffer.clone()))
    }

    /// Registers a new capture of `id` for `server` (the previous one is
    /// stopped).
    fn begin(&self, server: &str, id: &str) -> Run {
        let mut all = self.all.lock().expect("logs lock");
        let e = all.entry(server.to_string()).or_default();
        e.runs += 1;
        let run = Run {
            run: e.runs,
            ended: CancellationToken::new(),
            closed: Arc::default(),
        };
        e.capture = Some(Capture {
            container: id.to_string(),
            run: run.run,
            ended: run.ended.clone(),
            closed: run.closed.clone(),
            task: None,
        });
        run
    }

    /// Runs a capture: `open` attaches (or already has; it reports its own
    /// failure), then every line goes into the server's buffer until the
    /// stream ends.
    fn spawn(
        &self,
        server: &str,
        id: &str,
        Run { run, ended, closed }: Run,
        secrets: Vec<Secret>,
        open: impl Future<Output = crate::Result<Stderr>> + Send + 'static,
    ) {
        let buffer = self.buffer_or_new(server);
        let container = short(id).to_string();
        // Ends the capture however the work ends (stream end, panic, abort,
        // even dropped before it ran).
        let guard = ended.drop_guard();
        let work = async move {
            let _ended = guard;
            // An attach that failed was reported by whoever attached.
            if let Ok(stderr) = open.await {
                let push = |l| buffer.push(&container, run, redact(l, &secrets));
                if read_lines(stderr, push).await {
                    let _ = closed.set(Instant::now());
                }
            }
        };
        let task = self
            .tasks
            .spawn_work(format!("stderr capture of {server}"), work);
        let mut all = self.all.lock().expect("logs lock");
        let capture = all.get_mut(server).and_then(|e| e.capture.as_mut());
        match capture.filter(|c| c.run == run && c.container == id) {
            Some(c) => c.task = Some(task),
            // Replaced (or forgotten) meanwhile: this one is not wanted.
            None => task.abort(),
        }
    }
}

async fn attach(runtime: &Arc<dyn Runtime>, id: &str) -> crate::Result<Stderr> {
    match tokio::time::timeout(ATTACH_TIMEOUT, runtime.attach_stderr(id)).await {
        Ok(r) => r,
        Err(_) => Err(crate::Error::runtime(
            format!("attach stderr of {}", short(id)),
            format!("no answer within {}s", ATTACH_TIMEOUT.as_secs()),
        )),
    }
}

/// Reads `stderr` until it ends (the container stopped), giving `push` each
/// line. There is no deadline on a read: a live container may be quiet for
/// days; the stream ends when it stops, and the capture is aborted when
/// replaced. Returns whether the stream ended (`false`: it broke).
async fn read_lines(mut stderr: Stderr, mut push: impl FnMut(String)) -> bool {
    let mut splitter = LineSplitter::default();
    let mut chunk = vec![0u8; 8192];
    let eof = loop {
        match stderr.read(&mut chunk).await {
            Ok(0) => break true,
            Ok(n) => splitter.push(&chunk[..n], &mut push),
            Err(e) => {
                tracing::debug!(error = %e, "stderr stream broke");
                break false;
            }
        }
    };
    splitter.finish(push);
    eof
}
