//! What an upstream sends the gateway on its own, relayed to where it
//! belongs: `list_changed` to the pool, progress, logs, resource updates and
//! server-to-client requests to the client sessions (see [`super::relay`]).
#![allow(deprecated)] // sampling, roots and logging are SEP-2577-deprecated, and relayed.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rmcp::model::{
    CancelledNotificationParam, ClientCapabilities, ClientConfig, ClientResult,
    ElicitationCapability, ErrorCode, GetExtensions, GetMeta, Implementation, JsonRpcMessage,
    Notification, ProtocolVersion, RequestId, ServerJsonRpcMessage, ServerNotification,
    ServerRequest,
};
use rmcp::service::{
    InboundStreamOrigin, NotificationContext, OriginatingRequestId, PeerRequestOptions,
    RequestContext, RoleClient, RoleServer, RxJsonRpcMessage, Service, TxJsonRpcMessage,
};
use rmcp::transport::Transport;
use rmcp::{ErrorData as McpError, Peer};

use super::calls::{Call, CallStream, InFlight};
use super::relay::{NOTIFY_TIMEOUT, Relay};
use super::relist::ListChanges;

/// What an upstream sends on its own: `list_changed` goes to the pool (by
/// server name); progress, logs, resource updates and server-to-client
/// requests go to the client sessions they belong to (see [`super::relay`]).
/// It implements rmcp's `Service` rather than the typed `ClientHandler` so a
/// server-to-client request is relayed whole, custom methods included.
pub struct Handler {
    server: String,
    changed: ListChanges,
    relay: Arc<Relay>,
    calls: Arc<InFlight<Call>>,
}

/// How long a client may take to answer an upstream's request (a person may
/// be answering an elicitation); the call's own deadline waits meanwhile.
pub const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

impl Handler {
    /// What `transport` receives, with progress for this handler's calls taken out.
    pub(super) fn tap<T: Transport<RoleClient> + 'static>(&self, transport: T) -> Tap {
        Tap {
            inner: Box::new(transport),
            calls: self.calls.clone(),
            relay: self.relay.clone(),
        }
    }

    pub(super) fn calls(&self) -> &InFlight<Call> {
        &self.calls
    }

    pub fn new(server: &str, changed: ListChanges, relay: Arc<Relay>) -> Self {
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
        let cannot = |e: String| {
            McpError::internal_error(format!("cannot relay `{method}` to the client: {e}"), None)
        };
        let (id, answer, to) = match call.caller.stream.clone() {
            Some(stream) => {
                *request.get_meta_mut() = context.meta;
                let (id, rx) = stream
                    .ask(request)
                    .ok_or_else(|| cannot("its stream is gone or full".into()))?;
                // However the wait ends, the question is not left open.
                let asked = Asked(stream.clone(), id.clone());
                let answer = async move {
                    let _asked = asked;
                    rx.await.unwrap_or_else(|_| Err(closed()))
                }
                .boxed();
                (id, answer, AskedOn::Stream(stream))
            }
            None => {
                request
                    .extensions_mut()
                    .insert(OriginatingRequestId(call.caller.request.clone()));
                let options = PeerRequestOptions::no_options().with_meta(context.meta);
                let handle = send_to_peer(call.caller.peer.clone(), request, options)
                    .await
                    .map_err(cannot)?;
                let answer = async move {
                    match handle.rx.await {
                        Ok(Ok(result)) => Ok(result),
                        Ok(Err(rmcp::ServiceError::McpError(e))) => Err(e),
                        Ok(Err(e)) => Err(McpError::internal_error(
                            format!("the client did not answer: {e}"),
                            None,
                        )),
                        Err(_) => Err(closed()),
                    }
                }
                .boxed();
                (handle.id, answer, AskedOn::Peer(handle.peer))
            }
        };
        let reason = tokio::select! {
            answer = answer => return answer,
            _ = context.ct.cancelled() => "the server cancelled its request".to_string(),
            _ = tokio::time::sleep(CLIENT_ANSWER_TIMEOUT) => format!("no answer within {}s", CLIENT_ANSWER_TIMEOUT.as_secs()),
        };
        to.cancel(id, &reason).await;
        Err(McpError::internal_error(
            format!("`{method}` was not answered: {reason}"),
            None,
        ))
    }
}

fn closed() -> McpError {
    McpError::internal_error("the client session closed before it answered", None)
}

/// Sends a request to a client session through rmcp, within [`NOTIFY_TIMEOUT`].
async fn send_to_peer(
    peer: Peer<RoleServer>,
    request: ServerRequest,
    options: PeerRequestOptions,
) -> Result<rmcp::service::RequestHandle<RoleServer>, String> {
    // A task of its own: rmcp tags a request sent while handling another
    // with that one's id (here the upstream's), which would send it down
    // the wrong client stream.
    let mut send =
        tokio::spawn(async move { peer.send_request_with_option(request, options).await });
    match tokio::time::timeout(NOTIFY_TIMEOUT, &mut send).await {
        Err(_) => {
            send.abort();
            Err(format!(
                "the client did not take it within {}s",
                NOTIFY_TIMEOUT.as_secs()
            ))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Ok(Ok(handle))) => Ok(handle),
    }
}

/// A question on a call's stream, forgotten when its wait ends.
struct Asked(Arc<dyn CallStream>, RequestId);

impl Drop for Asked {
    fn drop(&mut self) {
        self.0.forget(&self.1);
    }
}

/// Where a relayed request went, to tell the client it is no longer needed.
enum AskedOn {
    Peer(Peer<RoleServer>),
    Stream(Arc<dyn CallStream>),
}

impl AskedOn {
    async fn cancel(self, id: RequestId, reason: &str) {
        let cancel = CancelledNotificationParam::new(Some(id.clone()), Some(reason.to_string()));
        match self {
            AskedOn::Peer(peer) => {
                let _ = tokio::time::timeout(NOTIFY_TIMEOUT, peer.notify_cancelled(cancel)).await;
            }
            AskedOn::Stream(stream) => {
                let n = ServerNotification::CancelledNotification(Notification::new(cancel));
                stream.send(ServerJsonRpcMessage::notification(n));
            }
        }
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
                self.changed.mark(&self.server);
            }
            ServerNotification::ProgressNotification(n) => {
                if context.extensions.get::<Tapped>().is_none() {
                    self.relay.progress(&self.calls, n.params).await
                }
            }
            ServerNotification::LoggingMessageNotification(n) => {
                if context.extensions.get::<Tapped>().is_none() {
                    self.relay.log(n.params).await
                }
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

/// The upstream transport with progress taken out as it arrives, in order
/// with the answers: rmcp hands notifications to tasks of their own, so a
/// call's last progress could otherwise reach the client after its result.
pub(super) struct Tap {
    inner: Box<dyn Erased>,
    calls: Arc<InFlight<Call>>,
    relay: Arc<Relay>,
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

    /// Progress for a registered call, and log messages while every call in
    /// flight comes from one session, are queued for the call here, in order
    /// with its answer, and marked [`Tapped`] for the handler to leave alone.
    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        let calls = self.calls.clone();
        let relay = self.relay.clone();
        self.inner.receive().map(move |message| {
            let mut message = message?;
            if let JsonRpcMessage::Notification(n) = &mut message {
                match &mut n.notification {
                    ServerNotification::ProgressNotification(p) => {
                        if let Some(call) = calls.by_token_now(&p.params.progress_token) {
                            call.progress(p.params.clone());
                            p.extensions.insert(Tapped);
                        }
                    }
                    ServerNotification::LoggingMessageNotification(l) => {
                        if let Some(call) = calls.sole_caller() {
                            if relay.caller_wants(&call.caller, l.params.level) {
                                call.log(l.params.clone());
                            }
                            l.extensions.insert(Tapped);
                        }
                    }
                    _ => {}
                }
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
