use super::*;
use crate::catalog::ServerSpec;

fn want(hash: &str) -> Desired {
    Desired::Container(ContainerServer {
        spec: ServerSpec::of_image("img"),
        hash: hash.into(),
        warnings: vec![],
        prefix: None,
    })
}

fn ctr(id: &str, server: &str, hash: &str, state: State) -> Container {
    Container {
        id: id.into(),
        name: container_name("f", server),
        server: server.into(),
        hash: hash.into(),
        state,
        created: 0,
        restarts: 0,
    }
}

fn desired(entries: &[(&str, Desired)]) -> DesiredState {
    DesiredState {
        servers: entries
            .iter()
            .map(|(n, d)| (n.to_string(), d.clone()))
            .collect(),
        warnings: vec![],
        catalog: vec![],
        access: Default::default(),
    }
}

#[test]
fn missing_container_is_created() {
    let p = Plan::compute("f", &desired(&[("fetch", want("h1"))]), &[]);
    assert_eq!(
        p.changes,
        vec![Change::Create {
            server: "fetch".into(),
            image: "img".into()
        }]
    );
    assert!(p.to_string().starts_with("create   fetch"));
}

#[test]
fn matching_running_container_is_in_sync() {
    let p = Plan::compute(
        "f",
        &desired(&[("fetch", want("h1"))]),
        &[ctr("a", "fetch", "h1", State::Running)],
    );
    assert!(p.is_empty());
    assert_eq!(p.in_sync, vec!["fetch"]);
}

#[test]
fn changed_hash_recreates_with_reason() {
    let p = Plan::compute(
        "f",
        &desired(&[("fetch", want("h2"))]),
        &[ctr("a", "fetch", "h1", State::Running)],
    );
    assert_eq!(
        p.changes,
        vec![Change::Recreate {
            server: "fetch".into(),
            id: "a".into(),
            reason: RecreateReason::SpecChanged {
                old_hash: "h1".into(),
                new_hash: "h2".into()
            }
        }]
    );
    assert!(p.to_string().contains("h1 -> h2"));
}

#[test]
fn a_workload_that_ended_for_good_is_replaced() {
    let p = Plan::compute(
        "f",
        &desired(&[("t", want("h"))]),
        &[ctr(
            "a",
            "t",
            "h",
            State::Failed("pod Failed: Evicted".into()),
        )],
    );
    assert!(matches!(
        &p.changes[..],
        [Change::Recreate { id, reason: RecreateReason::Ended { .. }, .. }] if id == "a"
    ));
    assert!(p.to_string().contains("ended (pod Failed: Evicted)"));
}

#[test]
fn exited_container_is_started() {
    let p = Plan::compute(
        "f",
        &desired(&[("t", want("h"))]),
        &[ctr("a", "t", "h", State::Exited(Some(1)))],
    );
    assert!(matches!(&p.changes[..], [Change::Start { id, .. }] if id == "a"));
    assert!(p.to_string().contains("exited with code 1"));
}

#[test]
fn undesired_container_is_removed() {
    let p = Plan::compute("f", &desired(&[]), &[ctr("a", "old", "h", State::Running)]);
    assert_eq!(
        p.changes,
        vec![Change::Remove {
            server: "old".into(),
            id: "a".into(),
            reason: RemoveReason::NotDesired
        }]
    );
}

#[test]
fn duplicates_keep_the_best_and_remove_the_rest() {
    let mut stale = ctr("b", "t", "old", State::Running);
    stale.created = 9;
    let good = ctr("a", "t", "h", State::Running);
    let mut other = ctr("c", "t", "h", State::Exited(Some(0)));
    other.name = "someone-else".into();
    let changes = plan_server("f", "t", Some(&want("h")), &[stale, good, other], None);
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|c| matches!(
        c,
        Change::Remove { reason: RemoveReason::Duplicate, id, .. } if id != "a"
    )));
}

#[test]
fn the_canonical_name_is_kept_over_a_running_duplicate_under_another_name() {
    let stopped = ctr("right", "t", "h", State::Exited(Some(0)));
    let mut stray = ctr("stray", "t", "h", State::Running);
    stray.name = "renamed-by-someone".into();
    stray.created = 99;
    let changes = plan_server("f", "t", Some(&want("h")), &[stray, stopped], None);
    assert_eq!(
        changes,
        vec![
            Change::Remove {
                server: "t".into(),
                id: "stray".into(),
                reason: RemoveReason::Duplicate
            },
            Change::Start {
                server: "t".into(),
                id: "right".into(),
                state: State::Exited(Some(0))
            },
        ]
    );
}

#[test]
fn invalid_entry_leaves_the_running_container_alone() {
    let bad = Desired::Invalid { error: "x".into() };
    let p = Plan::compute(
        "f",
        &desired(&[("t", bad)]),
        &[ctr("a", "t", "h", State::Running)],
    );
    assert!(p.is_empty());
}

#[test]
fn remote_or_poci_entry_removes_an_old_container() {
    let remote = Desired::Remote {
        url: crate::catalog::RemoteUrl::new("u"),
        transport: "sse".into(),
        headers: Default::default(),
        prefix: None,
    };
    let changes = plan_server(
        "f",
        "t",
        Some(&remote),
        &[ctr("a", "t", "h", State::Running)],
        None,
    );
    assert!(matches!(
        &changes[..],
        [Change::Remove {
            reason: RemoveReason::NotAContainer,
            ..
        }]
    ));
}

#[test]
fn unhealthy_running_container_is_recreated_only_if_it_is_the_reported_one() {
    let c = ctr("a", "t", "h", State::Running);
    let report = |id: &str| UnhealthyReport {
        container_id: id.into(),
        message: "handshake timed out".into(),
    };
    let changes = plan_server(
        "f",
        "t",
        Some(&want("h")),
        std::slice::from_ref(&c),
        Some(&report("a")),
    );
    assert!(matches!(
        &changes[..],
        [Change::Recreate {
            reason: RecreateReason::Unhealthy { .. },
            ..
        }]
    ));
    assert!(changes[0].to_string().contains("not answering MCP"));
    // A report about an older container does not touch the new one.
    assert!(plan_server("f", "t", Some(&want("h")), &[c], Some(&report("old"))).is_empty());
}
