//! What runs, as the engine's events say, so that a reconcile reads memory
//! instead of listing the engine (the Docker counterpart of kube-runtime's
//! reflector store).
//!
//! Docker's events carry no resource version to order them by, so the order
//! is made here: every state the store holds was read from the engine while
//! holding [`Store::writing`], and applied before letting go of it. A state
//! applied later was therefore read later, and the store never goes back to
//! an older one. Our own writes follow the same rule, so the next reconcile
//! sees them before the engine's events about them arrive.
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::runtime::Container;

#[derive(Default)]
pub(super) struct Store {
    state: Mutex<Inner>,
    /// Held from an engine read to its application (see the module docs).
    writing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Inner {
    /// False until a full list has been read with the event stream open, and
    /// again as soon as that stream breaks: then reads go to the engine.
    live: bool,
    /// The fleet the events are about (one per process).
    fleet: String,
    by_id: HashMap<String, Container>,
}

impl Store {
    /// The fleet's (or one server's) containers, or `None` when the store
    /// does not follow the engine right now.
    pub fn read(&self, fleet: &str, server: Option<&str>) -> Option<Vec<Container>> {
        let st = self.state.lock().expect("store lock");
        (st.live && st.fleet == fleet).then(|| {
            (st.by_id.values())
                .filter(|c| server.is_none_or(|s| c.server == s))
                .cloned()
                .collect()
        })
    }

    /// Takes the order lock; hold it from an engine read to its `put`/`forget`.
    pub async fn writing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// A full list, read after the event stream was opened: from here on
    /// the events keep it current. Returns the servers whose containers
    /// differ from what the store held.
    pub fn replace(&self, fleet: &str, all: Vec<Container>) -> BTreeSet<String> {
        let mut st = self.state.lock().expect("store lock");
        let fresh: HashMap<String, Container> =
            all.into_iter().map(|c| (c.id.clone(), c)).collect();
        let changed = (st.by_id.values().chain(fresh.values()))
            .filter(|c| st.by_id.get(&c.id) != fresh.get(&c.id))
            .map(|c| c.server.clone())
            .collect();
        st.by_id = fresh;
        st.fleet = fleet.to_string();
        st.live = true;
        changed
    }

    /// The event stream broke or ended: events may be missed from now on.
    pub fn lost(&self) {
        self.state.lock().expect("store lock").live = false;
    }

    pub fn put(&self, c: Container) {
        let mut st = self.state.lock().expect("store lock");
        st.by_id.insert(c.id.clone(), c);
    }

    /// A container just created: what the engine would say, unless an event
    /// about it has been applied already.
    pub fn created(&self, c: Container) {
        let mut st = self.state.lock().expect("store lock");
        st.by_id.entry(c.id.clone()).or_insert(c);
    }

    pub fn forget(&self, id: &str) {
        self.state.lock().expect("store lock").by_id.remove(id);
    }
}

/// Marks the store as not following the engine when the event stream that
/// feeds it is dropped.
pub(super) struct Following(pub std::sync::Arc<Store>);

impl Drop for Following {
    fn drop(&mut self) {
        self.0.lost();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::State;

    fn ctr(id: &str, server: &str, state: State) -> Container {
        Container {
            id: id.into(),
            name: format!("n-{server}"),
            server: server.into(),
            hash: "h".into(),
            state,
            created: 0,
            restarts: 0,
        }
    }

    #[test]
    fn nothing_is_served_until_a_full_list_and_after_the_stream_breaks() {
        let store = std::sync::Arc::new(Store::default());
        assert_eq!(store.read("f", None), None);
        store.replace("f", vec![ctr("1", "a", State::Running)]);
        assert_eq!(store.read("f", Some("a")).unwrap().len(), 1);
        assert_eq!(store.read("f", Some("b")).unwrap(), vec![]);
        drop(Following(store.clone()));
        assert_eq!(store.read("f", Some("a")), None);
    }

    #[test]
    fn a_relist_names_the_servers_it_changed() {
        let store = Store::default();
        store.replace(
            "f",
            vec![
                ctr("1", "a", State::Running),
                ctr("2", "b", State::Running),
                ctr("3", "c", State::Running),
            ],
        );
        let changed = store.replace(
            "f",
            vec![
                ctr("1", "a", State::Running),
                ctr("2", "b", State::Exited(Some(137))),
                ctr("4", "d", State::Created),
            ],
        );
        assert_eq!(
            changed,
            BTreeSet::from(["b".into(), "c".into(), "d".into()])
        );
    }

    #[test]
    fn a_create_does_not_overwrite_an_event_applied_before_it() {
        let store = Store::default();
        store.replace("f", vec![]);
        store.put(ctr("1", "a", State::Exited(Some(1))));
        store.created(ctr("1", "a", State::Created));
        assert_eq!(
            store.read("f", None).unwrap()[0].state,
            State::Exited(Some(1))
        );
        store.created(ctr("2", "b", State::Created));
        store.forget("1");
        assert_eq!(
            store.read("f", None).unwrap(),
            vec![ctr("2", "b", State::Created)]
        );
    }
}
