use super::*;
use serde_json::{Value, json};

fn read(line: &str) -> Option<(RequestId, RawResult)> {
    RawResult::read(Bytes::copy_from_slice(line.as_bytes()))
}

#[test]
fn a_result_is_kept_byte_for_byte() {
    let result = r#"{ "content" : [{"type":"text","text":"\u00e9\n"}], "zz":1,"isError":false }"#;
    for id in ["7", r#""s-7""#] {
        let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
        let (read_id, raw) = read(&line).expect("a success response");
        assert_eq!(serde_json::to_string(&read_id).unwrap(), id);
        assert_eq!(raw.json(), result.as_bytes());
    }
    // Members in any order.
    let (_, raw) = read(r#"{"result":[1,2],"id":1,"jsonrpc":"2.0"}"#).unwrap();
    assert_eq!(raw.json(), b"[1,2]");
}

#[test]
fn only_a_plain_success_response_is_read() {
    for line in [
        r#"{"jsonrpc":"2.0","id":1,"result":{},"extra":true}"#,
        r#"{"jsonrpc":"1.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"a":}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
    ] {
        assert!(read(line).is_none(), "{line}");
    }
}

fn shape(result: Value) -> Option<ToolShape> {
    let line = json!({"jsonrpc": "2.0", "id": 1, "result": result}).to_string();
    read(&line).unwrap().1.tool_shape()
}

#[test]
fn a_tool_shape_is_a_final_tool_result_of_any_fields() {
    let ok = Some(ToolShape { is_error: false });
    let error = Some(ToolShape { is_error: true });
    assert_eq!(shape(json!({"content": []})), ok);
    assert_eq!(shape(json!({"structuredContent": null})), ok);
    assert_eq!(shape(json!({"isError": false})), ok);
    assert_eq!(shape(json!({"content": [], "isError": true})), error);
    assert_eq!(
        shape(json!({"content": [], "vendor": {"x": 1}, "_meta": {}})),
        ok
    );
    // Another kind of result, or none a tool gives.
    assert_eq!(
        shape(json!({"content": [], "resultType": "complete"})),
        None
    );
    assert_eq!(shape(json!({"content": [], "task": {"taskId": "t"}})), None);
    assert_eq!(shape(json!({"tools": []})), None);
    assert_eq!(shape(json!({"_meta": {}})), None);
    assert_eq!(shape(json!({"content": [], "isError": "yes"})), None);
    assert_eq!(shape(json!([{"content": []}])), None);
}

/// A plain tool result with only `CallToolResult`'s fields is, as JSON, what
/// rmcp would have written after reading it (for a client before 2026-07-28,
/// which gets no `resultType`): passing it on changes nothing a client sees.
#[test]
fn a_known_result_passed_on_is_what_rmcp_would_write() {
    let contents = [
        json!([]),
        json!([{"type": "text", "text": "a", "annotations": {"audience": ["user"], "priority": 0.5}}]),
        json!([{"type": "image", "data": "aGk=", "mimeType": "image/png", "_meta": {"k": [1]}}]),
        json!([{"type": "resource", "resource": {"uri": "file:///a", "text": "x", "mimeType": "text/plain"}}]),
        json!([{"type": "resource_link", "uri": "file:///b", "name": "b"}]),
    ];
    let extras = [
        json!({}),
        json!({"structuredContent": {"a": [1, 2.5, null]}, "isError": false}),
        json!({"structuredContent": null, "isError": true, "_meta": {"x": "y"}}),
    ];
    for content in &contents {
        for extra in &extras {
            let mut result = extra.clone();
            result["content"] = content.clone();
            let line = json!({"jsonrpc": "2.0", "id": 1, "result": result}).to_string();
            let (_, raw) = read(&line).unwrap();
            assert!(raw.tool_shape().is_some());
            let passed: Value = serde_json::from_slice(raw.json()).unwrap();
            let typed = serde_json::to_value(raw.typed().unwrap()).unwrap();
            assert_eq!(passed, typed, "{line}");
        }
    }
}

/// For an event stream: every member stays, the ones rmcp does not model too
/// (read as rmcp reads it, `x-vendor` is lost).
#[test]
fn a_result_kept_for_a_message_has_every_member() {
    let result = json!({"content": [{"type": "text", "text": "a", "x-part": 1}],
        "x-vendor": {"kept": [1, "two", null]}, "isError": false});
    let line = json!({"jsonrpc": "2.0", "id": 1, "result": result}).to_string();
    let (id, raw) = read(&line).unwrap();
    let message = rmcp::model::ServerJsonRpcMessage::response(raw.kept().unwrap(), id);
    let written: Value = serde_json::to_value(&message).unwrap();
    assert_eq!(written, serde_json::from_str::<Value>(&line).unwrap());
    let typed = serde_json::to_value(raw.typed().unwrap()).unwrap();
    assert!(typed.get("x-vendor").is_none(), "{typed}");
}

#[test]
fn a_result_prints_as_its_size_only() {
    let result = r#"{"content":[{"type":"text","text":"secret"}]}"#;
    let (_, raw) = read(&format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#)).unwrap();
    assert_eq!(
        format!("{raw:?}"),
        format!("RawResult({} bytes)", result.len())
    );
}
