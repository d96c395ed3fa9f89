//! The one error type of mcp-fleet. Every variant carries the context a reader
//! needs (which file, which server, which container) and never a secret value.
use std::path::PathBuf;

use crate::catalog::SourcePos;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A whole config file could not be used; the last good desired state stays.
    #[error("{pos}: {message}")]
    Config { pos: SourcePos, message: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The engine refused or failed a call; `op` names the call and its target.
    #[error("container engine: {op}: {message}")]
    Runtime { op: String, message: String },

    /// The engine did not answer (down, restarting, socket gone): no fault of
    /// the server the call was for.
    #[error("container engine: {op}: no answer: {message}")]
    Unreachable { op: String, message: String },

    /// The container name a server needs is held by a container the fleet
    /// does not own; a person has to move it out of the way.
    #[error(
        "container name {name} is taken by {holder}, which this fleet does not manage; \
         rename it (docker rename {name} NEW_NAME) or remove it, and the server will be created"
    )]
    Conflict { name: String, holder: String },

    /// Pulling (or finding) an image failed: a status with backoff, not a crash.
    #[error("image {image}: {message}")]
    Image { image: String, message: String },

    /// The file looks half-written; it is read again after `retry_after`.
    #[error("{path}: does not end with a newline, waiting for the writer to finish")]
    Incomplete {
        path: PathBuf,
        retry_after: std::time::Duration,
    },

    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn runtime(op: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Runtime {
            op: op.into(),
            message: err.to_string(),
        }
    }
}
