//! The PocketCoder flow with identities (issue 11): the real PocketBase
//! running `examples/pocketbase` issues an agent a gateway token (a JWT signed
//! with a secret file it shares with mcp-fleet), verified here by PyJWT, and
//! renders each server's required roles and creator into `registry.yaml`.
//!
//! Needs `MCP_FLEET_POCKETBASE`, `MCP_FLEET_PYTHON` and `DOCKER_HOST`, as
//! tests/pocketcoder.rs does: `scripts/test` sets all three.
mod common;

use std::path::Path;
use std::process::Command;

use common::mcp_client::{McpClient, McpTransport};
use common::pocketbase::{ADMIN, PocketBase, http};
use common::*;
use serde_json::{Value, json};

const AGENT: (&str, &str) = ("agent@example.test", "agent-password-1");

/// The secret PocketBase signs gateway tokens with and mcp-fleet verifies
/// them with: one file both read.
const JWT_SECRET: &str = "pocketcoder-gateway-jwt-secret-0123456789";

/// The claims of `token` if it verifies with `secret` (HS256, audience
/// mcp-fleet, issuer pocketcoder), checked by PyJWT; else PyJWT's error.
fn verify(token: &str, secret: &str) -> Result<Value, String> {
    let script = "import json, sys, jwt\n\
        try:\n    \
            c = jwt.decode(sys.argv[1], sys.argv[2], algorithms=['HS256'], audience='mcp-fleet', issuer='pocketcoder', options={'require': ['exp', 'iat', 'sub']})\n    \
            print(json.dumps(c))\n\
        except jwt.PyJWTError as e:\n    \
            print(json.dumps({'error': type(e).__name__}))\n";
    let out = Command::new(common::mcp_client::python())
        .args(["-c", script, token, secret])
        .output()
        .expect("run PyJWT");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    match v.get("error") {
        Some(e) => Err(e.as_str().unwrap().to_string()),
        None => Ok(v),
    }
}

/// PocketBase with a superuser, an agent user with `role` (set by the
/// superuser), and the gateway token secret; returns (pb, admin, agent token,
/// agent id).
async fn with_agent(f: &Fleet, role: &str) -> (PocketBase, String, String, String) {
    f.write("gateway-jwt-secret", &format!("{JWT_SECRET}\n"));
    let secret = f.path("gateway-jwt-secret");
    let pb = PocketBase::start_env(
        f.dir.path(),
        &[("MCP_GATEWAY_JWT_SECRET_FILE", secret.as_path())],
    )
    .await;
    let admin = pb.login("_superusers", ADMIN);
    let user = json!({"email": AGENT.0, "password": AGENT.1, "passwordConfirm": AGENT.1,
        "name": "Agent Smith", "role": role});
    let (code, v) = http(
        &pb.base,
        "POST",
        "/api/collections/users/records",
        Some(&admin),
        Some(user),
    );
    assert_eq!(code, 200, "create agent user: {v}");
    let id = v["id"].as_str().unwrap().to_string();
    let agent = pb.login("users", AGENT);
    (pb, admin, agent, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn pocketbase_issues_an_agent_a_gateway_token_with_its_identity() {
    let f = Fleet::new("pc-token").await;
    let (pb, admin, agent, id) = with_agent(&f, "dev").await;
    let path = "/api/pocketcoder/gateway_token";

    let (code, v) = http(&pb.base, "POST", path, None, None);
    assert_eq!(code, 401, "{v}");
    let (code, v) = http(&pb.base, "POST", path, Some(&agent), None);
    assert_eq!(code, 200, "{v}\n{}", pb.log());
    assert_eq!(v["token_type"], "Bearer");
    let token = v["token"].as_str().unwrap();
    let claims = verify(token, JWT_SECRET).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert_eq!(claims["sub"], id.as_str(), "{claims}");
    assert_eq!(claims["name"], "Agent Smith");
    assert_eq!(claims["role"], "dev");
    assert_eq!(claims["roles"], json!(["dev"]));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=900).contains(&lifetime), "short-lived: {lifetime}s");
    assert_eq!(v["expires_in"].as_i64(), Some(lifetime));
    assert_eq!(
        verify(token, "another-secret").unwrap_err(),
        "InvalidSignatureError"
    );

    // Only a superuser gives roles: not the agent itself, not a sign-up.
    let users = "/api/collections/users/records";
    let me = format!("{users}/{id}");
    let edit_self = |fields: Value| http(&pb.base, "PATCH", &me, Some(&agent), Some(fields));
    let (code, v) = edit_self(json!({"role": "mcp.admin"}));
    assert_ne!(code, 200, "an agent gave itself a role: {v}");
    let (code, v) = edit_self(json!({"name": "Smith"}));
    assert_eq!(
        code, 200,
        "an agent may still edit the rest of its record: {v}"
    );
    let signup = json!({"email": "x@example.test", "password": AGENT.1, "passwordConfirm": AGENT.1, "role": "mcp.admin"});
    let (code, v) = http(&pb.base, "POST", users, None, Some(signup));
    assert_ne!(code, 200, "a sign-up chose its role: {v}");
    let (_, me) = http(
        &pb.base,
        "GET",
        &format!("{users}/{id}"),
        Some(&admin),
        None,
    );
    assert_eq!(me["role"], "dev", "{me}");

    // A server's required roles and creator reach the approval state.
    let (code, v) = pb.request(Some(&agent), "time", "s1");
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["creator"], id.as_str());
    let record = v["id"].as_str().unwrap();
    pb.set(
        &admin,
        record,
        json!({"status": "approved", "image": TIME, "required_roles": ["dev", "ops"]}),
    );
    let registry = std::fs::read_to_string(f.path("registry.yaml")).unwrap();
    assert!(
        registry.contains(&format!(
            "  time:\n    ref: \"\"\n    required_roles: [\"dev\", \"ops\"]\n    creator: \"{id}\"\n"
        )),
        "{registry}"
    );
    assert!(
        std::fs::read_to_string(f.path("docker-mcp.yaml"))
            .unwrap()
            .contains("  time:\n")
    );
    assert!(!pb.log().contains(JWT_SECRET));
}

/// How mcp-fleet is told to verify PocketBase's gateway tokens (HS256 with a
/// shared secret file). PocketBase's claims: `sub` (id), `name`, `roles`
/// (list) and `role`; `iss` pocketcoder, `aud` mcp-fleet.
fn gateway_jwt_args(secret: &Path) -> Vec<String> {
    vec![
        "--jwt-secret-file".into(),
        secret.display().to_string(),
        "--jwt-audience".into(),
        "mcp-fleet".into(),
        "--jwt-issuer".into(),
        "pocketcoder".into(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agents_session_lists_only_what_its_role_allows() {
    let mut f = Fleet::new("pc-roles").await;
    let (pb, admin, agent, _) = with_agent(&f, "dev").await;
    // The agent asks for `time`, the admin for `fetch` (a creator may use what
    // it asked for, whatever the roles); the admin approves one for `dev`, one
    // for `ops`.
    for (server, image, roles, asker) in [
        ("time", TIME, ["dev"], &agent),
        ("fetch", FETCH, ["ops"], &admin),
    ] {
        let (code, v) = pb.request(Some(asker), server, "s1");
        assert_eq!(code, 201, "{v}");
        let id = v["id"].as_str().unwrap();
        let approve = json!({"status": "approved", "image": image, "required_roles": roles, "config": {"network": false}});
        pb.set(&admin, id, approve);
    }
    let mut args = gateway_jwt_args(&f.path("gateway-jwt-secret"));
    args.extend(["--approval".into(), "registry".into()]);
    f.start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    f.ready("time").await;
    f.ready("fetch").await;

    // The agent asks PocketBase for a gateway token and opens its session with it.
    let (code, v) = http(
        &pb.base,
        "POST",
        "/api/pocketcoder/gateway_token",
        Some(&agent),
        None,
    );
    assert_eq!(code, 200, "{v}");
    let token = v["token"].as_str().unwrap();
    let gateway = f.gateway_url().await;
    let mut c = McpClient::connect(&format!("{gateway}/sse"), McpTransport::Sse, Some(token)).await;
    let tools = c.tool_names().await;
    assert!(tools.contains(&"get_current_time".to_string()), "{tools:?}");
    assert!(!tools.contains(&"fetch".to_string()), "{tools:?}");
    // A hidden tool is answered exactly like one that does not exist.
    let call = |name: &str| json!({"cmd": "call", "name": name, "arguments": {}});
    let hidden = c.send(call("fetch")).await;
    let unknown = c.send(call("no_such_tool")).await;
    assert_eq!(
        hidden["error"].as_str().map(|e| e.replace("fetch", "X")),
        unknown["error"]
            .as_str()
            .map(|e| e.replace("no_such_tool", "X")),
        "{hidden} vs {unknown}"
    );
    c.close().await;
}
