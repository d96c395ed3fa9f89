//! The config directory as Kubernetes mounts a ConfigMap, Secret or projected
//! volume: the real binary watches a temp directory that this test updates
//! exactly the way kubelet's AtomicWriter does (pkg/volume/util/atomic_writer.go),
//! and every update must reach the fleet of real containers, read whole.
mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptionsBuilder;
use common::*;
use futures_util::StreamExt;

const MIN: Duration = Duration::from_secs(60);

/// Kubelet's writer for one volume. Its steps, in its order: a new hidden
/// version directory `..<UTC timestamp>.<random>` (0755, files 0644 as
/// `defaultMode: 0644`), visible links `key -> ..data/key` for new keys,
/// `..data_tmp -> <version>` renamed over `..data`, visible links of dropped
/// keys removed, the old version directory removed.
struct Kubelet {
    dir: PathBuf,
    keys: Vec<String>,
    versions: u32,
}

impl Kubelet {
    fn new(dir: &Path) -> Self {
        Kubelet {
            dir: dir.to_path_buf(),
            keys: Vec::new(),
            versions: 0,
        }
    }

    fn publish(&mut self, payload: &[(&str, &str)]) {
        self.versions += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        // The UTC time as Go's "..2006_01_02_15_04_05." plus MkdirTemp's
        // random suffix; distinct per version like kubelet's.
        let secs = now.as_secs();
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let version = format!(
            "..{}_{:02}_{:02}_{:02}.{}{:03}",
            civil(days),
            rest / 3600,
            rest % 3600 / 60,
            rest % 60,
            now.subsec_nanos(),
            self.versions
        );
        let ts = self.dir.join(&version);
        std::fs::create_dir(&ts).unwrap();
        std::fs::set_permissions(&ts, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (key, text) in payload {
            std::fs::write(ts.join(key), text).unwrap();
            std::fs::set_permissions(ts.join(key), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        for (key, _) in payload {
            let visible = self.dir.join(key);
            if std::fs::read_link(&visible).is_err() {
                symlink(format!("..data/{key}"), visible).unwrap();
            }
        }
        let data = self.dir.join("..data");
        let old = std::fs::read_link(&data).ok();
        let tmp = self.dir.join("..data_tmp");
        symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        let keys: Vec<String> = payload.iter().map(|(k, _)| k.to_string()).collect();
        for gone in self.keys.iter().filter(|k| !keys.contains(k)) {
            std::fs::remove_file(self.dir.join(gone)).unwrap();
        }
        self.keys = keys;
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

/// `YYYY_MM_DD` of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}_{m:02}_{d:02}")
}

/// A test server whose VERSION is written in the catalog and whose TOKEN
/// comes from `mcp.env` under `secret`: the two agree only when both files
/// were read from the same version.
fn versioned(name: &str, version: &str, secret: Option<&str>) -> String {
    let mut extra = format!("env:\n  - name: VERSION\n    value: '{version}'\n");
    if let Some(s) = secret {
        extra.push_str(&format!("secrets:\n  - name: {s}\n    env: TOKEN\n"));
    }
    entry(name, TESTSERVER, &extra)
}

/// A container's environment as a map.
async fn env_of(f: &Fleet, id: &str) -> Option<HashMap<String, String>> {
    let i = f.docker.inspect_container(id, None).await.ok()?;
    Some(
        i.config?
            .env?
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Waits until `server` runs with `VERSION` = `version`.
async fn runs_version(f: &Fleet, server: &str, version: &str) -> HashMap<String, String> {
    f.until(&format!("{server} running {version}"), MIN, || async {
        let c = f.container(server).await?;
        let env = env_of(f, &c.id).await?;
        (c.state == "running" && env.get("VERSION").map(String::as_str) == Some(version))
            .then_some(env)
    })
    .await
}

/// `time`, and `test` at `version` with its TOKEN from `mcp.env`.
fn publish_time_and_test(kubelet: &mut Kubelet, version: &str) {
    let catalog = catalog_of(&[
        entry("time", TIME, ""),
        versioned("test", version, Some("tok")),
    ]);
    kubelet.publish(&[
        ("docker-mcp.yaml", &catalog),
        ("mcp.env", &format!("tok={version}\n")),
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kubelet_swap_reaches_the_fleet() {
    let mut f = Fleet::new("cm-swaps").await;
    let mut kubelet = Kubelet::new(f.dir.path());
    kubelet.publish(&[("docker-mcp.yaml", &catalog_of(&[entry("time", TIME, "")]))]);
    f.start(&["--settle", "0.5"]);
    f.running("time").await;

    // A new server, and a new key (mcp.env) whose visible link kubelet
    // creates before the swap, dangling until then.
    let step = Instant::now();
    publish_time_and_test(&mut kubelet, "v1");
    let env = runs_version(&f, "test", "v1").await;
    eprintln!("swap -> test appears: {:?}", step.elapsed());
    assert_eq!(env.get("TOKEN").map(String::as_str), Some("v1"));
    let first = f.container("test").await.unwrap();

    // Both files change in one swap: the container is replaced with both.
    let step = Instant::now();
    publish_time_and_test(&mut kubelet, "v2");
    let env = runs_version(&f, "test", "v2").await;
    eprintln!("swap -> test changes: {:?}", step.elapsed());
    assert_eq!(env.get("TOKEN").map(String::as_str), Some("v2"));
    assert_ne!(f.container("test").await.unwrap().id, first.id);

    // A server goes, and a key goes (kubelet removes its visible link after
    // the swap).
    let step = Instant::now();
    kubelet.publish(&[(
        "docker-mcp.yaml",
        &catalog_of(&[versioned("test", "v3", None)]),
    )]);
    f.gone("time").await;
    let env = runs_version(&f, "test", "v3").await;
    eprintln!("swap -> time goes, test changes: {:?}", step.elapsed());
    assert_eq!(env.get("TOKEN"), None, "mcp.env was dropped");
    assert!(!f.path("mcp.env").exists());
    let status = f.status().unwrap();
    assert_eq!(
        status["catalog"]["error"],
        serde_json::Value::Null,
        "{status}"
    );
    // Kubelet's layout as it leaves it: one version directory, no leftovers.
    let versions: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    f.stop("-TERM");
}

/// Swaps back to back while the controller reads. Each version adds a new
/// server (creations do not wait for the catalog to settle, so a torn read
/// would start a container at once) whose TOKEN comes from that version's
/// `mcp.env` alone: a catalog read with the secrets of another version
/// starts a container without TOKEN. Every container the fleet creates is
/// inspected from the engine's event stream. (Proven once: a build that
/// reads the visible links with 10 ms between the catalog and `mcp.env` fails
/// here with a container created from a half-swapped view.)
#[tokio::test(flavor = "multi_thread")]
async fn swaps_in_a_row_are_never_read_half_swapped() {
    const VERSIONS: usize = 100;
    let mut f = Fleet::new("cm-torn").await;
    let mut kubelet = Kubelet::new(f.dir.path());
    // Padding makes each read longer, widening the window a torn read needs.
    let padding = format!("# {}\n", "x".repeat(100)).repeat(1000);
    let version = |k: usize| {
        (
            format!(
                "{}{padding}",
                catalog_of(&[versioned(
                    &format!("s{k}"),
                    &format!("v{k}"),
                    Some(&format!("tok{k}"))
                )])
            ),
            format!("tok{k}=v{k}\n"),
        )
    };
    let (catalog, env) = version(0);
    kubelet.publish(&[("docker-mcp.yaml", &catalog), ("mcp.env", &env)]);

    let filters = HashMap::from([
        ("type", vec!["container".to_string()]),
        ("event", vec!["create".to_string()]),
        ("label", vec![format!("io.mcp-fleet.fleet={}", f.name)]),
    ]);
    let mut events = std::pin::pin!(f.docker.events(Some(
        EventsOptionsBuilder::default().filters(&filters).build()
    )));
    f.start(&[]);
    // Every container created: "server id" -> (VERSION, TOKEN).
    let mut seen = BTreeMap::new();
    record(&f, next_create(&mut events).await, &mut seen).await;

    let burst = Instant::now();
    for k in 1..=VERSIONS {
        let (catalog, env) = version(k);
        kubelet.publish(&[("docker-mcp.yaml", &catalog), ("mcp.env", &env)]);
    }
    eprintln!("{VERSIONS} swaps in {:?}", burst.elapsed());
    let last = format!("s{VERSIONS}");
    loop {
        record(&f, next_create(&mut events).await, &mut seen).await;
        if seen.keys().any(|k| k.starts_with(&format!("{last} "))) {
            break;
        }
    }
    eprintln!("last swap -> its server created: {:?}", burst.elapsed());
    for (container, (version, token)) in &seen {
        assert_eq!(
            version, token,
            "{container} was created from a half-swapped view"
        );
    }
    eprintln!("containers created during the burst: {}", seen.len());
    runs_version(&f, &last, &format!("v{VERSIONS}")).await;
    for k in 0..VERSIONS {
        f.gone(&format!("s{k}")).await;
    }
    f.stop("-TERM");
}

type Seen = BTreeMap<String, (Option<String>, Option<String>)>;

/// Notes a created container's server, VERSION and TOKEN. It can still be
/// inspected: a container is replaced only once the catalog has settled.
async fn record(f: &Fleet, id: String, seen: &mut Seen) {
    let i = f
        .docker
        .inspect_container(&id, None)
        .await
        .expect("a created container can be inspected");
    let config = i.config.expect("config");
    let server = config.labels.unwrap_or_default()["io.mcp-fleet.server"].clone();
    let env: HashMap<&str, &str> = config
        .env
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    seen.insert(
        format!("{server} {id}"),
        (
            env.get("VERSION").map(|v| v.to_string()),
            env.get("TOKEN").map(|v| v.to_string()),
        ),
    );
}

async fn next_create(
    events: &mut (
             impl futures_util::Stream<
        Item = Result<bollard::models::EventMessage, bollard::errors::Error>,
    > + Unpin
         ),
) -> String {
    let e = tokio::time::timeout(MIN, events.next())
        .await
        .expect("a container create event within a minute")
        .expect("the event stream stays open")
        .expect("event");
    e.actor
        .and_then(|a| a.id)
        .expect("event names the container")
}
