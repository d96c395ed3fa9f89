//! Per-server restart back-off for containers that keep exiting, and for
//! failures (image pull, engine errors) that are retried with growing delays.
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

#[derive(Debug, Clone, Copy)]
pub struct BackoffSettings {
    pub min: Duration,
    pub max: Duration,
    /// A container that stayed up this long starts again from `min`.
    pub reset_after: Duration,
}

impl BackoffSettings {
    fn build(&self) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }
}

/// What the controller remembers about one server between reconciles.
#[derive(Debug)]
pub struct CrashState {
    settings: BackoffSettings,
    delays: ExponentialBackoff,
    failures: ExponentialBackoff,
    pub restarts: u32,
    last_start: Option<Instant>,
    /// When the pending restart may happen; `None` when none is pending.
    retry_at: Option<Instant>,
    /// After a failed reconcile: when to try again, and for which spec hash
    /// (a new spec is tried at once).
    failed_until: Option<(Instant, String)>,
    pub last_delay: Duration,
}

impl CrashState {
    pub fn new(settings: BackoffSettings) -> Self {
        CrashState {
            settings,
            delays: settings.build(),
            failures: settings.build(),
            restarts: 0,
            last_start: None,
            retry_at: None,
            failed_until: None,
            last_delay: Duration::ZERO,
        }
    }

    /// Continues where a previous controller left off: `restarts` so far and
    /// the back-off delay it last used (the next one is longer).
    /// A container that runs now counts as started now (for the reset).
    pub fn resume(
        settings: BackoffSettings,
        restarts: u32,
        last_delay: Option<Duration>,
        running: bool,
    ) -> Self {
        let mut st = CrashState::new(settings);
        st.restarts = restarts;
        st.last_start = running.then(Instant::now);
        if let Some(last) = last_delay {
            st.last_delay = last;
            // Use up the delays up to `last`, so the next one is longer
            // (bounded: they double up to `max`).
            let advance = |b: &mut ExponentialBackoff| {
                for _ in 0..64 {
                    if b.next().is_none_or(|d| d >= last) {
                        break;
                    }
                }
            };
            advance(&mut st.delays);
            advance(&mut st.failures);
        }
        st
    }

    /// An exited container was seen. Returns how long to wait before starting
    /// it again (zero when the wait is over).
    pub fn on_exited(&mut self, now: Instant) -> Duration {
        let at = match self.retry_at {
            Some(at) => at,
            None => {
                // A run that lasted long enough was healthy: start over from `min`.
                if self
                    .last_start
                    .is_some_and(|t| now.duration_since(t) >= self.settings.reset_after)
                {
                    self.delays = self.settings.build();
                }
                self.last_delay = self.next_delay();
                let at = now + self.last_delay;
                self.retry_at = Some(at);
                at
            }
        };
        at.saturating_duration_since(now)
    }

    /// The container was (re)started by us.
    pub fn on_started(&mut self, now: Instant, restart: bool) {
        if restart {
            self.restarts += 1;
        }
        self.last_start = Some(now);
        self.retry_at = None;
    }

    /// A failure to retry (pull, engine error) while wanting `hash`: the
    /// next delay. Only this server's own failures advance it.
    pub fn on_failure(&mut self, now: Instant, hash: &str) -> Duration {
        self.last_delay = self.failures.next().unwrap_or(self.settings.max);
        self.failed_until = Some((now + self.last_delay, hash.to_string()));
        self.last_delay
    }

    /// How long a retry of `hash` must still wait after a failure (zero when
    /// it may go ahead). A resync or an event does not cut the wait short;
    /// a different spec does.
    pub fn failure_wait(&self, now: Instant, hash: &str) -> Duration {
        match &self.failed_until {
            Some((at, h)) if h == hash => at.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// A create or start went through: failures start over from `min`.
    pub fn on_success(&mut self) {
        self.failures = self.settings.build();
        self.failed_until = None;
    }

    /// The last back-off delay, for the status (`None` before any): a
    /// restarted controller continues from it.
    pub fn backoff(&self) -> Option<Duration> {
        (!self.last_delay.is_zero()).then_some(self.last_delay)
    }

    fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.settings.max)
    }
}

/// How many stderr lines a crash message quotes.
pub const QUOTE_LINES: usize = 3;
/// Each quoted line is cut to this many characters.
const QUOTE_CHARS: usize = 160;

/// The end of a crash message quoting the container's last stderr lines
/// (trimmed, cut, JSON-quoted so control characters show as escapes);
/// empty when there are none.
pub fn quote_stderr(lines: &[String]) -> String {
    let quoted: Vec<String> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut cut: String = l.chars().take(QUOTE_CHARS).collect();
            if cut.len() < l.len() {
                cut.push('…');
            }
            serde_json::Value::from(cut).to_string()
        })
        .collect();
    match quoted.as_slice() {
        [] => String::new(),
        q => format!("; last stderr: {}", q.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_quotes_are_trimmed_cut_and_escaped() {
        assert_eq!(quote_stderr(&[]), "");
        assert_eq!(quote_stderr(&["  ".into()]), "");
        let long = "é".repeat(QUOTE_CHARS + 5);
        let q = quote_stderr(&["  boom: bad key \t".into(), "\u{1b}[31mred".into(), long]);
        assert_eq!(
            q,
            format!(
                "; last stderr: \"boom: bad key\", \"\\u001b[31mred\", \"{}…\"",
                "é".repeat(QUOTE_CHARS)
            )
        );
    }

    fn settings() -> BackoffSettings {
        BackoffSettings {
            min: Duration::from_secs(1),
            max: Duration::from_secs(8),
            reset_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn delays_grow_to_the_cap_while_the_container_keeps_dying() {
        let mut c = CrashState::new(settings());
        let mut now = Instant::now();
        let mut seen = vec![];
        for _ in 0..6 {
            let d = c.on_exited(now);
            seen.push(d.as_secs());
            now += d;
            assert_eq!(c.on_exited(now), Duration::ZERO, "wait is over");
            c.on_started(now, true);
            now += Duration::from_secs(2); // dies again quickly
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 8, 8]);
        assert_eq!(c.restarts, 6);
    }

    #[test]
    fn a_pending_wait_is_not_extended_by_repeated_observations() {
        let mut c = CrashState::new(settings());
        let now = Instant::now();
        assert_eq!(c.on_exited(now), Duration::from_secs(1));
        assert_eq!(
            c.on_exited(now + Duration::from_millis(400)),
            Duration::from_millis(600)
        );
    }

    #[test]
    fn a_long_healthy_run_resets_the_backoff() {
        let mut c = CrashState::new(settings());
        let mut now = Instant::now();
        for _ in 0..3 {
            now += c.on_exited(now);
            c.on_started(now, true);
        }
        now += Duration::from_secs(61);
        assert_eq!(c.on_exited(now), Duration::from_secs(1));
    }

    #[test]
    fn failures_back_off_and_reset_on_success() {
        let mut c = CrashState::new(settings());
        let now = Instant::now();
        assert_eq!(c.on_failure(now, "h"), Duration::from_secs(1));
        assert_eq!(c.on_failure(now, "h"), Duration::from_secs(2));
        c.on_success();
        assert_eq!(c.on_failure(now, "h"), Duration::from_secs(1));
        assert_eq!(c.restarts, 0);
    }

    #[test]
    fn a_failure_wait_holds_for_the_same_spec_only() {
        let mut c = CrashState::new(settings());
        let now = Instant::now();
        c.on_failure(now, "h1");
        let later = now + Duration::from_millis(300);
        assert_eq!(c.failure_wait(later, "h1"), Duration::from_millis(700));
        assert_eq!(c.failure_wait(later, "h2"), Duration::ZERO);
        assert_eq!(
            c.failure_wait(now + Duration::from_secs(2), "h1"),
            Duration::ZERO
        );
    }

    #[test]
    fn a_resumed_state_continues_the_count_and_the_back_off() {
        let mut c = CrashState::resume(settings(), 5, Some(Duration::from_secs(2)), false);
        assert_eq!(c.restarts, 5);
        assert_eq!(c.backoff(), Some(Duration::from_secs(2)));
        let now = Instant::now();
        assert_eq!(c.on_exited(now), Duration::from_secs(4));
        assert_eq!(c.on_failure(now, "h"), Duration::from_secs(4));
        // At the cap it stays there.
        let mut c = CrashState::resume(settings(), 9, Some(Duration::from_secs(8)), false);
        assert_eq!(c.on_exited(now), Duration::from_secs(8));
    }
}
