//! A client for the legacy HTTP+SSE transport (MCP 2024-11-05), which rmcp no
//! longer ships: remote catalog entries with `transport_type: sse` use it.
//! `GET url` opens the event stream; its first `endpoint` event names the URL
//! that client messages are POSTed to; server messages arrive as `message`.
use std::collections::HashMap;

use futures_util::{Sink, Stream, StreamExt, sink};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use sse_stream::SseStream;

/// Opens the event stream and waits for the endpoint. Header values and URLs
/// may hold secrets: errors name neither.
pub async fn connect(
    url: &str,
    headers: &HashMap<String, String>,
) -> Result<
    (
        impl Sink<ClientJsonRpcMessage, Error = std::io::Error> + Send + Unpin + 'static,
        impl Stream<Item = ServerJsonRpcMessage> + Send + Unpin + 'static,
    ),
    String,
> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name: HeaderName = k.parse().map_err(|_| format!("bad header name {k}"))?;
        let value: HeaderValue = v.parse().map_err(|_| format!("bad value for header {k}"))?;
        map.insert(name, value);
    }
    let base = reqwest::Url::parse(url).map_err(|e| format!("bad url: {e}"))?;
    let client = reqwest::Client::new();
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
    let incoming = events.filter_map(|e| async move {
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
