//! The calls the gateway has in flight upstream, and what they belong to.
//!
//! Each upstream session keeps an [`InFlight`] of its calls, keyed by the
//! upstream request id and the progress token rmcp gave that request, so what
//! an upstream sends on a call's behalf finds the client request it is for:
//! progress by its token, server-to-client requests by [`InFlight::route`].
//! Each call carries its deadline ([`Clock`]).
#![allow(deprecated)] // logging is SEP-2577-deprecated, and relayed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    ClientResult, LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProgressToken, RequestId, ServerJsonRpcMessage, ServerRequest,
};
use rmcp::service::RoleServer;
use rmcp::{ErrorData as McpError, Peer};
use tokio::sync::{Notify, mpsc, oneshot};

use super::raw::RawResult;

/// The client request a call upstream was made for.
#[derive(Clone)]
pub struct Caller {
    /// The gateway's id of the client session.
    pub session: u64,
    pub peer: Peer<RoleServer>,
    /// The client's id of its request (its stream, on streamable HTTP).
    pub request: RequestId,
    /// The client's progress token, if it asked for progress.
    pub progress_token: Option<ProgressToken>,
    /// A per-request log level (2026-07-28 `_meta`), else the session's.
    pub log_level: Option<LoggingLevel>,
    /// The request's own response stream, when the gateway serves it itself
    /// rather than through rmcp's session (see [`CallStream`]).
    pub stream: Option<Arc<dyn CallStream>>,
}

/// The response stream of one client request that the gateway writes itself
/// (`gateway::session::direct`): what the upstream sends on the call's
/// behalf goes here instead of through the session's `peer`.
pub trait CallStream: Send + Sync {
    /// Queues `message` on the stream; false if it is gone or full.
    fn send(&self, message: ServerJsonRpcMessage) -> bool;
    /// Queues `request` under a fresh id of the gateway's; the client's
    /// answer arrives on the receiver. `None` if it cannot be queued.
    fn ask(&self, request: ServerRequest) -> Option<(RequestId, oneshot::Receiver<Answer>)>;
    /// Stops waiting for an answer to `id`.
    fn forget(&self, id: &RequestId);
    /// Takes the call's result to send as the server wrote it, in place of
    /// the response the call's handler returns.
    fn pass_on(&self, result: RawResult);
}

/// A client's answer to a request the gateway sent it, as it came.
pub type Answer = Result<ClientResult, McpError>;

/// How a [`CallStream`] rides in a request's extensions to the forwarding code.
#[derive(Clone)]
pub struct CallSink(pub Arc<dyn CallStream>);

/// A call in flight upstream.
pub struct Call {
    pub caller: Caller,
    pub clock: Clock,
    /// What the upstream sent for the caller, in its order: the task
    /// forwarding the call sends it, and the rest before the result.
    queue: mpsc::Sender<ForCaller>,
}

/// A notification of a call's upstream, for its caller.
pub enum ForCaller {
    Progress(ProgressNotificationParam),
    Log(LoggingMessageNotificationParam),
}

/// Notifications of one call waiting to be sent to its caller.
pub const CALLER_BUFFER: usize = 64;

impl Call {
    pub fn new(caller: Caller) -> (Self, mpsc::Receiver<ForCaller>) {
        let (queue, rx) = mpsc::channel(CALLER_BUFFER);
        let call = Call {
            caller,
            clock: Clock::new(Instant::now()),
            queue,
        };
        (call, rx)
    }

    /// An upstream's progress for this call: restarts the deadline and, if
    /// the caller asked for progress, queues it for the caller.
    pub fn progress(&self, params: ProgressNotificationParam) {
        self.clock.touch();
        if self.caller.progress_token.is_some() {
            self.queue(ForCaller::Progress(params));
        }
    }

    /// A log message for the caller (already filtered by its level).
    pub fn log(&self, params: LoggingMessageNotificationParam) {
        self.queue(ForCaller::Log(params));
    }

    /// A caller that falls [`CALLER_BUFFER`] behind misses some.
    fn queue(&self, item: ForCaller) {
        if self.queue.try_send(item).is_err() {
            tracing::debug!("a notification for a caller was dropped: it is too far behind");
        }
    }
}

/// A call's deadline: `timeout` of silence from the upstream, where progress
/// counts as a sign of life and a question to the client stops the clock.
pub struct Clock {
    started: Instant,
    /// When the upstream last showed signs of life, in ms since `started`.
    touched_ms: AtomicU64,
    /// Server-to-client requests now waiting for the client: the deadline
    /// does not run out meanwhile (a person may be answering).
    asking: AtomicUsize,
}

impl Clock {
    fn new(started: Instant) -> Self {
        Clock {
            started,
            touched_ms: AtomicU64::new(0),
            asking: AtomicUsize::new(0),
        }
    }

    /// Restarts the deadline (progress arrived).
    pub fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.touched_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the call runs out, unless it is touched again (while a client is
    /// being asked: a full `timeout` from now, to look again then).
    pub fn deadline(&self, timeout: Duration) -> Instant {
        let quiet =
            self.started + Duration::from_millis(self.touched_ms.load(Ordering::Relaxed)) + timeout;
        if self.asking.load(Ordering::Relaxed) > 0 {
            quiet.max(Instant::now() + timeout)
        } else {
            quiet
        }
    }

    /// True if nothing was heard for `timeout` and no client is being asked.
    pub fn expired(&self, timeout: Duration) -> bool {
        self.asking.load(Ordering::Relaxed) == 0 && Instant::now() >= self.deadline(timeout)
    }

    /// Holds the deadline while the client is being asked something.
    pub fn asking(&self) -> Asking<'_> {
        self.asking.fetch_add(1, Ordering::Relaxed);
        Asking(self)
    }
}

/// See [`Clock::asking`]; the deadline restarts when this is dropped.
pub struct Asking<'a>(&'a Clock);

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.asking.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a server-to-client request could not be tied to a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Unrouted {
    NoCall,
    Ambiguous { calls: usize, sessions: usize },
}

impl Unrouted {
    pub fn error(&self, method: &str) -> McpError {
        let message = match self {
            Unrouted::NoCall => format!(
                "mcp-fleet relays `{method}` only while a client's call to this server is in flight, and none is"
            ),
            Unrouted::Ambiguous { calls, sessions } => format!(
                "mcp-fleet cannot tell which client `{method}` is for: {calls} calls from {sessions} client sessions are in flight on this server. Send it on the call's own response stream (streamable HTTP) or with the call's progressToken in _meta"
            ),
        };
        McpError::invalid_request(message, None)
    }
}

struct Entry<C> {
    seq: u64,
    session: u64,
    call: Arc<C>,
}

struct Inner<C> {
    by_id: HashMap<RequestId, Entry<C>>,
    by_token: HashMap<ProgressToken, RequestId>,
    next_seq: u64,
}

impl<C> Default for Inner<C> {
    fn default() -> Self {
        Inner {
            by_id: HashMap::new(),
            by_token: HashMap::new(),
            next_seq: 0,
        }
    }
}

/// The calls in flight on one upstream session, by the upstream request id
/// and progress token (both chosen by rmcp, unique within the session, so two
/// clients' own tokens never meet upstream).
pub struct InFlight<C> {
    inner: Mutex<Inner<C>>,
    /// Calls sent but not registered yet: a lookup that misses waits for them
    /// (an upstream may answer faster than the sender registers).
    sending: AtomicUsize,
    registered: Notify,
}

impl<C> Default for InFlight<C> {
    fn default() -> Self {
        InFlight {
            inner: Mutex::default(),
            sending: AtomicUsize::new(0),
            registered: Notify::new(),
        }
    }
}

/// A call being sent; see [`InFlight::sending`].
pub struct Sending<'a, C>(&'a InFlight<C>);

impl<C> Sending<'_, C> {
    /// Registers the sent call under its upstream id and progress token.
    pub fn register(self, id: RequestId, token: ProgressToken, session: u64, call: Arc<C>) {
        self.0.insert(id, token, session, call);
    }
}

impl<C> Drop for Sending<'_, C> {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::AcqRel);
        self.0.registered.notify_waiters();
    }
}

/// How long a lookup waits for a call being registered.
const REGISTER_WAIT: Duration = Duration::from_secs(1);

impl<C> InFlight<C> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Announces a call about to be sent: until the returned guard registers
    /// it (or is dropped), lookups that miss wait for it.
    pub fn sending(&self) -> Sending<'_, C> {
        self.sending.fetch_add(1, Ordering::AcqRel);
        Sending(self)
    }

    fn insert(&self, id: RequestId, token: ProgressToken, session: u64, call: Arc<C>) {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.by_token.insert(token, id.clone());
        inner.by_id.insert(id, Entry { seq, session, call });
    }

    pub fn remove(&self, id: &RequestId, token: &ProgressToken) {
        let mut inner = self.lock();
        inner.by_id.remove(id);
        inner.by_token.remove(token);
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `find`; if it misses while calls are being registered, waits for
    /// them (bounded) and tries again.
    async fn settled<T>(&self, find: impl Fn(&Inner<C>) -> Option<T>) -> Option<T> {
        let until = tokio::time::Instant::now() + REGISTER_WAIT;
        loop {
            let registered = self.registered.notified();
            if let Some(found) = find(&self.lock()) {
                return Some(found);
            }
            if self.sending.load(Ordering::Acquire) == 0
                || tokio::time::timeout_at(until, registered).await.is_err()
            {
                return None;
            }
        }
    }

    /// The call an upstream progress token belongs to, if registered now.
    pub fn by_token_now(&self, token: &ProgressToken) -> Option<Arc<C>> {
        let inner = self.lock();
        let id = inner.by_token.get(token)?;
        inner.by_id.get(id).map(|e| e.call.clone())
    }

    /// The call an upstream progress token belongs to.
    pub async fn by_token(&self, token: &ProgressToken) -> Option<Arc<C>> {
        self.settled(|inner| {
            let id = inner.by_token.get(token)?;
            inner.by_id.get(id).map(|e| e.call.clone())
        })
        .await
    }

    /// The call a server-to-client request belongs to. The rule, in order:
    /// 1. it arrived on the response stream of a call (streamable HTTP): that call;
    /// 2. its `_meta.progressToken` is a call's token: that call;
    /// 3. every call in flight comes from one client session: that session's
    ///    oldest call (stdio has no streams; one call in flight is the usual case);
    /// 4. otherwise an error to the upstream: never a guess.
    pub async fn route(
        &self,
        stream: Option<&RequestId>,
        token: Option<&ProgressToken>,
    ) -> Result<Arc<C>, Unrouted> {
        let hinted = self
            .settled(|inner| {
                stream
                    .and_then(|id| inner.by_id.get(id))
                    .or_else(|| {
                        token
                            .and_then(|t| inner.by_token.get(t))
                            .and_then(|id| inner.by_id.get(id))
                    })
                    .map(|e| e.call.clone())
            })
            .await;
        if let Some(call) = hinted {
            return Ok(call);
        }
        let inner = self.lock();
        sole_session(inner.by_id.values().map(|e| (e.seq, e.session))).map(|seq| {
            inner
                .by_id
                .values()
                .find(|e| e.seq == seq)
                .map(|e| e.call.clone())
                .expect("chosen from these entries")
        })
    }

    /// The oldest call in flight, if every call in flight comes from one session.
    pub fn sole_caller(&self) -> Option<Arc<C>> {
        let inner = self.lock();
        let seq = sole_session(inner.by_id.values().map(|e| (e.seq, e.session))).ok()?;
        inner
            .by_id
            .values()
            .find(|e| e.seq == seq)
            .map(|e| e.call.clone())
    }
}

/// Rule 3 of [`InFlight::route`] over `(seq, session)` pairs: the oldest
/// call's seq if all calls share one session.
fn sole_session(calls: impl Iterator<Item = (u64, u64)>) -> Result<u64, Unrouted> {
    let mut oldest: Option<(u64, u64)> = None;
    let mut sessions = HashSet::new();
    let mut count = 0;
    for (seq, session) in calls {
        count += 1;
        sessions.insert(session);
        if oldest.is_none_or(|(s, _)| seq < s) {
            oldest = Some((seq, session));
        }
    }
    match (oldest, sessions.len()) {
        (None, _) => Err(Unrouted::NoCall),
        (Some((seq, _)), 1) => Ok(seq),
        (Some(_), n) => Err(Unrouted::Ambiguous {
            calls: count,
            sessions: n,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> RequestId {
        RequestId::Number(n)
    }

    fn token(n: i64) -> ProgressToken {
        ProgressToken(rmcp::model::NumberOrString::Number(n))
    }

    /// Calls whose payload is the name of the client request they serve.
    fn calls(entries: &[(i64, u64, &'static str)]) -> InFlight<&'static str> {
        let f = InFlight::default();
        for (n, session, name) in entries {
            f.sending()
                .register(id(*n), token(*n + 100), *session, Arc::new(*name));
        }
        f
    }

    #[tokio::test]
    async fn the_stream_a_request_arrives_on_names_its_call() {
        let f = calls(&[(1, 10, "a"), (2, 20, "b")]);
        assert_eq!(*f.route(Some(&id(2)), None).await.unwrap(), "b");
        assert_eq!(
            *f.route(Some(&id(1)), Some(&token(102))).await.unwrap(),
            "a"
        );
    }

    #[tokio::test]
    async fn a_progress_token_in_meta_names_its_call() {
        let f = calls(&[(1, 10, "a"), (2, 20, "b")]);
        assert_eq!(*f.route(None, Some(&token(102))).await.unwrap(), "b");
        assert_eq!(*f.by_token(&token(101)).await.unwrap(), "a");
    }

    #[tokio::test]
    async fn without_a_hint_one_session_gets_it_and_several_get_an_error() {
        let one = calls(&[(5, 10, "oldest"), (3, 10, "later")]);
        assert_eq!(*one.route(None, None).await.unwrap(), "oldest");
        assert_eq!(*one.sole_caller().unwrap(), "oldest");
        let two = calls(&[(1, 10, "a"), (2, 20, "b"), (3, 20, "c")]);
        assert_eq!(
            two.route(None, Some(&token(999))).await.err(),
            Some(Unrouted::Ambiguous {
                calls: 3,
                sessions: 2
            })
        );
        assert!(two.sole_caller().is_none());
        let none = calls(&[]);
        assert_eq!(none.route(None, None).await.err(), Some(Unrouted::NoCall));
    }

    #[tokio::test]
    async fn a_finished_call_is_forgotten_by_id_and_token() {
        let f = calls(&[(1, 10, "a")]);
        f.remove(&id(1), &token(101));
        assert!(f.is_empty());
        assert!(f.by_token(&token(101)).await.is_none());
        assert_eq!(
            f.route(Some(&id(1)), None).await.err(),
            Some(Unrouted::NoCall)
        );
    }

    #[tokio::test]
    async fn a_lookup_waits_for_a_call_being_registered() {
        let f = Arc::new(InFlight::<&'static str>::default());
        let sending = f.sending();
        let g = f.clone();
        let lookup = tokio::spawn(async move { g.by_token(&token(101)).await });
        tokio::task::yield_now().await;
        sending.register(id(1), token(101), 10, Arc::new("late"));
        assert_eq!(*lookup.await.unwrap().unwrap(), "late");
    }

    #[test]
    fn a_call_deadline_moves_with_progress_and_holds_while_asking() {
        let timeout = Duration::from_secs(5);
        let clock = Clock::new(Instant::now() - Duration::from_secs(10));
        assert!(clock.expired(timeout));
        clock.touch();
        assert!(!clock.expired(timeout));
        let clock = Clock::new(Instant::now() - Duration::from_secs(10));
        let asking = clock.asking();
        assert!(!clock.expired(timeout), "the client is being asked");
        drop(asking);
        assert!(!clock.expired(timeout), "an answer restarts the deadline");
    }
}
