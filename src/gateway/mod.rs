//! The MCP endpoint: one server that aggregates every ready upstream.
//!
//! - [`http`]: the axum router (`/mcp`, `/sse`, `/health`, `/readyz`, `/status`)
//!   and its security layer ([`auth`]: bearer token; Host/Origin checks);
//! - [`mcp`]: the streamable HTTP transport; [`sse`]: the legacy HTTP+SSE one;
//!   [`wire`]: what they share (error bodies, body parsing, the session cap);
//! - [`ready`]: what `/readyz` and `/status` say;
//! - [`handler`]: the aggregating MCP server, over the pool's index
//!   ([`crate::upstream::index`]);
//! - [`manage`]: the management tools (`mcp-find`, `mcp-add`, `mcp-remove`).
pub mod auth;
pub mod handler;
pub mod http;
pub mod manage;
pub mod mcp;
pub mod observe;
pub mod page;
pub mod ready;
pub mod sse;
pub mod wire;
