//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! every server scenario) run three times against the same fixture server
//! (`docker/test-images/conformance/server.py`): straight at it over streamable
//! HTTP, through the gateway with the fixture as a container (stdio), and
//! through the gateway with the fixture as a remote entry (streamable HTTP).
//! The fixture must pass every scenario straight, and every scenario must pass
//! through the gateway as well: a failure there is the gateway's. A scenario
//! passes as the suite counts it: no check with status FAILURE.
//!
//! Run: `eval "$(scripts/python-env.sh)" && eval "$(scripts/node-env.sh)" &&
//! cargo test --test conformance -- --nocapture` (prints the pass counts).
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fixture::{HttpFixture, container_entry, fixture_gateway, node_modules, remote_entry};
use serde_json::Value;
use tokio::process::Command;

/// One suite run (32 scenarios) takes seconds; this bounds a hung one.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);

/// Scenario name -> `Ok` when it passed (no FAILURE check, as the suite
/// counts), or the failed checks' messages.
type Outcomes = BTreeMap<String, Result<(), String>>;

fn suite_cli() -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(node_modules().join("@modelcontextprotocol/conformance/dist/index.js"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The suite's server scenarios (`conformance list --server`).
async fn scenarios() -> Vec<String> {
    let out = suite_cli()
        .args(["list", "--server"])
        .output()
        .await
        .expect("run conformance list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(str::to_string)
        .collect();
    assert!(
        !names.is_empty(),
        "conformance list --server listed nothing"
    );
    names
}

/// Runs `--suite all` against `url`; every scenario in `all` gets an outcome
/// (one without a checks.json failed to run, or the suite ran out of time).
async fn run_suite(target: &str, url: &str, all: &[String]) -> Outcomes {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let run = suite_cli()
        .args(["server", "--url", url, "--suite", "all", "-o"])
        .arg(dir.path())
        .output();
    // On timeout the dropped future kills the suite; the finished scenarios count.
    let missing = match tokio::time::timeout(SUITE_TIMEOUT, run).await {
        Ok(out) => {
            let out = out.expect("run conformance server");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let start = stderr.char_indices().rev().nth(2000).map_or(0, |(i, _)| i);
            format!(
                "no result (suite exit {}): {}",
                out.status,
                &stderr[start..]
            )
        }
        Err(_) => format!("no result: the suite did not finish in {SUITE_TIMEOUT:?}"),
    };
    eprintln!(
        "{target}: suite ran in {:.1} s against {url}",
        started.elapsed().as_secs_f64()
    );
    let mut outcomes = read_results(dir.path());
    for name in all {
        outcomes
            .entry(name.clone())
            .or_insert_with(|| Err(missing.clone()));
    }
    outcomes
}

/// `-o DIR` holds `server-<scenario>-<timestamp>/checks.json` per scenario.
fn read_results(dir: &Path) -> Outcomes {
    let mut outcomes = Outcomes::new();
    for entry in std::fs::read_dir(dir).expect("read suite output") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The timestamp is `new Date().toISOString()` with ':' and '.' as '-'.
        let scenario = name
            .strip_prefix("server-")
            .and_then(|s| s.get(..s.len().checked_sub(25)?))
            .unwrap_or_else(|| panic!("unexpected suite output {name}"));
        // The directory is made before the scenario runs; a killed run leaves it empty.
        let Ok(text) = std::fs::read_to_string(path.join("checks.json")) else {
            continue;
        };
        let checks: Vec<Value> = serde_json::from_str(&text).expect("checks.json is JSON");
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c["status"] == "FAILURE")
            .map(|c| format!("{}: {}", c["id"], c["errorMessage"]))
            .collect();
        let outcome = if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        };
        outcomes.insert(scenario.to_string(), outcome);
    }
    outcomes
}

fn passed(o: &Outcomes) -> usize {
    o.values().filter(|r| r.is_ok()).count()
}

fn report(target: &str, o: &Outcomes) -> String {
    let mut text = format!("{target}: {}/{} passed\n", passed(o), o.len());
    for (name, r) in o {
        if let Err(why) = r {
            text.push_str(&format!("  FAIL {name}: {why}\n"));
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scenario_that_passes_straight_passes_through_the_gateway() {
    let all = scenarios().await;
    let fixture = HttpFixture::start().await;
    let straight = run_suite("straight", &fixture.url, &all).await;
    eprint!("{}", report("straight", &straight));
    assert_eq!(
        passed(&straight),
        all.len(),
        "the fixture itself must pass every scenario\n{}",
        report("straight", &straight)
    );

    let (stdio_fleet, remote_fleet) = tokio::join!(
        fixture_gateway("conf-stdio", container_entry()),
        fixture_gateway("conf-remote", remote_entry(&fixture.url)),
    );
    let stdio_url = format!("{}/mcp", stdio_fleet.gateway_url().await);
    let remote_url = format!("{}/mcp", remote_fleet.gateway_url().await);
    let (stdio, remote) = tokio::join!(
        run_suite("gateway-stdio", &stdio_url, &all),
        run_suite("gateway-remote", &remote_url, &all),
    );

    let counts = format!(
        "conformance pass counts: straight {}/{n}, gateway-stdio {}/{n}, gateway-remote {}/{n}",
        passed(&straight),
        passed(&stdio),
        passed(&remote),
        n = all.len(),
    );
    eprintln!(
        "{}{}{counts}",
        report("gateway-stdio", &stdio),
        report("gateway-remote", &remote)
    );
    let regressions: Vec<String> = [("gateway-stdio", &stdio), ("gateway-remote", &remote)]
        .iter()
        .flat_map(|(target, o)| {
            straight
                .iter()
                .filter(|(name, r)| r.is_ok() && o[*name].is_err())
                .map(move |(name, _)| format!("{target}/{name}"))
        })
        .collect();
    assert!(
        regressions.is_empty(),
        "scenarios that pass straight but fail through the gateway (details above): {regressions:?}\n{counts}"
    );
}
