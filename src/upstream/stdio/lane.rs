//! Requests the gateway writes to a server's stdin itself, and their answers
//! taken off its stdout before rmcp's session sees them.
//!
//! A request through rmcp's client session is handed to the session's task,
//! which writes it, and its answer is handed back the same way: one more task
//! wake-up per call (on 2 cores, another thread's). Here the calling task
//! writes the request, and the transport, reading the answer, gives it to the
//! caller directly. The message on the wire is the one rmcp would write: the
//! request with `_meta` and a progress token, an id of the lane's own range.
//!
//! Used only where rmcp adds nothing to a request: servers that negotiated a
//! revision before 2026-07-28 (from that one rmcp adds per-request client
//! metadata, and ties a server's questions to the requests it knows of).
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::ServiceError;
use rmcp::model::{
    CallToolRequest, CancelledNotificationParam, ClientJsonRpcMessage, ClientNotification,
    ClientRequest, GetMeta, InputResponses, JsonObject, MetaObject, Notification, NumberOrString,
    ProgressToken, RequestId, RequestMetaObject, ServerJsonRpcMessage,
};
use rmcp::service::RoleClient;
use rmcp::transport::DynamicTransportError;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{Outgoing, Stdin, StdioTransport};
use crate::upstream::raw::{RawArguments, RawResult, Reply, typed_arguments};

/// The lane's request ids and progress tokens start here: rmcp numbers its
/// own from 0, and would need 2^40 requests in one session to get here.
const FIRST_ID: i64 = 1 << 40;

/// An answer as rmcp's request handles give it, or its result as it came.
pub type Answer = Result<Reply, ServiceError>;

type Waiting = HashMap<RequestId, oneshot::Sender<Answer>>;

/// The lane of one stdio session.
pub struct Lane {
    stdin: Arc<Stdin>,
    next: AtomicI64,
    /// Requests not answered yet; `None` once the server's stdout has ended
    /// (no answer can come). Bounded by the calls in flight: each
    /// [`LaneCall`] takes its entry away when it is dropped.
    waiting: Mutex<Option<Waiting>>,
}

/// A request on the lane, written once its caller is ready for what the
/// server sends on its behalf; dropping it stops waiting for the answer.
pub struct LaneCall {
    pub id: RequestId,
    pub progress_token: ProgressToken,
    unsent: Option<Outgoing>,
    lane: Arc<Lane>,
}

impl LaneCall {
    /// Writes the request (the first time only).
    pub async fn write(&mut self) -> Result<(), ServiceError> {
        match self.unsent.take() {
            Some(line) => self.lane.write(line).await,
            None => Ok(()),
        }
    }

    /// Tells the server the request is no longer wanted.
    pub async fn cancel(&self, cancel: CancelledNotificationParam) -> Result<(), ServiceError> {
        let n = ClientNotification::CancelledNotification(Notification::new(cancel));
        let n = ClientJsonRpcMessage::notification(n);
        self.lane.write(n.into()).await
    }
}

impl Drop for LaneCall {
    fn drop(&mut self) {
        if let Some(waiting) = self.lane.waiting().as_mut() {
            waiting.remove(&self.id);
        }
    }
}

impl Lane {
    pub(super) fn new(stdin: Arc<Stdin>) -> Self {
        Lane {
            stdin,
            next: AtomicI64::new(FIRST_ID),
            waiting: Mutex::new(Some(Waiting::new())),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Option<Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `request` with `meta` merged into its `_meta` and a progress token of
    /// the lane's, as rmcp's `send_request_with_option` makes it; its answer
    /// will come on the receiver once [`LaneCall::write`] has sent it.
    pub fn prepare(
        self: &Arc<Self>,
        mut request: ClientRequest,
        meta: RequestMetaObject,
    ) -> Result<(LaneCall, oneshot::Receiver<Answer>), ServiceError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = RequestId::Number(n);
        let progress_token = ProgressToken(NumberOrString::Number(n));
        request.get_meta_mut().extend(meta);
        request
            .get_meta_mut()
            .set_progress_token(progress_token.clone());
        let unsent = match &request {
            ClientRequest::CallToolRequest(call) => encode_call(call, n).map(Outgoing::Line),
            _ => None,
        };
        let unsent = match unsent {
            Some(line) => line,
            None => {
                typed_arguments(&mut request).map_err(ServiceError::McpError)?;
                ClientJsonRpcMessage::request(request, id.clone()).into()
            }
        };
        let (tx, answer) = oneshot::channel();
        self.waiting()
            .as_mut()
            .ok_or(ServiceError::TransportClosed)?
            .insert(id.clone(), tx);
        let call = LaneCall {
            unsent: Some(unsent),
            id,
            progress_token,
            lane: self.clone(),
        };
        Ok((call, answer))
    }

    async fn write(&self, line: Outgoing) -> Result<(), ServiceError> {
        self.stdin.send(line).await.map_err(|e| {
            ServiceError::TransportSend(DynamicTransportError::new::<StdioTransport, RoleClient>(e))
        })
    }

    /// Gives `message` to the lane request it answers; gives it back if it
    /// answers none of the lane's.
    pub(super) fn answer(&self, message: ServerJsonRpcMessage) -> Option<ServerJsonRpcMessage> {
        let (id, answer) = match message {
            ServerJsonRpcMessage::Response(r) if is_ours(&r.id) => {
                (r.id, Ok(Reply::Typed(Box::new(r.result))))
            }
            ServerJsonRpcMessage::Error(e) if e.id.as_ref().is_some_and(is_ours) => (
                e.id.expect("checked above"),
                Err(ServiceError::McpError(e.error)),
            ),
            other => return Some(other),
        };
        self.deliver(id, answer);
        None
    }

    /// Gives result `raw` of response `id` to the lane request it answers,
    /// unread; gives both back if it answers none of the lane's.
    pub(super) fn answer_raw(
        &self,
        id: RequestId,
        raw: RawResult,
    ) -> Option<(RequestId, RawResult)> {
        if !is_ours(&id) {
            return Some((id, raw));
        }
        self.deliver(id, Ok(Reply::Raw(raw)));
        None
    }

    fn deliver(&self, id: RequestId, answer: Answer) {
        // An answer nobody waits for any more (the call gave up) is dropped.
        if let Some(tx) = self.waiting().as_mut().and_then(|w| w.remove(&id)) {
            let _ = tx.send(answer);
        }
    }

    /// The server's stdout ended: every request waiting gets no answer, and
    /// new ones are refused.
    pub(super) fn close(&self) {
        self.waiting().take();
    }
}

/// The line rmcp's codec writes for `call` under id `id`, in one pass: rmcp
/// turns a request's params into a `serde_json::Value` first (the
/// arguments copied) to merge `_meta` into them. Only for a call whose
/// `_meta` is all in its typed extension, as the lane's are (rmcp's reading
/// and [`Lane::prepare`] put it there); `None` for any other.
fn encode_call(call: &CallToolRequest, id: i64) -> Option<Vec<u8>> {
    if call.params.meta.is_some() || call.extensions.get::<MetaObject>().is_some() {
        return None;
    }
    #[derive(Serialize)]
    struct Wire<'a> {
        jsonrpc: &'static str,
        id: i64,
        method: &'static str,
        params: Params<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Params<'a> {
        #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
        meta: Option<&'a JsonObject>,
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        arguments: Option<Arguments<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        input_responses: Option<&'a InputResponses>,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_state: Option<&'a str>,
    }
    let p = &call.params;
    let wire = Wire {
        jsonrpc: "2.0",
        id,
        method: "tools/call",
        params: Params {
            meta: call.extensions.get::<RequestMetaObject>().map(|m| &m.0.0),
            name: &p.name,
            arguments: match call.extensions.get::<RawArguments>() {
                Some(raw) => Some(Arguments::Raw(raw.json())),
                None => p.arguments.as_ref().map(Arguments::Typed),
            },
            input_responses: p.input_responses.as_ref(),
            request_state: p.request_state.as_deref(),
        },
    };
    let mut line = serde_json::to_vec(&wire).ok()?;
    line.push(b'\n');
    Some(line)
}

/// A call's arguments: read, or as the client wrote them.
#[derive(Serialize)]
#[serde(untagged)]
enum Arguments<'a> {
    Typed(&'a JsonObject),
    Raw(&'a RawValue),
}

fn is_ours(id: &RequestId) -> bool {
    matches!(id, RequestId::Number(n) if *n >= FIRST_ID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::CallToolRequestParams;
    use serde_json::{Value, json};

    fn calls() -> Vec<CallToolRequest> {
        let args =
            json!({"text": "x\n\"q\"", "n": 1.5, "big": u64::MAX, "l": [null, true, {"k": -3}]});
        let mut all = vec![];
        for (arguments, meta, mrtr) in [
            (None, None, false),
            (Some(args.clone()), Some(json!({"progressToken": 7})), false),
            (Some(json!({})), Some(json!({})), true),
            (
                Some(args),
                Some(json!({"progressToken": "t", "vendor/x": {"a": [1]}})),
                true,
            ),
        ] {
            let mut params = CallToolRequestParams::new("srv__tool");
            params.arguments = arguments.map(|a| a.as_object().unwrap().clone());
            if mrtr {
                params.request_state = Some("opaque".into());
                params.input_responses =
                    serde_json::from_value(json!({"r1": {"action": "accept"}})).unwrap();
            }
            let mut call = CallToolRequest::new(params);
            if let Some(Value::Object(meta)) = meta {
                call.extensions.insert(RequestMetaObject::from(meta));
            }
            all.push(call);
        }
        all
    }

    /// The lane's line is the one rmcp's codec writes (compared as JSON:
    /// rmcp orders the params' keys, serde's derive does not).
    #[test]
    fn a_call_is_encoded_as_rmcp_encodes_it() {
        for call in calls() {
            let line = encode_call(&call, 1 << 40).expect("a plain call");
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            let ours: Value = serde_json::from_slice(&line).unwrap();
            let message = ClientJsonRpcMessage::request(
                ClientRequest::CallToolRequest(call),
                RequestId::Number(1 << 40),
            );
            let rmcp: Value = serde_json::to_value(&message).unwrap();
            assert_eq!(ours, rmcp);
        }
    }

    /// Raw arguments are written as the client wrote them, in a line that
    /// is otherwise rmcp's; read into the call, they give rmcp's own line.
    #[test]
    fn raw_arguments_are_written_as_they_came() {
        let args = r#"{"zeta":1.50,"alpha":{"b":1e2},"s":"\u00e9"}"#;
        let raw: Box<RawValue> = serde_json::from_str(args).unwrap();
        for mut call in calls() {
            call.params.arguments = None;
            call.extensions.insert(RawArguments::object(&raw).unwrap());
            let line = encode_call(&call, 1 << 40).expect("a plain call");
            let text = String::from_utf8(line.clone()).unwrap();
            assert!(text.contains(&format!(r#""arguments":{args}"#)), "{text}");
            let mut request = ClientRequest::CallToolRequest(call);
            typed_arguments(&mut request).unwrap();
            let message = ClientJsonRpcMessage::request(request, RequestId::Number(1 << 40));
            let ours: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(ours, serde_json::to_value(&message).unwrap());
        }
    }

    /// `_meta` anywhere else than the typed extension is left to rmcp's merge.
    #[test]
    fn a_call_with_meta_elsewhere_is_left_to_rmcp() {
        let mut in_params = calls().remove(1);
        in_params.params.meta = Some(RequestMetaObject::new());
        assert!(encode_call(&in_params, 1).is_none());
        let mut legacy = calls().remove(1);
        legacy.extensions.insert(MetaObject::default());
        assert!(encode_call(&legacy, 1).is_none());
    }
}
