//! The status page: `GET /` shows the fleet at a glance (phase, readiness,
//! restarts, tools, last transition, message, catalog errors and clashes) and
//! stays live through `GET /status/events`, an event stream that sends the
//! whole status again on every change. Plain HTML and a little JavaScript,
//! compiled into the binary; no build chain.
//!
//! Both routes sit behind the gateway's security layer. A browser cannot send
//! a bearer header, so `GET /?token=…` with the gateway token sets an HttpOnly,
//! SameSite=Strict cookie and redirects to `/` (the token leaves the address
//! bar); the cookie counts only for these read-only pages (see
//! [`super::auth::cookie_allowed`]).
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::{Auth, COOKIE, query_token};

/// What the page shows: the status document and its changes.
pub trait StatusSource: Send + Sync + 'static {
    /// The status document (`GET /status`).
    fn status_json(&self) -> serde_json::Value;
    /// Bumped on every change of the status.
    fn status_changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

const PAGE: &str = include_str!("page.html");
/// Open `/status/events` streams at once; each holds a status receiver.
pub const MAX_PAGE_STREAMS: usize = 32;
/// Browsers and proxies drop an event stream that stays silent too long.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /` and `GET /status/events`.
pub fn router(state: Arc<dyn StatusSource>) -> Router {
    let streams = Arc::new(Semaphore::new(MAX_PAGE_STREAMS));
    Router::new()
        .route(
            "/",
            get(|| async { ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)) }),
        )
        .route(
            "/status/events",
            get(move || {
                let state = state.clone();
                let streams = streams.clone();
                async move { events(state, streams) }
            }),
        )
}

fn events(state: Arc<dyn StatusSource>, streams: Arc<Semaphore>) -> Response {
    let Ok(permit) = streams.try_acquire_owned() else {
        let message =
            format!("at most {MAX_PAGE_STREAMS} status pages may be open at once; close one");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "too_many_streams", "message": message})),
        )
            .into_response();
    };
    Sse::new(status_stream(state, permit))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The status now, then again after every change (changes that come faster
/// than the browser reads collapse into one: the receiver keeps only the newest).
/// The permit is held for as long as the stream lives.
fn status_stream(
    state: Arc<dyn StatusSource>,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let rx = state.status_changes();
    stream::unfold((rx, permit, true), move |(mut rx, permit, first)| {
        let state = state.clone();
        async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            rx.borrow_and_update();
            let event = Event::default()
                .event("status")
                .data(state.status_json().to_string());
            Some((Ok(event), (rx, permit, false)))
        }
    })
}

/// The page login: `GET /?token=<gateway token>` sets the page cookie and
/// redirects to `/`, so the token leaves the address bar. `None` for any other
/// request.
pub fn login(auth: &Auth, request: &Request) -> Option<Response> {
    if request.method() != Method::GET || request.uri().path() != "/" {
        return None;
    }
    let token = query_token(request.uri().query()?)?;
    if !auth.allows_token(&token) {
        let message = "the token in the page link is not the gateway's token";
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized", "message": message})),
            )
                .into_response(),
        );
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        Auth::page_cookie(&token)
    );
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Some(response)
}
