//! `reconcile` against a fake runtime: checks which engine calls it makes.
//! (The real engine is driven by the integration tests in `tests/`.)
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::*;
use crate::catalog::{ApprovalMode, Desired, Limits, ServerSpec};
use crate::runtime::{Container, State, container_name};
use crate::status::Phase;

#[derive(Default)]
struct Fake {
    containers: Mutex<Vec<Container>>,
    writes: AtomicUsize,
    missing_image: bool,
    pulls: AtomicUsize,
    engine_down: std::sync::atomic::AtomicBool,
    finished: Mutex<Option<std::time::SystemTime>>,
    /// What every container writes to stderr (then its stream ends).
    stderr: Mutex<Vec<u8>>,
    attaches: AtomicUsize,
}

#[async_trait]
impl Runtime for Fake {
    async fn list(&self, _fleet: &str, server: Option<&str>) -> Result<Vec<Container>> {
        if self.engine_down.load(Ordering::SeqCst) {
            return Err(Error::Unreachable {
                op: "list containers".into(),
                message: "socket not found".into(),
            });
        }
        let all = self.containers.lock().unwrap().clone();
        Ok(all
            .into_iter()
            .filter(|c| server.is_none_or(|s| c.server == s))
            .collect())
    }
    async fn ensure_image(&self, image: &str, _: PullPolicy) -> Result<()> {
        self.pulls.fetch_add(1, Ordering::SeqCst);
        if self.missing_image {
            return Err(Error::Image {
                image: image.into(),
                message: "not present".into(),
            });
        }
        Ok(())
    }
    async fn create(&self, fleet: &str, server: &str, d: &ContainerServer) -> Result<String> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut all = self.containers.lock().unwrap();
        let id = format!("id{}", all.len());
        all.push(Container {
            id: id.clone(),
            name: container_name(fleet, server),
            server: server.into(),
            hash: d.hash.clone(),
            state: State::Created,
            created: 0,
            restarts: 0,
        });
        Ok(id)
    }
    async fn start(&self, id: &str) -> Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        for c in self.containers.lock().unwrap().iter_mut() {
            if c.id == id {
                c.state = State::Running;
            }
        }
        Ok(())
    }
    async fn remove(&self, id: &str, _: Duration) -> Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.containers.lock().unwrap().retain(|c| c.id != id);
        Ok(())
    }
    async fn attach(&self, id: &str) -> Result<crate::runtime::Stdio> {
        Err(Error::runtime(format!("attach {id}"), "not in the fake"))
    }
    async fn attach_stderr(&self, _: &str) -> Result<crate::runtime::Stderr> {
        self.attaches.fetch_add(1, Ordering::SeqCst);
        Ok(Box::pin(std::io::Cursor::new(
            self.stderr.lock().unwrap().clone(),
        )))
    }
    fn events(&self, _: &str) -> BoxStream<'static, Result<String>> {
        stream::empty().boxed()
    }
    async fn finished_at(&self, _: &str) -> Result<Option<std::time::SystemTime>> {
        Ok(*self.finished.lock().unwrap())
    }
}

/// Controller settings for tests that run against a fake or mock backend.
pub(super) fn settings() -> Settings {
    Settings {
        fleet: "f".into(),
        config_dir: PathBuf::from("/nonexistent"),
        load: LoadOptions {
            approval: ApprovalMode::All,
            limits: Limits::default(),
            settle: Duration::ZERO,
        },
        pull: PullPolicy::Never,
        resync: Duration::from_secs(30),
        concurrency: 2,
        stop_timeout: Duration::from_secs(1),
        backoff: BackoffSettings {
            min: Duration::from_secs(1),
            max: Duration::from_secs(8),
            reset_after: Duration::from_secs(60),
        },
        status_file: PathBuf::from("/nonexistent/status.json"),
    }
}

fn ctx(fake: Arc<Fake>, servers: &[&str]) -> Arc<Context> {
    let settings = settings();
    let ctx = Context::new(fake, settings, crate::supervise::Supervisor::default());
    let spec = ServerSpec::of_image("img");
    let state = DesiredState {
        servers: servers
            .iter()
            .map(|s| {
                let c = ContainerServer {
                    hash: spec.hash(),
                    spec: spec.clone(),
                    warnings: vec![],
                    prefix: None,
                };
                (s.to_string(), Desired::Container(c))
            })
            .collect(),
        warnings: vec![],
        catalog: vec![],
        access: Default::default(),
    };
    *ctx.desired.write().unwrap() = Some(Arc::new(state));
    ctx
}

#[tokio::test]
async fn a_no_op_reconcile_makes_no_write_call() {
    let fake = Arc::new(Fake::default());
    let ctx = ctx(fake.clone(), &["a"]);
    assert_eq!(reconcile("a", &ctx).await.unwrap(), Next::Await);
    assert_eq!(fake.writes.load(Ordering::SeqCst), 2, "create + start");
    assert_eq!(ctx.status.server("a").unwrap().phase, Phase::Running);
    for _ in 0..3 {
        assert_eq!(reconcile("a", &ctx).await.unwrap(), Next::Await);
    }
    assert_eq!(fake.writes.load(Ordering::SeqCst), 2, "in sync: no writes");
}

#[tokio::test]
async fn nothing_is_reconciled_before_the_first_catalog_read() {
    let fake = Arc::new(Fake::default());
    let ctx = ctx(fake.clone(), &["a"]);
    *ctx.desired.write().unwrap() = None;
    reconcile("a", &ctx).await.unwrap();
    assert_eq!(fake.writes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_exited_container_waits_out_its_backoff() {
    let fake = Arc::new(Fake::default());
    let ctx = ctx(fake.clone(), &["a"]);
    reconcile("a", &ctx).await.unwrap();
    fake.containers.lock().unwrap()[0].state = State::Exited(Some(1));
    let next = reconcile("a", &ctx).await.unwrap();
    assert_eq!(next, Next::RequeueAfter(Duration::from_secs(1)));
    assert_eq!(
        ctx.status.server("a").unwrap().phase,
        Phase::CrashLoopBackOff
    );
    // Woken early (an event, a resync): still waiting, no start.
    let writes = fake.writes.load(Ordering::SeqCst);
    assert!(matches!(
        reconcile("a", &ctx).await.unwrap(),
        Next::RequeueAfter(_)
    ));
    assert_eq!(fake.writes.load(Ordering::SeqCst), writes);
}

#[tokio::test]
async fn a_crash_message_quotes_the_last_stderr_lines_without_secrets() {
    let fake = Arc::new(Fake::default());
    *fake.stderr.lock().unwrap() =
        b"one\ntwo\n\nthree\nfour: the key sk-live-0123456789 is wrong".to_vec();
    let ctx = ctx(fake.clone(), &["a"]);
    let mut spec = ServerSpec::of_image("img");
    spec.env.insert(
        "API_KEY".into(),
        crate::catalog::Secret::new("sk-live-0123456789"),
    );
    set_spec(&ctx, "a", spec);
    reconcile("a", &ctx).await.unwrap();
    fake.containers.lock().unwrap()[0].state = State::Exited(Some(3));
    reconcile("a", &ctx).await.unwrap();
    assert_eq!(
        ctx.status.server("a").unwrap().message,
        "container exited (exit code 3); back-off 1s before restart; \
         last stderr: \"two\", \"three\", \"four: the key <redacted> is wrong\""
    );
    let kept = ctx.logs.buffer("a").unwrap().after(None, None).lines;
    assert_eq!(kept.len(), 5, "{kept:?}");
    assert!(kept.iter().all(|l| l.container == "id0"));
    assert!(!format!("{kept:?}").contains("sk-live"));
}

#[tokio::test(start_paused = true)]
async fn a_running_container_whose_stderr_stream_ended_is_attached_again_after_a_grace() {
    let fake = Arc::new(Fake::default());
    let ctx = ctx(fake.clone(), &["a"]);
    reconcile("a", &ctx).await.unwrap();
    assert_eq!(fake.attaches.load(Ordering::SeqCst), 1, "before start");
    // The stream ended (here at once); the list still says running.
    ctx.logs.last_lines("a", "id0", 1).await;
    reconcile("a", &ctx).await.unwrap();
    ctx.logs.last_lines("a", "id0", 1).await; // a capture, had one begun, has run
    assert_eq!(
        fake.attaches.load(Ordering::SeqCst),
        1,
        "maybe just stopping"
    );
    tokio::time::advance(super::logs::STOP_GRACE).await;
    reconcile("a", &ctx).await.unwrap();
    ctx.logs.last_lines("a", "id0", 1).await; // the new capture has run
    assert_eq!(fake.attaches.load(Ordering::SeqCst), 2, "lost its stream");
}

#[tokio::test]
async fn image_failure_is_image_pull_backoff_with_growing_retries() {
    let fake = Arc::new(Fake {
        missing_image: true,
        ..Default::default()
    });
    let ctx = ctx(fake.clone(), &["a"]);
    let err = reconcile("a", &ctx).await.unwrap_err();
    assert_eq!(
        error_policy("a", &err, &ctx),
        Next::RequeueAfter(Duration::from_secs(1))
    );
    assert_eq!(
        ctx.status.server("a").unwrap().phase,
        Phase::ImagePullBackOff
    );
    // Woken early (a resync, an event): the wait holds, no second pull.
    let pulls = fake.pulls.load(Ordering::SeqCst);
    assert!(matches!(
        reconcile("a", &ctx).await.unwrap(),
        Next::RequeueAfter(d) if d <= Duration::from_secs(1)
    ));
    assert_eq!(fake.pulls.load(Ordering::SeqCst), pulls);
    // A new spec is tried at once; its failure backs off further.
    set_image(&ctx, "a", "img2");
    let err = reconcile("a", &ctx).await.unwrap_err();
    assert_eq!(fake.pulls.load(Ordering::SeqCst), pulls + 1);
    assert_eq!(
        error_policy("a", &err, &ctx),
        Next::RequeueAfter(Duration::from_secs(2))
    );
    assert_eq!(fake.writes.load(Ordering::SeqCst), 0);
}

fn set_image(ctx: &Context, server: &str, image: &str) {
    set_spec(ctx, server, ServerSpec::of_image(image));
}

fn set_spec(ctx: &Context, server: &str, spec: ServerSpec) {
    let mut state = (*ctx.desired().unwrap()).clone();
    state.servers.insert(
        server.to_string(),
        Desired::Container(ContainerServer {
            hash: spec.hash(),
            spec,
            warnings: vec![],
            prefix: None,
        }),
    );
    *ctx.desired.write().unwrap() = Some(Arc::new(state));
}

#[tokio::test]
async fn removals_wait_for_the_catalog_to_settle_creations_do_not() {
    let fake = Arc::new(Fake::default());
    let mut c = ctx(fake.clone(), &["a"]);
    Arc::get_mut(&mut c).unwrap().settings.load.settle = Duration::from_secs(5);
    c.config_touched();
    // Creation: at once.
    assert_eq!(reconcile("a", &c).await.unwrap(), Next::Await);
    assert_eq!(fake.containers.lock().unwrap().len(), 1);
    // Removal right after a change: held, nothing written.
    *c.desired.write().unwrap() = Some(Arc::new(DesiredState::default()));
    c.config_touched();
    let writes = fake.writes.load(Ordering::SeqCst);
    assert!(matches!(
        reconcile("a", &c).await.unwrap(),
        Next::RequeueAfter(d) if d > Duration::from_secs(4)
    ));
    assert_eq!(fake.writes.load(Ordering::SeqCst), writes);
    assert!(
        c.status
            .server("a")
            .unwrap()
            .message
            .contains("unchanged for 5s")
    );
    // Once quiet for the settle time: removed.
    *c.config_changed.lock().unwrap() = Instant::now() - Duration::from_secs(6);
    assert_eq!(reconcile("a", &c).await.unwrap(), Next::Await);
    assert!(fake.containers.lock().unwrap().is_empty());
    assert!(c.status.server("a").is_none());
}

#[tokio::test]
async fn an_invalid_entry_is_recreated_from_its_last_good_spec() {
    let fake = Arc::new(Fake::default());
    let ctx = ctx(fake.clone(), &["a"]);
    reconcile("a", &ctx).await.unwrap();
    let hash = fake.containers.lock().unwrap()[0].hash.clone();
    let mut state = (*ctx.desired().unwrap()).clone();
    state.servers.insert(
        "a".into(),
        Desired::Invalid {
            error: "f.yaml:2:3: server `a`: bad".into(),
        },
    );
    *ctx.desired.write().unwrap() = Some(Arc::new(state));
    fake.containers.lock().unwrap().clear();
    reconcile("a", &ctx).await.unwrap();
    let all = fake.containers.lock().unwrap().clone();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].hash, hash);
    let s = ctx.status.server("a").unwrap();
    assert_eq!(s.phase, Phase::Invalid);
    assert!(s.message.contains("bad") && s.message.contains("last good spec"));
    assert_eq!(s.container_id.as_deref(), Some(all[0].id.as_str()));
}

#[tokio::test]
async fn a_container_stopped_during_an_engine_outage_is_not_a_crash() {
    let fake = Arc::new(Fake::default());
    let ctx = ctx(fake.clone(), &["a"]);
    reconcile("a", &ctx).await.unwrap();
    ctx.engine_lost();
    fake.containers.lock().unwrap()[0].state = State::Exited(Some(143));
    *fake.finished.lock().unwrap() = Some(std::time::SystemTime::now());
    ctx.engine_reachable();
    assert_eq!(reconcile("a", &ctx).await.unwrap(), Next::Await);
    let s = ctx.status.server("a").unwrap();
    assert_eq!((s.phase, s.restart_count), (Phase::Running, 0));
    // A crash well after the outage counts.
    *fake.finished.lock().unwrap() = Some(std::time::SystemTime::now() + Duration::from_secs(3600));
    fake.containers.lock().unwrap()[0].state = State::Exited(Some(1));
    assert!(matches!(
        reconcile("a", &ctx).await.unwrap(),
        Next::RequeueAfter(_)
    ));
    assert_eq!(
        ctx.status.server("a").unwrap().phase,
        Phase::CrashLoopBackOff
    );
}

#[tokio::test]
async fn an_unreachable_engine_does_not_advance_a_servers_back_off() {
    let fake = Arc::new(Fake::default());
    let ctx = ctx(fake.clone(), &["a"]);
    fake.engine_down.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let err = reconcile("a", &ctx).await.unwrap_err();
        assert_eq!(
            error_policy("a", &err, &ctx),
            Next::RequeueAfter(Duration::from_secs(2))
        );
    }
    assert!(!ctx.status.snapshot().engine.reachable);
    // Back: reconciled at once, and its first real failure starts at `min`.
    fake.engine_down.store(false, Ordering::SeqCst);
    assert_eq!(reconcile("a", &ctx).await.unwrap(), Next::Await);
    assert_eq!(ctx.status.server("a").unwrap().phase, Phase::Running);
    assert!(ctx.status.snapshot().engine.reachable);
    let now = Instant::now();
    assert_eq!(
        ctx.crash("a", |c| c.on_failure(now, "h")),
        Duration::from_secs(1)
    );
}
