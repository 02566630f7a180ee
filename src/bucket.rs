//! Token buckets as the generic cell rate algorithm (GCRA): integer-exact,
//! weighted, and plain data, so a policy can reason on a copy of one.
//!
//! One type serves both limits a tier can carry: the request bucket (every
//! attempt costs 1) and the token bucket of a tokens-per-minute limit (an
//! attempt costs its prompt tokens plus its `max_tokens`).

use crate::units::SimTime;

/// A bucket of `capacity` units refilled at one unit per `interval_ns`.
///
/// Time is kept in nanoseconds so that rates like 3/s or 90,000 tokens a
/// minute do not round to a whole microsecond per unit. All arithmetic
/// saturates: validation keeps rates and times far inside the range, and a
/// bug cannot wrap into a bucket that never refills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    interval_ns: u64,
    capacity: u64,
    /// Theoretical arrival time: the bucket is full again at `tat_ns`, and
    /// holds `(t + capacity * interval - tat) / interval` units at `t`.
    tat_ns: u64,
}

fn ns(t: SimTime) -> u64 {
    t.0.saturating_mul(1000)
}

fn us_ceil(ns: u64) -> SimTime {
    SimTime(ns.div_ceil(1000))
}

impl TokenBucket {
    /// A full bucket refilled at `rate_per_s` units per second.
    pub fn new(rate_per_s: f64, capacity: u64) -> TokenBucket {
        TokenBucket::with_interval_ns((1e9 / rate_per_s).round() as u64, capacity)
    }

    /// A full bucket refilled at `per_min` units per minute. The interval
    /// rounds up to the nanosecond, so the bucket never refills faster than
    /// the limit says. (The request bucket of [`TokenBucket::new`] rounds to
    /// the nearest nanosecond, as it always has: outputs stay the same.)
    pub fn per_minute(per_min: f64, capacity: u64) -> TokenBucket {
        TokenBucket::with_interval_ns((60e9 / per_min).ceil() as u64, capacity)
    }

    fn with_interval_ns(interval_ns: u64, capacity: u64) -> TokenBucket {
        TokenBucket {
            interval_ns: interval_ns.max(1),
            capacity: capacity.max(1),
            tat_ns: 0,
        }
    }

    /// Capacity in units.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Units that could be taken at `now`.
    #[inline]
    pub fn available(&self, now: SimTime) -> u64 {
        let t = ns(now);
        let full_span = self.capacity.saturating_mul(self.interval_ns);
        // Full (and no saturation): the division below would give capacity.
        if self.tat_ns <= t && full_span < u64::MAX - t {
            return self.capacity;
        }
        let room = t
            .saturating_add(full_span)
            .saturating_sub(self.tat_ns.max(t));
        (room / self.interval_ns).min(self.capacity)
    }

    /// What an attempt of `cost` units takes: a request larger than the
    /// bucket takes the whole bucket (it could never start otherwise).
    pub fn clamp(&self, cost: u64) -> u64 {
        cost.min(self.capacity)
    }

    /// Whether `cost` units can be taken at `now`.
    pub fn admits(&self, now: SimTime, cost: u64) -> bool {
        self.available(now) >= self.clamp(cost)
    }

    /// The earliest time at or after `now` when `cost` units are available.
    pub fn ready_at(&self, now: SimTime, cost: u64) -> SimTime {
        let short = self.capacity - self.clamp(cost);
        let at = self
            .tat_ns
            .saturating_sub(short.saturating_mul(self.interval_ns));
        us_ceil(at).max(now)
    }

    /// Units available at `now`, and the earliest time another unit could
    /// be taken once they are all gone (the next refill when none is).
    #[inline]
    pub fn state(&self, now: SimTime) -> (u64, SimTime) {
        let k = self.available(now);
        // `take(now, k)` then `ready_at(now, 1)`, inline: the policy asks
        // this of every rate-limited tier on every dispatch pass.
        let tat = self
            .tat_ns
            .max(ns(now))
            .saturating_add(k.saturating_mul(self.interval_ns));
        let at = tat.saturating_sub((self.capacity - 1).saturating_mul(self.interval_ns));
        (k, us_ceil(at).max(now))
    }

    /// Takes `cost` units (clamped to the capacity); the caller checked
    /// [`TokenBucket::admits`].
    pub fn take(&mut self, now: SimTime, cost: u64) {
        let t = ns(now);
        let cost = self.clamp(cost);
        self.tat_ns = self
            .tat_ns
            .max(t)
            .saturating_add(cost.saturating_mul(self.interval_ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::new(5.0, 3);
        let t0 = SimTime(1_000_000);
        assert_eq!(b.available(t0), 3);
        // Three tokens now, the fourth once they are gone: 200 ms later.
        assert_eq!(b.state(t0).1, SimTime(1_200_000));
        for _ in 0..3 {
            b.take(t0, 1);
        }
        assert_eq!(b.available(t0), 0);
        // One token every 200 ms.
        assert_eq!(b.ready_at(t0, 1), SimTime(1_200_000));
        assert_eq!(b.state(t0).1, SimTime(1_200_000));
        assert_eq!(b.available(SimTime(1_199_999)), 0);
        assert_eq!(b.available(SimTime(1_200_000)), 1);
        assert_eq!(b.available(SimTime(1_600_000)), 3);
        assert_eq!(b.available(SimTime(9_000_000)), 3, "never above capacity");
        // Half-way through a refill, with one token back and taken.
        let t1 = SimTime(1_300_000);
        assert_eq!(b.available(t1), 1);
        assert_eq!(b.state(t1).1, SimTime(1_400_000));
        b.take(t1, 1);
        assert_eq!(b.ready_at(t1, 1), SimTime(1_400_000));
    }

    #[test]
    fn weighted_takes_wait_for_their_whole_cost() {
        // 60,000 tokens a minute: one per ms; capacity 1,000.
        let mut b = TokenBucket::per_minute(60_000.0, 1000);
        let t0 = SimTime(0);
        assert!(b.admits(t0, 1000));
        b.take(t0, 700);
        assert_eq!(b.available(t0), 300);
        assert!(!b.admits(t0, 301));
        // 301 tokens: 1 ms for the one missing.
        assert_eq!(b.ready_at(t0, 301), SimTime(1_000));
        assert_eq!(b.ready_at(t0, 1000), SimTime(700_000));
        assert_eq!(
            b.ready_at(t0, 5000),
            SimTime(700_000),
            "clamped to capacity"
        );
        assert_eq!(b.ready_at(t0, 10), t0, "available now");
    }

    #[test]
    fn absurd_times_and_rates_saturate_instead_of_wrapping() {
        let mut b = TokenBucket::new(1e-11, 5);
        let far = SimTime(u64::MAX / 2);
        b.take(far, 5);
        b.take(far, 5);
        assert_eq!(b.available(far), 0);
        assert!(b.ready_at(far, 1) >= far);
        let b = TokenBucket::per_minute(1e12, u64::MAX);
        assert_eq!(b.available(SimTime(0)), u64::MAX, "capacity, not a wrap");
    }

    proptest! {
        /// `available` (with its shortcut for a full bucket) is the GCRA
        /// count by division, wherever the bucket and the clock stand,
        /// saturating corners included.
        #[test]
        fn available_is_the_divided_room(
            interval in prop_oneof![1u64..10_000_000, Just(u64::MAX / 3), Just(u64::MAX)],
            capacity in prop_oneof![1u64..10_000, Just(u64::MAX)],
            tat in prop_oneof![0u64..1u64 << 50, Just(u64::MAX)],
            now_us in prop_oneof![0u64..1u64 << 40, Just(u64::MAX / 1000)],
        ) {
            let b = TokenBucket { interval_ns: interval, capacity, tat_ns: tat };
            let t = ns(SimTime(now_us));
            let room = t
                .saturating_add(capacity.saturating_mul(interval))
                .saturating_sub(tat.max(t));
            prop_assert_eq!(b.available(SimTime(now_us)), (room / interval).min(capacity));
        }

        /// Over any window, a bucket never lets through more than its
        /// capacity plus what refilled during the window.
        #[test]
        fn never_exceeds_rate_over_any_window(
            per_min in 600.0f64..600_000.0,
            capacity in 1u64..5_000,
            steps in proptest::collection::vec((0u64..50_000, 1u64..3_000), 1..200),
        ) {
            let mut b = TokenBucket::per_minute(per_min, capacity);
            let mut now = SimTime(0);
            let mut taken: Vec<(u64, u64)> = Vec::new();
            for (gap, cost) in steps {
                now = SimTime(now.0 + gap);
                let at = b.ready_at(now, cost);
                prop_assert!(at >= now);
                prop_assert!(b.admits(at, cost));
                b.take(at, cost);
                taken.push((at.0, b.clamp(cost)));
                now = at;
            }
            let interval_us = 60e6 / per_min;
            for i in 0..taken.len() {
                let mut sum = 0u64;
                for &(t, c) in &taken[i..] {
                    sum += c;
                    let window_us = (t - taken[i].0) as f64;
                    let bound = capacity as f64 + window_us / interval_us + 1e-9;
                    prop_assert!(sum as f64 <= bound, "{sum} > {bound}");
                }
            }
        }
    }
}
