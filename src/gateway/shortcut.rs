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
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::Peekable;
use futures_util::{Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
};

/// The events of one request's response stream.
pub type Events = Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync>>;

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
    ) -> Result<Events, ClientJsonRpcMessage>;
    /// Takes a notification or answer that belongs to something the shortcut
    /// serves (a client's answer to a request on such a stream, the
    /// cancellation of such a request), or gives it back for rmcp.
    fn accept(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), ClientJsonRpcMessage>;
}

type Local = LocalSessionManager;

/// How long a shortcut's response waits for its first event before its
/// headers go out anyway (well inside any client's header timeout).
const HOLD: Duration = Duration::from_secs(1);

/// `events`, once the first is ready or [`HOLD`] has passed. A short answer
/// then leaves in one write, headers, event and end of stream together,
/// instead of three, each waking the client.
async fn held(events: Events) -> Peekable<Events> {
    let mut events = events.peekable();
    let _ = tokio::time::timeout(HOLD, Pin::new(&mut events).peek()).await;
    events
}

/// rmcp's local session manager, with an optional [`Shortcut`] in front.
pub struct Sessions {
    local: Arc<Local>,
    shortcut: Option<Arc<dyn Shortcut>>,
}

impl Sessions {
    pub fn new(local: Arc<Local>, shortcut: Option<Arc<dyn Shortcut>>) -> Self {
        Sessions { local, shortcut }
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
        self.local.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let message = match &self.shortcut {
            Some(shortcut) => match shortcut.serve(id, message) {
                Ok(events) => return Ok(held(events).await.left_stream()),
                Err(message) => message,
            },
            None => message,
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
        self.local.resume(id, last_event_id).await
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
