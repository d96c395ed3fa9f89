//! Coalesces upstream `*/list_changed` notifications: a storm of them from
//! one server leaves one mark, so the pool re-lists that server at most once
//! at a time, with at most one more re-listing queued behind it. Bounded by
//! the number of servers, whatever the upstreams send.
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The servers whose lists changed since they were last taken. Cheap to clone.
#[derive(Clone, Default)]
pub struct ListChanges(Arc<Inner>);

#[derive(Default)]
struct Inner {
    dirty: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl ListChanges {
    /// Marks `server` as changed (a no-op if it already is).
    pub fn mark(&self, server: &str) {
        let mut dirty = self.0.dirty.lock().expect("list changes lock");
        if !dirty.contains(server) {
            dirty.insert(server.to_string());
            self.0.wake.notify_one();
        }
    }

    /// Resolves once something was marked since the last wake-up.
    pub async fn marked(&self) {
        self.0.wake.notified().await
    }

    /// Takes the marked servers that are not `busy`; busy ones stay marked
    /// (that is the one queued re-listing).
    pub fn take(&self, busy: &HashSet<String>) -> Vec<String> {
        let mut dirty = self.0.dirty.lock().expect("list changes lock");
        let ready: Vec<String> = dirty
            .iter()
            .filter(|s| !busy.contains(*s))
            .cloned()
            .collect();
        for s in &ready {
            dirty.remove(s);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_storm_leaves_one_mark_and_busy_servers_stay_queued() {
        let changes = ListChanges::default();
        for _ in 0..20_000 {
            changes.mark("a");
        }
        changes.mark("b");
        assert!(changes.marked().now_or_never().is_some());
        assert!(
            changes.marked().now_or_never().is_none(),
            "one wake-up only"
        );
        let busy: HashSet<String> = ["a".to_string()].into();
        assert_eq!(changes.take(&busy), ["b"]);
        assert_eq!(changes.take(&HashSet::new()), ["a"]);
        assert!(changes.take(&HashSet::new()).is_empty());
    }
}
