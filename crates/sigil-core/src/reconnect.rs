//! When a client tries again after its connection broke: exponential
//! backoff with jitter, a bounded number of attempts.
//!
//! Sans-IO like the rest of the core: the adapter asks [`Backoff`] for the
//! next delay, passing in a random number, sleeps on its own clock, and
//! makes a fresh connection and handshake each time. Clients of one
//! server that lost it at once (an instance went away) spread their
//! attempts over each delay instead of arriving together.
//!
//! What a reconnecting client must not do is written here too, for every
//! adapter: a call in flight when the connection broke may or may not have
//! run on the server, so it fails with a connection error and is never
//! sent again on the new connection (calls are not idempotent unless the
//! application makes them so); a stream in flight ends with an error, and
//! its consumer may open it again.

/// How a client reconnects: the first delay, the longest, and how many
/// attempts it makes before it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The cap of the first delay, in milliseconds (each attempt doubles
    /// it).
    pub initial_delay_ms: u64,
    /// The largest cap, in milliseconds.
    pub max_delay_ms: u64,
    /// Attempts after a break before the client gives up (at least 1).
    pub max_attempts: u32,
}

impl Default for ReconnectPolicy {
    /// 100 ms doubling up to 10 s, 10 attempts: about 40 s of trying at
    /// most.
    fn default() -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay_ms: 100,
            max_delay_ms: 10_000,
            max_attempts: 10,
        }
    }
}

/// The delays of one outage: created when a connection breaks, asked for
/// a delay before each attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    attempts: u32,
}

impl Backoff {
    /// The backoff of a new outage.
    pub fn new(policy: ReconnectPolicy) -> Backoff {
        Backoff {
            policy,
            attempts: 0,
        }
    }

    /// Attempts made so far (each [`next_delay_ms`](Self::next_delay_ms)
    /// that gave a delay counts one).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before the next attempt, in milliseconds, or `None` once
    /// `max_attempts` have been made. The delay of attempt `n` (from 0) is
    /// drawn with "equal jitter" from `[cap / 2, cap]`, where `cap =
    /// min(max_delay_ms, initial_delay_ms × 2ⁿ)`: it grows with each
    /// attempt, and clients that broke together spread out. `random` is a
    /// uniformly random number.
    pub fn next_delay_ms(&mut self, random: u64) -> Option<u64> {
        if self.attempts >= self.policy.max_attempts.max(1) {
            return None;
        }
        let factor = 1u64.checked_shl(self.attempts).unwrap_or(u64::MAX);
        let cap = self
            .policy
            .initial_delay_ms
            .saturating_mul(factor)
            .min(self.policy.max_delay_ms);
        self.attempts += 1;
        let half = cap / 2;
        Some(half + random % (cap - half + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay_ms: 100,
            max_delay_ms: 1_000,
            max_attempts,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_within_their_jitter() {
        let mut low = Backoff::new(policy(6));
        let mut high = Backoff::new(policy(6));
        let lows: Vec<u64> = (0..6).map_while(|_| low.next_delay_ms(0)).collect();
        let highs: Vec<u64> = (0..6).map_while(|_| high.next_delay_ms(u64::MAX)).collect();
        assert_eq!(lows, [50, 100, 200, 400, 500, 500]);
        // u64::MAX % (cap - half + 1) for these caps.
        for (i, (&l, &h)) in lows.iter().zip(&highs).enumerate() {
            let cap = (100u64 << i).min(1_000);
            assert!(l <= h && h <= cap, "attempt {i}: {l}..{h} of {cap}");
        }
        assert_eq!(low.attempts(), 6);
    }

    #[test]
    fn attempts_are_bounded() {
        let mut b = Backoff::new(policy(3));
        assert!(b.next_delay_ms(7).is_some());
        assert!(b.next_delay_ms(7).is_some());
        assert!(b.next_delay_ms(7).is_some());
        assert_eq!(b.next_delay_ms(7), None);
        assert_eq!(b.attempts(), 3);
        // At least one attempt, whatever the policy says.
        let mut once = Backoff::new(policy(0));
        assert!(once.next_delay_ms(0).is_some());
        assert_eq!(once.next_delay_ms(0), None);
    }

    #[test]
    fn huge_policies_do_not_overflow() {
        let mut b = Backoff::new(ReconnectPolicy {
            initial_delay_ms: u64::MAX / 2,
            max_delay_ms: u64::MAX,
            max_attempts: 100,
        });
        for _ in 0..100 {
            let d = b.next_delay_ms(u64::MAX).unwrap();
            assert!(d >= u64::MAX / 4);
        }
    }

    #[test]
    fn clients_that_broke_together_spread_out() {
        // Twenty clients drawing from different random numbers.
        let delays: std::collections::BTreeSet<u64> = (0..20u64)
            .map(|i| {
                let mut b = Backoff::new(policy(5));
                b.next_delay_ms(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .unwrap()
            })
            .collect();
        assert!(delays.len() > 10, "{delays:?}");
        assert!(delays.iter().all(|d| (50..=100).contains(d)));
    }
}
