//! A call's progress reaches a legacy SSE client before the call's result.
//!
//! The TypeScript SDK's client (1.x, through the latest) handles a
//! notification a microtask after it reads it, but a response at once, and its
//! legacy SSE transport dispatches every event of one network read together:
//! progress that arrives in the same read as its call's result finds the call
//! already finished and is dropped ("unknown token";
//! modelcontextprotocol/typescript-sdk#2580). A server cannot keep two
//! messages out of one read (an upstream that reports progress right before
//! its result makes them arrive together), so before the result of a call
//! whose progress it sent, the `/sse` stream sends the client a `ping` and
//! waits for the answer: a client answers only after it has handled what came
//! before the ping. Calls without progress pay nothing; the `/mcp` transport
//! needs none of this (its client reads one event at a time).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, GetMeta, PingRequest, ProgressToken, RequestId,
    ServerJsonRpcMessage, ServerNotification, ServerRequest,
};
use tokio::sync::oneshot;

/// How long a result waits for the client's answer to the ping before it is
/// sent anyway (a client must answer pings at once).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Calls with a progress token tracked per session; beyond, calls go untracked
/// (their results are sent without a ping).
pub const MAX_TRACKED: usize = 1024;

/// One session's calls with progress tokens, and its pings in flight.
#[derive(Default)]
pub struct Settle {
    calls: Mutex<Calls>,
    pings: Mutex<HashMap<RequestId, oneshot::Sender<()>>>,
    next_ping: AtomicU64,
}

#[derive(Default)]
struct Calls {
    /// The client's requests with a progress token: whether progress was sent.
    progressed: HashMap<RequestId, bool>,
    by_token: HashMap<ProgressToken, RequestId>,
}

impl Calls {
    /// Forgets a finished call; true if its progress was sent.
    fn forget(&mut self, id: &RequestId) -> bool {
        let Some(progressed) = self.progressed.remove(id) else {
            return false;
        };
        self.by_token.retain(|_, r| r != id);
        progressed
    }
}

/// A ping the stream sends before a result; the result waits for `answered`.
pub struct Ping {
    pub id: RequestId,
    pub answered: oneshot::Receiver<()>,
}

impl Ping {
    pub fn request(&self) -> ServerJsonRpcMessage {
        ServerJsonRpcMessage::request(
            ServerRequest::PingRequest(PingRequest::default()),
            self.id.clone(),
        )
    }
}

impl Settle {
    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pings(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, oneshot::Sender<()>>> {
        self.pings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks at a message from the client; false if it is the answer to one
    /// of our pings (then it goes no further).
    pub fn from_client(&self, message: &ClientJsonRpcMessage) -> bool {
        match message {
            ClientJsonRpcMessage::Request(r) => {
                if let Some(token) = r.request.get_meta().get_progress_token() {
                    let mut calls = self.calls();
                    if calls.progressed.len() < MAX_TRACKED {
                        calls.progressed.insert(r.id.clone(), false);
                        calls.by_token.insert(token, r.id.clone());
                    }
                }
            }
            ClientJsonRpcMessage::Notification(n) => {
                if let ClientNotification::CancelledNotification(c) = &n.notification
                    && let Some(id) = &c.params.request_id
                {
                    self.calls().forget(id);
                }
            }
            ClientJsonRpcMessage::Response(r) => return !self.answered(&r.id),
            ClientJsonRpcMessage::Error(e) => {
                return !e.id.as_ref().is_some_and(|id| self.answered(id));
            }
        }
        true
    }

    fn answered(&self, id: &RequestId) -> bool {
        match self.pings().remove(id) {
            Some(waiter) => {
                let _ = waiter.send(());
                true
            }
            None => false,
        }
    }

    /// Looks at a message for the client: a result of a call whose progress
    /// was sent needs a ping first.
    pub fn to_client(&self, message: &ServerJsonRpcMessage) -> Option<Ping> {
        let id = match message {
            ServerJsonRpcMessage::Notification(n) => {
                if let ServerNotification::ProgressNotification(p) = &n.notification {
                    let mut calls = self.calls();
                    if let Some(id) = calls.by_token.get(&p.params.progress_token).cloned() {
                        calls.progressed.insert(id, true);
                    }
                }
                return None;
            }
            ServerJsonRpcMessage::Response(r) => &r.id,
            ServerJsonRpcMessage::Error(e) => match &e.id {
                Some(id) => id,
                None => return None,
            },
            ServerJsonRpcMessage::Request(_) => return None,
        };
        if !self.calls().forget(id) {
            return None;
        }
        let n = self.next_ping.fetch_add(1, Ordering::Relaxed);
        let id = RequestId::String(format!("mcp-fleet-settle-{n}").into());
        let (tx, answered) = oneshot::channel();
        self.pings().insert(id.clone(), tx);
        Some(Ping { id, answered })
    }

    /// Forgets a ping that got no answer in time.
    pub fn give_up(&self, ping: &Ping) {
        self.pings().remove(&ping.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::NumberOrString;

    fn message(json: serde_json::Value) -> ClientJsonRpcMessage {
        serde_json::from_value(json).expect("a client message")
    }

    fn server(json: serde_json::Value) -> ServerJsonRpcMessage {
        serde_json::from_value(json).expect("a server message")
    }

    fn call(id: i64, token: Option<i64>) -> ClientJsonRpcMessage {
        let mut params = serde_json::json!({"name": "t", "arguments": {}});
        if let Some(t) = token {
            params["_meta"] = serde_json::json!({"progressToken": t});
        }
        message(
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}),
        )
    }

    fn progress(token: i64) -> ServerJsonRpcMessage {
        server(
            serde_json::json!({"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": token, "progress": 1}}),
        )
    }

    fn result(id: i64) -> ServerJsonRpcMessage {
        server(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}))
    }

    fn ping_id(ping: &Ping) -> RequestId {
        match ping.request() {
            ServerJsonRpcMessage::Request(r) => {
                assert!(matches!(r.request, ServerRequest::PingRequest(_)));
                r.id
            }
            _ => panic!("a ping is a request"),
        }
    }

    #[test]
    fn a_result_after_its_progress_waits_for_the_clients_answer_to_a_ping() {
        let s = Settle::default();
        assert!(s.from_client(&call(1, Some(7))));
        assert!(s.to_client(&progress(7)).is_none());
        let mut ping = s.to_client(&result(1)).expect("a ping before the result");
        let id = ping_id(&ping);
        let pong = message(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {}}));
        assert!(!s.from_client(&pong), "the pong is the gateway's own");
        assert!(ping.answered.try_recv().is_ok());
        assert!(
            s.calls().progressed.is_empty() && s.pings().is_empty(),
            "all forgotten"
        );
    }

    #[test]
    fn calls_without_progress_and_other_answers_pass_straight() {
        let s = Settle::default();
        s.from_client(&call(1, Some(7)));
        s.from_client(&call(2, None));
        assert!(s.to_client(&result(1)).is_none());
        assert!(s.to_client(&result(2)).is_none());
        let answer = message(serde_json::json!({"jsonrpc": "2.0", "id": 0, "result": {}}));
        assert!(
            s.from_client(&answer),
            "an answer to another request goes on"
        );
    }

    #[test]
    fn a_cancelled_call_is_forgotten() {
        let s = Settle::default();
        s.from_client(&call(1, Some(7)));
        s.to_client(&progress(7));
        s.from_client(&message(serde_json::json!({"jsonrpc": "2.0",
            "method": "notifications/cancelled", "params": {"requestId": 1}})));
        let calls = s.calls();
        assert!(calls.progressed.is_empty() && calls.by_token.is_empty());
        drop(calls);
        assert!(s.to_client(&result(1)).is_none());
    }

    #[test]
    fn an_unanswered_ping_is_given_up() {
        let s = Settle::default();
        s.from_client(&call(1, Some(7)));
        s.to_client(&progress(7));
        let ping = s.to_client(&result(1)).expect("a ping before the result");
        assert!(matches!(ping_id(&ping), NumberOrString::String(_)));
        s.give_up(&ping);
        assert!(s.pings().is_empty());
    }
}
