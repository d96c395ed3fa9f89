//! One long-lived MCP client session to one upstream server: over the
//! container's stdio (Engine API attach) or over HTTP for remote entries.
//! Concurrent calls share the session; rmcp multiplexes them by request id.
#![allow(deprecated)] // logging is SEP-2577-deprecated, and relayed.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CancelledNotificationParam, ClientRequest, Notification, PingRequest, ProgressToken, Prompt,
    ProtocolVersion, RequestId, RequestMetaObject, Resource, ResourceTemplate, ResultType,
    ServerJsonRpcMessage, ServerNotification, ServerResult, Tool,
};
use rmcp::service::{PeerRequestOptions, RequestHandle, RoleClient, RunningService, ServiceExt};
use rmcp::transport::Transport;
use rmcp::transport::sink_stream::SinkStreamTransport;
use rmcp::{ErrorData as McpError, Peer};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::calls::{Call, Caller, ForCaller, InFlight};
use super::inbound::Handler;
use super::raw::{Reply, typed_arguments};
use super::relay::NOTIFY_TIMEOUT;
use super::stdio::{Lane, LaneCall, StdioTransport, lane};

use crate::catalog::{RemoteUrl, Secret};
use crate::runtime::Stdio;

/// What an upstream server offers, as listed right after the handshake (and
/// again whenever it says its lists changed).
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
}

/// A ready session. Dropping it closes the connection (not the container).
pub struct Session {
    service: RunningService<RoleClient, Handler>,
    /// Where the gateway writes relayed requests itself (see [`Lane`]).
    lane: Option<Arc<Lane>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("MCP handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("MCP handshake failed: {0}")]
    Handshake(String),
    #[error("{0}")]
    Call(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl Session {
    /// Performs the handshake over a container's stdio.
    pub async fn stdio(
        stdio: Stdio,
        handler: Handler,
        timeout: Duration,
    ) -> Result<Self, SessionError> {
        let transport = StdioTransport::new(stdio.stdout, stdio.stdin);
        let lane = transport.lane();
        let mut session = Self::handshake(handler, transport, timeout).await?;
        let before_2026 = session
            .peer()
            .peer_info()
            .is_some_and(|i| i.protocol_version < ProtocolVersion::V_2026_07_28);
        session.lane = before_2026.then_some(lane);
        Ok(session)
    }

    /// Connects to a remote server over streamable HTTP with its headers.
    pub async fn remote(
        url: &RemoteUrl,
        transport: &str,
        headers: &BTreeMap<String, Secret>,
        handler: Handler,
        timeout: Duration,
    ) -> Result<Self, SessionError> {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        if transport == "sse" {
            let (tx, rx) = super::sse_client::connect(url, headers)
                .await
                .map_err(SessionError::Handshake)?;
            return Self::handshake(handler, SinkStreamTransport::new(tx, rx), timeout).await;
        }
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.expose().to_string());
        let headers = super::sse_client::header_map(headers).map_err(SessionError::Handshake)?;
        for (name, value) in &headers {
            config.custom_headers.insert(name.clone(), value.clone());
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        Self::handshake(handler, transport, timeout).await
    }

    async fn handshake<T>(
        handler: Handler,
        transport: T,
        timeout: Duration,
    ) -> Result<Self, SessionError>
    where
        T: Transport<RoleClient> + 'static,
    {
        let transport = handler.tap(transport);
        match tokio::time::timeout(timeout, handler.serve(transport)).await {
            Err(_) => Err(SessionError::HandshakeTimeout(timeout)),
            Ok(Err(e)) => Err(SessionError::Handshake(e.to_string())),
            Ok(Ok(service)) => Ok(Session {
                service,
                lane: None,
            }),
        }
    }

    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    pub fn is_closed(&self) -> bool {
        self.service.is_closed()
    }

    /// Lists everything the server's capabilities say it has.
    pub async fn list(&self, timeout: Duration) -> Result<Listing, SessionError> {
        let peer = self.peer();
        let caps = peer
            .peer_info()
            .map(|i| i.capabilities.clone())
            .unwrap_or_default();
        let work = async {
            let mut l = Listing::default();
            if caps.tools.is_some() {
                l.tools = peer.list_all_tools().await?;
            }
            if caps.prompts.is_some() {
                l.prompts = peer.list_all_prompts().await?;
            }
            if caps.resources.is_some() {
                l.resources = peer.list_all_resources().await?;
                l.resource_templates = peer.list_all_resource_templates().await?;
            }
            Ok::<_, rmcp::ServiceError>(l)
        };
        match tokio::time::timeout(timeout, work).await {
            Err(_) => Err(SessionError::Timeout(timeout)),
            Ok(r) => r.map_err(|e| SessionError::Call(e.to_string())),
        }
    }

    pub async fn ping(&self, timeout: Duration) -> Result<(), SessionError> {
        let req = ClientRequest::PingRequest(PingRequest::default());
        match tokio::time::timeout(timeout, self.peer().send_request(req)).await {
            Err(_) => Err(SessionError::Timeout(timeout)),
            Ok(r) => r.map(|_| ()).map_err(|e| SessionError::Call(e.to_string())),
        }
    }

    /// Forwards one client request as it is, within the call's deadline;
    /// what the upstream sends on the call's behalf meanwhile reaches `caller`.
    /// The answer may come unread ([`Reply::Raw`]): [`read`] reads it.
    pub async fn forward(
        &self,
        request: ClientRequest,
        forward: Forward,
    ) -> Result<Reply, Failure> {
        let calls = self.service.service().calls();
        let meta = upstream_meta(forward.meta);
        let sending = calls.sending();
        let (mut rx, id, progress_token, mut upstream) = match &self.lane {
            Some(lane) => {
                let (call, rx) = lane.prepare(request, meta).map_err(closed)?;
                let (id, token) = (call.id.clone(), call.progress_token.clone());
                (AnswerRx::Lane(rx), id, token, Upstream::Lane(call))
            }
            None => {
                let mut request = request;
                typed_arguments(&mut request).map_err(Failure::Error)?;
                let options = PeerRequestOptions::no_options().with_meta(meta);
                let RequestHandle {
                    rx,
                    id,
                    progress_token,
                    peer,
                    ..
                } = self
                    .peer()
                    .send_request_with_option(request, options)
                    .await
                    .map_err(closed)?;
                (AnswerRx::Peer(rx), id, progress_token, Upstream::Peer(peer))
            }
        };
        let (call, mut queue) = Call::new(forward.caller);
        let call = Arc::new(call);
        sending.register(
            id.clone(),
            progress_token.clone(),
            call.caller.session,
            call.clone(),
        );
        let _registered = Registered {
            calls,
            id: &id,
            token: &progress_token,
        };
        let timeout = forward.timeout;
        // A lane request is written only now that its call is registered: the
        // server's first progress may come before this task runs again.
        if let Err(reason) = upstream.write(timeout, &forward.ct).await {
            return Err(upstream.give_up(&id, reason).await);
        }
        let reason = loop {
            let deadline = tokio::time::Instant::from_std(call.clock.deadline(timeout));
            tokio::select! {
                biased;
                answer = rx.recv() => {
                    // Progress the upstream sent before its answer goes first.
                    while let Ok(item) = queue.try_recv() {
                        deliver(&call.caller, item).await;
                    }
                    return answered(answer);
                }
                Some(item) = queue.recv() => deliver(&call.caller, item).await,
                _ = forward.ct.cancelled() => break Failure::Cancelled,
                _ = tokio::time::sleep_until(deadline) => if call.clock.expired(timeout) {
                    break Failure::Timeout(timeout);
                },
            }
        };
        Err(upstream.give_up(&id, reason).await)
    }
}

fn closed(e: rmcp::ServiceError) -> Failure {
    Failure::Closed(e.to_string())
}

/// Where a forwarded request went: rmcp's session (which has written it),
/// or the lane.
enum Upstream {
    Peer(Peer<RoleClient>),
    Lane(LaneCall),
}

impl Upstream {
    /// Writes a lane request within the call's deadline, unless the client
    /// cancels first (rmcp's session has written its own already).
    async fn write(&mut self, timeout: Duration, ct: &CancellationToken) -> Result<(), Failure> {
        let Upstream::Lane(call) = self else {
            return Ok(());
        };
        tokio::select! {
            written = tokio::time::timeout(timeout, call.write()) => match written {
                Ok(written) => written.map_err(closed),
                Err(_) => Err(Failure::Timeout(timeout)),
            },
            _ = ct.cancelled() => Err(Failure::Cancelled),
        }
    }

    /// Tells the server request `id` is no longer wanted, and why.
    async fn give_up(&self, id: &RequestId, reason: Failure) -> Failure {
        let cancel = CancelledNotificationParam::new(Some(id.clone()), Some(reason.to_string()));
        let _ = tokio::time::timeout(NOTIFY_TIMEOUT, async {
            match self {
                Upstream::Peer(peer) => peer.notify_cancelled(cancel).await,
                Upstream::Lane(call) => call.cancel(cancel).await,
            }
        })
        .await;
        reason
    }
}

/// Where a forwarded request's answer comes: from rmcp's session (read),
/// or from the lane (maybe unread).
enum AnswerRx {
    Peer(oneshot::Receiver<Result<ServerResult, rmcp::ServiceError>>),
    Lane(oneshot::Receiver<lane::Answer>),
}

impl AnswerRx {
    /// The answer (cancel-safe: a receiver is only polled).
    async fn recv(&mut self) -> Result<lane::Answer, oneshot::error::RecvError> {
        match self {
            AnswerRx::Peer(rx) => rx.await.map(|a| a.map(|r| Reply::Typed(Box::new(r)))),
            AnswerRx::Lane(rx) => rx.await,
        }
    }
}

/// What the upstream's answer means for the client.
fn answered(answer: Result<lane::Answer, oneshot::error::RecvError>) -> Result<Reply, Failure> {
    match answer {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(rmcp::ServiceError::McpError(e))) => Err(Failure::Error(e)),
        Ok(Err(e)) => Err(Failure::Closed(e.to_string())),
        Err(_) => Err(Failure::Closed("the session closed".into())),
    }
}

/// Sends the caller a notification of its call (progress under its own
/// token), on the call's own stream when the gateway serves it.
async fn deliver(caller: &Caller, item: ForCaller) {
    let notification = match item {
        ForCaller::Progress(mut params) => {
            let Some(token) = caller.progress_token.clone() else {
                return;
            };
            params.progress_token = token;
            ServerNotification::ProgressNotification(Notification::new(params))
        }
        ForCaller::Log(params) => {
            ServerNotification::LoggingMessageNotification(Notification::new(params))
        }
    };
    if let Some(stream) = &caller.stream {
        if !stream.send(ServerJsonRpcMessage::notification(notification)) {
            tracing::debug!("a notification for a caller was dropped: its stream is gone or full");
        }
        return;
    }
    let _ = tokio::time::timeout(NOTIFY_TIMEOUT, caller.peer.send_notification(notification)).await;
}

/// What [`Session::forward`] needs besides the request.
pub struct Forward {
    pub caller: Caller,
    /// The client request's `_meta`.
    pub meta: RequestMetaObject,
    /// Silence (no answer, no progress) after which the call is given up.
    pub timeout: Duration,
    /// Cancelled when the client cancels its request or goes away.
    pub ct: CancellationToken,
}

/// Why a forwarded request got no result.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("did not answer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("the client cancelled the request")]
    Cancelled,
    /// The upstream's own JSON-RPC error, to be relayed as it is.
    #[error("{}", .0.message)]
    Error(McpError),
    #[error("the session failed: {0}")]
    Closed(String),
    /// No session could serve the request (for its user); it was not sent.
    #[error("{0}")]
    NoSession(String),
}

/// Unregisters a call however its forwarding ends.
struct Registered<'a> {
    calls: &'a InFlight<Call>,
    id: &'a RequestId,
    token: &'a ProgressToken,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.calls.remove(self.id, self.token);
    }
}

/// The client's `_meta` as the upstream gets it: without the client's
/// progress token (rmcp sets the gateway's own, mapped back per call) and
/// without the 2026-07-28 per-request client context, which describes the
/// client to the gateway, not the gateway's session to the upstream.
fn upstream_meta(mut meta: RequestMetaObject) -> RequestMetaObject {
    for key in [
        "progressToken",
        "io.modelcontextprotocol/protocolVersion",
        "io.modelcontextprotocol/clientInfo",
        "io.modelcontextprotocol/clientCapabilities",
    ] {
        meta.0.remove(key);
    }
    meta
}

/// A forwarded request's answer as rmcp reads it, and as the newest
/// protocol wants it (see [`completed`]).
pub fn read(reply: Result<Reply, Failure>) -> Result<ServerResult, Failure> {
    reply?
        .typed()
        .map(completed)
        .map_err(|e| Failure::Closed(format!("its answer could not be read: {e}")))
}

/// A final result as the newest protocol wants it. Upstreams on older
/// revisions leave `resultType` out; clients on 2026-07-28 require it (rmcp
/// strips it again for older clients).
fn completed(mut result: ServerResult) -> ServerResult {
    match &mut result {
        ServerResult::CallToolResult(r) => {
            r.result_type.get_or_insert(ResultType::COMPLETE);
        }
        ServerResult::GetPromptResult(r) => {
            r.result_type.get_or_insert(ResultType::COMPLETE);
        }
        ServerResult::ReadResourceResult(r) => {
            r.result_type.get_or_insert(ResultType::COMPLETE);
        }
        _ => {}
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lane call to a server whose stdin is full (it reads nothing) ends at
    /// the deadline, or when the client cancels: its write waits on neither.
    #[tokio::test]
    async fn a_lane_write_the_server_never_takes_ends_at_the_deadline_or_the_cancel() {
        let (_server_out, stdout) = tokio::io::duplex(64);
        let (stdin, _server_in) = tokio::io::duplex(16);
        let lane = StdioTransport::new(Box::pin(stdout), Box::pin(stdin)).lane();
        let request = || ClientRequest::PingRequest(PingRequest::default());
        let never = CancellationToken::new();

        let (call, _answer) = lane.prepare(request(), RequestMetaObject::new()).unwrap();
        let written = Upstream::Lane(call)
            .write(Duration::from_millis(100), &never)
            .await;
        assert!(matches!(written, Err(Failure::Timeout(_))), "{written:?}");

        let (call, _answer) = lane.prepare(request(), RequestMetaObject::new()).unwrap();
        let cancelled = CancellationToken::new();
        cancelled.cancel();
        let written = Upstream::Lane(call)
            .write(Duration::from_secs(3600), &cancelled)
            .await;
        assert!(matches!(written, Err(Failure::Cancelled)), "{written:?}");
    }

    #[test]
    fn the_upstream_gets_the_clients_meta_without_its_token_and_client_context() {
        let mut meta = RequestMetaObject::new();
        meta.set_progress_token(ProgressToken(rmcp::model::NumberOrString::Number(7)));
        meta.set_protocol_version(rmcp::model::ProtocolVersion::V_2026_07_28);
        meta.set_client_capabilities(Default::default());
        meta.set_client_info(rmcp::model::Implementation::new("c", "1"));
        meta.set_log_level(rmcp::model::LoggingLevel::Warning);
        meta.set_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        meta.0
            .insert("vendor/x".into(), serde_json::json!({"keep": true}));
        let out = upstream_meta(meta);
        assert!(out.get_progress_token().is_none());
        assert!(out.protocol_version().is_none());
        assert!(out.client_capabilities().is_none());
        assert!(out.client_info().is_none());
        assert_eq!(out.log_level(), Some(rmcp::model::LoggingLevel::Warning));
        assert!(out.get_traceparent().is_some());
        assert_eq!(out.0["vendor/x"], serde_json::json!({"keep": true}));
    }
}
