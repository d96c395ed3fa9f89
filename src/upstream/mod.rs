//! Upstream sessions: one MCP client session per ready server, kept by the
//! pool in step with what the controller runs, and the [`index`] of what
//! they offer together. Nothing here knows the gateway that serves it.
mod attempts;
pub mod calls;
pub mod identity;
pub mod inbound;
pub mod index;
pub mod pool;
pub mod raw;
pub mod relay;
pub mod relist;
pub mod session;
pub mod sse_client;
pub mod stdio;
pub mod users;

pub use pool::{Pool, PoolSettings};
pub use session::{Listing, Session, SessionError};
