//! The direct path of a `tools/call` on an initialized streamable-HTTP
//! session (see [`crate::gateway::shortcut`] for why). The call runs on the
//! HTTP connection's own task, through the same typed dispatch and
//! [`SessionHandler::call_tool`] as any other request, and everything the
//! upstream sends on its behalf rides the call's own response stream:
//!
//! - progress and log messages, as notifications on that stream;
//! - server-to-client requests (sampling, elicitation, roots), under an id of
//!   the gateway's (`mcp-fleet-N`, never one of rmcp's numbers); the client's
//!   answer, POSTed to the session, is caught here and goes back to the
//!   upstream as it came;
//! - the client's `notifications/cancelled` for the call cancels it upstream,
//!   and the stream then ends without a response, as the spec asks.
//!
//! A client that drops the stream does not cancel the call (the spec: a
//! disconnection is not a cancellation): it runs to its end in a task of its
//! own, and the stream can be resumed (see [`events`]).
//!
//! rmcp's session worker sees none of this, and closes a session it has not
//! heard from for [`crate::gateway::http::SESSION_IDLE_TIMEOUT`]: while calls
//! come, the session manager touches the worker at most once a
//! [`WORKER_TOUCH`] (see [`Shortcut::worker_due`]).
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rmcp::Peer;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, GetExtensions, GetMeta,
    JsonRpcRequest, RequestId, ServerJsonRpcMessage, ServerRequest,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::SessionId;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

mod events;
use events::{CallEvents, Parking};

use super::SessionHandler;
use crate::gateway::shortcut::{Events, Final, Held, Served, Shortcut};
use crate::upstream::calls::{Answer, CallSink, CallStream};
use crate::upstream::raw::RawResult;

/// Messages of one call waiting to be written to its stream.
const STREAM_BUFFER: usize = 64;
/// Direct calls, and questions to the client, one session may have open;
/// beyond them a call takes rmcp's path and a question fails.
const MAX_PER_SESSION: usize = 1024;
/// How long an answer waits for its first event before its headers go out
/// anyway (well inside any client's header timeout).
const HOLD: Duration = Duration::from_secs(1);
/// How often rmcp's session worker of a session with direct calls is
/// touched (its idle timeout is an hour).
const WORKER_TOUCH: Duration = Duration::from_secs(60);

/// The initialized streamable-HTTP sessions the gateway can serve directly.
pub struct Directory {
    sessions: RwLock<HashMap<SessionId, Arc<Entry>>>,
    epoch: Instant,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            sessions: RwLock::default(),
            epoch: Instant::now(),
        }
    }
}

/// One session: a view of its handler, and what its direct calls have open.
struct Entry {
    view: SessionHandler,
    peer: Peer<RoleServer>,
    open: Mutex<Open>,
    next_ask: AtomicU64,
    /// The session's direct streams, for their resumption.
    parking: Arc<Parking>,
    /// When rmcp's session worker last saw a request (ms since the epoch).
    worker_seen: AtomicU64,
}

#[derive(Default)]
struct Open {
    /// Direct calls in flight, by the client's request id.
    calls: HashMap<RequestId, CancellationToken>,
    /// Questions to the client awaiting its answer, by the gateway's id.
    asks: HashMap<RequestId, oneshot::Sender<Answer>>,
}

impl Entry {
    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Directory {
    fn ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn get(&self, id: &SessionId) -> Option<Arc<Entry>> {
        let map = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        map.get(id).cloned()
    }

    /// Enters session `id`, served by `view` (a handler that does not own it).
    pub(super) fn enter(&self, id: SessionId, view: SessionHandler, peer: Peer<RoleServer>) {
        let entry = Entry {
            view,
            peer,
            open: Mutex::default(),
            next_ask: AtomicU64::new(0),
            parking: Arc::default(),
            worker_seen: AtomicU64::new(self.ms()),
        };
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        map.insert(id, Arc::new(entry));
    }

    /// Forgets session `id` (its handler `handler` ended) and cancels its
    /// direct calls, as rmcp does with the calls of a session that ends.
    pub(super) fn forget(&self, id: &SessionId, handler: u64) {
        self.remove(id, |e| e.view.id == handler);
    }

    /// Removes session `id` if `which` says so, and cancels its direct calls.
    fn remove(&self, id: &SessionId, which: impl FnOnce(&Entry) -> bool) {
        let entry = {
            let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
            match map.get(id) {
                Some(e) if which(e) => map.remove(id),
                _ => None,
            }
        };
        if let Some(entry) = entry {
            let open = std::mem::take(&mut *entry.open());
            open.calls.values().for_each(CancellationToken::cancel);
        }
    }

    /// True if rmcp's worker has not been touched for [`WORKER_TOUCH`]; the
    /// caller touches it now.
    fn worker_stale(&self, entry: &Entry) -> bool {
        let now = self.ms();
        let seen = entry.worker_seen.load(Ordering::Relaxed);
        if now.saturating_sub(seen) < WORKER_TOUCH.as_millis() as u64 {
            return false;
        }
        entry.worker_seen.store(now, Ordering::Relaxed);
        true
    }
}

impl Shortcut for Directory {
    fn serve(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<Held, ClientJsonRpcMessage> {
        let entry = match &message {
            ClientJsonRpcMessage::Request(r)
                if matches!(r.request, ClientRequest::CallToolRequest(_)) =>
            {
                self.get(id)
            }
            _ => None,
        };
        let Some(entry) = entry else {
            return Err(message);
        };
        let ClientJsonRpcMessage::Request(request) = message else {
            unreachable!("matched as a request above")
        };
        let ct = CancellationToken::new();
        {
            let mut open = entry.open();
            if open.calls.len() >= MAX_PER_SESSION || open.calls.contains_key(&request.id) {
                return Err(ClientJsonRpcMessage::Request(request));
            }
            open.calls.insert(request.id.clone(), ct.clone());
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let sink = Arc::new(Sink {
            tx,
            entry: entry.clone(),
            raw: Mutex::default(),
        });
        let call = Box::pin(run(entry.clone(), request, ct, sink));
        let mut events = CallEvents::new(call, rx, entry.parking.clone());
        Ok(Box::pin(async move {
            events.hold(HOLD).await;
            match events.answer_alone() {
                Some(answer) => Served::Answer(answer),
                None => Served::Stream(Box::pin(events) as Events),
            }
        }))
    }

    fn close(&self, id: &SessionId) {
        self.remove(id, |_| true);
    }

    fn worker_due(&self, id: &SessionId) -> bool {
        self.get(id).is_some_and(|e| self.worker_stale(&e))
    }

    fn resume(&self, id: &SessionId, last_event_id: &str) -> Option<Events> {
        self.get(id)?.parking.resume(last_event_id)
    }

    fn accept(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), ClientJsonRpcMessage> {
        let Some(entry) = self.get(id) else {
            return Err(message);
        };
        let mut open = entry.open();
        match message {
            ClientJsonRpcMessage::Response(r) => match open.asks.remove(&r.id) {
                Some(tx) => {
                    let _ = tx.send(Ok(r.result));
                    Ok(())
                }
                None => Err(ClientJsonRpcMessage::Response(r)),
            },
            ClientJsonRpcMessage::Error(e) => match e.id.as_ref().and_then(|i| open.asks.remove(i))
            {
                Some(tx) => {
                    let _ = tx.send(Err(e.error));
                    Ok(())
                }
                None => Err(ClientJsonRpcMessage::Error(e)),
            },
            ClientJsonRpcMessage::Notification(n) => {
                let call = match &n.notification {
                    ClientNotification::CancelledNotification(c) => {
                        c.params.request_id.as_ref().and_then(|i| open.calls.get(i))
                    }
                    _ => None,
                };
                match call {
                    Some(ct) => {
                        ct.cancel();
                        Ok(())
                    }
                    None => Err(ClientJsonRpcMessage::Notification(n)),
                }
            }
            other => Err(other),
        }
    }
}

/// Serves `request` with the session's handler; `None` when the client
/// cancelled it (then no response is sent).
async fn run(
    entry: Arc<Entry>,
    mut request: JsonRpcRequest<ClientRequest>,
    ct: CancellationToken,
    sink: Arc<Sink>,
) -> Option<Final> {
    let id = request.id.clone();
    let _open = CallOpen {
        entry: entry.clone(),
        id: id.clone(),
    };
    // As rmcp's serve loop does: meta first, or the progress token is lost.
    let meta = std::mem::take(request.request.get_meta_mut());
    let mut extensions = std::mem::take(request.request.extensions_mut());
    extensions.insert(CallSink(sink.clone()));
    let mut context = RequestContext::new(id.clone(), entry.peer.clone());
    context.ct = ct.clone();
    context.meta = meta;
    context.extensions = extensions;
    let result =
        rmcp::Service::<RoleServer>::handle_request(&entry.view, request.request, context).await;
    if ct.is_cancelled() {
        return None;
    }
    // A result the handler passed on stands for itself (see `Sink::pass_on`).
    let raw = sink.raw.lock().unwrap_or_else(|e| e.into_inner()).take();
    Some(match (result, raw) {
        (Ok(_), Some(raw)) => Final::Raw(id, raw),
        (Ok(r), None) => Final::Message(ServerJsonRpcMessage::response(r, id)),
        (Err(e), _) => Final::Message(ServerJsonRpcMessage::error(e, Some(id))),
    })
}

/// Takes a finished direct call off its session's list.
struct CallOpen {
    entry: Arc<Entry>,
    id: RequestId,
}

impl Drop for CallOpen {
    fn drop(&mut self) {
        self.entry.open().calls.remove(&self.id);
    }
}

/// What the upstream sends on a direct call's behalf, onto its stream.
struct Sink {
    tx: mpsc::Sender<ServerJsonRpcMessage>,
    entry: Arc<Entry>,
    /// The call's result as the server wrote it, to send in place of the
    /// stand-in the handler returns to rmcp's dispatch.
    raw: Mutex<Option<RawResult>>,
}

impl CallStream for Sink {
    fn send(&self, message: ServerJsonRpcMessage) -> bool {
        self.tx.try_send(message).is_ok()
    }

    fn ask(&self, request: ServerRequest) -> Option<(RequestId, oneshot::Receiver<Answer>)> {
        let n = self.entry.next_ask.fetch_add(1, Ordering::Relaxed);
        let id = RequestId::String(format!("mcp-fleet-{n}").into());
        let (answer, rx) = oneshot::channel();
        {
            let mut open = self.entry.open();
            if open.asks.len() >= MAX_PER_SESSION {
                return None;
            }
            open.asks.insert(id.clone(), answer);
        }
        if self.send(ServerJsonRpcMessage::request(request, id.clone())) {
            Some((id, rx))
        } else {
            self.forget(&id);
            None
        }
    }

    fn forget(&self, id: &RequestId) {
        self.entry.open().asks.remove(id);
    }

    fn pass_on(&self, result: RawResult) {
        *self.raw.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    }
}
