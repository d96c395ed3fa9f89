//! The session manager behind `/mcp`: rmcp's [`LocalSessionManager`], with a
//! [`Shortcut`] that may serve a request of an initialized session itself.
//!
//! rmcp passes every request of a session through its session worker, the
//! session's serve loop and a task spawned per request, and the answer back
//! the same way: about 0.28 ms per `tools/call` on a 2-core machine (see
//! BENCHMARKS.md, "Relay direct-path experiment"). A session manager is where
//! rmcp hands over a request after its own checks (Host, Origin, `Accept`,
//! content type, session id, protocol version headers), so a shortcut here
//! skips the hops and none of the checks.
//!
//! The front of `/mcp` ([`super::mcp`]) also calls the shortcut itself, for
//! the requests its [`super::direct_post`] finds plainly within those checks;
//! a call whose answer is not its only message then goes to rmcp after all,
//! with the running call in a [`Handover`].
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
};

use crate::upstream::raw::RawResult;

/// The events of one request's response stream.
pub type Events = Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync>>;
/// What a served request has to send, once the shortcut is ready to send
/// its headers.
pub type Held = Pin<Box<dyn Future<Output = Served> + Send>>;

/// What a request the shortcut serves sends back. (Moved once per request;
/// boxing the answer would cost each an allocation.)
#[allow(clippy::large_enum_variant)]
pub enum Served {
    /// Its response, and nothing else: it ended before sending anything more.
    Answer(Final),
    /// An event stream: what it sent on the way, then its response.
    Stream(Events),
}

impl Served {
    /// As an event stream (a lone answer: one event, with no id to resume
    /// from, as nothing follows it).
    pub fn into_events(self) -> Events {
        match self {
            Served::Stream(events) => events,
            Served::Answer(last) => Box::pin(futures_util::stream::once(std::future::ready(
                ServerSseMessage::from_message(last.into_message()),
            ))),
        }
    }
}

/// The response to a request the shortcut serves: a message, or a tool's
/// result as its server wrote it (see [`crate::upstream::raw`]).
#[allow(clippy::large_enum_variant)]
pub enum Final {
    Message(ServerJsonRpcMessage),
    Raw(RequestId, RawResult),
}

impl Final {
    /// As a message (for an event stream, which carries messages): a result
    /// passed on as it came keeps every member (see [`RawResult::kept`]).
    pub fn into_message(self) -> ServerJsonRpcMessage {
        match self {
            Final::Message(message) => message,
            Final::Raw(id, raw) => match raw.kept() {
                Ok(result) => ServerJsonRpcMessage::response(result, id),
                Err(e) => ServerJsonRpcMessage::error(
                    rmcp::ErrorData::internal_error(
                        format!("the server's result could not be read: {e}"),
                        None,
                    ),
                    Some(id),
                ),
            },
        }
    }

    /// As a whole `application/json` response; a result passed on as the
    /// server wrote it.
    pub fn into_response(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        let (id, raw) = match self {
            Final::Message(message) => return axum::Json(message).into_response(),
            Final::Raw(id, raw) => (id, raw),
        };
        let json = raw.json();
        let mut body = Vec::with_capacity(json.len() + 40);
        body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        // A number or a string: it always serializes.
        let _ = serde_json::to_writer(&mut body, &id);
        body.extend_from_slice(br#","result":"#);
        body.extend_from_slice(json);
        body.push(b'}');
        let json_type = axum::http::HeaderValue::from_static("application/json");
        ([(axum::http::header::CONTENT_TYPE, json_type)], body).into_response()
    }
}

/// Put by the front of `/mcp` on a request it hands to rmcp (its HTTP
/// parts' extensions): the front already asked the shortcut, so the session
/// manager does not ask again, and serves the stream of the call the front
/// started, if any, for this request.
#[derive(Clone, Default)]
pub struct Handover(Arc<std::sync::Mutex<Option<Events>>>);

impl Handover {
    pub fn with(events: Events) -> Self {
        Handover(Arc::new(std::sync::Mutex::new(Some(events))))
    }

    fn take(&self) -> Option<Events> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The [`Handover`] on `message`, if the front put one there.
fn handover(message: &ClientJsonRpcMessage) -> Option<&Handover> {
    let ClientJsonRpcMessage::Request(request) = message else {
        return None;
    };
    let parts = request
        .request
        .extensions()
        .get::<axum::http::request::Parts>()?;
    parts.extensions.get::<Handover>()
}

/// Serves some messages of initialized sessions without rmcp's session worker.
/// A message it does not take comes back by value, as it went in (boxing it
/// would cost every message an allocation).
#[allow(clippy::result_large_err)]
pub trait Shortcut: Send + Sync + 'static {
    /// Serves request `message` of session `id` on a stream of its own, or
    /// gives it back for rmcp to serve.
    fn serve(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<Held, ClientJsonRpcMessage>;
    /// Takes a notification or answer that belongs to something the shortcut
    /// serves (a client's answer to a request on such a stream, the
    /// cancellation of such a request), or gives it back for rmcp.
    fn accept(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), ClientJsonRpcMessage>;
    /// Session `id` is being closed: the shortcut serves it no more (the
    /// front asks the shortcut before rmcp could say the session is gone).
    fn close(&self, id: &SessionId);
    /// Whether rmcp's session worker of `id` is due a touch (see
    /// [`Sessions::keep_worker`]): what the shortcut serves never passes it.
    fn worker_due(&self, id: &SessionId) -> bool;
    /// The stream a `Last-Event-ID` of the shortcut's names, resumed after
    /// that event; `None` if it is not one of the shortcut's.
    fn resume(&self, id: &SessionId, last_event_id: &str) -> Option<Events>;
}

type Local = LocalSessionManager;

/// rmcp's local session manager, with an optional [`Shortcut`] in front.
pub struct Sessions {
    local: Arc<Local>,
    shortcut: Option<Arc<dyn Shortcut>>,
}

/// What rmcp's session worker is told to keep a session open: to close a
/// request's channel it never opened (its ids count up from 0). It acts on
/// nothing, and any event resets the worker's idle timer.
const NEVER_OPENED: u64 = u64::MAX;
/// How long a touch may take (a worker that does not take it in this time is
/// busy, which keeps it awake anyway).
const TOUCH_TIMEOUT: Duration = Duration::from_secs(1);

impl Sessions {
    pub fn new(local: Arc<Local>, shortcut: Option<Arc<dyn Shortcut>>) -> Self {
        Sessions { local, shortcut }
    }

    /// Before the shortcut serves a request of session `id`: rmcp's worker
    /// closes a session it has not heard from for its idle timeout, and
    /// hears nothing of what the shortcut serves. When the shortcut says it
    /// is due, the worker gets an event that changes nothing, so every call
    /// can be served directly (before, one a minute went through rmcp).
    pub async fn keep_worker(&self, id: &SessionId) {
        if !self.shortcut.as_ref().is_some_and(|s| s.worker_due(id)) {
            return;
        }
        let handle = self.local.sessions.read().await.get(id).cloned();
        let Some(handle) = handle else {
            return;
        };
        let touched = tokio::time::timeout(
            TOUCH_TIMEOUT,
            handle.close_request_wise_channel(NEVER_OPENED),
        );
        if !matches!(touched.await, Ok(Ok(()))) {
            tracing::debug!(session = %id, "rmcp's session worker did not take a touch");
        }
    }
}

impl SessionManager for Sessions {
    type Error = <Local as SessionManager>::Error;
    type Transport = <Local as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.local.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.local.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.local.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        if let Some(shortcut) = &self.shortcut {
            shortcut.close(id);
        }
        self.local.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let message = match (&self.shortcut, handover(&message)) {
            (_, Some(handover)) => match handover.take() {
                Some(events) => return Ok(events.left_stream()),
                None => message,
            },
            (Some(shortcut), None) => {
                self.keep_worker(id).await;
                match shortcut.serve(id, message) {
                    Ok(held) => return Ok(held.await.into_events().left_stream()),
                    Err(message) => message,
                }
            }
            (None, None) => message,
        };
        Ok(self.local.create_stream(id, message).await?.right_stream())
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        let message = match &self.shortcut {
            Some(shortcut) => match shortcut.accept(id, message) {
                Ok(()) => return Ok(()),
                Err(message) => message,
            },
            None => message,
        };
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.local.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        if let Some(events) = self
            .shortcut
            .as_ref()
            .and_then(|s| s.resume(id, &last_event_id))
        {
            return Ok(events.left_stream());
        }
        Ok(self.local.resume(id, last_event_id).await?.right_stream())
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.local.restore_session(id).await
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.local.event_store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves nothing; the worker is always due a touch.
    struct Due;

    impl Shortcut for Due {
        fn serve(
            &self,
            _: &SessionId,
            m: ClientJsonRpcMessage,
        ) -> Result<Held, ClientJsonRpcMessage> {
            Err(m)
        }
        fn accept(
            &self,
            _: &SessionId,
            m: ClientJsonRpcMessage,
        ) -> Result<(), ClientJsonRpcMessage> {
            Err(m)
        }
        fn close(&self, _: &SessionId) {}
        fn worker_due(&self, _: &SessionId) -> bool {
            true
        }
        fn resume(&self, _: &SessionId, _: &str) -> Option<Events> {
            None
        }
    }

    struct Idle;
    impl rmcp::ServerHandler for Idle {}

    /// rmcp's own session worker, with a short idle timeout: touched, it
    /// outlives several; left alone, it closes the session. (Paused time: the
    /// worker's idle timer is tokio's, so the cadence is exact.)
    #[tokio::test(start_paused = true)]
    async fn a_touched_session_outlives_rmcps_idle_timeout() {
        let idle = Duration::from_secs(1);
        let mut local = LocalSessionManager::default();
        local.session_config.keep_alive = Some(idle);
        let sessions = Sessions::new(Arc::new(local), Some(Arc::new(Due)));
        let (id, transport) = sessions.create_session().await.unwrap();
        let service = tokio::spawn(async move {
            let running = rmcp::serve_server(Idle, transport)
                .await
                .expect("initialized");
            running.waiting().await
        });
        let init = serde_json::from_value(serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"}}}))
        .unwrap();
        sessions.initialize_session(&id, init).await.unwrap();

        let until = tokio::time::Instant::now() + idle * 3;
        while tokio::time::Instant::now() < until {
            sessions.keep_worker(&id).await;
            tokio::time::sleep(idle / 5).await;
        }
        assert!(!service.is_finished(), "a touched session stays open");

        tokio::time::timeout(idle * 10, service)
            .await
            .expect("left alone, the session closes at its idle timeout")
            .unwrap()
            .unwrap();
    }
}
