//! Where the backend restarts and pulls on its own (kubelet), the controller
//! does neither: a server's status is what the backend observes about its
//! workload (waiting with kubelet's reason, exited between two of kubelet's
//! restarts, its restart count), said in the status and nothing more.
use super::Context;
use crate::catalog::ContainerServer;
use crate::runtime::{Container, State};
use crate::status::{Phase, Update};

/// The phase a backend's waiting reason stands for. Kubelet's image reasons
/// are `ErrImagePull` (the pull failed) then `ImagePullBackOff` (waiting to
/// try again); a container that keeps exiting waits in `CrashLoopBackOff`.
pub(super) fn waiting_phase(reason: &str) -> Phase {
    match reason {
        "ImagePullBackOff" | "ErrImagePull" | "ErrImageNeverPull" | "InvalidImageName" => {
            Phase::ImagePullBackOff
        }
        "CrashLoopBackOff" => Phase::CrashLoopBackOff,
        // ContainerCreating, PodInitializing, Pending (not scheduled yet),
        // CreateContainerConfigError (e.g. its Secret not there yet), ...
        _ => Phase::Creating,
    }
}

/// Reports the not-running workload of `want`'s spec as the backend sees it
/// (the newest, if there are several); `None` when there is none.
pub(super) fn report(
    server: &str,
    want: &ContainerServer,
    containers: &[Container],
    ctx: &Context,
) -> Option<()> {
    let c = containers
        .iter()
        .filter(|c| c.hash == want.hash && !c.state.is_running())
        .max_by_key(|c| c.created)?;
    let (phase, message) = match &c.state {
        State::Waiting { reason, message } if message.is_empty() => {
            (waiting_phase(reason), format!("waiting: {reason}"))
        }
        State::Waiting { reason, message } => (
            waiting_phase(reason),
            format!("waiting: {reason}: {message}"),
        ),
        State::Exited(code) => {
            let code = code.map(|c| format!(" with code {c}")).unwrap_or_default();
            (
                Phase::CrashLoopBackOff,
                format!("exited{code}; the backend restarts it"),
            )
        }
        State::Created => (Phase::Creating, "created; waiting for it to run".into()),
        State::Failed(m) | State::Other(m) => (Phase::Creating, m.clone()),
        State::Running => return None,
    };
    // The gateway's session to it ended with the run; a report about that
    // run says nothing about the next one.
    ctx.view.remove_container(server, &c.id);
    ctx.unhealthy.lock().expect("unhealthy lock").remove(server);
    ctx.status.update(
        server,
        Update::phase(phase, message)
            .container(Some(&c.id), Some(&c.hash))
            .restarts(c.restarts)
            .backoff(None),
    );
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_reasons_map_to_phases() {
        assert_eq!(waiting_phase("ImagePullBackOff"), Phase::ImagePullBackOff);
        assert_eq!(waiting_phase("ErrImagePull"), Phase::ImagePullBackOff);
        assert_eq!(waiting_phase("CrashLoopBackOff"), Phase::CrashLoopBackOff);
        assert_eq!(waiting_phase("ContainerCreating"), Phase::Creating);
    }
}
