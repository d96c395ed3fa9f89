//! Keeps one upstream session per reachable server, in step with the
//! controller's [`View`](crate::controller::view::View): a new or replaced
//! container gets a fresh session, a removed one loses it, a session that
//! stops answering is dropped and its container reported unhealthy (the
//! controller replaces it); a remote server that fails is retried with
//! back-off. Every change republishes the aggregated [`Index`].
//!
//! A remote server also gets a session per user on the user's first request
//! ([`UserSessions`], bounded), telling it who the user is; its listing,
//! index and health come from the one session above, which carries no user.
//!
//! Every wait has a deadline: a whole connect (attach or HTTP connect,
//! handshake, first listing) gets the handshake timeout, doubled after each
//! failure in a row (up to 16x); a re-listing gets the handshake timeout; a
//! ping the ping timeout.
//!
//! `list_changed` storms are bounded: per server, at most one re-listing runs,
//! at most one more waits ([`ListChanges`]), and the next starts no sooner than
//! [`RELIST_GAP`] after the last ended, so a storm costs a few re-listings a
//! second however many notifications it sends.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use rmcp::model::ClientRequest;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::attempts::Attempts;
use super::identity::{self, SharedSecret};
use super::inbound::Handler;
use super::index::{Index, Source, ToolNames};
use super::raw::Reply;
use super::relay::Relay;
use super::relist::ListChanges;
use super::session::{Failure, Forward, Listing, Session};
use super::users::{self, UserSessions};
use crate::catalog::{Desired, url};
use crate::controller::view::{Servers, Upstream};
use crate::controller::{Context, sleep_until};
use crate::identity::Identity;
use crate::supervise::catch;

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
    /// Sessions per remote server, one per user ([`UserSessions`]).
    pub user_sessions: usize,
    /// How long a user's session may stay unused before it is closed.
    pub user_idle: Duration,
    /// Sent to remote servers with every user's identity, if set.
    pub identity_secret: Option<SharedSecret>,
}

/// A ready server: the session it is listed, health-checked and (for a
/// container, or a request on no one's behalf) called over, and for a remote
/// server the sessions of each user.
pub struct Live {
    key: Upstream,
    pub session: Session,
    /// Replaced when the server says its lists changed.
    listing: RwLock<Listing>,
    /// For a remote server: a session per user, carrying who it is.
    users: Option<UserSessions>,
}

impl Live {
    pub fn listing(&self) -> Listing {
        self.listing.read().expect("listing lock").clone()
    }

    /// Forwards a client's request on behalf of `identity`: to a remote
    /// server over that user's own session, which tells the server who it
    /// is; otherwise over the server's one session (a container's stdio
    /// carries no identity).
    pub async fn forward(
        &self,
        identity: Option<&Identity>,
        request: ClientRequest,
        forward: Forward,
    ) -> Result<Reply, Failure> {
        match (&self.users, identity) {
            (Some(users), Some(who)) => {
                let session = users.get(who).await.map_err(Failure::NoSession)?;
                session.forward(request, forward).await
            }
            _ => self.session.forward(request, forward).await,
        }
    }
}

/// Least time between two re-listings of one server.
pub const RELIST_GAP: Duration = Duration::from_millis(250);

pub struct Pool {
    ctx: Arc<Context>,
    settings: PoolSettings,
    live: RwLock<HashMap<String, Arc<Live>>>,
    index: watch::Sender<Arc<Index>>,
    changes: ListChanges,
    /// Client sessions, for what upstreams send them (shared by all sessions).
    relay: Arc<Relay>,
}

type Connected = (String, Upstream, Result<(Session, Listing), String>);
type Relisted = (String, Arc<Live>, Result<Listing, String>);

impl Pool {
    pub fn new(ctx: Arc<Context>, settings: PoolSettings) -> Arc<Self> {
        Arc::new(Pool {
            ctx,
            settings,
            live: RwLock::new(HashMap::new()),
            index: watch::Sender::new(Arc::new(Index::default())),
            changes: ListChanges::default(),
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
        let mut view = self.ctx.view.subscribe();
        let mut connects: JoinSet<Connected> = JoinSet::new();
        let mut relists: JoinSet<Relisted> = JoinSet::new();
        let mut gaps: JoinSet<String> = JoinSet::new();
        let mut attempts = Attempts::default();
        let mut health = tokio::time::interval(self.settings.health_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.sync(&mut attempts, &mut connects);
            self.start_relists(&mut attempts, &mut relists);
            let retry = attempts.next_retry();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = view.changed() => if r.is_err() { return },
                Some(done) = connects.join_next() => match done {
                    Ok(done) => self.on_connected(&mut attempts, done),
                    Err(e) => tracing::error!(error = %e, "an upstream connect task was lost"),
                },
                Some(done) = relists.join_next() => match done {
                    Ok((server, live, result)) => {
                        self.on_relisted(&server, &live, result);
                        gaps.spawn(async move {
                            tokio::time::sleep(RELIST_GAP).await;
                            server
                        });
                    }
                    Err(e) => tracing::error!(error = %e, "an upstream re-listing task was lost"),
                },
                Some(gap) = gaps.join_next() => {
                    if let Ok(server) = gap {
                        attempts.relisting.remove(&server);
                    }
                }
                _ = self.changes.marked() => {}
                _ = sleep_until(retry) => {}
                _ = health.tick() => {
                    for (server, key, error) in self.check_health().await {
                        attempts.fail(&server, key, error);
                    }
                }
            }
        }
    }

    fn on_connected(&self, attempts: &mut Attempts, (server, key, result): Connected) {
        attempts.connecting.remove(&server);
        match result {
            Err(e) => {
                if self.wanted().get(&server) == Some(&key) {
                    self.failed(&server, &key, &e);
                }
                attempts.fail(&server, key, e);
            }
            Ok((session, listing)) => {
                attempts.failed.remove(&server);
                attempts.strikes.remove(&server);
                self.connected(server, key, session, listing);
            }
        }
    }

    /// The sessions the controller's view calls for, by server.
    fn wanted(&self) -> Servers {
        self.ctx.view.get()
    }

    /// Drops sessions that are no longer wanted and starts the missing ones.
    fn sync(&self, attempts: &mut Attempts, connects: &mut JoinSet<Connected>) {
        let wanted = self.wanted();
        let desired = self.ctx.desired();
        attempts.forget_removed(|s| desired.as_ref().is_some_and(|d| d.servers.contains_key(s)));
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
        for (name, key) in wanted.iter() {
            let last = attempts.failed.get(name).filter(|f| f.key == *key);
            let blocked = last.is_some_and(|f| f.retry_at.is_none_or(|at| Instant::now() < at));
            if blocked
                || live.get(name).is_some_and(|l| l.key == *key)
                || attempts.connecting.get(name) == Some(key)
            {
                continue;
            }
            let message = match last {
                Some(f) => format!("connecting again (last attempt: {})", f.error),
                None => "connecting".to_string(),
            };
            self.ctx.status.set_ready(name, Some((false, message)));
            attempts.connecting.insert(name.clone(), key.clone());
            let runtime = self.ctx.runtime.clone();
            let secret = self.settings.identity_secret.clone();
            let handler = Handler::new(name, self.changes.clone(), self.relay.clone());
            let strikes = attempts.strikes.get(name).copied().unwrap_or(0).min(4);
            let (name, key) = (name.clone(), key.clone());
            let timeout = self.settings.handshake_timeout * 2u32.pow(strikes);
            connects.spawn(async move {
                let work = tokio::time::timeout(
                    timeout,
                    connect(runtime.as_ref(), &key, secret.as_ref(), handler, timeout),
                );
                let result = match catch(work).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err(format!(
                        "no MCP session within the handshake timeout ({}s): the server \
                         accepted nothing or never answered `initialize`",
                        timeout.as_secs_f32()
                    )),
                    Err(panic) => Err(format!("internal error while connecting: {panic}")),
                };
                (name, key, result)
            });
        }
    }

    fn connected(&self, server: String, key: Upstream, session: Session, listing: Listing) {
        if self.wanted().get(&server) != Some(&key) {
            return; // superseded while connecting
        }
        let tools = listing.tools.len();
        let users = matches!(key, Upstream::Remote { .. }).then(|| {
            UserSessions::new(users::Remote {
                server: server.clone(),
                key: key.clone(),
                secret: self.settings.identity_secret.clone(),
                changes: self.changes.clone(),
                relay: self.relay.clone(),
                limit: self.settings.user_sessions,
                idle: self.settings.user_idle,
                timeout: self.settings.handshake_timeout,
            })
        });
        self.live.write().expect("pool lock").insert(
            server.clone(),
            Arc::new(Live {
                key,
                session,
                listing: RwLock::new(listing),
                users,
            }),
        );
        self.ctx.status.set_ready(
            &server,
            Some((true, format!("MCP session open, {tools} tools"))),
        );
        self.publish();
    }

    /// A session that cannot be opened or stopped answering: not ready, and
    /// for a container, the controller is told to replace it.
    fn failed(&self, server: &str, key: &Upstream, message: &str) {
        self.ctx
            .status
            .set_ready(server, Some((false, message.to_string())));
        match key {
            Upstream::Container { id, .. } => self.ctx.report_unhealthy(server, id, message),
            // A remote server is retried after its back-off.
            Upstream::Remote { .. } => {}
        }
    }

    /// Starts a re-listing for every changed server that has none running.
    fn start_relists(&self, attempts: &mut Attempts, relists: &mut JoinSet<Relisted>) {
        for server in self.changes.take(&attempts.relisting) {
            let Some(live) = self.session(&server) else {
                continue;
            };
            attempts.relisting.insert(server.clone());
            let timeout = self.settings.handshake_timeout;
            relists.spawn(async move {
                let result = match catch(live.session.list(timeout)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(panic) => Err(format!("internal error: {panic}")),
                };
                (server, live, result)
            });
        }
    }

    fn on_relisted(&self, server: &str, live: &Arc<Live>, result: Result<Listing, String>) {
        match result {
            // Only if the session is still the live one.
            Ok(listing) if self.session(server).is_some_and(|l| Arc::ptr_eq(&l, live)) => {
                *live.listing.write().expect("listing lock") = listing;
                self.publish();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(server, error = %e, "re-listing after list_changed failed"),
        }
    }

    /// Pings every session; returns the ones that failed (already dropped).
    async fn check_health(&self) -> Vec<(String, Upstream, String)> {
        let all: Vec<(String, Arc<Live>)> = self
            .live
            .read()
            .expect("pool lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let timeout = self.settings.ping_timeout;
        // Users' sessions: one that fails or has stayed unused too long is
        // closed; its user's next request opens another.
        join_all(
            all.iter()
                .filter_map(|(_, l)| l.users.as_ref())
                .map(|u| u.check_health(timeout)),
        )
        .await;
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
                failed.push((server, live.key.clone(), e));
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
        let counts: HashMap<String, usize> = listings
            .iter()
            .map(|(name, l)| (name.clone(), l.tools.len()))
            .collect();
        self.ctx.status.set_tool_counts(&counts);
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

/// Attach or connect, handshake, first listing. The caller bounds the whole
/// of it with the same `timeout` (an HTTP connect has no limit of its own).
async fn connect(
    runtime: &dyn crate::runtime::Runtime,
    key: &Upstream,
    secret: Option<&SharedSecret>,
    handler: Handler,
    timeout: Duration,
) -> Result<(Session, Listing), String> {
    let session = match key {
        Upstream::Container { id, .. } => {
            let stdio = runtime.attach(id).await.map_err(|e| e.to_string())?;
            Session::stdio(stdio, handler, timeout)
                .await
                .map_err(|e| url::without_type_names(&e.to_string()))
        }
        Upstream::Remote {
            url,
            transport,
            headers,
        } => {
            let headers = identity::headers(headers, None, secret);
            Session::remote(url, transport, &headers, handler, timeout)
                .await
                .map_err(|e| url::remote_failure(url, &headers, &e.to_string()))
        }
    }?;
    let listing = session.list(timeout).await.map_err(|e| {
        let message = format!("listing: {e}");
        match key {
            Upstream::Remote { url, headers, .. } => url::remote_failure(url, headers, &message),
            Upstream::Container { .. } => url::without_type_names(&message),
        }
    })?;
    Ok((session, listing))
}
