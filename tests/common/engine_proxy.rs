//! A pass-through proxy in front of the real engine's socket that can be
//! taken down and brought back (an engine that is not up yet, or restarts)
//! and counts the requests going through it by method and path.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

pub struct EngineProxy {
    pub path: PathBuf,
    upstream: PathBuf,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    serving: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl EngineProxy {
    /// A proxy for the engine DOCKER_HOST names; down until [`EngineProxy::up`].
    pub fn new() -> Self {
        let host = std::env::var("DOCKER_HOST").expect("DOCKER_HOST");
        let upstream = PathBuf::from(
            host.strip_prefix("unix://")
                .expect("DOCKER_HOST must be a unix socket"),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        EngineProxy {
            path: dir.path().join("engine.sock"),
            upstream,
            counts: Arc::default(),
            serving: None,
            _dir: dir,
        }
    }

    /// The DOCKER_HOST value that goes through the proxy.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Starts answering (a no-op if it already does).
    pub fn up(&mut self) {
        if self.serving.is_some() {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind proxy socket");
        let upstream = self.upstream.clone();
        let counts = self.counts.clone();
        self.serving = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                conns.spawn(relay(client, upstream.clone(), counts.clone()));
            }
        }));
    }

    /// Stops answering and cuts every open connection (event streams too);
    /// the socket file goes away, as with an engine that is down.
    pub fn down(&mut self) {
        if let Some(s) = self.serving.take() {
            // Dropping the task drops the listener and every relay with it.
            s.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Requests seen whose "METHOD path" starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.down();
    }
}

async fn relay(client: UnixStream, upstream: PathBuf, counts: Arc<Mutex<HashMap<String, usize>>>) {
    let Ok(server) = UnixStream::connect(&upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let requests = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut line = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                if b == b'\n' {
                    note_request(&line, &counts);
                    line.clear();
                } else if line.len() < 8192 {
                    line.push(b);
                }
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let responses = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(requests, responses);
}

/// Counts an HTTP request line (`GET /v1.41/images/x/json HTTP/1.1`) by
/// method and path, without the API version prefix and the query.
fn note_request(line: &[u8], counts: &Mutex<HashMap<String, usize>>) {
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    let mut parts = text.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if !version.starts_with("HTTP/1.") || !method.chars().all(|c| c.is_ascii_uppercase()) {
        return;
    }
    let path = target.split('?').next().unwrap_or(target);
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            &rest[rest.find('/').unwrap_or(rest.len())..]
        }
        _ => path,
    };
    *counts
        .lock()
        .unwrap()
        .entry(format!("{method} {path}"))
        .or_default() += 1;
}
