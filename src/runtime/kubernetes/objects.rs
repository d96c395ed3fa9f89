//! The objects one server's workload is made of, as plain data: its Pod,
//! its Secret (env values and command arguments, which may hold secrets,
//! never inline in the Pod) and its deny-all NetworkPolicy
//! (`disableNetwork`). All three share one instance name. The Pod is made
//! first, held back from the scheduler by a scheduling gate, so that the
//! other two can name it as their owner (Kubernetes' garbage collector
//! removes them with it, and nothing is ever left behind); the gate is
//! lifted once they exist, so the Pod never runs without them.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, HostAlias, Pod,
    PodSchedulingGate, PodSecurityContext, PodSpec, ResourceRequirements, SeccompProfile, Secret,
    SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use crate::catalog::ContainerServer;
use crate::runtime::{LABEL_FLEET, LABEL_HASH, LABEL_SERVER, PullPolicy};
use crate::{Error, Result};

/// The label naming one instance (Pod, Secret, NetworkPolicy share it).
pub const LABEL_INSTANCE: &str = "io.mcp-fleet.instance";
/// Label values are cut to fit; the exact server name is kept here.
pub const ANNOTATION_SERVER: &str = "io.mcp-fleet.server";
/// The container in each Pod.
pub const CONTAINER: &str = "server";
/// Holds a new Pod back from the scheduler until its Secret and
/// NetworkPolicy exist.
pub const GATE: &str = "io.mcp-fleet/objects";
/// Room for "-" and the 5-character instance suffix in a 63-character name.
const BASE_MAX: usize = 57;

/// Fits `s` into `max` characters that `ok` allows, starting and ending with
/// an alphanumeric. A name that had to change gets 8 hex digits of the
/// original's SHA-256: stable, and distinct names stay distinct.
fn fit(s: &str, max: usize, lower: bool, ok: impl Fn(char) -> bool) -> String {
    let mapped: String = s
        .chars()
        .map(|c| if lower { c.to_ascii_lowercase() } else { c })
        .map(|c| if ok(c) { c } else { '-' })
        .collect();
    let trim = |t: &str| {
        t.trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_string()
    };
    let clean = trim(&mapped);
    if clean == s && !clean.is_empty() && clean.len() <= max {
        return clean;
    }
    let digest = Sha256::digest(s.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let head = trim(&clean[..clean.len().min(max - 9)]);
    match head.is_empty() {
        true => hash,
        false => format!("{head}-{hash}"),
    }
}

/// A DNS-1123 label (lowercase alphanumerics and `-`) of at most `max`.
pub fn dns_label(s: &str, max: usize) -> String {
    fit(s, max, true, |c| c.is_ascii_alphanumeric() || c == '-')
}

/// A label value: at most 63 of alphanumerics, `-`, `_` and `.`.
pub fn label_value(s: &str) -> String {
    fit(s, 63, false, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
    })
}

/// `io.mcp-fleet.fleet=<fleet>`: every watch and list of ours selects by it.
pub fn fleet_selector(fleet: &str) -> String {
    format!("{LABEL_FLEET}={}", label_value(fleet))
}

/// The prefix of a server's instance names: `mcp-fleet-<fleet>-<server>`.
pub fn base_name(fleet: &str, server: &str) -> String {
    dns_label(&crate::runtime::container_name(fleet, server), BASE_MAX)
}

/// What makes one server's objects, besides its spec.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    pub name: &'a str,
    pub fleet: &'a str,
    pub server: &'a str,
    pub want: &'a ContainerServer,
    pub pull: PullPolicy,
    pub stop_timeout_secs: i64,
    /// mcp-fleet's own Deployment, owner of every Pod.
    pub owner: Option<&'a OwnerReference>,
}

impl Instance<'_> {
    fn labels(&self) -> BTreeMap<String, String> {
        [
            (LABEL_FLEET, label_value(self.fleet)),
            (LABEL_SERVER, label_value(self.server)),
            (LABEL_HASH, label_value(&self.want.hash)),
            (LABEL_INSTANCE, self.name.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn meta(&self, owner: Option<&OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.to_string()),
            labels: Some(self.labels()),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_SERVER.to_string(),
                self.server.to_string(),
            )])),
            owner_references: owner.map(|o| vec![o.clone()]),
            ..Default::default()
        }
    }

    /// Env values (key `env.NAME`) and command arguments (`arg.N`), owned
    /// by the instance's Pod.
    pub fn secret(&self, pod: &OwnerReference) -> Secret {
        let spec = &self.want.spec;
        let env = spec.env.iter().map(|(k, v)| (format!("env.{k}"), v));
        let args = (spec.command.iter().enumerate()).map(|(i, a)| (format!("arg.{i}"), a));
        Secret {
            metadata: self.meta(Some(pod)),
            // Never changed once made: kubelet need not watch it.
            immutable: Some(true),
            type_: Some("Opaque".into()),
            string_data: Some(
                (env.chain(args))
                    .map(|(k, v)| (k, v.expose().to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// No traffic in or out of this instance's Pod (`disableNetwork`), owned
    /// by that Pod. Its stdio goes through the kubelet, not the Pod network.
    pub fn deny_all(&self, pod: &OwnerReference) -> NetworkPolicy {
        NetworkPolicy {
            metadata: self.meta(Some(pod)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        LABEL_INSTANCE.to_string(),
                        self.name.to_string(),
                    )])),
                    ..Default::default()
                }),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: None,
                egress: None,
            }),
        }
    }

    pub fn pod(&self) -> Result<Pod> {
        let spec = &self.want.spec;
        if !spec.volumes.is_empty() {
            return Err(Error::runtime(
                format!("create {}", self.name),
                "`volumes` (host bind mounts) are not supported on Kubernetes; remove them from the entry",
            ));
        }
        let read_only = spec.limits.read_only_rootfs;
        Ok(Pod {
            metadata: self.meta(self.owner),
            spec: Some(PodSpec {
                containers: vec![self.container()],
                scheduling_gates: Some(vec![PodSchedulingGate { name: GATE.into() }]),
                restart_policy: Some("Always".into()),
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                termination_grace_period_seconds: Some(self.stop_timeout_secs),
                host_aliases: host_aliases(&spec.extra_hosts),
                security_context: Some(pod_security(spec.user.as_deref())),
                volumes: read_only.then(|| {
                    vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            medium: Some("Memory".into()),
                            size_limit: Some(Quantity("64Mi".into())),
                        }),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            status: None,
        })
    }

    /// The server's container: env values and arguments from the Secret.
    fn container(&self) -> Container {
        let spec = &self.want.spec;
        let secret_ref = |key: String, name: String| EnvVar {
            name,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: self.name.to_string(),
                    key,
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut env: Vec<EnvVar> = (spec.env.keys())
            .map(|k| secret_ref(format!("env.{k}"), k.clone()))
            .collect();
        // Arguments reach the command through `$(VAR)`, which kubelet
        // expands from the container's environment.
        let args: Vec<String> = (0..spec.command.len())
            .map(|i| {
                env.push(secret_ref(format!("arg.{i}"), format!("MCP_FLEET_ARG_{i}")));
                format!("$(MCP_FLEET_ARG_{i})")
            })
            .collect();
        let read_only = spec.limits.read_only_rootfs;
        Container {
            name: CONTAINER.into(),
            image: Some(spec.image.clone()),
            image_pull_policy: Some(pull_policy(self.pull).into()),
            args: (!args.is_empty()).then_some(args),
            env: (!env.is_empty()).then_some(env),
            // The gateway attaches to stdio: keep stdin open, no TTY.
            stdin: Some(true),
            stdin_once: Some(false),
            tty: Some(false),
            resources: Some(resources(self.want)),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                privileged: Some(false),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: None,
                }),
                read_only_root_filesystem: Some(read_only),
                ..Default::default()
            }),
            // A read-only root still needs a scratch directory.
            volume_mounts: read_only.then(|| {
                vec![VolumeMount {
                    name: "tmp".into(),
                    mount_path: "/tmp".into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }
}

fn pull_policy(p: PullPolicy) -> &'static str {
    match p {
        PullPolicy::Missing => "IfNotPresent",
        PullPolicy::Always => "Always",
        PullPolicy::Never => "Never",
    }
}

/// The same `--memory` and `--cpus` as on Docker, as limits and equal
/// requests (the scheduler reserves what the limit allows). Kubernetes has
/// no per-Pod process limit (`--pids-limit` is the kubelet's `podPidsLimit`).
fn resources(want: &ContainerServer) -> ResourceRequirements {
    let l = want.spec.limits;
    let millicpus = (l.nano_cpus / 1_000_000).max(1);
    let q = BTreeMap::from([
        ("cpu".to_string(), Quantity(format!("{millicpus}m"))),
        ("memory".to_string(), Quantity(l.memory_bytes.to_string())),
    ]);
    ResourceRequirements {
        limits: Some(q.clone()),
        requests: Some(q),
        ..Default::default()
    }
}

/// seccomp `RuntimeDefault` always; a numeric `user` (`uid[:gid]`) runs as
/// that uid, and as non-root when it is not 0. A user given by name cannot
/// be checked before the image runs, so then the image decides.
fn pod_security(user: Option<&str>) -> PodSecurityContext {
    let (uid, gid) = match user {
        Some(u) => {
            let (u, g) = u.split_once(':').map_or((u, None), |(u, g)| (u, Some(g)));
            (u.parse::<i64>().ok(), g.and_then(|g| g.parse::<i64>().ok()))
        }
        None => (None, None),
    };
    PodSecurityContext {
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        run_as_user: uid,
        run_as_group: gid,
        run_as_non_root: uid.map(|u| u != 0),
        ..Default::default()
    }
}

/// Docker's `host:ip` extra hosts as `hostAliases`.
fn host_aliases(extra: &[String]) -> Option<Vec<HostAlias>> {
    let mut by_ip: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in extra {
        if let Some((host, ip)) = e.split_once(':') {
            by_ip.entry(ip).or_default().push(host.to_string());
        }
    }
    let aliases: Vec<HostAlias> = by_ip
        .into_iter()
        .map(|(ip, hosts)| HostAlias {
            ip: ip.to_string(),
            hostnames: Some(hosts),
        })
        .collect();
    (!aliases.is_empty()).then_some(aliases)
}

/// The reference that makes `pod` the owner of its Secret and NetworkPolicy
/// (`None` for a Pod the API server has not stored).
pub fn owned_by(pod: &Pod) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.metadata.name.clone()?,
        uid: pod.metadata.uid.clone()?,
        ..Default::default()
    })
}
