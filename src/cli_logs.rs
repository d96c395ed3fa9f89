//! `mcp-fleet logs SERVER [--follow]`: prints a server's stderr, asked of the
//! running `mcp-fleet run` at `GET /servers/{name}/logs` with the gateway
//! token (see [`crate::gateway::logs`]).
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::gateway::auth::TOKEN_ENV;
use crate::{Error, Result};

/// How long connecting to the gateway may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a plain request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A follow stream silent this long is dead (the gateway sends a keep-alive
/// every 15 s).
const FOLLOW_SILENCE: Duration = Duration::from_secs(45);

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The server whose stderr to print.
    pub server: String,
    /// Keep printing new lines as they come, until the server leaves the
    /// fleet, the gateway stops, or you interrupt it.
    #[arg(short, long)]
    pub follow: bool,
    /// Print only the last N lines (then, with --follow, the new ones).
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Prefix each line with when it was read and the container's short id.
    #[arg(short, long)]
    pub timestamps: bool,
    /// The gateway of the running `mcp-fleet run` (its --listen address).
    #[arg(long, env = "MCP_FLEET_URL", default_value = "http://127.0.0.1:8811")]
    pub url: String,
    /// File holding the gateway token (MCP_GATEWAY_AUTH_TOKEN, when set, wins,
    /// as it does for `run`).
    #[arg(long)]
    pub auth_token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct Line {
    time: String,
    container: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct Lines {
    lines: Vec<Line>,
    dropped: u64,
}

pub async fn logs(args: LogsArgs) -> Result<ExitCode> {
    if !crate::catalog::valid_name(&args.server) {
        return Err(Error::Usage(format!(
            "{:?} is not a server name",
            args.server
        )));
    }
    let mut url = format!(
        "{}/servers/{}/logs",
        args.url.trim_end_matches('/'),
        args.server
    );
    let mut query = vec![];
    if args.follow {
        query.push("follow=true".to_string());
    }
    if let Some(n) = args.tail {
        query.push(format!("tail={n}"));
    }
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let mut client = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
    client = match args.follow {
        true => client.read_timeout(FOLLOW_SILENCE),
        false => client.timeout(REQUEST_TIMEOUT),
    };
    let client = client.build().map_err(|e| Error::Usage(e.to_string()))?;
    let mut request = client.get(&url);
    if let Some(token) = token(args.auth_token_file.as_deref())? {
        request = request.bearer_auth(token);
    }
    let unreachable = |e: reqwest::Error| {
        Error::Usage(format!(
            "cannot reach the gateway at {} (is `mcp-fleet run` listening there? see --url): {}",
            args.url,
            root_cause(&e)
        ))
    };
    let response = request.send().await.map_err(unreachable)?;
    if !response.status().is_success() {
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let why = body["message"].as_str().unwrap_or("no reason given");
        return Err(Error::Usage(format!(
            "the gateway answered {status}: {why}"
        )));
    }
    let print = |line: &Line, out: &mut dyn Write| match args.timestamps {
        true => writeln!(out, "{} {} {}", line.time, line.container, line.text),
        false => writeln!(out, "{}", line.text),
    };
    let mut out = std::io::stdout().lock();
    if args.follow {
        return follow(response, &mut out, print)
            .await
            .map(|()| ExitCode::SUCCESS);
    }
    let lines: Lines = response.json().await.map_err(unreachable)?;
    if lines.dropped > 0 {
        eprintln!(
            "({} older lines no longer kept; the log holds the newest)",
            lines.dropped
        );
    }
    lines
        .lines
        .iter()
        .try_for_each(|l| print(l, &mut out))
        .map_err(stdout_error)?;
    Ok(ExitCode::SUCCESS)
}

/// The innermost cause ("Connection refused"), not the HTTP client's wrapper.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::Usage(format!("cannot write to stdout: {e}"))
}

/// The token to present: MCP_GATEWAY_AUTH_TOKEN, else the token file, else
/// none (a gateway run with --no-auth).
fn token(file: Option<&std::path::Path>) -> Result<Option<String>> {
    if let Some(t) = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Some(t.trim().to_string()));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(Some(text.trim().to_string()))
}

/// Prints a follow stream's lines as they come, until it ends.
async fn follow(
    response: reqwest::Response,
    out: &mut dyn Write,
    print: impl Fn(&Line, &mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut body = response.bytes_stream();
    let mut events = EventReader::default();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| Error::Usage(format!("the log stream broke: {}", root_cause(&e))))?;
        for (event, data) in events.push(&chunk) {
            match (event.as_str(), serde_json::from_str::<Line>(&data)) {
                ("line", Ok(line)) => print(&line, out)
                    .and_then(|()| out.flush())
                    .map_err(stdout_error)?,
                ("line", Err(e)) => eprintln!("(unreadable line from the gateway: {e})"),
                ("dropped", _) => eprintln!("(lines were dropped: this reader fell behind)"),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Reads `text/event-stream`: `event:` and `data:` fields up to a blank line.
#[derive(Default)]
struct EventReader {
    pending: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl EventReader {
    /// Feeds bytes; returns the complete events as (name, data).
    fn push(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.pending.extend_from_slice(bytes);
        let mut done = vec![];
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let data = std::mem::take(&mut self.data).join("\n");
                let event = std::mem::take(&mut self.event);
                if !data.is_empty() || !event.is_empty() {
                    done.push((event, data));
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                self.event = v.trim_start().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                self.data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunks() {
        let mut r = EventReader::default();
        assert!(r.push(b"event: line\ndata: {\"a\"").is_empty());
        let got = r.push(b":1}\n\n: keep-alive\n\nevent: dropped\r\ndata: x\r\n\r\n");
        assert_eq!(
            got,
            [
                ("line".to_string(), "{\"a\":1}".to_string()),
                ("dropped".to_string(), "x".to_string())
            ]
        );
    }
}
