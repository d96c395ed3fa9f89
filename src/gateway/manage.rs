//! The management tools (`mcp-find`, `mcp-add`, `mcp-remove`, with Docker's
//! argument names) as plain logic: argument checking, catalog search, and
//! edits of `registry.yaml` / `requests.yaml` that keep the rest of the file.
use std::collections::BTreeSet;
use std::sync::Arc;

use rmcp::model::{JsonObject, Tool};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::catalog::{ApprovalMode, DesiredState};
use crate::status::FleetStatus;

pub const FIND: &str = "mcp-find";
pub const ADD: &str = "mcp-add";
pub const REMOVE: &str = "mcp-remove";
pub const NAMES: [&str; 3] = [FIND, ADD, REMOVE];

/// What `mcp-add` / `mcp-remove` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AddPolicy {
    /// Refuse, with an explanation.
    Deny,
    /// Record a pending request in requests.yaml for a person to decide.
    Request,
    /// Change registry.yaml right away.
    Approve,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindArgs {
    pub query: String,
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddArgs {
    pub name: String,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveArgs {
    pub name: String,
}

fn schema(props: Value, required: &[&str]) -> Arc<JsonObject> {
    let v = json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
    match v {
        Value::Object(m) => Arc::new(m),
        _ => unreachable!(),
    }
}

/// The management tools as advertised in tools/list.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            FIND,
            "Search the catalog of MCP servers (name, title, description, tags, tool names). \
             Each match says whether it is approved and its current phase.",
            schema(
                json!({"query": {"type": "string", "description": "words to look for"},
                       "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "most matches to return (default 10)"}}),
                &["query"],
            ),
        ),
        Tool::new(
            ADD,
            "Ask for a catalog server to be added (approved) so its tools become available.",
            schema(
                json!({"name": {"type": "string", "description": "the catalog server name, as mcp-find shows it"},
                       "reason": {"type": "string", "description": "why it is needed (shown to whoever approves)"}}),
                &["name"],
            ),
        ),
        Tool::new(
            REMOVE,
            "Ask for a server to be removed (its approval revoked).",
            schema(
                json!({"name": {"type": "string", "description": "the server name"}}),
                &["name"],
            ),
        ),
    ]
}

/// Parses a tool's arguments; the error names the arguments that exist.
pub fn parse_args<T: DeserializeOwned>(tool: &str, args: Option<&JsonObject>) -> Result<T, String> {
    let value = Value::Object(args.cloned().unwrap_or_default());
    serde_json::from_value(value).map_err(|e| {
        let expected = match tool {
            FIND => "query (string, required), limit (integer, optional)",
            ADD => "name (string, required), reason (string, optional)",
            _ => "name (string, required)",
        };
        format!("invalid arguments for {tool}: {e}. Expected arguments: {expected}")
    })
}

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Match {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// `approved`, `pending` (a request is recorded) or `not approved`.
    pub approval: &'static str,
    pub phase: Option<String>,
    pub ready: Option<bool>,
    pub tools: Vec<String>,
}

/// Searches every catalog entry; best matches first. An empty query lists all.
pub fn find(
    query: &str,
    limit: usize,
    desired: &DesiredState,
    status: &FleetStatus,
    pending: &BTreeSet<String>,
) -> Vec<Match> {
    let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut scored: Vec<(u32, Match)> = desired
        .catalog
        .iter()
        .filter_map(|e| {
            let has = |text: &str, t: &str| text.to_lowercase().contains(t);
            let score: u32 = terms
                .iter()
                .map(|t| {
                    5 * u32::from(has(&e.name, t))
                        + 3 * u32::from(e.title.as_deref().is_some_and(|x| has(x, t)))
                        + 2 * u32::from(e.tags.iter().any(|x| has(x, t)))
                        + 2 * u32::from(e.tools.iter().any(|x| has(x, t)))
                        + u32::from(e.description.as_deref().is_some_and(|x| has(x, t)))
                })
                .sum();
            if !terms.is_empty() && score == 0 {
                return None;
            }
            let st = status.servers.get(&e.name);
            let approval = if desired.servers.contains_key(&e.name) {
                "approved"
            } else if pending.contains(&e.name) {
                "pending"
            } else {
                "not approved"
            };
            Some((
                score,
                Match {
                    name: e.name.clone(),
                    title: e.title.clone(),
                    description: e.description.clone(),
                    approval,
                    phase: st.map(|s| format!("{:?}", s.phase)),
                    ready: st.and_then(|s| s.ready.as_ref()).map(|c| c.status),
                    tools: e.tools.clone(),
                },
            ))
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.name.cmp(&b.1.name)));
    scored
        .into_iter()
        .take(limit.clamp(1, 50))
        .map(|(_, m)| m)
        .collect()
}

/// What `mcp-add` can do in this approval mode for `name`.
pub fn check_add(name: &str, desired: &DesiredState, mode: ApprovalMode) -> Result<bool, String> {
    if !desired.catalog.iter().any(|e| e.name == name) {
        return Err(format!(
            "`{name}` is not in the catalog; only catalog servers can be added (mcp-find lists them)"
        ));
    }
    let approved = desired.servers.contains_key(name);
    if !approved && mode == ApprovalMode::All {
        // In `all` mode every catalog entry is approved; not being in the
        // desired set means the entry itself is unusable.
        return Err(format!("`{name}` cannot be run: see its status"));
    }
    Ok(approved)
}

/// Adds `name` under `registry:`, keeping everything else in the file; with
/// `creator`, the entry records who added it (see `catalog::access`).
pub fn registry_add(
    text: Option<&str>,
    name: &str,
    creator: Option<&str>,
) -> Result<String, String> {
    let text = text.unwrap_or("");
    let before = registry_keys(text)?;
    if before.contains(name) {
        return Ok(text.to_string());
    }
    let entry = |indent: usize| {
        let pad = " ".repeat(indent);
        let creator = creator
            .map(|c| format!("{pad}  creator: {}\n", Value::String(c.to_string())))
            .unwrap_or_default();
        format!("{pad}{name}:\n{pad}  ref: \"\"\n{creator}")
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = lines.iter().position(|l| is_registry_header(l));
    let edited = match header {
        None => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("registry:\n");
            out.push_str(&entry(2));
            out
        }
        Some(i) => {
            lines[i] = "registry:".to_string();
            let indent = lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(|l| l.len() - l.trim_start().len())
                .filter(|n| *n > 0)
                .unwrap_or(2);
            lines.insert(i + 1, entry(indent).trim_end().to_string());
            lines.join("\n") + "\n"
        }
    };
    let mut expected = before;
    expected.insert(name.to_string());
    verify(edited, &expected)
}

/// Removes `name` from under `registry:`, keeping everything else.
pub fn registry_remove(text: &str, name: &str) -> Result<String, String> {
    let before = registry_keys(text)?;
    if !before.contains(name) {
        return Ok(text.to_string());
    }
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| is_registry_header(l))
        .ok_or("registry.yaml has no `registry:` block")?;
    let key = |l: &str| {
        let t = l.trim_start();
        let indent = l.len() - t.len();
        let k = t
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        (indent, k == name && t.contains(':'))
    };
    let start = (header + 1..lines.len())
        .find(|&i| {
            let (indent, hit) = key(lines[i]);
            indent > 0 && hit
        })
        .ok_or_else(|| format!("`{name}` not found as a block key in registry.yaml"))?;
    let indent = key(lines[start]).0;
    let end = (start + 1..lines.len())
        .find(|&i| {
            let l = lines[i];
            !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent
        })
        .unwrap_or(lines.len());
    let mut out: Vec<&str> = lines[..start].to_vec();
    out.extend_from_slice(&lines[end..]);
    let mut expected = before;
    expected.remove(name);
    let edited = out.join("\n") + "\n";
    verify(edited, &expected)
}

fn is_registry_header(l: &str) -> bool {
    let Some(rest) = l.strip_prefix("registry:") else {
        return false;
    };
    let rest = rest.split('#').next().unwrap_or_default().trim();
    matches!(rest, "" | "{}" | "null" | "~")
}

fn registry_keys(text: &str) -> Result<BTreeSet<String>, String> {
    if text.trim().is_empty() {
        return Ok(BTreeSet::new());
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| format!("registry.yaml: {e}"))?;
    Ok(match v.get("registry") {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        _ => BTreeSet::new(),
    })
}

/// A text edit is only used if the result parses to exactly what was meant.
fn verify(edited: String, expected: &BTreeSet<String>) -> Result<String, String> {
    match registry_keys(&edited) {
        Ok(keys) if &keys == expected => Ok(edited),
        _ => Err("registry.yaml has a layout this edit cannot keep; edit it by hand".into()),
    }
}

/// A pending request, as recorded in `requests.yaml`.
#[derive(Debug, Clone)]
pub struct Request {
    pub server: String,
    pub action: &'static str,
    pub reason: Option<String>,
    pub client: String,
    /// The id of the caller who asked.
    pub user: String,
    pub time: String,
}

/// Appends a request to `requests.yaml` (a `requests:` list).
pub fn request_append(text: Option<&str>, r: &Request) -> Result<String, String> {
    let mut out = text.unwrap_or("").to_string();
    if out.trim().is_empty() {
        out = "requests:\n".to_string();
    } else if !out.ends_with('\n') {
        out.push('\n');
    }
    // JSON strings are valid YAML double-quoted scalars.
    let q = |s: &str| Value::String(s.to_string()).to_string();
    out.push_str(&format!("  - server: {}\n", q(&r.server)));
    out.push_str(&format!("    action: {}\n", r.action));
    if let Some(reason) = &r.reason {
        out.push_str(&format!("    reason: {}\n", q(reason)));
    }
    out.push_str(&format!("    client: {}\n", q(&r.client)));
    out.push_str(&format!("    user: {}\n", q(&r.user)));
    out.push_str(&format!("    time: {}\n", q(&r.time)));
    let parsed: Value = serde_saphyr::from_str(&out).map_err(|e| format!("requests.yaml: {e}"))?;
    match parsed.get("requests") {
        Some(Value::Array(_)) => Ok(out),
        _ => Err("requests.yaml has no `requests:` list; fix it by hand".into()),
    }
}

/// Servers with a pending `add` request.
pub fn pending(text: Option<&str>) -> BTreeSet<String> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return BTreeSet::new();
    };
    let Ok(v) = serde_saphyr::from_str::<Value>(text) else {
        return BTreeSet::new();
    };
    v.get("requests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("action").and_then(Value::as_str).unwrap_or("add") == "add")
        .filter_map(|r| r.get("server").and_then(Value::as_str).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests;
