//! Rate-limited logs of refusals and drops: a flood writes a few lines a
//! kind per interval, not one line per event.
//!
//! The first event of a kind in each interval is logged in full (it names
//! the offender); the others are counted, and the count is logged as one
//! summary line when the interval is over (by [`LogLimiter::flush`], which
//! the server calls every interval, or by the next event of that kind).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// How long an interval is.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// The level of a kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Info,
    Warn,
}

struct Window {
    start: Instant,
    level: Level,
    suppressed: u64,
}

/// Per-kind windows.
#[derive(Default)]
pub(crate) struct LogLimiter {
    windows: Mutex<HashMap<&'static str, Window>>,
}

fn emit(level: Level, line: &str) {
    match level {
        Level::Info => info!("{line}"),
        Level::Warn => warn!("{line}"),
    }
}

fn summary(kind: &str, w: &Window) -> String {
    format!(
        "{} more {kind} in the last {} s",
        w.suppressed,
        INTERVAL.as_secs()
    )
}

impl LogLimiter {
    /// Logs an event of `kind` (a plural noun phrase: "refused handshakes"):
    /// in full with `message` if it is the first of its interval, else
    /// counted.
    pub(crate) fn event(&self, kind: &'static str, level: Level, message: impl FnOnce() -> String) {
        let now = Instant::now();
        let (full, summary_line) = {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            match windows.get_mut(kind) {
                Some(w) if now.duration_since(w.start) < INTERVAL => {
                    w.suppressed += 1;
                    (false, None)
                }
                Some(w) => {
                    let line = (w.suppressed > 0).then(|| summary(kind, w));
                    *w = Window {
                        start: now,
                        level,
                        suppressed: 0,
                    };
                    (true, line)
                }
                None => {
                    windows.insert(
                        kind,
                        Window {
                            start: now,
                            level,
                            suppressed: 0,
                        },
                    );
                    (true, None)
                }
            }
        };
        if let Some(line) = summary_line {
            emit(level, &line);
        }
        if full {
            emit(level, &message());
        }
    }

    /// Logs the summaries of the intervals that are over, and forgets them.
    pub(crate) fn flush(&self) {
        let now = Instant::now();
        let mut lines = Vec::new();
        {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            windows.retain(|kind, w| {
                if now.duration_since(w.start) < INTERVAL {
                    return true;
                }
                if w.suppressed > 0 {
                    lines.push((w.level, summary(kind, w)));
                }
                false
            });
        }
        for (level, line) in lines {
            emit(level, &line);
        }
    }

    #[cfg(test)]
    fn suppressed(&self, kind: &str) -> Option<u64> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.get(kind).map(|w| w.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_event_of_an_interval_is_logged_in_full() {
        let l = LogLimiter::default();
        let mut full = 0;
        for _ in 0..1000 {
            l.event("tests", Level::Info, || {
                full += 1;
                String::from("first")
            });
        }
        assert_eq!(full, 1);
        assert_eq!(l.suppressed("tests"), Some(999));
        // Another kind has its own window.
        l.event("others", Level::Warn, || String::from("other"));
        assert_eq!(l.suppressed("others"), Some(0));
        // Flushing keeps windows that are not over.
        l.flush();
        assert_eq!(l.suppressed("tests"), Some(999));
    }
}
