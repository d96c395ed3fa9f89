//! The relay seen by the official TypeScript SDK client
//! (`tests/clients/relay_client.cjs`) over the gateway's `/mcp` and `/sse`,
//! with the conformance fixture upstream both as a container (stdio) and as a
//! remote entry (streamable HTTP), and once straight at the fixture (which
//! proves each expectation can be met):
//! - sampling, elicitation and roots handlers are called and their answers
//!   reach the tool; a client without those capabilities gets a tool error,
//!   not an invented answer;
//! - `onprogress` receives a call's progress;
//! - two clients calling the same upstream tool at once each receive only
//!   their own progress;
//! - `completion/complete` is answered by the server that owns the prompt;
//! - `notifications/resources/updated` reach only the sessions subscribed to
//!   the URI (`tests/clients/resource_updates.cjs`), and stop at unsubscribe;
//! - a call the client cancels (`notifications/cancelled`) is cancelled at the
//!   upstream (`tests/clients/cancel_client.cjs`).
//!
//! Failures are collected over all targets and reported together.
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Fleet;
use common::fixture::{HttpFixture, container_entry, fixture_gateway, node_modules, remote_entry};
use serde_json::{Value, json};
use tokio::process::Command;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/relay_client.cjs"
);
const UPDATES_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/resource_updates.cjs"
);
const CANCEL_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/cancel_client.cjs"
);
/// One client run: Node start, handshake, one call (the script gives the call 30 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a client connects.
struct Target {
    name: String,
    url: String,
    transport: &'static str,
}

/// The fixture on the host, a fleet serving it as a container (stdio) and one
/// serving it as a remote entry (streamable HTTP), and the targets: straight at
/// the fixture, then each fleet's gateway over `/mcp` and `/sse`.
async fn targets(test: &str) -> (HttpFixture, [Fleet; 2], Vec<Target>) {
    let fixture = HttpFixture::start().await;
    let names = (format!("{test}-stdio"), format!("{test}-remote"));
    let fleets = tokio::join!(
        fixture_gateway(&names.0, container_entry()),
        fixture_gateway(&names.1, remote_entry(&fixture.url)),
    );
    let mut all = vec![Target {
        name: "straight".into(),
        url: fixture.url.clone(),
        transport: "http",
    }];
    for (upstream, fleet) in [("stdio", &fleets.0), ("remote", &fleets.1)] {
        let base = fleet.gateway_url().await;
        for (transport, path) in [("http", "/mcp"), ("sse", "/sse")] {
            all.push(Target {
                name: format!("gateway-{upstream} {path}"),
                url: format!("{base}{path}"),
                transport,
            });
        }
    }
    (fixture, fleets.into(), all)
}

/// Calls the fixture's `tool` with the TypeScript client.
async fn run_client(t: &Target, tool: &str, args: Value, answers: &Value) -> Result<Value, String> {
    let params = json!({"name": tool, "arguments": args});
    request(t, "tools/call", params, answers).await
}

/// Runs the TypeScript client once: what it saw, or why it failed.
async fn request(
    t: &Target,
    method: &str,
    params: Value,
    answers: &Value,
) -> Result<Value, String> {
    let args = [method.to_string(), params.to_string(), answers.to_string()];
    node(SCRIPT, t, &args).await
}

/// Runs `script URL TRANSPORT ARGS...` with the SDK on NODE_PATH: the JSON it
/// printed, or why it failed.
async fn node(script: &str, t: &Target, args: &[String]) -> Result<Value, String> {
    let run = Command::new("node")
        .arg(script)
        .args([&t.url, t.transport])
        .args(args)
        .env("NODE_PATH", node_modules())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(CLIENT_TIMEOUT, run)
        .await
        .map_err(|_| format!("the client did not finish in {CLIENT_TIMEOUT:?}"))?
        .expect("run node");
    if !out.status.success() {
        return Err(format!(
            "client failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The text of a successful tool result, or why it is not one.
fn result_text(seen: &Value) -> Result<&str, String> {
    let result = &seen["result"];
    if result["isError"] == json!(true) {
        return Err(format!("the tool failed: {result}"));
    }
    result["content"][0]["text"]
        .as_str()
        .ok_or_else(|| format!("no text in the result: {result}"))
}

/// A client that declares none of sampling, elicitation and roots.
fn no_answers() -> Value {
    json!({})
}

fn check(failures: &mut Vec<String>, target: &Target, what: &str, outcome: Result<(), String>) {
    match outcome {
        Ok(()) => eprintln!("ok   {}: {what}", target.name),
        Err(why) => {
            eprintln!("FAIL {}: {what}: {why}", target.name);
            failures.push(format!("{}: {what}: {why}", target.name));
        }
    }
}

/// The one request the client's `kind` handler (sampling, elicitation, roots) got.
fn only_request(seen: &Value, kind: &str) -> Result<Value, String> {
    match seen[kind].as_array().map(Vec::as_slice) {
        Some([request]) => Ok(request.clone()),
        other => Err(format!(
            "the {kind} handler was called {} times, not once; result: {}",
            other.map_or(0, <[Value]>::len),
            seen["result"]
        )),
    }
}

/// The tool's text is `want`.
fn said(seen: &Value, want: &str) -> Result<(), String> {
    match result_text(seen)? {
        got if got == want => Ok(()),
        got => Err(format!("the tool said {got:?}, not {want:?}")),
    }
}

fn sampling(seen: Value, prompt: &str, answer: &str) -> Result<(), String> {
    let request = only_request(&seen, "sampling")?;
    if request["messages"][0]["content"]["text"] != prompt {
        return Err(format!(
            "the handler got {request}, not the prompt {prompt:?}"
        ));
    }
    said(&seen, &format!("LLM response: {answer}"))
}

fn elicitation(seen: Value, message: &str, username: &str, email: &str) -> Result<(), String> {
    let request = only_request(&seen, "elicitation")?;
    if request["message"] != message {
        return Err(format!(
            "the handler got {request}, not the message {message:?}"
        ));
    }
    // The fixture prints the content with Python's json.dumps(sort_keys=True).
    said(
        &seen,
        &format!(
            r#"User response: action=accept, content={{"email": "{email}", "username": "{username}"}}"#
        ),
    )
}

fn roots(seen: Value, want: &Value) -> Result<(), String> {
    only_request(&seen, "roots")?;
    let got: Value = serde_json::from_str(result_text(&seen)?)
        .map_err(|e| format!("the tool's text is not the roots as JSON: {e}"))?;
    (&got == want)
        .then_some(())
        .ok_or_else(|| format!("the tool got the roots {got}, not {want}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_elicitation_and_roots_handlers_are_called_and_their_answers_reach_the_tool() {
    let (_fixture, _fleet, targets) = targets("relay-ask").await;
    let mut failures = Vec::new();
    // One target at a time: on stdio, the gateway attributes a server's request
    // to the caller of the only call in flight.
    for (i, t) in targets.iter().enumerate() {
        let answer = format!("sampled-{i}-{}", std::process::id());
        let (username, email) = (format!("user-{i}"), format!("user-{i}@example.com"));
        let answers = json!({
            "sampling": {"role": "assistant", "content": {"type": "text", "text": answer},
                         "model": "test-model", "stopReason": "endTurn"},
            "elicitation": {"action": "accept", "content": {"username": username, "email": email}},
            "roots": {"roots": [{"uri": format!("file:///work/project-{i}"), "name": format!("project {i}")}]},
        });
        let prompt = format!("prompt {i}");
        let seen = run_client(t, "test_sampling", json!({"prompt": prompt}), &answers).await;
        let outcome = seen.and_then(|s| sampling(s, &prompt, &answer));
        check(&mut failures, t, "sampling", outcome);

        let message = format!("who are you? ({i})");
        let seen = run_client(t, "test_elicitation", json!({"message": message}), &answers).await;
        let outcome = seen.and_then(|s| elicitation(s, &message, &username, &email));
        check(&mut failures, t, "elicitation", outcome);

        let seen = run_client(t, "test_list_roots", json!({}), &answers).await;
        let outcome = seen.and_then(|s| roots(s, &answers["roots"]["roots"]));
        check(&mut failures, t, "roots", outcome);

        // A client without the capabilities: the tool fails; nobody answers for it.
        for (tool, args) in [
            ("test_sampling", json!({"prompt": prompt})),
            ("test_elicitation", json!({"message": message})),
            ("test_list_roots", json!({})),
        ] {
            let outcome = run_client(t, tool, args, &no_answers()).await.and_then(
                |seen| match &seen["result"] {
                    r if r["isError"] == json!(true) => Ok(()),
                    r => Err(format!("not a tool error without a capable client: {r}")),
                },
            );
            check(
                &mut failures,
                t,
                &format!("{tool} without the capability"),
                outcome,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The progress a client saw as `(progress, total, message)`.
fn progress_of(seen: &Value) -> Vec<(f64, f64, String)> {
    seen["progress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["progress"].as_f64().unwrap_or(f64::NAN),
                p["total"].as_f64().unwrap_or(f64::NAN),
                p["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn onprogress_receives_the_progress_of_a_call() {
    let (_fixture, _fleet, targets) = targets("relay-progress").await;
    let mut failures = Vec::new();
    for t in &targets {
        let outcome = run_client(t, "test_tool_with_progress", json!({}), &no_answers())
            .await
            .and_then(|seen| {
                result_text(&seen)?;
                let got: Vec<(f64, f64)> = progress_of(&seen)
                    .iter()
                    .map(|(p, t, _)| (*p, *t))
                    .collect();
                let want = [(0.0, 100.0), (50.0, 100.0), (100.0, 100.0)];
                (got == want)
                    .then_some(())
                    .ok_or_else(|| format!("progress {got:?}, not {want:?}"))
            });
        check(&mut failures, t, "onprogress", outcome);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clients_calling_the_same_tool_at_once_each_get_only_their_own_progress() {
    let (_fixture, _fleet, targets) = targets("relay-pair").await;
    let mut failures = Vec::new();
    // Pairs on the same upstream: both transports together, and /mcp twice.
    // Fresh clients number their requests alike, so their progress tokens are equal.
    let pairs = [(0, 0), (1, 1), (1, 2), (3, 3), (3, 4)];
    let answers = no_answers();
    for (n, (a, b)) in pairs.into_iter().enumerate() {
        let (ta, tb) = (&targets[a], &targets[b]);
        let group = format!("pair-{n}-{}", std::process::id());
        let call = |t, tag: &str| {
            let args = json!({"tag": tag, "group": group, "parties": 2});
            run_client(t, "test_progress_tagged", args, &answers)
        };
        let (tag_a, tag_b) = (format!("A{n}"), format!("B{n}"));
        let (seen_a, seen_b) = tokio::join!(call(ta, &tag_a), call(tb, &tag_b));
        for (t, tag, seen) in [(ta, &tag_a, seen_a), (tb, &tag_b, seen_b)] {
            let outcome = seen.and_then(|seen| {
                said(&seen, &format!("progress done: {tag}"))?;
                let got = progress_of(&seen);
                let want: Vec<_> = (1..=3).map(|i| (f64::from(i), 3.0, tag.clone())).collect();
                (got == want)
                    .then_some(())
                    .ok_or_else(|| format!("progress {got:?}, not {want:?}"))
            });
            let what = format!("pair {n} ({} + {}): own progress only", ta.name, tb.name);
            check(&mut failures, t, &what, outcome);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_is_answered_by_the_server_that_owns_the_prompt() {
    let (_fixture, _fleet, targets) = targets("relay-complete").await;
    let mut failures = Vec::new();
    for t in &targets {
        let params = json!({
            "ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
            "argument": {"name": "arg1", "value": "par"},
        });
        let outcome = request(t, "completion/complete", params, &no_answers())
            .await
            .and_then(|seen| {
                let got = &seen["result"]["completion"]["values"];
                let want = json!(["paris", "park", "party"]);
                (got == &want)
                    .then_some(())
                    .ok_or_else(|| format!("completion {}, not values {want}", seen["result"]))
            });
        check(&mut failures, t, "completion/complete", outcome);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_updates_reach_only_the_sessions_subscribed_to_them() {
    let (_fixture, _fleets, targets) = targets("relay-subscribe").await;
    let mut failures = Vec::new();
    let (watched, text) = ("test://watched-resource", "test://static-text");
    for t in &targets {
        let outcome = node(UPDATES_SCRIPT, t, &[]).await.and_then(|seen| {
            let want = json!({"a": [watched, text], "b": [text, text]});
            (seen == want)
                .then_some(())
                .ok_or_else(|| format!("the clients were told of {seen}, not {want}"))
        });
        check(
            &mut failures,
            t,
            "resources/updated to subscribers only",
            outcome,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_the_client_cancels_is_cancelled_at_the_upstream() {
    let (_fixture, _fleets, targets) = targets("relay-cancel").await;
    let mut failures = Vec::new();
    // All targets at once: a cancellation that is not relayed costs the fixture's 15 s wait.
    let runs = targets.iter().enumerate().map(|(i, t)| {
        let group = format!("cancel-{i}-{}", std::process::id());
        async move { node(CANCEL_SCRIPT, t, &[group]).await }
    });
    for (t, seen) in targets
        .iter()
        .zip(futures_util::future::join_all(runs).await)
    {
        // A relayed cancel lands in milliseconds; one after 10 s would be some
        // deadline's doing, not the client's.
        let outcome = seen.and_then(|seen| {
            let soon = seen["outcome"]["seconds"]
                .as_f64()
                .is_some_and(|s| s < 10.0);
            (seen["outcome"]["outcome"] == "cancelled" && soon)
                .then_some(())
                .ok_or_else(|| format!("the upstream call was not cancelled at once: {seen}"))
        });
        check(
            &mut failures,
            t,
            "notifications/cancelled reaches the upstream",
            outcome,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
