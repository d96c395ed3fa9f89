//! The MCP server one client session talks to. It forwards each request as
//! it is (only a tool's or prompt's name is renamed) to the upstream session
//! that owns it, and what the upstream sends on the call's behalf comes back
//! to this session (see [`crate::upstream::relay`]). Dropping the handler
//! (rmcp does when the session ends) forgets the session's relay state at once.
//!
//! It implements rmcp's typed `ServerHandler` and passes each typed params
//! object through whole, rather than a raw `Service::handle_request`: rmcp's
//! `ServerHandler` dispatch does the per-revision work (inline 2026-07-28
//! metadata checks, `resultType` for older peers, gating `input_required` and
//! tasks) that a raw handler would have to copy.
#![allow(deprecated)] // logging is SEP-2577-deprecated, and relayed.

use std::sync::{Arc, OnceLock};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequest, CompleteRequestParams,
    CompleteResult, GetPromptRequest, GetPromptRequestParams, GetPromptResponse, Implementation,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse,
    Reference, ServerCapabilities, ServerConfig, ServerResult, SetLevelRequestParams,
    SubscribeRequest, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequest,
    UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::SessionId;
use rmcp::{ErrorData as McpError, ServerHandler};

use super::access::{SessionCaller, Target};
use super::audit::{Audit, Outcome};
use super::handler::Gateway;
use super::manage;
use crate::upstream::raw::RawArguments;

/// The handler of one client session (or of one stateless request).
pub struct SessionHandler {
    id: u64,
    gateway: Gateway,
    /// Who this session acts for (bound by its first request).
    caller: Arc<SessionCaller>,
    /// The streamable-HTTP session this handler serves, once initialized.
    mcp_session: OnceLock<SessionId>,
    /// False for the copy that serves direct calls (see [`direct`]): only the
    /// handler rmcp owns ends the session's state.
    owner: bool,
}

impl Gateway {
    /// The handler of one new client session.
    pub fn session(&self) -> SessionHandler {
        SessionHandler {
            id: self.relay().next_id(),
            gateway: self.clone(),
            caller: Arc::default(),
            mcp_session: OnceLock::new(),
            owner: true,
        }
    }
}

impl SessionHandler {
    /// Lets the gateway serve this streamable-HTTP session's calls directly
    /// (the `initialized` notification names the session).
    fn enter_directory(&self, context: &NotificationContext<RoleServer>) {
        let Some(id) = super::presented::session_header(&context.extensions) else {
            return;
        };
        let id = SessionId::from(id);
        if self.mcp_session.set(id.clone()).is_err() {
            return;
        }
        let view = SessionHandler {
            id: self.id,
            gateway: self.gateway.clone(),
            caller: self.caller.clone(),
            mcp_session: OnceLock::new(),
            owner: false,
        };
        self.gateway
            .directory()
            .enter(id, view, context.peer.clone());
    }
}

impl Drop for SessionHandler {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        if let Some(id) = self.mcp_session.get() {
            self.gateway.directory().forget(id, self.id);
        }
        self.gateway.relay().close(self.id);
        self.gateway.unwatch_view(self.id);
    }
}

pub mod direct;
mod forward;
use forward::{failure_error, unexpected};

use super::observe::counted;

impl ServerHandler for SessionHandler {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new("mcp-fleet", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "mcp-fleet serves the tools of every approved MCP server. Use mcp-find to search \
                 the catalog and mcp-add to ask for a server; the tool list changes as servers come and go.",
            )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.gateway.relay().open(self.id, &context.peer);
        self.enter_directory(&context);
        // Binds the caller where the notification carries it (not on /sse:
        // there the first request does).
        let _ = self.who(&context.extensions);
        let session = Target::Session(context.peer.clone());
        self.gateway
            .watch_view(self.id, self.caller.clone(), session);
    }

    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut f = SubscriptionFilter::new();
        f.tools_list_changed = Some(true);
        f.prompts_list_changed = Some(true);
        f.resources_list_changed = Some(true);
        Some(f)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        // Told like a session: when what its caller may see changes.
        self.who(&context.request_context().extensions)?;
        let id = self.gateway.relay().next_id();
        let sink = Target::Listen(context.sink().clone());
        self.gateway.watch_view(id, self.caller.clone(), sink);
        context.cancelled().await;
        self.gateway.unwatch_view(id);
        Ok(())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        counted(
            "tools/list",
            async {
                let who = self.who(&context.extensions)?;
                let mut tools = self.gateway.visible(&who).tools(&self.gateway.index());
                tools.extend(manage::tools());
                Ok(ListToolsResult::with_all_items(tools))
            }
            .await,
        )
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        counted(
            "tools/call",
            async {
                let who = self.who(&context.extensions)?;
                let name = params.name.to_string();
                if manage::NAMES.contains(&name.as_str()) {
                    let params = typed_params(params, &context)?;
                    return Ok(Box::pin(self.gateway.manage(&who, &name, &params, &context)).await);
                }
                self.call_upstream(&who, params, context).await
            }
            .await,
        )
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        counted(
            "prompts/list",
            async {
                let who = self.who(&context.extensions)?;
                Ok(ListPromptsResult::with_all_items(
                    self.gateway.visible(&who).prompts(&self.gateway.index()),
                ))
            }
            .await,
        )
    }

    async fn get_prompt(
        &self,
        mut params: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        counted(
            "prompts/get",
            async {
                let who = self.who(&context.extensions)?;
                let route = self
                    .gateway
                    .index()
                    .prompt_routes
                    .get(&params.name)
                    .filter(|r| self.gateway.visible(&who).server(&r.server))
                    .cloned()
                    .ok_or_else(|| {
                        McpError::invalid_params(format!("unknown prompt `{}`", params.name), None)
                    })?;
                let live = self.gateway.live(&route.server)?;
                let exposed = std::mem::replace(&mut params.name, route.name);
                let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(params));
                let audit = Audit::start("prompts/get", &who, &route.server, &exposed);
                let result = self
                    .forward(&who, &route.server, &live, request, context)
                    .await;
                audit.end(Outcome::of(&result));
                match result {
                    Ok(ServerResult::GetPromptResult(r)) => Ok(GetPromptResponse::Complete(r)),
                    Ok(ServerResult::InputRequiredResult(r)) => {
                        Ok(GetPromptResponse::InputRequired(r))
                    }
                    Ok(_) => Err(unexpected(&route.server, "prompts/get")),
                    Err(e) => Err(failure_error(&route.server, e)),
                }
            }
            .await,
        )
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        counted(
            "resources/list",
            async {
                let who = self.who(&context.extensions)?;
                Ok(ListResourcesResult::with_all_items(
                    self.gateway.visible(&who).resources(&self.gateway.index()),
                ))
            }
            .await,
        )
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        counted(
            "resources/templates/list",
            async {
                let who = self.who(&context.extensions)?;
                Ok(ListResourceTemplatesResult::with_all_items(
                    self.gateway.visible(&who).templates(&self.gateway.index()),
                ))
            }
            .await,
        )
    }

    async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        counted(
            "resources/read",
            async {
                let who = self.who(&context.extensions)?;
                let server = self
                    .gateway
                    .index()
                    .resource_server(&params.uri)
                    .filter(|s| self.gateway.visible(&who).server(s))
                    .ok_or_else(|| {
                        McpError::resource_not_found(
                            format!("no server offers `{}`", params.uri),
                            None,
                        )
                    })?
                    .to_string();
                let live = self.gateway.live(&server)?;
                let uri = params.uri.clone();
                let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params));
                let audit = Audit::start("resources/read", &who, &server, &uri);
                let result = self.forward(&who, &server, &live, request, context).await;
                audit.end(Outcome::of(&result));
                match result {
                    Ok(ServerResult::ReadResourceResult(r)) => {
                        Ok(ReadResourceResponse::Complete(r))
                    }
                    Ok(ServerResult::InputRequiredResult(r)) => {
                        Ok(ReadResourceResponse::InputRequired(r))
                    }
                    Ok(_) => Err(unexpected(&server, "resources/read")),
                    Err(e) => Err(failure_error(&server, e)),
                }
            }
            .await,
        )
    }

    async fn subscribe(
        &self,
        params: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        counted(
            "resources/subscribe",
            async {
                let uri = params.uri.clone();
                let relay = self.gateway.relay();
                relay
                    .subscribe(self.id, &context.peer, &uri)
                    .map_err(|e| McpError::invalid_request(e, None))?;
                let request = ClientRequest::SubscribeRequest(SubscribeRequest::new(params));
                let result = self.resource_request(&uri, request, context).await;
                if result.is_err() {
                    relay.unsubscribe(self.id, &uri);
                }
                result
            }
            .await,
        )
    }

    async fn unsubscribe(
        &self,
        params: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        counted(
            "resources/unsubscribe",
            async {
                let uri = params.uri.clone();
                if !self.gateway.relay().unsubscribe(self.id, &uri) {
                    return Ok(()); // another session still wants its updates
                }
                let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(params));
                self.resource_request(&uri, request, context).await
            }
            .await,
        )
    }

    async fn set_level(
        &self,
        params: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        counted(
            "logging/setLevel",
            async {
                // Upstreams are shared: they send what they log, the relay filters.
                self.gateway
                    .relay()
                    .set_level(self.id, &context.peer, params.level);
                Ok(())
            }
            .await,
        )
    }

    async fn complete(
        &self,
        mut params: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        counted(
            "completion/complete",
            async {
                let index = self.gateway.index();
                let who = self.who(&context.extensions)?;
                let visible = self.gateway.visible(&who);
                let server = match &mut params.r#ref {
                    Reference::Prompt(prompt) => {
                        let route = index.prompt_routes.get(&prompt.name);
                        let route =
                            route.filter(|r| visible.server(&r.server)).ok_or_else(|| {
                                McpError::invalid_params(
                                    format!("unknown prompt `{}`", prompt.name),
                                    None,
                                )
                            })?;
                        prompt.name = route.name.clone();
                        route.server.clone()
                    }
                    Reference::Resource(template) => index
                        .resource_server(&template.uri)
                        .filter(|s| visible.server(s))
                        .ok_or_else(|| {
                            McpError::invalid_params(
                                format!("no server offers `{}`", template.uri),
                                None,
                            )
                        })?
                        .to_string(),
                    _ => {
                        return Err(McpError::invalid_params(
                            "completion/complete: unknown kind of ref",
                            None,
                        ));
                    }
                };
                let live = self.gateway.live(&server)?;
                let request = ClientRequest::CompleteRequest(CompleteRequest::new(params));
                match self.forward(&who, &server, &live, request, context).await {
                    Ok(ServerResult::CompleteResult(r)) => Ok(r),
                    Ok(_) => Err(unexpected(&server, "completion/complete")),
                    Err(e) => Err(failure_error(&server, e)),
                }
            }
            .await,
        )
    }
}

/// `params` with the call's raw arguments (see `direct_post`) read into them,
/// for the gateway's own tools, which read their arguments.
fn typed_params(
    mut params: CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolRequestParams, McpError> {
    if let Some(raw) = context.extensions.get::<RawArguments>() {
        raw.read_into(&mut params)?;
    }
    Ok(params)
}
