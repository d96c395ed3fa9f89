//! The Deployment of manifests/ short of a cluster: rendered by `kubectl
//! kustomize` (scripts/debian-env.sh provides kubectl), its arguments expanded
//! as kubelet expands `$(VAR)`, run as the real binary (with the Docker
//! runtime: no cluster here), and probed with its own probes. The schemas and
//! references are checked by scripts/manifests-check.
mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const MIN: Duration = Duration::from_secs(60);

fn render(dir: &str) -> Vec<Value> {
    let kubectl = std::env::var("MCP_FLEET_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = Command::new(&kubectl)
        .args(["kustomize", dir])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{kubectl} (scripts/debian-env.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).expect("rendered YAML")
}

/// Kubernetes' `$(VAR)` expansion of container args from the container's env.
fn expand(arg: &str, env: &HashMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    assert!(!out.contains("$("), "unexpanded variable in {arg}");
    out
}

struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    async fn addr(&self) -> String {
        for _ in 0..1200 {
            if let Some(rest) = self.log().split("gateway listening on http://").nth(1) {
                return rest.split('/').next().unwrap().to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway never listened:\n{}", self.log());
    }
}

/// The Deployment's container as kubelet would start it, except what needs a
/// cluster: the Docker runtime, a temp config directory, a free port, and a
/// test fleet name (never the manifest's, whose containers this must not touch).
fn start(container: &Value, namespace: &str, token: &str) -> Gateway {
    let mut env: HashMap<String, String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect();
    env.insert("POD_NAMESPACE".into(), namespace.into());
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| expand(a.as_str().unwrap(), &env))
        .collect();
    let fleet = format!("t-manifests-{}", std::process::id());
    let status = dir.path().join("mcp-status.json");
    let mut run = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let replaced = match a.as_str() {
            "--runtime" => None,
            "--config-dir" => Some(dir.path().to_str().unwrap()),
            "--status-file" => Some(status.to_str().unwrap()),
            "--listen" => Some("127.0.0.1:0"),
            "--fleet" => Some(fleet.as_str()),
            _ => {
                run.push(a.clone());
                continue;
            }
        };
        let value = it.next().expect("a value after the flag");
        if let Some(v) = replaced {
            run.extend([a.clone(), v.to_string()]);
        } else {
            assert_eq!(value, "kubernetes");
        }
    }
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let child = Command::new(common::bin())
        .args(&run)
        .envs(&env)
        .env("MCP_GATEWAY_AUTH_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn mcp-fleet");
    Gateway { child, dir }
}

/// Runs an exec probe's command (bash) against `port` instead of 8811.
fn exec_probe(probe: &Value, port: &str, token: &str) -> bool {
    let cmd: Vec<String> = probe["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().replace("/8811", &format!("/{port}")))
        .collect();
    Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("MCP_GATEWAY_AUTH_TOKEN", token)
        .status()
        .expect("run the probe")
        .success()
}

async fn get(url: &str, host: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(url)
        .header("Host", host)
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("gateway answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pocketcoder_deployment_runs_and_its_probes_tell_ready_from_not() {
    let docs = render("manifests/overlays/pocketcoder");
    let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let namespace = dep["metadata"]["namespace"].as_str().unwrap();
    let container = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], 8811);
    let token = format!("t-{}", std::process::id());
    let gw = start(container, namespace, &token);
    let addr = gw.addr().await;
    let port = addr.rsplit(':').next().unwrap().to_string();

    // Liveness: /health, no token, whatever the Host (kubelet sends the Pod IP).
    let live = &container["livenessProbe"]["httpGet"];
    assert_eq!(live["port"], "http");
    let url = format!("http://{addr}{}", live["path"].as_str().unwrap());
    let status = reqwest::get(&url).await.unwrap().status().as_u16();
    assert_eq!(status, 200, "{url}");

    // Readiness fails while there is no catalog, passes once there is one,
    // and never with another token.
    let ready = &container["readinessProbe"];
    assert!(!exec_probe(ready, &port, &token), "ready without a catalog");
    let tmp = gw.dir.path().join(".docker-mcp.yaml");
    std::fs::write(&tmp, "registry: {}\n").unwrap();
    std::fs::rename(&tmp, gw.dir.path().join("docker-mcp.yaml")).unwrap();
    let mut passed = false;
    for _ in 0..(MIN.as_millis() / 100) {
        if exec_probe(ready, &port, &token) {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(passed, "readiness never passed:\n{}", gw.log());
    assert!(!exec_probe(ready, &port, "another-token"));

    // The Service names agents use pass the Host check; others do not.
    let readyz = format!("http://{addr}/readyz");
    for host in [
        "mcp-fleet:8811",
        "mcp-fleet.pocketcoder:8811",
        "mcp-fleet.pocketcoder.svc:8811",
        "mcp-fleet.pocketcoder.svc.cluster.local:8811",
    ] {
        assert_eq!(get(&readyz, host, &token).await, 200, "{host}");
    }
    assert_eq!(get(&readyz, "evil.example:8811", &token).await, 403);
}
