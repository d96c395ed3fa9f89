//! Every server's phase and message, like a Kubernetes object's status; plus
//! the catalog's own load error. Kept in memory, logged on change, and written
//! atomically as JSON to the status file by one writer task.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Known, not acted on yet.
    Pending,
    /// Pulling the image, creating or starting the container.
    Creating,
    Running,
    /// The container keeps exiting; the next start waits for a back-off delay.
    CrashLoopBackOff,
    /// The image cannot be had; retried with back-off.
    ImagePullBackOff,
    /// The catalog entry cannot be used; the server keeps running (and is
    /// healed) with its last good spec, if it had one.
    Invalid,
    /// The container name the server needs is held by a container this fleet
    /// does not own; retried with back-off until a person moves it.
    Conflict,
    /// Its container is being stopped and removed.
    Removing,
    /// A remote server: no container, the gateway reaches it over HTTP.
    Remote,
    /// A catalog entry mcp-fleet does not run (a `poci` tool group).
    Unsupported,
}

impl Phase {
    /// Its container is up (the gateway may talk to it).
    pub fn is_running(self) -> bool {
        self == Phase::Running
    }

    /// Something is wrong that a person may need to look at.
    pub fn is_failing(self) -> bool {
        matches!(
            self,
            Phase::CrashLoopBackOff | Phase::ImagePullBackOff | Phase::Invalid | Phase::Conflict
        )
    }

    /// The controller is still working towards the desired state.
    pub fn is_progressing(self) -> bool {
        matches!(self, Phase::Pending | Phase::Creating | Phase::Removing)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    pub phase: Phase,
    pub message: String,
    pub restart_count: u32,
    pub container_id: Option<String>,
    pub spec_hash: Option<String>,
    /// RFC 3339; changes only when the phase does.
    pub last_transition_time: String,
    /// The last back-off delay (restart or retry); a restarted controller
    /// continues the back-off from it instead of starting over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// How many tools the gateway's session to the server lists (absent
    /// while it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<usize>,
    /// Whether the gateway has a working MCP session to the server; absent
    /// until the gateway has tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Condition>,
}

/// A Kubernetes-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub status: bool,
    pub message: String,
    pub last_transition_time: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogStatus {
    /// Why the config directory could not be loaded; the last good state is in force.
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

/// Whether the container engine answers. Until it does, nothing is
/// reconciled and `/readyz` says not ready.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    pub reachable: bool,
    /// Why it is not reachable (absent when it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    pub fleet: String,
    #[serde(default)]
    pub engine: EngineStatus,
    pub catalog: CatalogStatus,
    pub servers: BTreeMap<String, ServerStatus>,
    /// Tool, prompt or resource names offered by more than one server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clashes: Vec<String>,
}

/// What a reconcile reports about one server. `None` fields keep their value.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub phase: Option<Phase>,
    pub message: Option<String>,
    pub container_id: Option<Option<String>>,
    pub spec_hash: Option<Option<String>>,
    pub restart_count: Option<u32>,
    pub backoff_ms: Option<Option<u64>>,
}

impl Update {
    pub fn phase(phase: Phase, message: impl Into<String>) -> Self {
        Update {
            phase: Some(phase),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    pub fn container(mut self, id: Option<&str>, hash: Option<&str>) -> Self {
        self.container_id = Some(id.map(str::to_string));
        self.spec_hash = Some(hash.map(str::to_string));
        self
    }

    pub fn restarts(mut self, n: u32) -> Self {
        self.restart_count = Some(n);
        self
    }

    /// The last back-off delay (`None`: none yet).
    pub fn backoff(mut self, delay: Option<std::time::Duration>) -> Self {
        self.backoff_ms = Some(delay.map(|d| d.as_millis() as u64));
        self
    }
}

/// The shared status, with change notification for the file writer.
#[derive(Clone)]
pub struct StatusStore {
    inner: Arc<Mutex<FleetStatus>>,
    /// Bumped on every change; each consumer holds its own receiver.
    changed: Arc<watch::Sender<u64>>,
}

impl StatusStore {
    pub fn new(fleet: &str) -> Self {
        StatusStore {
            inner: Arc::new(Mutex::new(FleetStatus {
                fleet: fleet.to_string(),
                ..Default::default()
            })),
            changed: Arc::new(watch::Sender::new(0)),
        }
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn snapshot(&self) -> FleetStatus {
        self.inner.lock().expect("status lock").clone()
    }

    pub fn server(&self, name: &str) -> Option<ServerStatus> {
        self.inner
            .lock()
            .expect("status lock")
            .servers
            .get(name)
            .cloned()
    }

    /// Applies an update; logs and notifies only when something changed.
    pub fn update(&self, name: &str, u: Update) {
        let mut st = self.inner.lock().expect("status lock");
        let entry = st
            .servers
            .entry(name.to_string())
            .or_insert_with(|| ServerStatus {
                phase: Phase::Pending,
                message: String::new(),
                restart_count: 0,
                container_id: None,
                spec_hash: None,
                last_transition_time: now(),
                backoff_ms: None,
                tools: None,
                ready: None,
            });
        let before = entry.clone();
        if let Some(p) = u.phase {
            if p != entry.phase {
                entry.last_transition_time = now();
            }
            entry.phase = p;
        }
        if let Some(m) = u.message {
            entry.message = m;
        }
        if let Some(c) = u.container_id {
            entry.container_id = c;
        }
        if let Some(h) = u.spec_hash {
            entry.spec_hash = h;
        }
        if let Some(n) = u.restart_count {
            entry.restart_count = n;
        }
        if let Some(b) = u.backoff_ms {
            entry.backoff_ms = b;
        }
        if *entry != before {
            let e = entry.clone();
            drop(st);
            if e.phase.is_failing() {
                tracing::warn!(server = name, phase = ?e.phase, restarts = e.restart_count, "{}", e.message);
            } else {
                tracing::info!(server = name, phase = ?e.phase, restarts = e.restart_count, "{}", e.message);
            }
            self.notify();
        }
    }

    pub fn forget(&self, name: &str) {
        if self
            .inner
            .lock()
            .expect("status lock")
            .servers
            .remove(name)
            .is_some()
        {
            tracing::info!(server = name, "removed");
            self.notify();
        }
    }

    /// Records whether the gateway can talk to `server` (`None`: not tried,
    /// or not applicable). Ignored for servers the controller does not know.
    pub fn set_ready(&self, server: &str, ready: Option<(bool, String)>) {
        let mut st = self.inner.lock().expect("status lock");
        let Some(entry) = st.servers.get_mut(server) else {
            return;
        };
        let next = ready.map(|(status, message)| Condition {
            last_transition_time: match &entry.ready {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => now(),
            },
            status,
            message,
        });
        if entry.ready != next {
            entry.ready = next.clone();
            drop(st);
            match next {
                Some(c) if c.status => tracing::info!(server, "ready: {}", c.message),
                Some(c) => tracing::warn!(server, "not ready: {}", c.message),
                None => {}
            }
            self.notify();
        }
    }

    /// The tool count of each server the gateway has a session to; every
    /// other server's count goes.
    pub fn set_tool_counts(&self, counts: &HashMap<String, usize>) {
        let mut st = self.inner.lock().expect("status lock");
        let mut changed = false;
        for (name, entry) in st.servers.iter_mut() {
            let next = counts.get(name).copied();
            if entry.tools != next {
                entry.tools = next;
                changed = true;
            }
        }
        drop(st);
        if changed {
            self.notify();
        }
    }

    pub fn set_clashes(&self, clashes: Vec<String>) {
        let mut st = self.inner.lock().expect("status lock");
        if st.clashes != clashes {
            for c in clashes.iter().filter(|c| !st.clashes.contains(c)) {
                tracing::warn!("name clash: {c}");
            }
            st.clashes = clashes;
            drop(st);
            self.notify();
        }
    }

    pub fn set_engine(&self, engine: EngineStatus) {
        let mut st = self.inner.lock().expect("status lock");
        if st.engine != engine {
            match &engine.error {
                None => tracing::info!("container engine reachable"),
                Some(e) => tracing::warn!("container engine not reachable: {e}"),
            }
            st.engine = engine;
            drop(st);
            self.notify();
        }
    }

    pub fn set_catalog(&self, catalog: CatalogStatus) {
        let mut st = self.inner.lock().expect("status lock");
        if st.catalog != catalog {
            st.catalog = catalog;
            self.notify();
        }
    }

    /// Writes the status file after every change until the store is dropped
    /// by everyone else. A file that cannot be written is reported once.
    pub async fn write_loop(self, path: PathBuf) {
        let mut reported = false;
        let mut last = String::new();
        let mut changed = self.subscribe();
        loop {
            let json = serde_json::to_string_pretty(&self.snapshot()).expect("status serialises");
            if json != last {
                match write_atomic(&path, json.as_bytes()).await {
                    Ok(()) => {
                        last = json;
                        reported = false;
                    }
                    Err(e) if !reported => {
                        tracing::warn!(path = %path.display(), error = %e,
                            "cannot write the status file; status stays available in the logs");
                        reported = true;
                    }
                    Err(_) => {}
                }
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Writes `bytes` to a temp file beside `path` and renames it over `path`, so
/// a reader never sees a half-written file.
pub async fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_predicates() {
        use Phase::*;
        for p in [
            Pending,
            Creating,
            Running,
            CrashLoopBackOff,
            ImagePullBackOff,
            Invalid,
            Conflict,
            Removing,
            Remote,
            Unsupported,
        ] {
            let flags = (p.is_running(), p.is_failing(), p.is_progressing());
            let expect = match p {
                Running => (true, false, false),
                CrashLoopBackOff | ImagePullBackOff | Invalid | Conflict => (false, true, false),
                Pending | Creating | Removing => (false, false, true),
                Remote | Unsupported => (false, false, false),
            };
            assert_eq!(flags, expect, "{p:?}");
        }
    }

    #[test]
    fn transition_time_changes_only_with_the_phase() {
        let s = StatusStore::new("f");
        s.update("a", Update::phase(Phase::Creating, "x"));
        let t0 = s.server("a").unwrap().last_transition_time;
        s.update("a", Update::phase(Phase::Creating, "y"));
        assert_eq!(s.server("a").unwrap().last_transition_time, t0);
        s.update("a", Update::phase(Phase::Running, "up"));
        assert_ne!(s.server("a").unwrap().last_transition_time, t0);
    }

    #[test]
    fn serialises_with_camel_case_and_phase_names() {
        let s = StatusStore::new("f");
        s.update("a", Update::phase(Phase::CrashLoopBackOff, "m").restarts(3));
        let json = serde_json::to_value(s.snapshot()).unwrap();
        assert_eq!(json["servers"]["a"]["phase"], "CrashLoopBackOff");
        assert_eq!(json["servers"]["a"]["restartCount"], 3);
        assert!(json["servers"]["a"]["lastTransitionTime"].is_string());
    }

    #[tokio::test]
    async fn write_atomic_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        write_atomic(&p, b"one").await.unwrap();
        write_atomic(&p, b"two").await.unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
