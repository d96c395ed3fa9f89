//! A `tools/call` on a `/mcp` session carries its own traffic on its own
//! response stream, read here as raw HTTP with no GET stream open: the log
//! messages and progress the upstream sends during the call, its
//! elicitation request (answered by a POST to the session), and the end of
//! a call the client cancels. The real binary, a real engine and our test
//! server in a container over stdio.
mod common;

use std::time::Duration;

use common::raw_mcp::{ACCEPT_BOTH, open_session_declaring, post_mcp};
use common::*;
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);
const VERSION: &str = "2025-06-18";

/// The events of one POST's response stream, read as they come; or its
/// answer, when it came alone in plain JSON.
struct Events {
    /// `None` for a plain JSON answer.
    response: Option<reqwest::Response>,
    /// A plain JSON answer, until read.
    answer: Option<Value>,
    buf: String,
    /// The id of the last event read.
    last_id: Option<String>,
}

impl Events {
    /// Opens the answer to `request` (with the session's headers).
    async fn open(request: reqwest::RequestBuilder, session: &str) -> Events {
        let r = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", VERSION)
            .send();
        let response = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("answer within 30s")
            .expect("HTTP request");
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"].to_str().unwrap();
        let mut events = Events {
            response: None,
            answer: None,
            buf: String::new(),
            last_id: None,
        };
        if kind.starts_with("application/json") {
            events.answer = Some(response.json().await.expect("a JSON answer"));
        } else {
            assert!(kind.starts_with("text/event-stream"), "{kind}");
            events.response = Some(response);
        }
        events
    }

    fn is_json(&self) -> bool {
        self.response.is_none()
    }

    /// POSTs `body` to the session.
    async fn post(base: &str, session: &str, body: Value) -> Events {
        let request = reqwest::Client::new()
            .post(format!("{base}/mcp"))
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(body.to_string());
        Events::open(request, session).await
    }

    /// Resumes a stream of the session after the event `last_id`.
    async fn resume(base: &str, session: &str, last_id: &str) -> Events {
        let request = reqwest::Client::new()
            .get(format!("{base}/mcp"))
            .header("accept", "text/event-stream")
            .header("last-event-id", last_id);
        Events::open(request, session).await
    }

    async fn call(base: &str, session: &str, id: u64, name: &str, arguments: Value) -> Events {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": {"progressToken": format!("tok-{id}")}}});
        Events::post(base, session, body).await
    }

    /// The next JSON-RPC message, within 30 s; `None` when the stream ends.
    async fn next(&mut self) -> Option<Value> {
        if let Some(answer) = self.answer.take() {
            return Some(answer);
        }
        let response = self.response.as_mut()?;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(id) = event.lines().find_map(|l| l.strip_prefix("id:")) {
                    self.last_id = Some(id.trim().to_string());
                }
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if !data.is_empty() {
                    return Some(serde_json::from_str(&data).expect("a JSON-RPC message"));
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
                .await
                .expect("an event within 30s")
                .expect("read the stream");
            match chunk {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// Every message until the stream ends.
    async fn rest(&mut self) -> Vec<Value> {
        let mut all = vec![];
        while let Some(m) = self.next().await {
            all.push(m);
        }
        all
    }
}

fn text(result: &Value) -> &str {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

/// A fleet with the test server as `relay`, ready; the gateway's base URL
/// and a session that declared elicitation.
async fn start(test: &str) -> (Fleet, String, String) {
    let mut fleet = Fleet::new(test).await;
    fleet.catalog(&catalog_of(&[testserver_entry("relay")]));
    fleet.start(&["--no-auth"]);
    fleet.ready("relay").await;
    let base = fleet.gateway_url().await;
    let elicitation = json!({"elicitation": {}});
    let session = open_session_declaring(&base, VERSION, elicitation, &[]).await;
    (fleet, base, session)
}

/// Calls `tool` until its answer names `tag`.
async fn until_listed(fleet: &Fleet, base: &str, session: &str, tool: &str, tag: &str) {
    let mut id = 1000;
    fleet
        .until(&format!("{tool} lists {tag}"), MIN, || {
            id += 1;
            let call = Events::call(base, session, id, tool, json!({}));
            async move {
                let all = call.await.rest().await;
                let last = all.last()?;
                text(last).split(' ').any(|t| t == tag).then_some(())
            }
        })
        .await;
}

fn methods(all: &[Value]) -> Vec<&str> {
    all.iter()
        .map(|m| m["method"].as_str().unwrap_or("(response)"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_calls_own_traffic_rides_its_own_stream() {
    let (fleet, base, session) = start("relay-stream").await;

    // Log messages sent during the call come before its result, on its stream.
    let all = Events::call(&base, &session, 1, "chatter", json!({"tag": "s1"}))
        .await
        .rest()
        .await;
    let expected = [
        "notifications/message",
        "notifications/message",
        "(response)",
    ];
    assert_eq!(methods(&all), expected, "{all:?}\n{}", fleet.logs());
    assert_eq!(all[0]["params"]["data"], json!("debug s1"), "{all:?}");
    assert_eq!(text(&all[2]), "logged s1");

    // Progress, under the client's own token.
    let args = json!({"steps": 2, "delay": 0.05, "tag": "s2"});
    let all = Events::call(&base, &session, 2, "progress", args)
        .await
        .rest()
        .await;
    let expected = [
        "notifications/progress",
        "notifications/progress",
        "(response)",
    ];
    assert_eq!(methods(&all), expected, "{all:?}");
    assert!(
        all[..2]
            .iter()
            .all(|p| p["params"]["progressToken"] == json!("tok-2")),
        "{all:?}"
    );
    assert_eq!(all[2]["id"], json!(2));

    // An elicitation on the call's stream; the POSTed answer reaches the tool.
    let mut s = Events::call(
        &base,
        &session,
        3,
        "ask_user",
        json!({"question": "colour?"}),
    )
    .await;
    let ask = s.next().await.expect("the elicitation request");
    assert_eq!(ask["method"], json!("elicitation/create"), "{ask}");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"],
        "result": {"action": "accept", "content": {"answer": "blue"}}});
    let headers = [("mcp-session-id", session.as_str())];
    let a = post_mcp(&base, &headers, &answer.to_string()).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let rest = s.rest().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(text(&rest[0]), "accept: blue", "{rest:?}");

    // A call the client cancels is cancelled upstream, and its stream ends
    // without a response.
    let mut s = Events::call(&base, &session, 4, "hang", json!({"tag": "s4"})).await;
    until_listed(&fleet, &base, &session, "started", "s4").await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 4, "reason": "the test cancels"}});
    let a = post_mcp(&base, &headers, &cancel.to_string()).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let rest = s.rest().await;
    assert!(rest.iter().all(|m| m["id"] != json!(4)), "{rest:?}");
    until_listed(&fleet, &base, &session, "cancelled", "s4").await;

    // A client that leaves in the middle of a call does not cancel it: a GET
    // with the last event id it saw resumes the call's stream from there.
    let args = json!({"steps": 3, "delay": 0.3, "tag": "s5"});
    let mut s = Events::call(&base, &session, 5, "progress", args).await;
    let first = s.next().await.expect("the first progress");
    assert_eq!(first["params"]["message"], json!("s5 1"), "{first}");
    let seen = s.last_id.clone().expect("events carry ids");
    drop(s);
    // Until the gateway has seen the connection go, the stream is not parked
    // and a resumption finds nothing (an empty stream): a client waits the
    // priming event's `retry` (3 s); this asks again until it is there.
    let rest = fleet
        .until("the left stream resumed", MIN, || async {
            let rest = Events::resume(&base, &session, &seen).await.rest().await;
            (!rest.is_empty()).then_some(rest)
        })
        .await;
    let messages: Vec<_> = rest.iter().map(|m| &m["params"]["message"]).collect();
    assert_eq!(messages[..2], [&json!("s5 2"), &json!("s5 3")], "{rest:?}");
    assert_eq!(rest.len(), 3, "{rest:?}");
    assert_eq!(text(&rest[2]), "s5: 3 steps", "{rest:?}");
}

/// A call whose response is all it sends is answered in plain JSON (rmcp's
/// session path only ever answers with an event stream); one that sends more
/// streams; and a request outside the front's plain cases (a weighted
/// `Accept`) is still served, by rmcp.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_answer_is_plain_json_and_the_rest_streams() {
    let (fleet, base, session) = start("relay-json").await;

    let mut s = Events::call(&base, &session, 1, "echo", json!({"text": "plain"})).await;
    assert!(s.is_json(), "a lone answer comes as application/json");
    let all = s.rest().await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], json!(1), "{all:?}");
    assert_eq!(text(&all[0]), "plain", "{all:?}");

    let args = json!({"steps": 2, "delay": 0.05, "tag": "j2"});
    let mut s = Events::call(&base, &session, 2, "progress", args).await;
    assert!(!s.is_json(), "a call with progress streams");
    let all = s.rest().await;
    let expected = [
        "notifications/progress",
        "notifications/progress",
        "(response)",
    ];
    assert_eq!(methods(&all), expected, "{all:?}\n{}", fleet.logs());

    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "weighed"}}});
    let request = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json;q=0.9, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    let mut s = Events::open(request, &session).await;
    assert!(!s.is_json(), "rmcp answers on an event stream");
    let all = s.rest().await;
    assert_eq!(text(all.last().expect("an answer")), "weighed", "{all:?}");

    // A closed session's plain call is refused as rmcp refuses it, not served.
    let closed = reqwest::Client::new()
        .delete(format!("{base}/mcp"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", VERSION)
        .send()
        .await
        .expect("DELETE");
    assert!(closed.status().is_success(), "DELETE: {}", closed.status());
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "gone"}}});
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", VERSION),
    ];
    let a = post_mcp(&base, &headers, &body.to_string()).await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(a.json()["error"]["message"].is_string(), "{}", a.text);
}

/// A tool's result reaches the client as its server wrote it, with a member
/// no SDK models (`--handwritten` adds `x-vendor` to every result): the
/// gateway passes a plain result on unread rather than rebuilding it, alone
/// or at the end of an event stream.
#[tokio::test(flavor = "multi_thread")]
async fn a_tool_result_reaches_the_client_as_the_server_wrote_it() {
    let mut fleet = Fleet::new("relay-raw").await;
    let volume = format!("volumes:\n  - {TESTSERVER_PY}:/opt/testserver/server.py:ro");
    let handwritten = entry(
        "hand",
        TESTSERVER,
        &format!("{volume}\ncommand: ['--handwritten']"),
    );
    fleet.catalog(&catalog_of(&[handwritten]));
    fleet.start(&["--no-auth"]);
    fleet.ready("hand").await;
    let base = fleet.gateway_url().await;
    let session = open_session_declaring(&base, VERSION, json!({}), &[]).await;

    let mut s = Events::call(
        &base,
        &session,
        1,
        "vendor_echo",
        json!({"text": "as written"}),
    )
    .await;
    assert!(s.is_json(), "a lone answer comes as application/json");
    let all = s.rest().await;
    let vendor = json!({"kept": [1, "two", {"three": null}], "note": "a member no SDK models"});
    let expected = json!({"jsonrpc": "2.0", "id": 1, "result": {
        "content": [{"type": "text", "text": "as written"}], "x-vendor": vendor.clone()}});
    assert_eq!(all, [expected], "{}", fleet.logs());

    // So does one that rides an event stream (a progress notification came first).
    let mut s = Events::call(
        &base,
        &session,
        3,
        "vendor_echo",
        json!({"text": "streamed", "progress": true}),
    )
    .await;
    assert!(!s.is_json(), "progress first: an event stream");
    let all = s.rest().await;
    let expected = json!({"jsonrpc": "2.0", "id": 3, "result": {
        "content": [{"type": "text", "text": "streamed"}], "x-vendor": vendor}});
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["method"], "notifications/progress", "{all:?}");
    assert_eq!(all[0]["params"]["progressToken"], "tok-3", "{all:?}");
    assert_eq!(all[1], expected, "{}", fleet.logs());

    // The client's arguments reach the server as written (key order, number forms).
    let args = r#"{"zeta":1.50,"alpha":{"b":1e2,"a":"\u00e9"}}"#;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"raw_request","arguments":{args}}}}}"#
    );
    let request = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(body);
    let all = Events::open(request, &session).await.rest().await;
    let line = text(&all[0]);
    assert!(line.contains(&format!(r#""arguments":{args}"#)), "{line}");
}
