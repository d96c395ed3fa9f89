//! A work queue keyed by server name, like controller-runtime's: a name is
//! queued at most once, never handed to two workers at once, and a name added
//! while it is being worked on is queued again when that work is done.
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    dirty: HashSet<String>,
}

#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
}

impl WorkQueue {
    pub fn add(&self, name: &str) {
        let mut st = self.state.lock().expect("queue lock");
        if st.active.contains(name) {
            st.dirty.insert(name.to_string());
        } else if st.queued.insert(name.to_string()) {
            st.queue.push_back(name.to_string());
            drop(st);
            self.ready.notify_one();
        }
    }

    /// Adds `name` after `delay` (a back-off or a timed retry).
    pub fn add_after(&self, name: &str, delay: Duration) {
        let q = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(&name);
        });
    }

    /// Waits for the next name and marks it active.
    pub async fn next(&self) -> String {
        loop {
            let ready = self.ready.notified();
            {
                let mut st = self.state.lock().expect("queue lock");
                if let Some(name) = st.queue.pop_front() {
                    st.queued.remove(&name);
                    st.active.insert(name.clone());
                    // Another waiter may be able to take the next name.
                    if !st.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return name;
                }
            }
            ready.await;
        }
    }

    /// Marks `name` done; it is queued again if it was added meanwhile.
    pub fn done(&self, name: &str) {
        let again = {
            let mut st = self.state.lock().expect("queue lock");
            st.active.remove(name);
            st.dirty.remove(name)
        };
        if again {
            self.add(name);
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
        q.add("a"); // while active: remembered, not queued
        assert_eq!(q.next().await, "b");
        {
            let st = q.state.lock().unwrap();
            assert!(st.queue.is_empty() && st.dirty.contains("a"));
        }
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
}
