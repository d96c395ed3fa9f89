//! `users.yaml`: the callers who hold static tokens. Each entry names an
//! identity and the SHA-256 of its token (never the token itself):
//!
//! ```yaml
//! users:
//!   - id: ann
//!     name: Ann Example
//!     roles: [dev]
//!     token_sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
//! ```
//!
//! The file is re-read when it changes ([`watch`]); a missing or invalid file
//! keeps the last good set in force and says so, with file:line:col.
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::catalog::SourcePos;
use crate::catalog::snapshot::DATA_LINK;
use crate::controller::watch::classify;
use crate::identity::Identity;

pub const USERS_FILE: &str = "users.yaml";
/// An in-place write is read once it has been left alone this long.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Every user of the file, by the SHA-256 of their token.
#[derive(Debug, Default)]
pub struct Users {
    by_digest: HashMap<[u8; 32], Arc<Identity>>,
}

impl Users {
    pub fn get(&self, digest: &[u8; 32]) -> Option<&Arc<Identity>> {
        self.by_digest.get(digest)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The user `id` of this file, if there is one.
    pub fn by_id(&self, id: &str) -> Option<&Arc<Identity>> {
        self.by_digest.values().find(|u| u.id == id)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    users: Vec<Spanned<RawUser>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    id: Spanned<String>,
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    token_sha256: Spanned<String>,
}

/// Parses the file; the error names file:line:col and what to fix.
pub fn parse(path: &Path, text: &str) -> Result<Users, String> {
    let raw: RawFile = if text.trim().is_empty() {
        return Err(format!("{}: file is empty", path.display()));
    } else {
        serde_saphyr::from_str(text)
            .map_err(|e| crate::catalog::file::yaml_error(path, &e).to_string())?
    };
    let mut users = Users::default();
    let mut ids = HashMap::new();
    for entry in raw.users {
        let u = entry.value;
        let at = |loc: &serde_saphyr::Location| SourcePos::at(path, loc);
        if u.id.value.trim().is_empty() {
            return Err(format!(
                "{}: a user's id must not be empty",
                at(&u.id.referenced)
            ));
        }
        if let Some(first) = ids.insert(u.id.value.clone(), at(&u.id.referenced)) {
            return Err(format!(
                "{}: user `{}` is given twice (first at {first}); give each user once",
                at(&u.id.referenced),
                u.id.value
            ));
        }
        let digest = hex_digest(&u.token_sha256.value).ok_or_else(|| {
            format!(
                "{}: token_sha256 of user `{}` must be 64 hex digits (the SHA-256 of the token, \
                 e.g. from `printf %s TOKEN | sha256sum`)",
                at(&u.token_sha256.referenced),
                u.id.value
            )
        })?;
        let name = u.name.unwrap_or_else(|| u.id.value.clone());
        let identity = Arc::new(Identity::new(u.id.value.clone(), name, u.roles));
        if users.by_digest.insert(digest, identity).is_some() {
            return Err(format!(
                "{}: user `{}` has the same token as another user; each user needs its own",
                at(&u.token_sha256.referenced),
                u.id.value
            ));
        }
    }
    Ok(users)
}

fn hex_digest(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Reads `path`: `Ok(None)` when it does not exist.
pub fn load(path: &Path) -> Result<Option<Users>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Re-reads `path` whenever it changes and publishes each good read on `tx`.
/// A missing or invalid file leaves the last good set in force (logged).
pub async fn watch(path: PathBuf, tx: watch::Sender<Arc<Users>>, shutdown: CancellationToken) {
    let (events, mut rx) = mpsc::unbounded_channel();
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path.file_name().map(|n| n.to_os_string());
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Only changes count: its own reads (opens, closes) must not wake it,
        // or each read would cause the next. A ConfigMap volume's `..data`
        // swap replaces the file too.
        let relevant = match res {
            Ok(e) => {
                classify(&e.kind).is_some()
                    && e.paths.iter().any(|p| {
                        p.file_name() == name.as_deref()
                            || p.file_name() == Some(OsStr::new(DATA_LINK))
                    })
            }
            Err(_) => true,
        };
        if relevant {
            let _ = events.send(());
        }
    });
    let _watcher = match watcher.and_then(|mut w| {
        notify::Watcher::watch(&mut w, &dir, notify::RecursiveMode::NonRecursive).map(|()| w)
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e,
                "cannot watch the users file; changes to it need a restart");
            return shutdown.cancelled().await;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = rx.recv() => if got.is_none() { return },
        }
        // Let a burst of writes finish before reading.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(DEBOUNCE) => break,
                _ = rx.recv() => {}
            }
        }
        match load(&path) {
            Ok(Some(users)) => {
                tracing::info!(path = %path.display(), users = users.len(), "users file loaded");
                tx.send_replace(Arc::new(users));
            }
            Ok(None) => tracing::warn!(path = %path.display(),
                "users file removed; the last good users stay in force"),
            Err(e) => tracing::error!(error = %e,
                "users file not loaded; the last good users stay in force"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn users_by_token_digest() {
        let text = format!(
            "users:\n  - id: ann\n    roles: [dev, ops]\n    token_sha256: {ANN}\n  - id: bob\n    name: Bob\n    token_sha256: {}\n",
            ANN.replace('2', "3")
        );
        let users = parse(Path::new("users.yaml"), &text).unwrap();
        assert_eq!(users.len(), 2);
        let ann = users.get(&hex_digest(ANN).unwrap()).unwrap();
        assert_eq!(
            **ann,
            Identity::new("ann", "ann", vec!["dev".into(), "ops".into()])
        );
        assert_eq!(users.by_id("bob").unwrap().name, "Bob");
    }

    /// A write is published; reads of the file (its own included) publish
    /// nothing. It used to reload every DEBOUNCE, each read waking the next.
    #[tokio::test]
    async fn writes_reload_it_and_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USERS_FILE);
        let one = format!("users:\n  - id: ann\n    token_sha256: {ANN}\n");
        let (tx, mut rx) = watch::channel(Arc::new(Users::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch(path.clone(), tx, stop.clone()));
        // The watch is set up once the task runs: write until a reload is seen.
        loop {
            std::fs::write(&path, &one).unwrap();
            let wait = Duration::from_millis(500);
            if tokio::time::timeout(wait, rx.changed()).await.is_ok() {
                break;
            }
        }
        assert_eq!(rx.borrow_and_update().len(), 1);
        for _ in 0..3 {
            std::fs::read_to_string(&path).unwrap();
        }
        // Five periods of the old reload loop: it would have published here.
        let quiet = tokio::time::timeout(DEBOUNCE * 5, rx.changed()).await;
        assert!(quiet.is_err(), "reloaded with no write");
        let two = format!(
            "{one}  - id: bob\n    token_sha256: {}\n",
            ANN.replace('2', "3")
        );
        std::fs::write(&path, two).unwrap();
        let wait = tokio::time::timeout(Duration::from_secs(10), rx.changed());
        wait.await.expect("no reload within 10 s").unwrap();
        assert_eq!(rx.borrow_and_update().len(), 2);
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn errors_name_the_line() {
        let bad_hex = "users:\n  - id: ann\n    token_sha256: abc\n";
        let e = parse(Path::new("users.yaml"), bad_hex).unwrap_err();
        assert!(
            e.starts_with("users.yaml:3:19: token_sha256 of user `ann`"),
            "{e}"
        );
        let twice = format!(
            "users:\n  - id: a\n    token_sha256: {ANN}\n  - id: a\n    token_sha256: {ANN}\n"
        );
        let e = parse(Path::new("users.yaml"), &twice).unwrap_err();
        assert!(
            e.starts_with("users.yaml:4:9: user `a` is given twice"),
            "{e}"
        );
        let unknown = "users:\n  - id: a\n    role: x\n";
        let e = parse(Path::new("users.yaml"), unknown).unwrap_err();
        assert!(e.starts_with("users.yaml:3:"), "{e}");
        assert!(parse(Path::new("users.yaml"), "  \n").is_err());
    }
}
