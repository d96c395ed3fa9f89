//! How a session's request reaches its upstream: the caller, the relay
//! span, the call deadline, and what the answer (or its absence) means for
//! the client.
use std::sync::Arc;

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
    ProtocolVersion, ServerResult,
};
use rmcp::service::{RequestContext, RoleServer};

use super::SessionHandler;
use crate::gateway::audit::{Audit, Outcome};
use crate::gateway::handler::{text_error, unknown_tool};
use crate::identity::Identity;
use crate::upstream::calls::{CallSink, Caller};
use crate::upstream::pool::Live;
use crate::upstream::raw::{RawArguments, Reply, ToolShape};
use crate::upstream::session::{Failure, Forward, read};

/// A protocol error for a request that got no result upstream.
pub(super) fn failure_error(server: &str, failure: Failure) -> McpError {
    match failure {
        Failure::Error(e) => e,
        other => McpError::internal_error(format!("server `{server}` {other}"), None),
    }
}

pub(super) fn unexpected(server: &str, method: &str) -> McpError {
    McpError::internal_error(
        format!("server `{server}` answered `{method}` with a result of another kind"),
        None,
    )
}

impl SessionHandler {
    /// The caller of the request with `extensions` (see [`Gateway::caller`]).
    pub(super) fn who(
        &self,
        extensions: &rmcp::model::Extensions,
    ) -> Result<Arc<Identity>, McpError> {
        self.gateway.caller(self.id, &self.caller, extensions)
    }

    /// Forwards `request` to `server`'s session `live` on behalf of the
    /// request in `context`, in a `relay` span ([`super::trace`]), and reads
    /// the answer. `who` (the session's caller) is told to a remote server.
    pub(super) async fn forward(
        &self,
        who: &Identity,
        server: &str,
        live: &Live,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, Failure> {
        read(
            self.forward_reply(who, server, live, request, context)
                .await,
        )
    }

    /// As [`Self::forward`], the answer maybe unread.
    async fn forward_reply(
        &self,
        who: &Identity,
        server: &str,
        live: &Live,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<Reply, Failure> {
        let caller = Caller {
            session: self.id,
            peer: context.peer,
            request: context.id,
            progress_token: context.meta.get_progress_token(),
            log_level: context.meta.log_level(),
            stream: context.extensions.get::<CallSink>().map(|s| s.0.clone()),
        };
        let forward = Forward {
            caller,
            meta: context.meta,
            timeout: self.gateway.call_timeout(),
            ct: context.ct,
        };
        let span = crate::gateway::trace::relay_span(self.id, server, &request);
        // Boxed: rmcp spawns a task per request holding this future, and a
        // large inline future is copied on every spawn (measured, figure 5).
        let call = Box::pin(live.forward(Some(who), request, forward));
        crate::gateway::trace::relayed(span, call).await
    }

    pub(super) async fn call_upstream(
        &self,
        who: &Identity,
        mut params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = params.name.to_string();
        let route = self.gateway.tool_route(&name)?;
        if !self.gateway.visible(who).server(&route.server) {
            Audit::start("tools/call", who, &route.server, &name).end(Outcome::Hidden);
            return Err(unknown_tool(&name));
        }
        let live = match self.gateway.tool_session(&name, &route).await {
            Ok(live) => live,
            Err(answer) => return Ok(answer),
        };
        params.name = route.name.into();
        let mut call = CallToolRequest::new(params);
        // Arguments the front kept as the client wrote them go on so.
        if let Some(arguments) = context.extensions.get::<RawArguments>() {
            call.extensions.insert(arguments.clone());
        }
        let request = ClientRequest::CallToolRequest(call);
        let server = &route.server;
        let stream = context.extensions.get::<CallSink>().cloned();
        let stream = stream.filter(|_| !newest(&context));
        let audit = Audit::start("tools/call", who, server, &name);
        let end = |outcome: Outcome| {
            let took = audit.end(outcome);
            crate::metrics::global().tool_call(server, outcome.as_str(), took);
        };
        let reply = self
            .forward_reply(who, server, &live, request, context)
            .await;
        let result = match reply.map(|reply| pass_on(reply, stream)) {
            Ok(Ok(shape)) => {
                end(Outcome::tool(shape.is_error));
                return Ok(stand_in(shape));
            }
            Ok(Err(reply)) => read(Ok(reply)),
            Err(e) => Err(e),
        };
        end(Outcome::of(&result));
        match result {
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
    pub(super) async fn resource_request(
        &self,
        uri: &str,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let who = self.who(&context.extensions)?;
        let server = self
            .gateway
            .index()
            .resource_server(uri)
            .filter(|s| self.gateway.visible(&who).server(s))
            .ok_or_else(|| McpError::resource_not_found(format!("no server offers `{uri}`"), None))?
            .to_string();
        let live = self.gateway.live(&server)?;
        self.forward(&who, &server, &live, request, context)
            .await
            .map(|_| ())
            .map_err(|e| failure_error(&server, e))
    }
}

/// Whether the request is on revision 2026-07-28 or later, as rmcp decides
/// it for the result it sends (older ones get results without `resultType`).
fn newest(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// Hands a plain tool result (see [`crate::upstream::raw::RawResult::tool_shape`])
/// to the call's own stream, to go to the client as the server wrote it; the
/// reply comes back, to be read, if it is no such result or there is no
/// such stream.
fn pass_on(reply: Reply, stream: Option<CallSink>) -> Result<ToolShape, Reply> {
    match (reply, stream) {
        (Reply::Raw(raw), Some(stream)) => match raw.tool_shape() {
            Some(shape) => {
                stream.0.pass_on(raw);
                Ok(shape)
            }
            None => Err(Reply::Raw(raw)),
        },
        (reply, _) => Err(reply),
    }
}

/// What rmcp's dispatch gets for a result passed on to the call's stream:
/// a final tool result of the same kind (so its checks for older clients
/// pass as they would for the real one). The stream sends the real one.
fn stand_in(shape: ToolShape) -> CallToolResponse {
    let result = match shape.is_error {
        true => CallToolResult::error(vec![]),
        false => CallToolResult::success(vec![]),
    };
    CallToolResponse::Complete(result)
}
