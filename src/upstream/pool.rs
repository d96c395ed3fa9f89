//! Keeps one upstream session per ready server, in step with what the
//! controller runs: a new or replaced container gets a fresh session, a
//! removed one loses it, a session that stops answering is dropped and its
//! container reported unhealthy (the controller replaces it). Every change
//! republishes the aggregated [`Index`] that the gateway serves.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::inbound::Handler;
use super::relay::Relay;
use super::session::{Listing, Session};
use crate::catalog::Desired;
use crate::controller::Context;
use crate::gateway::aggregate::{Index, Source, ToolNames};
use crate::status::Phase;

#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// How long `initialize` + the first listing may take.
    pub handshake_timeout: Duration,
    /// How often every session is pinged.
    pub health_interval: Duration,
    pub ping_timeout: Duration,
    pub tool_names: ToolNames,
    /// Names the gateway itself serves; upstream tools with these names are prefixed.
    pub reserved: Vec<&'static str>,
}

/// What a session is connected to; a different key means a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// A container incarnation: a restart (same id) is a new session.
    Container { id: String, restarts: u32 },
    Remote {
        url: String,
        transport: String,
        headers: HashMap<String, String>,
    },
}

pub struct Live {
    key: Key,
    pub session: Session,
    /// Replaced when the server says its lists changed.
    listing: RwLock<Listing>,
}

impl Live {
    pub fn listing(&self) -> Listing {
        self.listing.read().expect("listing lock").clone()
    }
}

/// How long before a failed remote server is tried again. A failed container
/// is not retried: the controller replaces it, and the new one gets a session.
const REMOTE_RETRY: Duration = Duration::from_secs(10);

/// The run loop's own bookkeeping.
#[derive(Default)]
struct Attempts {
    connecting: HashMap<String, Key>,
    /// Keys that failed, with when they may be tried again (`None`: never).
    failed: HashMap<String, (Key, Option<Instant>)>,
    /// Failed handshakes in a row, by server. Each doubles the next one's
    /// time limit (up to 16x): on a starved machine, replacing servers that
    /// were merely slow would only add load.
    strikes: HashMap<String, u32>,
}

pub struct Pool {
    ctx: Arc<Context>,
    settings: PoolSettings,
    live: RwLock<HashMap<String, Arc<Live>>>,
    index: watch::Sender<Arc<Index>>,
    /// Client sessions, for what upstreams send them (shared by all sessions).
    relay: Arc<Relay>,
}

type Connected = (String, Key, Result<(Session, Listing), String>);

impl Pool {
    pub fn new(ctx: Arc<Context>, settings: PoolSettings) -> Arc<Self> {
        Arc::new(Pool {
            ctx,
            settings,
            live: RwLock::new(HashMap::new()),
            index: watch::Sender::new(Arc::new(Index::default())),
            relay: Arc::default(),
        })
    }

    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// The current index and its changes.
    pub fn index(&self) -> watch::Receiver<Arc<Index>> {
        self.index.subscribe()
    }

    pub fn session(&self, server: &str) -> Option<Arc<Live>> {
        self.live.read().expect("pool lock").get(server).cloned()
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Runs until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut status = self.ctx.status.subscribe();
        let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<String>();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Connected>();
        let mut attempts = Attempts::default();
        let mut health = tokio::time::interval(self.settings.health_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.sync(&mut attempts, &changed_tx, &done_tx);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = status.changed() => if r.is_err() { return },
                Some((server, key, result)) = done_rx.recv() => {
                    attempts.connecting.remove(&server);
                    match result {
                        Err(e) => {
                            *attempts.strikes.entry(server.clone()).or_default() += 1;
                            attempts.failed.insert(server.clone(), (key.clone(), retry_at(&key)));
                            if self.wanted().get(&server) == Some(&key) {
                                self.failed(&server, &key, &e);
                            }
                        }
                        Ok((session, listing)) => {
                            attempts.failed.remove(&server);
                            attempts.strikes.remove(&server);
                            self.connected(server, key, session, listing);
                        }
                    }
                }
                Some(server) = changed_rx.recv() => self.relist(&server).await,
                _ = health.tick() => {
                    for (server, key) in self.check_health().await {
                        attempts.failed.insert(server, (key.clone(), retry_at(&key)));
                    }
                }
            }
        }
    }

    /// The sessions the controller's state calls for, by server.
    fn wanted(&self) -> HashMap<String, Key> {
        let mut wanted = HashMap::new();
        let Some(desired) = self.ctx.desired() else {
            return wanted;
        };
        let status = self.ctx.status.snapshot();
        for (name, d) in &desired.servers {
            match d {
                Desired::Container(c) => {
                    let Some(s) = status.servers.get(name) else {
                        continue;
                    };
                    // Only a running container with the wanted spec.
                    if s.phase == Phase::Running
                        && s.spec_hash.as_deref() == Some(c.hash.as_str())
                        && let Some(id) = &s.container_id
                    {
                        wanted.insert(
                            name.clone(),
                            Key::Container {
                                id: id.clone(),
                                restarts: s.restart_count,
                            },
                        );
                    }
                }
                Desired::Remote {
                    url,
                    transport,
                    headers,
                    ..
                } => {
                    wanted.insert(
                        name.clone(),
                        Key::Remote {
                            url: url.clone(),
                            transport: transport.clone(),
                            headers: headers.clone().into_iter().collect(),
                        },
                    );
                }
                _ => {}
            }
        }
        wanted
    }

    /// Drops sessions that are no longer wanted and starts the missing ones.
    fn sync(
        &self,
        attempts: &mut Attempts,
        changed_tx: &mpsc::UnboundedSender<String>,
        done_tx: &mpsc::UnboundedSender<Connected>,
    ) {
        let wanted = self.wanted();
        let dropped: Vec<String> = {
            let mut live = self.live.write().expect("pool lock");
            let gone: Vec<String> = live
                .iter()
                .filter(|(name, l)| wanted.get(*name) != Some(&l.key))
                .map(|(name, _)| name.clone())
                .collect();
            for name in &gone {
                live.remove(name);
            }
            gone
        };
        for name in &dropped {
            tracing::info!(server = %name, "upstream session closed");
            self.ctx.status.set_ready(name, None);
        }
        if !dropped.is_empty() {
            self.publish();
        }
        let live = self.live.read().expect("pool lock");
        for (name, key) in wanted {
            let blocked = attempts
                .failed
                .get(&name)
                .is_some_and(|(k, retry)| *k == key && retry.is_none_or(|at| Instant::now() < at));
            if blocked
                || live.get(&name).is_some_and(|l| l.key == key)
                || attempts.connecting.get(&name) == Some(&key)
            {
                continue;
            }
            attempts.connecting.insert(name.clone(), key.clone());
            self.ctx
                .status
                .set_ready(&name, Some((false, "connecting".into())));
            let runtime = self.ctx.runtime.clone();
            let handler = Handler::new(&name, changed_tx.clone(), self.relay.clone());
            let done = done_tx.clone();
            let strikes = attempts.strikes.get(&name).copied().unwrap_or(0).min(4);
            let timeout = self.settings.handshake_timeout * 2u32.pow(strikes);
            tokio::spawn(async move {
                let result = connect(runtime.as_ref(), &key, handler, timeout).await;
                let _ = done.send((name, key, result));
            });
        }
    }

    fn connected(&self, server: String, key: Key, session: Session, listing: Listing) {
        if self.wanted().get(&server) != Some(&key) {
            return; // superseded while connecting
        }
        {
            {
                let tools = listing.tools.len();
                self.live.write().expect("pool lock").insert(
                    server.clone(),
                    Arc::new(Live {
                        key,
                        session,
                        listing: RwLock::new(listing),
                    }),
                );
                self.ctx.status.set_ready(
                    &server,
                    Some((true, format!("MCP session open, {tools} tools"))),
                );
                self.publish();
            }
        }
    }

    /// A session that cannot be opened or stopped answering: not ready, and
    /// for a container, the controller is told to replace it.
    fn failed(&self, server: &str, key: &Key, message: &str) {
        self.ctx
            .status
            .set_ready(server, Some((false, message.to_string())));
        match key {
            Key::Container { id, .. } => self.ctx.report_unhealthy(server, id, message),
            // A remote server is retried at the next health tick.
            Key::Remote { .. } => {}
        }
    }

    async fn relist(&self, server: &str) {
        let Some(live) = self.session(server) else {
            return;
        };
        match live.session.list(self.settings.handshake_timeout).await {
            Ok(listing) => {
                *live.listing.write().expect("listing lock") = listing;
                self.publish();
            }
            Err(e) => tracing::warn!(server, error = %e, "re-listing after list_changed failed"),
        }
    }

    /// Pings every session; returns the ones that failed (already dropped).
    async fn check_health(&self) -> Vec<(String, Key)> {
        let all: Vec<(String, Arc<Live>)> = self
            .live
            .read()
            .expect("pool lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let timeout = self.settings.ping_timeout;
        let results = join_all(all.iter().map(|(_, l)| async move {
            if l.session.is_closed() {
                return Err("the session closed".to_string());
            }
            l.session
                .ping(timeout)
                .await
                .map_err(|e| format!("ping: {e}"))
        }))
        .await;
        let mut failed = Vec::new();
        for ((server, live), r) in all.into_iter().zip(results) {
            if let Err(e) = r {
                let mut map = self.live.write().expect("pool lock");
                if map.get(&server).is_some_and(|l| Arc::ptr_eq(l, &live)) {
                    map.remove(&server);
                }
                drop(map);
                self.failed(&server, &live.key, &e);
                failed.push((server, live.key.clone()));
            }
        }
        if !failed.is_empty() {
            self.publish();
        }
        failed
    }

    /// Rebuilds the index from the live sessions and publishes it if it changed.
    fn publish(&self) {
        let desired = self.ctx.desired();
        let mut listings: Vec<(String, Listing)> = self
            .live
            .read()
            .expect("pool lock")
            .iter()
            .map(|(name, l)| (name.clone(), l.listing()))
            .collect();
        listings.sort_by(|a, b| a.0.cmp(&b.0));
        let prefix = |name: &str| {
            desired
                .as_ref()
                .and_then(|d| d.servers.get(name))
                .and_then(|d| match d {
                    Desired::Container(c) => c.prefix.clone(),
                    Desired::Remote { prefix, .. } => prefix.clone(),
                    _ => None,
                })
        };
        let prefixes: Vec<Option<String>> = listings.iter().map(|(n, _)| prefix(n)).collect();
        let sources: Vec<Source<'_>> = listings
            .iter()
            .zip(&prefixes)
            .map(|((name, listing), prefix)| Source {
                server: name,
                prefix: prefix.as_deref(),
                listing,
            })
            .collect();
        let index = Index::build(&sources, self.settings.tool_names, &self.settings.reserved);
        self.ctx.status.set_clashes(index.clashes.clone());
        self.index.send_replace(Arc::new(index));
    }
}

fn retry_at(key: &Key) -> Option<Instant> {
    matches!(key, Key::Remote { .. }).then(|| Instant::now() + REMOTE_RETRY)
}

async fn connect(
    runtime: &dyn crate::runtime::Runtime,
    key: &Key,
    handler: Handler,
    timeout: Duration,
) -> Result<(Session, Listing), String> {
    let session = match key {
        Key::Container { id, .. } => {
            let stdio = runtime.attach(id).await.map_err(|e| e.to_string())?;
            Session::stdio(stdio, handler, timeout).await
        }
        Key::Remote {
            url,
            transport,
            headers,
        } => Session::remote(url, transport, headers, handler, timeout).await,
    }
    .map_err(|e| e.to_string())?;
    let listing = session
        .list(timeout)
        .await
        .map_err(|e| format!("listing: {e}"))?;
    Ok((session, listing))
}
