//! The PocketCoder flow on Kubernetes (issue 12), without a cluster: the real
//! PocketBase running `examples/pocketbase` with `MCP_KUBE_NAMESPACE` writes the
//! catalog ConfigMap and the secrets Secret through a stand-in API server
//! (the calls `manifests/overlays/pocketcoder` allows it), which lays what it
//! is sent out as kubelet would for the real `mcp-fleet` binary (Docker
//! runtime here). PocketBase reads the server's state from mcp-fleet's
//! `GET /status` with the operator token, as it must in a cluster.
mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::pocketbase::{ADMIN, PocketBase};
use common::*;
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);
const AGENT: (&str, &str) = ("agent@example.test", "agent-password-1");
const NS: &str = "/api/v1/namespaces/pocketcoder";
const SA_TOKEN: &str = "pocketbase-service-account-token";

/// One request the stand-in saw.
#[derive(Debug, Clone)]
struct Call {
    what: String,
    auth: String,
    content_type: String,
    body: Value,
}

#[derive(Clone)]
struct ApiServer {
    calls: Arc<Mutex<Vec<Call>>>,
    catalog: Arc<Mutex<String>>,
    /// Where mcp-fleet reads its config (kubelet's volume, here a directory).
    volume: PathBuf,
}

impl ApiServer {
    fn patches(&self) -> Vec<Call> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.what.starts_with("PATCH"))
            .cloned()
            .collect()
    }
}

fn publish(volume: &Path, file: &str, text: &str) {
    let tmp = volume.join(format!(".{file}.kubelet"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, volume.join(file)).unwrap();
}

async fn handle(
    axum::extract::State(api): axum::extract::State<ApiServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |h: &str| {
        (headers.get(h))
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let what = format!("{method} {}", uri.path());
    api.calls.lock().unwrap().push(Call {
        what: what.clone(),
        auth: header("authorization"),
        content_type: header("content-type"),
        body: body.clone(),
    });
    let cm = format!("{NS}/configmaps/mcp-fleet-catalog");
    let secret = format!("{NS}/secrets/mcp-fleet-secrets");
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    match (method, uri.path()) {
        (Method::GET, p) if p == cm => {
            ok(json!({ "kind": "ConfigMap", "data": { "docker-mcp.yaml": *api.catalog.lock().unwrap() } }))
        }
        (Method::PATCH, p) if p == cm => {
            let text = body["data"]["docker-mcp.yaml"].as_str().unwrap().to_string();
            publish(&api.volume, "docker-mcp.yaml", &text);
            *api.catalog.lock().unwrap() = text;
            ok(json!({ "kind": "ConfigMap" }))
        }
        (Method::PATCH, p) if p == secret => {
            let env = body["stringData"]["mcp.env"].as_str().unwrap();
            publish(&api.volume, "mcp.env", env);
            ok(json!({ "kind": "Secret" }))
        }
        _ => (
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "kind": "Status", "code": 403, "message": "not allowed by the pocketbase Role" })),
        )
            .into_response(),
    }
}

/// The last catalog and secrets writes: (their order, the Secret's env text).
fn last_two(api: &ApiServer) -> (Vec<String>, String) {
    let patches = api.patches();
    let tail = &patches[patches.len().saturating_sub(2)..];
    for p in tail {
        assert_eq!(p.auth, format!("Bearer {SA_TOKEN}"), "{p:?}");
        assert_eq!(p.content_type, "application/merge-patch+json", "{p:?}");
    }
    let kinds = tail
        .iter()
        .map(|p| p.what.rsplit('/').nth(1).unwrap().to_string())
        .collect();
    let env = (tail.iter())
        .find_map(|p| p.body["stringData"]["mcp.env"].as_str())
        .unwrap_or_default()
        .to_string();
    (kinds, env)
}

#[tokio::test(flavor = "multi_thread")]
async fn pocketbase_writes_the_configmap_and_secret_through_the_api() {
    let mut f = Fleet::new("pbkube").await;
    let api = ApiServer {
        calls: Arc::default(),
        catalog: Arc::new(Mutex::new("name: docker-mcp\nregistry: {}\n".into())),
        volume: f.dir.path().to_path_buf(),
    };
    publish(
        &api.volume,
        "docker-mcp.yaml",
        "name: docker-mcp\nregistry: {}\n",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(handle).with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let secrets = tempfile::tempdir().unwrap();
    let sa_token = secrets.path().join("sa-token");
    std::fs::write(&sa_token, format!("{SA_TOKEN}\n")).unwrap();
    let operator = secrets.path().join("operator-token");
    std::fs::write(&operator, "operator-token-for-pocketbase\n").unwrap();
    let op = operator.to_str().unwrap();
    f.start(&["--approval", "all", "--auth-token-file", op]);
    let gateway = f.gateway_url().await;
    let kube_api = format!("http://{addr}");
    let status_url = format!("{gateway}/status");
    let env: [(&str, &Path); 5] = [
        ("MCP_KUBE_NAMESPACE", Path::new("pocketcoder")),
        ("MCP_KUBE_API", Path::new(&kube_api)),
        ("MCP_KUBE_TOKEN_FILE", &sa_token),
        ("MCP_FLEET_STATUS_URL", Path::new(&status_url)),
        ("MCP_FLEET_TOKEN_FILE", &operator),
    ];
    let pb = PocketBase::start_env(f.dir.path(), &env).await;

    let admin = pb.login("_superusers", ADMIN);
    let agent = pb.user(&admin, AGENT);
    let (code, v) = pb.request(Some(&agent), "fetch", "s1");
    assert_eq!(code, 201, "{v}\n{}", pb.log());
    let id = v["id"].as_str().unwrap().to_string();

    // Approval with a secret: the Secret first, then the ConfigMap.
    let config = json!({"network": false, "FETCH_TOKEN": "tok-1"});
    pb.set(
        &admin,
        &id,
        json!({"status": "approved", "image": FETCH, "config": config}),
    );
    let (order, env_text) = last_two(&api);
    assert_eq!(
        order,
        ["secrets", "configmaps"],
        "{:?}\n{}",
        api.patches(),
        pb.log()
    );
    assert!(
        env_text.contains("fetch.FETCH_TOKEN=\"tok-1\"\n"),
        "{env_text}"
    );
    let catalog = api.catalog.lock().unwrap().clone();
    assert!(
        catalog.contains("  fetch:\n") && catalog.contains("    x-mcp-fleet:\n"),
        "{catalog}"
    );

    // mcp-fleet runs what the ConfigMap says; PocketBase learns it over HTTP.
    f.running("fetch").await;
    f.until(
        "PocketBase sees fetch ready through GET /status",
        MIN,
        || async { (pb.state(&agent, "fetch")["state"] == "ready").then_some(()) },
    )
    .await;

    // Revoked: the catalog stops naming the secret before the Secret drops it.
    pb.set(&admin, &id, json!({"status": "revoked"}));
    let (order, env_text) = last_two(&api);
    assert_eq!(order, ["configmaps", "secrets"], "{:?}", api.patches());
    assert!(!env_text.contains("FETCH_TOKEN"), "{env_text}");
    f.gone("fetch").await;
    let refused = api
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|c| !c.what.contains("mcp-fleet-"));
    assert!(!refused, "only the two objects the Role names were used");
    f.stop("-TERM");
}
