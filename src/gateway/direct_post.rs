//! The `tools/call` POSTs on an open `/mcp` session that the front hands to
//! the [`super::shortcut::Shortcut`] itself, before rmcp parses them.
//!
//! rmcp reads a body as the untagged `ClientJsonRpcMessage`: for a
//! `tools/call` it tries a dozen request types first, each failure a
//! formatted error (callgrind: a sixth of the gateway's instructions per
//! call). A body read as the one type it names costs a fraction of that.
//!
//! Only a request plainly inside rmcp's own checks is taken here: both media
//! types accepted (no parameters to weigh), a JSON content type, no protocol
//! version or a known one before 2026-07-28, none in the request's `_meta`.
//! Host and Origin were checked by the gateway's guard, with the same policy
//! rmcp is given; the session is one the shortcut knows. Anything else goes
//! to rmcp as it came, and gets rmcp's answer.
use axum::http::{HeaderMap, header};
use rmcp::model::{
    CallToolRequest, CallToolRequestMethod, CallToolRequestParams, ClientRequest, GetMeta,
    InputResponses, JsonObject, JsonRpcRequest, JsonRpcVersion2_0, ProtocolVersion, RequestId,
    RequestMetaObject,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::wire::VERSION_HEADER;
use crate::upstream::raw::RawArguments;

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// The `tools/call` request in `body`, if `headers` and `body` are plainly
/// what rmcp would take on an open session.
pub fn call_tool(headers: &HeaderMap, body: &[u8]) -> Option<JsonRpcRequest<ClientRequest>> {
    if !accepts_both(headers) || !json_content(headers) || !session_version(headers) {
        return None;
    }
    let call: Wire = serde_json::from_slice(body).ok()?;
    let request = ClientRequest::CallToolRequest(call.params.into_request()?);
    if request.get_meta().protocol_version().is_some() {
        return None;
    }
    Some(JsonRpcRequest {
        jsonrpc: call.jsonrpc,
        id: call.id,
        request,
    })
}

/// A `tools/call` as it comes, read in one pass: rmcp's `Request` reads its
/// `params` through a flattened struct, which buffers every field first.
/// Unknown fields are ignored at both levels, as rmcp's read ignores them.
/// `arguments` are kept as the client wrote them ([`RawArguments`]).
#[derive(Deserialize)]
struct Wire<'a> {
    jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    #[serde(rename = "method")]
    _method: CallToolRequestMethod,
    #[serde(borrow)]
    params: WireParams<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireParams<'a> {
    #[serde(rename = "_meta")]
    meta: Option<JsonObject>,
    name: String,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
    input_responses: Option<InputResponses>,
    request_state: Option<String>,
}

impl WireParams<'_> {
    /// The request rmcp makes of these params (`_meta` in its extensions),
    /// but with the arguments in the extensions as they came; `None` if they
    /// are not an object (rmcp's read refuses that).
    fn into_request(self) -> Option<CallToolRequest> {
        let arguments = match self.arguments {
            Some(json) => Some(RawArguments::object(json)?),
            None => None,
        };
        let mut params = CallToolRequestParams::new(self.name);
        params.input_responses = self.input_responses;
        params.request_state = self.request_state;
        let mut request = CallToolRequest::new(params);
        if let Some(meta) = self.meta {
            request.extensions.insert(RequestMetaObject::from(meta));
        }
        if let Some(arguments) = arguments {
            request.extensions.insert(arguments);
        }
        Some(request)
    }
}

/// `Accept` lists `application/json` and `text/event-stream`, and nothing
/// with parameters (a weight is rmcp's to read).
fn accepts_both(headers: &HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for entry in value.split(',').map(str::trim) {
            if entry.contains([';', '"']) {
                return false;
            }
            json |= entry.eq_ignore_ascii_case(JSON);
            sse |= entry.eq_ignore_ascii_case(EVENT_STREAM);
        }
    }
    json && sse
}

fn json_content(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split_once(';').map_or(v, |(essence, _)| essence);
            essence.trim().eq_ignore_ascii_case(JSON)
        })
}

/// No protocol version header (2025-03-26), or a known one of the
/// revisions with sessions.
fn session_version(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(VERSION_HEADER) else {
        return true;
    };
    value.to_str().is_ok_and(|v| {
        v < ProtocolVersion::V_2026_07_28.as_str()
            && ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .any(|k| k.as_str() == v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use rmcp::model::ClientJsonRpcMessage;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn plain() -> HeaderMap {
        headers(&[
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2025-06-18"),
        ])
    }

    const CALLS: [&str; 8] = [
        r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"t","_meta":{}}}"#,
        r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"t","_meta":null,"arguments":null}}"#,
        r#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"t\u0041\n","arguments":{"a":"\"q\""}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"s__t","arguments":{"n":1.5,"big":18446744073709551615,"neg":-3,"deep":{"l":[1,null,true,"s\u00e9"]}},"_meta":{"progressToken":"p1","x/y":{"k":1}}}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":5}},"unknown":{"kept":1}}"#,
        r#"{"id":9,"params":{"name":"t","arguments":{},"task":{"ttl":1000}},"method":"tools/call","jsonrpc":"2.0"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","inputResponses":{"r":{"action":"accept"}},"requestState":"opaque"}}"#,
    ];

    /// A request taken here is the one rmcp would have read, once its raw
    /// arguments are read into it.
    #[test]
    fn reads_a_call_as_rmcps_parse_does() {
        for body in CALLS {
            let mut ours = call_tool(&plain(), body.as_bytes()).expect(body);
            crate::upstream::raw::typed_arguments(&mut ours.request).unwrap();
            let rmcp: ClientJsonRpcMessage = serde_json::from_str(body).unwrap();
            let ours = ClientJsonRpcMessage::Request(ours);
            assert_eq!(format!("{ours:?}"), format!("{rmcp:?}"), "{body}");
            let meta = |m: &ClientJsonRpcMessage| match m {
                ClientJsonRpcMessage::Request(r) => format!("{:?}", r.request.get_meta()),
                _ => unreachable!(),
            };
            assert_eq!(meta(&ours), meta(&rmcp), "{body}");
            assert_eq!(
                serde_json::to_value(&ours).unwrap(),
                serde_json::to_value(&rmcp).unwrap(),
                "{body}"
            );
        }
    }

    /// The arguments are kept as the client wrote them: key order, number
    /// forms, escapes (a `serde_json` map sorts keys and reprints numbers).
    #[test]
    fn keeps_the_arguments_as_written() {
        let args = r#"{"zeta":1.50,"alpha":{"b":1e2,"a":"\u00e9"},"mid":[ 1 , 2 ]}"#;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{args}}}}}"#
        );
        let ours = call_tool(&plain(), body.as_bytes()).expect("a plain call");
        let ClientRequest::CallToolRequest(call) = &ours.request else {
            panic!("a tools/call")
        };
        assert!(call.params.arguments.is_none(), "not read into a map");
        let raw = call.extensions.get::<RawArguments>().expect("kept raw");
        assert_eq!(raw.json().get(), args);
    }

    #[test]
    fn leaves_to_rmcp_what_is_not_plainly_a_call_it_takes() {
        let call = CALLS[0].as_bytes();
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"t"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":"x"}}"#,
            "not json",
        ] {
            assert!(call_tool(&plain(), body.as_bytes()).is_none(), "{body}");
        }
        for (name, value) in [
            ("accept", "application/json"),
            ("accept", "text/event-stream"),
            ("accept", "application/json;q=0, text/event-stream"),
            ("content-type", "text/plain"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-protocol-version", "1999-01-01"),
        ] {
            let mut h = plain();
            h.insert(name, HeaderValue::from_static(value));
            assert!(call_tool(&h, call).is_none(), "{name}: {value}");
        }
        let mut h = plain();
        h.remove("content-type");
        assert!(call_tool(&h, call).is_none(), "no content type");
        let mut h = plain();
        h.remove("mcp-protocol-version");
        assert!(
            call_tool(&h, call).is_some(),
            "no version header: 2025-03-26"
        );
        let h = headers(&[
            ("accept", "text/event-stream"),
            ("accept", "APPLICATION/JSON"),
            ("content-type", "application/json; charset=utf-8"),
        ]);
        assert!(call_tool(&h, call).is_some(), "two Accept headers, charset");
    }
}
