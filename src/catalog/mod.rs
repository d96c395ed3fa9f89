//! Desired state: what the config directory says should run.
//!
//! Reads the catalog (`docker-mcp.yaml`), the approval state (`registry.yaml`,
//! or "everything in the catalog is approved"), per-server values
//! (`config.yaml`) and secrets (`mcp.env`), and turns every approved entry into
//! a [`Desired`] server. A file that cannot be used as a whole is an `Err`, and
//! the caller keeps its last good state; a bad entry only marks that server.
pub mod access;
pub mod file;
pub mod secrets;
pub mod snapshot;
pub mod spec;
pub mod template;
pub mod url;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

pub use file::{CatalogFile, RawEntry, parse_catalog};
pub use secrets::{Secret, Secrets};
pub use spec::{ContainerServer, Limits, ServerSpec};
pub use url::RemoteUrl;

use crate::{Error, Result};

pub const CATALOG_FILE: &str = "docker-mcp.yaml";
pub const REGISTRY_FILE: &str = "registry.yaml";
pub const CONFIG_FILE: &str = "config.yaml";
pub const SECRETS_FILE: &str = "mcp.env";

/// A place in a config file, shown as `file:line:col` (or just `file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    pub file: PathBuf,
    pub line: Option<(u64, u64)>,
}

impl SourcePos {
    pub fn file(path: &Path) -> Self {
        SourcePos {
            file: path.to_path_buf(),
            line: None,
        }
    }

    pub fn at(path: &Path, loc: &serde_saphyr::Location) -> Self {
        let line = (loc.line() > 0).then(|| (loc.line(), loc.column()));
        SourcePos {
            file: path.to_path_buf(),
            line,
        }
    }
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((l, c)) => write!(f, "{}:{l}:{c}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// Which catalog servers are approved to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApprovalMode {
    /// Every server in the catalog (the catalog holds only approved servers).
    All,
    /// Only servers listed in `registry.yaml`.
    Registry,
}

impl ApprovalMode {
    /// `registry` when `registry.yaml` exists, else `all`.
    pub fn detect(dir: &Path) -> Self {
        if dir.join(REGISTRY_FILE).exists() {
            ApprovalMode::Registry
        } else {
            ApprovalMode::All
        }
    }
}

/// One approved server as the catalog wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// A container server, fully rendered.
    Container(ContainerServer),
    /// Reached over HTTP by the gateway; no container. Header values may
    /// hold secrets (expanded from the secrets file).
    Remote {
        url: RemoteUrl,
        transport: String,
        headers: BTreeMap<String, Secret>,
        prefix: Option<String>,
    },
    /// Recognised but not run by mcp-fleet (e.g. `poci` tool groups).
    Unsupported { reason: String },
    /// The entry cannot be used; `error` says where and why.
    Invalid { error: String },
}

/// What `mcp-find` searches: every catalog entry, approved or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub tools: Vec<String>,
}

/// Everything the config directory asks for, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub servers: BTreeMap<String, Desired>,
    /// Every usable catalog entry, in file order.
    pub catalog: Vec<Summary>,
    /// Findings that concern no approved server (e.g. an approved name that is
    /// not in the catalog, an invalid entry nobody approved).
    pub warnings: Vec<String>,
    /// Who may use each catalog server (kept apart from the specs, so a rule
    /// change never touches a container).
    pub access: BTreeMap<String, access::AccessRule>,
}

/// What loading needs besides the directory.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub approval: ApprovalMode,
    pub limits: Limits,
    /// A catalog that does not end in a newline is taken as still being
    /// written until it has been left alone this long.
    pub settle: Duration,
}

/// Reads the config directory into a desired state.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<DesiredState> {
    let inputs = snapshot::Inputs::read(dir)?;
    let catalog_path = dir.join(CATALOG_FILE);
    let text = inputs.catalog.ok_or_else(|| Error::Config {
        pos: SourcePos::file(&catalog_path),
        message: "catalog not found".into(),
    })?;
    if !inputs.published {
        check_complete(&catalog_path, &text, opts.settle)?;
    }
    let catalog = parse_catalog(&catalog_path, &text)?;

    let approved = match opts.approval {
        ApprovalMode::All => None,
        ApprovalMode::Registry => Some(parse_registry(
            &dir.join(REGISTRY_FILE),
            inputs.registry.as_deref(),
        )?),
    };
    let mut config = parse_yaml_value(&dir.join(CONFIG_FILE), inputs.config.as_deref())?;
    if let Some(reg) = &approved {
        overlay_registry_config(&mut config, reg);
    }
    let secrets = inputs
        .secrets
        .map(|t| Secrets::parse(&t))
        .unwrap_or_default();

    Ok(resolve(
        &catalog,
        approved.as_ref(),
        &config,
        &secrets,
        opts.limits,
    ))
}

/// Turns a parsed catalog plus approval, config and secrets into the desired
/// servers. Pure: the unit tests drive it directly.
pub fn resolve(
    catalog: &CatalogFile,
    approved: Option<&BTreeMap<String, Value>>,
    config: &Value,
    secrets: &Secrets,
    limits: Limits,
) -> DesiredState {
    let mut state = DesiredState::default();
    let is_approved = |name: &str| approved.is_none_or(|a| a.contains_key(name));
    let mut seen = BTreeSet::new();
    for e in &catalog.entries {
        // A server defined twice is invalid at its first definition, whose
        // error names every line; the others add nothing.
        if !seen.insert(e.name.as_str()) {
            continue;
        }
        if let Ok(raw) = &e.entry {
            let entry = approved.and_then(|a| a.get(&e.name));
            let rule = access::rule(&e.name, raw.fleet.as_ref(), entry).unwrap_or_else(|err| {
                state.warnings.push(err);
                access::AccessRule::admins_only()
            });
            state.access.insert(e.name.clone(), rule);
            let meta = raw.metadata.clone().unwrap_or_default();
            state.catalog.push(Summary {
                name: e.name.clone(),
                title: raw.title.clone(),
                description: raw.description.clone(),
                tags: meta.tags.into_iter().chain(meta.category).collect(),
                tools: raw.tools.iter().map(|t| t.name.clone()).collect(),
            });
        }
        let desired = match &e.entry {
            Err(err) => Desired::Invalid {
                error: format!("{}: server `{}`: {err}", e.pos, e.name),
            },
            Ok(_) if !valid_name(&e.name) => Desired::Invalid {
                error: format!(
                    "{}: server name `{}` must match [A-Za-z0-9][A-Za-z0-9_.-]*",
                    e.pos, e.name
                ),
            },
            Ok(raw) => classify(&e.name, raw, config, secrets, limits).unwrap_or_else(|err| {
                Desired::Invalid {
                    error: format!("{}: server `{}`: {err}", e.pos, e.name),
                }
            }),
        };
        if is_approved(&e.name) {
            state.servers.insert(e.name.clone(), desired);
        } else if let Desired::Invalid { error } = desired {
            state.warnings.push(error);
        }
    }
    for name in approved.into_iter().flat_map(|a| a.keys()) {
        if !seen.contains(name.as_str()) {
            state.warnings.push(format!(
                "server `{name}` is approved in {REGISTRY_FILE} but not in the catalog"
            ));
        }
    }
    state
}

/// Docker's rule: `image` makes a container server, `sseEndpoint` or
/// `remote.url` a remote one, anything else is a `poci` tool group.
fn classify(
    name: &str,
    raw: &RawEntry,
    config: &Value,
    secrets: &Secrets,
    limits: Limits,
) -> Result<Desired, String> {
    if let Some(image) = raw.image.as_deref().filter(|i| !i.trim().is_empty()) {
        return spec::normalise(name, raw, image.trim(), config, secrets, limits).map(|c| {
            Desired::Container(ContainerServer {
                prefix: raw.prefix.clone(),
                ..c
            })
        });
    }
    let remote_url = raw.remote.as_ref().and_then(|r| r.url.clone());
    if let Some(url) = remote_url.or_else(|| raw.sse_endpoint.clone()) {
        let (transport, headers) = match &raw.remote {
            Some(r) if r.url.is_some() => (
                r.transport_type.clone().unwrap_or_else(|| "sse".into()),
                r.headers
                    .iter()
                    .map(|(k, v)| (k.clone(), spec::expand_secrets(v.expose(), secrets)))
                    .collect(),
            ),
            _ => ("sse".to_string(), BTreeMap::new()),
        };
        return Ok(Desired::Remote {
            url,
            transport,
            headers,
            prefix: raw.prefix.clone(),
        });
    }
    Ok(Desired::Unsupported {
        reason: "poci tool groups (a container per tool call) are not supported by mcp-fleet"
            .into(),
    })
}

/// Names end up in container names: `mcp-fleet-<fleet>-<server>`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128
}

/// A writer that replaces the file in place can be seen half-way. Such a file
/// usually lacks its final newline; give it `settle` to finish.
fn check_complete(path: &Path, text: &str, settle: Duration) -> Result<()> {
    if text.is_empty() || text.ends_with('\n') {
        return Ok(());
    }
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    match settle.checked_sub(age) {
        Some(wait) if !wait.is_zero() => Err(Error::Incomplete {
            path: path.to_path_buf(),
            retry_after: wait,
        }),
        _ => Ok(()),
    }
}

/// A missing file is an empty map; an empty or unparsable one is an error
/// (it may be half-written).
fn parse_yaml_value(path: &Path, text: Option<&str>) -> Result<Value> {
    let Some(text) = text else {
        return Ok(Value::Object(Default::default()));
    };
    if text.trim().is_empty() {
        return Err(Error::Config {
            pos: SourcePos::file(path),
            message: "file is empty".into(),
        });
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| file::yaml_error(path, &e))?;
    match v {
        Value::Null => Ok(Value::Object(Default::default())),
        v @ Value::Object(_) => Ok(v),
        _ => Err(Error::Config {
            pos: SourcePos::file(path),
            message: "expected a map at the top level".into(),
        }),
    }
}

/// `registry.yaml`: `registry: {name: {ref: "", config: {...}}}`. A missing
/// file approves nothing, as with Docker.
fn parse_registry(path: &Path, text: Option<&str>) -> Result<BTreeMap<String, Value>> {
    let doc = parse_yaml_value(path, text)?;
    match doc.get("registry") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Some(_) => Err(Error::Config {
            pos: SourcePos::file(path),
            message: "`registry` must be a map of server names".into(),
        }),
    }
}

/// A registry entry's own `config:` overrides `config.yaml` for that server.
fn overlay_registry_config(config: &mut Value, registry: &BTreeMap<String, Value>) {
    let Value::Object(root) = config else { return };
    for (name, entry) in registry {
        if let Some(Value::Object(own)) = entry.get("config") {
            let key = name.replace('.', "_");
            let slot = root
                .entry(key)
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(m) = slot {
                m.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests;
