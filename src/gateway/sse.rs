//! The legacy HTTP+SSE transport (MCP 2024-11-05), which rmcp no longer
//! ships, so clients configured as `MCP_HOST=http://host:8811/sse` keep working.
//!
//! - `GET /sse` opens an event stream. Its first event is `event: endpoint`
//!   with `data: /message?sessionId=<id>`; every server->client message then
//!   follows as `event: message` + `data: <json>`, with keep-alive comments
//!   in between.
//! - `POST /message?sessionId=<id>` carries one client->server JSON-RPC
//!   message (or a batch) and is answered `202 Accepted`; the reply comes on
//!   the stream. Unknown session: 404; unparsable body: 400 (JSON bodies).
//!   Opening a stream when the shared session cap is reached: 503.
//! - Before the result of a call whose progress it sent, the stream pings the
//!   client and waits for its answer, so the progress is not lost ([`super::settle`]).
//!
//! Each session runs the handler with rmcp's own server machinery over a pair
//! of channels, so the handler sees an ordinary session: its `Peer` can send
//! notifications (`notifications/tools/list_changed`) that reach the stream.
//! Dropping the stream (the client went away, or the server shuts down)
//! cancels the session's service and forgets the session.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage};
use rmcp::service::{RoleServer, serve_server_with_ct};
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::settle::{SETTLE_TIMEOUT, Settle};
use super::wire::{self, MAX_BODY_BYTES, SessionCap, json_error};

/// Path of the event stream.
pub const SSE_PATH: &str = "/sse";
/// Path clients POST their messages to.
pub const MESSAGE_PATH: &str = "/message";
/// Interval of the keep-alive comments on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Messages buffered per direction before the sender waits.
const CHANNEL_CAPACITY: usize = 64;

type Factory<S> = Arc<dyn Fn() -> S + Send + Sync>;

/// The legacy SSE transport's sessions. Cheap to clone (shared state).
pub struct SseSessions<S> {
    new_handler: Factory<S>,
    sessions: Arc<Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>>,
    cap: Arc<SessionCap>,
}

impl<S> Clone for SseSessions<S> {
    fn clone(&self) -> Self {
        Self {
            new_handler: self.new_handler.clone(),
            sessions: self.sessions.clone(),
            cap: self.cap.clone(),
        }
    }
}

impl<S: rmcp::ServerHandler + Send + 'static> SseSessions<S> {
    pub fn new(new_handler: impl Fn() -> S + Send + Sync + 'static, cap: Arc<SessionCap>) -> Self {
        Self {
            new_handler: Arc::new(new_handler),
            sessions: Arc::default(),
            cap,
        }
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().expect("sse sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `GET /sse` and `POST /message`.
    pub fn router(self) -> Router {
        Router::new()
            .route(SSE_PATH, get(open_stream::<S>))
            .route(MESSAGE_PATH, post(post_message::<S>))
            .with_state(self)
    }

    fn sender(&self, id: &str) -> Option<mpsc::Sender<ClientJsonRpcMessage>> {
        self.sessions
            .lock()
            .expect("sse sessions lock")
            .get(id)
            .cloned()
    }

    fn remove(&self, id: &str) {
        let removed = self.sessions.lock().expect("sse sessions lock").remove(id);
        if removed.is_some() {
            self.cap.sse_closed();
        }
    }
}

/// Builds the `/sse` + `/message` routes for handlers made by `new_handler`.
pub fn router<S, F>(new_handler: F, cap: Arc<SessionCap>) -> Router
where
    F: Fn() -> S + Send + Sync + 'static,
    S: rmcp::ServerHandler + Send + 'static,
{
    SseSessions::new(new_handler, cap).router()
}

/// Cancels the session's service and forgets the session when the event
/// stream that owns it is dropped.
struct SessionGuard<S: rmcp::ServerHandler + Send + 'static> {
    id: String,
    sessions: SseSessions<S>,
    cancel: CancellationToken,
}

impl<S: rmcp::ServerHandler + Send + 'static> Drop for SessionGuard<S> {
    fn drop(&mut self) {
        self.sessions.remove(&self.id);
        self.cancel.cancel();
        tracing::debug!(session = %self.id, "sse stream closed; session ended");
    }
}

async fn open_stream<S: rmcp::ServerHandler + Send + 'static>(
    State(sessions): State<SseSessions<S>>,
) -> Response {
    let id = match super::auth::random_hex(16) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "cannot create an sse session id");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e);
        }
    };
    let (to_server, from_client) = mpsc::channel(CHANNEL_CAPACITY);
    let (to_client, mut from_server) = mpsc::channel(CHANNEL_CAPACITY);
    let admitted = sessions
        .cap
        .admit(async {
            sessions
                .sessions
                .lock()
                .expect("sse sessions lock")
                .insert(id.clone(), to_server);
            sessions.cap.sse_opened();
        })
        .await;
    if let Err(full) = admitted {
        return full;
    }
    let cancel = CancellationToken::new();
    let guard = SessionGuard {
        id: id.clone(),
        sessions: sessions.clone(),
        cancel: cancel.clone(),
    };

    let handler = (sessions.new_handler)();
    let transport = ChannelTransport {
        to_client,
        from_client,
        settle: Arc::default(),
    };
    let task_sessions = sessions.clone();
    let task_id = id.clone();
    tokio::spawn(async move {
        // A panic ends this one session (its stream closes; the client
        // reconnects), and is logged as the error it is.
        let served = crate::supervise::catch(async {
            match serve_server_with_ct(handler, transport, cancel.clone()).await {
                Ok(running) => {
                    let reason = running.waiting().await;
                    tracing::debug!(session = %task_id, ?reason, "sse session service ended");
                }
                Err(e) => {
                    tracing::debug!(session = %task_id, error = %e, "sse session not initialized")
                }
            }
        });
        if let Err(panic) = served.await {
            tracing::error!(session = %task_id, %panic, "sse session task panicked; session ended");
        }
        // The transport (and with it the stream's sender) is gone now, so the
        // stream ends; forget the session for POSTs that still arrive.
        task_sessions.remove(&task_id);
    });
    tracing::debug!(session = %id, "sse session opened");

    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("{MESSAGE_PATH}?sessionId={id}"));
    let messages = futures_util::stream::poll_fn(move |cx| from_server.poll_recv(cx)).map(
        move |message: ServerJsonRpcMessage| {
            let _owned_by_stream = &guard;
            let data = serde_json::to_string(&message).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot serialize a server message");
                String::new()
            });
            Event::default().event("message").data(data)
        },
    );
    let stream = futures_util::stream::once(async move { endpoint })
        .chain(messages)
        .map(Ok::<_, Infallible>);
    event_stream(stream)
}

fn event_stream(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Ask reverse proxies not to buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

/// The `sessionId` query parameter (our ids are hex: no decoding needed).
fn session_id(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("sessionId="))
        .filter(|id| !id.is_empty())
}

async fn post_message<S: rmcp::ServerHandler + Send + 'static>(
    State(sessions): State<SseSessions<S>>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let Some(id) = session_id(query.as_deref()) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "missing sessionId query parameter",
        );
    };
    let Some(sender) = sessions.sender(id) else {
        return unknown_session();
    };
    let (parts, body) = request.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("cannot read the message body (limit {MAX_BODY_BYTES} bytes): {e}"),
            );
        }
    };
    let messages = match wire::parse_body(&bytes) {
        Ok(wire::Body::One(message)) => vec![*message],
        Ok(wire::Body::Batch(items)) => items.into_iter().map(|(_, m)| m).collect(),
        Err(refusal) => {
            return json_error(StatusCode::BAD_REQUEST, "bad_request", &refusal.message);
        }
    };
    for mut message in messages {
        // As rmcp's streamable HTTP server does: handlers can read the HTTP
        // request (headers, extensions) of the POST that carried a request.
        if let ClientJsonRpcMessage::Request(request) = &mut message {
            request.request.extensions_mut().insert(parts.clone());
        }
        if sender.send(message).await.is_err() {
            sessions.remove(id);
            return unknown_session();
        }
    }
    StatusCode::ACCEPTED.into_response()
}

fn unknown_session() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "unknown or closed session; open a new one with GET /sse",
    )
}

/// The session's end of the two channels, as an rmcp transport.
struct ChannelTransport {
    to_client: mpsc::Sender<ServerJsonRpcMessage>,
    from_client: mpsc::Receiver<ClientJsonRpcMessage>,
    /// Progress before its result (see [`super::settle`]).
    settle: Arc<Settle>,
}

#[derive(Debug, thiserror::Error)]
#[error("the sse stream of this session is closed")]
pub struct StreamClosed;

impl Transport<RoleServer> for ChannelTransport {
    type Error = StreamClosed;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let to_client = self.to_client.clone();
        let settle = self.settle.clone();
        // Decided here, in the order rmcp sends; the sends themselves run concurrently.
        let ping = settle.to_client(&item);
        async move {
            if let Some(mut ping) = ping {
                to_client
                    .send(ping.request())
                    .await
                    .map_err(|_| StreamClosed)?;
                if tokio::time::timeout(SETTLE_TIMEOUT, &mut ping.answered)
                    .await
                    .is_err()
                {
                    tracing::debug!("an sse client did not answer a ping in time");
                    settle.give_up(&ping);
                }
            }
            to_client.send(item).await.map_err(|_| StreamClosed)
        }
    }

    /// The client's messages, without its answers to the stream's own pings.
    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            let message = self.from_client.recv().await?;
            if self.settle.from_client(&message) {
                return Some(message);
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.from_client.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_from_query() {
        assert_eq!(session_id(Some("sessionId=abc")), Some("abc"));
        assert_eq!(session_id(Some("x=1&sessionId=abc")), Some("abc"));
        assert_eq!(session_id(Some("sessionId=")), None);
        assert_eq!(session_id(Some("session_id=abc")), None);
        assert_eq!(session_id(None), None);
    }
}
