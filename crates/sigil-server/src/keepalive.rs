//! WebSocket pings for quiet sessions (`ping_interval_ms`), so that proxies
//! and NAT tables in between keep them.
//!
//! A session that sent and received no frame for an interval is pinged.
//! The client's pongs are not frames: they keep the ping coming, but they
//! never count as activity for `idle_timeout_ms`, which the session machine
//! measures from frames alone.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

/// When the next ping is due.
pub(crate) struct Keepalive {
    interval: Option<Duration>,
    /// The last frame, either way.
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Keepalive {
    pub(crate) fn new(interval: Option<Duration>) -> Keepalive {
        let now = Instant::now();
        let first = interval.map_or(now, |i| now + i);
        Keepalive {
            interval,
            last: now,
            timer: Box::pin(sleep_until(first)),
        }
    }

    /// Whether pings are sent at all.
    pub(crate) fn is_on(&self) -> bool {
        self.interval.is_some()
    }

    /// A frame went one way or the other: the next ping waits a whole
    /// interval from now. (Cheap: the timer is moved only when it fires.)
    pub(crate) fn active(&mut self) {
        if self.interval.is_some() {
            self.last = Instant::now();
        }
    }

    /// Resolves when a ping is due; never when pings are off.
    pub(crate) async fn due(&mut self) {
        let Some(interval) = self.interval else {
            return std::future::pending().await;
        };
        loop {
            self.timer.as_mut().await;
            let now = Instant::now();
            let next = self.last + interval;
            if next <= now {
                self.last = now;
                self.timer.as_mut().reset(now + interval);
                return;
            }
            self.timer.as_mut().reset(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pings_wait_for_a_quiet_interval() {
        let start = Instant::now();
        let mut k = Keepalive::new(Some(Duration::from_secs(30)));
        k.due().await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        // Activity 10 s after that ping moves the next one to 40 s after it.
        tokio::time::sleep(Duration::from_secs(10)).await;
        k.active();
        k.due().await;
        assert_eq!(start.elapsed(), Duration::from_secs(70));
        let mut off = Keepalive::new(None);
        assert!(!off.is_on());
        let waited = tokio::time::timeout(Duration::from_secs(3600), off.due()).await;
        assert!(waited.is_err());
    }
}
