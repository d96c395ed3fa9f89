//! The aggregating MCP server. [`Gateway`] is the state every client session
//! shares; each session gets its own [`SessionHandler`], which forgets the
//! session's relay state (log level, subscriptions) the moment rmcp drops it.
//! Lists come from the pool's index; requests are forwarded as they are (only
//! a tool's or prompt's name is renamed) to the owning upstream session, and
//! what the upstream sends on a call's behalf comes back to that session (see
//! [`crate::upstream::relay`]). Changes are pushed to every live session as
//! `*/list_changed`.
//!
//! The handler implements rmcp's typed `ServerHandler` and passes each typed
//! params object through whole, rather than a raw `Service::handle_request`:
//! rmcp's `ServerHandler` dispatch does the per-revision work (inline
//! 2026-07-28 metadata checks, `resultType` for older peers, gating
//! `input_required` and tasks) that a raw handler would have to copy.
#![allow(deprecated)] // logging is SEP-2577-deprecated, and relayed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
    CompleteRequest, CompleteRequestParams, CompleteResult, ContentBlock, GetPromptRequest,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ServerCapabilities, ServerConfig, ServerResult, SetLevelRequestParams, SubscribeRequest,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{
    NotificationContext, RequestContext, RoleServer, SubscriptionContext, SubscriptionSink,
};
use rmcp::{ErrorData as McpError, ServerHandler};
use tokio_util::sync::CancellationToken;

use super::aggregate::{Index, Route};
use super::manage::{self, AddPolicy};
use crate::controller::Context;
use crate::upstream::Pool;
use crate::upstream::calls::Caller;
use crate::upstream::pool::Live;
use crate::upstream::relay::{NOTIFY_TIMEOUT, Relay};
use crate::upstream::session::{Failure, Forward};

pub const REQUESTS_FILE: &str = "requests.yaml";

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub add_policy: AddPolicy,
    /// How long a call to a tool of a restarting server waits for it.
    pub call_wait: Duration,
    /// How long `mcp-add` (approve) waits for the new server to be ready.
    pub add_wait: Duration,
    /// Silence (no answer, no progress) after which a request forwarded
    /// upstream is given up and cancelled there.
    pub call_timeout: Duration,
}

#[derive(Clone)]
pub struct Gateway(Arc<Shared>);

struct Shared {
    pool: Arc<Pool>,
    settings: GatewaySettings,
    /// `subscriptions/listen` streams (protocol 2026-07-28).
    sinks: Mutex<Vec<SubscriptionSink>>,
    /// Routes of servers that are approved but not ready right now (e.g.
    /// restarting), so a call to one of their tools can wait for them.
    known_routes: Mutex<HashMap<String, Route>>,
    /// One writer of the config files at a time.
    edits: tokio::sync::Mutex<()>,
}

pub(super) fn text_error(message: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(
        message.into(),
    )]))
}

pub(super) fn text_ok(message: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(
        message.into(),
    )]))
}

impl Gateway {
    pub fn new(pool: Arc<Pool>, settings: GatewaySettings) -> Self {
        Gateway(Arc::new(Shared {
            pool,
            settings,
            sinks: Mutex::new(Vec::new()),
            known_routes: Mutex::new(HashMap::new()),
            edits: tokio::sync::Mutex::new(()),
        }))
    }

    /// The handler of one new client session.
    pub fn session(&self) -> SessionHandler {
        SessionHandler {
            id: self.relay().next_id(),
            gateway: self.clone(),
        }
    }

    pub(super) fn ctx(&self) -> &Arc<Context> {
        self.0.pool.context()
    }

    pub(super) fn settings(&self) -> &GatewaySettings {
        &self.0.settings
    }

    pub(super) fn edits(&self) -> &tokio::sync::Mutex<()> {
        &self.0.edits
    }

    fn relay(&self) -> &Arc<Relay> {
        self.0.pool.relay()
    }

    pub(super) fn index(&self) -> Arc<Index> {
        self.0.pool.index().borrow().clone()
    }

    /// Pushes `*/list_changed` to every live session whenever the index
    /// changes what a client would list. Runs until `shutdown`.
    pub async fn notify_loop(self, shutdown: CancellationToken) {
        let mut rx = self.0.pool.index();
        let mut last = rx.borrow_and_update().clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = rx.changed() => if r.is_err() { return },
            }
            let next = rx.borrow_and_update().clone();
            self.remember_routes(&next);
            let tools = last.tools != next.tools;
            let prompts = last.prompts != next.prompts;
            let resources = last.resources != next.resources
                || last.resource_templates != next.resource_templates;
            last = next;
            if tools || prompts || resources {
                self.broadcast(tools, prompts, resources).await;
            }
        }
    }

    /// Keeps the routes of servers still approved (and only theirs).
    fn remember_routes(&self, index: &Index) {
        let desired = self.ctx().desired();
        let mut known = self.0.known_routes.lock().expect("routes lock");
        known.retain(|_, r| {
            desired
                .as_ref()
                .is_some_and(|d| d.servers.contains_key(&r.server))
        });
        known.extend(
            index
                .tool_routes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }

    /// Sends the changes to every session and subscription concurrently,
    /// each within [`NOTIFY_TIMEOUT`]: a slow client never delays the others.
    async fn broadcast(&self, tools: bool, prompts: bool, resources: bool) {
        let sessions = self
            .relay()
            .broadcast(
                |_| true,
                |peer| async move {
                    // A session that went away meanwhile is simply skipped.
                    if tools {
                        let _ = peer.notify_tool_list_changed().await;
                    }
                    if prompts {
                        let _ = peer.notify_prompt_list_changed().await;
                    }
                    if resources {
                        let _ = peer.notify_resource_list_changed().await;
                    }
                },
            )
            .await;
        let sinks: Vec<SubscriptionSink> = self.0.sinks.lock().expect("sinks lock").clone();
        let closed: Vec<_> = join_all(sinks.iter().map(|sink| async move {
            let send = async {
                let accepted = sink.accepted();
                let mut results = Vec::new();
                if tools && accepted.tools_list_changed == Some(true) {
                    results.push(sink.notify_tool_list_changed().await);
                }
                if prompts && accepted.prompts_list_changed == Some(true) {
                    results.push(sink.notify_prompt_list_changed().await);
                }
                if resources && accepted.resources_list_changed == Some(true) {
                    results.push(sink.notify_resource_list_changed().await);
                }
                results.iter().any(|r| {
                    matches!(
                        r,
                        Err(rmcp::service::SubscriptionSendError::SubscriptionClosed)
                    )
                })
            };
            let closed = tokio::time::timeout(NOTIFY_TIMEOUT, send)
                .await
                .unwrap_or(false);
            closed.then(|| sink.id().clone())
        }))
        .await
        .into_iter()
        .flatten()
        .collect();
        if !closed.is_empty() {
            self.0
                .sinks
                .lock()
                .expect("sinks lock")
                .retain(|s| !closed.contains(s.id()));
        }
        tracing::debug!(
            sessions,
            subscriptions = sinks.len(),
            tools,
            prompts,
            resources,
            "list_changed sent"
        );
    }

    /// Waits (bounded) until `server` is in the index.
    pub(super) async fn wait_ready(&self, server: &str, timeout: Duration) -> bool {
        let mut rx = self.0.pool.index();
        let wait = async {
            loop {
                if rx.borrow_and_update().servers.contains(server) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// The ready session of `server`, or the protocol error a client gets.
    fn live(&self, server: &str) -> Result<Arc<Live>, McpError> {
        self.0.pool.session(server).ok_or_else(|| {
            McpError::internal_error(format!("server `{server}` is not ready"), None)
        })
    }

    pub(super) fn describe(&self, server: &str) -> String {
        match self.ctx().status.server(server) {
            Some(s) => {
                let ready = s
                    .ready
                    .map(|c| format!("; session: {}", c.message))
                    .unwrap_or_default();
                format!("phase {:?}: {}{ready}", s.phase, s.message)
            }
            None => "not running".to_string(),
        }
    }

    /// The route of a tool, also of a server that is restarting.
    fn tool_route(&self, name: &str) -> Result<Route, McpError> {
        self.index()
            .tool_routes
            .get(name)
            .cloned()
            .or_else(|| {
                self.0
                    .known_routes
                    .lock()
                    .expect("routes lock")
                    .get(name)
                    .cloned()
            })
            .ok_or_else(|| McpError::invalid_params(format!("unknown tool `{name}`"), None))
    }

    /// The session a tool call goes to, after waiting (bounded) for a
    /// restarting server; `Err` is the tool error the client gets.
    async fn tool_session(&self, name: &str, route: &Route) -> Result<Arc<Live>, CallToolResponse> {
        if !self.index().servers.contains(&route.server)
            && !self
                .wait_ready(&route.server, self.0.settings.call_wait)
                .await
        {
            return Err(text_error(format!(
                "tool `{name}` belongs to server `{}`, which did not become ready within {:?} ({}); the call was not made",
                route.server,
                self.0.settings.call_wait,
                self.describe(&route.server)
            )));
        }
        self.0.pool.session(&route.server).ok_or_else(|| {
            text_error(format!(
                "server `{}` went away; the call was not made",
                route.server
            ))
        })
    }
}

/// The handler of one client session (or of one stateless request).
pub struct SessionHandler {
    id: u64,
    gateway: Gateway,
}

impl Drop for SessionHandler {
    fn drop(&mut self) {
        self.gateway.relay().close(self.id);
    }
}

/// A protocol error for a request that got no result upstream.
fn failure_error(server: &str, failure: Failure) -> McpError {
    match failure {
        Failure::Error(e) => e,
        other => McpError::internal_error(format!("server `{server}` {other}"), None),
    }
}

fn unexpected(server: &str, method: &str) -> McpError {
    McpError::internal_error(
        format!("server `{server}` answered `{method}` with a result of another kind"),
        None,
    )
}

impl SessionHandler {
    /// Forwards `request` to `live` on behalf of the request in `context`.
    async fn forward(
        &self,
        live: &Live,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, Failure> {
        let caller = Caller {
            session: self.id,
            peer: context.peer,
            request: context.id,
            progress_token: context.meta.get_progress_token(),
            log_level: context.meta.log_level(),
        };
        let forward = Forward {
            caller,
            meta: context.meta,
            timeout: self.gateway.0.settings.call_timeout,
            ct: context.ct,
        };
        live.session.forward(request, forward).await
    }

    async fn call_upstream(
        &self,
        mut params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = params.name.to_string();
        let route = self.gateway.tool_route(&name)?;
        let live = match self.gateway.tool_session(&name, &route).await {
            Ok(live) => live,
            Err(answer) => return Ok(answer),
        };
        params.name = route.name.into();
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let server = &route.server;
        match self.forward(&live, request, context).await {
            Ok(ServerResult::CallToolResult(r)) => Ok(CallToolResponse::Complete(r)),
            Ok(ServerResult::InputRequiredResult(r)) => Ok(CallToolResponse::InputRequired(r)),
            Ok(ServerResult::CreateTaskResult(r)) => Ok(CallToolResponse::Task(r)),
            Ok(_) => Err(unexpected(server, "tools/call")),
            Err(Failure::Timeout(t)) => Ok(text_error(format!(
                "server `{server}` did not answer `{name}` within {}s; the call was cancelled",
                t.as_secs_f64()
            ))),
            Err(Failure::Closed(e)) => Ok(text_error(format!(
                "server `{server}` failed during the call: {e}"
            ))),
            Err(e) => Err(failure_error(server, e)),
        }
    }

    /// Forwards a subscription change to the server that owns `uri`.
    async fn resource_request(
        &self,
        uri: &str,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let server = self
            .gateway
            .index()
            .resource_server(uri)
            .ok_or_else(|| McpError::resource_not_found(format!("no server offers `{uri}`"), None))?
            .to_string();
        let live = self.gateway.live(&server)?;
        self.forward(&live, request, context)
            .await
            .map(|_| ())
            .map_err(|e| failure_error(&server, e))
    }
}

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
        let sinks = &self.gateway.0.sinks;
        sinks
            .lock()
            .expect("sinks lock")
            .push(context.sink().clone());
        context.cancelled().await;
        let id = context.sink().id().clone();
        sinks.lock().expect("sinks lock").retain(|s| s.id() != &id);
        Ok(())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = self.gateway.index().tools.clone();
        tools.extend(manage::tools());
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = params.name.to_string();
        if manage::NAMES.contains(&name.as_str()) {
            return Ok(self.gateway.manage(&name, &params, &context).await);
        }
        self.call_upstream(params, context).await
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(
            self.gateway.index().prompts.clone(),
        ))
    }

    async fn get_prompt(
        &self,
        mut params: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let route = self
            .gateway
            .index()
            .prompt_routes
            .get(&params.name)
            .cloned()
            .ok_or_else(|| {
                McpError::invalid_params(format!("unknown prompt `{}`", params.name), None)
            })?;
        let live = self.gateway.live(&route.server)?;
        params.name = route.name;
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(params));
        match self.forward(&live, request, context).await {
            Ok(ServerResult::GetPromptResult(r)) => Ok(GetPromptResponse::Complete(r)),
            Ok(ServerResult::InputRequiredResult(r)) => Ok(GetPromptResponse::InputRequired(r)),
            Ok(_) => Err(unexpected(&route.server, "prompts/get")),
            Err(e) => Err(failure_error(&route.server, e)),
        }
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(
            self.gateway.index().resources.clone(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(
            self.gateway.index().resource_templates.clone(),
        ))
    }

    async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let server = self
            .gateway
            .index()
            .resource_server(&params.uri)
            .ok_or_else(|| {
                McpError::resource_not_found(format!("no server offers `{}`", params.uri), None)
            })?
            .to_string();
        let live = self.gateway.live(&server)?;
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params));
        match self.forward(&live, request, context).await {
            Ok(ServerResult::ReadResourceResult(r)) => Ok(ReadResourceResponse::Complete(r)),
            Ok(ServerResult::InputRequiredResult(r)) => Ok(ReadResourceResponse::InputRequired(r)),
            Ok(_) => Err(unexpected(&server, "resources/read")),
            Err(e) => Err(failure_error(&server, e)),
        }
    }

    async fn subscribe(
        &self,
        params: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
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

    async fn unsubscribe(
        &self,
        params: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let uri = params.uri.clone();
        if !self.gateway.relay().unsubscribe(self.id, &uri) {
            return Ok(()); // another session still wants its updates
        }
        let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(params));
        self.resource_request(&uri, request, context).await
    }

    async fn set_level(
        &self,
        params: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        // Upstreams are shared: they send what they log, the relay filters.
        self.gateway
            .relay()
            .set_level(self.id, &context.peer, params.level);
        Ok(())
    }

    async fn complete(
        &self,
        mut params: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let index = self.gateway.index();
        let server = match &mut params.r#ref {
            Reference::Prompt(prompt) => {
                let route = index.prompt_routes.get(&prompt.name).ok_or_else(|| {
                    McpError::invalid_params(format!("unknown prompt `{}`", prompt.name), None)
                })?;
                prompt.name = route.name.clone();
                route.server.clone()
            }
            Reference::Resource(template) => index
                .resource_server(&template.uri)
                .ok_or_else(|| {
                    McpError::invalid_params(format!("no server offers `{}`", template.uri), None)
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
        match self.forward(&live, request, context).await {
            Ok(ServerResult::CompleteResult(r)) => Ok(r),
            Ok(_) => Err(unexpected(&server, "completion/complete")),
            Err(e) => Err(failure_error(&server, e)),
        }
    }
}

impl super::http::GatewayState for Gateway {
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(self.ctx().status.snapshot()).expect("status serialises")
    }

    /// Ready once the catalog has been read (servers come and go after that).
    fn ready(&self) -> bool {
        self.ctx().desired().is_some()
    }
}
