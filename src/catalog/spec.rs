//! A catalog entry normalised into exactly what shapes its container, and the
//! hash of that. Anything that does not change the container (description,
//! tools, key order, env order) is left out, so it never causes a recreate.
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::file::RawEntry;
use super::secrets::{Secret, Secrets};
use super::template::{self, Rendered, TemplateError};

/// Resource limits and hardening applied to every container (from flags).
/// Part of the spec: changing a limit recreates the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    pub read_only_rootfs: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 * 1024 * 1024,
            nano_cpus: 1_000_000_000,
            pids: 256,
            read_only_rootfs: true,
        }
    }
}

/// Everything that shapes one server's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub image: String,
    /// Command entries and env values may hold expanded secrets.
    pub command: Vec<Secret>,
    pub env: BTreeMap<String, Secret>,
    pub volumes: Vec<String>,
    pub user: Option<String>,
    pub network: bool,
    pub extra_hosts: Vec<String>,
    pub limits: Limits,
}

/// The spec as hashed: the values themselves (so a changed secret recreates
/// the container), in the JSON form hashes have always had, so upgrading
/// mcp-fleet does not replace running containers. Only its digest leaves.
#[derive(Serialize)]
struct Hashed<'a> {
    image: &'a str,
    command: Vec<&'a str>,
    env: BTreeMap<&'a str, &'a str>,
    volumes: &'a [String],
    user: &'a Option<String>,
    network: bool,
    extra_hosts: &'a [String],
    limits: Limits,
}

impl ServerSpec {
    /// A short, stable digest of the spec: the `io.mcp-fleet.spec-hash` label.
    /// 64 bits of SHA-256 over the canonical JSON form.
    pub fn hash(&self) -> String {
        let hashed = Hashed {
            image: &self.image,
            command: self.command.iter().map(Secret::expose).collect(),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose()))
                .collect(),
            volumes: &self.volumes,
            user: &self.user,
            network: self.network,
            extra_hosts: &self.extra_hosts,
            limits: self.limits,
        };
        let canonical = serde_json::to_vec(&hashed).expect("spec serialises");
        let digest = Sha256::digest(&canonical);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
impl ServerSpec {
    /// The smallest spec: an image and the default limits (for tests).
    pub fn of_image(image: &str) -> Self {
        ServerSpec {
            image: image.into(),
            command: vec![],
            env: Default::default(),
            volumes: vec![],
            user: None,
            network: false,
            extra_hosts: vec![],
            limits: Limits::default(),
        }
    }
}

/// A normalised container server, with what the user should know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerServer {
    pub spec: ServerSpec,
    pub hash: String,
    /// Non-fatal findings, e.g. a secret that is not set (named, never shown).
    pub warnings: Vec<String>,
    /// The catalog's tool-name prefix; not part of the spec (no container change).
    pub prefix: Option<String>,
}

/// Builds the spec of a container entry, or says why it cannot be built.
pub fn normalise(
    name: &str,
    entry: &RawEntry,
    image: &str,
    config: &Value,
    secrets: &Secrets,
    limits: Limits,
) -> Result<ContainerServer, String> {
    let schema = EntrySchema(&entry.config);
    let mut warnings = Vec::new();

    // Secrets first: env values and command entries may refer to them as $VAR.
    let mut secret_env = BTreeMap::new();
    for s in &entry.secrets {
        match secrets.lookup(&s.env, &s.name) {
            Some(v) => {
                secret_env.insert(s.env.clone(), v.clone());
            }
            None => warnings.push(format!(
                "secret `{}` (env {}) is not set in the secrets file",
                s.name, s.env
            )),
        }
    }
    let vars = |t: String| Secret::new(expand_vars(&t, &secret_env, secrets));

    let mut env = BTreeMap::new();
    for e in &entry.env {
        let Some(raw) = &e.value else { continue };
        match template::render(raw, config, &schema) {
            Ok(r) => {
                env.insert(e.name.clone(), vars(flatten(r)));
            }
            Err(TemplateError::OptionalMissing { .. }) => {}
            Err(err) => return Err(format!("env {}: {err}", e.name)),
        }
    }
    env.extend(secret_env.clone());

    let command = render_list(&entry.command, config, &schema, "command")?
        .into_iter()
        .map(vars)
        .collect();
    let mut volumes = render_list(&entry.volumes, config, &schema, "volumes")?;
    volumes.sort();
    volumes.dedup();
    let user = match &entry.user {
        Some(u) => match template::render(u, config, &schema) {
            Ok(r) => Some(flatten(r)).filter(|u| !u.is_empty()),
            Err(TemplateError::OptionalMissing { .. }) => None,
            Err(err) => return Err(format!("user: {err}")),
        },
        None => None,
    };
    let mut extra_hosts = entry.extra_hosts.clone();
    extra_hosts.sort();
    if !entry.allow_hosts.is_empty() && !entry.disable_network {
        warnings.push(format!(
            "allowHosts is not enforced by mcp-fleet: {name} gets the full network"
        ));
    }

    let spec = ServerSpec {
        image: image.to_string(),
        command,
        env,
        volumes,
        user,
        network: !entry.disable_network,
        extra_hosts,
        limits,
    };
    Ok(ContainerServer {
        hash: spec.hash(),
        spec,
        warnings,
        prefix: None,
    })
}

fn flatten(r: Rendered) -> String {
    match r {
        Rendered::Text(t) => t,
        Rendered::List(l) => l.join(","),
    }
}

fn render_list(
    items: &[String],
    config: &Value,
    schema: &EntrySchema,
    field: &str,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in items {
        match template::render(item, config, schema) {
            Ok(Rendered::Text(t)) => out.push(t),
            Ok(Rendered::List(l)) => out.extend(l),
            Err(TemplateError::OptionalMissing { .. }) => {}
            Err(err) => return Err(format!("{field}: {err}")),
        }
    }
    Ok(out)
}

/// `$NAME` references in a remote entry's header values, from the secrets file.
pub fn expand_secrets(text: &str, secrets: &Secrets) -> Secret {
    Secret::new(expand_vars(text, &BTreeMap::new(), secrets))
}

/// Replaces `$NAME` / `${NAME}` with the server's secret (or another value of
/// the secrets file). An unknown name is left as written, never made empty.
fn expand_vars(text: &str, own: &BTreeMap<String, Secret>, all: &Secrets) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = (!name.is_empty())
            .then(|| own.get(name).or_else(|| all.get(name)))
            .flatten()
            .map(Secret::expose);
        match value {
            Some(v) => {
                out.push_str(v);
                rest = &after[consumed..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The entry's `config` JSON schemas: a path is optional when it is declared
/// and its parent does not list it under `required`.
struct EntrySchema<'a>(&'a [Value]);

impl template::Schema for EntrySchema<'_> {
    fn is_optional(&self, path: &str) -> bool {
        let mut segs = path.split('.').map(str::trim);
        let Some(top) = segs.next() else { return false };
        let Some(mut node) = self
            .0
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(top))
        else {
            return false;
        };
        let mut required = false;
        for seg in segs {
            required = node
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|k| k.as_str() == Some(seg)));
            match node.get("properties").and_then(|p| p.get(seg)) {
                Some(child) => node = child,
                None => return false,
            }
        }
        !required
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::file::{RawEnv, RawSecret};
    use serde_json::json;

    fn entry() -> RawEntry {
        RawEntry {
            image: Some("mcp/x:1".into()),
            command: vec!["--a".into(), "--token=$TOK".into()],
            env: vec![
                RawEnv {
                    name: "B".into(),
                    value: Some("2".into()),
                },
                RawEnv {
                    name: "A".into(),
                    value: Some("{{x.host}}".into()),
                },
            ],
            secrets: vec![RawSecret {
                name: "x.token".into(),
                env: "TOK".into(),
            }],
            config: vec![
                json!({"name": "x", "properties": {"host": {}, "opt": {}}, "required": ["host"]}),
            ],
            ..Default::default()
        }
    }

    fn build(e: &RawEntry, cfg: Value, secrets: &str) -> Result<ContainerServer, String> {
        normalise(
            "x",
            e,
            "mcp/x:1",
            &cfg,
            &Secrets::parse(secrets),
            Limits::default(),
        )
    }

    #[test]
    fn renders_env_secrets_and_command() {
        let s = build(&entry(), json!({"x": {"host": "h"}}), "TOK=s3cret\n").unwrap();
        assert_eq!(s.spec.env["A"].expose(), "h");
        assert_eq!(s.spec.env["TOK"].expose(), "s3cret");
        let command: Vec<_> = s.spec.command.iter().map(Secret::expose).collect();
        assert_eq!(command, ["--a", "--token=s3cret"]);
        assert!(s.warnings.is_empty());
        assert!(
            !format!("{:?}", s).contains("s3cret"),
            "Debug leaks a secret"
        );
    }

    #[test]
    fn missing_required_config_is_an_error_naming_the_key() {
        let err = build(&entry(), json!({}), "").unwrap_err();
        assert!(err.contains("env A") && err.contains("x.host"), "{err}");
    }

    #[test]
    fn optional_config_drops_the_variable() {
        let mut e = entry();
        e.env.push(RawEnv {
            name: "O".into(),
            value: Some("{{x.opt}}".into()),
        });
        let s = build(&e, json!({"x": {"host": "h"}}), "TOK=1").unwrap();
        assert!(!s.spec.env.contains_key("O"));
    }

    #[test]
    fn missing_secret_is_a_warning_and_not_invented() {
        let s = build(&entry(), json!({"x": {"host": "h"}}), "").unwrap();
        assert!(!s.spec.env.contains_key("TOK"));
        assert_eq!(s.spec.command[1].expose(), "--token=$TOK");
        assert_eq!(s.warnings.len(), 1);
    }

    #[test]
    fn hash_ignores_env_order_and_descriptions_but_not_values() {
        let cfg = json!({"x": {"host": "h"}});
        let a = build(&entry(), cfg.clone(), "TOK=1").unwrap();
        let mut e = entry();
        e.env.reverse();
        e.description = Some("changed".into());
        e.title = Some("T".into());
        let b = build(&e, cfg.clone(), "TOK=1").unwrap();
        assert_eq!(a.hash, b.hash);
        let c = build(&entry(), cfg.clone(), "TOK=2").unwrap();
        assert_ne!(a.hash, c.hash, "a secret change must recreate");
        let d = build(&entry(), json!({"x": {"host": "other"}}), "TOK=1").unwrap();
        assert_ne!(a.hash, d.hash);
        assert_eq!(a.hash.len(), 16);
    }

    #[test]
    fn hash_is_the_one_earlier_versions_gave() {
        // Computed before values were held as `Secret`: an upgrade must not
        // replace every running container.
        let mut e = entry();
        e.env.remove(0);
        e.volumes = vec!["/a:/b".into()];
        let s = build(&e, json!({"x": {"host": "h"}}), "TOK=s3cret\n").unwrap();
        assert_eq!(s.hash, "abd70ee7cff026fa");
    }

    #[test]
    fn hash_changes_with_limits() {
        let cfg = json!({"x": {"host": "h"}});
        let a = build(&entry(), cfg.clone(), "").unwrap();
        let mut limits = Limits::default();
        limits.pids += 1;
        let b = normalise("x", &entry(), "mcp/x:1", &cfg, &Secrets::default(), limits).unwrap();
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn expand_vars_forms() {
        let own = BTreeMap::from([("A".to_string(), Secret::new("1"))]);
        let all = Secrets::parse("B=2");
        assert_eq!(expand_vars("$A-${B}-$C-$", &own, &all), "1-2-$C-$");
    }
}
