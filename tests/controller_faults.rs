//! The faults a chaos run found in the controller (issue 9), each reproduced
//! against the real engine and the real binary. Every test here failed
//! before its fix (checked with MCP_FLEET_TEST_BIN pointing at the old build).
//! Faults 6 (an invalid entry heals with its last good spec) and 8a (restart
//! counts and back-off survive a controller restart) extend the tests of the
//! same setup in controller.rs.
mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::engine_proxy::EngineProxy;
use common::*;

const MIN: Duration = Duration::from_secs(60);

fn loads(f: &Fleet) -> usize {
    f.log_count(&["catalog loaded"])
}

async fn http_status(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    Some(client.get(url).send().await.ok()?.status().as_u16())
}

/// 1. A failing server is retried when its back-off says, however often a
/// resync wakes it: the retries do not pile up with uptime.
#[tokio::test(flavor = "multi_thread")]
async fn retries_of_a_failing_server_do_not_pile_up() {
    let mut f = Fleet::new("retries").await;
    let mut proxy = EngineProxy::new();
    proxy.up();
    f.catalog(&catalog_of(&[entry(
        "ghost",
        "mcp-fleet-test/does-not-exist:1",
        "",
    )]));
    // The test timings: a resync every 2 s, back-off from 0.5 s to 4 s.
    f.start_env(&["--pull", "never"], &[("DOCKER_HOST", &proxy.host())]);
    f.until("the back-off at its cap", MIN, || async {
        let s = f.status()?;
        let m = s["servers"]["ghost"]["message"].as_str()?;
        m.contains("retrying in 4s").then_some(())
    })
    .await;
    // A measurement window: image look-ups in 12 s with a 4 s back-off and
    // a resync every 2 s. One per back-off period is right; the old queue
    // added a timer per failure and per resync, so it grew with uptime.
    let window = Duration::from_secs(12);
    let before = proxy.count("GET /images/");
    tokio::time::sleep(window).await;
    let n = proxy.count("GET /images/") - before;
    assert!(
        (2..=5).contains(&n),
        "{n} image look-ups in {window:?} (expected about 3)\n{}",
        f.logs()
    );
}

/// 2. At rest the controller does not read its catalog, not even a broken
/// one; a change is still read at once.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_controller_does_not_read_its_catalog() {
    use notify::{EventKind, RecursiveMode, Watcher, event::AccessKind};
    let mut f = Fleet::new("rest").await;
    let fixture = include_str!("fixtures/docker-catalog-v2.yaml");
    // Docker's 110-entry catalog, nothing approved.
    f.write_atomic("registry.yaml", "registry: {}\n");
    f.catalog(fixture);
    f.start(&[]);
    f.until("catalog loaded", MIN, || async {
        (loads(&f) > 0 && f.status().is_some()).then_some(())
    })
    .await;

    let opens = Arc::new(AtomicUsize::new(0));
    let mut watcher = notify::recommended_watcher({
        let opens = opens.clone();
        move |e: notify::Result<notify::Event>| {
            if let Ok(e) = e
                && matches!(e.kind, EventKind::Access(AccessKind::Open(_)))
                && e.paths.iter().any(|p| p.ends_with("docker-mcp.yaml"))
            {
                opens.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .unwrap();
    watcher
        .watch(f.dir.path(), RecursiveMode::NonRecursive)
        .unwrap();

    // A window at rest (the old watcher took its own reads for changes and
    // read the catalog about 5 times a second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(opens.load(Ordering::SeqCst), 0, "catalog read at rest");

    // A broken catalog is read and reported once, not over and over.
    let before = opens.load(Ordering::SeqCst);
    f.catalog("registry:\n  a: [\n");
    f.until("the error reported", MIN, || async {
        (f.log_count(&["config not loaded"]) == 1).then_some(())
    })
    .await;
    // This test's watcher hears of that read a moment after it happened
    // (under load, after the log line): count from there.
    f.until("the read seen by the test's watcher", MIN, || async {
        (opens.load(Ordering::SeqCst) > before).then_some(())
    })
    .await;
    let opened = opens.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        opens.load(Ordering::SeqCst),
        opened,
        "broken catalog re-read"
    );
    assert_eq!(f.log_count(&["config not loaded"]), 1, "{}", f.logs());

    // The watch still works: a fixed catalog is taken up.
    let n = loads(&f);
    f.catalog(&format!("{fixture}  zz-extra:\n    image: x\n"));
    f.until("the fixed catalog loaded", MIN, || async {
        (loads(&f) > n).then_some(())
    })
    .await;
    assert!(opens.load(Ordering::SeqCst) > opened);
}

/// 3. Started while the engine is down, the controller waits for it, says
/// so in the status and /readyz, and reconciles once it answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_controller_started_before_the_engine_waits_for_it() {
    let mut f = Fleet::new("no-engine").await;
    let mut proxy = EngineProxy::new(); // down
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    f.start_env(&["--no-auth"], &[("DOCKER_HOST", &proxy.host())]);
    let err = f
        .until("the engine reported unreachable", MIN, || async {
            let s = f.status()?;
            (s["engine"]["reachable"] == false).then(|| s["engine"]["error"].to_string())
        })
        .await;
    assert!(err.contains(&proxy.path.display().to_string()), "{err}");
    assert!(f.controller_exited().is_none(), "controller exited");
    let url = f.gateway_url().await;
    assert_eq!(http_status(&format!("{url}/readyz")).await, Some(503));

    proxy.up();
    f.running("time").await;
    f.until("ready", MIN, || async {
        (http_status(&format!("{url}/readyz")).await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(f.status().unwrap()["engine"]["reachable"], true);
}

/// 8b. Containers stopped while the engine was away (an engine restart
/// stops them) are started again without counting a crash.
#[tokio::test(flavor = "multi_thread")]
async fn an_engine_outage_is_not_counted_as_a_crash() {
    let mut f = Fleet::new("engine-restart").await;
    let mut proxy = EngineProxy::new();
    proxy.up();
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    f.start_env(&[], &[("DOCKER_HOST", &proxy.host())]);
    let c = f.running("time").await;

    proxy.down();
    f.until("the outage noticed", MIN, || async {
        (f.status()?["engine"]["reachable"] == false).then_some(())
    })
    .await;
    // What an engine shutdown does to the containers.
    docker_cli(&["stop", "-t", "1", &c.id]);
    proxy.up();
    f.until("time started again", MIN, || async {
        let now = f.container("time").await?;
        let s = f.status()?;
        (now.id == c.id && now.state == "running" && s["servers"]["time"]["phase"] == "Running")
            .then_some(())
    })
    .await;
    assert_eq!(
        f.status().unwrap()["servers"]["time"]["restartCount"],
        0,
        "{}",
        f.logs()
    );
}

/// 4. A foreign container holding the server's name: phase Conflict with a
/// message a person can act on; once it is gone, the server is created.
#[tokio::test(flavor = "multi_thread")]
async fn a_name_held_by_a_foreign_container_is_a_conflict() {
    let mut f = Fleet::new("conflict").await;
    let name = format!("mcp-fleet-{}-time", f.name);
    let foreign = run_detached(&["--name", &name, TIME]);
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    f.start(&[]);
    let msg = f
        .until("phase Conflict", MIN, || async {
            let s = f.status()?;
            (s["servers"]["time"]["phase"] == "Conflict")
                .then(|| s["servers"]["time"]["message"].to_string())
        })
        .await;
    assert!(msg.contains(&name) && msg.contains("rename"), "{msg}");
    let state = docker_cli(&["inspect", "-f", "{{.State.Status}}", &foreign]);
    assert_eq!(state, "running", "the foreign container is left alone");

    docker_cli(&["rm", "-f", &foreign]);
    let ours = f.running("time").await;
    assert_eq!(ours.name, name);
}

/// 5. Adoption keeps the container with the right name (starting it) and
/// removes a running duplicate under another name.
#[tokio::test(flavor = "multi_thread")]
async fn adoption_prefers_the_correctly_named_container() {
    let mut f = Fleet::new("adopt-name").await;
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    f.start(&[]);
    let right = f.running("time").await;
    f.stop("-TERM");
    docker_cli(&["stop", "-t", "1", &right.id]);
    let dup = run_detached(&[
        "--label",
        &format!("io.mcp-fleet.fleet={}", f.name),
        "--label",
        "io.mcp-fleet.server=time",
        "--label",
        &format!("io.mcp-fleet.spec-hash={}", right.hash),
        "--name",
        &format!("{}-duplicate", f.name),
        TIME,
    ]);
    f.start(&[]);
    let kept = f
        .until("one time container left", MIN, || async {
            let all: Vec<Ctr> = f
                .containers()
                .await
                .into_iter()
                .filter(|c| c.server == "time")
                .collect();
            let running = all.len() == 1 && all[0].state == "running";
            (running && f.phase("time").as_deref() == Some("Running")).then(|| all[0].clone())
        })
        .await;
    assert_eq!(kept.id, right.id, "kept the duplicate {dup} instead");
}

/// 7. A catalog written in place and read while cut at a line end removes
/// nothing: the rest of the write arrives within --settle.
#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_cut_at_a_line_end_removes_nothing() {
    let mut f = Fleet::new("cut").await;
    f.catalog(&catalog_of(&[
        entry("time", TIME, ""),
        entry("canary", TIME, ""),
        entry("fetch", FETCH, ""),
    ]));
    f.start(&["--settle", "3"]);
    f.running("time").await;
    f.running("canary").await;
    let fetch = f.running("fetch").await;
    let started = f.inspect(&fetch.id).await.state.unwrap().started_at;

    // The next catalog drops `canary`; its writer stops after `time`.
    let next = catalog_of(&[entry("time", TIME, ""), entry("fetch", FETCH, "")]);
    let cut = next.find("  fetch:").unwrap();
    let seen = f.log_count(&["catalog loaded", "servers=1"]);
    let mut file = std::fs::File::create(f.path("docker-mcp.yaml")).unwrap();
    file.write_all(&next.as_bytes()[..cut]).unwrap();
    f.until("the cut catalog read", MIN, || async {
        (f.log_count(&["catalog loaded", "servers=1"]) > seen).then_some(())
    })
    .await;
    file.write_all(&next.as_bytes()[cut..]).unwrap();
    drop(file);

    // `canary` goes once the catalog has settled: by then a removal of
    // `fetch` would have happened too.
    f.gone("canary").await;
    let now = f.running("fetch").await;
    assert_eq!(now.id, fetch.id, "fetch was removed and re-created");
    let again = f.inspect(&now.id).await.state.unwrap().started_at;
    assert_eq!(again, started, "fetch was restarted");
}

/// 8c. YAML errors in plain words with file:line:col; a server key given
/// twice rejects only that server.
#[tokio::test(flavor = "multi_thread")]
async fn yaml_errors_are_plain_and_a_repeated_server_rejects_only_itself() {
    let mut f = Fleet::new("yaml-errors").await;
    let validate = |file: &str, text: &str| {
        f.write(file, text);
        let out = f.cli(&["validate", f.path(file).to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        stderr(&out)
    };
    let twice =
        "registry:\n  fetch:\n    image: a\n  time:\n    image: b\n  fetch:\n    image: c\n";
    let err = validate("twice.yaml", twice);
    assert!(
        err.contains("twice.yaml:2:3: server `fetch`") && err.contains("lines 2, 6"),
        "{err}"
    );
    let err = validate("key.yaml", "registry:\n  t:\n    image: a\n    image: b\n");
    assert!(err.contains("key `image` is given more than once"), "{err}");
    let big = format!("registry: {{}}\nx: [{}]\n", "1,".repeat(250_001));
    let err = validate("big.yaml", &big);
    assert!(
        err.contains("big.yaml") && err.contains("too large"),
        "{err}"
    );
    assert!(!err.contains("budget") && !err.contains("Nodes"), "{err}");
    let err = validate("top.yaml", "registry: {}\nregistry: {}\n");
    assert!(
        !err.contains("DuplicateKeyPolicy") && !err.contains("Options"),
        "{err}"
    );

    // The controller runs the rest and reports the repeated one.
    f.catalog(&catalog_of(&[
        entry("fetch", FETCH, ""),
        entry("time", TIME, ""),
        entry("fetch", FETCH, ""),
    ]));
    f.start(&[]);
    f.running("time").await;
    let msg = f
        .until("fetch invalid", MIN, || async {
            let s = f.status()?;
            (s["servers"]["fetch"]["phase"] == "Invalid")
                .then(|| s["servers"]["fetch"]["message"].to_string())
        })
        .await;
    assert!(msg.contains("defined 2 times"), "{msg}");
    assert!(f.status().unwrap()["catalog"]["error"].is_null());
}
