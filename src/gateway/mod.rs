//! The gateway: the one MCP endpoint through which every upstream server's
//! tools are served, over streamable HTTP (`/mcp`) and the legacy HTTP+SSE
//! transport (`/sse` + `/message`), behind bearer-token and Host/Origin checks.

pub mod auth;
pub mod http;
pub mod sse;
