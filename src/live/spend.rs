//! A live run's spending cap (`--max-cost`): the ledger that decides, before
//! each attempt is sent, whether it fits.
//!
//! What a run has committed is what its ended attempts were charged (as the
//! runtime priced them, from the usage their answers reported), plus the
//! price of every attempt still in flight at the scenario's token counts
//! (what it asks for: `max_tokens` of output). An attempt is sent only if
//! that sum plus its own price stays within the cap; the first one that
//! would not fit stops the run, as an interrupt does. So a run never commits
//! more than its cap, and spends more only where answers run past what was
//! asked for (which `long_answers` warns of) or prompts count more tokens
//! than the scenario's.

use crate::scenario::Scenario;
use crate::units::Money;

/// What the simulation of `s` spends, in dollars: what a live run of it is
/// expected to, which a cap is checked against before anything is sent.
pub fn simulated_cost(s: &Scenario) -> f64 {
    crate::sim::run(s, &mut crate::metrics::NullObserver)
        .summary
        .cost_total
}

/// The ledger. Without a cap it admits everything and keeps no sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spend {
    cap: Option<Money>,
    /// Charged for the attempts that had ended as of the last event.
    charged: Money,
    /// The prices of attempts that ended since (their charges are the
    /// runtime's until the event is over).
    ended: Money,
    /// The prices of the attempts in flight.
    in_flight: Money,
    /// An attempt did not fit: the run stops.
    reached: bool,
}

impl Spend {
    /// A ledger for `cap` (none: no cap).
    pub fn new(cap: Option<Money>) -> Spend {
        Spend {
            cap,
            ..Spend::default()
        }
    }

    /// The cap.
    pub fn cap(&self) -> Option<Money> {
        self.cap
    }

    /// Whether an attempt has been refused: the run stops at the cap.
    pub fn reached(&self) -> bool {
        self.reached
    }

    /// What the run has committed: charged, plus the prices of attempts
    /// ended since the last event and of those in flight.
    pub fn committed(&self) -> Money {
        self.charged + self.ended + self.in_flight
    }

    /// Whether an attempt of `price` may be sent; if so it is in flight
    /// from now. Once one is refused, every later one is too.
    pub fn admit(&mut self, price: Money) -> bool {
        let Some(cap) = self.cap else {
            return true;
        };
        if self.reached || self.committed() + price > cap {
            self.reached = true;
            return false;
        }
        self.in_flight += price;
        true
    }

    /// An attempt admitted at `price` ended (answered, failed or cancelled):
    /// its price counts until the runtime's charge replaces it.
    pub fn ended(&mut self, price: Money) {
        if self.cap.is_some() {
            self.in_flight = Money(self.in_flight.0.saturating_sub(price.0));
            self.ended += price;
        }
    }

    /// An event is over: the runtime has charged every attempt that ended
    /// (`charged` in all), which replaces their prices.
    pub fn settle(&mut self, charged: Money) {
        self.charged = charged;
        self.ended = Money::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cap_admits_everything() {
        let mut s = Spend::new(None);
        for _ in 0..1000 {
            assert!(s.admit(Money(u64::MAX / 2)));
        }
        assert!(!s.reached());
        assert_eq!(s.committed(), Money::ZERO);
    }

    /// Hand-computed: a cap of 100, attempts of 30.
    #[test]
    fn the_cap_counts_charges_ended_and_in_flight_attempts() {
        let mut s = Spend::new(Some(Money(100)));
        assert!(s.admit(Money(30)) && s.admit(Money(30)) && s.admit(Money(30)));
        assert_eq!(s.committed(), Money(90));
        // One ends: its price counts until the event is over ...
        s.ended(Money(30));
        assert_eq!(s.committed(), Money(90));
        assert!(!s.admit(Money(30)), "90 + 30 > 100");
        assert!(s.reached());
        // ... and once refused, the ledger refuses everything after.
        s.settle(Money(5));
        assert_eq!(s.committed(), Money(65));
        assert!(!s.admit(Money(1)));
    }

    #[test]
    fn a_charge_below_the_price_frees_room_once_settled() {
        let mut s = Spend::new(Some(Money(100)));
        assert!(s.admit(Money(60)));
        s.ended(Money(60));
        // A short answer was charged 10 of its 60.
        s.settle(Money(10));
        assert!(s.admit(Money(90)), "10 + 90 = 100 fits exactly");
        assert!(!s.admit(Money(1)));
    }
}
