//! What a Pod of ours tells the controller: the runtime-neutral
//! [`Container`], from the Pod's status as kubelet writes it.
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::objects::{ANNOTATION_SERVER, CONTAINER, GATE};
use crate::runtime::{Container, LABEL_HASH, State};

/// The server's workload as the controller sees it; `None` for a Pod that
/// is being deleted (it is going away, whatever it still does) or is not one
/// of ours. `made_here` says whether this process made the Pod (a gated Pod
/// it made is not half-made: the watch is only behind).
pub fn container_of(pod: &Pod, made_here: bool) -> Option<Container> {
    let meta = &pod.metadata;
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref();
    let ours = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == CONTAINER));
    Some(Container {
        id: meta.name.clone()?,
        name: meta.name.clone()?,
        server: meta.annotations.as_ref()?.get(ANNOTATION_SERVER)?.clone(),
        hash: (meta.labels.as_ref())
            .and_then(|l| l.get(LABEL_HASH))
            .cloned()
            .unwrap_or_default(),
        state: state_of(pod, ours, made_here),
        created: meta
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or_default(),
        restarts: ours
            .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
            .unwrap_or(0),
    })
}

fn state_of(pod: &Pod, ours: Option<&ContainerStatus>, made_here: bool) -> State {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if matches!(phase, "Failed" | "Succeeded") {
        // With restartPolicy Always only eviction or a lost node ends a Pod.
        let reason = status.and_then(|s| s.reason.as_deref()).unwrap_or(phase);
        let message = status.and_then(|s| s.message.as_deref()).unwrap_or("");
        return State::Failed(
            format!("pod {phase}: {reason} {message}")
                .trim()
                .to_string(),
        );
    }
    let gated = (pod.spec.as_ref()).and_then(|s| s.scheduling_gates.as_ref());
    if gated.is_some_and(|g| g.iter().any(|g| g.name == GATE)) {
        // A create takes one reconcile and lifts the gate before it ends: a
        // gated Pod this process did not make was left half-made by another.
        return match made_here {
            true => State::Waiting {
                reason: "SchedulingGated".into(),
                message: String::new(),
            },
            false => State::Failed("left half-made (its scheduling gate was never lifted)".into()),
        };
    }
    let Some(state) = ours.and_then(|c| c.state.as_ref()) else {
        // Not scheduled yet, or no status from kubelet yet.
        let unscheduled = (status.and_then(|s| s.conditions.as_ref())).and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        });
        return State::Waiting {
            reason: unscheduled
                .and_then(|c| c.reason.clone())
                .unwrap_or_else(|| "Pending".into()),
            message: unscheduled
                .and_then(|c| c.message.clone())
                .unwrap_or_default(),
        };
    };
    if state.running.is_some() {
        State::Running
    } else if let Some(w) = &state.waiting {
        let last = (ours.and_then(|c| c.last_state.as_ref()))
            .and_then(|s| s.terminated.as_ref())
            .map(|t| format!(" (last exit code {})", t.exit_code))
            .unwrap_or_default();
        State::Waiting {
            reason: w.reason.clone().unwrap_or_else(|| "Waiting".into()),
            message: format!("{}{last}", w.message.as_deref().unwrap_or_default())
                .trim()
                .to_string(),
        }
    } else if let Some(t) = &state.terminated {
        State::Exited(Some(i64::from(t.exit_code)))
    } else {
        State::Created
    }
}
