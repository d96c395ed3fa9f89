//! The real PocketBase binary (`MCP_FLEET_POCKETBASE`, scripts/pocketbase-env.sh)
//! serving a copy of `examples/pocketbase`, and a small HTTP client for it.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::stderr;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pocketbase");
/// The superuser the admin side logs in as.
pub const ADMIN: (&str, &str) = ("admin@example.test", "admin-password-1");

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

/// One request with an optional `Authorization` and JSON body; returns
/// (status, JSON body, or null).
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(t) = token {
        headers.push(("Authorization", t));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, text) = super::raw_http(base, method, path, &headers, &body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The real PocketBase, serving a copy of the example's hooks and migrations,
/// rendering into `config_dir` (the volume mcp-fleet watches).
pub struct PocketBase {
    pub base: String,
    data: tempfile::TempDir,
    child: Child,
}

impl PocketBase {
    pub async fn start(config_dir: &Path) -> Self {
        Self::start_env(config_dir, &[]).await
    }

    /// Like [`PocketBase::start`], with more environment for the hooks.
    pub async fn start_env(config_dir: &Path, env: &[(&str, &Path)]) -> Self {
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
            .envs(env.iter().copied())
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("pocketbase.log")).unwrap_or_default()
    }

    pub fn login(&self, collection: &str, (email, password): (&str, &str)) -> String {
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

    /// Creates a user (as the superuser `admin`) and logs it in.
    pub fn user(&self, admin: &str, (email, password): (&str, &str)) -> String {
        let user = json!({"email": email, "password": password, "passwordConfirm": password});
        let path = "/api/collections/users/records";
        let (code, v) = http(&self.base, "POST", path, Some(admin), Some(user));
        assert_eq!(code, 200, "create user {email}: {v}");
        self.login("users", (email, password))
    }

    pub fn request(&self, token: Option<&str>, server: &str, session: &str) -> (u16, Value) {
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
    pub fn set(&self, admin: &str, id: &str, fields: Value) -> Value {
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

    pub fn records(&self, token: &str, server: &str) -> Vec<Value> {
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

    pub fn state(&self, token: &str, server: &str) -> Value {
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
