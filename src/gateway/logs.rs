//! `GET /servers/{name}/logs`: a server's stderr as the controller captured
//! it (see [`crate::controller::logs`]), behind the gateway's token.
//!
//! - Plain: `{"server", "lines": [{"seq", "time", "container", "text"}], "dropped"}`,
//!   where `dropped` counts older lines that no longer fit in the buffer.
//! - `?tail=N`: only the last N lines.
//! - `?follow=true`: an event stream instead: an event `line` (data: one line
//!   object as above) for each line, then for each new one as it comes; an
//!   event `dropped` (data: `{"count": N}`) when the reader fell so far behind
//!   that lines were lost. It ends when the server leaves the fleet or the
//!   gateway shuts down. At most [`MAX_FOLLOWERS`] at once.
//!
//! Errors have the usual JSON body: 404 for a server the fleet does not have
//! (or a remote one, which has no container), 400 for a bad query.
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::http::GatewayState;
use super::wire::json_error;
use crate::controller::logbuf::LogBuffer;

/// Follow streams open at once; each holds a buffer receiver.
pub const MAX_FOLLOWERS: usize = 32;
/// Keeps proxies from dropping a quiet stream, and finds clients that left.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Why a server has no log to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoLog {
    /// The fleet has no server by that name.
    Unknown,
    /// A remote server: no container runs for it.
    Remote,
    /// This gateway runs without a controller.
    Unavailable,
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
}

pub fn router(state: Arc<dyn GatewayState>) -> Router {
    let followers = Arc::new(Semaphore::new(MAX_FOLLOWERS));
    Router::new().route(
        "/servers/{name}/logs",
        get(
            move |Path(name): Path<String>, query: Result<Query<LogQuery>, QueryRejection>| {
                let (state, followers) = (state.clone(), followers.clone());
                async move { answer(&*state, followers, &name, query) }
            },
        ),
    )
}

fn answer(
    state: &dyn GatewayState,
    followers: Arc<Semaphore>,
    name: &str,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "query parameters: follow=true|false, tail=<number of lines>",
        );
    };
    let buffer = match state.server_log(name, q.follow) {
        Ok(b) => b,
        Err(why) => {
            let message = match why {
                NoLog::Unknown => format!("the fleet has no server named {name:?}"),
                NoLog::Remote => format!(
                    "{name} is a remote server: no container runs for it, so it has no log here"
                ),
                NoLog::Unavailable => "this gateway keeps no server logs".to_string(),
            };
            return json_error(StatusCode::NOT_FOUND, "not_found", &message);
        }
    };
    if !q.follow {
        let chunk = buffer.after(None, q.tail);
        return Json(json!({"server": name, "lines": chunk.lines, "dropped": chunk.dropped}))
            .into_response();
    }
    let Ok(permit) = followers.try_acquire_owned() else {
        let message = format!("at most {MAX_FOLLOWERS} log streams may be open at once");
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            &message,
        );
    };
    Sse::new(follow(buffer, q.tail, permit))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

struct Follower {
    buffer: Arc<LogBuffer>,
    pushed: tokio::sync::watch::Receiver<u64>,
    /// The seq of the last line sent.
    last: Option<u64>,
    /// For the first read only.
    tail: Option<usize>,
    queue: VecDeque<Event>,
    _permit: OwnedSemaphorePermit,
}

/// The buffer's lines (the last `tail`), then every new one until it closes.
/// Nothing is queued per follower beyond one read of the buffer, which is
/// itself bounded; a slow reader sees a `dropped` event instead.
fn follow(
    buffer: Arc<LogBuffer>,
    tail: Option<usize>,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let f = Follower {
        pushed: buffer.subscribe(),
        buffer,
        last: None,
        tail,
        queue: VecDeque::new(),
        _permit: permit,
    };
    stream::unfold(f, |mut f| async move {
        loop {
            if let Some(event) = f.queue.pop_front() {
                return Some((Ok(event), f));
            }
            f.pushed.borrow_and_update();
            let chunk = f.buffer.after(f.last, f.tail.take());
            if chunk.dropped > 0 && f.last.is_some() {
                let data = json!({"count": chunk.dropped}).to_string();
                f.queue
                    .push_back(Event::default().event("dropped").data(data));
            }
            for line in chunk.lines {
                let data = serde_json::to_string(&line).expect("a line serialises");
                f.queue.push_back(Event::default().event("line").data(data));
            }
            f.last = Some(chunk.last);
            if f.queue.is_empty() && (chunk.closed || f.pushed.changed().await.is_err()) {
                return None;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::logbuf::MAX_LINES;
    use futures_util::StreamExt;

    /// The event stream's text up to and including the first `needle`.
    async fn read_until(body: &mut axum::body::BodyDataStream, text: &mut String, needle: &str) {
        let deadline = Duration::from_secs(5);
        while !text.contains(needle) {
            let chunk = tokio::time::timeout(deadline, body.next())
                .await
                .expect("an event within 5 s")
                .expect("the stream goes on")
                .expect("a chunk");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    #[tokio::test]
    async fn a_follower_gets_the_tail_new_lines_a_gap_and_ends_on_close() {
        let b = Arc::new(LogBuffer::default());
        for i in 0..3 {
            b.push("c", 1, format!("old {i}"));
        }
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let mut body = Sse::new(follow(b.clone(), Some(1), permit))
            .into_response()
            .into_body()
            .into_data_stream();
        let mut text = String::new();
        read_until(&mut body, &mut text, "old 2").await;
        assert!(!text.contains("old 1"), "{text}");

        b.push("c", 1, "new".into());
        read_until(&mut body, &mut text, r#""text":"new""#).await;

        // More lines than the buffer holds arrive between two reads.
        for i in 0..MAX_LINES + 10 {
            b.push("c", 1, format!("flood {i}"));
        }
        read_until(&mut body, &mut text, "event: dropped").await;
        assert!(text.contains(r#"data: {"count":10}"#), "{text}");

        b.close();
        let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("the stream ends once its buffer is closed");
        for chunk in rest {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        assert_eq!(text.matches("event: line").count(), 2 + MAX_LINES, "{text}");
        assert!(text.contains(&format!("flood {}", MAX_LINES + 9)));
    }
}
