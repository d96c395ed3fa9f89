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
            last_delay: Duration::ZERO,
        }
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

    /// A failure to retry (pull, engine error): the next delay.
    pub fn on_failure(&mut self) -> Duration {
        self.last_delay = self.failures.next().unwrap_or(self.settings.max);
        self.last_delay
    }

    /// A create or start went through: failures start over from `min`.
    pub fn on_success(&mut self) {
        self.failures = self.settings.build();
    }

    fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.settings.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.on_failure(), Duration::from_secs(1));
        assert_eq!(c.on_failure(), Duration::from_secs(2));
        c.on_success();
        assert_eq!(c.on_failure(), Duration::from_secs(1));
        assert_eq!(c.restarts, 0);
    }
}
