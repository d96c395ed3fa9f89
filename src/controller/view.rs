//! What runs, as the controller knows it: the typed view the upstream pool
//! follows (a `watch` channel), so the pool never reads the human-facing
//! status back. One entry per server that can be talked to right now.
use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::catalog::{ContainerServer, Desired, RemoteUrl, Secret};

/// How to reach one server; a different value means a new MCP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A running container with the wanted spec. A restart (same id, one
    /// more restart) is a new incarnation.
    Container {
        id: String,
        restarts: u32,
        spec_hash: String,
    },
    /// A remote server, reached over `transport` (`sse` or streamable HTTP).
    Remote {
        url: RemoteUrl,
        transport: String,
        headers: BTreeMap<String, Secret>,
    },
}

impl Upstream {
    /// The container `id` running `c`'s spec, after `restarts` restarts.
    pub fn running(id: &str, restarts: u32, c: &ContainerServer) -> Self {
        Upstream::Container {
            id: id.to_string(),
            restarts,
            spec_hash: c.hash.clone(),
        }
    }

    /// A remote catalog entry (`None` for anything else).
    pub fn remote(d: &Desired) -> Option<Self> {
        match d {
            Desired::Remote {
                url,
                transport,
                headers,
                ..
            } => Some(Upstream::Remote {
                url: url.clone(),
                transport: transport.clone(),
                headers: headers.clone(),
            }),
            _ => None,
        }
    }
}

pub type Servers = Arc<BTreeMap<String, Upstream>>;

/// The publishing side; readers [`View::subscribe`].
#[derive(Debug)]
pub struct View(watch::Sender<Servers>);

impl Default for View {
    fn default() -> Self {
        View(watch::Sender::new(Arc::default()))
    }
}

impl View {
    pub fn subscribe(&self) -> watch::Receiver<Servers> {
        self.0.subscribe()
    }

    pub fn get(&self) -> Servers {
        self.0.borrow().clone()
    }

    /// Sets (or with `None`, removes) one server's entry; readers are woken
    /// only when something changed.
    pub fn set(&self, server: &str, upstream: Option<Upstream>) {
        self.0.send_if_modified(|all| {
            if all.get(server) == upstream.as_ref() {
                return false;
            }
            let map = Arc::make_mut(all);
            match upstream {
                Some(u) => map.insert(server.to_string(), u),
                None => map.remove(server),
            };
            true
        });
    }

    /// Removes `server` only if it is still the container `id`.
    pub fn remove_container(&self, server: &str, id: &str) {
        let current = self.0.borrow().get(server).cloned();
        if matches!(current, Some(Upstream::Container { id: ref c, .. }) if c == id) {
            self.set(server, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str) -> Upstream {
        Upstream::Container {
            id: id.into(),
            restarts: 0,
            spec_hash: "h".into(),
        }
    }

    #[test]
    fn readers_wake_only_on_change() {
        let view = View::default();
        let mut rx = view.subscribe();
        view.set("a", Some(container("1")));
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        view.set("a", Some(container("1")));
        assert!(!rx.has_changed().unwrap());
        view.remove_container("a", "2");
        assert!(!rx.has_changed().unwrap());
        view.remove_container("a", "1");
        assert!(rx.has_changed().unwrap());
        assert!(view.get().is_empty());
    }
}
