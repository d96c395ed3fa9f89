//! A server's answer as it wrote it: the bytes of a JSON-RPC response's
//! `result`, kept unparsed so a relay can pass them on unchanged (fields the
//! gateway does not know included) and read only what it needs.
//!
//! rmcp reads every result as the untagged `ServerResult` union and writes it
//! again field by field: a tool's result loses the fields rmcp does not model,
//! and a `tools/call` answer costs a typed read and a typed write on the way
//! through (about 15K instructions per call, BENCHMARKS.md "Relay, seventh
//! pass"). [`RawResult::typed`] gives rmcp's reading where a typed result is
//! needed after all.
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientRequest, CustomResult, RequestId, ServerResult,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// The `result` of a success response, as its server wrote it.
#[derive(Clone)]
pub struct RawResult {
    line: Bytes,
    result: Range<usize>,
}

impl std::fmt::Debug for RawResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Results carry what tools return: their bytes are not logged.
        write!(f, "RawResult({} bytes)", self.result.len())
    }
}

/// What a relay needs to know of a tool's result to pass it on unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolShape {
    pub is_error: bool,
}

impl RawResult {
    /// Reads `line` (one JSON text) as a success response with nothing but
    /// `jsonrpc: "2.0"`, `id` and `result`; `None` for anything else.
    pub fn read(line: Bytes) -> Option<(RequestId, RawResult)> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Envelope<'a> {
            #[serde(borrow)]
            jsonrpc: &'a str,
            id: RequestId,
            #[serde(borrow)]
            result: &'a RawValue,
        }
        let envelope: Envelope = serde_json::from_slice(&line).ok()?;
        if envelope.jsonrpc != "2.0" {
            return None;
        }
        let json = envelope.result.get();
        // `json` borrows from `line` (a raw value is never unescaped): where
        // it starts there, by address.
        let start = (json.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
        let result = start..start + json.len();
        line.get(result.clone())?;
        let id = envelope.id;
        Some((id, RawResult { line, result }))
    }

    /// The result's JSON text, as the server wrote it.
    pub fn json(&self) -> &[u8] {
        &self.line[self.result.clone()]
    }

    /// The result read as rmcp reads it (a tool's result with only
    /// `CallToolResult`'s fields straight into one: none of the union's other
    /// types accepts such an object, and it is 30 µs quicker in place).
    pub fn typed(&self) -> Result<ServerResult, serde_json::Error> {
        let json = self.json();
        match plain_tool_result(json) {
            Some(result) => Ok(ServerResult::CallToolResult(result)),
            None => serde_json::from_slice(json),
        }
    }

    /// The result with every member it has, for a message (an event stream
    /// carries messages): rmcp's catch-all `CustomResult`, which it writes
    /// back as it was read. Members stay; their order and number forms are
    /// `serde_json`'s (a map sorts its keys).
    pub fn kept(&self) -> Result<ServerResult, serde_json::Error> {
        serde_json::from_slice(self.json()).map(|v| ServerResult::CustomResult(CustomResult(v)))
    }

    /// Whether this is a tool's final result a client on a revision before
    /// 2026-07-28 takes as it is (an object with `content`,
    /// `structuredContent` or a boolean `isError`, and neither a task nor a
    /// `resultType`), and whether it reports an error; `None` if it is not.
    pub fn tool_shape(&self) -> Option<ToolShape> {
        // Whether a member is there at all (`null` included).
        fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
            IgnoredAny::deserialize(d).map(|_| true)
        }
        #[derive(Deserialize)]
        struct Shape {
            #[serde(default, deserialize_with = "present")]
            content: bool,
            #[serde(default, rename = "structuredContent", deserialize_with = "present")]
            structured_content: bool,
            #[serde(rename = "isError")]
            is_error: Option<bool>,
            #[serde(default, rename = "resultType", deserialize_with = "present")]
            result_type: bool,
            #[serde(default, deserialize_with = "present")]
            task: bool,
        }
        let shape: Shape = serde_json::from_slice(self.json()).ok()?;
        let known = shape.content || shape.structured_content || shape.is_error.is_some();
        let other_kind = shape.result_type || shape.task;
        (known && !other_kind).then_some(ToolShape {
            is_error: shape.is_error == Some(true),
        })
    }
}

/// `json` read as a `CallToolResult` if it has only that type's fields.
fn plain_tool_result(json: &[u8]) -> Option<CallToolResult> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        #[serde(rename = "content")]
        _content: IgnoredAny,
        #[serde(rename = "structuredContent")]
        _structured_content: Option<IgnoredAny>,
        #[serde(rename = "isError")]
        _is_error: Option<IgnoredAny>,
        #[serde(rename = "_meta")]
        _meta: Option<IgnoredAny>,
    }
    serde_json::from_slice::<Shape>(json).ok()?;
    serde_json::from_slice(json).ok()
}

/// An upstream's answer to a forwarded request: read (boxed: a read result
/// is large, and rarer on the hot path than a raw one), or as it came.
#[derive(Debug, Clone)]
pub enum Reply {
    Typed(Box<ServerResult>),
    Raw(RawResult),
}

impl Reply {
    /// The answer as rmcp reads it.
    pub fn typed(self) -> Result<ServerResult, serde_json::Error> {
        match self {
            Reply::Typed(result) => Ok(*result),
            Reply::Raw(raw) => raw.typed(),
        }
    }
}

/// A `tools/call`'s `arguments` as the client wrote them (an object), in the
/// request's extensions: the lane writes them on unchanged (key order and
/// number forms kept, which a `serde_json` map does not keep), and
/// [`typed_arguments`] reads them where a typed request is needed.
#[derive(Clone)]
pub struct RawArguments(Arc<RawValue>);

impl std::fmt::Debug for RawArguments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Arguments may carry anything a user typed: their bytes are not logged.
        write!(f, "RawArguments({} bytes)", self.0.get().len())
    }
}

impl RawArguments {
    /// `json` kept as it is, if it is an object; `None` for any other value.
    pub fn object(json: &RawValue) -> Option<Self> {
        let text = json.get();
        if !text.starts_with('{') {
            return None;
        }
        let owned = RawValue::from_string(text.to_owned()).ok()?;
        Some(RawArguments(Arc::from(owned)))
    }

    pub fn json(&self) -> &RawValue {
        &self.0
    }

    /// The arguments read into `params` as a typed map; the error is the
    /// client's (invalid params), as rmcp's own read would have refused them.
    pub fn read_into(&self, params: &mut CallToolRequestParams) -> Result<(), McpError> {
        let arguments = serde_json::from_str(self.0.get()).map_err(|e| {
            McpError::invalid_params(format!("the arguments could not be read: {e}"), None)
        })?;
        params.arguments = Some(arguments);
        Ok(())
    }
}

/// Moves a call's raw arguments (if any) into its typed params, for a path
/// that writes the request with rmcp's encoding.
pub fn typed_arguments(request: &mut ClientRequest) -> Result<(), McpError> {
    let ClientRequest::CallToolRequest(call) = request else {
        return Ok(());
    };
    match call.extensions.remove::<RawArguments>() {
        Some(raw) => raw.read_into(&mut call.params),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
