//! Reading what runs from the engine: a full list, or one container.
use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum,
};
use bollard::query_parameters::ListContainersOptionsBuilder;

use super::{call_error, label_filter, status_of};
use crate::Result;
use crate::runtime::metered::count;
use crate::runtime::{Container, LABEL_HASH, LABEL_SERVER, State};

/// Every container of the fleet (or of one server). Stopped ones are
/// inspected for their exit code, which a list reports only as text.
pub(super) async fn all(
    docker: &Docker,
    fleet: &str,
    server: Option<&str>,
) -> Result<Vec<Container>> {
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&label_filter(fleet, server))
        .build();
    let found = count("list", docker.list_containers(Some(opts)).await)
        .map_err(|e| call_error("list containers", e))?;
    let mut out = Vec::with_capacity(found.len());
    for summary in found {
        let exited = summary.state == Some(ContainerSummaryStateEnum::EXITED);
        match (exited, summary.id.as_deref()) {
            // Gone between the list and the inspect: not there any more.
            (true, Some(id)) => out.extend(one(docker, id).await?),
            _ => out.extend(of_summary(summary)),
        }
    }
    Ok(out)
}

/// One container as the engine reports it now; `None` once it is gone.
pub(super) async fn one(docker: &Docker, id: &str) -> Result<Option<Container>> {
    match count("inspect", docker.inspect_container(id, None).await) {
        Ok(found) => Ok(of_inspect(found)),
        Err(e) if status_of(&e) == Some(404) => Ok(None),
        Err(e) => Err(call_error(format!("inspect {}", super::short(id)), e)),
    }
}

fn of_summary(c: ContainerSummary) -> Option<Container> {
    let state = match c.state {
        Some(ContainerSummaryStateEnum::RUNNING) => State::Running,
        Some(ContainerSummaryStateEnum::CREATED) => State::Created,
        Some(ContainerSummaryStateEnum::EXITED) => State::Exited(None),
        other => State::Other(format!("{other:?}").to_lowercase()),
    };
    let name = c.names.and_then(|n| n.into_iter().next());
    container(c.id?, name, c.labels, state, c.created.unwrap_or_default())
}

fn of_inspect(c: ContainerInspectResponse) -> Option<Container> {
    let st = c.state.unwrap_or_default();
    let state = match st.status {
        Some(ContainerStateStatusEnum::RUNNING) => State::Running,
        Some(ContainerStateStatusEnum::CREATED) => State::Created,
        Some(ContainerStateStatusEnum::EXITED) => State::Exited(st.exit_code),
        other => State::Other(format!("{other:?}").to_lowercase()),
    };
    let created = c.created.as_deref().and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    let labels = c.config.and_then(|cfg| cfg.labels);
    let created = created.map_or(0, |t| t.unix_timestamp());
    container(c.id?, c.name, labels, state, created)
}

fn container(
    id: String,
    name: Option<String>,
    labels: Option<HashMap<String, String>>,
    state: State,
    created: i64,
) -> Option<Container> {
    let labels = labels.unwrap_or_default();
    Some(Container {
        id,
        name: name.unwrap_or_default().trim_start_matches('/').to_string(),
        server: labels.get(LABEL_SERVER)?.clone(),
        hash: labels.get(LABEL_HASH).cloned().unwrap_or_default(),
        state,
        created,
        restarts: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState};

    #[test]
    fn an_inspected_container_has_its_exit_code_and_creation_time() {
        let labels = HashMap::from([
            (LABEL_SERVER.to_string(), "time".to_string()),
            (LABEL_HASH.to_string(), "abc".to_string()),
        ]);
        let found = ContainerInspectResponse {
            id: Some("0123456789abcdef".into()),
            name: Some("/mcp-fleet-f-time".into()),
            created: Some("2026-11-23T14:00:00.123456789Z".into()),
            config: Some(ContainerConfig {
                labels: Some(labels),
                ..Default::default()
            }),
            state: Some(ContainerState {
                status: Some(ContainerStateStatusEnum::EXITED),
                exit_code: Some(137),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = of_inspect(found).expect("ours");
        assert_eq!(c.state, State::Exited(Some(137)));
        assert_eq!(
            (c.name.as_str(), c.server.as_str(), c.hash.as_str()),
            ("mcp-fleet-f-time", "time", "abc")
        );
        assert_eq!(c.created, 1_795_442_400);
    }

    #[test]
    fn a_container_without_a_server_label_is_not_ours() {
        let found = ContainerInspectResponse {
            id: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(of_inspect(found), None);
    }
}
