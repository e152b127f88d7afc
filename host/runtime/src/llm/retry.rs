//! Retries before the first event: exponential backoff with full jitter, honouring
//! `Retry-After`. After the first event nothing is replayed.

use super::types::{GiveUp, LlmFailure};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Full jitter: each delay is uniform in [0, capped exponential].
    pub jitter: bool,
    /// A `Retry-After` longer than this (or than `backoff_max`, if that is longer) is
    /// not waited for: the error is returned, saying how long the server asked for.
    pub max_retry_after: Duration,
    /// The setting that raises the longest `Retry-After` waited for, named in the message
    /// when a server asks for longer. Default `reliability.backoff_max_ms`, which sets
    /// `backoff_max` in the CLI's configuration.
    pub retry_after_cap_key: String,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_millis(2000),
            jitter: true,
            max_retry_after: Duration::from_secs(60),
            retry_after_cap_key: "reliability.backoff_max_ms".into(),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt + 1`, or `None` to give up.
    pub fn delay(&self, attempt: u32, failure: &LlmFailure) -> Option<Duration> {
        self.decide(attempt, failure).ok()
    }

    /// The longest `Retry-After` waited for.
    pub fn retry_after_cap(&self) -> Duration {
        self.max_retry_after.max(self.backoff_max)
    }

    /// How long to wait before attempt `attempt + 1`, or why not to retry. A failure that
    /// is not retryable gives [`GiveUp::AttemptsUsed`] (the caller returns it as it is).
    pub fn decide(&self, attempt: u32, failure: &LlmFailure) -> Result<Duration, GiveUp> {
        if !failure.retryable() {
            return Err(GiveUp::AttemptsUsed);
        }
        if attempt >= self.max_attempts {
            return Err(GiveUp::AttemptsUsed);
        }
        if let Some(after) = failure.retry_after_ms().map(Duration::from_millis)
            && after > self.retry_after_cap()
        {
            return Err(GiveUp::RetryAfterTooLong {
                asked: after,
                cap: self.retry_after_cap(),
                cap_key: self.retry_after_cap_key.clone(),
            });
        }
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(16));
        let cap = exp.min(self.backoff_max);
        let delay = if self.jitter {
            cap.mul_f64(random_unit())
        } else {
            cap
        };
        Ok(match failure.retry_after_ms().map(Duration::from_millis) {
            Some(after) => after.max(delay),
            None => delay,
        })
    }
}

/// A uniform number in [0, 1), good enough for jitter (not for secrets).
fn random_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed;
    // splitmix64
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn http(status: u16, retry_after_ms: Option<u64>) -> LlmFailure {
        LlmFailure::Http {
            status,
            body: String::new(),
            retry_after_ms,
        }
    }

    #[test]
    fn retries_only_what_can_succeed() {
        let p = RetryPolicy::default();
        for s in [408, 429, 500, 502, 503, 529] {
            assert!(p.delay(1, &http(s, None)).is_some(), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(p.delay(1, &http(s, None)).is_none(), "{s}");
        }
        assert!(p.delay(1, &LlmFailure::Transport("reset".into())).is_some());
        assert!(
            p.delay(1, &LlmFailure::Protocol("bad json".into()))
                .is_none()
        );
        assert!(
            p.delay(3, &http(500, None)).is_none(),
            "three attempts in all"
        );
    }

    #[test]
    fn full_jitter_stays_under_the_capped_exponential() {
        let p = RetryPolicy::default();
        for attempt in 1..3 {
            let cap =
                Duration::from_millis(250 * (1 << (attempt - 1))).min(Duration::from_millis(2000));
            let delays: Vec<Duration> = (0..200)
                .map(|_| p.delay(attempt, &http(503, None)).unwrap())
                .collect();
            assert!(delays.iter().all(|d| *d <= cap), "{attempt}");
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(distinct.len() > 50, "jittered, not constant");
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        let p = RetryPolicy::default();
        assert!(p.delay(1, &http(429, Some(1500))).unwrap() >= Duration::from_millis(1500));
        assert!(
            p.delay(1, &http(429, Some(120_000))).is_none(),
            "too long to wait"
        );
    }

    #[test]
    fn a_retry_after_past_the_cap_says_how_long_was_asked() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.decide(1, &http(429, Some(3_600_000))),
            Err(GiveUp::RetryAfterTooLong {
                asked: Duration::from_secs(3600),
                cap: Duration::from_secs(60),
                cap_key: "reliability.backoff_max_ms".into(),
            })
        );
        let longer = RetryPolicy {
            backoff_max: Duration::from_secs(7200),
            ..RetryPolicy::default()
        };
        assert!(
            longer.delay(1, &http(429, Some(3_600_000))).unwrap() >= Duration::from_secs(3600),
            "raising backoff_max raises the cap"
        );
    }
}
