//! The backend against a mock API server: the exact requests it makes, and
//! what it makes of the API server's answers.
use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use http::Method;
use serde_json::{Value, json};

use super::mock::{
    self, ApiServer, LIST, NAMESPACE, PODS, expect_watch, pod, pod_list, status, stored,
};
use super::*;
use crate::catalog::secrets::Secret as Hidden;
use crate::catalog::{ContainerServer, ServerSpec};
use crate::runtime::State;

const SECRETS: &str = "/api/v1/namespaces/fleet-ns/secrets";
const POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/fleet-ns/networkpolicies";

fn runtime(owner: Option<&str>) -> (Arc<KubernetesRuntime>, ApiServer) {
    let (client, server) = mock::client();
    let rt = KubernetesRuntime::new(
        client,
        KubeSettings {
            namespace: NAMESPACE.into(),
            pull: PullPolicy::Missing,
            stop_timeout: Duration::from_secs(7),
            owner_deployment: owner.map(String::from),
        },
    );
    (Arc::new(rt), server)
}

fn server_spec(network: bool) -> ContainerServer {
    let mut spec = ServerSpec::of_image("ghcr.io/example/fetch:1");
    spec.command = vec![Hidden::new("--token"), Hidden::new("s3cr3t-arg")];
    spec.env = BTreeMap::from([("API_KEY".into(), Hidden::new("s3cr3t-env"))]);
    spec.user = Some("1000:1000".into());
    spec.network = network;
    spec.extra_hosts = vec!["db.local:10.0.0.5".into()];
    ContainerServer {
        hash: spec.hash(),
        spec,
        warnings: vec![],
        prefix: None,
    }
}

fn labels(name: &str, hash: &str) -> Value {
    json!({
        "io.mcp-fleet.fleet": "f", "io.mcp-fleet.server": "fetch",
        "io.mcp-fleet.spec-hash": hash, "io.mcp-fleet.instance": name
    })
}

/// The metadata every object of one instance carries.
fn meta(name: &str, hash: &str, owner: Value) -> Value {
    json!({
        "name": name,
        "labels": labels(name, hash),
        "annotations": { "io.mcp-fleet.server": "fetch" },
        "ownerReferences": [owner]
    })
}

fn deployment_owner() -> Value {
    json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": "mcp-fleet", "uid": "uid-deploy" })
}

fn expected_pod(name: &str, hash: &str) -> Value {
    let secret = |key: &str, env: &str| json!({ "name": env, "valueFrom": { "secretKeyRef": { "name": name, "key": key, "optional": false } } });
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": meta(name, hash, deployment_owner()),
        "spec": {
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "restartPolicy": "Always",
            "schedulingGates": [{ "name": "io.mcp-fleet/objects" }],
            "terminationGracePeriodSeconds": 7,
            "hostAliases": [{ "ip": "10.0.0.5", "hostnames": ["db.local"] }],
            "securityContext": {
                "runAsGroup": 1000, "runAsNonRoot": true, "runAsUser": 1000,
                "seccompProfile": { "type": "RuntimeDefault" }
            },
            "containers": [{
                "name": "server",
                "image": "ghcr.io/example/fetch:1",
                "imagePullPolicy": "IfNotPresent",
                "args": ["$(MCP_FLEET_ARG_0)", "$(MCP_FLEET_ARG_1)"],
                "env": [
                    secret("env.API_KEY", "API_KEY"),
                    secret("arg.0", "MCP_FLEET_ARG_0"),
                    secret("arg.1", "MCP_FLEET_ARG_1")
                ],
                "stdin": true, "stdinOnce": false, "tty": false,
                "resources": {
                    "limits": { "cpu": "1000m", "memory": "536870912" },
                    "requests": { "cpu": "1000m", "memory": "536870912" }
                },
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": { "drop": ["ALL"] },
                    "privileged": false,
                    "readOnlyRootFilesystem": true
                },
                "volumeMounts": [{ "name": "tmp", "mountPath": "/tmp" }]
            }],
            "volumes": [{ "name": "tmp", "emptyDir": { "medium": "Memory", "sizeLimit": "64Mi" } }]
        }
    })
}

/// Every write names its field manager.
const MANAGER: (&str, &str) = ("fieldManager", "mcp-fleet");

#[tokio::test]
async fn create_makes_a_gated_pod_then_its_secret_and_policy_then_releases_it() {
    let (rt, mut api) = runtime(Some("mcp-fleet"));
    // An empty namespace, listed.
    rt.remember(watcher::Event::Init);
    rt.remember(watcher::Event::InitDone);
    let want = server_spec(false);
    let hash = want.hash.clone();
    let task = tokio::spawn({
        let rt = rt.clone();
        async move { rt.create("f", "fetch", &want).await }
    });

    let deployment = "/apis/apps/v1/namespaces/fleet-ns/deployments/mcp-fleet";
    let call = api.expect(Method::GET, deployment, &[]).await;
    let found = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "mcp-fleet" } });
    call.reply(200, stored(found, "uid-deploy", "1"));

    let call = api.expect(Method::POST, PODS, &[MANAGER]).await;
    let name = call.body["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("mcp-fleet-f-fetch-") && name.len() == 23,
        "{name}"
    );
    assert_eq!(call.body, expected_pod(&name, &hash));
    for secret in ["s3cr3t-env", "s3cr3t-arg"] {
        assert!(!call.raw.contains(secret), "a secret is inline in the Pod");
    }
    let mut pod = stored(call.body.clone(), "uid-pod", "10");
    call.created("uid-pod", "10");

    let pod_owner = json!({ "apiVersion": "v1", "kind": "Pod", "name": name, "uid": "uid-pod" });
    let call = api.expect(Method::POST, SECRETS, &[MANAGER]).await;
    // Made by this process: gated means "being made", not "left half-made".
    let listed = rt.list("f", Some("fetch")).await.unwrap();
    assert!(
        matches!(&listed[0].state, State::Waiting { reason, .. } if reason == "SchedulingGated")
    );
    assert_eq!(
        call.body,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": meta(&name, &hash, pod_owner.clone()),
            "immutable": true, "type": "Opaque",
            "stringData": { "env.API_KEY": "s3cr3t-env", "arg.0": "--token", "arg.1": "s3cr3t-arg" }
        })
    );
    call.created("uid-secret", "11");

    let call = api.expect(Method::POST, POLICIES, &[MANAGER]).await;
    assert_eq!(
        call.body,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(&name, &hash, pod_owner),
            "spec": {
                "podSelector": { "matchLabels": { "io.mcp-fleet.instance": name } },
                "policyTypes": ["Ingress", "Egress"]
            }
        })
    );
    call.created("uid-policy", "12");

    let call = (api.expect(Method::PATCH, &format!("{PODS}/{name}"), &[MANAGER])).await;
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(call.body, json!({ "spec": { "schedulingGates": null } }));
    pod["spec"]
        .as_object_mut()
        .unwrap()
        .remove("schedulingGates");
    pod["metadata"]["resourceVersion"] = json!("13");
    call.reply(200, pod);

    assert_eq!(task.await.unwrap().unwrap(), name);
    // The cache has the released Pod at once (before any watch event).
    let listed = rt.list("f", Some("fetch")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].hash.as_str()),
        (name.as_str(), hash.as_str())
    );
    assert_eq!(
        listed[0].state,
        State::Waiting {
            reason: "Pending".into(),
            message: String::new()
        }
    );
}

#[tokio::test]
async fn a_server_with_network_gets_no_policy_and_a_failed_create_leaves_nothing() {
    let (rt, mut api) = runtime(None);
    rt.remember(watcher::Event::Init);
    rt.remember(watcher::Event::InitDone);
    let want = server_spec(true);
    let task = tokio::spawn({
        let rt = rt.clone();
        async move { rt.create("f", "fetch", &want).await }
    });
    let call = api.expect(Method::POST, PODS, &[MANAGER]).await;
    let name = call.body["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(call.body["metadata"].get("ownerReferences"), None);
    call.created(&format!("uid-{name}"), "10");
    let call = api.expect(Method::POST, SECRETS, &[MANAGER]).await;
    call.reply(
        403,
        status(403, "Forbidden", "secrets is forbidden: exceeded quota"),
    );
    // No NetworkPolicy (the server has network); the Pod is deleted again,
    // and the garbage collector would take anything it owned.
    let call = (api.expect(Method::DELETE, &format!("{PODS}/{name}"), &[])).await;
    assert_eq!(
        call.body,
        json!({ "gracePeriodSeconds": 0, "propagationPolicy": "Background",
                "preconditions": { "uid": format!("uid-{name}") } })
    );
    call.reply(
        200,
        json!({ "kind": "Pod", "apiVersion": "v1", "metadata": { "name": name } }),
    );
    let err = task.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("exceeded quota"), "{err}");
    assert!(rt.list("f", None).await.unwrap().is_empty());
}

#[test]
fn a_gated_pod_another_run_left_is_replaced() {
    let mut p = pod("p1", "fetch", "h1", "5", "Pending", json!({}));
    p["spec"]["schedulingGates"] = json!([{ "name": "io.mcp-fleet/objects" }]);
    let p: Pod = serde_json::from_value(p).unwrap();
    let c = pods::container_of(&p, false).unwrap();
    assert!(matches!(c.state, State::Failed(m) if m.contains("half-made")));
}

#[tokio::test]
async fn host_bind_volumes_are_refused_before_any_call() {
    let (rt, _api) = runtime(None);
    let mut want = server_spec(true);
    want.spec.volumes = vec!["/etc:/host-etc:ro".into()];
    let err = rt
        .create("f", "fetch", &want)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not supported on Kubernetes"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_api_server_that_never_answers_fails_the_call_at_its_deadline() {
    let (rt, mut api) = runtime(None);
    let want = server_spec(true);
    let task = tokio::spawn({
        let rt = rt.clone();
        async move { rt.create("f", "fetch", &want).await }
    });
    // Taken and never answered (the mock's own 10 s wait is on the paused clock too).
    let _held = api.expect(Method::POST, PODS, &[MANAGER]).await;
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(300), task).await;
    let err = outcome
        .expect("no deadline: still waiting after 300 s")
        .unwrap()
        .unwrap_err();
    let err = err.to_string();
    assert!(err.contains("did not answer within 30s"), "{err}");
    assert_eq!(started.elapsed(), API_CALL);
}

/// The events stream, taken by a task that forwards each server name.
fn watch_events(rt: &KubernetesRuntime) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut events = rt.events("f");
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            if tx.send(ev.unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

async fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no event within 10 s")
        .unwrap()
}

#[tokio::test]
async fn the_watch_fills_the_cache_with_kubelets_reasons_and_lists_again_after_410_gone() {
    let (rt, mut api) = runtime(None);
    let mut events = watch_events(&rt);
    let pulling = pod(
        "p1",
        "fetch",
        "h1",
        "100",
        "Pending",
        json!({ "waiting": { "reason": "ImagePullBackOff",
            "message": "Back-off pulling image \"ghcr.io/example/fetch:1\"" } }),
    );
    let kept = pod(
        "p2",
        "time",
        "h2",
        "90",
        "Running",
        json!({ "running": { "startedAt": "2026-11-23T10:00:01Z" } }),
    );
    api.expect(Method::GET, PODS, &LIST)
        .await
        .reply(200, pod_list("100", vec![pulling, kept.clone()]));
    let mut first = vec![next_event(&mut events).await, next_event(&mut events).await];
    first.sort();
    assert_eq!(first, ["fetch", "time"]);
    let fetch = rt.list("f", Some("fetch")).await.unwrap();
    assert_eq!(
        fetch[0].state,
        State::Waiting {
            reason: "ImagePullBackOff".into(),
            message: "Back-off pulling image \"ghcr.io/example/fetch:1\"".into()
        }
    );

    let watch = expect_watch(&mut api, "100").await;
    watch.send(
        "MODIFIED",
        pod(
            "p1",
            "fetch",
            "h1",
            "101",
            "Running",
            json!({ "waiting": { "reason": "CrashLoopBackOff",
                "message": "back-off 40s restarting failed container=server pod=p1" },
                "restartCount": 3,
                "lastState": { "terminated": { "exitCode": 1, "reason": "Error" } } }),
        ),
    );
    assert_eq!(next_event(&mut events).await, "fetch");
    let fetch = rt.list("f", Some("fetch")).await.unwrap();
    assert_eq!(fetch[0].restarts, 3);
    assert_eq!(
        fetch[0].state,
        State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 40s restarting failed container=server pod=p1 (last exit code 1)"
                .into()
        }
    );

    // The watch's resource version expired: the watcher lists again, and a
    // Pod deleted meanwhile (p1) is reported for its server.
    watch.send(
        "ERROR",
        status(410, "Expired", "too old resource version: 101 (250)"),
    );
    api.expect(Method::GET, PODS, &LIST)
        .await
        .reply(200, pod_list("250", vec![kept]));
    let mut relisted = vec![next_event(&mut events).await, next_event(&mut events).await];
    relisted.sort();
    assert_eq!(relisted, ["fetch", "time"]);
    assert!(rt.list("f", Some("fetch")).await.unwrap().is_empty());
    assert_eq!(rt.list("f", None).await.unwrap().len(), 1);
    let _watch = expect_watch(&mut api, "250").await;
}

#[tokio::test]
async fn remove_deletes_only_a_cached_pod_of_ours_and_only_that_very_pod() {
    let (rt, mut api) = runtime(None);
    let _events = watch_events(&rt);
    let running = pod(
        "p1",
        "fetch",
        "h1",
        "100",
        "Running",
        json!({ "running": {} }),
    );
    api.expect(Method::GET, PODS, &LIST)
        .await
        .reply(200, pod_list("100", vec![running.clone()]));
    let _watch = expect_watch(&mut api, "100").await;
    let task = tokio::spawn({
        let rt = rt.clone();
        async move {
            // Not in the cache (no fleet label): not touched, no call.
            rt.remove("someone-elses", Duration::from_secs(3)).await?;
            rt.remove("p1", Duration::from_secs(3)).await
        }
    });
    let call = api.expect(Method::DELETE, &format!("{PODS}/p1"), &[]).await;
    assert_eq!(
        call.body,
        json!({
            "gracePeriodSeconds": 3, "propagationPolicy": "Background",
            "preconditions": { "uid": "uid-p1" }
        })
    );
    call.reply(200, running);
    task.await.unwrap().unwrap();
    assert!(
        rt.list("f", None).await.unwrap().is_empty(),
        "gone from the cache at once"
    );
}

#[tokio::test]
async fn attach_asks_for_stdin_and_stdout_of_the_server_container() {
    let (rt, mut api) = runtime(None);
    let task = tokio::spawn({
        let rt = rt.clone();
        async move { rt.attach("p1").await.map(|_| ()) }
    });
    let call = api
        .expect(
            Method::GET,
            &format!("{PODS}/p1/attach"),
            // stderr is off unless asked for: it is the server's log.
            &[
                ("container", "server"),
                ("stdin", "true"),
                ("stdout", "true"),
            ],
        )
        .await;
    assert_eq!(call.headers["upgrade"], "websocket");
    let protocols = call.headers["sec-websocket-protocol"].to_str().unwrap();
    assert!(protocols.contains("v4.channel.k8s.io"), "{protocols}");
    call.reply(
        403,
        status(
            403,
            "Forbidden",
            "pods \"p1\" is forbidden: cannot create resource \"pods/attach\"",
        ),
    );
    let err = task.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("attach pod p1"), "{err}");
}

#[test]
fn names_and_label_values_fit_and_stay_distinct() {
    assert_eq!(
        objects::base_name("default", "fetch"),
        "mcp-fleet-default-fetch"
    );
    let odd = objects::base_name("default", "My_Server.v2");
    assert!(
        odd.starts_with("mcp-fleet-default-my-server-v2-") && odd.len() <= 57,
        "{odd}"
    );
    let long = "x".repeat(80);
    let a = objects::label_value(&format!("{long}a"));
    let b = objects::label_value(&format!("{long}b"));
    assert!(a.len() <= 63 && b.len() <= 63 && a != b, "{a} {b}");
    assert_eq!(objects::label_value("fetch"), "fetch");
    assert_eq!(
        objects::label_value("fetch"),
        objects::label_value("fetch"),
        "stable"
    );
    assert_eq!(
        objects::dns_label("Fetch", 63),
        objects::dns_label("Fetch", 63)
    );
    assert_ne!(
        objects::dns_label("Fetch", 63),
        "fetch",
        "changed names get a hash"
    );
}
