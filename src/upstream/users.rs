//! One remote server's sessions per user. Each carries its user's identity
//! headers ([`super::identity`]), so users cannot share one.
//!
//! Bounded: at most `limit` sessions per server. A new user when all are
//! open closes the least recently used idle one (no request in flight); when
//! every one is busy, the request gets an error saying so, rather than a
//! queue without end. A session is opened on a user's first request (within
//! the handshake timeout), kept until evicted, unused for `idle`, failing a
//! health ping, or its server leaving the pool (dropping this closes every session, which sends
//! the upstream its `DELETE`). A user whose name or roles change gets a new
//! session; the old one ends with its last request.
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::OnceCell;

use super::identity::{self, SharedSecret};
use super::inbound::Handler;
use super::relay::Relay;
use super::relist::ListChanges;
use super::session::Session;
use crate::catalog::url;
use crate::controller::view::Upstream;
use crate::identity::Identity;

/// Default for `--upstream-user-sessions`.
pub const DEFAULT_LIMIT: usize = 20;

/// What a user's session to one remote server is opened with.
pub struct Remote {
    pub server: String,
    /// An [`Upstream::Remote`].
    pub key: Upstream,
    pub secret: Option<SharedSecret>,
    pub changes: ListChanges,
    pub relay: Arc<Relay>,
    pub limit: usize,
    pub timeout: Duration,
    /// Unused this long, a session is closed at the next health check.
    pub idle: Duration,
}

/// The sessions of one remote server, by user id.
pub struct UserSessions {
    remote: Remote,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

struct Slot {
    identity: Identity,
    session: OnceCell<Session>,
    /// Requests using the session now (and the one opening it).
    active: AtomicUsize,
    last_used: Mutex<Instant>,
}

/// A user's session, held for one request: it is not evicted meanwhile.
pub struct Lease(Arc<Slot>);

impl Deref for Lease {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.0
            .session
            .get()
            .expect("a lease is handed out once connected")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.0.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl UserSessions {
    pub fn new(remote: Remote) -> Self {
        UserSessions {
            remote,
            slots: Mutex::default(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open sessions (and ones being opened).
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `who`'s session, opened if it has none. The error completes a sentence
    /// that starts with the server's name.
    pub async fn get(&self, who: &Identity) -> Result<Lease, String> {
        let slot = self.reserve(who)?;
        let lease = Lease(slot.clone());
        let opened = slot
            .session
            .get_or_try_init(|| self.open(&slot.identity))
            .await;
        match opened {
            Ok(_) => Ok(lease),
            Err(e) => {
                self.forget(&who.id, &slot);
                Err(e)
            }
        }
    }

    /// The slot `who` uses, marked active; makes room for a new one by
    /// closing the least recently used idle slot.
    fn reserve(&self, who: &Identity) -> Result<Arc<Slot>, String> {
        let mut slots = self.slots();
        let usable = slots
            .get(&who.id)
            .is_some_and(|s| s.identity == *who && s.session.get().is_none_or(|s| !s.is_closed()));
        if !usable {
            slots.remove(&who.id);
            if slots.len() >= self.remote.limit {
                let idle = slots
                    .iter()
                    .filter(|(_, s)| s.active.load(Ordering::Acquire) == 0)
                    .min_by_key(|(_, s)| *s.last_used.lock().unwrap_or_else(|e| e.into_inner()))
                    .map(|(id, _)| id.clone());
                let Some(idle) = idle else {
                    return Err(format!(
                        "has all its {} user sessions busy with other users' requests; try again shortly",
                        self.remote.limit
                    ));
                };
                slots.remove(&idle);
                tracing::debug!(server = %self.remote.server, user = %idle, "closing the least recently used idle user session");
            }
            slots.insert(
                who.id.clone(),
                Arc::new(Slot {
                    identity: who.clone(),
                    session: OnceCell::new(),
                    active: AtomicUsize::new(0),
                    last_used: Mutex::new(Instant::now()),
                }),
            );
        }
        let slot = slots[&who.id].clone();
        slot.active.fetch_add(1, Ordering::AcqRel);
        Ok(slot)
    }

    /// Drops `slot` if it is still `user`'s.
    fn forget(&self, user: &str, slot: &Arc<Slot>) {
        let mut slots = self.slots();
        if slots.get(user).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(user);
        }
    }

    /// Drops the slots with nothing in flight that were last used `idle` ago
    /// or more (dropping a session sends the upstream its `DELETE`).
    fn close_idle(&self) -> usize {
        let idle = self.remote.idle;
        let mut slots = self.slots();
        let before = slots.len();
        slots.retain(|user, s| {
            let used = *s.last_used.lock().unwrap_or_else(|e| e.into_inner());
            let keep = s.active.load(Ordering::Acquire) > 0 || used.elapsed() < idle;
            if !keep {
                tracing::debug!(server = %self.remote.server, user = %user, "closing a user session unused for {}s", idle.as_secs());
            }
            keep
        });
        before - slots.len()
    }

    async fn open(&self, who: &Identity) -> Result<Session, String> {
        let Upstream::Remote {
            url: address,
            transport,
            headers,
        } = &self.remote.key
        else {
            return Err("is not a remote server".to_string());
        };
        let headers = identity::headers(headers, Some(who), self.remote.secret.as_ref());
        let handler = Handler::new(
            &self.remote.server,
            self.remote.changes.clone(),
            self.remote.relay.clone(),
        );
        let timeout = self.remote.timeout;
        let connect = Session::remote(address, transport, &headers, handler, timeout);
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(session)) => {
                tracing::debug!(server = %self.remote.server, user = %who.id, "user session opened");
                Ok(session)
            }
            Ok(Err(e)) => Err(format!(
                "gave no session for user `{}`: {}",
                who.id,
                url::remote_failure(address, &headers, &e.to_string())
            )),
            Err(_) => Err(format!(
                "gave no session for user `{}` within {}s",
                who.id,
                timeout.as_secs_f32()
            )),
        }
    }

    /// Closes the sessions unused for `idle` (no request in flight), then
    /// pings every other open session and closes the ones that fail.
    /// Returns how many it closed.
    pub async fn check_health(&self, timeout: Duration) -> usize {
        let stale = self.close_idle();
        let open: Vec<(String, Arc<Slot>)> = self
            .slots()
            .iter()
            .filter(|(_, s)| s.session.initialized())
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect();
        let results = join_all(open.iter().map(|(_, slot)| async move {
            let session = slot.session.get().expect("filtered on initialized");
            !session.is_closed() && session.ping(timeout).await.is_ok()
        }))
        .await;
        let mut failed = stale;
        for ((user, slot), ok) in open.iter().zip(results) {
            if !ok {
                tracing::info!(server = %self.remote.server, user = %user, "user session failed its health ping; closed");
                self.forget(user, slot);
                failed += 1;
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    //! Against a real MCP server over streamable HTTP (rmcp's, in process),
    //! which reports each HTTP request's method and `X-Mcp-UserId`.
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;

    use axum::extract::Request;
    use axum::middleware::{self, Next};
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    use tokio::sync::mpsc;

    use super::*;

    struct Quiet;
    impl rmcp::ServerHandler for Quiet {}

    type Seen = mpsc::UnboundedReceiver<(String, String)>;

    /// A server at `http://127.0.0.1:PORT/mcp`, what it receives, and a
    /// switch that makes it stop answering.
    async fn server() -> (String, Seen, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stalled = Arc::new(AtomicBool::new(false));
        let stall = stalled.clone();
        let sessions = Arc::new(LocalSessionManager::default());
        let service = StreamableHttpService::new(
            || Ok(Quiet),
            sessions.clone(),
            StreamableHttpServerConfig::default(),
        );
        let record = move |req: Request, next: Next| {
            let user = req
                .headers()
                .get(identity::USER_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let _ = tx.send((req.method().to_string(), user));
            let stall = stall.load(Ordering::Acquire);
            async move {
                if stall {
                    std::future::pending::<()>().await;
                }
                next.run(req).await
            }
        };
        let app = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(middleware::from_fn(record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, rx, stalled)
    }

    fn pool(url: &str, limit: usize) -> UserSessions {
        pool_idle(url, limit, Duration::from_secs(600))
    }

    fn pool_idle(url: &str, limit: usize, idle: Duration) -> UserSessions {
        let key = Upstream::Remote {
            url: crate::catalog::RemoteUrl::new(url),
            transport: "streamable-http".into(),
            headers: BTreeMap::new(),
        };
        UserSessions::new(Remote {
            server: "far".into(),
            key,
            secret: None,
            changes: ListChanges::default(),
            relay: Arc::default(),
            limit,
            timeout: Duration::from_secs(10),
            idle,
        })
    }

    fn user(id: &str) -> Identity {
        Identity::new(id, id.to_uppercase(), vec!["dev".into()])
    }

    /// Waits (at most 10 s) for a request `method` from `user`.
    async fn heard(seen: &mut Seen, method: &str, user: &str) {
        let wait = async {
            while let Some((m, u)) = seen.recv().await {
                if m == method && u == user {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("no {method} from {user}"));
    }

    #[tokio::test]
    async fn three_users_and_room_for_two_close_the_least_recently_used_idle_one() {
        let (url, mut seen, _stalled) = server().await;
        let users = pool(&url, 2);
        for id in ["ann", "bob"] {
            let session = users.get(&user(id)).await.unwrap();
            session.ping(Duration::from_secs(5)).await.unwrap();
        }
        // Ann again: her session is reused, so Bob is now the least recently used.
        drop(users.get(&user("ann")).await.unwrap());
        assert_eq!(users.len(), 2);
        let cid = users.get(&user("cid")).await.unwrap();
        assert_eq!(users.len(), 2);
        heard(&mut seen, "DELETE", "bob").await;
        // With every session busy, a new user is refused, not queued.
        let ann = users.get(&user("ann")).await.unwrap();
        let refused = users.get(&user("dan")).await.err().unwrap();
        assert!(
            refused.contains("all its 2 user sessions busy"),
            "{refused}"
        );
        assert_eq!(users.len(), 2);
        // Once Ann's request ends, hers is the idle one that makes room.
        drop(ann);
        let dan = users.get(&user("dan")).await.unwrap();
        heard(&mut seen, "DELETE", "ann").await;
        assert_eq!(users.len(), 2);
        drop(cid);
        // Dropping the sessions (the server left the pool) closes them.
        drop(dan);
        drop(users);
        heard(&mut seen, "DELETE", "dan").await;
    }

    #[tokio::test]
    async fn sessions_that_stop_answering_fail_their_ping_and_are_closed() {
        let (url, _seen, stalled) = server().await;
        let users = pool(&url, 20);
        drop(users.get(&user("ann")).await.unwrap());
        drop(users.get(&user("bob")).await.unwrap());
        let ping = Duration::from_millis(500);
        assert_eq!(users.check_health(ping).await, 0);
        assert_eq!(users.len(), 2);
        stalled.store(true, Ordering::Release);
        assert_eq!(users.check_health(ping).await, 2);
        assert!(users.is_empty());
    }

    #[tokio::test]
    async fn a_session_left_unused_is_closed_but_not_one_in_use() {
        let (url, mut seen, _stalled) = server().await;
        // Every session counts as unused for long enough at once.
        let users = pool_idle(&url, 20, Duration::ZERO);
        drop(users.get(&user("ann")).await.unwrap());
        let bob = users.get(&user("bob")).await.unwrap();
        let ping = Duration::from_secs(5);
        assert_eq!(users.check_health(ping).await, 1);
        heard(&mut seen, "DELETE", "ann").await;
        assert_eq!(users.len(), 1, "bob's request is still in flight");
        bob.ping(ping).await.unwrap();
        drop(bob);
        assert_eq!(users.check_health(ping).await, 1);
        heard(&mut seen, "DELETE", "bob").await;
        assert!(users.is_empty());
    }

    #[tokio::test]
    async fn new_roles_get_a_new_session() {
        let (url, mut seen, _stalled) = server().await;
        let users = pool(&url, 20);
        drop(users.get(&user("ann")).await.unwrap());
        let promoted = Identity::new("ann", "ANN", vec!["dev".into(), "ops".into()]);
        drop(users.get(&promoted).await.unwrap());
        assert_eq!(users.len(), 1);
        heard(&mut seen, "DELETE", "ann").await;
    }
}
