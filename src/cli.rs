//! The command line: `run` and `plan` (`logs` is in [`crate::cli_logs`],
//! `status` and `validate` in [`crate::cli_offline`]).
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, ApprovalMode, Limits, LoadOptions};
use crate::controller::{self, BackoffSettings, Context, Settings};
use crate::gateway::authn::Authenticator;
use crate::gateway::handler::{Gateway, GatewaySettings};
use crate::gateway::manage::{self, AddPolicy};
use crate::gateway::ready::Health;
use crate::gateway::{auth, http};
use crate::plan::Plan;
use crate::runtime::choice::RuntimeArgs;
use crate::runtime::{self, PullPolicy, Runtime};
use crate::supervise::Supervisor;
use crate::upstream::identity::SharedSecret;
use crate::upstream::index::ToolNames;
use crate::upstream::{Pool, PoolSettings};
use crate::{Error, Result, cli_offline};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-fleet",
    version,
    // A flag given twice takes its last value (wrappers append overrides).
    args_override_self = true,
    about = "Keeps a fleet of MCP servers running as containers, reconciled from a catalog"
)]
pub struct Cli {
    /// Log lines as text (for people) or JSON (for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "MCP_FLEET_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller until SIGINT/SIGTERM (containers are left running).
    Run(Box<RunArgs>),
    /// Print what `run` would do now; touches nothing.
    /// Exit 0 when in sync, 2 when changes are pending, 1 on error.
    Plan(PlanArgs),
    /// Print the fleet's status (from the status file `run` writes).
    /// Exit 0 when every server is running (and ready, if a gateway saw it), 2 otherwise.
    Status {
        #[arg(long, env = "MCP_FLEET_CONFIG_DIR")]
        config_dir: PathBuf,
        /// The status file [default: CONFIG_DIR/mcp-status.json].
        #[arg(long)]
        status_file: Option<PathBuf>,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a server's stderr, from the running `run` (over HTTP, with the token).
    Logs(crate::cli_logs::LogsArgs),
    /// Check catalog files; errors name file, line and column. Exit 1 on error.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The directory holding docker-mcp.yaml, registry.yaml, config.yaml, mcp.env.
    #[arg(long, env = "MCP_FLEET_CONFIG_DIR")]
    pub config_dir: PathBuf,
    /// Fleet name: containers are labelled with it; only its containers are touched.
    #[arg(long, default_value = "default", value_parser = parse_fleet)]
    pub fleet: String,
    /// Which servers are approved [default: registry if registry.yaml exists, else all].
    #[arg(long, value_enum)]
    pub approval: Option<ApprovalMode>,
    /// Container memory limit (bytes, or with k/m/g suffix).
    #[arg(long, default_value = "512m", value_parser = parse_bytes)]
    pub memory: i64,
    /// Container CPU limit, in CPUs.
    #[arg(long, default_value_t = 1.0)]
    pub cpus: f64,
    /// Container process limit.
    #[arg(long, default_value_t = 256)]
    pub pids_limit: i64,
    /// Give containers a writable root filesystem (default: read-only, with a tmpfs on /tmp).
    #[arg(long)]
    pub writable_rootfs: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Where to write the status JSON [default: CONFIG_DIR/mcp-status.json].
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Seconds between full resyncs.
    #[arg(long, default_value_t = 30.0)]
    pub resync: f64,
    /// When to pull images.
    #[arg(long, value_enum, default_value = "missing")]
    pub pull: PullPolicy,
    /// How many servers are reconciled at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds a container gets to stop before it is killed.
    #[arg(long, default_value_t = 10)]
    pub stop_timeout: u64,
    /// First restart delay of a crashing container, in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub backoff_min: f64,
    /// Longest restart delay, in seconds.
    #[arg(long, default_value_t = 300.0)]
    pub backoff_max: f64,
    /// A container that stays up this many seconds has its back-off reset.
    #[arg(long, default_value_t = 60.0)]
    pub backoff_reset: f64,
    /// How long the catalog must stay unchanged before containers it no longer
    /// wants are removed or replaced (creations never wait), and before a
    /// catalog without a final newline is taken as complete, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Where the MCP endpoint listens (/mcp, /sse, /health, /readyz, /status).
    #[arg(long, default_value = "127.0.0.1:8811")]
    pub listen: std::net::SocketAddr,
    /// File holding the bearer token (else MCP_GATEWAY_AUTH_TOKEN, else one is
    /// generated and printed once on stderr).
    #[arg(long)]
    pub auth_token_file: Option<PathBuf>,
    /// Serve without a token (only behind something that authenticates).
    #[arg(long)]
    pub no_auth: bool,
    /// A Host/Origin name accepted besides loopback (repeatable).
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// What mcp-add and mcp-remove may do.
    #[arg(long, value_enum, default_value = "request")]
    pub add_policy: AddPolicy,
    /// Tool names as the servers give them (prefixed on a clash), or always `server__tool`.
    #[arg(long, value_enum, default_value = "as-given")]
    pub tool_names: ToolNames,
    /// Seconds an upstream's MCP handshake may take before its container is replaced.
    #[arg(long, default_value_t = 30.0)]
    pub handshake_timeout: f64,
    /// Seconds between pings of every upstream session.
    #[arg(long, default_value_t = 10.0)]
    pub health_interval: f64,
    /// Seconds a call to a tool of a restarting server waits for it.
    #[arg(long, default_value_t = 30.0)]
    pub call_wait: f64,
    /// Seconds mcp-add (approve policy) waits for the new server to be ready.
    #[arg(long, default_value_t = 60.0)]
    pub add_wait: f64,
    /// MCP client sessions open at once (/mcp and /sse together); more are
    /// answered 503 until some close.
    #[arg(long, default_value_t = http::DEFAULT_MAX_SESSIONS, value_parser = clap::value_parser!(usize))]
    pub max_sessions: usize,
    /// Seconds of silence (no answer, no progress) after which a request
    /// forwarded to a server is given up: the client gets an error saying so
    /// and the server gets notifications/cancelled. Progress restarts it.
    #[arg(long, default_value_t = 120.0)]
    pub call_timeout: f64,
    /// Sessions kept per remote server, one per user (each tells the server
    /// who it is for); when all are open, a new user's request closes the
    /// least recently used idle one.
    #[arg(long, default_value_t = crate::upstream::users::DEFAULT_LIMIT, value_parser = clap::value_parser!(usize))]
    pub upstream_user_sessions: usize,
    /// Seconds a user's session to a remote server may stay unused before it
    /// is closed (checked at every --health-interval).
    #[arg(long, default_value_t = 600.0)]
    pub upstream_user_idle: f64,
    /// File holding a secret sent to remote servers as `X-Mcp-Gateway-Secret`
    /// with every user's identity headers, so a server can trust them.
    #[arg(long)]
    pub upstream_identity_secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub identity: crate::gateway::authn::IdentityArgs,
}

fn parse_fleet(s: &str) -> Result<String, String> {
    if catalog::valid_name(s) && s.len() <= 63 {
        Ok(s.to_string())
    } else {
        Err("a fleet name is 1-63 of [A-Za-z0-9_.-], starting with a letter or digit".into())
    }
}

/// `512m`, `2g`, `1048576`: Docker's units (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 512m or 2g"))?;
    let bytes = (n * mul as f64) as i64;
    if bytes < 6 * (1 << 20) {
        return Err(format!("`{s}` is below Docker's 6m minimum"));
    }
    Ok(bytes)
}

fn secs(v: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| Error::Usage(format!("--{what} must be a non-negative number of seconds")))
}

impl FleetArgs {
    fn load_options(&self, settle: Duration) -> Result<LoadOptions> {
        if !self.config_dir.is_dir() {
            return Err(Error::Usage(format!(
                "--config-dir {}: not a directory",
                self.config_dir.display()
            )));
        }
        if self.cpus.is_nan() || self.cpus <= 0.0 {
            return Err(Error::Usage("--cpus must be above 0".into()));
        }
        Ok(LoadOptions {
            approval: self
                .approval
                .unwrap_or_else(|| ApprovalMode::detect(&self.config_dir)),
            limits: Limits {
                memory_bytes: self.memory,
                nano_cpus: (self.cpus * 1e9) as i64,
                pids: self.pids_limit,
                read_only_rootfs: !self.writable_rootfs,
            },
            settle,
        })
    }
}

impl Cli {
    pub async fn execute(self) -> ExitCode {
        let result = match self.command {
            Command::Run(args) => run(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Plan(args) => plan(args).await,
            Command::Validate { files } => Ok(cli_offline::validate(&files)),
            Command::Logs(args) => crate::cli_logs::logs(args).await,
            Command::Status {
                config_dir,
                status_file,
                json,
            } => cli_offline::status(
                &status_file.unwrap_or_else(|| config_dir.join("mcp-status.json")),
                json,
            ),
        };
        result.unwrap_or_else(|e| {
            eprintln!("mcp-fleet: {e}");
            ExitCode::from(1)
        })
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let load = args.fleet.load_options(secs(args.settle, "settle")?)?;
    let settings = Settings {
        status_file: args
            .status_file
            .clone()
            .unwrap_or_else(|| args.fleet.config_dir.join("mcp-status.json")),
        fleet: args.fleet.fleet.clone(),
        config_dir: args.fleet.config_dir.clone(),
        load,
        pull: args.pull,
        resync: secs(args.resync, "resync")?.max(Duration::from_millis(100)),
        concurrency: args.concurrency,
        stop_timeout: Duration::from_secs(args.stop_timeout),
        backoff: BackoffSettings {
            min: secs(args.backoff_min, "backoff-min")?,
            max: secs(args.backoff_max, "backoff-max")?,
            reset_after: secs(args.backoff_reset, "backoff-reset")?,
        },
    };
    tracing::info!(
        runtime = ?args.runtime.kind(),
        fleet = %settings.fleet,
        config_dir = %settings.config_dir.display(),
        approval = ?settings.load.approval,
        status_file = %settings.status_file.display(),
        "starting controller"
    );
    let g = &args.gateway;
    let auth = auth::resolve(g.auth_token_file.as_deref(), g.no_auth).map_err(Error::Usage)?;
    let authn = Arc::new(
        Authenticator::new(auth, &g.identity, &settings.config_dir)
            .await
            .map_err(Error::Usage)?,
    );
    if g.max_sessions == 0 {
        return Err(Error::Usage("--max-sessions must be at least 1".into()));
    }
    if g.upstream_user_sessions == 0 {
        return Err(Error::Usage(
            "--upstream-user-sessions must be at least 1".into(),
        ));
    }
    let identity_secret = g
        .upstream_identity_secret_file
        .as_deref()
        .map(SharedSecret::read)
        .transpose()
        .map_err(|e| Error::Usage(format!("--upstream-identity-secret-file: {e}")))?;
    let runtime = (args.runtime)
        .build(settings.pull, settings.stop_timeout)
        .await?;
    let shutdown = CancellationToken::new();
    let tasks = Supervisor::from_env(shutdown.clone());
    let ctx = Context::new(runtime, settings, tasks.clone());
    let pool = Pool::new(
        ctx.clone(),
        PoolSettings {
            handshake_timeout: secs(g.handshake_timeout, "handshake-timeout")?,
            health_interval: secs(g.health_interval, "health-interval")?
                .max(Duration::from_millis(100)),
            ping_timeout: secs(g.handshake_timeout, "handshake-timeout")?
                .min(Duration::from_secs(10)),
            tool_names: g.tool_names,
            reserved: manage::NAMES.to_vec(),
            user_sessions: g.upstream_user_sessions,
            user_idle: secs(g.upstream_user_idle, "upstream-user-idle")?,
            identity_secret,
        },
    );
    let gateway = Gateway::new(
        pool.clone(),
        GatewaySettings {
            add_policy: g.add_policy,
            call_wait: secs(g.call_wait, "call-wait")?,
            add_wait: secs(g.add_wait, "add-wait")?,
            call_timeout: secs(g.call_timeout, "call-timeout")?.max(Duration::from_millis(100)),
            access: crate::gateway::access::AccessPolicy {
                default_access: g.identity.default_access,
                manage_role: g.identity.manage_role.clone(),
            },
        },
    );
    let listener = tokio::net::TcpListener::bind(g.listen)
        .await
        .map_err(|e| Error::Usage(format!("--listen {}: {e}", g.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Usage(e.to_string()))?;
    tracing::info!(%addr, "gateway listening on http://{addr}/mcp (and /sse)");
    let router = http::router(
        {
            let gateway = gateway.clone();
            move || gateway.session()
        },
        Arc::new(Health(ctx.clone())),
        http::HttpConfig {
            authn: authn.clone(),
            allowed_hosts: g.allowed_hosts.clone(),
            max_sessions: g.max_sessions,
            shortcut: Some(gateway.directory()),
        },
    );

    // Services: a death is logged and fails /readyz (see supervise.rs).
    tasks.spawn("signals", signal_shutdown(shutdown.clone()));
    tasks.spawn("pool", pool.run(shutdown.clone()));
    authn.spawn_background(&tasks, shutdown.clone());
    tasks.spawn(
        "access",
        gateway.clone().access_loop(authn.users(), shutdown.clone()),
    );
    tasks.spawn("notify", gateway.notify_loop(shutdown.clone()));
    if let Some(trail) = crate::gateway::audit::Trail::install() {
        tasks.spawn("audit", trail.run(shutdown.clone()));
    }
    // Without its HTTP server the gateway is of no use: its end stops everything.
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let result = http::serve(listener, router, shutdown.clone()).await;
            if !shutdown.is_cancelled() {
                tracing::error!(?result, "the gateway's HTTP server stopped; shutting down");
                shutdown.cancel();
            }
            result
        }
    });
    let result = controller::run(ctx, shutdown.clone()).await;
    shutdown.cancel();
    match server.await {
        Ok(Ok(())) => result,
        Ok(Err(e)) => result.and(Err(Error::Usage(format!("gateway server: {e}")))),
        Err(e) => result.and(Err(Error::Usage(format!("gateway server task: {e}")))),
    }
}

async fn signal_shutdown(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::error!("cannot handle SIGTERM; stop mcp-fleet with SIGINT");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
    token.cancel();
}

async fn plan(
    PlanArgs {
        fleet: args,
        runtime,
    }: PlanArgs,
) -> Result<ExitCode> {
    let desired = catalog::load(&args.config_dir, &args.load_options(Duration::ZERO)?)?;
    for w in &desired.warnings {
        eprintln!("warning: {w}");
    }
    for (name, d) in &desired.servers {
        if let catalog::Desired::Invalid { error } = d {
            eprintln!("invalid: {name}: {error}");
        }
    }
    // Nothing is pulled or stopped: the defaults only fill the settings.
    let runtime = runtime.build(PullPolicy::Missing, Duration::ZERO).await?;
    let actual = read_once(runtime.as_ref(), &args.fleet).await?;
    let plan = Plan::compute(&args.fleet, &desired, &actual);
    print!("{plan}");
    Ok(if plan.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// What runs now. A backend whose reads come from its watch (Kubernetes)
/// has its watch run for as long as this read takes. The list alone gives
/// the answer: a watch that ends (Docker's, when the engine is down) waits,
/// so the list's own error is the one reported.
async fn read_once(runtime: &dyn Runtime, fleet: &str) -> Result<Vec<runtime::Container>> {
    use futures_util::{FutureExt, StreamExt};
    let watch = (runtime.events(fleet).for_each(|_| async {}))
        .then(|()| std::future::pending::<std::convert::Infallible>());
    tokio::select! {
        found = runtime.list(fleet, None) => found,
        never = watch => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("2Gb"), Ok(2 << 30));
        assert_eq!(parse_bytes("8388608"), Ok(8 << 20));
        assert!(parse_bytes("1k").is_err());
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
