//! One long-lived MCP client session to one upstream server: over the
//! container's stdio (Engine API attach) or over HTTP for remote entries.
//! Concurrent calls share the session; rmcp multiplexes them by request id.
#![allow(deprecated)] // sampling, roots and logging are SEP-2577-deprecated, and relayed.
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rmcp::model::{
    CancelledNotificationParam, ClientCapabilities, ClientConfig, ClientRequest, ClientResult,
    ElicitationCapability, ErrorCode, GetExtensions, Implementation, JsonRpcMessage, PingRequest,
    ProgressNotificationParam, ProgressToken, Prompt, ProtocolVersion, RequestId,
    RequestMetaObject, Resource, ResourceTemplate, ResultType, ServerNotification, ServerRequest,
    ServerResult, Tool,
};
use rmcp::service::{
    InboundStreamOrigin, NotificationContext, OriginatingRequestId, PeerRequestOptions,
    RequestContext, RequestHandle, RoleClient, RoleServer, RunningService, RxJsonRpcMessage,
    Service, ServiceExt, TxJsonRpcMessage,
};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::sink_stream::SinkStreamTransport;
use rmcp::{ErrorData as McpError, Peer};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::calls::{Call, Caller, InFlight};
use super::relay::{NOTIFY_TIMEOUT, Relay};

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

/// What an upstream sends on its own: `list_changed` goes to the pool (by
/// server name); progress, logs, resource updates and server-to-client
/// requests go to the client sessions they belong to (see [`super::relay`]).
/// It implements rmcp's `Service` rather than the typed `ClientHandler` so a
/// server-to-client request is relayed whole, custom methods included.
pub struct Handler {
    server: String,
    changed: UnboundedSender<String>,
    relay: Arc<Relay>,
    calls: Arc<InFlight<Call>>,
}

/// How long a client may take to answer an upstream's request (a person may
/// be answering an elicitation); the call's own deadline waits meanwhile.
pub const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

impl Handler {
    pub fn new(server: &str, changed: UnboundedSender<String>, relay: Arc<Relay>) -> Self {
        Handler {
            server: server.to_string(),
            changed,
            relay,
            calls: Arc::default(),
        }
    }

    /// Relays a server-to-client request to the client whose call it belongs
    /// to, and the client's answer back unchanged.
    async fn ask(
        &self,
        mut request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, McpError> {
        let method = server_method(&request).to_string();
        let stream = match context.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => Some(id.clone()),
            _ => None,
        };
        let token = context.meta.get_progress_token();
        let call = self
            .calls
            .route(stream.as_ref(), token.as_ref())
            .await
            .map_err(|e| e.error(&method))?;
        client_can(&call.caller.peer, &request, &method)?;
        let _asking = call.clock.asking();
        request
            .extensions_mut()
            .insert(OriginatingRequestId(call.caller.request.clone()));
        let options = PeerRequestOptions::no_options().with_meta(context.meta);
        let peer = call.caller.peer.clone();
        // A task of its own: rmcp tags a request sent while handling another
        // with that one's id (here the upstream's), which would send it down
        // the wrong client stream.
        let handle =
            tokio::spawn(async move { peer.send_request_with_option(request, options).await })
                .await
                .map_err(|e| McpError::internal_error(format!("relaying `{method}`: {e}"), None))?
                .map_err(|e| {
                    McpError::internal_error(format!("the client session is gone ({e})"), None)
                })?;
        let id = handle.id.clone();
        let peer = handle.peer.clone();
        let reason = tokio::select! {
            answer = handle.rx => return match answer {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(rmcp::ServiceError::McpError(e))) => Err(e),
                Ok(Err(e)) => Err(McpError::internal_error(format!("the client did not answer `{method}`: {e}"), None)),
                Err(_) => Err(McpError::internal_error("the client session closed before it answered", None)),
            },
            _ = context.ct.cancelled() => "the server cancelled its request".to_string(),
            _ = tokio::time::sleep(CLIENT_ANSWER_TIMEOUT) => format!("no answer within {}s", CLIENT_ANSWER_TIMEOUT.as_secs()),
        };
        let cancel = CancelledNotificationParam::new(Some(id), Some(reason.clone()));
        let _ = tokio::time::timeout(NOTIFY_TIMEOUT, peer.notify_cancelled(cancel)).await;
        Err(McpError::internal_error(
            format!("`{method}` was not answered: {reason}"),
            None,
        ))
    }
}

fn server_method(request: &ServerRequest) -> &str {
    match request {
        ServerRequest::PingRequest(_) => "ping",
        ServerRequest::CreateMessageRequest(_) => "sampling/createMessage",
        ServerRequest::ListRootsRequest(_) => "roots/list",
        ServerRequest::ElicitRequest(_) => "elicitation/create",
        ServerRequest::CustomRequest(r) => r.method.as_str(),
        _ => "(unknown)",
    }
}

/// An error for the upstream if the calling client did not declare the
/// capability `request` needs.
fn client_can(
    client: &Peer<RoleServer>,
    request: &ServerRequest,
    method: &str,
) -> Result<(), McpError> {
    let caps = client.peer_info().map(|i| i.capabilities.clone());
    let (declared, capability) = match request {
        ServerRequest::CreateMessageRequest(_) => (
            caps.as_ref().is_some_and(|c| c.sampling.is_some()),
            "sampling",
        ),
        ServerRequest::ElicitRequest(_) => (
            caps.as_ref().is_some_and(|c| c.elicitation.is_some()),
            "elicitation",
        ),
        ServerRequest::ListRootsRequest(_) => {
            (caps.as_ref().is_some_and(|c| c.roots.is_some()), "roots")
        }
        _ => return Ok(()),
    };
    if declared {
        return Ok(());
    }
    Err(McpError::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!(
            "the client this call came from does not support `{method}` (it did not declare the `{capability}` capability)"
        ),
        None,
    ))
}

impl Service<RoleClient> for Handler {
    async fn handle_request(
        &self,
        request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, McpError> {
        match request {
            ServerRequest::PingRequest(_) => Ok(ClientResult::empty(())),
            request => self.ask(request, context).await,
        }
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        context: NotificationContext<RoleClient>,
    ) -> Result<(), McpError> {
        match notification {
            ServerNotification::ToolListChangedNotification(_)
            | ServerNotification::PromptListChangedNotification(_)
            | ServerNotification::ResourceListChangedNotification(_) => {
                let _ = self.changed.send(self.server.clone());
            }
            ServerNotification::ProgressNotification(n) => {
                if context.extensions.get::<Tapped>().is_none() {
                    self.relay.progress(&self.calls, n.params).await
                }
            }
            ServerNotification::LoggingMessageNotification(n) => {
                self.relay.log(&self.calls, n.params).await
            }
            ServerNotification::ResourceUpdatedNotification(n) => {
                self.relay.resource_updated(n.params).await
            }
            other => {
                tracing::debug!(server = %self.server, ?other, "upstream notification not relayed")
            }
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        // What the gateway can relay to the client a request belongs to.
        let mut caps = ClientCapabilities::default();
        caps.sampling = Some(Default::default());
        caps.roots = Some(Default::default());
        let mut elicitation = ElicitationCapability::new();
        elicitation.form = Some(Default::default());
        elicitation.url = Some(Default::default());
        caps.elicitation = Some(elicitation);
        // Stdio servers of every age answer `initialize`; the newest protocol
        // that still has it is the safe choice for a long-lived session.
        ClientConfig::new(
            caps,
            Implementation::new("mcp-fleet", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }
}

/// A ready session. Dropping it closes the connection (not the container).
pub struct Session {
    service: RunningService<RoleClient, Handler>,
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
        let transport = AsyncRwTransport::new_client(stdio.stdout, stdio.stdin);
        Self::handshake(handler, transport, timeout).await
    }

    /// Connects to a remote server over streamable HTTP with its headers.
    pub async fn remote(
        url: &str,
        transport: &str,
        headers: &HashMap<String, String>,
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
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
        for (k, v) in headers {
            let name = k
                .parse()
                .map_err(|_| SessionError::Handshake(format!("bad header name {k}")))?;
            // The value may hold a secret: never echo it in the error.
            let value = v
                .parse()
                .map_err(|_| SessionError::Handshake(format!("bad value for header {k}")))?;
            config.custom_headers.insert(name, value);
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
        let transport = Tap {
            inner: Box::new(transport),
            calls: handler.calls.clone(),
        };
        match tokio::time::timeout(timeout, handler.serve(transport)).await {
            Err(_) => Err(SessionError::HandshakeTimeout(timeout)),
            Ok(Err(e)) => Err(SessionError::Handshake(e.to_string())),
            Ok(Ok(service)) => Ok(Session { service }),
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
    pub async fn forward(
        &self,
        request: ClientRequest,
        forward: Forward,
    ) -> Result<ServerResult, Failure> {
        let calls = &self.service.service().calls;
        let options = PeerRequestOptions::no_options().with_meta(upstream_meta(forward.meta));
        calls.sending();
        let handle = match self.peer().send_request_with_option(request, options).await {
            Ok(handle) => handle,
            Err(e) => {
                calls.abandon();
                return Err(Failure::Closed(e.to_string()));
            }
        };
        let (call, mut progress) = Call::new(forward.caller);
        let call = Arc::new(call);
        let RequestHandle {
            mut rx,
            id,
            progress_token,
            peer,
            ..
        } = handle;
        calls.insert(
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
        let reason = loop {
            let deadline = tokio::time::Instant::from_std(call.clock.deadline(timeout));
            tokio::select! {
                biased;
                answer = &mut rx => {
                    // Progress the upstream sent before its answer goes first.
                    while let Ok(p) = progress.try_recv() {
                        relay_progress(&call.caller, p).await;
                    }
                    return match answer {
                    Ok(Ok(result)) => Ok(completed(result)),
                    Ok(Err(rmcp::ServiceError::McpError(e))) => Err(Failure::Error(e)),
                    Ok(Err(e)) => Err(Failure::Closed(e.to_string())),
                    Err(_) => Err(Failure::Closed("the session closed".into())),
                    };
                }
                Some(p) = progress.recv() => relay_progress(&call.caller, p).await,
                _ = forward.ct.cancelled() => break Failure::Cancelled,
                _ = tokio::time::sleep_until(deadline) => if call.clock.expired(timeout) {
                    break Failure::Timeout(timeout);
                },
            }
        };
        let cancel = CancelledNotificationParam::new(Some(id.clone()), Some(reason.to_string()));
        let _ = tokio::time::timeout(NOTIFY_TIMEOUT, peer.notify_cancelled(cancel)).await;
        Err(reason)
    }
}

/// Sends one progress notification to the caller, under its own token.
async fn relay_progress(caller: &Caller, mut params: ProgressNotificationParam) {
    let Some(token) = caller.progress_token.clone() else {
        return;
    };
    params.progress_token = token;
    let _ = tokio::time::timeout(NOTIFY_TIMEOUT, caller.peer.notify_progress(params)).await;
}

/// The upstream transport with progress taken out as it arrives, in order
/// with the answers: rmcp hands notifications to tasks of their own, so a
/// call's last progress could otherwise reach the client after its result.
struct Tap {
    inner: Box<dyn Erased>,
    calls: Arc<InFlight<Call>>,
}

/// A transport behind a box: rustc cannot prove the futures of a generic
/// transport wrapped in another `Send` for every lifetime (rust-lang/rust#100013).
trait Erased: Send {
    fn send(&mut self, item: TxJsonRpcMessage<RoleClient>) -> BoxFuture<'static, io::Result<()>>;
    fn receive(&mut self) -> BoxFuture<'_, Option<RxJsonRpcMessage<RoleClient>>>;
    fn close(&mut self) -> BoxFuture<'_, io::Result<()>>;
}

impl<T: Transport<RoleClient>> Erased for T {
    fn send(&mut self, item: TxJsonRpcMessage<RoleClient>) -> BoxFuture<'static, io::Result<()>> {
        Box::pin(Transport::send(self, item).map(|r| r.map_err(io::Error::other)))
    }

    fn receive(&mut self) -> BoxFuture<'_, Option<RxJsonRpcMessage<RoleClient>>> {
        Box::pin(Transport::receive(self))
    }

    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(Transport::close(self).map(|r| r.map_err(io::Error::other)))
    }
}

impl Transport<RoleClient> for Tap {
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    /// Progress for a registered call is queued for it here, in order, and
    /// marked [`Tapped`] for the handler to leave alone.
    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        let calls = self.calls.clone();
        self.inner.receive().map(move |message| {
            let mut message = message?;
            if let JsonRpcMessage::Notification(n) = &mut message
                && let ServerNotification::ProgressNotification(p) = &mut n.notification
                && let Some(call) = calls.by_token_now(&p.params.progress_token)
            {
                call.progress(p.params.clone());
                p.extensions.insert(Tapped);
            }
            Some(message)
        })
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Marks progress [`Tap`] already queued for its call.
#[derive(Debug, Clone, Copy)]
struct Tapped;

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
