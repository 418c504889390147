//! Each user's budget of messages across all their connections and
//! replicas.
//!
//! The frame rate is per connection; an account with 32 connections
//! would otherwise post 32 times as fast, and a `group` stores one direct
//! message per recipient. Every message a user stores (a `group` costs one
//! per recipient) is charged to one token bucket per user on this
//! replica. Replicas tell each other, once a second, who spent a notable
//! share of their budget here ([`Budgets::report`]), and charge it there
//! too ([`Budgets::debit`]): a user spread over replicas gets their budget
//! once, give or take a second of it per replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::throttle::make_room;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Charged here since the last report.
    spent: u32,
}

/// Every user's bucket on this replica.
pub struct Budgets {
    per_second: f64,
    burst: f64,
    /// Spending in a report period that the other replicas hear of.
    notable: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Why a charge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the budget now; it refills.
    Spent,
    /// More than the budget holds at all (a `group` to too many people).
    Never { burst: u32 },
}

impl Budgets {
    /// `per_second` messages a user may store on average, `burst` at once;
    /// `per_second == 0` is no limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            notable: (per_second / 4).max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    /// Takes `cost` from `user`'s budget, all of it or none.
    pub fn charge(&self, user: &str, cost: u32) -> Result<(), Refusal> {
        self.charge_at(user, cost, Instant::now())
    }

    fn charge_at(&self, user: &str, cost: u32, now: Instant) -> Result<(), Refusal> {
        if self.per_second == 0.0 {
            return Ok(());
        }
        let cost_tokens = f64::from(cost);
        if cost_tokens > self.burst {
            return Err(Refusal::Never {
                burst: self.burst as u32,
            });
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = self.bucket(&mut buckets, user, now);
        let tokens = self.refilled(bucket, now);
        bucket.tokens = tokens;
        bucket.at = now;
        if tokens < cost_tokens {
            return Err(Refusal::Spent);
        }
        bucket.tokens -= cost_tokens;
        bucket.spent = bucket.spent.saturating_add(cost);
        Ok(())
    }

    /// `user` spent `spent` on another replica: it comes off here too, down
    /// to one burst in debt at most (so the debt clears within two bursts'
    /// time).
    pub fn debit(&self, user: &str, spent: u32) {
        if self.per_second == 0.0 {
            return;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = self.bucket(&mut buckets, user, now);
        let tokens = self.refilled(bucket, now);
        bucket.tokens = (tokens - f64::from(spent)).max(-self.burst);
        bucket.at = now;
    }

    /// Who spent a notable share here since the last report, and how much;
    /// the counts start again. Idle users are forgotten meanwhile.
    pub fn report(&self) -> Vec<(String, u32)> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut notable = Vec::new();
        buckets.retain(|user, bucket| {
            if bucket.spent >= self.notable {
                notable.push((user.clone(), bucket.spent));
            }
            bucket.spent = 0;
            self.refilled(bucket, now) < self.burst
        });
        notable
    }

    fn bucket<'a>(
        &self,
        buckets: &'a mut HashMap<String, Bucket>,
        user: &str,
        now: Instant,
    ) -> &'a mut Bucket {
        // Users remembered are bounded as the login throttle's keys are.
        // A known user costs no allocation: this runs for every message.
        if !buckets.contains_key(user) {
            make_room(
                buckets,
                |bucket| self.refilled(bucket, now) >= self.burst,
                |bucket| bucket.at,
            );
            let full = Bucket {
                tokens: self.burst,
                at: now,
                spent: 0,
            };
            buckets.insert(user.to_owned(), full);
        }
        buckets.get_mut(user).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_user_gets_one_budget_whatever_they_send_through() {
        let budgets = Budgets::new(2, 4);
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(budgets.charge_at("ann", 1, now), Ok(()));
        }
        assert_eq!(budgets.charge_at("ann", 1, now), Err(Refusal::Spent));
        assert_eq!(budgets.charge_at("bob", 1, now), Ok(()), "others are apart");
        let later = now + Duration::from_millis(500);
        assert_eq!(
            budgets.charge_at("ann", 1, later),
            Ok(()),
            "refilled at 2/s"
        );
        assert_eq!(budgets.charge_at("ann", 1, later), Err(Refusal::Spent));
    }

    #[test]
    fn a_group_costs_per_recipient_all_or_nothing() {
        let budgets = Budgets::new(1, 10);
        let now = Instant::now();
        assert_eq!(budgets.charge_at("ann", 7, now), Ok(()));
        assert_eq!(budgets.charge_at("ann", 4, now), Err(Refusal::Spent));
        assert_eq!(
            budgets.charge_at("ann", 3, now),
            Ok(()),
            "the refusal took nothing"
        );
        assert_eq!(
            budgets.charge_at("bob", 11, now),
            Err(Refusal::Never { burst: 10 })
        );
    }

    #[test]
    fn spending_elsewhere_comes_off_here() {
        let here = Budgets::new(1, 10);
        let there = Budgets::new(1, 10);
        for _ in 0..10 {
            there.charge("ann", 1).unwrap();
        }
        there.charge("bob", 0).unwrap();
        let report = there.report();
        assert_eq!(
            report,
            [("ann".to_owned(), 10)],
            "bob spent nothing notable"
        );
        for (user, spent) in report {
            here.debit(&user, spent);
        }
        assert_eq!(here.charge("ann", 1), Err(Refusal::Spent));
        assert!(there.report().is_empty(), "counts start again");
    }

    #[test]
    fn debt_is_bounded_by_one_burst() {
        let budgets = Budgets::new(10, 10);
        budgets.debit("ann", 1_000_000);
        let now = Instant::now();
        assert_eq!(
            budgets.charge_at("ann", 1, now + Duration::from_millis(2100)),
            Ok(())
        );
    }

    #[test]
    fn zero_is_no_limit_and_idle_users_are_forgotten() {
        let free = Budgets::new(0, 1);
        assert!((0..1000).all(|_| free.charge("ann", 50).is_ok()));
        let budgets = Budgets::new(1000, 10);
        budgets.charge("ann", 1).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        budgets.report();
        assert!(budgets.buckets.lock().unwrap().is_empty());
    }
}
