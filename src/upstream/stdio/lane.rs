//! Requests the gateway writes to a server's stdin itself, and their answers
//! taken off its stdout before rmcp's session sees them.
//!
//! A request through rmcp's client session is handed to the session's task,
//! which writes it, and its answer is handed back the same way: one more task
//! wake-up per call (on 2 cores, another thread's). Here the calling task
//! writes the request, and the transport, reading the answer, gives it to the
//! caller directly. The message on the wire is the one rmcp would write: the
//! request with `_meta` and a progress token, an id of the lane's own range.
//!
//! Used only where rmcp adds nothing to a request: servers that negotiated a
//! revision before 2026-07-28 (from that one rmcp adds per-request client
//! metadata, and ties a server's questions to the requests it knows of).
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::ServiceError;
use rmcp::model::{
    CancelledNotificationParam, ClientJsonRpcMessage, ClientNotification, ClientRequest, GetMeta,
    Notification, NumberOrString, ProgressToken, RequestId, RequestMetaObject,
    ServerJsonRpcMessage, ServerResult,
};
use rmcp::service::RoleClient;
use rmcp::transport::DynamicTransportError;
use tokio::sync::oneshot;

use super::{Stdin, StdioTransport};

/// The lane's request ids and progress tokens start here: rmcp numbers its
/// own from 0, and would need 2^40 requests in one session to get here.
const FIRST_ID: i64 = 1 << 40;

/// An answer as rmcp's request handles give it.
pub type Answer = Result<ServerResult, ServiceError>;

type Waiting = HashMap<RequestId, oneshot::Sender<Answer>>;

/// The lane of one stdio session.
pub struct Lane {
    stdin: Arc<Stdin>,
    next: AtomicI64,
    /// Requests not answered yet; `None` once the server's stdout has ended
    /// (no answer can come). Bounded by the calls in flight: each
    /// [`LaneCall`] takes its entry away when it is dropped.
    waiting: Mutex<Option<Waiting>>,
}

/// A request on the lane, written once its caller is ready for what the
/// server sends on its behalf; dropping it stops waiting for the answer.
pub struct LaneCall {
    pub id: RequestId,
    pub progress_token: ProgressToken,
    unsent: Option<Box<ClientJsonRpcMessage>>,
    lane: Arc<Lane>,
}

impl LaneCall {
    /// Writes the request (the first time only).
    pub async fn write(&mut self) -> Result<(), ServiceError> {
        match self.unsent.take() {
            Some(message) => self.lane.write(*message).await,
            None => Ok(()),
        }
    }

    /// Tells the server the request is no longer wanted.
    pub async fn cancel(&self, cancel: CancelledNotificationParam) -> Result<(), ServiceError> {
        let n = ClientNotification::CancelledNotification(Notification::new(cancel));
        self.lane.write(ClientJsonRpcMessage::notification(n)).await
    }
}

impl Drop for LaneCall {
    fn drop(&mut self) {
        if let Some(waiting) = self.lane.waiting().as_mut() {
            waiting.remove(&self.id);
        }
    }
}

impl Lane {
    pub(super) fn new(stdin: Arc<Stdin>) -> Self {
        Lane {
            stdin,
            next: AtomicI64::new(FIRST_ID),
            waiting: Mutex::new(Some(Waiting::new())),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Option<Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `request` with `meta` merged into its `_meta` and a progress token of
    /// the lane's, as rmcp's `send_request_with_option` makes it; its answer
    /// will come on the receiver once [`LaneCall::write`] has sent it.
    pub fn prepare(
        self: &Arc<Self>,
        mut request: ClientRequest,
        meta: RequestMetaObject,
    ) -> Result<(LaneCall, oneshot::Receiver<Answer>), ServiceError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = RequestId::Number(n);
        let progress_token = ProgressToken(NumberOrString::Number(n));
        request.get_meta_mut().extend(meta);
        request
            .get_meta_mut()
            .set_progress_token(progress_token.clone());
        let (tx, answer) = oneshot::channel();
        self.waiting()
            .as_mut()
            .ok_or(ServiceError::TransportClosed)?
            .insert(id.clone(), tx);
        let call = LaneCall {
            unsent: Some(Box::new(ClientJsonRpcMessage::request(request, id.clone()))),
            id,
            progress_token,
            lane: self.clone(),
        };
        Ok((call, answer))
    }

    async fn write(&self, message: ClientJsonRpcMessage) -> Result<(), ServiceError> {
        self.stdin.send(message).await.map_err(|e| {
            ServiceError::TransportSend(DynamicTransportError::new::<StdioTransport, RoleClient>(e))
        })
    }

    /// Gives `message` to the lane request it answers; gives it back if it
    /// answers none of the lane's.
    pub(super) fn answer(&self, message: ServerJsonRpcMessage) -> Option<ServerJsonRpcMessage> {
        let (id, answer) = match message {
            ServerJsonRpcMessage::Response(r) if is_ours(&r.id) => (r.id, Ok(r.result)),
            ServerJsonRpcMessage::Error(e) if e.id.as_ref().is_some_and(is_ours) => (
                e.id.expect("checked above"),
                Err(ServiceError::McpError(e.error)),
            ),
            other => return Some(other),
        };
        // An answer nobody waits for any more (the call gave up) is dropped.
        if let Some(tx) = self.waiting().as_mut().and_then(|w| w.remove(&id)) {
            let _ = tx.send(answer);
        }
        None
    }

    /// The server's stdout ended: every request waiting gets no answer, and
    /// new ones are refused.
    pub(super) fn close(&self) {
        self.waiting().take();
    }
}

fn is_ours(id: &RequestId) -> bool {
    matches!(id, RequestId::Number(n) if *n >= FIRST_ID)
}
