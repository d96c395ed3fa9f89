//! The gateway's HTTP server: one axum router with
//!
//! - `/mcp`: the streamable HTTP transport ([`super::mcp`]);
//! - `/sse` + `/message`: the legacy HTTP+SSE transport ([`super::sse`]);
//! - `/health`: liveness, always 200 `{"status":"ok"}`, no checks at all;
//! - `/readyz`: 200 or 503 from [`GatewayState::readiness`];
//! - `/status`: [`GatewayState::status_json`].
//!
//! Both transports share one session cap ([`HttpConfig::max_sessions`]).
//!
//! Every route but `/health` sits behind one security layer, in this order:
//! 1. DNS-rebinding protection: the `Host` header (port ignored) must be
//!    loopback (`localhost`, `127.0.0.1`, `::1`) or one of
//!    [`HttpConfig::allowed_hosts`]; an `Origin` header, when present, must be
//!    `http`/`https` with such a host too. Otherwise 403.
//! 2. `Authorization: Bearer <token>` resolves to an [`Identity`]
//!    ([`Authenticator`]: operator token, users file, JWT); otherwise 401 with
//!    `WWW-Authenticate: Bearer` and a body saying why (never the token). The
//!    identity goes into the request's extensions (`Arc<Identity>`), where the
//!    MCP session handlers find it; the header is removed once checked, so
//!    handlers never see the token.
//! 3. The status and metrics endpoints (and the page) need the admin role: 403.
//!
//! Every 4xx this module produces has a JSON body
//! `{"error": "<kind>", "message": "<why>"}` ([`json_error`]). rmcp's own
//! Host/Origin checks are configured with the same lists, so they agree with ours.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

pub use super::auth::Auth;
use super::auth::cookie_allowed;
pub use super::authn::Authenticator;
pub use super::hosts::{HostPolicy, LOOPBACK_HOSTS, Rejection};
pub use super::mcp::{MCP_PATH, SESSION_IDLE_TIMEOUT};
pub use super::page::StatusSource;
use super::shortcut::Shortcut;
pub use super::wire::json_error;
use crate::controller::logbuf::LogBuffer;
use crate::identity::Identity;

/// Default of [`HttpConfig::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 1024;
/// After shutdown is signalled, streams are ended at once; requests still in
/// flight get this long before [`serve`] returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The HTTP layer's configuration.
#[derive(Clone)]
pub struct HttpConfig {
    /// Resolves each request's bearer token to an identity.
    pub authn: Arc<Authenticator>,
    /// Host names accepted in `Host`/`Origin` besides loopback (a port, if
    /// given, is ignored; IPv6 literals with or without brackets).
    pub allowed_hosts: Vec<String>,
    /// MCP sessions open at once, `/mcp` and `/sse` together; more get 503.
    pub max_sessions: usize,
    /// Serves some `/mcp` requests without rmcp's session worker (see
    /// [`super::shortcut`]); `None`: rmcp serves every one.
    pub shortcut: Option<Arc<dyn Shortcut>>,
}

/// What the HTTP layer needs from the rest of mcp-fleet (the status document
/// for `GET /status` and the page comes from [`StatusSource`]).
pub trait GatewayState: StatusSource {
    /// `GET /readyz`.
    fn readiness(&self) -> Readiness;
    /// Body of `GET /metrics` (OpenMetrics text).
    fn metrics_text(&self) -> String;
    /// `server`'s stderr for `GET /servers/{name}/logs` ([`super::logs`]);
    /// `follow`: the caller waits for lines, so a known server that has
    /// none yet gets an empty buffer.
    fn server_log(
        &self,
        _server: &str,
        _follow: bool,
    ) -> Result<Arc<LogBuffer>, super::logs::NoLog> {
        Err(super::logs::NoLog::Unavailable)
    }
}

/// `GET /readyz`: 200 when `ready`, else 503; the body is
/// `{"ready": <bool>, ...detail}`.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    pub ready: bool,
    pub detail: Map<String, Value>,
}

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        let status = if self.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut body = Map::new();
        body.insert("ready".into(), self.ready.into());
        body.extend(self.detail);
        (status, axum::Json(Value::Object(body))).into_response()
    }
}

/// The gateway's router. `new_handler` makes one handler per MCP session
/// (streamable HTTP and legacy SSE alike).
pub fn router<S, F>(new_handler: F, state: Arc<dyn GatewayState>, cfg: HttpConfig) -> Router
where
    F: Fn() -> S + Send + Sync + Clone + 'static,
    S: rmcp::ServerHandler + Send + 'static,
{
    let hosts = HostPolicy::new(&cfg.allowed_hosts);
    let (mcp, cap) = super::mcp::router(
        new_handler.clone(),
        hosts.rmcp_allowed_hosts(),
        hosts.rmcp_allowed_origins(),
        cfg.max_sessions,
        cfg.shortcut,
    );

    let ready_state = state.clone();
    let page_state: Arc<dyn StatusSource> = state.clone();
    let metrics_state = state.clone();
    let metrics_cap = cap.clone();
    let logs_state = state.clone();
    let status_state = state;
    let security = Arc::new(Security {
        authn: cfg.authn,
        hosts,
    });
    let protected = Router::new()
        .merge(mcp)
        .merge(super::sse::router(new_handler, cap))
        .route(
            "/readyz",
            get(move || async move { ready_state.readiness() }),
        )
        .route(
            "/status",
            get(move || async move { axum::Json(status_state.status_json()) }),
        )
        .route(
            "/metrics",
            get(move || async move {
                metrics_cap.record_open().await;
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics_state.metrics_text(),
                )
            }),
        )
        .merge(super::page::router(page_state))
        .merge(super::logs::router(logs_state))
        .layer(middleware::from_fn_with_state(security, guard));

    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .merge(protected)
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
}

/// Serves `router` on `listener` until `shutdown` is cancelled. Then the
/// open-ended event streams (`GET /sse`, `GET /mcp`) are ended, which closes
/// legacy SSE sessions, and in-flight requests get [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stream_end = shutdown.clone();
    let app = router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let stream_end = stream_end.clone();
        async move {
            // Only GET streams are open-ended (`/sse`, the `/mcp` standalone
            // stream); a POST's event stream ends with its response, so an
            // in-flight tool call gets the grace period.
            let open_ended = request.method() == axum::http::Method::GET;
            let response = next.run(request).await;
            if open_ended {
                end_event_stream_on(stream_end, response)
            } else {
                response
            }
        }
    }));
    // Responses go out in more than one write (headers, then event chunks);
    // with Nagle's algorithm the second waits for the client's delayed ACK,
    // adding ~40 ms to every call.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        result = server => result,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "gateway: requests still open after the shutdown grace period; closing");
            Ok(())
        }
    }
}

/// Event streams never end by themselves; a graceful shutdown would wait for
/// them forever. Cut them when `shutdown` fires.
fn end_event_stream_on(shutdown: CancellationToken, response: Response) -> Response {
    let is_event_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_event_stream {
        return response;
    }
    let (parts, body) = response.into_parts();
    let stream = body
        .into_data_stream()
        .take_until(shutdown.cancelled_owned());
    Response::from_parts(parts, Body::from_stream(stream))
}

struct Security {
    authn: Arc<Authenticator>,
    hosts: HostPolicy,
}

async fn guard(
    State(security): State<Arc<Security>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(rejection) = security.hosts.check(request.uri(), request.headers()) {
        tracing::warn!(
            path = %request.uri().path(),
            reason = %rejection.message,
            "gateway: rejected request (possible DNS rebinding or cross-origin attempt)"
        );
        return json_error(rejection.status, rejection.kind, &rejection.message);
    }
    let auth = security.authn.operator();
    if let Some(response) = super::page::login(auth, &request) {
        return response;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let by_cookie = authorization.is_none()
        && cookie_allowed(request.method(), request.uri().path())
        && auth.allows_cookie(
            request
                .headers()
                .get(header::COOKIE)
                .and_then(|v| v.to_str().ok()),
        );
    let identity = if by_cookie {
        super::authn::operator()
    } else {
        match security.authn.authenticate(authorization).await {
            Ok(identity) => identity,
            Err(denied) => return unauthorized(request.uri().path(), &denied.message),
        }
    };
    if needs_admin(request.uri().path()) && !identity.is_admin() {
        return json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "{} needs the {} role",
                request.uri().path(),
                crate::identity::ADMIN_ROLE
            ),
        );
    }
    // Handlers can read the request's parts; they need not see the token.
    request.headers_mut().remove(header::AUTHORIZATION);
    request.extensions_mut().insert::<Arc<Identity>>(identity);
    next.run(request).await
}

/// The status, metrics and page show the whole fleet: admins only.
fn needs_admin(path: &str) -> bool {
    matches!(path, "/" | "/status" | "/status/events" | "/metrics") || path.starts_with("/servers/")
}

fn unauthorized(path: &str, message: &str) -> Response {
    tracing::debug!(path, reason = message, "gateway: unauthorized");
    let mut response = json_error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"mcp-fleet\""),
    );
    response
}
