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
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use futures_util::SinkExt;
use rmcp::ServiceError;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, GetMeta, NumberOrString,
    ProgressToken, RequestId, RequestMetaObject, ServerJsonRpcMessage, ServerResult,
};
use tokio::sync::{Mutex, oneshot};

use rmcp::service::RoleClient;
use rmcp::transport::DynamicTransportError;

use super::{StdioTransport, Writer, codec_error};

/// The lane's request ids and progress tokens start here: rmcp numbers its
/// own from 0, and would need 2^40 requests in one session to get here.
const FIRST_ID: i64 = 1 << 40;

/// An answer as rmcp's request handles give it.
pub type Answer = Result<ServerResult, ServiceError>;

/// The lane of one stdio session.
pub struct Lane {
    write: Arc<Mutex<Option<Writer>>>,
    next: AtomicI64,
    /// Requests sent and not answered. Bounded by the calls in flight: each
    /// [`Sent`] takes its entry away when it is dropped.
    waiting: SyncMutex<HashMap<RequestId, oneshot::Sender<Answer>>>,
    /// The server's stdout ended: no answer can come.
    closed: AtomicBool,
}

/// A request sent on the lane; dropping it stops waiting for the answer.
pub struct Sent {
    pub id: RequestId,
    pub progress_token: ProgressToken,
    lane: Arc<Lane>,
}

impl Drop for Sent {
    fn drop(&mut self) {
        self.lane.waiting().remove(&self.id);
    }
}

impl Lane {
    pub(super) fn new(write: Arc<Mutex<Option<Writer>>>) -> Self {
        Lane {
            write,
            next: AtomicI64::new(FIRST_ID),
            waiting: SyncMutex::default(),
            closed: AtomicBool::new(false),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, oneshot::Sender<Answer>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `request` with `meta` merged into its `_meta` and a progress token of
    /// the lane's, as rmcp's `send_request_with_option` makes it, ready for
    /// [`Lane::write`]; its answer will come on the receiver.
    pub fn prepare(
        self: &Arc<Self>,
        mut request: ClientRequest,
        meta: RequestMetaObject,
    ) -> Result<(Sent, oneshot::Receiver<Answer>, ClientJsonRpcMessage), ServiceError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = RequestId::Number(n);
        let progress_token = ProgressToken(NumberOrString::Number(n));
        request.get_meta_mut().extend(meta);
        request
            .get_meta_mut()
            .set_progress_token(progress_token.clone());
        let (tx, answer) = oneshot::channel();
        {
            let mut waiting = self.waiting();
            // Under the lock `close` takes: a request is either refused here or dropped there.
            if self.closed.load(Ordering::Relaxed) {
                return Err(ServiceError::TransportClosed);
            }
            waiting.insert(id.clone(), tx);
        }
        let sent = Sent {
            id: id.clone(),
            progress_token,
            lane: self.clone(),
        };
        Ok((sent, answer, ClientJsonRpcMessage::request(request, id)))
    }

    /// Writes a notification (a cancellation of a lane request).
    pub async fn notify(&self, notification: ClientNotification) -> Result<(), ServiceError> {
        self.write(ClientJsonRpcMessage::notification(notification))
            .await
    }

    /// Writes one message to the server's stdin.
    pub async fn write(&self, message: ClientJsonRpcMessage) -> Result<(), ServiceError> {
        let mut write = self.write.lock().await;
        let Some(w) = write.as_mut() else {
            return Err(ServiceError::TransportClosed);
        };
        w.send(message).await.map_err(|e| {
            ServiceError::TransportSend(DynamicTransportError::new::<StdioTransport, RoleClient>(
                codec_error(e),
            ))
        })
    }

    /// Gives `message` to the lane request it answers; gives it back if it
    /// answers none.
    pub(super) fn answer(&self, message: ServerJsonRpcMessage) -> Option<ServerJsonRpcMessage> {
        let (id, answer) = match message {
            ServerJsonRpcMessage::Response(r) if self.is_ours(&r.id) => (r.id, Ok(r.result)),
            ServerJsonRpcMessage::Error(e) if e.id.as_ref().is_some_and(|i| self.is_ours(i)) => (
                e.id.expect("checked above"),
                Err(ServiceError::McpError(e.error)),
            ),
            other => return Some(other),
        };
        if let Some(tx) = self.waiting().remove(&id) {
            let _ = tx.send(answer);
        }
        None
    }

    fn is_ours(&self, id: &RequestId) -> bool {
        matches!(id, RequestId::Number(n) if *n >= FIRST_ID)
    }

    /// The server's stdout ended: every request waiting gets no answer.
    pub(super) fn close(&self) {
        let mut waiting = self.waiting();
        self.closed.store(true, Ordering::Relaxed);
        waiting.clear();
    }
}
