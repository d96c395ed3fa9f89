//! The state every client session of the gateway shares ([`Gateway`]): the
//! pool's index, routes of restarting servers, each session's view (`access`),
//! and the push of `*/list_changed` to every live session. Each session gets
//! its own handler ([`SessionHandler`], in [`super::session`]).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use tokio_util::sync::CancellationToken;

use super::access::{AccessPolicy, Views};
use super::manage::AddPolicy;
use super::session::direct::Directory;
use crate::controller::Context;
use crate::upstream::Pool;
use crate::upstream::index::{Index, Route};
use crate::upstream::pool::Live;
use crate::upstream::relay::Relay;

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
    /// Who may use which server, and who may approve.
    pub access: AccessPolicy,
}

#[derive(Clone)]
pub struct Gateway(Arc<Shared>);

struct Shared {
    pool: Arc<Pool>,
    settings: GatewaySettings,
    /// Routes of servers that are approved but not ready right now (e.g.
    /// restarting), so a call to one of their tools can wait for them.
    known_routes: Mutex<HashMap<String, Route>>,
    /// One writer of the config files at a time.
    edits: tokio::sync::Mutex<()>,
    /// What each client session sees (see `access`).
    views: Views,
    /// The sessions whose calls the gateway may serve directly.
    directory: Arc<Directory>,
}

pub(super) fn text_error(message: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(
        message.into(),
    )]))
}

/// The error for a tool that does not exist (or that the caller may not see).
pub(super) fn unknown_tool(name: &str) -> McpError {
    McpError::invalid_params(format!("unknown tool `{name}`"), None)
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
            known_routes: Mutex::new(HashMap::new()),
            edits: tokio::sync::Mutex::new(()),
            views: Views::default(),
            directory: Arc::default(),
        }))
    }

    /// The sessions whose calls `/mcp` may serve without rmcp's session
    /// worker (see `session::direct`).
    pub fn directory(&self) -> Arc<Directory> {
        self.0.directory.clone()
    }

    pub(super) fn call_timeout(&self) -> Duration {
        self.0.settings.call_timeout
    }

    pub(super) fn ctx(&self) -> &Arc<Context> {
        self.0.pool.context()
    }

    pub(super) fn shared_views(&self) -> &Views {
        &self.0.views
    }

    pub(super) fn settings(&self) -> &GatewaySettings {
        &self.0.settings
    }

    pub(super) fn edits(&self) -> &tokio::sync::Mutex<()> {
        &self.0.edits
    }

    pub(super) fn relay(&self) -> &Arc<Relay> {
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
            self.index_changed(&next);
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

    /// Tells every session and subscription whose view changed, concurrently,
    /// each within `NOTIFY_TIMEOUT`: a slow client never delays the others.
    async fn broadcast(&self, tools: bool, prompts: bool, resources: bool) {
        // Each session is told only when what *it* may see changed.
        let sent = self.refresh_views(None).await;
        crate::metrics::global()
            .list_changed
            .inc_by(u64::try_from(sent).unwrap_or(u64::MAX));
        tracing::debug!(sent, tools, prompts, resources, "list_changed sent");
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
    pub(super) fn live(&self, server: &str) -> Result<Arc<Live>, McpError> {
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
    pub(super) fn tool_route(&self, name: &str) -> Result<Route, McpError> {
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
            .ok_or_else(|| unknown_tool(name))
    }

    /// The session a tool call goes to, after waiting (bounded) for a
    /// restarting server; `Err` is the tool error the client gets.
    pub(super) async fn tool_session(
        &self,
        name: &str,
        route: &Route,
    ) -> Result<Arc<Live>, CallToolResponse> {
        let waits = !self.index().servers.contains(&route.server);
        if waits {
            let server = &route.server;
            tracing::debug!(
                server,
                tool = name,
                "tool call waits for its server to be ready"
            );
        }
        if waits && !Box::pin(self.wait_ready(&route.server, self.0.settings.call_wait)).await {
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
