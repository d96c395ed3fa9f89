//! What wakes the controller: changes in the config directory, the engine's
//! events for this fleet's containers, and a periodic resync.
//!
//! A file renamed into place (write-then-rename) is complete by construction,
//! so it is read at once. Anything else (an in-place write, which a reader can
//! see half-done) is read after 200 ms without further changes.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::catalog::{CATALOG_FILE, CONFIG_FILE, REGISTRY_FILE, SECRETS_FILE};
use crate::runtime::Runtime;
use crate::{Error, Result};

/// Why the controller woke. Reconciles do not care; this only says how much
/// to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Re-read the config directory, then look at every server.
    ConfigChanged,
    /// Look at every server (resync, or events may have been missed).
    All,
    /// Look at one server.
    Server(String),
}

const INPUTS: [&str; 4] = [CATALOG_FILE, REGISTRY_FILE, CONFIG_FILE, SECRETS_FILE];

/// Both watchers of the config directory; events stop when it is dropped.
pub struct DirWatcher {
    _debounced: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    _renames: notify::RecommendedWatcher,
}

fn is_input(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| INPUTS.contains(&n))
}

/// Watches `dir` (not the files: a rename replaces the file's inode) and sends
/// `ConfigChanged` when one of the input files was touched. Keep the returned
/// watcher alive for as long as events are wanted.
pub fn config_dir(dir: &Path, tx: UnboundedSender<Trigger>) -> Result<DirWatcher> {
    let fast = tx.clone();
    let mut renames = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(e) = res {
            let renamed_in = matches!(
                e.kind,
                EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
            );
            if renamed_in && e.paths.iter().any(|p| is_input(p)) {
                let _ = fast.send(Trigger::ConfigChanged);
            }
        }
    })
    .map_err(|e| Error::runtime("watch config directory", e))?;
    renames
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| Error::io(dir, std::io::Error::other(e.to_string())))?;
    let handler = move |res: DebounceEventResult| match res {
        Ok(events) => {
            let relevant = events
                .iter()
                .flat_map(|e| e.paths.iter())
                .any(|p| is_input(p));
            if relevant {
                let _ = tx.send(Trigger::ConfigChanged);
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "config directory watch");
            }
            // Something may have been missed: read everything again.
            let _ = tx.send(Trigger::ConfigChanged);
        }
    };
    let mut debouncer = new_debouncer(Duration::from_millis(200), None, handler)
        .map_err(|e| Error::runtime("watch config directory", e))?;
    debouncer
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| Error::io(dir, std::io::Error::other(e.to_string())))?;
    Ok(DirWatcher {
        _debounced: debouncer,
        _renames: renames,
    })
}

/// Forwards engine events for this fleet as `Server` triggers, reconnecting
/// with a growing delay; after a reconnect everything is looked at, since
/// events may have been lost in between.
pub async fn engine_events(
    runtime: Arc<dyn Runtime>,
    fleet: String,
    tx: UnboundedSender<Trigger>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        let mut events = runtime.events(&fleet);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = events.next() => next,
            };
            match next {
                Some(Ok(server)) => {
                    delay = Duration::from_millis(500);
                    if tx.send(Trigger::Server(server)).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "engine event stream failed; reconnecting");
                    break;
                }
                None => break,
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
        let _ = tx.send(Trigger::All);
    }
}
