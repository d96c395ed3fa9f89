//! A client for the legacy HTTP+SSE transport (MCP 2024-11-05), which rmcp no
//! longer ships: remote catalog entries with `transport_type: sse` use it.
//! `GET url` opens the event stream; its first `endpoint` event names the URL
//! that client messages are POSTed to; server messages arrive as `message`.
//!
//! Deadlines: the caller bounds connecting and the handshake (the pool's
//! handshake timeout). After that, a stream that sends nothing at all for
//! [`STREAM_IDLE`] is taken as dead and ends the session: servers send
//! keep-alive comments (every 15 s is usual), and the pool's health pings are
//! answered on this stream. Each POST must be answered within [`POST_TIMEOUT`].
use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{Sink, Stream, StreamExt, sink};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use sse_stream::SseStream;

use crate::catalog::{RemoteUrl, Secret};

/// A stream silent for this long (not even a keep-alive) is dead.
pub const STREAM_IDLE: Duration = Duration::from_secs(60);
/// A POST (answered `202 Accepted` at once by a live server) gets this long.
pub const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// A remote entry's headers for the HTTP client: the one place their values
/// are exposed. They are marked sensitive, so the HTTP stack never shows them.
pub(super) fn header_map(headers: &BTreeMap<String, Secret>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name: HeaderName = k.parse().map_err(|_| format!("bad header name {k}"))?;
        // The value may hold a secret: the error names only the header.
        let mut value =
            HeaderValue::from_str(v.expose()).map_err(|_| format!("bad value for header {k}"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// Opens the event stream and waits for the endpoint. Header values and URLs
/// may hold secrets: errors name neither.
pub async fn connect(
    url: &RemoteUrl,
    headers: &BTreeMap<String, Secret>,
) -> Result<
    (
        impl Sink<ClientJsonRpcMessage, Error = std::io::Error> + Send + Unpin + 'static,
        impl Stream<Item = ServerJsonRpcMessage> + Send + Unpin + 'static,
    ),
    String,
> {
    let map = header_map(headers)?;
    let base = reqwest::Url::parse(url.expose()).map_err(|e| format!("bad url: {e}"))?;
    let client = reqwest::Client::builder()
        .read_timeout(STREAM_IDLE)
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let response = client
        .get(base.clone())
        .headers(map.clone())
        .header(ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| format!("opening the event stream: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!(
            "opening the event stream: HTTP {}",
            response.status()
        ));
    }
    let mut events = Box::pin(SseStream::from_bytes_stream(response.bytes_stream()));
    let endpoint = loop {
        match events.next().await {
            Some(Ok(e)) if e.event.as_deref() == Some("endpoint") => {
                let data = e.data.unwrap_or_default();
                break base
                    .join(data.trim())
                    .map_err(|e| format!("bad endpoint: {e}"))?;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("event stream: {e}")),
            None => return Err("the event stream ended before naming its endpoint".into()),
        }
    };
    // The first error (a read timeout, a broken connection) ends the stream,
    // and with it the session; the pool then reconnects.
    let incoming = events
        .take_while(|e| {
            if let Err(err) = e {
                tracing::warn!(error = %err, "SSE upstream stream failed or went silent; closing the session");
            }
            std::future::ready(e.is_ok())
        })
        .filter_map(|e| async move {
        let e = e.ok()?;
        if e.event.as_deref().is_some_and(|k| k != "message") {
            return None;
        }
        match serde_json::from_str::<ServerJsonRpcMessage>(e.data.as_deref()?) {
            Ok(m) => Some(m),
            Err(err) => {
                tracing::warn!(error = %err, "unreadable message on an SSE upstream");
                None
            }
        }
    });
    let outgoing = sink::unfold(
        (client, endpoint, map),
        |(client, endpoint, map), msg: ClientJsonRpcMessage| async move {
            let body = serde_json::to_vec(&msg).map_err(std::io::Error::other)?;
            let r = client
                .post(endpoint.clone())
                .headers(map.clone())
                .header(CONTENT_TYPE, "application/json")
                .timeout(POST_TIMEOUT)
                .body(body)
                .send()
                .await
                .map_err(|e| std::io::Error::other(e.without_url()))?;
            if !r.status().is_success() {
                return Err(std::io::Error::other(format!("POST: HTTP {}", r.status())));
            }
            Ok((client, endpoint, map))
        },
    );
    Ok((Box::pin(outgoing), Box::pin(incoming)))
}
