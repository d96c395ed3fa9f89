//! What the HTTP layer attached to an MCP request that its handler reads:
//! who made it (the guard's identity) and on which session. rmcp gives a
//! handler a copy of the request's HTTP parts; the front of `/mcp` gives a
//! call it serves itself a [`DirectRequest`] instead.
use std::sync::Arc;

use rmcp::model::Extensions;
use rmcp::transport::streamable_http_server::session::SessionId;

use crate::identity::Identity;

/// What the front of `/mcp` attaches to a request it hands the shortcut
/// itself, in place of rmcp's copy of the request's HTTP parts (a clone of
/// every header and extension, per call): what handlers read of those.
#[derive(Clone)]
pub struct DirectRequest {
    /// The identity the HTTP layer attached, if any.
    pub identity: Option<Arc<Identity>>,
    /// The `Mcp-Session-Id` it came with.
    pub session: SessionId,
}

/// The identity the HTTP layer attached to a request, if any.
pub fn presented(extensions: &Extensions) -> Option<Arc<Identity>> {
    if let Some(direct) = extensions.get::<DirectRequest>() {
        return direct.identity.clone();
    }
    extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.extensions.get::<Arc<Identity>>())
        .cloned()
}

/// The `Mcp-Session-Id` a request came with, if any.
pub fn session_header(extensions: &Extensions) -> Option<&str> {
    if let Some(direct) = extensions.get::<DirectRequest>() {
        return Some(&direct.session);
    }
    extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
}
