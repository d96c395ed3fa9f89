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

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mcp_client::{McpClient, McpTransport};
use common::*;
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pocketbase");
const ADMIN: (&str, &str) = ("admin@example.test", "admin-password-1");
const AGENT: (&str, &str) = ("agent@example.test", "agent-password-1");

fn pocketbase_bin() -> String {
    match std::env::var("MCP_FLEET_POCKETBASE") {
        Ok(p) if !p.is_empty() && Path::new(&p).exists() => p,
        other => panic!(
            "MCP_FLEET_POCKETBASE is not set or missing ({other:?}): this test runs the real \
             PocketBase binary. Run the tests with scripts/test, or first: \
             eval \"$(scripts/pocketbase-env.sh)\""
        ),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 request (no chunked answers); returns (status, JSON body).
fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let text = out.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(text).unwrap_or(Value::Null))
}

/// The real PocketBase, serving a copy of the example's hooks and migrations,
/// rendering into `config_dir` (the volume mcp-fleet watches).
struct PocketBase {
    base: String,
    data: tempfile::TempDir,
    child: Child,
}

impl PocketBase {
    async fn start(config_dir: &Path) -> Self {
        let bin = pocketbase_bin();
        let data = tempfile::tempdir().unwrap();
        for sub in ["pb_hooks", "pb_migrations"] {
            std::fs::create_dir_all(data.path().join(sub)).unwrap();
            for f in std::fs::read_dir(Path::new(EXAMPLE).join(sub)).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, data.path().join(sub).join(f.file_name().unwrap())).unwrap();
            }
        }
        let pb_data = data.path().join("pb_data");
        // The superuser the admin side uses (PocketBase's own CLI; applies migrations).
        let out = Command::new(&bin)
            .args(["superuser", "upsert", ADMIN.0, ADMIN.1, "--dir"])
            .arg(&pb_data)
            .arg("--migrationsDir")
            .arg(data.path().join("pb_migrations"))
            .output()
            .expect("run pocketbase superuser upsert");
        assert!(out.status.success(), "superuser upsert: {}", stderr(&out));
        let port = free_port();
        let log = std::fs::File::create(data.path().join("pocketbase.log")).unwrap();
        let child = Command::new(&bin)
            .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"])
            .arg(&pb_data)
            .arg("--hooksDir")
            .arg(data.path().join("pb_hooks"))
            .arg("--migrationsDir")
            .arg(data.path().join("pb_migrations"))
            .env("MCP_CONFIG_DIR", config_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn pocketbase");
        let pb = PocketBase {
            base: format!("http://127.0.0.1:{port}"),
            data,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http(&pb.base, "GET", "/api/health", None, None).0 == 200;
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PocketBase did not start:\n{}",
                pb.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pb
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("pocketbase.log")).unwrap_or_default()
    }

    fn login(&self, collection: &str, (email, password): (&str, &str)) -> String {
        let (code, v) = http(
            &self.base,
            "POST",
            &format!("/api/collections/{collection}/auth-with-password"),
            None,
            Some(json!({"identity": email, "password": password})),
        );
        assert_eq!(code, 200, "login {collection}: {v}");
        v["token"].as_str().unwrap().to_string()
    }

    fn request(&self, token: Option<&str>, server: &str, session: &str) -> (u16, Value) {
        http(
            &self.base,
            "POST",
            "/api/pocketcoder/mcp_request",
            token,
            Some(
                json!({"server_name": server, "reason": "the agent needs it", "session_id": session}),
            ),
        )
    }

    /// The admin's side: a superuser PATCH of the record, as the admin UI does.
    fn set(&self, admin: &str, id: &str, fields: Value) -> Value {
        let (code, v) = http(
            &self.base,
            "PATCH",
            &format!("/api/collections/mcp_servers/records/{id}"),
            Some(admin),
            Some(fields),
        );
        assert_eq!(code, 200, "PATCH {id}: {v}\n{}", self.log());
        v
    }

    fn records(&self, token: &str, server: &str) -> Vec<Value> {
        let (code, v) = http(
            &self.base,
            "GET",
            &format!(
                "/api/collections/mcp_servers/records?filter=(name%3D%27{server}%27)&perPage=50"
            ),
            Some(token),
            None,
        );
        assert_eq!(code, 200, "{v}");
        v["items"].as_array().unwrap().clone()
    }

    fn state(&self, token: &str, server: &str) -> Value {
        let (code, v) = http(
            &self.base,
            "GET",
            &format!("/api/pocketcoder/mcp_status?server_name={server}"),
            Some(token),
            None,
        );
        assert_eq!(code, 200, "{v}");
        v
    }
}

impl Drop for PocketBase {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let (code, v) = http(
        &pb.base,
        "POST",
        "/api/collections/users/records",
        Some(&admin),
        Some(json!({"email": AGENT.0, "password": AGENT.1, "passwordConfirm": AGENT.1})),
    );
    assert_eq!(code, 200, "create agent user: {v}");
    let agent = pb.login("users", AGENT);

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
        same.id, ctr.id,
        "the half-written render replaced the container"
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
