//! A cache of what runs, fed by a backend's events, for a backend whose
//! events only name what changed (Docker's engine events). A server's list
//! is read from the engine once, then served from memory until an event, a
//! write of our own, or a break in the event stream says it may have
//! changed. A fleet-wide list (the resync's) always asks the engine, so a
//! missed event is caught there, as before, and it refills the cache.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{Capabilities, Container, PullPolicy, Runtime, Stdio};
use crate::Result;
use crate::catalog::ContainerServer;

pub struct Cached {
    inner: Arc<dyn Runtime>,
    state: Arc<Mutex<Entries>>,
}

#[derive(Default)]
struct Entries {
    by_server: HashMap<String, Vec<Container>>,
    /// Advanced by every invalidation: a list that was under way when it
    /// happened may have read the old state and is not kept.
    generation: u64,
}

impl Entries {
    fn invalidate(&mut self) {
        self.by_server.clear();
        self.generation += 1;
    }
}

impl Cached {
    pub fn new(inner: Arc<dyn Runtime>) -> Self {
        Cached {
            inner,
            state: Arc::default(),
        }
    }

    fn invalidate(&self) {
        self.state.lock().expect("cache lock").invalidate();
    }

    /// Runs a write; whatever it did, the cache no longer knows the state.
    async fn write<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let out = call.await;
        self.invalidate();
        out
    }
}

#[async_trait]
impl Runtime for Cached {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn list(&self, fleet: &str, server: Option<&str>) -> Result<Vec<Container>> {
        let generation = {
            let st = self.state.lock().expect("cache lock");
            if let Some(found) = server.and_then(|s| st.by_server.get(s)) {
                return Ok(found.clone());
            }
            st.generation
        };
        let found = self.inner.list(fleet, server).await?;
        let mut st = self.state.lock().expect("cache lock");
        if st.generation == generation {
            match server {
                Some(s) => {
                    st.by_server.insert(s.to_string(), found.clone());
                }
                None => {
                    // The whole fleet: every server's list, empty ones too
                    // are only known for servers asked about, so start over.
                    st.by_server.clear();
                    for c in &found {
                        let list = st.by_server.entry(c.server.clone()).or_default();
                        list.push(c.clone());
                    }
                }
            }
        }
        Ok(found)
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<()> {
        self.inner.ensure_image(image, policy).await
    }

    async fn create(&self, fleet: &str, server: &str, desired: &ContainerServer) -> Result<String> {
        self.write(self.inner.create(fleet, server, desired)).await
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.write(self.inner.start(id)).await
    }

    async fn remove(&self, id: &str, timeout: Duration) -> Result<()> {
        self.write(self.inner.remove(id, timeout)).await
    }

    async fn attach(&self, id: &str) -> Result<Stdio> {
        self.inner.attach(id).await
    }

    /// The backend's events, each of which (and any error) drops the cache
    /// before it is passed on, so the reconcile it wakes reads the engine.
    fn events(&self, fleet: &str) -> BoxStream<'static, Result<String>> {
        let state = self.state.clone();
        // Events may have been missed before this stream started.
        self.invalidate();
        self.inner
            .events(fleet)
            .map(move |ev| {
                state.lock().expect("cache lock").invalidate();
                ev
            })
            .boxed()
    }

    async fn finished_at(&self, id: &str) -> Result<Option<SystemTime>> {
        self.inner.finished_at(id).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::stream;
    use tokio::sync::{Notify, mpsc};

    use super::*;
    use crate::runtime::State;

    /// Counts lists; a list can be held until the test lets it finish.
    #[derive(Default)]
    struct Engine {
        lists: AtomicUsize,
        hold: Option<(Notify, Notify)>,
        events: Mutex<Option<mpsc::UnboundedReceiver<Result<String>>>>,
    }

    #[async_trait]
    impl Runtime for Engine {
        async fn list(&self, _: &str, server: Option<&str>) -> Result<Vec<Container>> {
            let n = self.lists.fetch_add(1, Ordering::SeqCst);
            if let Some((started, release)) = &self.hold {
                started.notify_one();
                release.notified().await;
            }
            let c = Container {
                id: format!("list{n}"),
                name: "n".into(),
                server: server.unwrap_or("a").into(),
                hash: "h".into(),
                state: State::Running,
                created: 0,
                restarts: 0,
            };
            Ok(vec![c])
        }
        async fn ensure_image(&self, _: &str, _: PullPolicy) -> Result<()> {
            Ok(())
        }
        async fn create(&self, _: &str, _: &str, _: &ContainerServer) -> Result<String> {
            Ok("new".into())
        }
        async fn start(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn remove(&self, _: &str, _: Duration) -> Result<()> {
            Ok(())
        }
        async fn attach(&self, _: &str) -> Result<Stdio> {
            unreachable!("not attached in these tests")
        }
        fn events(&self, _: &str) -> BoxStream<'static, Result<String>> {
            match self.events.lock().unwrap().take() {
                Some(rx) => {
                    stream::unfold(
                        rx,
                        |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
                    )
                    .boxed()
                }
                None => stream::empty().boxed(),
            }
        }
        async fn finished_at(&self, _: &str) -> Result<Option<SystemTime>> {
            Ok(None)
        }
    }

    fn lists(engine: &Engine) -> usize {
        engine.lists.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_servers_list_is_read_once_until_an_event_or_a_write() {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Arc::new(Engine {
            events: Mutex::new(Some(rx)),
            ..Default::default()
        });
        let cache = Cached::new(engine.clone());
        let mut events = cache.events("f");
        let first = cache.list("f", Some("a")).await.unwrap();
        assert_eq!(cache.list("f", Some("a")).await.unwrap(), first);
        assert_eq!(lists(&engine), 1, "the second list is served from memory");

        tx.send(Ok("a".into())).unwrap();
        assert_eq!(events.next().await.unwrap().unwrap(), "a");
        assert_ne!(cache.list("f", Some("a")).await.unwrap(), first);
        assert_eq!(lists(&engine), 2, "an event drops the cache");

        cache.start("x").await.unwrap();
        cache.list("f", Some("a")).await.unwrap();
        assert_eq!(lists(&engine), 3, "a write drops the cache");

        // The whole fleet always asks the engine, and refills the cache.
        cache.list("f", None).await.unwrap();
        cache.list("f", None).await.unwrap();
        assert_eq!(lists(&engine), 5);
        cache.list("f", Some("a")).await.unwrap();
        assert_eq!(lists(&engine), 5);
    }

    #[tokio::test]
    async fn a_list_overtaken_by_an_event_is_not_kept() {
        let engine = Arc::new(Engine {
            hold: Some((Notify::new(), Notify::new())),
            ..Default::default()
        });
        let cache = Arc::new(Cached::new(engine.clone()));
        let listing = tokio::spawn({
            let cache = cache.clone();
            async move { cache.list("f", Some("a")).await }
        });
        let (started, release) = engine.hold.as_ref().unwrap();
        started.notified().await;
        // An event arrives while the engine is answering the list.
        cache.invalidate();
        release.notify_one();
        listing.await.unwrap().unwrap();
        let again = tokio::spawn({
            let cache = cache.clone();
            async move { cache.list("f", Some("a")).await }
        });
        started.notified().await;
        release.notify_one();
        again.await.unwrap().unwrap();
        assert_eq!(lists(&engine), 2, "the overtaken list was read again");
    }
}
