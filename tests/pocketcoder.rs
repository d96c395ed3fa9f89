//! The motivating deployment end to end (issue 4): the real PocketBase binary
//! running `examples/pocketbase` (migration, request route, render hook), the
//! real `mcp-fleet` binary on the volume PocketBase renders into, a real Docker
//! engine, and the official Python MCP SDK connected over `/sse` the way an
//! agent's sandbox connects. Nothing is restarted along the way.
//!
//! Also: the mcp-fleet image (`docker/Dockerfile`) builds here, from a local
//! base, runs non-root with the socket's group, answers `/health` and runs a
//! server from the mounted catalog.
//!
//! Needs `MCP_FLEET_POCKETBASE` (scripts/pocketbase-env.sh), `MCP_FLEET_PYTHON`
//! (scripts/python-env.sh) and `DOCKER_HOST`: `scripts/test` sets all three.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mcp_client::{McpClient, McpTransport};
use common::pocketbase::{ADMIN, PocketBase, http};
use common::*;
use serde_json::json;

const MIN: Duration = Duration::from_secs(60);
const AGENT: (&str, &str) = ("agent@example.test", "agent-password-1");

/// (content, mtime) of a file, to prove it was not rewritten.
fn snapshot(p: &Path) -> (String, std::time::SystemTime) {
    (
        std::fs::read_to_string(p).unwrap(),
        std::fs::metadata(p).unwrap().modified().unwrap(),
    )
}

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread")]
async fn pocketbase_approves_a_container_appears_the_open_session_sees_it() {
    let t0 = Instant::now();
    let mut f = Fleet::new("pocketcoder").await;
    let pb = PocketBase::start(f.dir.path()).await;
    let catalog = f.path("docker-mcp.yaml");
    // A fresh install renders an empty catalog when PocketBase starts serving.
    f.until("PocketBase rendered the empty catalog", MIN, || async {
        let text = std::fs::read_to_string(&catalog).ok()?;
        text.contains("registry: {}\n").then_some(())
    })
    .await;
    f.start(&["--no-auth", "--approval", "all"]);
    let mcp_fleet = f.controller_pid().unwrap();
    let gateway = f.gateway_url().await;
    f.until("status file", MIN, || async { f.status() }).await;

    let admin = pb.login("_superusers", ADMIN);
    let agent = pb.user(&admin, AGENT);

    // The agent's sandbox holds its session from before any approval.
    let mut c = McpClient::connect(&format!("{gateway}/sse"), McpTransport::Sse, None).await;
    let before = c.tool_names().await;
    assert!(!before.contains(&"fetch".to_string()), "{before:?}");

    // 1. Asking: 401 without auth, a pending record with it.
    let (code, v) = pb.request(None, "fetch", "s1");
    assert_eq!(code, 401, "{v}");
    let (code, v) = pb.request(Some(&agent), "fetch", "s1");
    assert_eq!(code, 201, "{v}\n{}", pb.log());
    assert_eq!(v["status"], "pending", "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(pb.state(&agent, "fetch")["state"], "pending");
    assert!(!std::fs::read_to_string(&catalog).unwrap().contains("fetch"));

    // 2. Asking again: the same record, still pending, not a second one.
    let (code, v) = pb.request(Some(&agent), "fetch", "s2");
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["id"].as_str(), v["status"].as_str()),
        (Some(id.as_str()), Some("pending"))
    );
    assert_eq!(pb.records(&agent, "fetch").len(), 1);

    // 3. The admin approves: a container, list_changed on the open session, the tool.
    let _ = c
        .wait_list_changed("tools", Duration::from_millis(100))
        .await; // drain
    let approved = Instant::now();
    pb.set(
        &admin,
        &id,
        json!({"status": "approved", "image": FETCH, "config": {"network": false}}),
    );
    let text = std::fs::read_to_string(&catalog).unwrap();
    assert!(
        text.contains("  fetch:\n") && text.contains("disableNetwork: true\n"),
        "{text}"
    );
    assert!(text.ends_with('\n'));
    let ctr = f.running("fetch").await;
    let labelled = list_by_label(&f.docker, "io.mcp-fleet.server=fetch").await;
    assert!(
        labelled
            .iter()
            .any(|x| x.id == ctr.id && x.state == "running"),
        "{labelled:?}"
    );
    eprintln!(
        "approval -> fetch container running: {:?}",
        approved.elapsed()
    );
    assert!(
        c.wait_list_changed("tools", MIN).await,
        "no tools/list_changed after approval"
    );
    eprintln!(
        "approval -> list_changed at the client: {:?}",
        approved.elapsed()
    );
    let names = c.tool_names().await;
    assert!(names.contains(&"fetch".to_string()), "{names:?}");
    // The container has no network: the call reaches mcp-server-fetch, which
    // reports that it could not fetch (no traffic leaves the machine).
    let (_, answer) = c.call("fetch", json!({"url": "http://127.0.0.1:9/"})).await;
    eprintln!("fetch answered: {answer}");
    assert!(answer.contains("127.0.0.1:9"), "{answer}");
    f.until("the app sees fetch ready", MIN, || async {
        (pb.state(&agent, "fetch")["state"] == "ready").then_some(())
    })
    .await;
    // Asking once approved returns the approved record; still one record.
    let (code, v) = pb.request(Some(&agent), "fetch", "s3");
    assert_eq!((code, v["status"].as_str()), (200, Some("approved")), "{v}");
    assert_eq!(pb.records(&agent, "fetch").len(), 1);

    // 4. A denied request: no container, nothing rendered.
    let rendered = snapshot(&catalog);
    let env_file = snapshot(&f.path("mcp.env"));
    let (code, v) = pb.request(Some(&agent), "time", "s4");
    assert_eq!(code, 201, "{v}");
    pb.set(
        &admin,
        v["id"].as_str().unwrap(),
        json!({"status": "denied", "image": TIME}),
    );
    assert_eq!(snapshot(&catalog), rendered, "a denial rewrote the catalog");
    assert_eq!(
        snapshot(&f.path("mcp.env")),
        env_file,
        "a denial rewrote mcp.env"
    );
    assert_eq!(pb.state(&agent, "time")["state"], "denied");
    let plan = f.plan();
    assert_eq!(plan.status.code(), Some(0), "in sync: {}", stdout(&plan));
    assert!(f.container("time").await.is_none());
    assert!(f.status().unwrap()["servers"].get("time").is_none());

    // 6. A half-written render changes nothing: first a crashed writer's temp
    // file, then a catalog cut off mid-value in place (as a plain write leaves it).
    let ctr = f.running("fetch").await;
    let good = rendered.0.clone();
    f.write(
        ".docker-mcp.yaml.pocketbase-crashed.tmp",
        &good[..good.len() / 2],
    );
    let cut = good.find("image: \"").unwrap() + "image: \"mcp-fle".len();
    f.write("docker-mcp.yaml", &good[..cut]);
    f.until(
        "mcp-fleet reports the half-written catalog",
        MIN,
        || async {
            let s = f.status()?;
            (!s["catalog"]["error"].is_null()).then_some(())
        },
    )
    .await;
    // Still no change after the controller has looked at `fetch` again with
    // the half-written render in force: two resyncs (--resync 2) later, which
    // is also past the time a removal waits for the catalog to settle.
    let reconciled = || f.log_count(&["reconciled", "server=\"fetch\""]);
    let looked = reconciled();
    f.until(
        "two reconciles of fetch after the half-written catalog",
        MIN,
        || async { (reconciled() >= looked + 2).then_some(()) },
    )
    .await;
    let same = f.running("fetch").await;
    assert_eq!(
        same.id,
        ctr.id,
        "the half-written render replaced the container\n{}",
        f.logs()
    );
    assert!(c.tool_names().await.contains(&"fetch".to_string()));
    // The next render (here: the test restores it atomically) is taken as is.
    f.write_atomic("docker-mcp.yaml", &good);
    f.until("catalog error cleared", MIN, || async {
        f.status()?["catalog"]["error"].is_null().then_some(())
    })
    .await;
    assert_eq!(f.running("fetch").await.id, ctr.id);

    // 5. Revoking removes the container and the tool; the session stays open.
    let _ = c
        .wait_list_changed("tools", Duration::from_millis(100))
        .await; // drain
    pb.set(&admin, &id, json!({"status": "revoked"}));
    assert!(!std::fs::read_to_string(&catalog).unwrap().contains("fetch"));
    f.gone("fetch").await;
    assert!(
        c.wait_list_changed("tools", MIN).await,
        "no tools/list_changed after revocation"
    );
    let names = c.tool_names().await;
    assert!(!names.contains(&"fetch".to_string()), "{names:?}");
    assert!(
        names.contains(&"mcp-find".to_string()),
        "same session still serves: {names:?}"
    );
    assert_eq!(pb.state(&agent, "fetch")["state"], "revoked");
    assert!(
        list_by_label(&f.docker, "io.mcp-fleet.server=fetch")
            .await
            .iter()
            .all(|x| !x.name.contains(&f.name))
    );
    // mcp-fleet was never restarted: one process, one run, one start-up.
    assert_eq!(f.controller_pid(), Some(mcp_fleet));
    assert!(alive(mcp_fleet));
    assert_eq!(f.logs().matches("gateway listening on").count(), 1);
    c.close().await;
    eprintln!("whole flow: {:?}", t0.elapsed());
}

/// The image builds here from a local base and runs as in compose: non-root,
/// the socket's group added, the config volume mounted, healthy on /health, and
/// a server from the mounted catalog gets a container.
///
/// It packages the debug binary of this test run (stripped of debug info), so
/// it needs no release build; `docker/build-image.sh` packages
/// `target/release/mcp-fleet` by default.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_builds_here_and_runs_a_catalog_server() {
    let f = Fleet::new("image").await;
    let base = docker_cli(&["images", "mcp-fleet-test/base", "--format", "{{.Tag}}"]);
    let base = base
        .lines()
        .next()
        .expect("a mcp-fleet-test/base image: run scripts/test");
    let tag = format!("mcp-fleet:test-{}", std::process::id());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let t = Instant::now();
    let out = Command::new(root.join("docker/build-image.sh"))
        .env("MCP_FLEET_BINARY", bin())
        .env("BASE", format!("mcp-fleet-test/base:{base}"))
        .env("TAG", &tag)
        .output()
        .expect("run docker/build-image.sh");
    assert!(
        out.status.success(),
        "image build failed:\n{}",
        stderr(&out)
    );
    eprintln!("image built in {:?}", t.elapsed());
    let image = Image(tag.clone());

    // The non-root user must read the catalog and write its status there.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    let sock = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let gid = std::fs::metadata(&sock)
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
        .expect("the engine's socket");
    let cid = docker_cli(&[
        "run",
        "-d",
        "--name",
        &format!("mcp-fleet-{}", f.name),
        "--group-add",
        &gid.to_string(),
        "-v",
        &format!("{sock}:/var/run/docker.sock"),
        "-v",
        &format!("{}:/config", f.dir.path().display()),
        "-p",
        "127.0.0.1:0:8811",
        &image.0,
        // The image's command plus this fleet's name and the test settings.
        "run",
        "--listen",
        "0.0.0.0:8811",
        "--no-auth",
        "--approval",
        "all",
        "--fleet",
        &f.name,
        "--resync",
        "2",
    ]);
    let _gw = Container(cid.clone());
    let user = docker_cli(&["inspect", "-f", "{{.Config.User}}", &cid]);
    assert_eq!(user, "10001:10001", "the image runs non-root");
    let port = docker_cli(&["port", &cid, "8811/tcp"]);
    let addr = port.lines().next().unwrap().to_string();
    let base_url = format!("http://{addr}");
    let ctr = f.running("time").await;
    assert_eq!(ctr.state, "running");
    let (code, v) = http(&base_url, "GET", "/health", None, None);
    assert_eq!((code, &v), (200, &json!({"status": "ok"})));
    f.until("the image's health check says healthy", MIN, || async {
        let h = docker_cli(&["inspect", "-f", "{{.State.Health.Status}}", &cid]);
        (h == "healthy").then_some(())
    })
    .await;
    let (code, v) = http(&base_url, "GET", "/status", None, None);
    assert_eq!(code, 200);
    assert_eq!(v["servers"]["time"]["phase"], "Running", "{v}");
}

struct Image(String);
impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

struct Container(String);
impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}
