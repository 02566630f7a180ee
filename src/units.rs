//! Integer time and money.
//!
//! Simulated time is an integer count of microseconds and money an integer
//! count of nano-dollars, so sums are exact and independent of summation
//! order: a parallel reduction can never drift from a sequential one.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point in simulated time, in microseconds since the start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(pub u64);

/// A span of simulated time, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimDuration(pub u64);

impl SimTime {
    /// The start of every run.
    pub const ZERO: SimTime = SimTime(0);
    /// A time after every event of any run.
    pub const NEVER: SimTime = SimTime(u64::MAX);
    /// The last representable moment of a run: 2^62 µs, about 146,000
    /// years. A simulator stops at the first event past it (bad input), so
    /// saturating arithmetic below [`SimTime::NEVER`] can never stall a run.
    pub const HORIZON: SimTime = SimTime(1 << 62);

    /// This time and a sequence number packed into one integer that orders
    /// as the pair `(time, seq)` does: heaps of timed entries (the event
    /// queue, the policy's hedge deadlines) compare once per sift step.
    #[inline(always)]
    pub fn with_seq(self, seq: u64) -> u128 {
        (u128::from(self.0) << 64) | u128::from(seq)
    }

    /// Milliseconds since the start, as a float (for reports).
    pub fn as_ms(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// Seconds since the start, as a float.
    pub fn as_secs(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: SimTime) -> SimDuration {
        SimDuration(self.0.saturating_sub(earlier.0))
    }
}

impl SimDuration {
    /// No time at all.
    pub const ZERO: SimDuration = SimDuration(0);

    /// The longest single duration: 10^12 ms (about 31.7 years), the
    /// largest time a scenario may name. Longer draws are capped here.
    pub const MAX_DRAW: SimDuration = SimDuration(1_000_000_000_000_000);

    /// Converts milliseconds (possibly fractional) to the nearest microsecond.
    /// Negative and NaN inputs become zero; huge ones saturate at
    /// [`SimDuration::MAX_DRAW`].
    pub fn from_ms(ms: f64) -> SimDuration {
        // `x + 0.5` truncated rounds half up for positive x; f64::round is
        // a libm call on baseline x86-64 and shows up in profiles.
        let us = ms * 1000.0 + 0.5;
        if us.is_nan() || us < 1.0 {
            SimDuration(0)
        } else if us >= SimDuration::MAX_DRAW.0 as f64 {
            SimDuration::MAX_DRAW
        } else {
            // In range for i64, whose conversion is one instruction
            // (u64's needs a branch on baseline x86-64).
            SimDuration(us as i64 as u64)
        }
    }

    /// Converts seconds to the nearest microsecond.
    pub fn from_secs_f64(s: f64) -> SimDuration {
        SimDuration::from_ms(s * 1000.0)
    }

    /// Milliseconds, as a float.
    pub fn as_ms(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// Seconds, as a float.
    pub fn as_secs(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
}

impl Add<SimDuration> for SimTime {
    type Output = SimTime;
    fn add(self, d: SimDuration) -> SimTime {
        SimTime(self.0.saturating_add(d.0))
    }
}

impl AddAssign<SimDuration> for SimTime {
    fn add_assign(&mut self, d: SimDuration) {
        self.0 = self.0.saturating_add(d.0);
    }
}

impl Sub<SimTime> for SimTime {
    type Output = SimDuration;
    fn sub(self, rhs: SimTime) -> SimDuration {
        self.since(rhs)
    }
}

impl Add for SimDuration {
    type Output = SimDuration;
    fn add(self, d: SimDuration) -> SimDuration {
        SimDuration(self.0.saturating_add(d.0))
    }
}

impl AddAssign for SimDuration {
    fn add_assign(&mut self, d: SimDuration) {
        self.0 = self.0.saturating_add(d.0);
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.as_ms())
    }
}

/// An amount of money in nano-dollars (1e-9 of the price unit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub u64);

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);

    /// Converts a price in dollars to the nearest nano-dollar (negative -> 0).
    pub fn from_dollars(d: f64) -> Money {
        let x = d * 1e9;
        // Rounds half away from zero like `f64::round`, without its libm
        // call: below 2^62, truncation is exact and so is the fraction.
        if x.is_nan() || x < 0.5 {
            Money(0)
        } else if x < (1u64 << 62) as f64 {
            let whole = x as i64;
            Money(whole as u64 + (x - whole as f64 >= 0.5) as u64)
        } else {
            Money(x.round() as u64)
        }
    }

    /// Dollars, as a float (for reports).
    pub fn as_dollars(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// The fraction `num/den` of this amount, rounded down; exact integer math.
    pub fn prorate(self, num: u64, den: u64) -> Money {
        if den == 0 {
            return Money(0);
        }
        Money(((self.0 as u128 * num.min(den) as u128) / den as u128) as u64)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, m: Money) -> Money {
        Money(self.0.saturating_add(m.0))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, m: Money) {
        self.0 = self.0.saturating_add(m.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn ms_round_trip_and_saturation() {
        assert_eq!(SimDuration::from_ms(1.2345).0, 1235);
        assert_eq!(SimDuration::from_ms(-3.0).0, 0);
        assert_eq!(SimDuration::from_ms(f64::NAN).0, 0);
        assert_eq!(SimTime(2_500).as_ms(), 2.5);
        assert_eq!(SimTime(10).since(SimTime(20)).0, 0);
    }

    proptest::proptest! {
        /// The branchy rounding agrees with `f64::round` everywhere,
        /// ties, tiny, huge and non-finite amounts included.
        #[test]
        fn from_dollars_rounds_like_f64_round(
            d in proptest::prop_oneof![
                proptest::num::f64::ANY,
                0.0f64..1e-6,
                (0u64..1_000_000).prop_map(|k| (k as f64 + 0.5) / 1e9),
                (0u64..1_000_000).prop_map(|k| k as f64 / 1e9),
            ]
        ) {
            let n = (d * 1e9).round();
            let want = if n.is_nan() || n <= 0.0 { 0 } else { n as u64 };
            proptest::prop_assert_eq!(Money::from_dollars(d).0, want, "d = {:e}", d);
        }
    }

    #[test]
    fn from_dollars_edges() {
        for (d, want) in [
            (4.999_999_999_999_999e-10, 0), // x 1e9 = the largest double below 0.5
            (0.5e-9, 1),
            (2.5e-9, 3),
            (1e10, 10_000_000_000_000_000_000),
            (1e30, u64::MAX),
            (f64::INFINITY, u64::MAX),
            (-1.0, 0),
        ] {
            assert_eq!(Money::from_dollars(d).0, want, "{d:e}");
        }
    }

    #[test]
    fn money_prorates_exactly() {
        let m = Money::from_dollars(0.05);
        assert_eq!(m.0, 50_000_000);
        assert_eq!(m.prorate(1, 4).0, 12_500_000);
        assert_eq!(
            m.prorate(5, 4),
            m,
            "prorating never charges more than the whole"
        );
        assert_eq!(m.prorate(1, 0), Money::ZERO);
    }
}
