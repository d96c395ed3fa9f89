//! The engine's events feed the store: each event about a container's state
//! is followed by an inspect of that container, applied before the event is
//! passed on, so the reconcile it wakes reads the state that caused it.
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::store::{Following, Store};
use super::{DockerRuntime, call_error, label_filter, read};
use crate::Result;
use crate::runtime::LABEL_SERVER;
use crate::runtime::metered::count;

/// Opens the event stream, then lists the fleet into the store. Events from
/// a second before the list are replayed, so none falls in between; one
/// applied twice does no harm. Yields the servers the list changed, then
/// one server per event.
pub(super) async fn follow(
    rt: DockerRuntime,
    fleet: String,
) -> Result<BoxStream<'static, Result<String>>> {
    rt.store.lost();
    let docker = rt.docker().await?.clone();
    let since = engine_now(&docker).await.saturating_sub(1).to_string();
    let mut filters = label_filter(&fleet, None);
    filters.insert("type".into(), vec!["container".into()]);
    let opts = EventsOptionsBuilder::default()
        .since(&since)
        .filters(&filters)
        .build();
    let events = docker.events(Some(opts));
    let changed = {
        let _order = rt.store.writing().await;
        let all = read::all(&docker, &fleet, None).await?;
        rt.store.replace(&fleet, all)
    };
    let store = rt.store.clone();
    let following = Following(store.clone());
    let applied = events.filter_map(move |ev| {
        let (store, docker) = (store.clone(), docker.clone());
        let _ = &following;
        async move { apply(&store, &docker, ev).await }
    });
    Ok(stream::iter(changed.into_iter().map(Ok))
        .chain(applied)
        .boxed())
}

/// The server an event is about, after the store has caught up with it.
async fn apply(
    store: &Store,
    docker: &Docker,
    ev: std::result::Result<EventMessage, DockerError>,
) -> Option<Result<String>> {
    let msg = match ev {
        Ok(msg) => msg,
        Err(e) => {
            store.lost();
            return Some(Err(call_error("events", e)));
        }
    };
    let actor = msg.actor?;
    let server = actor.attributes.and_then(|mut a| a.remove(LABEL_SERVER))?;
    let id = actor.id?;
    let action = msg.action.unwrap_or_default();
    if changes_state(&action) {
        let _order = store.writing().await;
        if action == "destroy" {
            store.forget(&id);
        } else {
            match read::one(docker, &id).await {
                Ok(Some(c)) => store.put(c),
                Ok(None) => store.forget(&id),
                Err(e) => {
                    store.lost();
                    return Some(Err(e));
                }
            }
        }
    }
    Some(Ok(server))
}

/// Actions after which a container's state may differ. Attaches, execs and
/// resizes leave it as it was (and the gateway attaches often); `kill` and
/// `oom` are followed by `die`.
fn changes_state(action: &str) -> bool {
    matches!(
        action,
        "create"
            | "start"
            | "restart"
            | "die"
            | "stop"
            | "pause"
            | "unpause"
            | "destroy"
            | "rename"
            | "update"
    )
}

/// The engine's clock in seconds since the epoch (it may be another
/// machine's); ours if the engine does not say.
async fn engine_now(docker: &Docker) -> i64 {
    let ours = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    };
    let info = count("info", docker.info().await).ok();
    let theirs = info.and_then(|i| i.system_time).and_then(|t| {
        time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
    });
    theirs.map_or_else(ours, |t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_state_changes_are_inspected() {
        for a in ["create", "start", "die", "stop", "destroy"] {
            assert!(changes_state(a), "{a}");
        }
        for a in [
            "attach",
            "detach",
            "exec_start: sh",
            "resize",
            "kill",
            "top",
        ] {
            assert!(!changes_state(a), "{a}");
        }
    }
}
