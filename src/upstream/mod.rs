//! Upstream sessions: one MCP client session per ready server, kept by the
//! pool in step with what the controller runs.
pub mod calls;
pub mod inbound;
pub mod pool;
pub mod relay;
pub mod session;
pub mod sse_client;

pub use pool::{Pool, PoolSettings};
pub use session::{Listing, Session, SessionError};
