//! The aggregating MCP server: every session a client opens gets a
//! [`Gateway`] handle onto the same shared state. Lists come from the pool's
//! index; calls are routed to the owning upstream session; changes are pushed
//! to every live session as `*/list_changed`.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, SubscriptionFilter,
};
use rmcp::service::{
    NotificationContext, RequestContext, RoleServer, SubscriptionContext, SubscriptionSink,
};
use rmcp::{ErrorData as McpError, Peer, ServerHandler};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::aggregate::{Index, Route};
use super::manage::{self, AddArgs, AddPolicy, FindArgs, RemoveArgs};
use crate::catalog::{ApprovalMode, REGISTRY_FILE};
use crate::controller::Context;
use crate::status::{Phase, write_atomic};
use crate::upstream::Pool;
use crate::upstream::pool::Live;

pub const REQUESTS_FILE: &str = "requests.yaml";

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub add_policy: AddPolicy,
    /// How long a call to a tool of a restarting server waits for it.
    pub call_wait: Duration,
    /// How long `mcp-add` (approve) waits for the new server to be ready.
    pub add_wait: Duration,
}

#[derive(Clone)]
pub struct Gateway(Arc<Shared>);

struct Shared {
    pool: Arc<Pool>,
    settings: GatewaySettings,
    /// Sessions of the initialize-based protocols, for list_changed.
    peers: Mutex<Vec<Peer<RoleServer>>>,
    /// `subscriptions/listen` streams (protocol 2026-07-28).
    sinks: Mutex<Vec<SubscriptionSink>>,
    /// Routes of servers that are approved but not ready right now (e.g.
    /// restarting), so a call to one of their tools can wait for them.
    known_routes: Mutex<HashMap<String, Route>>,
    /// One writer of the config files at a time.
    edits: tokio::sync::Mutex<()>,
}

fn text_error(message: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(
        message.into(),
    )]))
}

fn text_ok(message: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(
        message.into(),
    )]))
}

impl Gateway {
    pub fn new(pool: Arc<Pool>, settings: GatewaySettings) -> Self {
        Gateway(Arc::new(Shared {
            pool,
            settings,
            peers: Mutex::new(Vec::new()),
            sinks: Mutex::new(Vec::new()),
            known_routes: Mutex::new(HashMap::new()),
            edits: tokio::sync::Mutex::new(()),
        }))
    }

    fn ctx(&self) -> &Arc<Context> {
        self.0.pool.context()
    }

    fn index(&self) -> Arc<Index> {
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

    async fn broadcast(&self, tools: bool, prompts: bool, resources: bool) {
        let peers: Vec<Peer<RoleServer>> = {
            let mut p = self.0.peers.lock().expect("peers lock");
            p.retain(|peer| !peer.is_transport_closed());
            p.clone()
        };
        for peer in &peers {
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
        }
        let sinks: Vec<SubscriptionSink> = self.0.sinks.lock().expect("sinks lock").clone();
        let mut closed = Vec::new();
        for sink in &sinks {
            let mut results = Vec::new();
            if tools && sink.accepted().tools_list_changed == Some(true) {
                results.push(sink.notify_tool_list_changed().await);
            }
            if prompts && sink.accepted().prompts_list_changed == Some(true) {
                results.push(sink.notify_prompt_list_changed().await);
            }
            if resources && sink.accepted().resources_list_changed == Some(true) {
                results.push(sink.notify_resource_list_changed().await);
            }
            if results.iter().any(|r| {
                matches!(
                    r,
                    Err(rmcp::service::SubscriptionSendError::SubscriptionClosed)
                )
            }) {
                closed.push(sink.id().clone());
            }
        }
        if !closed.is_empty() {
            self.0
                .sinks
                .lock()
                .expect("sinks lock")
                .retain(|s| !closed.contains(s.id()));
        }
        tracing::debug!(
            sessions = peers.len(),
            subscriptions = sinks.len(),
            tools,
            prompts,
            resources,
            "list_changed sent"
        );
    }

    /// Waits (bounded) until `server` is in the index.
    async fn wait_ready(&self, server: &str, timeout: Duration) -> bool {
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

    fn describe(&self, server: &str) -> String {
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

    async fn call_upstream(
        &self,
        params: CallToolRequestParams,
    ) -> Result<CallToolResponse, McpError> {
        let name = params.name.to_string();
        let route = self
            .index()
            .tool_routes
            .get(&name)
            .cloned()
            .or_else(|| {
                self.0
                    .known_routes
                    .lock()
                    .expect("routes lock")
                    .get(&name)
                    .cloned()
            })
            .ok_or_else(|| McpError::invalid_params(format!("unknown tool `{name}`"), None))?;
        if !self.index().servers.contains(&route.server)
            && !self
                .wait_ready(&route.server, self.0.settings.call_wait)
                .await
        {
            return Ok(text_error(format!(
                "tool `{name}` belongs to server `{}`, which did not become ready within {:?} ({}); the call was not made",
                route.server,
                self.0.settings.call_wait,
                self.describe(&route.server)
            )));
        }
        let Some(live) = self.0.pool.session(&route.server) else {
            return Ok(text_error(format!(
                "server `{}` went away; the call was not made",
                route.server
            )));
        };
        let mut upstream = CallToolRequestParams::new(route.name.clone());
        upstream.arguments = params.arguments;
        upstream.meta = params.meta;
        Ok(live.session.call_tool(upstream).await.unwrap_or_else(|e| {
            text_error(format!(
                "server `{}` failed during the call: {e}",
                route.server
            ))
        }))
    }

    fn client_identity(context: &RequestContext<RoleServer>) -> String {
        let who = context
            .peer
            .peer_info()
            .map(|i| format!("{}/{}", i.client_info.name, i.client_info.version))
            .unwrap_or_else(|| "unknown client".to_string());
        let session = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map(|s| format!(" (session {s})"))
            .unwrap_or_default();
        format!("{who}{session}")
    }

    async fn manage(
        &self,
        tool: &str,
        params: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let args = params.arguments.as_ref();
        let result = match tool {
            manage::FIND => match manage::parse_args::<FindArgs>(tool, args) {
                Ok(a) => self.find(&a),
                Err(e) => Err(e),
            },
            manage::ADD => match manage::parse_args::<AddArgs>(tool, args) {
                Ok(a) => self.add(&a, context).await,
                Err(e) => Err(e),
            },
            _ => match manage::parse_args::<RemoveArgs>(tool, args) {
                Ok(a) => self.remove(&a, context).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(r) => r,
            Err(e) => text_error(e),
        }
    }

    fn config_path(&self, file: &str) -> PathBuf {
        self.ctx().settings.config_dir.join(file)
    }

    fn read(&self, file: &str) -> Result<Option<String>, String> {
        match std::fs::read_to_string(self.config_path(file)) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{file}: {e}")),
        }
    }

    fn find(&self, a: &FindArgs) -> Result<CallToolResponse, String> {
        let desired = self
            .ctx()
            .desired()
            .ok_or("the catalog has not been loaded yet")?;
        let pending = manage::pending(self.read(REQUESTS_FILE)?.as_deref());
        let matches = manage::find(
            &a.query,
            a.limit.unwrap_or(10),
            &desired,
            &self.ctx().status.snapshot(),
            &pending,
        );
        let text = serde_json::to_string_pretty(&json!({"matches": matches})).expect("json");
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::text(text),
        ])))
    }

    async fn add(
        &self,
        a: &AddArgs,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, String> {
        let desired = self
            .ctx()
            .desired()
            .ok_or("the catalog has not been loaded yet")?;
        let mode = self.ctx().settings.load.approval;
        if manage::check_add(&a.name, &desired, mode)? {
            return Ok(self.ready_answer(&a.name, "is already approved").await);
        }
        match self.0.settings.add_policy {
            AddPolicy::Deny => Err(format!(
                "adding servers is disabled on this gateway (--add-policy deny); ask an operator to approve `{}`",
                a.name
            )),
            AddPolicy::Request => {
                self.record_request(&a.name, "add", a.reason.clone(), context)
                    .await?;
                Ok(text_ok(format!(
                    "approval for `{}` is pending: the request is recorded for an operator to decide",
                    a.name
                )))
            }
            AddPolicy::Approve => {
                self.edit_registry(|text| manage::registry_add(text, &a.name))
                    .await?;
                Ok(self.ready_answer(&a.name, "was approved").await)
            }
        }
    }

    async fn remove(
        &self,
        a: &RemoveArgs,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, String> {
        let desired = self
            .ctx()
            .desired()
            .ok_or("the catalog has not been loaded yet")?;
        if !desired.servers.contains_key(&a.name) {
            return Err(format!("`{}` is not approved; nothing to remove", a.name));
        }
        if self.ctx().settings.load.approval == ApprovalMode::All {
            return Err(format!(
                "this gateway approves everything in the catalog (--approval all): remove `{}` from the catalog instead",
                a.name
            ));
        }
        match self.0.settings.add_policy {
            AddPolicy::Deny => Err(format!(
                "removing servers is disabled on this gateway (--add-policy deny); ask an operator to remove `{}`",
                a.name
            )),
            AddPolicy::Request => {
                self.record_request(&a.name, "remove", None, context)
                    .await?;
                Ok(text_ok(format!(
                    "removal of `{}` is pending an operator's decision",
                    a.name
                )))
            }
            AddPolicy::Approve => {
                self.edit_registry(|text| manage::registry_remove(text.unwrap_or(""), &a.name))
                    .await?;
                Ok(text_ok(format!(
                    "`{}` was removed from {REGISTRY_FILE}; its container is being removed",
                    a.name
                )))
            }
        }
    }

    async fn edit_registry(
        &self,
        edit: impl FnOnce(Option<&str>) -> Result<String, String>,
    ) -> Result<(), String> {
        let _guard = self.0.edits.lock().await;
        let text = self.read(REGISTRY_FILE)?;
        let next = edit(text.as_deref())?;
        if Some(&next) != text.as_ref() {
            write_atomic(&self.config_path(REGISTRY_FILE), next.as_bytes())
                .await
                .map_err(|e| format!("{REGISTRY_FILE}: {e}"))?;
        }
        Ok(())
    }

    async fn record_request(
        &self,
        server: &str,
        action: &'static str,
        reason: Option<String>,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), String> {
        let _guard = self.0.edits.lock().await;
        let text = self.read(REQUESTS_FILE)?;
        let request = manage::Request {
            server: server.to_string(),
            action,
            reason,
            client: Self::client_identity(context),
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        let next = manage::request_append(text.as_deref(), &request)?;
        write_atomic(&self.config_path(REQUESTS_FILE), next.as_bytes())
            .await
            .map_err(|e| format!("{REQUESTS_FILE}: {e}"))?;
        tracing::info!(server, action, client = %request.client, "request recorded");
        Ok(())
    }

    /// Waits (bounded) for `server` to be ready and says what it offers.
    async fn ready_answer(&self, server: &str, what: &str) -> CallToolResponse {
        if self.wait_ready(server, self.0.settings.add_wait).await {
            let index = self.index();
            let mut tools: Vec<&String> = index
                .tool_routes
                .iter()
                .filter(|(_, r)| r.server == server)
                .map(|(exposed, _)| exposed)
                .collect();
            tools.sort();
            let text =
                json!({"server": server, "status": format!("{what} and ready"), "tools": tools});
            return text_ok(text.to_string());
        }
        let failing = self
            .ctx()
            .status
            .server(server)
            .is_some_and(|s| s.phase.is_failing() || s.phase == Phase::Unsupported);
        let text = format!(
            "`{server}` {what} but is not ready yet ({})",
            self.describe(server)
        );
        if failing {
            text_error(text)
        } else {
            text_ok(text)
        }
    }
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new("mcp-fleet", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "mcp-fleet serves the tools of every approved MCP server. Use mcp-find to search \
                 the catalog and mcp-add to ask for a server; the tool list changes as servers come and go.",
            )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.0.peers.lock().expect("peers lock").push(context.peer);
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
        self.0
            .sinks
            .lock()
            .expect("sinks lock")
            .push(context.sink().clone());
        context.cancelled().await;
        let id = context.sink().id().clone();
        self.0
            .sinks
            .lock()
            .expect("sinks lock")
            .retain(|s| s.id() != &id);
        Ok(())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = self.index().tools.clone();
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
            return Ok(self.manage(&name, &params, &context).await);
        }
        self.call_upstream(params).await
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(
            self.index().prompts.clone(),
        ))
    }

    async fn get_prompt(
        &self,
        params: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let route = self
            .index()
            .prompt_routes
            .get(&params.name)
            .cloned()
            .ok_or_else(|| {
                McpError::invalid_params(format!("unknown prompt `{}`", params.name), None)
            })?;
        let live = self.live(&route.server)?;
        let mut upstream = params;
        upstream.name = route.name;
        live.session
            .get_prompt(upstream)
            .await
            .map_err(|e| McpError::internal_error(format!("server `{}`: {e}", route.server), None))
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(
            self.index().resources.clone(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(
            self.index().resource_templates.clone(),
        ))
    }

    async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let index = self.index();
        let server = index
            .resource_server(&params.uri)
            .ok_or_else(|| {
                McpError::resource_not_found(format!("no server offers `{}`", params.uri), None)
            })?
            .to_string();
        let live = self.live(&server)?;
        live.session
            .read_resource(params)
            .await
            .map_err(|e| McpError::internal_error(format!("server `{server}`: {e}"), None))
    }
}

impl super::http::GatewayState for Gateway {
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(self.ctx().status.snapshot()).expect("status serialises")
    }

    /// Ready once the catalog has been read and the engine answers (servers
    /// come and go after that).
    fn ready(&self) -> bool {
        self.ctx().ready()
    }
}
