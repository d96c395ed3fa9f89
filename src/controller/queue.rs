//! A delay queue keyed by server name, like kube-runtime's scheduler: each
//! name has at most one pending entry, and when it is scheduled again the
//! earliest due time wins. So a retry, a resync and an engine event for the
//! same server collapse into one reconcile instead of piling up timers. A
//! name is never handed to two workers at once; one scheduled while it is
//! being worked on is held back (with its earliest due time) until that work
//! is done.
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Default)]
struct State {
    /// Due time of every pending name; `by_due` is the same set ordered by time.
    due: HashMap<String, Instant>,
    by_due: BTreeSet<(Instant, String)>,
    /// Names being worked on, with the due time of a schedule that came meanwhile.
    active: HashMap<String, Option<Instant>>,
}

impl State {
    /// Schedules `name` at `at` unless it is already due earlier.
    fn schedule(&mut self, name: &str, at: Instant) -> bool {
        if let Some(held) = self.active.get_mut(name) {
            *held = Some(held.map_or(at, |h| h.min(at)));
            return false;
        }
        match self.due.get(name) {
            Some(&old) if old <= at => false,
            old => {
                if let Some(old) = old {
                    self.by_due.remove(&(*old, name.to_string()));
                }
                self.due.insert(name.to_string(), at);
                self.by_due.insert((at, name.to_string()));
                true
            }
        }
    }
}

#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    /// Woken when an entry became due earlier than before.
    changed: Arc<Notify>,
}

impl WorkQueue {
    /// Schedules `name` now.
    pub fn add(&self, name: &str) {
        self.add_at(name, Instant::now());
    }

    /// Schedules `name` after `delay` (a back-off or a timed retry), unless
    /// it is already due sooner.
    pub fn add_after(&self, name: &str, delay: Duration) {
        self.add_at(name, Instant::now() + delay);
    }

    fn add_at(&self, name: &str, at: Instant) {
        let earlier = self.state.lock().expect("queue lock").schedule(name, at);
        if earlier {
            // One waiting worker is enough: it re-reads the earliest due time.
            self.changed.notify_one();
        }
    }

    /// How many names are pending (not counting those being worked on).
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.state.lock().expect("queue lock").due.len()
    }

    /// Waits for the next due name and marks it active.
    pub async fn next(&self) -> String {
        loop {
            let changed = self.changed.notified();
            let wake_at = {
                let mut st = self.state.lock().expect("queue lock");
                match st.by_due.first().cloned() {
                    Some((at, name)) if at <= Instant::now() => {
                        st.by_due.remove(&(at, name.clone()));
                        st.due.remove(&name);
                        st.active.insert(name.clone(), None);
                        let more = st.by_due.first().is_some_and(|(t, _)| *t <= Instant::now());
                        drop(st);
                        // Another worker may take the next due name.
                        if more {
                            self.changed.notify_one();
                        }
                        return name;
                    }
                    first => first.map(|(at, _)| at),
                }
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Marks `name` done; if it was scheduled meanwhile, it is pending again
    /// with the earliest of those due times.
    pub fn done(&self, name: &str) {
        let held = self.state.lock().expect("queue lock").active.remove(name);
        if let Some(Some(at)) = held {
            self.add_at(name, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_is_queued_once_and_never_worked_twice_at_once() {
        let q = WorkQueue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.next().await, "a");
        q.add("a"); // while active: held back, not queued
        assert_eq!(q.next().await, "b");
        assert_eq!(q.pending(), 0);
        q.done("a");
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test]
    async fn next_waits_for_an_add() {
        let q = WorkQueue::default();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add("x");
        assert_eq!(waiter.await.unwrap(), "x");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_resyncs_and_events_collapse_into_one_entry_the_earliest_wins() {
        let q = WorkQueue::default();
        let t0 = Instant::now();
        q.add_after("img", Duration::from_secs(10));
        q.add_after("img", Duration::from_secs(20)); // a later retry: ignored
        q.add_after("img", Duration::from_secs(5)); // an earlier one wins
        assert_eq!(q.pending(), 1);
        assert_eq!(q.next().await, "img");
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
        q.done("img");
        // Nothing else was left behind: the other two schedules are gone.
        let more = tokio::time::timeout(Duration::from_secs(60), q.next()).await;
        assert!(more.is_err(), "a second entry was pending");
    }

    #[tokio::test(start_paused = true)]
    async fn a_schedule_while_active_keeps_its_earliest_due_time() {
        let q = WorkQueue::default();
        q.add("a");
        assert_eq!(q.next().await, "a");
        let t0 = Instant::now();
        q.add_after("a", Duration::from_secs(30));
        q.add_after("a", Duration::from_secs(3));
        q.done("a");
        assert_eq!(q.next().await, "a");
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_entry_wakes_a_worker_waiting_for_a_later_one() {
        let q = WorkQueue::default();
        q.add_after("late", Duration::from_secs(100));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        let t0 = Instant::now();
        q.add_after("soon", Duration::from_secs(1));
        assert_eq!(waiter.await.unwrap(), "soon");
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
    }
}
