//! Issue 12: on Docker, reconciles read what runs from a store the engine's
//! events keep current, not from a fresh list each time. Counted at a proxy
//! in front of the real engine, with the real binary.
mod common;

use std::time::Duration;

use common::engine_proxy::EngineProxy;
use common::*;

const MIN: Duration = Duration::from_secs(60);
const TIME: &str = "mcp-fleet-test/time:latest";

fn reconciled(f: &Fleet, server: &str) -> usize {
    f.log_count(&["reconciled", &format!("server=\"{server}\"")])
}

/// Engine reads: container lists and inspects (attaches are not reads).
fn reads(proxy: &EngineProxy) -> (usize, usize) {
    let inspects =
        (proxy.count("GET /containers/")).saturating_sub(proxy.count("GET /containers/json"));
    (proxy.count("GET /containers/json"), inspects)
}

#[tokio::test(flavor = "multi_thread")]
async fn resyncs_read_the_store_and_a_kill_is_seen_through_events_with_its_exit_code() {
    let mut f = Fleet::new("store").await;
    let mut proxy = EngineProxy::new();
    proxy.up();
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    // A resync every 0.2 s: each one reconciles every server.
    f.start_env(&["--resync", "0.2"], &[("DOCKER_HOST", &proxy.host())]);
    let first = f.running("time").await;
    f.ready("time").await;

    let before = reads(&proxy);
    let done = reconciled(&f, "time");
    f.until("ten more reconciles of time", MIN, || async {
        (reconciled(&f, "time") >= done + 10).then_some(())
    })
    .await;
    assert_eq!(
        reads(&proxy),
        before,
        "reconciles at rest read the engine (lists, inspects)\n{}",
        f.logs()
    );

    // The engine's events alone tell the controller; the inspect that
    // follows the event gives the exact exit code (a list only has text).
    docker_cli(&["kill", &first.id]);
    f.restarted("time").await;
    assert!(
        f.log_count(&["server=\"time\"", "exit code 137"]) >= 1,
        "the crash is reported with the code SIGKILL gives\n{}",
        f.logs()
    );
    assert_eq!(
        reads(&proxy).0,
        before.0,
        "healing listed the engine\n{}",
        f.logs()
    );

    // A container removed behind the controller's back is replaced, again
    // from the events (`destroy` needs no read at all).
    let second = f.running("time").await;
    docker_cli(&["rm", "-f", &second.id]);
    f.until("time replaced after docker rm", MIN, || async {
        let now = f.container("time").await?;
        (now.id != second.id && now.state == "running").then_some(())
    })
    .await;
    assert_eq!(reads(&proxy).0, before.0, "{}", f.logs());
    f.stop("-TERM");
}
