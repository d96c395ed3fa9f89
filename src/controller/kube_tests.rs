//! `reconcile` with the Kubernetes backend, driven through its reflector the
//! way kube-runtime's own tests drive an applier: the mock API server
//! streams Pod events, the watch fills the cache and names the server, and
//! each reconcile reads the cache. These tests list every API call a create,
//! a crash, a spec change and a removal make (and that a crash makes none).
use http::Method;
use serde_json::json;

use super::view::Upstream;
use super::*;
use crate::catalog::{Desired, ServerSpec};
use crate::runtime::kubernetes::mock::{self, ApiServer, LIST, PODS, expect_watch, pod, pod_list};
use crate::runtime::kubernetes::{KubeSettings, KubernetesRuntime};
use crate::status::Phase;

const SECRETS: &str = "/api/v1/namespaces/fleet-ns/secrets";
const POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/fleet-ns/networkpolicies";
const MANAGER: (&str, &str) = ("fieldManager", "mcp-fleet");

fn settings() -> Settings {
    Settings {
        pull: PullPolicy::Missing,
        concurrency: 1,
        stop_timeout: Duration::from_secs(5),
        ..super::tests::settings()
    }
}

fn want(image: &str) -> ContainerServer {
    let spec = ServerSpec::of_image(image);
    ContainerServer {
        hash: spec.hash(),
        spec,
        warnings: vec![],
        prefix: None,
    }
}

fn desire(ctx: &Context, fetch: Option<&ContainerServer>) {
    let state = DesiredState {
        servers: (fetch.iter())
            .map(|c| ("fetch".to_string(), Desired::Container((*c).clone())))
            .collect(),
        warnings: vec![],
        catalog: vec![],
        access: Default::default(),
    };
    *ctx.desired.write().unwrap() = Some(Arc::new(state));
}

/// A reconcile of `fetch` in a task, for the mock to answer its calls.
fn reconciling(ctx: &Arc<Context>) -> tokio::task::JoinHandle<Result<Next>> {
    let ctx = ctx.clone();
    tokio::spawn(async move { reconcile("fetch", &ctx).await })
}

/// The calls of one create: the Pod (gated), its Secret and deny-all
/// NetworkPolicy owned by it, then the gate lifted. Returns the Pod's name
/// (its uid is `uid-<name>`, as in [`pod`]).
async fn answer_create(api: &mut ApiServer) -> String {
    let call = api.expect(Method::POST, PODS, &[MANAGER]).await;
    let name = call.body["metadata"]["name"].as_str().unwrap().to_string();
    let uid = format!("uid-{name}");
    let mut released = call.body.clone();
    call.created(&uid, "3");
    for path in [SECRETS, POLICIES] {
        let call = api.expect(Method::POST, path, &[MANAGER]).await;
        assert_eq!(
            call.body["metadata"]["ownerReferences"][0]["uid"],
            uid.as_str()
        );
        call.created(&format!("{uid}-{path}"), "4");
    }
    let call = (api.expect(Method::PATCH, &format!("{PODS}/{name}"), &[MANAGER])).await;
    released["spec"]
        .as_object_mut()
        .unwrap()
        .remove("schedulingGates");
    call.reply(200, mock::stored(released, &uid, "5"));
    name
}

async fn answer_delete(api: &mut ApiServer, name: &str) {
    let uid = format!("uid-{name}");
    let call = (api.expect(Method::DELETE, &format!("{PODS}/{name}"), &[])).await;
    assert_eq!(
        call.body,
        json!({ "gracePeriodSeconds": 5, "propagationPolicy": "Background",
                "preconditions": { "uid": uid } })
    );
    call.reply(
        200,
        json!({ "kind": "Pod", "apiVersion": "v1", "metadata": { "name": name } }),
    );
}

/// The stderr capture attaching to a running Pod, refused here (this mock
/// speaks no WebSocket; `attach_tests` has a real one).
async fn answer_stderr_attach(api: &mut ApiServer, name: &str) {
    let query = [("container", "server"), ("stderr", "true")];
    (api.expect(Method::GET, &format!("{PODS}/{name}/attach"), &query))
        .await
        .reply(403, mock::status(403, "Forbidden", "not in this test"));
}

/// Waits for the watch to name `fetch`, then reconciles it with no API call
/// (a call would reach the mock, and the next `expect` would see it).
async fn observe(ctx: &Context, events: &mut mpsc::UnboundedReceiver<String>) -> ServerStatus {
    let server = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("the watch named no server")
        .unwrap();
    assert_eq!(server, "fetch");
    assert_eq!(reconcile("fetch", ctx).await.unwrap(), Next::Await);
    ctx.status.server("fetch").unwrap()
}

/// A controller on the Kubernetes backend over the mock, and the server
/// names its watch reports.
fn controller() -> (Arc<Context>, ApiServer, mpsc::UnboundedReceiver<String>) {
    let (client, api) = mock::client();
    let rt = KubernetesRuntime::new(
        client,
        KubeSettings {
            namespace: mock::NAMESPACE.into(),
            pull: PullPolicy::Missing,
            stop_timeout: Duration::from_secs(5),
            owner_deployment: None,
        },
    );
    let (tx, events) = mpsc::unbounded_channel();
    let mut stream = rt.events("f");
    tokio::spawn(async move {
        while let Some(Ok(server)) = futures_util::StreamExt::next(&mut stream).await {
            let _ = tx.send(server);
        }
    });
    let ctx = Context::new(
        Arc::new(rt),
        settings(),
        crate::supervise::Supervisor::default(),
    );
    (ctx, api, events)
}

#[tokio::test]
async fn create_crash_drift_and_removal_through_the_reflector() {
    let (ctx, mut api, mut events) = controller();
    let v1 = want("img:1");
    desire(&ctx, Some(&v1));

    // Create: the cache lists an empty namespace; the reconcile makes the Pod.
    api.expect(Method::GET, PODS, &LIST)
        .await
        .reply(200, pod_list("1", vec![]));
    let watch = expect_watch(&mut api, "1").await;
    let task = reconciling(&ctx);
    let first = answer_create(&mut api).await;
    assert_eq!(task.await.unwrap().unwrap(), Next::Await);
    let st = ctx.status.server("fetch").unwrap();
    assert_eq!(
        (st.phase, st.container_id.as_deref()),
        (Phase::Creating, Some(first.as_str()))
    );

    // Kubelet's reports become the status; the controller calls nothing.
    let waiting = |reason: &str| json!({ "waiting": { "reason": reason } });
    for (reason, phase) in [
        ("ContainerCreating", Phase::Creating),
        ("ImagePullBackOff", Phase::ImagePullBackOff),
    ] {
        let p = pod(&first, "fetch", &v1.hash, "4", "Pending", waiting(reason));
        watch.send("MODIFIED", p);
        let st = observe(&ctx, &mut events).await;
        assert_eq!(st.phase, phase, "{}", st.message);
        assert!(st.message.contains(reason), "{}", st.message);
    }
    let running = json!({ "running": { "startedAt": "2026-11-23T10:00:05Z" } });
    watch.send(
        "MODIFIED",
        pod(&first, "fetch", &v1.hash, "5", "Running", running.clone()),
    );
    assert_eq!(observe(&ctx, &mut events).await.phase, Phase::Running);
    let serving = |restarts| Upstream::running(&first, restarts, &v1);
    assert_eq!(ctx.view.get().get("fetch"), Some(&serving(0)));
    // Its stderr is captured once it runs (refused here: tried again later).
    answer_stderr_attach(&mut api, &first).await;

    // A crash: kubelet restarts it with its own back-off; the status says so.
    let crashed = json!({
        "waiting": { "reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container=server" },
        "restartCount": 1, "lastState": { "terminated": { "exitCode": 2, "reason": "Error" } }
    });
    watch.send(
        "MODIFIED",
        pod(&first, "fetch", &v1.hash, "6", "Running", crashed),
    );
    let st = observe(&ctx, &mut events).await;
    assert_eq!((st.phase, st.restart_count), (Phase::CrashLoopBackOff, 1));
    assert!(st.message.contains("last exit code 2"), "{}", st.message);
    assert_eq!(ctx.view.get().get("fetch"), None, "not served while down");
    let mut back = running.clone();
    back["restartCount"] = json!(1);
    watch.send(
        "MODIFIED",
        pod(&first, "fetch", &v1.hash, "7", "Running", back),
    );
    let st = observe(&ctx, &mut events).await;
    assert_eq!((st.phase, st.restart_count), (Phase::Running, 1));
    assert_eq!(ctx.view.get().get("fetch"), Some(&serving(1)));
    answer_stderr_attach(&mut api, &first).await;

    // Drift: a new spec replaces the Pod (delete, then a new instance).
    let v2 = want("img:2");
    desire(&ctx, Some(&v2));
    let task = reconciling(&ctx);
    answer_delete(&mut api, &first).await;
    let second = answer_create(&mut api).await;
    assert_eq!(task.await.unwrap().unwrap(), Next::Await);
    assert_ne!(first, second);

    // Removal: the server leaves the catalog.
    desire(&ctx, None);
    let task = reconciling(&ctx);
    answer_delete(&mut api, &second).await;
    assert_eq!(task.await.unwrap().unwrap(), Next::Await);
    // The cache already knows: the next reconcile forgets the server.
    assert_eq!(reconcile("fetch", &ctx).await.unwrap(), Next::Await);
    assert_eq!(ctx.status.server("fetch"), None);
}
