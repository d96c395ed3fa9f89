//! One server's reconcile and its error policy: compare what the catalog
//! wants with the server's containers, act one step, say so in the status.
use std::time::{Duration, Instant};

use super::crash::{QUOTE_LINES, quote_stderr};
use super::view::Upstream;
use super::{Context, Next};
use crate::catalog::{ContainerServer, Desired, Secret};
use crate::plan::{Change, RecreateReason, RemoveReason, plan_server};
use crate::runtime::{State, docker::short};
use crate::status::{Phase, Update};
use crate::{Error, Result};

/// Moves one server's containers one step towards what the catalog says.
pub async fn reconcile(server: &str, ctx: &Context) -> Result<Next> {
    let Some(desired) = ctx.desired() else {
        return Ok(Next::Await);
    };
    let fleet = &ctx.settings.fleet;
    let want = desired.servers.get(server);
    let effective = effective(server, want, ctx);
    if !matches!(
        effective,
        Some(Desired::Container(_) | Desired::Remote { .. })
    ) {
        ctx.view.set(server, None);
    }
    let spec = match &effective {
        Some(Desired::Container(c)) => Some(c),
        _ => None,
    };
    // A failed step is retried when its back-off is over, however often a
    // resync or an event wakes the server meanwhile.
    if let Some(c) = spec {
        let wait = ctx.crash(server, |s| s.failure_wait(Instant::now(), &c.hash));
        if !wait.is_zero() {
            return Ok(Next::RequeueAfter(wait));
        }
    }
    let containers = ctx.runtime.list(fleet, Some(server)).await?;
    ctx.engine_reachable();
    ctx.resume(server, &containers);

    match want {
        None if containers.is_empty() => {
            forget(server, ctx);
            return Ok(Next::Await);
        }
        Some(Desired::Remote { url, transport, .. }) => {
            ctx.view.set(server, want.and_then(Upstream::remote));
            ctx.status.update(
                server,
                Update::phase(Phase::Remote, format!("remote {transport} server at {url}"))
                    .container(None, None),
            )
        }
        Some(Desired::Unsupported { reason }) => ctx.status.update(
            server,
            Update::phase(Phase::Unsupported, reason).container(None, None),
        ),
        _ => {}
    }

    let unhealthy = ctx
        .unhealthy
        .lock()
        .expect("unhealthy lock")
        .get(server)
        .cloned();
    let mut changes = plan_server(
        fleet,
        server,
        effective.as_ref(),
        &containers,
        unhealthy.as_ref(),
    );
    let caps = ctx.runtime.capabilities();
    if caps.restarts {
        // The backend restarts what exits, with its own back-off.
        changes.retain(|c| !matches!(c, Change::Start { .. }));
    }
    let kind = changes.first().map_or("none", Change::kind);
    tracing::Span::current().record("change", kind);
    if let Some(wait) = settle_hold(server, &changes, ctx) {
        return Ok(Next::RequeueAfter(wait));
    }
    let acted = !changes.is_empty();
    for change in changes {
        if let Next::RequeueAfter(d) = apply(change, spec, ctx).await? {
            return Ok(Next::RequeueAfter(d));
        }
    }

    let running = containers.iter().find(|c| c.state.is_running());
    match (want, spec) {
        (Some(Desired::Invalid { error }), last_good) => {
            // What runs now: what was just started, else what was found.
            let now = match acted {
                true => ctx
                    .status
                    .server(server)
                    .and_then(|s| s.container_id.zip(s.spec_hash)),
                false => running.map(|r| (r.id.clone(), r.hash.clone())),
            };
            // The gateway keeps serving the last good spec's container.
            match (last_good, &now) {
                (Some(c), Some((id, hash))) if *hash == c.hash => {
                    ctx.logs.adopt(server, id, secrets_of(Some(c)));
                    let restarts = ctx.crash(server, |s| s.restarts);
                    ctx.view
                        .set(server, Some(Upstream::running(id, restarts, c)));
                }
                _ => ctx.view.set(server, None),
            }
            report_invalid(server, error, last_good, now, ctx)
        }
        (Some(Desired::Container(c)), _) => {
            if let Some(r) = running.filter(|r| r.hash == c.hash) {
                ctx.logs.adopt(server, &r.id, secrets_of(Some(c)));
                let (restarts, backoff) = match caps.restarts {
                    true => (r.restarts, None),
                    false => ctx.crash(server, |s| (s.restarts, s.backoff())),
                };
                ctx.view
                    .set(server, Some(Upstream::running(&r.id, restarts, c)));
                ctx.status.update(
                    server,
                    Update::phase(Phase::Running, running_message(c))
                        .container(Some(&r.id), Some(&r.hash))
                        .restarts(restarts)
                        .backoff(backoff),
                );
            } else if caps.restarts && !acted {
                super::observe::report(server, c, &containers, ctx);
            }
        }
        (None, _) => forget(server, ctx),
        _ => {}
    }
    Ok(Next::Await)
}

/// The entry to act on: the catalog's, or for an invalid entry the last
/// good spec it had (so that a lost container is brought back).
fn effective(server: &str, want: Option<&Desired>, ctx: &Context) -> Option<Desired> {
    let mut last_good = ctx.last_good.lock().expect("last good lock");
    match want {
        Some(Desired::Container(c)) => {
            last_good.insert(server.to_string(), c.clone());
            want.cloned()
        }
        Some(Desired::Invalid { .. }) => match last_good.get(server) {
            Some(c) => Some(Desired::Container(c.clone())),
            None => want.cloned(),
        },
        Some(_) => {
            last_good.remove(server);
            want.cloned()
        }
        None => None,
    }
}

/// An invalid entry: the status says so, and what runs instead, if anything
/// (`running`: container id and spec hash).
fn report_invalid(
    server: &str,
    error: &str,
    last_good: Option<&ContainerServer>,
    running: Option<(String, String)>,
    ctx: &Context,
) {
    let message = match (last_good, &running) {
        (Some(c), Some((_, hash))) if *hash == c.hash => {
            format!("{error}; running its last good spec (hash {hash}) until the entry is fixed")
        }
        (_, Some((_, hash))) => format!("{error}; its container (hash {hash}) is left running"),
        (_, None) => error.to_string(),
    };
    let (id, hash) = running.unzip();
    ctx.status.update(
        server,
        Update::phase(Phase::Invalid, message).container(id.as_deref(), hash.as_deref()),
    );
}

fn forget(server: &str, ctx: &Context) {
    ctx.status.forget(server);
    ctx.crashes.lock().expect("crash lock").remove(server);
    ctx.unhealthy.lock().expect("unhealthy lock").remove(server);
    ctx.last_good.lock().expect("last good lock").remove(server);
    ctx.logs.forget(server);
}

/// Removals and replacements the catalog asks for wait until it has been
/// unchanged for `--settle`: a catalog written in place can be read while
/// cut at a line end, and the rest of the write then arrives in time.
/// Creations and restarts never wait.
fn settle_hold(server: &str, changes: &[Change], ctx: &Context) -> Option<Duration> {
    let what = changes.iter().find_map(|c| match c {
        Change::Remove {
            reason: RemoveReason::NotDesired | RemoveReason::NotAContainer,
            ..
        } => Some("removing its container"),
        Change::Recreate {
            reason: RecreateReason::SpecChanged { .. },
            ..
        } => Some("replacing its container"),
        _ => None,
    })?;
    let wait = ctx.settle_wait();
    if wait.is_zero() {
        return None;
    }
    ctx.status.update(
        server,
        Update {
            message: Some(format!(
                "catalog changed; {what} once it has been unchanged for {}s",
                ctx.settings.load.settle.as_secs_f32()
            )),
            ..Default::default()
        },
    );
    Some(wait)
}

/// What a server's stderr must never show (in its log or a crash message):
/// its env values, which carry its secrets.
fn secrets_of(c: Option<&ContainerServer>) -> Vec<Secret> {
    c.map(|c| c.spec.env.values().cloned().collect())
        .unwrap_or_default()
}

fn running_message(c: &ContainerServer) -> String {
    match c.warnings.as_slice() {
        [] => "running".to_string(),
        w => format!("running; {}", w.join("; ")),
    }
}

async fn apply(change: Change, want: Option<&ContainerServer>, ctx: &Context) -> Result<Next> {
    let s = &ctx.settings;
    match change {
        Change::Remove { server, id, reason } => {
            ctx.view.remove_container(&server, &id);
            if reason != RemoveReason::Duplicate {
                ctx.status.update(
                    &server,
                    Update::phase(Phase::Removing, format!("removing {}", short(&id))),
                );
            }
            ctx.runtime.remove(&id, s.stop_timeout).await?;
            tracing::info!(server, container = short(&id), ?reason, "container removed");
        }
        Change::Create { server, .. } => {
            let want = want.expect("create implies a container spec");
            create_and_start(&server, want, false, ctx).await?;
        }
        Change::Recreate { server, id, reason } => {
            ctx.view.remove_container(&server, &id);
            let want = want.expect("recreate implies a container spec");
            if let RecreateReason::Unhealthy { message } = &reason {
                // A container that does not answer is handled like one that
                // crashed: replaced after a growing back-off.
                let said = ctx.logs.last_lines_now(&server, &id, QUOTE_LINES);
                let why = format!("not answering MCP ({message})");
                if let Some(wait) = crash_wait(&server, &why, "replacing it", &said, None, ctx) {
                    return Ok(Next::RequeueAfter(wait));
                }
            }
            // Have the new image before the old container goes away.
            if !ctx.runtime.capabilities().pulls {
                ctx.runtime.ensure_image(&want.spec.image, s.pull).await?;
            }
            ctx.status.update(
                &server,
                Update::phase(Phase::Creating, format!("{reason}: recreating")),
            );
            ctx.runtime.remove(&id, s.stop_timeout).await?;
            ctx.unhealthy
                .lock()
                .expect("unhealthy lock")
                .remove(&server);
            if matches!(reason, RecreateReason::SpecChanged { .. }) {
                ctx.crashes.lock().expect("crash lock").remove(&server);
            }
            let restart = matches!(reason, RecreateReason::Unhealthy { .. });
            create_and_start(&server, want, restart, ctx).await?;
        }
        Change::Start { server, id, state } => {
            ctx.view.remove_container(&server, &id);
            let mut restart = matches!(state, State::Exited(_));
            if restart && stopped_by_engine(&id, ctx).await {
                tracing::info!(
                    server,
                    container = short(&id),
                    "stopped by an engine restart, not a crash: starting it again"
                );
                restart = false;
            }
            if restart {
                let code = match state {
                    State::Exited(Some(code)) => format!(" (exit code {code})"),
                    _ => String::new(),
                };
                let why = format!("container exited{code}");
                let said = ctx.logs.last_lines(&server, &id, QUOTE_LINES).await;
                let ids = Some((id.as_str(), want.map(|c| c.hash.as_str())));
                if let Some(wait) = crash_wait(&server, &why, "restart", &said, ids, ctx) {
                    return Ok(Next::RequeueAfter(wait));
                }
            }
            ctx.logs.before_start(&server, &id, secrets_of(want)).await;
            ctx.runtime.start(&id).await?;
            started(&server, &id, want, restart, ctx);
        }
    }
    Ok(Next::Await)
}

/// Whether an exited container was stopped by an engine restart (only asked
/// after the engine went away, so a plain crash costs no extra call).
async fn stopped_by_engine(id: &str, ctx: &Context) -> bool {
    if ctx.engine_outage.lock().expect("engine lock").is_none() {
        return false;
    }
    match ctx.runtime.finished_at(id).await {
        Ok(Some(at)) => ctx.stopped_by_engine(at),
        _ => false,
    }
}

/// A crash (or a container that stopped answering): the back-off wait still
/// due, with the status saying so (and quoting what the container `said` on
/// stderr last); `None` when the wait is over.
fn crash_wait(
    server: &str,
    why: &str,
    then: &str,
    said: &[String],
    container: Option<(&str, Option<&str>)>,
    ctx: &Context,
) -> Option<Duration> {
    let (wait, restarts, delay) = ctx.crash(server, |c| {
        let wait = c.on_exited(Instant::now());
        (wait, c.restarts, c.last_delay)
    });
    if wait.is_zero() {
        return None;
    }
    let mut update = Update::phase(
        Phase::CrashLoopBackOff,
        format!(
            "{why}; back-off {}s before {then}{}",
            delay.as_secs_f32(),
            quote_stderr(said)
        ),
    )
    .restarts(restarts)
    .backoff(Some(delay));
    if let Some((id, hash)) = container {
        update = update.container(Some(id), hash);
    }
    ctx.status.update(server, update);
    Some(wait)
}

/// A container of `server` was started: the back-off starts over and the
/// status says it runs.
fn started(server: &str, id: &str, want: Option<&ContainerServer>, restart: bool, ctx: &Context) {
    let (restarts, backoff) = ctx.crash(server, |c| {
        c.on_started(Instant::now(), restart);
        c.on_success();
        (c.restarts, c.backoff())
    });
    // A report about the previous incarnation says nothing about this one.
    ctx.unhealthy.lock().expect("unhealthy lock").remove(server);
    tracing::info!(server, container = short(id), restart, "container started");
    if let Some(want) = want {
        ctx.view
            .set(server, Some(Upstream::running(id, restarts, want)));
        ctx.status.update(
            server,
            Update::phase(Phase::Running, running_message(want))
                .container(Some(id), Some(&want.hash))
                .restarts(restarts)
                .backoff(backoff),
        );
    }
}

async fn create_and_start(
    server: &str,
    want: &ContainerServer,
    restart: bool,
    ctx: &Context,
) -> Result<()> {
    let s = &ctx.settings;
    ctx.status.update(
        server,
        Update::phase(
            Phase::Creating,
            format!("creating from {}", want.spec.image),
        ),
    );
    let caps = ctx.runtime.capabilities();
    if !caps.pulls {
        ctx.runtime.ensure_image(&want.spec.image, s.pull).await?;
    }
    let id = ctx.runtime.create(&s.fleet, server, want).await?;
    if caps.restarts {
        // It runs when the backend says so (its watch wakes this server).
        tracing::info!(server, workload = %id, hash = %want.hash, "workload created");
        ctx.crash(server, |c| c.on_success());
        ctx.unhealthy.lock().expect("unhealthy lock").remove(server);
        ctx.status.update(
            server,
            Update::phase(
                Phase::Creating,
                format!("created {id}; waiting for it to run"),
            )
            .container(Some(&id), Some(&want.hash)),
        );
        return Ok(());
    }
    ctx.logs
        .before_start(server, &id, secrets_of(Some(want)))
        .await;
    ctx.runtime.start(&id).await?;
    tracing::info!(server, container = short(&id), hash = %want.hash, "container created");
    started(server, &id, Some(want), restart, ctx);
    Ok(())
}

/// While the engine does not answer, a server is looked at again this often;
/// its own back-off is left alone (the outage is not its fault).
const ENGINE_RETRY: Duration = Duration::from_secs(2);

/// A failed reconcile is retried with back-off; the status says why.
pub fn error_policy(server: &str, err: &Error, ctx: &Context) -> Next {
    if let Error::Unreachable { .. } = err {
        ctx.engine_unreachable(err);
        ctx.status.update(
            server,
            Update {
                message: Some(format!("waiting for the container engine ({err})")),
                ..Default::default()
            },
        );
        return Next::RequeueAfter(ENGINE_RETRY);
    }
    let hash = ctx
        .last_good
        .lock()
        .expect("last good lock")
        .get(server)
        .map(|c| c.hash.clone())
        .unwrap_or_default();
    let delay = ctx.crash(server, |c| c.on_failure(Instant::now(), &hash));
    let message = format!("{err}; retrying in {}s", delay.as_secs_f32());
    let update = match err {
        Error::Image { .. } => Update::phase(Phase::ImagePullBackOff, message),
        Error::Conflict { .. } => Update::phase(Phase::Conflict, message),
        _ => Update {
            message: Some(message),
            ..Default::default()
        },
    };
    ctx.status.update(server, update.backoff(Some(delay)));
    Next::RequeueAfter(delay)
}
