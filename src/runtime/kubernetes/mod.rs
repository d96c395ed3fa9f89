//! The Kubernetes backend (`--runtime kubernetes`): one Pod per approved
//! container server, in mcp-fleet's namespace.
//!
//! Why a Pod the controller owns and not a StatefulSet of one: the
//! controller already does what a StatefulSet would add (keep one, replace
//! it on a spec change), and does it the same way on Docker; a StatefulSet's
//! rolling update waits for a broken Pod to become Ready before replacing
//! it, so a bad spec would need a person to delete the Pod; a Pod's spec is
//! immutable, so a spec change is a new Pod, exactly as on Docker, with the
//! spec hash in its labels. Kubelet still restarts a container that exits
//! (restartPolicy Always, with its own back-off), and a Pod that ends for
//! good (evicted, node lost) is replaced by the controller.
//!
//! Reads come from a watch-fed cache (kube-runtime's watcher feeding a
//! reflector store, selected by the fleet label), so a reconcile makes no
//! read call; the backend writes its own creations and deletions into the
//! cache too, so the next reconcile sees them before the watch does.
#[cfg(test)]
mod attach_tests;
#[cfg(test)]
pub(crate) mod mock;
mod objects;
mod pods;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, AttachParams, AttachedProcess, DeleteParams, Patch, PatchParams, PostParams,
    Preconditions, PropagationPolicy,
};
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::OnceCell;

use super::{Capabilities, Container, PullPolicy, Runtime, Stderr, Stdio};
use crate::catalog::ContainerServer;
use crate::{Error, Result};
use objects::{ANNOTATION_SERVER, fleet_selector};

/// Every object this backend writes is managed under this name.
const FIELD_MANAGER: &str = "mcp-fleet";
/// How long `list` waits for the watch's first complete list.
const FIRST_LIST: Duration = Duration::from_secs(10);
/// How long one API call (not a watch) may take. kube's own read timeout
/// (295 s) is sized for watches, far too long for a create or a delete.
const API_CALL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub namespace: String,
    pub pull: PullPolicy,
    /// Sent to kubelet as the Pod's termination grace period.
    pub stop_timeout: Duration,
    /// mcp-fleet's own Deployment: owner of every Pod, so that deleting it
    /// removes the fleet (and each Pod's Secret and NetworkPolicy with it).
    pub owner_deployment: Option<String>,
}

pub struct KubernetesRuntime {
    client: Client,
    settings: KubeSettings,
    owner: OnceCell<Option<OwnerReference>>,
    store: Store<Pod>,
    writer: Arc<Mutex<Writer<Pod>>>,
    /// Pods this process made and has not seen deleted (bounded by them).
    made: Arc<Mutex<HashSet<String>>>,
}

impl KubernetesRuntime {
    pub fn new(client: Client, settings: KubeSettings) -> Self {
        let writer = Writer::<Pod>::default();
        KubernetesRuntime {
            client,
            settings,
            owner: OnceCell::new(),
            store: writer.as_reader(),
            writer: Arc::new(Mutex::new(writer)),
            made: Arc::default(),
        }
    }

    /// A client from the in-cluster service account (or `KUBECONFIG`);
    /// the namespace, unless given, is the service account's own.
    pub async fn connect(mut settings: KubeSettings) -> Result<Self> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| Error::Unreachable {
                op: "connect".into(),
                message: format!("no Kubernetes configuration (in-cluster or KUBECONFIG): {e}"),
            })?;
        if settings.namespace.is_empty() {
            settings.namespace = config.default_namespace.clone();
        }
        let client = Client::try_from(config).map_err(|e| call_error("connect", e))?;
        Ok(Self::new(client, settings))
    }

    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope>>(&self) -> Api<K>
    where
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    /// The owner reference to mcp-fleet's Deployment (looked up once).
    async fn owner(&self) -> Result<Option<&OwnerReference>> {
        let found = self
            .owner
            .get_or_try_init(|| async {
                let Some(name) = &self.settings.owner_deployment else {
                    return Ok(None);
                };
                let d = call(
                    format!("get deployment {name}"),
                    self.api::<Deployment>().get(name),
                )
                .await?;
                Ok::<_, Error>(d.controller_owner_ref(&()).map(|mut o| {
                    // Not the Pods' controller: the Deployment manages ReplicaSets.
                    o.controller = None;
                    o.block_owner_deletion = None;
                    o
                }))
            })
            .await?;
        Ok(found.as_ref())
    }

    fn remember(&self, event: watcher::Event<Pod>) {
        self.writer
            .lock()
            .expect("writer lock")
            .apply_watcher_event(&event);
    }

    /// Creates its Secret and, without network, its NetworkPolicy, both
    /// owned by the (still gated) Pod.
    async fn dependents(&self, inst: &objects::Instance<'_>, pod: &Pod) -> Result<()> {
        let name = inst.name;
        let owner = objects::owned_by(pod)
            .ok_or_else(|| Error::runtime(format!("create pod {name}"), "stored without a uid"))?;
        let pp = post_params();
        let secret = inst.secret(&owner);
        call(
            format!("create secret {name}"),
            self.api::<Secret>().create(&pp, &secret),
        )
        .await?;
        if !inst.want.spec.network {
            let policy = inst.deny_all(&owner);
            call(
                format!("create networkpolicy {name}"),
                self.api::<NetworkPolicy>().create(&pp, &policy),
            )
            .await?;
        }
        Ok(())
    }

    /// Lifts the Pod's scheduling gate: from now on it may run.
    async fn release(&self, name: &str) -> Result<Pod> {
        let patch = serde_json::json!({ "spec": { "schedulingGates": null } });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let pods = self.api::<Pod>();
        call(
            format!("release pod {name}"),
            pods.patch(name, &pp, &Patch::Merge(&patch)),
        )
        .await
    }

    /// Deletes one Pod of ours (its uid as precondition) and forgets it.
    async fn delete(&self, pod: &Pod, timeout: Duration) -> Result<()> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let dp = DeleteParams {
            grace_period_seconds: Some(u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX)),
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let op = format!("delete pod {name}");
        let pods = self.api::<Pod>();
        match tokio::time::timeout(API_CALL, pods.delete(name, &dp)).await {
            Ok(Ok(_)) => {}
            // Gone already, or a different Pod by now.
            Ok(Err(kube::Error::Api(s))) if s.is_not_found() || s.is_conflict() => {}
            Ok(Err(e)) => return Err(call_error(op, e)),
            Err(_) => return Err(no_answer(op)),
        }
        self.remember(watcher::Event::Delete(pod.clone()));
        self.made.lock().expect("made lock").remove(name);
        Ok(())
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// One API call, within [`API_CALL`].
async fn call<T>(op: String, fut: impl Future<Output = kube::Result<T>>) -> Result<T> {
    match tokio::time::timeout(API_CALL, fut).await {
        Ok(result) => result.map_err(|e| call_error(op, e)),
        Err(_) => Err(no_answer(op)),
    }
}

fn no_answer(op: String) -> Error {
    Error::Unreachable {
        op,
        message: format!(
            "the Kubernetes API server did not answer within {}s",
            API_CALL.as_secs()
        ),
    }
}

/// An API call that failed: with the API server's answer, or without one
/// (it is unreachable), which is no fault of the server.
fn call_error(op: impl Into<String>, e: kube::Error) -> Error {
    match e {
        kube::Error::Api(s) => Error::Runtime {
            op: op.into(),
            message: format!("{} ({} {})", s.message, s.code, s.reason),
        },
        e => Error::Unreachable {
            op: op.into(),
            message: format!("cannot reach the Kubernetes API server: {e}"),
        },
    }
}

/// Five random characters that make each instance's name new.
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    getrandom::fill(&mut bytes).expect("random bytes");
    (bytes.iter())
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            restarts: true,
            pulls: true,
        }
    }

    /// From the watch-fed cache: no API call.
    async fn list(&self, _fleet: &str, server: Option<&str>) -> Result<Vec<Container>> {
        if tokio::time::timeout(FIRST_LIST, self.store.wait_until_ready())
            .await
            .is_err()
        {
            return Err(Error::Unreachable {
                op: "list pods".into(),
                message: format!(
                    "the Pod watch has not listed namespace {} yet (is the API server reachable, and may this service account list and watch pods?)",
                    self.settings.namespace
                ),
            });
        }
        let made = self.made.lock().expect("made lock").clone();
        Ok((self.store.state().iter())
            .filter_map(|p| {
                let name = p.metadata.name.as_deref().unwrap_or_default();
                pods::container_of(p, made.contains(name))
            })
            .filter(|c| server.is_none_or(|s| c.server == s))
            .collect())
    }

    /// Kubelet pulls, by the Pod's `imagePullPolicy`.
    async fn ensure_image(&self, _image: &str, _policy: PullPolicy) -> Result<()> {
        Ok(())
    }

    /// The Pod, held back by a scheduling gate; then its Secret and
    /// NetworkPolicy, owned by it; then the gate is lifted. The Pod never
    /// runs without them, and a failure leaves nothing behind: deleting the
    /// Pod takes the others with it.
    async fn create(&self, fleet: &str, server: &str, desired: &ContainerServer) -> Result<String> {
        let name = format!("{}-{}", objects::base_name(fleet, server), suffix());
        let inst = objects::Instance {
            name: &name,
            fleet,
            server,
            want: desired,
            pull: self.settings.pull,
            stop_timeout_secs: i64::try_from(self.settings.stop_timeout.as_secs())
                .unwrap_or(i64::MAX),
            owner: self.owner().await?,
        };
        let pod = inst.pod()?;
        let pp = post_params();
        let created = call(
            format!("create pod {name}"),
            self.api::<Pod>().create(&pp, &pod),
        )
        .await?;
        self.made.lock().expect("made lock").insert(name.clone());
        self.remember(watcher::Event::Apply(created.clone()));
        let released = match self.dependents(&inst, &created).await {
            Ok(()) => self.release(&name).await,
            Err(e) => Err(e),
        };
        match released {
            Ok(pod) => self.remember(watcher::Event::Apply(pod)),
            Err(e) => {
                if let Err(undo) = self.delete(&created, Duration::ZERO).await {
                    tracing::warn!(pod = %name, error = %undo, "could not delete a half-made pod; the next reconcile replaces it");
                }
                return Err(e);
            }
        }
        Ok(name)
    }

    /// A Pod starts as it is created.
    async fn start(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    /// Deletes the Pod if it is one of ours (in the cache, which holds only
    /// Pods with the fleet label), and only that very Pod (uid precondition).
    /// The garbage collector deletes its Secret and NetworkPolicy.
    async fn remove(&self, id: &str, timeout: Duration) -> Result<()> {
        let key = kube::runtime::reflector::ObjectRef::new(id).within(&self.settings.namespace);
        match self.store.get(&key) {
            Some(pod) => self.delete(&pod, timeout).await,
            None => Ok(()),
        }
    }

    /// `pods/attach` over WebSocket: the container's stdin and stdout.
    async fn attach(&self, id: &str) -> Result<Stdio> {
        let ap = AttachParams::default()
            .container(objects::CONTAINER)
            .stdin(true)
            .stdout(true)
            .stderr(false)
            .max_stdin_buf_size(64 * 1024)
            .max_stdout_buf_size(64 * 1024);
        let pods = self.api::<Pod>();
        let mut process = call(format!("attach pod {id}"), pods.attach(id, &ap)).await?;
        let (Some(stdin), Some(stdout)) = (process.stdin(), process.stdout()) else {
            return Err(Error::runtime(format!("attach pod {id}"), "no stdio"));
        };
        Ok(Stdio {
            stdout: Box::pin(Attached {
                output: stdout,
                _process: process,
            }),
            stdin: Box::pin(stdin),
        })
    }

    /// `pods/attach` for stderr alone, while the container runs (a Pod runs
    /// as soon as it is scheduled, so what it writes before the attach is
    /// only in kubelet's log). Kubelet restarts the container in place: the
    /// stream ends, and the next reconcile attaches to the new run.
    async fn attach_stderr(&self, id: &str) -> Result<Stderr> {
        let ap = AttachParams::default()
            .container(objects::CONTAINER)
            .stdin(false)
            .stdout(false)
            .stderr(true)
            .max_stderr_buf_size(64 * 1024);
        let pods = self.api::<Pod>();
        let op = format!("attach stderr of pod {id}");
        let mut process = call(op.clone(), pods.attach(id, &ap)).await?;
        let Some(stderr) = process.stderr() else {
            return Err(Error::runtime(op, "no stderr"));
        };
        Ok(Box::pin(Attached {
            output: stderr,
            _process: process,
        }))
    }

    /// Servers whose Pods changed, from the watch that also fills the cache.
    /// The watcher lists again by itself when its watch expires (410 Gone)
    /// and backs off on errors, so this stream does not end.
    fn events(&self, fleet: &str) -> BoxStream<'static, Result<String>> {
        let config = watcher::Config::default().labels(&fleet_selector(fleet));
        let writer = self.writer.clone();
        let made = self.made.clone();
        let mut relisted = BTreeSet::new();
        watcher(self.api::<Pod>(), config)
            .default_backoff()
            .flat_map(move |event| {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch failed; it lists again shortly");
                        return stream::iter(Vec::new());
                    }
                };
                let mut w = writer.lock().expect("writer lock");
                let servers = touched(&w.as_reader(), &event, &mut relisted);
                w.apply_watcher_event(&event);
                forget_gone(&made, &w.as_reader(), &event);
                stream::iter(servers.into_iter().map(Ok).collect::<Vec<_>>())
            })
            .boxed()
    }

    async fn finished_at(&self, _id: &str) -> Result<Option<SystemTime>> {
        Ok(None)
    }
}

/// The servers an event concerns. A fresh list (at start, or after the watch
/// expired) concerns every server seen before it or in it: one that is in
/// neither list changed nothing, one that is missing from the new list lost
/// its Pod while nobody watched.
fn touched(
    store: &Store<Pod>,
    event: &watcher::Event<Pod>,
    relisted: &mut BTreeSet<String>,
) -> Vec<String> {
    let server = |p: &Pod| {
        (p.metadata.annotations.as_ref())
            .and_then(|a| a.get(ANNOTATION_SERVER))
            .cloned()
    };
    match event {
        watcher::Event::Init => {
            relisted.clear();
            relisted.extend(store.state().iter().filter_map(|p| server(p)));
            Vec::new()
        }
        watcher::Event::InitApply(p) => {
            relisted.extend(server(p));
            Vec::new()
        }
        watcher::Event::InitDone => std::mem::take(relisted).into_iter().collect(),
        watcher::Event::Apply(p) | watcher::Event::Delete(p) => server(p).into_iter().collect(),
    }
}

/// Keeps `made` to the Pods that still exist.
fn forget_gone(made: &Mutex<HashSet<String>>, store: &Store<Pod>, event: &watcher::Event<Pod>) {
    let mut made = made.lock().expect("made lock");
    match event {
        watcher::Event::Delete(p) => {
            made.remove(p.metadata.name.as_deref().unwrap_or_default());
        }
        watcher::Event::InitDone => {
            let listed: HashSet<String> = (store.state().iter())
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            made.retain(|name| listed.contains(name));
        }
        _ => {}
    }
}

/// A Pod's stdout or stderr, holding the attach session open while it is read.
struct Attached {
    output: tokio::io::ReadHalf<tokio::io::SimplexStream>,
    _process: AttachedProcess,
}

impl AsyncRead for Attached {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.output).poll_read(cx, buf)
    }
}
