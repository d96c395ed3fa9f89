//! mcp-fleet: keeps a fleet of MCP servers running as containers, reconciled
//! from a Docker-format catalog on a shared volume.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod cli_logs;
pub mod controller;
pub mod error;
pub mod gateway;
pub mod identity;
pub mod metrics;
pub mod plan;
pub mod runtime;
pub mod status;
pub mod supervise;
pub mod upstream;

pub use error::{Error, Result};
