//! The policy's user-facing vocabulary: which policy, which ablations, and
//! the tunable constants the ratchet searches over. Every constant is
//! documented here, next to its default.

use serde::{Deserialize, Serialize};

/// The scheduling policies users can name.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Oldest workflow first; the cheapest tier with free capacity.
    FifoCheapest,
    /// DAG priority score (critical path, slack, age); the cheapest tier with free capacity.
    DagCheapest,
    /// `dag_cheapest` plus escalation of waiting calls to faster tiers when worth the price.
    DagEscalation,
    /// `dag_escalation` plus hedging of slow critical-path calls and a global in-flight cap.
    Full,
}

impl PolicyKind {
    /// Every policy, in the order users see them.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::FifoCheapest,
        PolicyKind::DagCheapest,
        PolicyKind::DagEscalation,
        PolicyKind::Full,
    ];

    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::FifoCheapest => "fifo_cheapest",
            PolicyKind::DagCheapest => "dag_cheapest",
            PolicyKind::DagEscalation => "dag_escalation",
            PolicyKind::Full => "full",
        }
    }
}

/// Switches that turn one mechanism off (or routing on), whatever the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ablations {
    /// No hedged duplicates, even under `full`.
    pub disable_hedging: bool,
    /// No escalation to faster tiers, even under `dag_escalation` / `full`.
    pub disable_escalation: bool,
    /// Ready calls ordered oldest-workflow-first instead of by DAG score.
    pub disable_dag_priority: bool,
    /// Each call chooses a model (small/large) by difficulty and budget.
    pub enable_model_routing: bool,
}

/// The mechanisms a (policy, ablations) pair actually runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mechanisms {
    /// Order queues by the DAG score rather than workflow age.
    pub dag_priority: bool,
    /// Move waiting calls to faster tiers when worth it.
    pub escalation: bool,
    /// Duplicate slow critical-path calls on faster tiers.
    pub hedging: bool,
    /// Apply the global in-flight cap.
    pub in_flight_cap: bool,
    /// Choose models by difficulty within the workflow budget.
    pub model_routing: bool,
}

impl Mechanisms {
    /// Whether anything reads a ready call's slack (the DAG score and the
    /// hedging test): the runtime works it out only then.
    pub fn reads_slack(&self) -> bool {
        self.dag_priority || self.hedging
    }

    /// What `kind` runs once `ablations` are applied.
    pub fn of(kind: PolicyKind, ablations: &Ablations) -> Mechanisms {
        let dag = kind != PolicyKind::FifoCheapest;
        let esc = matches!(kind, PolicyKind::DagEscalation | PolicyKind::Full);
        let full = kind == PolicyKind::Full;
        Mechanisms {
            dag_priority: dag && !ablations.disable_dag_priority,
            escalation: esc && !ablations.disable_escalation,
            hedging: full && !ablations.disable_hedging,
            in_flight_cap: full,
            model_routing: ablations.enable_model_routing,
        }
    }
}

/// The tunable constants of every policy, with the seed simulator's defaults.
///
/// | constant | default | unit | meaning |
/// |---|---|---|---|
/// | `alpha` | 1.0 | 1/s | weight of the remaining critical path in the DAG score |
/// | `beta` | 0.5 | - | weight of `1/(1+slack_s)` in the DAG score |
/// | `gamma` | 0.1 | 1/s | weight of workflow age in the DAG score |
/// | `escalation_threshold_s` | 0.5 | s | minimum expected time saved for an escalation |
/// | `time_value_per_s` | 0.02 | $/s | exchange rate: what one second saved is worth |
/// | `hedge_stretch` | 1.5 | x p95 | a call running longer than this times its p95 estimate is hedged |
/// | `workflow_budget` | 10.0 | $ | per-workflow budget for model routing |
/// | `max_in_flight` | 200 | calls | global cap on remote calls in flight (`full`) |
/// | `retry_backoff_ms` | 100 | ms | base of the exponential backoff between retries |
/// | `routing_threshold` | 0.5 | - | calls with difficulty below this use the small model |
/// | `stats_window` | 1000 | samples | online estimates use the last N samples per (node type, tier) |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Constants {
    /// Weight of the remaining critical path (seconds) in the DAG score.
    pub alpha: f64,
    /// Weight of `1 / (1 + slack_s)` in the DAG score.
    pub beta: f64,
    /// Weight of workflow age (seconds) in the DAG score.
    pub gamma: f64,
    /// Minimum expected seconds saved before a waiting call is escalated.
    pub escalation_threshold_s: f64,
    /// Dollars one second of saved completion time is worth.
    pub time_value_per_s: f64,
    /// Hedge when elapsed > `hedge_stretch` x the p95 service estimate.
    pub hedge_stretch: f64,
    /// Per-workflow budget (dollars) that model routing stays within.
    pub workflow_budget: f64,
    /// Global cap on remote attempts in flight (policy `full`).
    #[serde(deserialize_with = "count")]
    pub max_in_flight: u32,
    /// Base retry backoff; retry k waits `retry_backoff_ms * 2^(k-1)`.
    pub retry_backoff_ms: f64,
    /// Difficulty below which model routing picks the cheapest model.
    pub routing_threshold: f64,
    /// Samples kept per (node type, tier) for online latency estimates.
    #[serde(deserialize_with = "count")]
    pub stats_window: u32,
}

/// A count constant: an integer, or a float with no fractional part (`200.0`
/// is how `ratchet.json` and pandas write 200), never `200.5`.
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::{Error, Unexpected};
    let expected = "a non-negative integer (a count)";
    match serde_json::Number::deserialize(d)? {
        n if n.is_u64() => {
            let v = n.as_u64().expect("checked");
            u32::try_from(v).map_err(|_| Error::invalid_value(Unexpected::Unsigned(v), &expected))
        }
        n if n.is_i64() => Err(Error::invalid_value(
            Unexpected::Signed(n.as_i64().expect("checked")),
            &expected,
        )),
        n => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if v.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&v) {
                Ok(v as u32)
            } else {
                Err(Error::invalid_value(Unexpected::Float(v), &expected))
            }
        }
    }
}

impl Default for Constants {
    fn default() -> Self {
        Constants {
            alpha: 1.0,
            beta: 0.5,
            gamma: 0.1,
            escalation_threshold_s: 0.5,
            time_value_per_s: 0.02,
            hedge_stretch: 1.5,
            workflow_budget: 10.0,
            max_in_flight: 200,
            retry_backoff_ms: 100.0,
            routing_threshold: 0.5,
            stats_window: 1000,
        }
    }
}

impl Constants {
    /// Checks every constant against its valid range; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        // The catalogue's ranges are the contract (`agentsched constants`
        // prints them), so they are the check too.
        let value = serde_json::to_value(self).expect("constants serialize");
        for c in super::catalogue::catalogue() {
            let v = value.get(c.name).and_then(serde_json::Value::as_f64);
            match v {
                Some(v) if v.is_finite() && (c.min..=c.max).contains(&v) => {}
                _ => {
                    let got = value.get(c.name).map_or("nothing".into(), |v| {
                        if v.is_null() {
                            "a non-finite number".to_string()
                        } else {
                            v.to_string()
                        }
                    });
                    return Err(format!(
                        "constants.{}: expected a number in [{}, {}] ({}), got {got}",
                        c.name, c.min, c.max, c.unit
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_follow_policy_and_ablations() {
        let none = Ablations::default();
        let m = Mechanisms::of(PolicyKind::FifoCheapest, &none);
        assert!(!m.dag_priority && !m.escalation && !m.hedging);
        let m = Mechanisms::of(PolicyKind::Full, &none);
        assert!(m.dag_priority && m.escalation && m.hedging && m.in_flight_cap);
        let m = Mechanisms::of(
            PolicyKind::Full,
            &Ablations {
                disable_hedging: true,
                disable_escalation: true,
                ..none
            },
        );
        assert!(m.dag_priority && !m.escalation && !m.hedging);
        let m = Mechanisms::of(
            PolicyKind::DagEscalation,
            &Ablations {
                disable_dag_priority: true,
                ..none
            },
        );
        assert!(!m.dag_priority && m.escalation && !m.hedging);
    }

    #[test]
    fn constants_reject_out_of_range() {
        assert!(Constants::default().validate().is_ok());
        let c = Constants {
            hedge_stretch: 0.9,
            ..Constants::default()
        };
        assert!(c.validate().unwrap_err().contains("hedge_stretch"));
        let c = Constants {
            alpha: f64::NAN,
            ..Constants::default()
        };
        assert!(c.validate().unwrap_err().contains("alpha"));
    }

    #[test]
    fn count_constants_take_integral_floats_only() {
        let c: Constants =
            serde_json::from_str(r#"{"max_in_flight": 8.0, "stats_window": 50}"#).unwrap();
        assert_eq!((c.max_in_flight, c.stats_window), (8, 50));
        for (bad, why) in [
            ("8.5", "floating point `8.5`"),
            ("-1", "integer `-1`"),
            ("-1.0", "floating point `-1.0`"),
            ("4294967296", "integer `4294967296`"),
            ("\"8\"", "string"),
        ] {
            let e = serde_json::from_str::<Constants>(&format!(r#"{{"max_in_flight": {bad}}}"#))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(
                e.contains("non-negative integer") || e.contains("invalid type"),
                "{bad}: {e}"
            );
        }
        // Written back as integers, so files round-trip unchanged.
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""max_in_flight":8,"#), "{json}");
    }

    #[test]
    fn partial_constants_file_keeps_other_defaults() {
        let c: Constants = serde_json::from_str(r#"{"alpha": 2.5}"#).unwrap();
        assert_eq!(c.alpha, 2.5);
        assert_eq!(c.beta, Constants::default().beta);
        assert!(serde_json::from_str::<Constants>(r#"{"alpah": 2.5}"#).is_err());
    }
}
