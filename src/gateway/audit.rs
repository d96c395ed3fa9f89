//! The audit trail: one structured line (tracing target `audit`, level info)
//! per tool call, prompt get and resource read: when it started, who made
//! it, which server and name, how long it took and how it ended. Never the
//! arguments or the results.
//!
//! With `--log-format json` each line is one JSON object; select them with
//! `MCP_FLEET_LOG=audit=info` or by `"target":"audit"`.
use std::time::{Duration, Instant, SystemTime};

use rmcp::model::ServerResult;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::identity::Identity;
use crate::upstream::session::Failure;

/// What was done: `tools/call`, `prompts/get` or `resources/read`.
pub type Kind = &'static str;

/// How a request ended, as the audit line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with a result (not a tool error).
    Ok,
    /// The server answered with an error (or a tool error).
    Error,
    /// No answer within the call deadline.
    Timeout,
    /// The caller may not use the server: answered as if it did not exist.
    Hidden,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Hidden => "hidden",
        }
    }
}

impl Outcome {
    /// How a request forwarded upstream ended.
    pub fn of(result: &Result<ServerResult, Failure>) -> Self {
        match result {
            Ok(ServerResult::CallToolResult(r)) if r.is_error == Some(true) => Outcome::Error,
            Ok(_) => Outcome::Ok,
            Err(Failure::Timeout(_)) => Outcome::Timeout,
            Err(_) => Outcome::Error,
        }
    }
}

/// One audited request, from its start; [`Audit::end`] writes its line.
pub struct Audit<'a> {
    kind: Kind,
    who: &'a Identity,
    server: &'a str,
    name: &'a str,
    at: SystemTime,
    started: Instant,
}

impl<'a> Audit<'a> {
    pub fn start(kind: Kind, who: &'a Identity, server: &'a str, name: &'a str) -> Self {
        Audit {
            kind,
            who,
            server,
            name,
            at: SystemTime::now(),
            started: Instant::now(),
        }
    }

    /// Writes the line; returns how long the request took.
    pub fn end(self, outcome: Outcome) -> Duration {
        let took = self.started.elapsed();
        let at = OffsetDateTime::from(self.at)
            .format(&Rfc3339)
            .unwrap_or_default();
        tracing::info!(
            target: "audit",
            time = %at,
            user = %self.who.id,
            server = self.server,
            kind = self.kind,
            name = self.name,
            duration_ms = took.as_secs_f64() * 1000.0,
            outcome = outcome.as_str(),
            "audit"
        );
        took
    }
}
