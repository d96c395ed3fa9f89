//! The real binary with `--runtime kubernetes`, reaching a stand-in API
//! server through a kubeconfig (plain HTTP on localhost). No cluster can be
//! installed here, so the stand-in stores what it is sent and streams the Pod
//! events a test gives it: enough to see the binary list and watch, create a
//! server's Pod (gated), Secret and NetworkPolicy, lift the gate, report what
//! the watch says, and delete the Pod when the catalog drops the server.
mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use common::{bin, catalog_of, entry};

const NS: &str = "/api/v1/namespaces/fleet-ns";

#[derive(Clone, Default)]
struct ApiServer {
    /// "METHOD path" of every request, in order.
    calls: Arc<Mutex<Vec<String>>>,
    objects: Arc<Mutex<HashMap<String, Value>>>,
    watch: Arc<Mutex<Option<mpsc::UnboundedSender<Bytes>>>>,
}

impl ApiServer {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// Streams one watch event to the binary.
    fn send(&self, kind: &str, object: Value) {
        let line = format!("{}\n", json!({ "type": kind, "object": object }));
        let watch = self.watch.lock().unwrap();
        watch
            .as_ref()
            .expect("no watch open")
            .send(line.into())
            .unwrap();
    }

    fn object(&self, path: &str) -> Value {
        self.objects.lock().unwrap()[path].clone()
    }
}

fn json_response(code: StatusCode, body: Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    axum::extract::State(api): axum::extract::State<ApiServer>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default();
    let watching = query.contains("watch=true");
    let call = format!("{method} {path}{}", if watching { " (watch)" } else { "" });
    api.calls.lock().unwrap().push(call);
    let stored = |mut obj: Value, rv: &str| {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        obj["metadata"]["uid"] = json!(format!("uid-{name}"));
        obj["metadata"]["resourceVersion"] = json!(rv);
        obj["metadata"]["namespace"] = json!("fleet-ns");
        obj["metadata"]["creationTimestamp"] = json!("2026-11-23T10:00:00Z");
        obj
    };
    match method {
        Method::GET if path == format!("{NS}/pods") && watching => {
            let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
            *api.watch.lock().unwrap() = Some(tx);
            let events = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
            });
            Response::new(Body::from_stream(events))
        }
        Method::GET if path == format!("{NS}/pods") => json_response(
            StatusCode::OK,
            json!({ "kind": "PodList", "apiVersion": "v1", "metadata": { "resourceVersion": "1" }, "items": [] }),
        ),
        Method::POST => {
            let obj = stored(serde_json::from_slice(&body).unwrap(), "2");
            let key = format!("{path}/{}", obj["metadata"]["name"].as_str().unwrap());
            api.objects.lock().unwrap().insert(key, obj.clone());
            json_response(StatusCode::CREATED, obj)
        }
        Method::PATCH | Method::DELETE if api.objects.lock().unwrap().contains_key(&path) => {
            let mut obj = api.object(&path);
            if method == Method::PATCH {
                obj["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("schedulingGates");
                obj["metadata"]["resourceVersion"] = json!("3");
            }
            json_response(StatusCode::OK, obj)
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not here" }),
        ),
    }
}

/// Polls `f` until it gives a value (the binary's log on a timeout).
async fn until<T>(what: &str, log: &std::path::Path, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("timed out waiting for {what}\nlog:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A kubeconfig for the stand-in at `addr`, and a config directory holding
/// `catalog`, both in `dir`.
fn configs(dir: &std::path::Path, addr: std::net::SocketAddr, catalog: &str) -> (PathBuf, PathBuf) {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: stand-in, cluster: {{server: 'http://{addr}'}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n\
             contexts: [{{name: c, context: {{cluster: stand-in, user: u, namespace: fleet-ns}}}}]\n"
        ),
    )
    .unwrap();
    let config = dir.join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("docker-mcp.yaml"), catalog).unwrap();
    (kubeconfig, config)
}

/// The stand-in API server, serving on a free port.
async fn stand_in() -> (ApiServer, std::net::SocketAddr) {
    let api = ApiServer::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(handle).with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, addr)
}

/// `mcp-fleet run` on the stand-in at `addr`, with `catalog`. Returns it,
/// the config directory and its log.
fn start(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    catalog: &str,
) -> (Killed, PathBuf, PathBuf) {
    let (kubeconfig, config) = configs(dir, addr, catalog);
    let log = dir.join("log");
    let child = Command::new(bin())
        .args([
            "run",
            "--runtime",
            "kubernetes",
            "--fleet",
            "f",
            "--no-auth",
        ])
        .args(["--listen", "127.0.0.1:0", "--settle", "0.1", "--config-dir"])
        .arg(&config)
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("MCP_FLEET_LOG", "info,mcp_fleet=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Killed(child), config, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_runs_a_server_as_a_pod_through_the_api_server() {
    let (api, addr) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let time = catalog_of(&[entry("time", "mcp/time:1", "")]);
    let (_binary, config, log) = start(dir.path(), addr, &time);
    let catalog = config.join("docker-mcp.yaml");

    // List, watch, and the server's Pod: gated, then its dependents, then released.
    let pod = until("the pod released", &log, || {
        let calls = api.calls();
        let name = calls
            .iter()
            .find_map(|c| c.strip_prefix(&format!("PATCH {NS}/pods/")))?;
        Some(name.to_string())
    })
    .await;
    let writes: Vec<String> = (api.calls().into_iter())
        .filter(|c| !c.starts_with("GET"))
        .collect();
    assert_eq!(
        writes,
        [
            format!("POST {NS}/pods"),
            format!("POST {NS}/secrets"),
            "POST /apis/networking.k8s.io/v1/namespaces/fleet-ns/networkpolicies".into(),
            format!("PATCH {NS}/pods/{pod}"),
        ]
    );
    assert_eq!(
        api.calls()[0],
        format!("GET {NS}/pods"),
        "the first call lists"
    );
    let made = api.object(&format!("{NS}/pods/{pod}"));
    assert_eq!(made["metadata"]["labels"]["io.mcp-fleet.fleet"], "f");
    assert_eq!(made["spec"]["containers"][0]["stdin"], true);

    // Kubelet's word, through the watch, becomes the status.
    until("the watch", &log, || {
        api.watch.lock().unwrap().is_some().then_some(())
    })
    .await;
    let mut running = api.object(&format!("{NS}/pods/{pod}"));
    running["spec"]
        .as_object_mut()
        .unwrap()
        .remove("schedulingGates");
    running["metadata"]["resourceVersion"] = json!("4");
    running["status"] = json!({
        "phase": "Pending",
        "containerStatuses": [{ "name": "server", "image": "mcp/time:1", "imageID": "", "ready": false,
            "restartCount": 0, "state": { "waiting": { "reason": "ImagePullBackOff",
            "message": "Back-off pulling image \"mcp/time:1\"" } } }]
    });
    api.send("MODIFIED", running);
    let status = config.join("mcp-status.json");
    until("ImagePullBackOff in the status file", &log, || {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&status).ok()?).ok()?;
        (s["servers"]["time"]["phase"] == "ImagePullBackOff").then_some(())
    })
    .await;

    // The catalog drops the server: its Pod is deleted.
    std::fs::write(&catalog, "registry: {}\n").unwrap();
    until("the pod deleted", &log, || {
        (api.calls().last()? == &format!("DELETE {NS}/pods/{pod}")).then_some(())
    })
    .await;
}

/// `plan --runtime kubernetes` reads the Pods through the list and watch the
/// controller uses, says what `run` would do, and writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn plan_reads_the_pods_through_the_api_server_and_writes_nothing() {
    let (api, addr) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let time = catalog_of(&[entry("time", "mcp/time:1", "")]);
    let (kubeconfig, config) = configs(dir.path(), addr, &time);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin())
            .args([
                "plan",
                "--runtime",
                "kubernetes",
                "--fleet",
                "f",
                "--config-dir",
            ])
            .arg(&config)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "changes pending\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("create   time: image mcp/time:1"),
        "{stdout}"
    );
    let calls = api.calls();
    assert_eq!(calls[0], format!("GET {NS}/pods"), "{calls:?}");
    assert!(calls.iter().all(|c| c.starts_with("GET")), "{calls:?}");
}
