//! One long-lived MCP client session to one upstream server: over the
//! container's stdio (Engine API attach) or over HTTP for remote entries.
//! Concurrent calls share the session; rmcp multiplexes them by request id.
use std::collections::HashMap;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig, ClientRequest,
    GetPromptRequestParams, GetPromptResponse, Implementation, PingRequest, Prompt,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, Resource, ResourceTemplate,
    ResultType, Tool,
};
use rmcp::service::{NotificationContext, RoleClient, RunningService, ServiceExt};
use rmcp::{ClientHandler, Peer};

use super::relist::ListChanges;
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

/// Forwards an upstream's own `list_changed` notifications, by server name.
#[derive(Clone)]
pub struct Handler {
    server: String,
    changed: ListChanges,
}

impl Handler {
    pub fn new(server: &str, changed: ListChanges) -> Self {
        Handler {
            server: server.to_string(),
            changed,
        }
    }

    fn changed(&self) -> std::future::Ready<()> {
        self.changed.mark(&self.server);
        std::future::ready(())
    }
}

impl ClientHandler for Handler {
    fn on_tool_list_changed(
        &self,
        _: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.changed()
    }

    fn on_prompt_list_changed(
        &self,
        _: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.changed()
    }

    fn on_resource_list_changed(
        &self,
        _: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.changed()
    }

    fn get_info(&self) -> ClientConfig {
        // Stdio servers of every age answer `initialize`; the newest protocol
        // that still has it is the safe choice for a long-lived session.
        ClientConfig::new(
            ClientCapabilities::default(),
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
        Self::handshake(handler, (stdio.stdout, stdio.stdin), timeout).await
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
            return Self::handshake(handler, (tx, rx), timeout).await;
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

    async fn handshake<T, E, A>(
        handler: Handler,
        transport: T,
        timeout: Duration,
    ) -> Result<Self, SessionError>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
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

    pub async fn call_tool(
        &self,
        params: CallToolRequestParams,
    ) -> Result<CallToolResponse, SessionError> {
        completed(self.peer().call_tool_once(params).await)
    }

    pub async fn get_prompt(
        &self,
        params: GetPromptRequestParams,
    ) -> Result<GetPromptResponse, SessionError> {
        completed(self.peer().get_prompt_once(params).await)
    }

    pub async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
    ) -> Result<ReadResourceResponse, SessionError> {
        completed(self.peer().read_resource_once(params).await)
    }
}

/// A final result as the newest protocol wants it. Upstreams on older
/// revisions leave `resultType` out; clients on 2026-07-28 require it (rmcp
/// strips it again for older clients).
trait Completed {
    fn completed(self) -> Self;
}

macro_rules! completed_for {
    ($($t:ident),*) => {$(
        impl Completed for $t {
            fn completed(self) -> Self {
                match self {
                    $t::Complete(mut r) => {
                        r.result_type.get_or_insert(ResultType::COMPLETE);
                        $t::Complete(r)
                    }
                    other => other,
                }
            }
        }
    )*};
}

completed_for!(CallToolResponse, GetPromptResponse, ReadResourceResponse);

fn completed<T: Completed>(r: Result<T, rmcp::ServiceError>) -> Result<T, SessionError> {
    r.map(Completed::completed)
        .map_err(|e| SessionError::Call(e.to_string()))
}
