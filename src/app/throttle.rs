//! Login throttling: attempts per client address, wrong passwords per
//! account, registrations per address, and a bound on concurrent password
//! hashing.
//!
//! Each key has a token bucket; a request that finds its bucket empty is
//! refused with 429 and how long to wait. The buckets live in this
//! replica's memory: a client spread over five replicas gets five times
//! the rate, which still turns guessing from millions of tries a minute
//! into a handful. Argon2 takes 19 MiB and tens of milliseconds a hash,
//! so at most one hash per core runs at once and a short queue waits
//! behind them; past it a login is refused with 503 at once, instead of
//! a thousand blocking threads taking gigabytes and every login seconds.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::Config;

/// Keys remembered per bucket set, at most (see [`make_room`]).
pub(super) const MAX_KEYS: usize = 100_000;
/// Logins that may wait for a hashing slot; past it, 503.
const MAX_HASH_QUEUE: usize = 64;
/// How long a login waits for a hashing slot before it is refused with
/// 503: under a flood, a bystander hears at once, not behind the queue.
const MAX_HASH_WAIT: Duration = Duration::from_millis(500);

/// A token bucket over minutes or hours.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A rate per key: `burst` at once, refilled at `per_second`.
struct Keyed<K> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    /// `count` per `period`, all of them at once at most; 0 is no limit.
    fn new(count: u32, period: Duration) -> Self {
        Self {
            per_second: f64::from(count) / period.as_secs_f64(),
            burst: f64::from(count),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    /// How long `key` must wait before its next try; `None`: it may go on.
    /// Takes a token when `take`.
    fn check(&self, key: &K, take: bool, now: Instant) -> Option<Duration> {
        if self.burst == 0.0 {
            return None;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(key) {
            make_room(
                &mut buckets,
                |bucket| self.refilled(*bucket, now) >= self.burst,
                |bucket| bucket.at,
            );
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = self.refilled(*bucket, now);
        *bucket = Bucket { tokens, at: now };
        if tokens < 1.0 {
            let wait = (1.0 - tokens) / self.per_second;
            return Some(Duration::from_secs_f64(wait).max(Duration::from_secs(1)));
        }
        if take {
            bucket.tokens -= 1.0;
        }
        None
    }

    /// Gives back a token taken by [`Keyed::check`].
    fn refund(&self, key: &K) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }
}

/// Makes room for one more key in a map of token buckets kept to
/// [`MAX_KEYS`]: past it the `idle` (full) buckets are forgotten, and if
/// all are in use, the least recently `touched` eighth is, so a flood of
/// new keys pays one scan per eighth, not per key, and an attacker who
/// floods keys loses their own oldest buckets, never the one they are
/// being throttled on.
pub(super) fn make_room<K, V>(
    buckets: &mut HashMap<K, V>,
    idle: impl Fn(&V) -> bool,
    touched: impl Fn(&V) -> Instant,
) {
    if buckets.len() < MAX_KEYS {
        return;
    }
    buckets.retain(|_, bucket| !idle(bucket));
    if buckets.len() >= MAX_KEYS {
        let mut times: Vec<Instant> = buckets.values().map(&touched).collect();
        let (_, &mut cutoff, _) = times.select_nth_unstable(MAX_KEYS / 8);
        buckets.retain(|_, bucket| touched(bucket) > cutoff);
    }
}

/// A refusal: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, for the `Retry-After` header.
    pub fn seconds(self) -> u64 {
        self.0.as_secs_f64().ceil() as u64
    }
}

pub struct LoginThrottle {
    attempts: Keyed<IpAddr>,
    failures: Keyed<String>,
    registrations: Keyed<IpAddr>,
    hashing: Semaphore,
    waiting: AtomicUsize,
}

impl LoginThrottle {
    pub fn new(config: &Config) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            attempts: Keyed::new(config.login_attempts_per_minute, Duration::from_secs(60)),
            failures: Keyed::new(config.login_failures_per_minute, Duration::from_secs(60)),
            registrations: Keyed::new(config.registrations_per_hour, Duration::from_secs(3600)),
            hashing: Semaphore::new(cores),
            waiting: AtomicUsize::new(0),
        }
    }

    /// A login attempt from `address`.
    pub fn attempt(&self, address: IpAddr) -> Result<(), RetryAfter> {
        self.attempts
            .check(&address, true, Instant::now())
            .map_or(Ok(()), |wait| Err(RetryAfter(wait)))
    }

    /// Before checking `account`'s password: takes one of its tries, so
    /// guesses sent at once cannot all pass before the first fails.
    /// Refused while it has had too many wrong ones.
    pub fn may_try(&self, account: &str) -> Result<(), RetryAfter> {
        self.failures
            .check(&account.to_owned(), true, Instant::now())
            .map_or(Ok(()), |wait| Err(RetryAfter(wait)))
    }

    /// The password was right: the try is given back.
    pub fn succeeded(&self, account: &str) {
        self.failures.refund(&account.to_owned());
    }

    /// A new account from `address`.
    pub fn register(&self, address: IpAddr) -> Result<(), RetryAfter> {
        self.registrations
            .check(&address, true, Instant::now())
            .map_or(Ok(()), |wait| Err(RetryAfter(wait)))
    }

    /// A slot to hash a password in; `None` when too many wait already,
    /// or none came free within `MAX_HASH_WAIT`.
    pub async fn hashing_slot(&self) -> Option<SemaphorePermit<'_>> {
        // Given back however the wait ends, a login dropped meanwhile (its
        // client gone) included.
        let place = Waiting::enter(&self.waiting)?;
        let permit = tokio::time::timeout(MAX_HASH_WAIT, self.hashing.acquire())
            .await
            .ok()
            .and_then(Result::ok);
        drop(place);
        permit
    }
}

/// A place in the queue for hashing.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Option<Self> {
        let place = Self(waiting);
        (waiting.fetch_add(1, Ordering::AcqRel) < MAX_HASH_QUEUE).then_some(place)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_for_the_refill() {
        let keyed = Keyed::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(keyed.check(&"a", true, start), None);
        }
        let wait = keyed.check(&"a", true, start).expect("over the burst");
        assert!(
            wait >= Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert_eq!(keyed.check(&"b", true, start), None, "other keys are apart");
        assert_eq!(
            keyed.check(&"a", true, start + Duration::from_secs(20)),
            None
        );
    }

    #[test]
    fn a_check_without_taking_leaves_the_bucket() {
        let keyed = Keyed::new(1, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(keyed.check(&"a", false, now), None);
        assert_eq!(keyed.check(&"a", false, now), None);
        assert_eq!(keyed.check(&"a", true, now), None);
        assert!(keyed.check(&"a", false, now).is_some());
    }

    #[test]
    fn a_dropped_wait_gives_its_place_in_the_queue_back() {
        let waiting = AtomicUsize::new(0);
        let places: Vec<_> = (0..MAX_HASH_QUEUE)
            .filter_map(|_| Waiting::enter(&waiting))
            .collect();
        assert_eq!(places.len(), MAX_HASH_QUEUE);
        assert!(Waiting::enter(&waiting).is_none(), "the queue is full");
        drop(places);
        assert!(Waiting::enter(&waiting).is_some());
        assert_eq!(
            waiting.load(Ordering::Acquire),
            0,
            "refused and dropped places are gone"
        );
    }

    #[test]
    fn a_refund_gives_a_try_back() {
        let keyed = Keyed::new(1, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(keyed.check(&"a", true, now), None);
        assert!(keyed.check(&"a", true, now).is_some());
        keyed.refund(&"a");
        assert_eq!(keyed.check(&"a", true, now), None);
    }

    #[test]
    fn zero_is_no_limit() {
        let keyed = Keyed::new(0, Duration::from_secs(60));
        let now = Instant::now();
        assert!((0..1000).all(|_| keyed.check(&"a", true, now).is_none()));
    }

    #[test]
    fn a_key_flood_forgets_the_oldest_buckets_not_the_throttled_one() {
        let keyed = Keyed::new(1, Duration::from_secs(3600));
        let start = Instant::now();
        for key in 0..MAX_KEYS as u32 - 1 {
            keyed.check(&key, true, start);
        }
        let later = start + Duration::from_secs(1);
        let guessed = u32::MAX;
        keyed.check(&guessed, true, later);
        assert!(keyed.check(&guessed, true, later).is_some());
        for key in MAX_KEYS as u32..MAX_KEYS as u32 + 1000 {
            keyed.check(&key, true, later);
        }
        assert!(
            keyed.check(&guessed, true, later).is_some(),
            "new keys made room by forgetting the throttled one"
        );
        assert!(keyed.check(&0, false, later).is_none(), "the oldest went");
    }

    #[test]
    fn memory_stays_bounded_by_the_key_count() {
        let keyed = Keyed::new(1, Duration::from_secs(3600));
        let now = Instant::now();
        for key in 0..(MAX_KEYS as u32 + 10) {
            keyed.check(&key, true, now);
        }
        assert!(keyed.buckets.lock().unwrap().len() <= MAX_KEYS);
    }
}
