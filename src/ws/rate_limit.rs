//! A token bucket: `per_second` frames on average, bursts up to `burst`.

use std::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    /// `per_second == 0` disables the limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: f64::from(per_second),
            burst,
            tokens: burst,
            refilled_at: Instant::now(),
        }
    }

    /// Takes one token; `false` means the frame is over the limit.
    pub fn allow(&mut self) -> bool {
        self.allow_at(Instant::now())
    }

    /// Takes `n` tokens at once (an API broadcast to `n` rooms), or none.
    pub fn allow_many(&mut self, n: u32) -> bool {
        self.take_at(Instant::now(), f64::from(n.max(1)))
    }

    fn allow_at(&mut self, now: Instant) -> bool {
        self.take_at(now, 1.0)
    }

    fn take_at(&mut self, now: Instant, n: f64) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10, 5);
        let allowed = (0..8).filter(|_| limiter.allow_at(start)).count();
        assert_eq!(allowed, 5);
        assert!(!limiter.allow_at(start + Duration::from_millis(50)));
        assert!(limiter.allow_at(start + Duration::from_millis(160)));
    }

    #[test]
    fn many_tokens_are_taken_together_or_not_at_all() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10, 10);
        assert!(limiter.take_at(start, 8.0));
        assert!(!limiter.take_at(start, 3.0), "2 left: none taken");
        assert!(limiter.take_at(start, 2.0));
        assert!(!limiter.allow_at(start));
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let mut limiter = RateLimiter::new(0, 1);
        assert!((0..10_000).all(|_| limiter.allow()));
    }
}
