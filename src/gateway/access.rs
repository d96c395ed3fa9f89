//! Who may use which server, and what each client session therefore sees.
//!
//! The rule (from the motivating project): an admin ([`ADMIN_ROLE`]) may use
//! anything; anyone else may use a server that requires no role (unless
//! `--default-access none`), one whose roles they hold one of, or one they
//! created. A server hidden from a caller is absent from its lists, and a
//! call, get or read of it gets exactly the error of something that does
//! not exist.
//!
//! Each client session is bound to the caller of its first request (a later
//! request of another caller is refused; a refreshed token of the same
//! caller updates the roles). The gateway keeps a fingerprint of what each
//! session would list and sends `*/list_changed` to the sessions whose
//! fingerprint changed: when servers come and go, when a server's rules
//! change, or when a caller's roles change (`users.yaml`, a new JWT).
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use rmcp::ErrorData as McpError;
use rmcp::Peer;
use rmcp::model::{Extensions, Prompt, Resource, ResourceTemplate, Tool};
use rmcp::service::{RoleServer, SubscriptionSendError, SubscriptionSink};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::handler::Gateway;
use super::presented::presented;
use super::users::Users;
use crate::catalog::DesiredState;
use crate::catalog::access::AccessRule;
use crate::identity::{ADMIN_ROLE, Identity};
use crate::upstream::index::Index;
use crate::upstream::relay::NOTIFY_TIMEOUT;

/// What a server with no required roles means for a non-admin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultAccess {
    /// Everyone may use it (the original rule).
    #[default]
    All,
    /// Only admins and its creator.
    None,
}

/// The gateway's access settings.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    pub default_access: DefaultAccess,
    /// Role that `mcp-add`/`mcp-remove` need to approve (others may request).
    pub manage_role: String,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            default_access: DefaultAccess::All,
            manage_role: ADMIN_ROLE.to_string(),
        }
    }
}

impl AccessPolicy {
    /// The rule: may `who` use a server with `rule` (`None`: no rule given)?
    pub fn may_use(&self, who: &Identity, rule: Option<&AccessRule>) -> bool {
        if who.is_admin() {
            return true;
        }
        let Some(rule) = rule else {
            return self.default_access == DefaultAccess::All;
        };
        if rule.creator.as_deref() == Some(who.id.as_str()) {
            return true;
        }
        if rule.required_roles.is_empty() {
            return self.default_access == DefaultAccess::All;
        }
        rule.required_roles.iter().any(|r| who.has_role(r))
    }

    pub fn may_manage(&self, who: &Identity) -> bool {
        who.is_admin() || who.has_role(&self.manage_role)
    }
}

/// What one caller may see, for filtering (cheap for admins).
pub struct Visible<'a> {
    who: &'a Identity,
    policy: &'a AccessPolicy,
    desired: Option<Arc<DesiredState>>,
}

impl Visible<'_> {
    pub fn server(&self, server: &str) -> bool {
        self.who.is_admin()
            || self.policy.may_use(
                self.who,
                self.desired.as_ref().and_then(|d| d.access.get(server)),
            )
    }

    pub fn tools(&self, index: &Index) -> Vec<Tool> {
        self.keep(&index.tools, |t| {
            index.tool_routes.get(t.name.as_ref()).map(|r| &*r.server)
        })
    }

    pub fn prompts(&self, index: &Index) -> Vec<Prompt> {
        self.keep(&index.prompts, |p| {
            index.prompt_routes.get(&p.name).map(|r| &*r.server)
        })
    }

    pub fn resources(&self, index: &Index) -> Vec<Resource> {
        self.keep(&index.resources, |r| index.resource_server(&r.uri))
    }

    pub fn templates(&self, index: &Index) -> Vec<ResourceTemplate> {
        self.keep(&index.resource_templates, |t| {
            index.resource_server(&t.uri_template)
        })
    }

    /// The items of `all` whose server (by `server_of`) the caller may use.
    fn keep<'i, T: Clone>(
        &self,
        all: &'i [T],
        server_of: impl Fn(&'i T) -> Option<&'i str>,
    ) -> Vec<T> {
        if self.who.is_admin() {
            return all.to_vec();
        }
        all.iter()
            .filter(|item| self.routed(server_of(item)))
            .cloned()
            .collect()
    }

    fn routed(&self, server: Option<&str>) -> bool {
        server.is_some_and(|s| self.server(s))
    }
}

/// The caller a client session is bound to (none before its first request).
#[derive(Default)]
pub struct SessionCaller(RwLock<Option<Arc<Identity>>>);

impl SessionCaller {
    pub fn get(&self) -> Option<Arc<Identity>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, who: Arc<Identity>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(who);
    }
}

/// What a session lists, as one fingerprint per kind (tools, prompts, resources).
type Print = [u64; 3];

/// Where a view change is told.
pub enum Target {
    /// A client session: `notifications/*/list_changed`.
    Session(Peer<RoleServer>),
    /// A 2026-07-28 `subscriptions/listen` stream (only the kinds it accepted).
    Listen(SubscriptionSink),
}

/// A registered client session (or subscription) that can be told its view changed.
struct Viewer {
    caller: Arc<SessionCaller>,
    target: Target,
    seen: Mutex<Print>,
}

impl Viewer {
    /// Tells of the changed kinds; false if the subscription is gone.
    async fn tell(&self, changed: [bool; 3]) -> bool {
        match &self.target {
            Target::Session(peer) => {
                // A session that went away meanwhile is simply skipped.
                if changed[0] {
                    let _ = peer.notify_tool_list_changed().await;
                }
                if changed[1] {
                    let _ = peer.notify_prompt_list_changed().await;
                }
                if changed[2] {
                    let _ = peer.notify_resource_list_changed().await;
                }
                true
            }
            Target::Listen(sink) => {
                let accepted = sink.accepted();
                let mut results = Vec::new();
                if changed[0] && accepted.tools_list_changed == Some(true) {
                    results.push(sink.notify_tool_list_changed().await);
                }
                if changed[1] && accepted.prompts_list_changed == Some(true) {
                    results.push(sink.notify_prompt_list_changed().await);
                }
                if changed[2] && accepted.resources_list_changed == Some(true) {
                    results.push(sink.notify_resource_list_changed().await);
                }
                !results
                    .iter()
                    .any(|r| matches!(r, Err(SubscriptionSendError::SubscriptionClosed)))
            }
        }
    }
}

/// Every registered session's view, and the fingerprints they are made of.
#[derive(Default)]
pub struct Views {
    viewers: RwLock<HashMap<u64, Arc<Viewer>>>,
    /// Per kind, per server: a fingerprint of what the server exposes.
    servers: RwLock<Arc<[HashMap<String, u64>; 3]>>,
}

fn hash_of<T: serde::Serialize>(item: &T) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(item).unwrap_or_default().hash(&mut h);
    h.finish()
}

fn fold(map: &mut HashMap<String, u64>, server: Option<&str>, h: u64) {
    if let Some(s) = server {
        let slot = map.entry(s.to_string()).or_insert(0);
        *slot = slot.rotate_left(5) ^ h;
    }
}

/// Per-server fingerprints of everything an index exposes.
fn server_prints(index: &Index) -> [HashMap<String, u64>; 3] {
    let mut p: [HashMap<String, u64>; 3] = Default::default();
    for t in &index.tools {
        let server = index.tool_routes.get(t.name.as_ref()).map(|r| &*r.server);
        fold(&mut p[0], server, hash_of(t));
    }
    for x in &index.prompts {
        let server = index.prompt_routes.get(&x.name).map(|r| &*r.server);
        fold(&mut p[1], server, hash_of(x));
    }
    for r in &index.resources {
        fold(&mut p[2], index.resource_server(&r.uri), hash_of(r));
    }
    for t in &index.resource_templates {
        fold(
            &mut p[2],
            index.resource_server(&t.uri_template),
            hash_of(t),
        );
    }
    p
}

impl Gateway {
    /// What `who` may see right now.
    pub(super) fn visible<'a>(&'a self, who: &'a Identity) -> Visible<'a> {
        Visible {
            who,
            policy: &self.settings().access,
            desired: if who.is_admin() {
                None
            } else {
                self.ctx().desired()
            },
        }
    }

    /// The session's caller for a request with `extensions`: binds the
    /// session on its first request; refuses another caller's request.
    pub(super) fn caller(
        &self,
        session: u64,
        bound: &SessionCaller,
        extensions: &Extensions,
    ) -> Result<Arc<Identity>, McpError> {
        let current = bound.get();
        let Some(now) = presented(extensions) else {
            return current.ok_or_else(|| McpError::invalid_request("no caller identity", None));
        };
        match current {
            Some(cur) if Arc::ptr_eq(&cur, &now) => Ok(now),
            Some(cur) if cur.id != now.id => Err(McpError::invalid_request(
                "this MCP session belongs to another caller; open a session of your own",
                None,
            )),
            Some(cur) if *cur == *now => Ok(cur),
            None => {
                bound.set(now.clone());
                // A session registers before its first request binds it.
                self.reseed_view(session);
                Ok(now)
            }
            Some(_) => {
                bound.set(now.clone());
                // Other roles (a refreshed token): its view may have changed.
                let me = self.clone();
                let work = async move {
                    me.refresh_views(Some(session)).await;
                };
                (self.ctx().tasks)
                    .spawn_work(format!("refresh the view of session {session}"), work);
                Ok(now)
            }
        }
    }

    /// Registers an initialized session (or a subscription) for view-change
    /// notifications under `id`.
    pub(super) fn watch_view(&self, id: u64, caller: Arc<SessionCaller>, target: Target) {
        let viewer = Viewer {
            seen: Mutex::new(self.print_of(&caller)),
            caller,
            target,
        };
        let views = &self.shared_views().viewers;
        views
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::new(viewer));
    }

    /// What a session was last told is what it sees now.
    fn reseed_view(&self, session: u64) {
        let viewer = self
            .shared_views()
            .viewers
            .read()
            .expect("views lock")
            .get(&session)
            .cloned();
        if let Some(v) = viewer {
            *v.seen.lock().expect("seen lock") = self.print_of(&v.caller);
        }
    }

    pub(super) fn unwatch_view(&self, session: u64) {
        let views = &self.shared_views().viewers;
        // Most handlers never registered (one per stateless request): a read
        // lock tells, without contending for the write lock.
        if !views.read().expect("views lock").contains_key(&session) {
            return;
        }
        views
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session);
    }

    fn print_of(&self, caller: &SessionCaller) -> Print {
        let Some(who) = caller.get() else {
            return [0; 3];
        };
        let visible = self.visible(&who);
        let servers = self
            .shared_views()
            .servers
            .read()
            .expect("views lock")
            .clone();
        std::array::from_fn(|kind| {
            let mut items: Vec<(&String, &u64)> = servers[kind]
                .iter()
                .filter(|(s, _)| visible.server(s))
                .collect();
            items.sort();
            let mut h = DefaultHasher::new();
            items.hash(&mut h);
            h.finish()
        })
    }

    /// Takes up a new index's per-server fingerprints.
    pub(super) fn index_changed(&self, index: &Index) {
        *self.shared_views().servers.write().expect("views lock") = Arc::new(server_prints(index));
    }

    /// Sends `*/list_changed` to every session (or just `only`) whose view
    /// changed since it was last told; returns how many notifications went out.
    pub(super) async fn refresh_views(&self, only: Option<u64>) -> usize {
        let viewers: Vec<(u64, Arc<Viewer>)> = {
            let map = self.shared_views().viewers.read().expect("views lock");
            let all = map.iter().map(|(id, v)| (*id, v.clone()));
            all.filter(|(id, _)| only.is_none_or(|o| o == *id))
                .collect()
        };
        let sends = viewers.into_iter().filter_map(|(id, v)| {
            let now = self.print_of(&v.caller);
            let before = std::mem::replace(&mut *v.seen.lock().expect("seen lock"), now);
            let changed: [bool; 3] = std::array::from_fn(|k| before[k] != now[k]);
            changed.contains(&true).then_some(async move {
                // A slow client never holds up the others (sent to concurrently).
                let open = tokio::time::timeout(NOTIFY_TIMEOUT, v.tell(changed))
                    .await
                    .unwrap_or(true);
                if !open {
                    self.unwatch_view(id);
                }
                changed.iter().filter(|c| **c).count()
            })
        });
        futures_util::future::join_all(sends)
            .await
            .into_iter()
            .sum()
    }

    /// Follows what changes views besides the index: the access rules (with
    /// the desired state) and the users file. Runs until `shutdown`.
    pub async fn access_loop(
        self,
        mut users: watch::Receiver<Arc<Users>>,
        shutdown: CancellationToken,
    ) {
        let mut desired = self.ctx().watch_desired();
        let mut known = users.borrow_and_update().clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = desired.changed() => if r.is_err() { return },
                r = users.changed() => {
                    if r.is_err() { return }
                    let next = users.borrow_and_update().clone();
                    self.users_changed(&known, &next);
                    known = next;
                }
            }
            let sent = self.refresh_views(None).await;
            if sent > 0 {
                crate::metrics::global().list_changed.inc_by(sent as u64);
                tracing::debug!(sent, "list_changed sent after an access change");
            }
        }
    }

    /// Sessions of users-file callers take up their new roles (a removed
    /// user keeps no role; their token no longer opens anything anyway).
    fn users_changed(&self, old: &Users, new: &Users) {
        let viewers: Vec<Arc<Viewer>> = self
            .shared_views()
            .viewers
            .read()
            .expect("views lock")
            .values()
            .cloned()
            .collect();
        for v in viewers {
            let Some(who) = v.caller.get() else { continue };
            let from_file = old.by_id(&who.id).is_some_and(|u| Arc::ptr_eq(u, &who));
            if !from_file {
                continue;
            }
            let next = new.by_id(&who.id).cloned().unwrap_or_else(|| {
                Arc::new(Identity::new(who.id.clone(), who.name.clone(), vec![]))
            });
            v.caller.set(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let p = AccessPolicy::default();
        let ann = Identity::new("ann", "Ann", vec!["dev".into()]);
        let admin = Identity::new("op", "op", vec![ADMIN_ROLE.into()]);
        let rule = |roles: &[&str], creator: Option<&str>| AccessRule {
            required_roles: roles.iter().map(|r| r.to_string()).collect(),
            creator: creator.map(str::to_string),
        };
        assert!(p.may_use(&ann, None));
        assert!(p.may_use(&ann, Some(&rule(&[], None))));
        assert!(p.may_use(&ann, Some(&rule(&["ops", "dev"], None))));
        assert!(!p.may_use(&ann, Some(&rule(&["ops"], None))));
        assert!(p.may_use(&ann, Some(&rule(&["ops"], Some("ann")))));
        assert!(p.may_use(&admin, Some(&rule(&["ops"], None))));
        let closed = AccessPolicy {
            default_access: DefaultAccess::None,
            ..AccessPolicy::default()
        };
        assert!(!closed.may_use(&ann, None));
        assert!(!closed.may_use(&ann, Some(&rule(&[], None))));
        assert!(closed.may_use(&ann, Some(&rule(&[], Some("ann")))));
        assert!(closed.may_use(&admin, None));
        assert!(!p.may_manage(&ann) && p.may_manage(&admin));
    }
}
