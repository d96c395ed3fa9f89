//! What the gateway relays between its client sessions and the upstream
//! sessions, and to whom.
//!
//! The gateway registers every client session ([`Relay::open`]) and every call
//! it forwards upstream (see [`super::calls`]). What an upstream then sends
//! on a call's behalf is routed back:
//!
//! - `notifications/progress`: by progress token, to the calling session only,
//!   under the caller's own token; it also resets the call's deadline;
//! - `sampling/createMessage`, `elicitation/create`, `roots/list`: see
//!   [`InFlight::route`];
//! - `notifications/message`: to the caller when every call in flight on that
//!   server comes from one session, else to the sessions that set a level;
//! - `notifications/resources/updated`: to the sessions subscribed to the URI.
//!
//! A client session is forgotten as soon as its handler is dropped, with its
//! log level and subscriptions; its calls end with its requests.
#![allow(deprecated)] // logging, sampling and roots are SEP-2577-deprecated, and relayed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use rmcp::Peer;
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam};
use rmcp::service::RoleServer;

use super::calls::{Call, Caller, InFlight};

/// How long one notification to one client session may take; a slow client
/// never holds up the others (they are sent to concurrently).
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Resources one client session may be subscribed to at once.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

/// One client session of the gateway that can receive notifications.
pub struct ClientSession {
    peer: Peer<RoleServer>,
    /// The level of `logging/setLevel` (0: none set, else rank + 1).
    level: AtomicU8,
    subscriptions: Mutex<HashSet<String>>,
}

impl ClientSession {
    pub fn peer(&self) -> &Peer<RoleServer> {
        &self.peer
    }

    pub fn level(&self) -> Option<LoggingLevel> {
        match self.level.load(Ordering::Relaxed) {
            0 => None,
            n => LEVELS.get(usize::from(n - 1)).copied(),
        }
    }
}

pub(super) const LEVELS: [LoggingLevel; 8] = [
    LoggingLevel::Debug,
    LoggingLevel::Info,
    LoggingLevel::Notice,
    LoggingLevel::Warning,
    LoggingLevel::Error,
    LoggingLevel::Critical,
    LoggingLevel::Alert,
    LoggingLevel::Emergency,
];

fn rank(level: LoggingLevel) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(0)
}

/// Whether a message at `level` passes a minimum `min` (none set: everything).
pub fn passes(min: Option<LoggingLevel>, level: LoggingLevel) -> bool {
    min.is_none_or(|m| rank(level) >= rank(m))
}

/// The client sessions of the gateway, by the gateway's own session id.
#[derive(Default)]
pub struct Relay {
    next_id: AtomicU64,
    sessions: RwLock<HashMap<u64, Arc<ClientSession>>>,
}

impl Relay {
    /// A fresh session id (one per client session handler).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The session `id`, registered with `peer` if it was not yet.
    pub fn open(&self, id: u64, peer: &Peer<RoleServer>) -> Arc<ClientSession> {
        if let Some(s) = self.get(id) {
            return s;
        }
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        map.entry(id)
            .or_insert_with(|| {
                Arc::new(ClientSession {
                    peer: peer.clone(),
                    level: AtomicU8::new(0),
                    subscriptions: Mutex::default(),
                })
            })
            .clone()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientSession>> {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Forgets a session and everything it set.
    pub fn close(&self, id: u64) {
        // Most handlers never registered (one per stateless request): a read
        // lock tells, without contending with the others for the write lock.
        if self.get(id).is_none() {
            return;
        }
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub fn len(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn all(&self) -> Vec<Arc<ClientSession>> {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn set_level(&self, id: u64, peer: &Peer<RoleServer>, level: LoggingLevel) {
        let rank = u8::try_from(rank(level) + 1).expect("eight levels");
        self.open(id, peer).level.store(rank, Ordering::Relaxed);
    }

    /// Records a subscription; true if no other session had one to `uri`
    /// (then the owning server must be asked).
    pub fn subscribe(&self, id: u64, peer: &Peer<RoleServer>, uri: &str) -> Result<bool, String> {
        let first = !self.subscribed(uri, Some(id));
        let session = self.open(id, peer);
        let mut subs = session
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if subs.len() >= MAX_SUBSCRIPTIONS && !subs.contains(uri) {
            return Err(format!(
                "this session already has {MAX_SUBSCRIPTIONS} resource subscriptions"
            ));
        }
        subs.insert(uri.to_string());
        Ok(first)
    }

    /// Drops a subscription; true if no session is subscribed to `uri` any more.
    pub fn unsubscribe(&self, id: u64, uri: &str) -> bool {
        if let Some(s) = self.get(id) {
            s.subscriptions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(uri);
        }
        !self.subscribed(uri, None)
    }

    fn subscribed(&self, uri: &str, except: Option<u64>) -> bool {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(id, s)| {
                Some(*id) != except
                    && s.subscriptions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(uri)
            })
    }

    /// Sends to every session `select` picks, concurrently, each within
    /// [`NOTIFY_TIMEOUT`]; returns how many were sent to.
    pub async fn broadcast<F, Fut>(&self, select: impl Fn(&ClientSession) -> bool, send: F) -> usize
    where
        F: Fn(Peer<RoleServer>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let targets: Vec<Arc<ClientSession>> =
            self.all().into_iter().filter(|s| select(s)).collect();
        join_all(targets.iter().map(|s| {
            let sending = send(s.peer.clone());
            async move {
                if tokio::time::timeout(NOTIFY_TIMEOUT, sending).await.is_err() {
                    tracing::debug!("a client session did not take a notification in time");
                }
            }
        }))
        .await;
        targets.len()
    }

    /// Relays an upstream's progress to the one caller it belongs to (see
    /// [`Call::progress`]).
    pub async fn progress(&self, calls: &InFlight<Call>, params: ProgressNotificationParam) {
        match calls.by_token(&params.progress_token).await {
            Some(call) => call.progress(params),
            None => {
                tracing::debug!(token = ?params.progress_token, "progress for no call in flight")
            }
        }
    }

    /// Whether the caller's level (its request's, else its session's) lets
    /// a message at `level` through.
    pub fn caller_wants(&self, caller: &Caller, level: LoggingLevel) -> bool {
        let min = caller
            .log_level
            .or_else(|| self.get(caller.session).and_then(|s| s.level()));
        passes(min, level)
    }

    /// Relays an upstream's log message that belongs to no one call (see
    /// `inbound`): to every session whose `logging/setLevel` lets it through.
    pub async fn log(&self, params: LoggingMessageNotificationParam) {
        let level = params.level;
        self.broadcast(
            |s| s.level().is_some() && passes(s.level(), level),
            |peer| {
                let params = params.clone();
                async move {
                    let _ = peer.notify_logging_message(params).await;
                }
            },
        )
        .await;
    }

    /// Relays `notifications/resources/updated` to the sessions subscribed to it.
    pub async fn resource_updated(&self, params: rmcp::model::ResourceUpdatedNotificationParam) {
        let uri = params.uri.clone();
        self.broadcast(
            |s| {
                s.subscriptions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&uri)
            },
            |peer| {
                let params = params.clone();
                async move {
                    let _ = peer.notify_resource_updated(params).await;
                }
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_filter_from_the_minimum_up() {
        assert!(passes(None, LoggingLevel::Debug));
        assert!(passes(Some(LoggingLevel::Warning), LoggingLevel::Error));
        assert!(passes(Some(LoggingLevel::Warning), LoggingLevel::Warning));
        assert!(!passes(Some(LoggingLevel::Warning), LoggingLevel::Info));
        assert!(!passes(Some(LoggingLevel::Emergency), LoggingLevel::Alert));
    }
}
