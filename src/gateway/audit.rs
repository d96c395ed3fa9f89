//! The audit trail: one structured line (tracing target `audit`, level info)
//! per tool call, prompt get and resource read: when it started, who made
//! it, which server and name, how long it took and how it ended. Never the
//! arguments or the results.
//!
//! With `--log-format json` each line is one JSON object; select them with
//! `MCP_FLEET_LOG=audit=info` or by `"target":"audit"`.
//!
//! A line is written by the `audit` service ([`Trail`]), not by the request
//! it records: formatting and writing it took about 30 µs of the request's
//! own time, before its response left. Nothing is lost for that: when the
//! service is not running (one-shot commands, tests, shutdown) or is
//! [`TRAIL_BUFFER`] lines behind, the request writes its line itself.
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use rmcp::model::ServerResult;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    /// How a tool call ended with a result.
    pub fn tool(is_error: bool) -> Self {
        if is_error {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }

    /// How a request forwarded upstream ended.
    pub fn of(result: &Result<ServerResult, Failure>) -> Self {
        match result {
            Ok(ServerResult::CallToolResult(r)) => Outcome::tool(r.is_error == Some(true)),
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

    /// Records the request's end (see [`Trail`]); returns how long it took.
    pub fn end(self, outcome: Outcome) -> Duration {
        let took = self.started.elapsed();
        let line = Line {
            kind: self.kind,
            user: self.who.id.clone(),
            server: self.server.to_owned(),
            name: self.name.to_owned(),
            at: self.at,
            took,
            outcome,
        };
        match TRAIL.get() {
            Some(tx) => {
                if let Err(e) = tx.try_send(line) {
                    e.into_inner().write();
                }
            }
            None => line.write(),
        }
        took
    }
}

/// Lines the `audit` service may be behind before requests write their own.
const TRAIL_BUFFER: usize = 4096;

static TRAIL: OnceLock<mpsc::Sender<Line>> = OnceLock::new();

/// One request's audit line, to be written.
struct Line {
    kind: Kind,
    user: String,
    server: String,
    name: String,
    at: SystemTime,
    took: Duration,
    outcome: Outcome,
}

impl Line {
    fn write(self) {
        let at = OffsetDateTime::from(self.at)
            .format(&Rfc3339)
            .unwrap_or_default();
        tracing::info!(
            target: "audit",
            time = %at,
            user = %self.user,
            server = self.server,
            kind = self.kind,
            name = self.name,
            duration_ms = self.took.as_secs_f64() * 1000.0,
            outcome = self.outcome.as_str(),
            "audit"
        );
    }
}

/// The writer of the process's audit lines (the `audit` service).
pub struct Trail(mpsc::Receiver<Line>);

impl Trail {
    /// Takes over writing the lines; `None` if a trail already did.
    pub fn install() -> Option<Trail> {
        let (tx, rx) = mpsc::channel(TRAIL_BUFFER);
        TRAIL.set(tx).ok()?;
        Some(Trail(rx))
    }

    /// Writes lines until `shutdown`, then those already queued; later ones
    /// are written by their requests.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                line = self.0.recv() => match line {
                    Some(line) => line.write(),
                    None => return,
                },
                () = shutdown.cancelled() => break,
            }
        }
        self.0.close();
        while let Ok(line) = self.0.try_recv() {
            line.write();
        }
    }
}
