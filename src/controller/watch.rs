//! What wakes the controller: changes in the config directory, the engine's
//! events for this fleet's containers, and a periodic resync.
//!
//! Only changes wake it: writes, creates, renames and removals of the input
//! files. Opens and reads are not changes (the controller's own reads of the
//! catalog used to wake it again, forever). A file renamed into place
//! (write-then-rename) is complete by construction, so it is read at once; an
//! in-place write, which a reader can see half-done, is read once it has been
//! left alone for a moment (the controller's loop does that debounce).
//!
//! A Kubernetes volume (ConfigMap, Secret, projected) never changes its files:
//! kubelet publishes a new version by renaming a symlink over `..data`, so
//! that rename counts as the whole directory replaced (read through `..data`
//! by [`crate::catalog::snapshot`], never half-swapped).
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::catalog::snapshot::DATA_LINK;
use crate::catalog::{CATALOG_FILE, CONFIG_FILE, REGISTRY_FILE, SECRETS_FILE};
use crate::runtime::Runtime;
use crate::{Error, Result};

/// Why the controller woke. Reconciles do not care; this only says how much
/// to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An input file was written in place (or removed): read it once the
    /// writes stop.
    ConfigWritten,
    /// An input file was renamed into place, or events may have been lost:
    /// read it now.
    ConfigReplaced,
    /// Look at every server (resync, or events may have been missed).
    All,
    /// Look at one server.
    Server(String),
    /// The engine's event stream broke (the engine may be restarting).
    EngineLost,
    /// The controller's own timer: read the config directory again (after a
    /// debounce, or a half-written file).
    ReadAgain,
}

const INPUTS: [&str; 5] = [
    CATALOG_FILE,
    REGISTRY_FILE,
    CONFIG_FILE,
    SECRETS_FILE,
    DATA_LINK,
];

fn is_input(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| INPUTS.contains(&n))
}

/// What an event means for the inputs; `None` for anything that changes
/// nothing (opens, reads, access-time updates).
pub fn classify(kind: &EventKind) -> Option<Trigger> {
    match kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(Trigger::ConfigReplaced),
        // inotify reports a rename as `to` and again as `from+to`: once is enough.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => None,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Trigger::ConfigWritten),
        EventKind::Access(_)
        | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => None,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => {
            Some(Trigger::ConfigWritten)
        }
        EventKind::Any | EventKind::Other => Some(Trigger::ConfigWritten),
    }
}

/// Watches `dir` (not the files: a rename replaces the file's inode) and
/// reports changes to the input files. Events stop when the watcher is dropped.
pub fn config_dir(dir: &Path, tx: UnboundedSender<Trigger>) -> Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let trigger = match res {
            Ok(e) if e.paths.iter().any(|p| is_input(p)) => classify(&e.kind),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "config directory watch");
                // Something may have been missed: read everything again.
                Some(Trigger::ConfigReplaced)
            }
        };
        if let Some(t) = trigger {
            let _ = tx.send(t);
        }
    })
    .map_err(|e| Error::runtime("watch config directory", e))?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| Error::io(dir, std::io::Error::other(e.to_string())))?;
    Ok(watcher)
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
        let _ = tx.send(Trigger::EngineLost);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        // Capped low: the first reconnect that works also resumes reconciling.
        delay = (delay * 2).min(Duration::from_secs(5));
        let _ = tx.send(Trigger::All);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind};

    #[test]
    fn reads_are_not_changes_and_writes_renames_removals_are() {
        for quiet in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
        ] {
            assert_eq!(classify(&quiet), None, "{quiet:?}");
        }
        for written in [
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ] {
            assert_eq!(
                classify(&written),
                Some(Trigger::ConfigWritten),
                "{written:?}"
            );
        }
        assert_eq!(
            classify(&EventKind::Modify(ModifyKind::Name(RenameMode::To))),
            Some(Trigger::ConfigReplaced)
        );
    }

    #[tokio::test]
    async fn reading_the_catalog_wakes_nothing_and_writing_it_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CATALOG_FILE);
        std::fs::write(&path, "registry: {}\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _w = config_dir(dir.path(), tx).unwrap();
        for _ in 0..20 {
            std::fs::read_to_string(&path).unwrap();
        }
        // A rename after the reads marks the moment: events arrive in order,
        // so had the reads woken anything, that would come first.
        let tmp = dir.path().join(".tmp");
        std::fs::write(&tmp, "registry: {}\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(next(&mut rx).await, Trigger::ConfigReplaced);
        std::fs::write(&path, "registry: {}\n# changed\n").unwrap();
        // One rename, one trigger: the next is the write.
        assert_eq!(next(&mut rx).await, Trigger::ConfigWritten);
    }

    /// Kubelet's publication of a new version touches none of the visible
    /// names, only `..data`: that rename alone must wake the controller.
    #[tokio::test]
    async fn a_kubelet_swap_of_data_is_a_replacement() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for v in ["..2026_11_23_10_00_00.1", "..2026_11_23_10_00_01.2"] {
            std::fs::create_dir(d.join(v)).unwrap();
            std::fs::write(d.join(v).join(CATALOG_FILE), "registry: {}\n").unwrap();
        }
        symlink("..2026_11_23_10_00_00.1", d.join(DATA_LINK)).unwrap();
        symlink("..data/docker-mcp.yaml", d.join(CATALOG_FILE)).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _w = config_dir(d, tx).unwrap();
        symlink("..2026_11_23_10_00_01.2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join(DATA_LINK)).unwrap();
        std::fs::remove_dir_all(d.join("..2026_11_23_10_00_00.1")).unwrap();
        assert_eq!(next(&mut rx).await, Trigger::ConfigReplaced);
        // Neither the temporary link nor the old version's removal is news:
        // the next event is the write after them.
        std::fs::write(d.join("marker"), "").unwrap();
        std::fs::write(d.join(SECRETS_FILE), "A=1\n").unwrap();
        assert_eq!(next(&mut rx).await, Trigger::ConfigWritten);
    }

    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Trigger>) -> Trigger {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no event")
            .unwrap()
    }
}
