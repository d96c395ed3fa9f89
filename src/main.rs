#![forbid(unsafe_code)]
use std::process::ExitCode;

use clap::Parser;
use mcp_fleet::cli::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

/// Libraries whose debug output can carry secrets (bollard prints whole create
/// requests, environment included; HTTP clients print URLs with their query)
/// stay at `info` whatever `MCP_FLEET_LOG` asks for. rmcp's transports print
/// a remote's full URL even in their errors: mcp-fleet reports those failures
/// itself (redacted), so theirs are off.
const QUIET: &str =
    "bollard=info,hyper=info,hyper_util=info,reqwest=info,h2=info,rmcp::transport=off";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let wanted = std::env::var("MCP_FLEET_LOG").unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(format!("{wanted},{QUIET}"))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET}")));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().with_current_span(true).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    cli.execute().await
}
