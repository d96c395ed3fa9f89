//! The MCP endpoint: one server that aggregates every ready upstream.
pub mod aggregate;
pub mod handler;
pub mod manage;
