//! Rate limiting: a token bucket on a caller-supplied clock.
//!
//! The core reads no clock: every call takes `now_ms`, the caller's time in
//! milliseconds (any monotonic origin will do, as long as one bucket always
//! sees the same clock).

/// A token bucket of `rate` tokens a second with a burst of `rate` tokens
/// (one second's worth), starting full.
///
/// Tokens are counted in thousandths, so refilling by whole milliseconds is
/// exact: `rate` tokens a second is `rate` thousandths a millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Thousandths of a token available.
    milli_tokens: u64,
    /// When `milli_tokens` was last brought up to date.
    updated_ms: u64,
}

impl TokenBucket {
    /// A full bucket for `rate` tokens a second, as of `now_ms`.
    pub fn full(rate: u32, now_ms: u64) -> TokenBucket {
        TokenBucket {
            milli_tokens: capacity(rate),
            updated_ms: now_ms,
        }
    }

    /// Takes one token if there is one: true if taken. A clock that goes
    /// backwards refills nothing.
    pub fn try_take(&mut self, rate: u32, now_ms: u64) -> bool {
        self.refill(rate, now_ms);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// True when the bucket is full as of `now_ms`: forgetting it changes
    /// nothing, since a new bucket starts full.
    pub fn is_full(&self, rate: u32, now_ms: u64) -> bool {
        let mut b = *self;
        b.refill(rate, now_ms);
        b.milli_tokens >= capacity(rate)
    }

    fn refill(&mut self, rate: u32, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(rate)))
            .min(capacity(rate));
        self.updated_ms = self.updated_ms.max(now_ms);
    }
}

fn capacity(rate: u32) -> u64 {
    u64::from(rate.max(1)) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut b = TokenBucket::full(10, 0);
        for _ in 0..10 {
            assert!(b.try_take(10, 0));
        }
        assert!(!b.try_take(10, 0));
        // 10 a second: one token every 100 ms.
        assert!(!b.try_take(10, 99));
        assert!(b.try_take(10, 100));
        assert!(!b.try_take(10, 150));
        assert!(!b.is_full(10, 1000));
        assert!(b.is_full(10, 1100));
        // Never more than the burst.
        assert!(b.is_full(10, u64::MAX));
        let mut b = TokenBucket::full(10, 0);
        let taken = (0..100).filter(|_| b.try_take(10, 100_000)).count();
        assert_eq!(taken, 10);
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let mut b = TokenBucket::full(1, 1000);
        assert!(b.try_take(1, 1000));
        assert!(!b.try_take(1, 0));
        assert!(!b.try_take(1, 1999));
        assert!(b.try_take(1, 2000));
    }
}
