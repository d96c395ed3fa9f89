//! The controller against a real Docker engine, real MCP server images and
//! the real binary. Each test has its own fleet name, so they run in parallel
//! and never see each other's containers.
mod common;

use std::time::{Duration, Instant};

use common::*;

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn approving_fetch_runs_a_hardened_labelled_container() {
    let mut f = Fleet::new("approve").await;
    f.catalog("name: docker-mcp\nregistry: {}\n");
    f.start(&[]);
    f.until("empty catalog loaded", MIN, || async { f.status() })
        .await;

    let written = Instant::now();
    f.catalog(&catalog_of(&[entry("fetch", FETCH, "")]));
    let c = f.running("fetch").await;
    eprintln!("catalog write -> fetch running: {:?}", written.elapsed());

    assert_eq!(c.name, format!("mcp-fleet-{}-fetch", f.name));
    for (k, v) in [
        ("io.mcp-fleet.fleet", f.name.as_str()),
        ("io.mcp-fleet.server", "fetch"),
        ("docker-mcp", "true"),
        ("docker-mcp-name", "fetch"),
        ("docker-mcp-transport", "stdio"),
    ] {
        assert_eq!(c.labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    assert_eq!(c.hash.len(), 16);
    let status = f.status().unwrap();
    assert_eq!(status["servers"]["fetch"]["specHash"], c.hash.as_str());
    assert_eq!(status["servers"]["fetch"]["containerId"], c.id.as_str());

    let i = f.inspect(&c.id).await;
    let cfg = i.config.unwrap();
    assert_eq!(
        cfg.open_stdin,
        Some(true),
        "stdin stays open for the gateway"
    );
    assert_eq!(cfg.tty, Some(false));
    let hc = i.host_config.unwrap();
    assert_eq!(hc.init, Some(true));
    assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(hc.memory, Some(512 << 20));
    assert_eq!(hc.nano_cpus, Some(1_000_000_000));
    assert_eq!(hc.pids_limit, Some(256));
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    let policy = hc
        .restart_policy
        .and_then(|p| p.name)
        .map(|n| n.to_string());
    assert!(
        matches!(policy.as_deref(), None | Some("") | Some("no")),
        "no engine restart policy: {policy:?}"
    );

    // The server really runs under these restrictions: the gateway completed
    // an MCP handshake with it, and it was never restarted (a healed crash
    // keeps the container id, so the start time and the count tell).
    let started = i.state.unwrap().started_at;
    f.until("fetch answering MCP", MIN, || async {
        (f.status()?["servers"]["fetch"]["ready"]["status"] == true).then_some(())
    })
    .await;
    let again = f.inspect(&c.id).await.state.unwrap();
    assert_eq!(again.started_at, started, "fetch was restarted");
    assert_eq!(again.running, Some(true));
    assert_eq!(f.status().unwrap()["servers"]["fetch"]["restartCount"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn removal_and_spec_change_follow_the_catalog() {
    let mut f = Fleet::new("change").await;
    let with_env = |v: &str| {
        catalog_of(&[
            entry("time", TIME, ""),
            entry(
                "test",
                TESTSERVER,
                &format!("env:\n  - name: GREETING\n    value: '{v}'"),
            ),
        ])
    };
    f.catalog(&with_env("one"));
    f.start(&[]);
    let time = f.running("time").await;
    let before = f.running("test").await;

    // A description change or reordered keys recreate nothing: once the
    // controller has read it, the plan it acts on is empty.
    let loaded = f.log_count(&["catalog loaded"]);
    f.catalog(&catalog_of(&[
        entry(
            "test",
            TESTSERVER,
            "env:\n  - {value: one, name: GREETING}\ndescription: changed",
        ),
        entry("time", TIME, "title: Time"),
    ]));
    f.until("the description change read", MIN, || async {
        (f.log_count(&["catalog loaded"]) > loaded).then_some(())
    })
    .await;
    let plan = f.plan();
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    // Changing an env value recreates that server only.
    f.catalog(&with_env("two"));
    let after = f
        .until("test recreated", MIN, || async {
            let c = f.container("test").await?;
            (c.id != before.id && c.state == "running").then_some(c)
        })
        .await;
    assert_ne!(after.hash, before.hash, "new spec hash");
    let env = f.inspect(&after.id).await.config.unwrap().env.unwrap();
    assert!(env.contains(&"GREETING=two".to_string()));
    assert_eq!(
        f.container("time").await.unwrap().id,
        time.id,
        "time untouched"
    );

    // Removing a server from the catalog removes its container.
    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    f.gone("test").await;
    assert_eq!(f.container("time").await.unwrap().id, time.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_container_comes_back_a_crashing_one_backs_off_and_both_survive_a_restart() {
    let mut f = Fleet::new("heal").await;
    f.catalog(&catalog_of(&[
        entry("time", TIME, ""),
        entry("crashy", TESTSERVER, "command: ['--exit-after', '0.3']"),
    ]));
    f.start(&[]);
    let c = f.running("time").await;

    docker_cli(&["kill", &c.id]);
    f.restarted("time").await;

    // A server that keeps dying ends in CrashLoopBackOff with growing delays.
    let delays = f
        .until(
            "three back-off delays in the log",
            Duration::from_secs(90),
            || async {
                let d = backoff_delays(&f.logs(), "crashy");
                (d.len() >= 3).then_some(d)
            },
        )
        .await;
    eprintln!("back-off delays: {delays:?}");
    assert!(
        delays[..3].windows(2).all(|w| w[1] > w[0]),
        "delays must grow: {delays:?}"
    );
    let restarts = f.status().unwrap()["servers"]["crashy"]["restartCount"]
        .as_u64()
        .unwrap();
    assert!(restarts >= 2, "restarts: {restarts}");

    // Both survive a controller restart (kill -9): time's count, and crashy's
    // back-off, whose first delay in the new run continues from the last of
    // the old one (the cap is 4 s) instead of starting over at 0.5 s.
    let time_restarts = f.status().unwrap()["servers"]["time"]["restartCount"].clone();
    let before = backoff_delays(&f.current_log(), "crashy");
    f.stop("-KILL");
    f.start(&[]);
    // The new run's own word (the status file still holds the old run's
    // until it is rewritten): the line it logs when it takes time up.
    let line = f
        .until("time adopted", MIN, || async {
            let log = f.current_log();
            let line = log
                .lines()
                .find(|l| l.contains("server=\"time\"") && l.contains("phase=Running"))?;
            Some(line.to_string())
        })
        .await;
    assert!(
        line.contains(&format!("restarts={time_restarts}")),
        "{line} (was {time_restarts})"
    );
    assert_eq!(f.container("time").await.unwrap().id, c.id, "adopted");
    let after = f
        .until("crashy backing off again", MIN, || async {
            let d = backoff_delays(&f.current_log(), "crashy");
            (!d.is_empty()).then_some(d)
        })
        .await;
    let last = *before.last().unwrap();
    assert!(
        after[0] >= last.min(4.0),
        "back-off started over: {before:?} then {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn half_written_or_broken_catalog_removes_nothing() {
    let mut f = Fleet::new("bad-input").await;
    let full = catalog_of(&[entry("time", TIME, ""), entry("fetch", FETCH, "")]);
    f.write("docker-mcp.yaml", &full);
    f.start(&["--settle", "3"]);
    let time = f.running("time").await;
    let fetch = f.running("fetch").await;
    let ids = |a: &Ctr, b: &Ctr| vec![a.id.clone(), b.id.clone()];
    let expected = ids(&time, &fetch);
    let current = || async {
        let mut v: Vec<String> = f.containers().await.into_iter().map(|c| c.id).collect();
        v.sort();
        v
    };
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();

    // 1. The first step of an in-place write: the file is truncated to nothing.
    f.write("docker-mcp.yaml", "");
    f.until("empty catalog reported", MIN, || async {
        let e = f.status()?["catalog"]["error"].as_str()?.to_string();
        e.contains("empty").then_some(())
    })
    .await;
    assert_eq!(
        current().await,
        expected_sorted,
        "nothing removed on an empty file"
    );

    // 2. A write cut off in the middle of a line (of the `fetch` entry).
    let cut = full.find("fetch:").unwrap() + 3;
    f.write("docker-mcp.yaml", &full[..cut]);
    f.until(
        "partial catalog seen as still being written",
        MIN,
        || async { f.logs().contains("catalog is being written").then_some(()) },
    )
    .await;
    assert_eq!(
        current().await,
        expected_sorted,
        "nothing removed while half-written"
    );

    // 3. A syntax error: reported with file:line:col, nothing removed.
    f.write("docker-mcp.yaml", "registry:\n  time:\n    image: [oops\n");
    let err = f
        .until("syntax error reported", MIN, || async {
            let e = f.status()?["catalog"]["error"].as_str()?.to_string();
            (!e.contains("empty")).then_some(e)
        })
        .await;
    assert!(
        err.contains("docker-mcp.yaml:")
            && err
                .split(':')
                .nth(1)
                .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit())),
        "error names file:line:col: {err}"
    );
    assert_eq!(
        current().await,
        expected_sorted,
        "nothing removed on a syntax error"
    );

    // 4. The writer finishes: the error clears and the same containers run.
    f.write("docker-mcp.yaml", &full);
    f.until("error cleared", MIN, || async {
        f.status()?["catalog"]["error"].is_null().then_some(())
    })
    .await;
    assert_eq!(f.running("time").await.id, time.id);
    assert_eq!(f.running("fetch").await.id, fetch.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_entry_keeps_its_container_blocks_no_one_and_heals_with_its_last_good_spec() {
    let mut f = Fleet::new("invalid").await;
    let needs = "env:\n  - name: HOST\n    value: '{{test.host}}'\nconfig:\n  - name: test\n    properties: {host: {type: string}}\n    required: [host]";
    f.write_atomic("config.yaml", "test:\n  host: example\n");
    f.catalog(&catalog_of(&[entry("test", TESTSERVER, needs)]));
    f.start(&[]);
    let test = f.running("test").await;

    // The required value disappears and a new server is added at the same time.
    f.write_atomic("config.yaml", "other: {}\n");
    f.catalog(&catalog_of(&[
        entry("test", TESTSERVER, needs),
        entry("time", TIME, ""),
    ]));
    f.running("time").await;
    let msg = f
        .until("test invalid", MIN, || async {
            let s = f.status()?;
            (s["servers"]["test"]["phase"] == "Invalid").then(|| {
                s["servers"]["test"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .await;
    assert!(msg.contains("test.host"), "{msg}");
    assert!(msg.contains("docker-mcp.yaml:"), "position in {msg}");
    assert_eq!(
        f.container("test").await.unwrap().id,
        test.id,
        "left running"
    );

    // Its container goes: it comes back with the last good spec, and the
    // status says both facts.
    docker_cli(&["rm", "-f", &test.id]);
    let healed = f
        .until("test created again", MIN, || async {
            let c = f.container("test").await?;
            let s = f.status()?;
            let reported = s["servers"]["test"]["containerId"] == c.id.as_str();
            (c.id != test.id && c.state == "running" && reported).then_some(c)
        })
        .await;
    assert_eq!(healed.hash, test.hash, "the last good spec");
    let env = f.inspect(&healed.id).await.config.unwrap().env.unwrap();
    assert!(env.contains(&"HOST=example".to_string()));
    let s = f.status().unwrap();
    let msg = s["servers"]["test"]["message"].as_str().unwrap();
    assert_eq!(s["servers"]["test"]["phase"], "Invalid");
    assert!(
        msg.contains("test.host") && msg.contains("last good spec"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restarted_controller_adopts_running_containers() {
    let mut f = Fleet::new("adopt").await;
    f.catalog(&catalog_of(&[
        entry("time", TIME, ""),
        entry("fetch", FETCH, ""),
    ]));
    f.start(&[]);
    let before = vec![f.running("time").await, f.running("fetch").await];
    let t0 = started_at(&f, &before[0].id).await;

    for signal in ["-TERM", "-KILL"] {
        f.stop(signal);
        // SIGTERM and kill -9 alike leave the servers running.
        for c in &before {
            assert_eq!(f.container(&c.server).await.unwrap().state, "running");
        }
        std::fs::remove_file(f.status_path()).unwrap();
        f.start(&[]);
        for c in &before {
            let now = f.running(&c.server).await;
            assert_eq!(
                now.id, c.id,
                "{} adopted, not recreated ({signal})",
                c.server
            );
        }
        assert_eq!(started_at(&f, &before[0].id).await, t0, "not restarted");
        assert_eq!(f.status().unwrap()["servers"]["time"]["restartCount"], 0);
    }
}

async fn started_at(f: &Fleet, id: &str) -> String {
    f.inspect(id).await.state.unwrap().started_at.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_and_other_fleet_containers_are_never_touched() {
    let mut f = Fleet::new("foreign").await;
    let other = format!("{}-other", f.name);
    // A container of another fleet for the same server name, and one with no
    // labels at all.
    let other_id = run_detached(&[
        "--label",
        &format!("io.mcp-fleet.fleet={other}"),
        "--label",
        "io.mcp-fleet.server=time",
        "--label",
        "io.mcp-fleet.spec-hash=0000000000000000",
        "--name",
        &format!("mcp-fleet-{other}-time"),
        TIME,
    ]);
    let plain_id = run_detached(&["--name", &format!("plain-{}", f.name), TIME]);
    // A stray container of our own fleet that the catalog does not want.
    let stray_id = run_detached(&[
        "--label",
        &format!("io.mcp-fleet.fleet={}", f.name),
        "--label",
        "io.mcp-fleet.server=stray",
        TIME,
    ]);

    f.catalog(&catalog_of(&[entry("time", TIME, "")]));
    f.start(&[]);
    let ours = f.running("time").await;
    f.gone("stray").await;
    assert_ne!(ours.id, other_id);
    for id in [&other_id, &plain_id] {
        let state = docker_cli(&["inspect", "-f", "{{.State.Status}}", id]);
        assert_eq!(state, "running", "foreign container {id} untouched");
    }
    assert!(
        docker_cli(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("id={stray_id}")
        ])
        .is_empty()
    );
    let _ = docker_cli(&["rm", "-f", &other_id, &plain_id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_agrees_with_what_run_then_does() {
    let mut f = Fleet::new("plan").await;
    // Leave behind: `time` with an old spec and `gone` that is no longer wanted.
    f.catalog(&catalog_of(&[
        entry("time", TIME, "env:\n  - {name: V, value: '1'}"),
        entry("gone", TIME, ""),
    ]));
    f.start(&[]);
    let old_time = f.running("time").await;
    let old_gone = f.running("gone").await;
    f.stop("-TERM");

    f.catalog(&catalog_of(&[
        entry("time", TIME, "env:\n  - {name: V, value: '2'}"),
        entry("fetch", FETCH, ""),
    ]));
    let out = f.plan();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("create   fetch")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("recreate time: spec changed")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("remove   gone")),
        "{text}"
    );
    // plan touched nothing.
    assert_eq!(f.container("time").await.unwrap().id, old_time.id);

    f.start(&[]);
    f.running("fetch").await;
    f.gone("gone").await;
    let time = f
        .until("time recreated", MIN, || async {
            let c = f.container("time").await?;
            (c.id != old_time.id && c.state == "running").then_some(c)
        })
        .await;
    assert_ne!(time.hash, old_time.hash);
    assert_ne!(old_gone.id, time.id);

    let out = f.plan();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("in sync"));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_image_is_image_pull_backoff_not_a_crash() {
    let mut f = Fleet::new("pull").await;
    f.catalog(&catalog_of(&[
        entry("ghost", "mcp-fleet-test/does-not-exist:1", ""),
        entry("time", TIME, ""),
    ]));
    // --pull never: no traffic leaves the machine.
    f.start(&["--pull", "never"]);
    f.running("time").await;
    let msg = f
        .until("ImagePullBackOff", MIN, || async {
            let s = f.status()?;
            (s["servers"]["ghost"]["phase"] == "ImagePullBackOff").then(|| {
                s["servers"]["ghost"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .await;
    assert!(msg.contains("does-not-exist"), "{msg}");
    assert!(f.container("ghost").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_the_container_but_never_status_logs_or_labels() {
    let mut f = Fleet::new("secrets").await;
    f.write_atomic("mcp.env", "FETCH_TOKEN=sup3r-s3cret-value\n");
    f.catalog(&catalog_of(&[entry(
        "fetch",
        FETCH,
        "secrets:\n  - {name: fetch.token, env: FETCH_TOKEN}",
    )]));
    f.start(&[]);
    let c = f.running("fetch").await;
    let env = f.inspect(&c.id).await.config.unwrap().env.unwrap();
    assert!(env.contains(&"FETCH_TOKEN=sup3r-s3cret-value".to_string()));
    let status = std::fs::read_to_string(f.status_path()).unwrap();
    for (what, text) in [
        ("status", status),
        ("logs", f.logs()),
        ("labels", format!("{:?}", c.labels)),
    ] {
        assert!(!text.contains("sup3r-s3cret-value"), "secret in {what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_reports_file_line_and_column() {
    let f = Fleet::new("validate").await;
    f.write(
        "bad.yaml",
        "registry:\n  ok:\n    image: x\n  bad:\n    image: y\n    env: 7\n",
    );
    let out = f.cli(&["validate", f.path("bad.yaml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("bad.yaml:4:3: server `bad`"), "{err}");

    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/docker-catalog-v2.yaml"
    );
    let out = f.cli(&["validate", fixture]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok (110 servers)"));
}
