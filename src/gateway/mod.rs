//! The MCP endpoint: one server that aggregates every ready upstream.
//!
//! - [`http`]: the axum router (`/mcp`, `/sse`, `/health`, `/readyz`, `/status`)
//!   and its security layer ([`auth`]: the operator token; [`authn`]: every
//!   token to an identity, from [`users`] or a JWT ([`jwt`]); [`hosts`]: Host/Origin checks);
//! - [`mcp`]: the streamable HTTP transport, over [`shortcut`]'s session manager;
//!   [`sse`]: the legacy HTTP+SSE one;
//!   [`settle`]: progress before its result on `/sse`;
//!   [`wire`]: what they share (error bodies, body parsing, the session cap);
//! - [`ready`]: what `/readyz`, `/status` and `/metrics` say ([`observe`]);
//!   [`page`]: the status page; [`logs`]: each server's stderr;
//! - [`handler`]: the state all client sessions share, over the pool's index
//!   ([`crate::upstream::index`]);
//! - [`session`]: the MCP server of one client session, which relays it to upstreams;
//! - [`access`]: who may use which server, and each session's filtered view;
//!   [`audit`]: one line per call, get and read; [`trace`]: a span per relayed request;
//! - [`manage`]: the management tools (`mcp-find`, `mcp-add`, `mcp-remove`),
//!   whose work on the config files is in `admin`.
pub mod access;
mod admin;
pub mod audit;
pub mod auth;
pub mod authn;
mod direct_post;
pub mod handler;
pub mod hosts;
pub mod http;
pub mod jwt;
pub mod logs;
pub mod manage;
pub mod mcp;
pub mod observe;
pub mod page;
mod presented;
pub mod ready;
pub mod session;
pub mod settle;
pub mod shortcut;
pub mod sse;
pub mod trace;
pub mod users;
pub mod wire;
