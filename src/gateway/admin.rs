//! The management tools' work (`mcp-find`, `mcp-add`, `mcp-remove`): reading
//! the catalog and status, and editing `registry.yaml` / `requests.yaml`.
use std::path::PathBuf;
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::json;

use super::handler::{Gateway, REQUESTS_FILE, text_error, text_ok};
use super::manage::{self, AddArgs, AddPolicy, FindArgs, RemoveArgs};
use crate::catalog::{ApprovalMode, DesiredState, REGISTRY_FILE};
use crate::identity::Identity;
use crate::status::{Phase, write_atomic};

impl Gateway {
    fn client_identity(context: &RequestContext<RoleServer>) -> String {
        let who = context
            .peer
            .peer_info()
            .map(|i| format!("{}/{}", i.client_info.name, i.client_info.version))
            .unwrap_or_else(|| "unknown client".to_string());
        let session = super::presented::session_header(&context.extensions)
            .map(|s| format!(" (session {s})"))
            .unwrap_or_default();
        format!("{who}{session}")
    }

    pub(super) async fn manage(
        &self,
        who: &Identity,
        tool: &str,
        params: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let args = params.arguments.as_ref();
        let result = match tool {
            manage::FIND => match manage::parse_args::<FindArgs>(tool, args) {
                Ok(a) => self.find(who, &a),
                Err(e) => Err(e),
            },
            manage::ADD => match manage::parse_args::<AddArgs>(tool, args) {
                Ok(a) => self.add(who, &a, context).await,
                Err(e) => Err(e),
            },
            _ => match manage::parse_args::<RemoveArgs>(tool, args) {
                Ok(a) => self.remove(who, &a, context).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(r) => r,
            Err(e) => text_error(e),
        }
    }

    /// The catalog as loaded, or why there is none yet.
    fn loaded(&self) -> Result<Arc<DesiredState>, String> {
        self.ctx()
            .desired()
            .ok_or_else(|| "the catalog has not been loaded yet".to_string())
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

    /// Finds what `who` may use or request: an approved server it may not
    /// use shows as not approved (for it), without its phase; `mcp-add` of it
    /// records a request.
    fn find(&self, who: &Identity, a: &FindArgs) -> Result<CallToolResponse, String> {
        let desired = self.loaded()?;
        let pending = manage::pending(self.read(REQUESTS_FILE)?.as_deref());
        let visible = self.visible(who);
        let mut shown = (*desired).clone();
        shown.servers.retain(|name, _| visible.server(name));
        let mut status = self.ctx().status.snapshot();
        status.servers.retain(|name, _| visible.server(name));
        let matches = manage::find(&a.query, a.limit.unwrap_or(10), &shown, &status, &pending);
        let text = serde_json::to_string_pretty(&json!({"matches": matches})).expect("json");
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::text(text),
        ])))
    }

    async fn add(
        &self,
        who: &Identity,
        a: &AddArgs,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, String> {
        let desired = self.loaded()?;
        let mode = self.ctx().settings.load.approval;
        let hidden = desired.servers.contains_key(&a.name) && !self.visible(who).server(&a.name);
        if manage::check_add(&a.name, &desired, mode)? && !hidden {
            return Ok(self.ready_answer(&a.name, "is already approved").await);
        }
        match self.policy_for(who, None) {
            AddPolicy::Deny => Err(format!(
                "adding servers is disabled on this gateway (--add-policy deny); ask an operator to approve `{}`",
                a.name
            )),
            AddPolicy::Request => {
                self.record_request(who, &a.name, "add", a.reason.clone(), context)
                    .await?;
                Ok(text_ok(format!(
                    "approval for `{}` is pending: the request is recorded for an operator to decide",
                    a.name
                )))
            }
            AddPolicy::Approve => {
                self.edit_registry(|text| manage::registry_add(text, &a.name, Some(&who.id)))
                    .await?;
                Ok(self.ready_answer(&a.name, "was approved").await)
            }
        }
    }

    async fn remove(
        &self,
        who: &Identity,
        a: &RemoveArgs,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, String> {
        let desired = self.loaded()?;
        if !desired.servers.contains_key(&a.name) || !self.visible(who).server(&a.name) {
            return Err(format!("`{}` is not approved; nothing to remove", a.name));
        }
        if self.ctx().settings.load.approval == ApprovalMode::All {
            return Err(format!(
                "this gateway approves everything in the catalog (--approval all): remove `{}` from the catalog instead",
                a.name
            ));
        }
        match self.policy_for(who, Some(&a.name)) {
            AddPolicy::Deny => Err(format!(
                "removing servers is disabled on this gateway (--add-policy deny); ask an operator to remove `{}`",
                a.name
            )),
            AddPolicy::Request => {
                self.record_request(who, &a.name, "remove", None, context)
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
        let _guard = self.edits().lock().await;
        let text = self.read(REGISTRY_FILE)?;
        let next = edit(text.as_deref())?;
        if Some(&next) != text.as_ref() {
            write_atomic(&self.config_path(REGISTRY_FILE), next.as_bytes())
                .await
                .map_err(|e| format!("{REGISTRY_FILE}: {e}"))?;
        }
        Ok(())
    }

    /// `--add-policy`, except that approving needs the manage role (or, to
    /// remove a server, having created it): anyone else records a request.
    fn policy_for(&self, who: &Identity, created: Option<&str>) -> AddPolicy {
        let creator = created.is_some_and(|server| {
            let desired = self.ctx().desired();
            let rule = desired.as_ref().and_then(|d| d.access.get(server).cloned());
            rule.and_then(|r| r.creator).as_deref() == Some(who.id.as_str())
        });
        match self.settings().add_policy {
            AddPolicy::Approve if !creator && !self.settings().access.may_manage(who) => {
                AddPolicy::Request
            }
            policy => policy,
        }
    }

    async fn record_request(
        &self,
        who: &Identity,
        server: &str,
        action: &'static str,
        reason: Option<String>,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), String> {
        let _guard = self.edits().lock().await;
        let text = self.read(REQUESTS_FILE)?;
        let request = manage::Request {
            server: server.to_string(),
            action,
            reason,
            client: Self::client_identity(context),
            user: who.id.clone(),
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        let next = manage::request_append(text.as_deref(), &request)?;
        write_atomic(&self.config_path(REQUESTS_FILE), next.as_bytes())
            .await
            .map_err(|e| format!("{REQUESTS_FILE}: {e}"))?;
        tracing::info!(server, action, client = %request.client, user = %request.user, "request recorded");
        Ok(())
    }

    /// Waits (bounded) for `server` to be ready and says what it offers.
    async fn ready_answer(&self, server: &str, what: &str) -> CallToolResponse {
        if self.wait_ready(server, self.settings().add_wait).await {
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
