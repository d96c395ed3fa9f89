//! Desired vs actual, as plain data: which containers to create, recreate,
//! start or remove. Nothing here acts; `mcp-fleet plan` prints a [`Plan`] and
//! the controller executes one server's part of it.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::catalog::{ContainerServer, Desired, DesiredState};
use crate::runtime::{Container, State, container_name, docker::short};

/// One change to one server's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create {
        server: String,
        image: String,
    },
    /// Replace the container: its spec differs, or it stopped answering MCP.
    Recreate {
        server: String,
        id: String,
        reason: RecreateReason,
    },
    /// The container exists with the right spec but is not running.
    Start {
        server: String,
        id: String,
        state: State,
    },
    Remove {
        server: String,
        id: String,
        reason: RemoveReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecreateReason {
    SpecChanged {
        old_hash: String,
        new_hash: String,
    },
    /// The gateway's MCP session to it failed (handshake or ping).
    Unhealthy {
        message: String,
    },
    /// The backend will not run it again (a failed or evicted Pod).
    Ended {
        message: String,
    },
}

impl fmt::Display for RecreateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecreateReason::SpecChanged { old_hash, new_hash } => write!(
                f,
                "spec changed (hash {} -> {new_hash})",
                if old_hash.is_empty() {
                    "none"
                } else {
                    old_hash
                }
            ),
            RecreateReason::Unhealthy { message } => write!(f, "not answering MCP ({message})"),
            RecreateReason::Ended { message } => write!(f, "ended ({message})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Not approved, or no longer in the catalog.
    NotDesired,
    /// The catalog entry is no longer a container (remote, poci).
    NotAContainer,
    /// A second container for a server that needs one.
    Duplicate,
}

impl Change {
    pub fn server(&self) -> &str {
        match self {
            Change::Create { server, .. }
            | Change::Recreate { server, .. }
            | Change::Start { server, .. }
            | Change::Remove { server, .. } => server,
        }
    }

    /// The kind of step, for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Create { .. } => "create",
            Change::Recreate { .. } => "recreate",
            Change::Start { .. } => "start",
            Change::Remove { .. } => "remove",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create { server, image } => write!(f, "create   {server}: image {image}"),
            Change::Recreate { server, id, reason } => {
                write!(f, "recreate {server}: {reason}, replaces {}", short(id))
            }
            Change::Start { server, id, state } => {
                let why = match state {
                    State::Exited(Some(code)) => format!("exited with code {code}"),
                    State::Exited(None) => "exited".to_string(),
                    State::Created => "created but never started".to_string(),
                    State::Waiting { reason, .. } => format!("waiting ({reason})"),
                    other => format!("{other:?}").to_lowercase(),
                };
                write!(f, "start    {server}: container {} {why}", short(id))
            }
            Change::Remove { server, id, reason } => {
                let why = match reason {
                    RemoveReason::NotDesired => "no longer approved or in the catalog",
                    RemoveReason::NotAContainer => "the catalog entry is not a container",
                    RemoveReason::Duplicate => "duplicate container",
                };
                write!(f, "remove   {server}: container {} ({why})", short(id))
            }
        }
    }
}

/// The whole fleet's changes, in server order; `in_sync` lists servers that
/// need nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub in_sync: Vec<String>,
}

impl Plan {
    pub fn compute(fleet: &str, desired: &DesiredState, actual: &[Container]) -> Plan {
        let mut by_server: BTreeMap<&str, Vec<Container>> = BTreeMap::new();
        for c in actual {
            by_server.entry(&c.server).or_default().push(c.clone());
        }
        let names: BTreeSet<&str> = desired
            .servers
            .keys()
            .map(String::as_str)
            .chain(by_server.keys().copied())
            .collect();
        let mut plan = Plan::default();
        for name in names {
            let containers = by_server.get(name).map(Vec::as_slice).unwrap_or_default();
            let changes = plan_server(fleet, name, desired.servers.get(name), containers, None);
            if changes.is_empty() && desired.servers.contains_key(name) {
                plan.in_sync.push(name.to_string());
            }
            plan.changes.extend(changes);
        }
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        if self.changes.is_empty() {
            writeln!(f, "in sync: nothing to do")?;
        }
        Ok(())
    }
}

/// One server's changes, removals first. `fleet` decides which of several
/// good containers to keep (the one with the canonical name); `unhealthy` is
/// the id of a container the gateway found not answering, if any.
pub fn plan_server(
    fleet: &str,
    server: &str,
    desired: Option<&Desired>,
    containers: &[Container],
    unhealthy: Option<&UnhealthyReport>,
) -> Vec<Change> {
    let remove_all = |reason| {
        containers
            .iter()
            .map(|c| Change::Remove {
                server: server.to_string(),
                id: c.id.clone(),
                reason,
            })
            .collect()
    };
    match desired {
        None => remove_all(RemoveReason::NotDesired),
        Some(Desired::Remote { .. } | Desired::Unsupported { .. }) => {
            remove_all(RemoveReason::NotAContainer)
        }
        // An unusable entry leaves whatever runs alone.
        Some(Desired::Invalid { .. }) => Vec::new(),
        Some(Desired::Container(want)) => {
            plan_container(fleet, server, want, containers, unhealthy)
        }
    }
}

/// The gateway's word that a container does not answer MCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnhealthyReport {
    pub container_id: String,
    pub message: String,
}

fn plan_container(
    fleet: &str,
    server: &str,
    want: &ContainerServer,
    containers: &[Container],
    unhealthy: Option<&UnhealthyReport>,
) -> Vec<Change> {
    let canonical = container_name(fleet, server);
    // Best first: right spec, canonical name, running, newest. The name comes
    // before running: a stopped container under the right name is started
    // and a running one under another name removed, never the other way
    // round (which would leave the name free for anyone to take).
    let rank = |c: &Container| {
        (
            c.hash == want.hash,
            c.name == canonical,
            c.state.is_running(),
            c.created,
        )
    };
    let Some(keep) = containers.iter().max_by_key(|c| rank(c)) else {
        return vec![Change::Create {
            server: server.to_string(),
            image: want.spec.image.clone(),
        }];
    };
    let mut changes: Vec<Change> = containers
        .iter()
        .filter(|c| c.id != keep.id)
        .map(|c| Change::Remove {
            server: server.to_string(),
            id: c.id.clone(),
            reason: RemoveReason::Duplicate,
        })
        .collect();
    if keep.hash != want.hash {
        changes.push(Change::Recreate {
            server: server.to_string(),
            id: keep.id.clone(),
            reason: RecreateReason::SpecChanged {
                old_hash: keep.hash.clone(),
                new_hash: want.hash.clone(),
            },
        });
    } else if let Some(u) =
        unhealthy.filter(|u| u.container_id == keep.id && keep.state.is_running())
    {
        changes.push(Change::Recreate {
            server: server.to_string(),
            id: keep.id.clone(),
            reason: RecreateReason::Unhealthy {
                message: u.message.clone(),
            },
        });
    } else if let State::Failed(message) = &keep.state {
        changes.push(Change::Recreate {
            server: server.to_string(),
            id: keep.id.clone(),
            reason: RecreateReason::Ended {
                message: message.clone(),
            },
        });
    } else if !keep.state.is_running() {
        changes.push(Change::Start {
            server: server.to_string(),
            id: keep.id.clone(),
            state: keep.state.clone(),
        });
    }
    changes
}

#[cfg(test)]
mod tests;
