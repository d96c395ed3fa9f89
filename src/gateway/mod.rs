//! The MCP endpoint: one server that aggregates every ready upstream.
//!
//! - [`http`]: the axum router (`/mcp`, `/sse`, `/health`, `/readyz`, `/status`)
//!   and its security layer ([`auth`]: bearer token; Host/Origin checks);
//! - [`sse`]: the legacy HTTP+SSE transport;
//! - [`handler`]: the state all client sessions share, over [`aggregate`]'s index;
//! - [`session`]: the MCP server of one client session, which relays it to upstreams;
//! - [`manage`]: the management tools (`mcp-find`, `mcp-add`, `mcp-remove`),
//!   whose work on the config files is in `admin`.
mod admin;
pub mod aggregate;
pub mod auth;
pub mod handler;
pub mod http;
pub mod manage;
pub mod session;
pub mod sse;
