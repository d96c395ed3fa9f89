use bytes::BytesMut;
use futures_util::StreamExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::codec::{Decoder, FramedRead};

use super::*;
use rmcp::model::ServerResult;

/// How the gateway reads `line`, as rmcp's session gets it.
fn gateway_reads(line: &str) -> Option<ServerJsonRpcMessage> {
    match read_line(BytesMut::from(format!("{line}\n").as_str()))? {
        Line::Message(m) => Some(*m),
        Line::Result(id, raw) => Some(ServerJsonRpcMessage::response(raw.typed().ok()?, id)),
        Line::Invalid => None,
    }
}

/// How rmcp's own codec reads `line`.
fn rmcp_reads(line: &str) -> Option<ServerJsonRpcMessage> {
    let mut buf = BytesMut::from(format!("{line}\n").as_str());
    JsonRpcMessageCodec::<ServerJsonRpcMessage>::default()
        .decode(&mut buf)
        .ok()
        .flatten()
}

/// Every combination of `CallToolResult`'s fields, as results of assorted shapes.
fn tool_results() -> Vec<Value> {
    let contents = [
        json!([]),
        json!([{"type": "text", "text": "hi"}]),
        json!([{"type": "text", "text": "a", "annotations": {"audience": ["user"]}, "_meta": {"k": 1}},
               {"type": "image", "data": "aGk=", "mimeType": "image/png"}]),
        json!([{"type": "resource", "resource": {"uri": "file:///a", "text": "x"}}]),
    ];
    let structured = [
        None,
        Some(json!({"a": 1})),
        Some(Value::Null),
        Some(json!(3)),
    ];
    let is_error = [None, Some(json!(true)), Some(json!(false))];
    let meta = [None, Some(json!({"progressToken": 1, "x": "y"}))];
    let mut out = Vec::new();
    for c in &contents {
        for s in &structured {
            for e in &is_error {
                for m in &meta {
                    let mut r = json!({"content": c});
                    for (k, v) in [("structuredContent", s), ("isError", e), ("_meta", m)] {
                        if let Some(v) = v {
                            r[k] = v.clone();
                        }
                    }
                    out.push(r);
                }
            }
        }
    }
    out
}

#[test]
fn a_tool_result_is_read_as_rmcp_reads_it() {
    for (n, result) in tool_results().into_iter().enumerate() {
        for id in [json!(n), json!(format!("s-{n}"))] {
            let line = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
            let read = read_line(BytesMut::from(format!("{line}\n").as_str()));
            assert!(
                matches!(read, Some(Line::Result(..))),
                "not kept raw: {line}"
            );
            let fast = gateway_reads(&line).unwrap();
            let slow = rmcp_reads(&line).unwrap_or_else(|| panic!("rmcp refuses: {line}"));
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{line}");
        }
    }
}

/// Any other message, a result kept raw or not, reaches rmcp's session as
/// rmcp's codec reads it.
#[test]
fn anything_else_is_read_as_rmcp_reads_it() {
    let others = [
        // Fields CallToolResult does not have, or that make it another result.
        json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "resultType": "complete"}}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "task": {"taskId": "t"}}}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "unknown": 1}}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {"contents": []}}),
        // Not a plain response.
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "no"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/progress",
               "params": {"progressToken": 1, "progress": 1}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}, "extra": true}),
        json!({"jsonrpc": "1.0", "id": 1, "result": {"content": []}}),
        json!({"jsonrpc": "2.0", "id": "s", "result": [1, {"a": null}]}),
        json!({"jsonrpc": "2.0", "id": 1, "result": "text"}),
    ];
    for m in others {
        let line = m.to_string();
        assert_eq!(
            format!("{:?}", gateway_reads(&line)),
            format!("{:?}", rmcp_reads(&line)),
            "{line}"
        );
    }
    // A byte-order mark: not kept raw; rmcp's codec reads past it.
    let bom = format!("\u{feff}{}", others_first());
    assert!(matches!(
        read_line(BytesMut::from(format!("{bom}\n").as_str())),
        Some(Line::Message(_))
    ));
    assert_eq!(
        format!("{:?}", gateway_reads(&bom)),
        format!("{:?}", rmcp_reads(&bom))
    );
}

fn others_first() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}).to_string()
}

fn messages(lines: &mut Lines, buf: &mut BytesMut) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(line) = lines.decode(buf).unwrap() {
        out.push(match line {
            Line::Message(m) => serde_json::to_value(&*m).unwrap()["id"].to_string(),
            Line::Result(id, _) => serde_json::to_value(&id).unwrap().to_string(),
            Line::Invalid => "invalid".into(),
        });
    }
    out
}

#[test]
fn lines_are_split_bounded_and_skipped_as_rmcp_does() {
    let ok = |id: u32| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[]}}}}"#);
    let mut lines = Lines::default();
    let mut buf = BytesMut::new();
    // Two whole lines and half of a third (CRLF, an empty line between).
    let third = ok(3);
    let (head, tail) = third.split_at(10);
    buf.extend_from_slice(format!("{}\r\n\n{}\n{head}", ok(1), ok(2)).as_bytes());
    assert_eq!(messages(&mut lines, &mut buf), ["1", "2"]);
    buf.extend_from_slice(format!("{tail}\n").as_bytes());
    assert_eq!(messages(&mut lines, &mut buf), ["3"]);
    // Not JSON: skipped. JSON but no message: owed an error.
    buf.extend_from_slice(format!("not json\n{{\"a\":1}}\n{}\n", ok(4)).as_bytes());
    assert_eq!(messages(&mut lines, &mut buf), ["invalid", "4"]);
    // A line over the limit is dropped up to its newline, and the next is read.
    buf.extend_from_slice(&vec![b'x'; MAX_LINE + 2]);
    assert!(messages(&mut lines, &mut buf).is_empty());
    assert!(buf.is_empty(), "the long line is not kept");
    buf.extend_from_slice(format!("still the long line\n{}\n", ok(5)).as_bytes());
    assert_eq!(messages(&mut lines, &mut buf), ["5"]);
}

#[tokio::test]
async fn the_transport_reads_writes_and_answers_a_message_of_no_shape() {
    let (server_out, mut to_gateway) = tokio::io::duplex(1 << 16);
    let (from_gateway, server_in) = tokio::io::duplex(1 << 16);
    let mut t = StdioTransport::new(Box::pin(server_out), Box::pin(server_in));
    let mut server_reads = BufReader::new(from_gateway).lines();

    let ping = ClientJsonRpcMessage::request(
        rmcp::model::ClientRequest::PingRequest(Default::default()),
        RequestId::Number(7),
    );
    t.send(ping).await.unwrap();
    let sent: Value =
        serde_json::from_str(&server_reads.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (sent["id"].clone(), sent["method"].clone()),
        (json!(7), json!("ping"))
    );

    to_gateway
        .write_all(b"{\"a\":1}\n{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n")
        .await
        .unwrap();
    let got = t.receive().await.unwrap();
    assert!(matches!(got, ServerJsonRpcMessage::Response(r) if r.id == RequestId::Number(7)));
    // The line of no shape was answered with Invalid Request, as rmcp answers it.
    let error: Value =
        serde_json::from_str(&server_reads.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], json!(-32600), "{error}");

    // The server's end: nothing more, and a closed transport writes nothing.
    drop(to_gateway);
    assert!(t.receive().await.is_none());
    t.close().await.unwrap();
    assert!(
        t.send(ClientJsonRpcMessage::request(
            rmcp::model::ClientRequest::PingRequest(Default::default()),
            RequestId::Number(8),
        ))
        .await
        .is_err()
    );
    assert!(server_reads.next_line().await.unwrap().is_none());
}

#[tokio::test]
async fn reads_survive_a_framed_reader_split_at_every_byte() {
    // One byte per read: the newline search resumes where it stopped.
    let text = r#"{"jsonrpc":"2.0","id":"x","result":{"content":[{"type":"text","text":"é"}]}}
"#;
    let reader = tokio_test_reader(text.as_bytes());
    let mut framed = FramedRead::new(reader, Lines::default());
    match framed.next().await.unwrap().unwrap() {
        Line::Result(id, raw) => assert_eq!(
            format!(
                "{:?}",
                Some(ServerJsonRpcMessage::response(raw.typed().unwrap(), id))
            ),
            format!("{:?}", rmcp_reads(text.trim_end()))
        ),
        _ => panic!("not kept raw"),
    }
    assert!(framed.next().await.is_none());
}

/// A reader that hands out one byte per read.
fn tokio_test_reader(bytes: &'static [u8]) -> impl tokio::io::AsyncRead + Unpin {
    let chunks = bytes
        .chunks(1)
        .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from_static(c)));
    tokio_util::io::StreamReader::new(futures_util::stream::iter(chunks))
}

/// Prepares and writes a lane request, as `Session::forward` does around registering it.
async fn send(
    lane: &Arc<Lane>,
    request: rmcp::model::ClientRequest,
    meta: rmcp::model::RequestMetaObject,
) -> Result<(LaneCall, tokio::sync::oneshot::Receiver<lane::Answer>), rmcp::ServiceError> {
    let (mut call, answer) = lane.prepare(request, meta)?;
    call.write().await?;
    Ok((call, answer))
}

fn call(name: &str) -> rmcp::model::ClientRequest {
    rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
        rmcp::model::CallToolRequestParams::new(name.to_owned()),
    ))
}

#[tokio::test]
async fn the_lane_writes_requests_and_takes_their_answers_before_rmcp() {
    let (server_out, mut to_gateway) = tokio::io::duplex(1 << 16);
    let (from_gateway, server_in) = tokio::io::duplex(1 << 16);
    let mut t = StdioTransport::new(Box::pin(server_out), Box::pin(server_in));
    let lane = t.lane();
    let mut server_reads = BufReader::new(from_gateway).lines();

    // The request as rmcp would write it: `_meta` merged, a progress token set.
    let mut meta = rmcp::model::RequestMetaObject::new();
    meta.0.insert("vendor/x".into(), json!(1));
    let (sent, answer) = send(&lane, call("echo"), meta).await.unwrap();
    let wire: Value =
        serde_json::from_str(&server_reads.next_line().await.unwrap().unwrap()).unwrap();
    let id = wire["id"].as_i64().unwrap();
    assert!(id >= 1 << 40, "{wire}");
    assert_eq!(wire["method"], "tools/call");
    assert_eq!(wire["params"]["name"], "echo");
    assert_eq!(
        wire["params"]["_meta"],
        json!({"vendor/x": 1, "progressToken": id})
    );
    assert_eq!(sent.id, RequestId::Number(id));

    // Its answer goes to the lane; what follows it, to rmcp's session.
    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                          "params": {"progressToken": 3, "progress": 1}});
    let answer_line = json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}});
    to_gateway
        .write_all(format!("{answer_line}\n{progress}\n").as_bytes())
        .await
        .unwrap();
    let next = t.receive().await.unwrap();
    assert!(
        matches!(next, ServerJsonRpcMessage::Notification(_)),
        "{next:?}"
    );
    match answer.await {
        Ok(Ok(crate::upstream::raw::Reply::Raw(raw))) => {
            assert_eq!(raw.json(), br#"{"content":[]}"#);
            assert!(matches!(raw.typed(), Ok(ServerResult::CallToolResult(_))));
        }
        other => panic!("{other:?}"),
    }
    drop(sent);

    // An error answer; then a request given up on: its late answer is swallowed.
    let (sent, answer) = send(&lane, call("fails"), Default::default())
        .await
        .unwrap();
    let failing = serde_json::from_str::<Value>(&server_reads.next_line().await.unwrap().unwrap())
        .unwrap()["id"]
        .clone();
    let (given_up, _) = send(&lane, call("slow"), Default::default()).await.unwrap();
    let slow = serde_json::from_str::<Value>(&server_reads.next_line().await.unwrap().unwrap())
        .unwrap()["id"]
        .clone();
    drop(given_up);
    let error =
        json!({"jsonrpc": "2.0", "id": failing, "error": {"code": -32000, "message": "no"}});
    let late = json!({"jsonrpc": "2.0", "id": slow, "result": {"content": []}});
    let ping = json!({"jsonrpc": "2.0", "id": 5, "method": "ping"});
    to_gateway
        .write_all(format!("{error}\n{late}\n{ping}\n").as_bytes())
        .await
        .unwrap();
    let next = t.receive().await.unwrap();
    assert!(matches!(next, ServerJsonRpcMessage::Request(_)), "{next:?}");
    match answer.await {
        Ok(Err(rmcp::ServiceError::McpError(e))) => assert_eq!(e.message, "no"),
        other => panic!("{other:?}"),
    }
    drop(sent);

    // The server's stdout ends: a request waiting gets no answer, and a new one is refused.
    let (_waiting, answer) = send(&lane, call("never"), Default::default())
        .await
        .unwrap();
    drop(to_gateway);
    assert!(t.receive().await.is_none());
    assert!(answer.await.is_err());
    assert!(matches!(
        send(&lane, call("after"), Default::default()).await,
        Err(rmcp::ServiceError::TransportClosed)
    ));
}

/// A call the lane leaves to rmcp's encoding (`_meta` in its params) still
/// carries its raw arguments, read into it.
#[tokio::test]
async fn raw_arguments_survive_rmcps_encoding() {
    let (server_out, _to_gateway) = tokio::io::duplex(1 << 16);
    let (from_gateway, server_in) = tokio::io::duplex(1 << 16);
    let t = StdioTransport::new(Box::pin(server_out), Box::pin(server_in));
    let lane = t.lane();
    let mut server_reads = BufReader::new(from_gateway).lines();
    let rmcp::model::ClientRequest::CallToolRequest(mut call) = call("echo") else {
        unreachable!()
    };
    call.params.meta = Some(rmcp::model::RequestMetaObject::new());
    let raw: Box<serde_json::value::RawValue> = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
    call.extensions
        .insert(crate::upstream::raw::RawArguments::object(&raw).unwrap());
    let request = rmcp::model::ClientRequest::CallToolRequest(call);
    let (_sent, _answer) = send(&lane, request, Default::default()).await.unwrap();
    let wire: Value =
        serde_json::from_str(&server_reads.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        wire["params"]["arguments"],
        json!({"a": 1, "b": 2}),
        "{wire}"
    );
}
