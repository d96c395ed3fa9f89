//! The upstream pool's bookkeeping of connection attempts: which are under
//! way, which failed and when each may be tried again, failures in a row, and
//! which servers are being re-listed. Every map forgets servers that are gone.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::controller::view::Upstream;

/// First and longest wait before a failed remote server is tried again. A
/// failed container is not retried: the controller replaces it, and the new
/// one gets a session.
const REMOTE_RETRY_MIN: Duration = Duration::from_secs(1);
const REMOTE_RETRY_MAX: Duration = Duration::from_secs(60);

/// A failed attempt: which incarnation, why, and when it may be tried again.
pub(super) struct Failure {
    pub(super) key: Upstream,
    pub(super) error: String,
    pub(super) retry_at: Option<Instant>,
}

/// The run loop's own bookkeeping; every map forgets servers that are gone.
#[derive(Default)]
pub(super) struct Attempts {
    pub(super) connecting: HashMap<String, Upstream>,
    pub(super) failed: HashMap<String, Failure>,
    /// Failed handshakes in a row, by server. Each doubles the next one's
    /// time limit (up to 16x): on a starved machine, replacing servers that
    /// were merely slow would only add load.
    pub(super) strikes: HashMap<String, u32>,
    /// Servers being re-listed, or within [`super::pool::RELIST_GAP`] of their last one.
    pub(super) relisting: HashSet<String>,
}

impl Attempts {
    /// Forgets servers the catalog no longer has. (A server only briefly
    /// out of the view, e.g. while its container is replaced, keeps its strikes.)
    pub(super) fn forget_removed(&mut self, known: impl Fn(&str) -> bool) {
        self.failed.retain(|s, _| known(s));
        self.strikes.retain(|s, _| known(s));
    }

    pub(super) fn fail(&mut self, server: &str, key: Upstream, error: String) {
        let strikes = self.strikes.entry(server.to_string()).or_default();
        *strikes += 1;
        let retry_at = matches!(key, Upstream::Remote { .. })
            .then(|| Instant::now() + remote_retry_delay(*strikes));
        self.failed.insert(
            server.to_string(),
            Failure {
                key,
                error,
                retry_at,
            },
        );
    }

    /// When the loop must wake up to retry a remote server.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.failed.values().filter_map(|f| f.retry_at).min()
    }
}

/// The wait before retry number `strikes` of a remote server: 1 s doubling to 60 s.
fn remote_retry_delay(strikes: u32) -> Duration {
    REMOTE_RETRY_MIN
        .saturating_mul(2u32.saturating_pow(strikes.saturating_sub(1)))
        .min(REMOTE_RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_retries_back_off_from_one_second_to_a_minute() {
        let secs: Vec<u64> = [1, 2, 3, 4, 7, 8, 40]
            .map(|s| remote_retry_delay(s).as_secs())
            .into();
        assert_eq!(secs, [1, 2, 4, 8, 60, 60, 60]);
    }

    #[test]
    fn attempts_forget_removed_servers() {
        let remote = Upstream::Remote {
            url: crate::catalog::RemoteUrl::new("http://x"),
            transport: "sse".into(),
            headers: Default::default(),
        };
        let mut a = Attempts::default();
        a.fail("gone", remote.clone(), "e".into());
        a.fail("kept", remote, "e".into());
        assert!(a.next_retry().is_some());
        a.forget_removed(|s| s == "kept");
        assert_eq!(a.failed.keys().collect::<Vec<_>>(), ["kept"]);
        assert_eq!(a.strikes.keys().collect::<Vec<_>>(), ["kept"]);
    }
}
