//! A Kubernetes API server played by the test: kube's client over a
//! `tower-test` mock service. The test takes each request in turn, checks it
//! exactly, and answers with documents shaped as the API reference shows
//! them (objects, lists, `Status` errors, watch event streams).
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower_test::mock::{self, Handle, SendResponse};

pub type MockBody = UnsyncBoxBody<Bytes, Infallible>;

pub const NAMESPACE: &str = "fleet-ns";
pub const PODS: &str = "/api/v1/namespaces/fleet-ns/pods";
/// Fleet `f`'s Pods: the watch and its lists select by this label.
const SELECTOR: &str = "io.mcp-fleet.fleet=f";

/// The watcher's list (client-go's page size).
pub const LIST: [(&str, &str); 2] = [("labelSelector", SELECTOR), ("limit", "500")];

/// The watch that follows a list at `rv`, answered with an event stream.
pub async fn expect_watch(api: &mut ApiServer, rv: &str) -> WatchStream {
    let q = [
        ("allowWatchBookmarks", "true"),
        ("labelSelector", SELECTOR),
        ("resourceVersion", rv),
        ("timeoutSeconds", "290"),
        ("watch", "true"),
    ];
    api.expect(Method::GET, PODS, &q).await.stream()
}

/// A client whose every request the returned server answers.
pub fn client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<MockBody>>();
    (Client::new(service, NAMESPACE), ApiServer { handle })
}

pub struct ApiServer {
    handle: Handle<Request<Body>, Response<MockBody>>,
}

/// One request, as the API server sees it.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub headers: http::HeaderMap,
    /// The JSON body (`Null` when there is none).
    pub body: Value,
    /// The raw body as text, to search for what must not be there.
    pub raw: String,
    respond: SendResponse<Response<MockBody>>,
}

impl ApiServer {
    /// The next request the client makes (the test fails after 10 s).
    pub async fn next(&mut self) -> Call {
        let (req, respond) =
            tokio::time::timeout(Duration::from_secs(10), self.handle.next_request())
                .await
                .expect("the client made no further request within 10 s")
                .expect("the client is gone");
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let query = form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
        Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            content_type: (parts.headers.get(http::header::CONTENT_TYPE))
                .map(|v| v.to_str().unwrap().to_string()),
            headers: parts.headers.clone(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            raw: String::from_utf8_lossy(&bytes).into_owned(),
            respond,
        }
    }

    /// The next request, which must be `method path` with exactly `query`.
    pub async fn expect(&mut self, method: Method, path: &str, query: &[(&str, &str)]) -> Call {
        let call = self.next().await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "request"
        );
        let want: BTreeMap<String, String> = (query.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(call.query, want, "query of {method} {path}");
        call
    }
}

impl Call {
    /// Answers a create: 201 with the object as stored.
    pub fn created(self, uid: &str, resource_version: &str) {
        let object = stored(self.body.clone(), uid, resource_version);
        self.reply(201, object);
    }

    pub fn reply(self, code: u16, body: Value) {
        let full = Full::new(Bytes::from(body.to_string())).boxed_unsync();
        self.respond.send_response(
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(full)
                .unwrap(),
        );
    }

    /// Answers a watch: events are sent on the returned stream, one JSON
    /// document a line, as the API server streams them.
    pub fn stream(self) -> WatchStream {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            let bytes = rx.recv().await?;
            Some((Ok::<_, Infallible>(Frame::data(bytes)), rx))
        })
        .boxed();
        let body = StreamBody::new(frames).boxed_unsync();
        self.respond.send_response(
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(body)
                .unwrap(),
        );
        WatchStream(tx)
    }
}

pub struct WatchStream(mpsc::UnboundedSender<Bytes>);

impl WatchStream {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    pub fn send(&self, kind: &str, object: Value) {
        let line = format!("{}\n", json!({ "type": kind, "object": object }));
        self.0.send(Bytes::from(line)).expect("watch closed");
    }
}

/// A `metav1.Status` failure, as the API server answers errors.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

/// A `PodList` at `resource_version`.
pub fn pod_list(resource_version: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": "PodList", "apiVersion": "v1",
        "metadata": { "resourceVersion": resource_version },
        "items": items
    })
}

/// What an object looks like once the API server stored it: with a uid, a
/// resource version and a creation time.
pub fn stored(mut object: Value, uid: &str, resource_version: &str) -> Value {
    let meta = object["metadata"].as_object_mut().expect("metadata");
    meta.insert("namespace".into(), json!(NAMESPACE));
    meta.insert("uid".into(), json!(uid));
    meta.insert("resourceVersion".into(), json!(resource_version));
    meta.insert("creationTimestamp".into(), json!("2026-11-23T10:00:00Z"));
    object
}

/// Pod `name` of `server` (spec hash `hash`) with kubelet's status for its
/// one container: `state` is the container's `state` object, e.g.
/// `{"running": {"startedAt": ...}}` or `{"waiting": {"reason": ...}}`.
pub fn pod(name: &str, server: &str, hash: &str, rv: &str, phase: &str, state: Value) -> Value {
    let restarts = state["restartCount"].as_i64().unwrap_or(0);
    let mut state = state;
    let last = state
        .as_object_mut()
        .and_then(|s| {
            s.remove("restartCount");
            s.remove("lastState")
        })
        .unwrap_or(json!({}));
    stored(
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {
                    "io.mcp-fleet.fleet": "f", "io.mcp-fleet.server": server,
                    "io.mcp-fleet.spec-hash": hash, "io.mcp-fleet.instance": name
                },
                "annotations": { "io.mcp-fleet.server": server }
            },
            "spec": { "containers": [{ "name": "server", "image": "img", "stdin": true }] },
            "status": {
                "phase": phase,
                "conditions": [{ "type": "PodScheduled", "status": "True" }],
                "containerStatuses": [{
                    "name": "server", "image": "img", "imageID": "", "ready": phase == "Running",
                    "restartCount": restarts, "state": state, "lastState": last
                }]
            }
        }),
        &format!("uid-{name}"),
        rv,
    )
}
