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
//! 2. With [`Auth::Token`], `Authorization: Bearer <token>`; otherwise 401
//!    with `WWW-Authenticate: Bearer`. The header is removed once checked, so
//!    handlers (which can read the HTTP request parts) never see the token.
//!
//! Every 4xx this module produces has a JSON body
//! `{"error": "<kind>", "message": "<why>"}` ([`json_error`]). rmcp's own
//! Host/Origin checks are configured with the same lists, so they agree with ours.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

pub use super::auth::Auth;
use super::auth::cookie_allowed;
pub use super::mcp::{MCP_PATH, SESSION_IDLE_TIMEOUT};
pub use super::page::StatusSource;
pub use super::wire::json_error;

/// Hosts always accepted in `Host` and `Origin` (normalized: no brackets).
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Default of [`HttpConfig::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 1024;
/// After shutdown is signalled, streams are ended at once; requests still in
/// flight get this long before [`serve`] returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The HTTP layer's configuration.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub auth: Auth,
    /// Host names accepted in `Host`/`Origin` besides loopback (a port, if
    /// given, is ignored; IPv6 literals with or without brackets).
    pub allowed_hosts: Vec<String>,
    /// MCP sessions open at once, `/mcp` and `/sse` together; more get 503.
    pub max_sessions: usize,
}

/// What the HTTP layer needs from the rest of mcp-fleet (the status document
/// for `GET /status` and the page comes from [`StatusSource`]).
pub trait GatewayState: StatusSource {
    /// `GET /readyz`.
    fn readiness(&self) -> Readiness;
    /// Body of `GET /metrics` (OpenMetrics text).
    fn metrics_text(&self) -> String;
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
    );

    let ready_state = state.clone();
    let page_state: Arc<dyn StatusSource> = state.clone();
    let metrics_state = state.clone();
    let metrics_cap = cap.clone();
    let status_state = state;
    let security = Arc::new(Security {
        auth: cfg.auth,
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
    auth: Auth,
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
    if let Some(response) = super::page::login(&security.auth, &request) {
        return response;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let by_cookie = authorization.is_none()
        && cookie_allowed(request.method(), request.uri().path())
        && security.auth.allows_cookie(
            request
                .headers()
                .get(header::COOKIE)
                .and_then(|v| v.to_str().ok()),
        );
    if !by_cookie && !security.auth.allows(authorization) {
        let message = if authorization.is_none() {
            "missing Authorization: Bearer <token> header (a browser opens /?token=<token> once)"
        } else {
            "invalid bearer token"
        };
        tracing::debug!(path = %request.uri().path(), reason = message, "gateway: unauthorized");
        let mut response = json_error(StatusCode::UNAUTHORIZED, "unauthorized", message);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mcp-fleet\""),
        );
        return response;
    }
    // Handlers can read the request's parts; they need not see the token.
    request.headers_mut().remove(header::AUTHORIZATION);
    next.run(request).await
}

/// Why a request was refused by [`HostPolicy::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl Rejection {
    fn forbidden(message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            kind: "forbidden",
            message,
        }
    }
}

/// Which `Host` and `Origin` hosts are accepted: loopback plus the
/// configured names, compared case-insensitively, ports ignored.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    hosts: Vec<String>,
}

impl HostPolicy {
    pub fn new(allowed_hosts: &[String]) -> Self {
        let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        for entry in allowed_hosts {
            if let Some(host) = normalize_configured_host(entry)
                && !hosts.contains(&host)
            {
                hosts.push(host);
            }
        }
        Self { hosts }
    }

    /// The accepted hosts, normalized (lowercase, IPv6 without brackets).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Whether a `Host` header value (or request authority) is accepted.
    pub fn host_allowed(&self, authority: &str) -> bool {
        authority_host(authority).is_some_and(|h| self.hosts.contains(&h))
    }

    /// Whether an `Origin` header value is accepted: `http` or `https` with an
    /// accepted host (`null` and other schemes are refused).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let Ok(uri) = origin.trim().parse::<Uri>() else {
            return false;
        };
        let scheme_ok = matches!(uri.scheme_str(), Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
        scheme_ok
            && uri
                .authority()
                .is_some_and(|a| self.hosts.contains(&normalize_host(a.host())))
    }

    /// Checks a request's `Host` (or, for HTTP/2, its `:authority`) and `Origin`.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
        let host = match headers.get(header::HOST) {
            Some(value) => value.to_str().ok().map(str::to_owned),
            None => uri.authority().map(|a| a.as_str().to_owned()),
        };
        let Some(host) = host else {
            return Err(Rejection {
                status: StatusCode::BAD_REQUEST,
                kind: "bad_request",
                message: "missing or unreadable Host header".into(),
            });
        };
        if !self.host_allowed(&host) {
            return Err(Rejection::forbidden(format!(
                "Host {host:?} is not allowed: use a loopback address or a host in the \
                 gateway's allowed hosts"
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("<not text>");
            if !self.origin_allowed(origin) {
                return Err(Rejection::forbidden(format!(
                    "Origin {origin:?} is not allowed: only http(s) origins on a loopback \
                     address or an allowed host may call the gateway"
                )));
            }
        }
        Ok(())
    }

    /// The same hosts for rmcp's own `Host` check (portless entries match any port).
    pub fn rmcp_allowed_hosts(&self) -> Vec<String> {
        self.hosts.clone()
    }

    /// The same hosts for rmcp's own `Origin` check: `http`/`https`, any port.
    pub fn rmcp_allowed_origins(&self) -> Vec<String> {
        self.hosts
            .iter()
            .flat_map(|h| {
                let h = if h.contains(':') {
                    format!("[{h}]")
                } else {
                    h.clone()
                };
                [format!("http://{h}:*"), format!("https://{h}:*")]
            })
            .collect()
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// The host part of a `host[:port]` authority, normalized.
fn authority_host(authority: &str) -> Option<String> {
    let authority: axum::http::uri::Authority = authority.trim().parse().ok()?;
    // Userinfo has no place in a Host header.
    if authority.as_str().contains('@') {
        return None;
    }
    Some(normalize_host(authority.host()))
}

/// A configured allowed host: `name`, `name:port`, `[v6]`, `[v6]:port` or a bare `v6`.
fn normalize_configured_host(entry: &str) -> Option<String> {
    let entry = entry.trim();
    if entry.is_empty() {
        return None;
    }
    if entry.matches(':').count() > 1 && !entry.starts_with('[') {
        return Some(entry.to_ascii_lowercase()); // bare IPv6 literal
    }
    authority_host(entry).or_else(|| Some(normalize_host(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &[&str]) -> HostPolicy {
        HostPolicy::new(&extra.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn loopback_hosts_with_and_without_ports() {
        let p = policy(&[]);
        for host in [
            "localhost",
            "localhost:8811",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:8811",
            "[::1]",
            "[::1]:8811",
        ] {
            assert!(p.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8811",
            "localhost.evil.example",
            "127.0.0.2",
            "0.0.0.0:8811",
            "user@localhost",
            "",
            "[::2]:80",
        ] {
            assert!(!p.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn configured_hosts_ignore_ports_and_case() {
        let p = policy(&[
            "mcp-fleet",
            "Gateway.Example:8443",
            "[fd00::1]",
            "fd00::2",
            " ",
        ]);
        assert!(p.host_allowed("mcp-fleet:8811"));
        assert!(p.host_allowed("gateway.example"));
        assert!(p.host_allowed("gateway.example:1234"));
        assert!(p.host_allowed("[fd00::1]:8811"));
        assert!(p.host_allowed("[FD00::2]"));
        assert!(!p.host_allowed("other"));
        assert_eq!(
            p.hosts(),
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "mcp-fleet",
                "gateway.example",
                "fd00::1",
                "fd00::2"
            ]
        );
    }

    #[test]
    fn origins() {
        let p = policy(&["mcp-fleet"]);
        for origin in [
            "http://localhost",
            "http://localhost:6274",
            "https://127.0.0.1:8443",
            "http://[::1]:3000",
            "http://mcp-fleet:8811",
            "HTTP://LOCALHOST",
        ] {
            assert!(p.origin_allowed(origin), "{origin}");
        }
        for origin in [
            "http://evil.example",
            "https://localhost.evil.example",
            "null",
            "file://localhost",
            "chrome-extension://abcdef",
            "localhost",
            "",
        ] {
            assert!(!p.origin_allowed(origin), "{origin}");
        }
    }

    #[test]
    fn check_host_then_origin() {
        let p = policy(&[]);
        let uri: Uri = "/mcp".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            p.check(&uri, &headers).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        // HTTP/2: no Host header, the authority is in the URI.
        let h2: Uri = "http://127.0.0.1:8811/mcp".parse().unwrap();
        assert!(p.check(&h2, &headers).is_ok());
        headers.insert(header::HOST, HeaderValue::from_static("localhost:8811"));
        assert!(p.check(&uri, &headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        let r = p.check(&uri, &headers).unwrap_err();
        assert_eq!((r.status, r.kind), (StatusCode::FORBIDDEN, "forbidden"));
        assert!(r.message.contains("Origin"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://localhost:5173"),
        );
        assert!(p.check(&uri, &headers).is_ok());
        headers.insert(header::HOST, HeaderValue::from_static("attacker.example"));
        let r = p.check(&uri, &headers).unwrap_err();
        assert!(r.message.contains("Host"));
    }

    #[test]
    fn rmcp_lists_match_ours() {
        let p = policy(&["mcp-fleet", "[fd00::1]"]);
        assert_eq!(
            p.rmcp_allowed_hosts(),
            ["localhost", "127.0.0.1", "::1", "mcp-fleet", "fd00::1"]
        );
        let origins = p.rmcp_allowed_origins();
        assert!(origins.contains(&"http://[::1]:*".to_string()));
        assert!(origins.contains(&"https://mcp-fleet:*".to_string()));
        assert!(origins.contains(&"http://[fd00::1]:*".to_string()));
        assert_eq!(origins.len(), 10);
    }
}
