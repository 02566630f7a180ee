//! The ratchet: for every constant, sweep on train, validate on held-out
//! scenarios, stay away from cliffs, and classify.
//!
//! **Cliff.** On the train curve of mean relative cost `J = 1 - gain` over the
//! sorted sweep values, adjacent values `v_i < v_{i+1}` form a cliff when
//! `|J_i - J_{i+1}| / min(J_i, J_{i+1}) > CLIFF_THRESHOLD` (15%).
//!
//! **Margin.** The distance from a proposed value `v` to a cliff is the
//! distance to its nearer endpoint, `min(|v - v_i|, |v - v_{i+1}|)`; a
//! proposal is rejected when its distance to the nearest cliff is less than
//! `MARGIN_FRACTION` (10%) of the swept range `max(values) - min(values)`.
//! A value that is itself a cliff endpoint has distance 0.
//!
//! **Classes.** `no_sensitivity` when every swept value's mean train gain
//! and the best value's validation gain are within 0.5% of zero (a value
//! that would lose more than 0.5% makes the constant sensitive); `accept`
//! when the best value differs from the current one, passes
//! [`super::verdict`] and keeps the margin;
//! `reject` otherwise, with the reason.

use serde::Serialize;

use super::{Objective, Paired, Reference, best_of, train_curve, validate_candidate, verdict};
use crate::policy::catalogue::catalogue;
use crate::policy::{Constants, PolicyKind};

/// Relative jump between adjacent sweep values that makes a cliff.
pub const CLIFF_THRESHOLD: f64 = 0.15;
/// Minimum distance to a cliff, as a fraction of the swept range.
pub const MARGIN_FRACTION: f64 = 0.10;
/// Effects below this (train and validation) mean no sensitivity.
pub const NO_SENSITIVITY: f64 = 0.005;

/// A cliff between two adjacent sweep values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cliff {
    /// Lower sweep value.
    pub from: f64,
    /// Upper sweep value.
    pub to: f64,
    /// `|J_from - J_to| / min(J_from, J_to)`.
    pub rel_change: f64,
}

/// Cliffs of a curve of (value, mean relative cost J), values ascending.
pub fn cliffs(curve: &[(f64, f64)]) -> Vec<Cliff> {
    curve
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (w[0].1, w[1].1);
            let rel = (a - b).abs() / a.min(b);
            (rel > CLIFF_THRESHOLD || !rel.is_finite()).then_some(Cliff {
                from: w[0].0,
                to: w[1].0,
                rel_change: rel,
            })
        })
        .collect()
}

/// Distance from `v` to the nearest cliff endpoint (infinite without cliffs).
pub fn cliff_distance(v: f64, cliffs: &[Cliff]) -> f64 {
    cliffs
        .iter()
        .map(|c| (v - c.from).abs().min((v - c.to).abs()))
        .fold(f64::INFINITY, f64::min)
}

/// True when `v` keeps the required margin from every cliff of a sweep over `values`.
pub fn keeps_margin(v: f64, values: &[f64], cliffs: &[Cliff]) -> bool {
    let span = values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - values.iter().copied().fold(f64::INFINITY, f64::min);
    cliff_distance(v, cliffs) >= MARGIN_FRACTION * span
}

/// One constant's decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// The constant.
    pub constant: String,
    /// Current value.
    pub current: f64,
    /// Best value on train.
    pub proposed: f64,
    /// Mean train gain of the proposal.
    pub train_delta: f64,
    /// Mean validation gain of the proposal (0 when it is the current value).
    pub validation_delta: f64,
    /// 95% interval of the validation gain.
    pub validation_ci95: (f64, f64),
    /// `accept`, `reject` or `no_sensitivity`.
    pub action: String,
    /// Why.
    pub reason: String,
    /// Cliffs on the train curve.
    pub cliffs: Vec<Cliff>,
    /// Distance from the proposal to the nearest cliff.
    pub cliff_distance: Option<f64>,
    /// Required distance (10% of the swept range).
    pub margin_required: f64,
    /// (value, mean train gain).
    pub train_curve: Vec<(f64, f64)>,
}

/// Classifies a constant from its train curve and the validation of the best value.
pub fn decide(
    constant: &str,
    current: f64,
    curve: &[(f64, Paired)],
    validation: &Paired,
    threshold: f64,
) -> Decision {
    let values: Vec<f64> = curve.iter().map(|c| c.0).collect();
    let j_curve: Vec<(f64, f64)> = curve.iter().map(|(v, p)| (*v, 1.0 - p.mean)).collect();
    let found = cliffs(&j_curve);
    let (proposed, best) = best_of(curve);
    let is_current = proposed == current;
    let val_delta = if is_current { 0.0 } else { validation.mean };
    let span = values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - values.iter().copied().fold(f64::INFINITY, f64::min);
    let distance = cliff_distance(proposed, &found);
    let max_effect = curve.iter().map(|(_, p)| p.mean.abs()).fold(0.0, f64::max);
    let (action, reason) = if best.mean.abs() < NO_SENSITIVITY
        && val_delta.abs() < NO_SENSITIVITY
        && max_effect < NO_SENSITIVITY
    {
        (
            "no_sensitivity",
            format!("every swept value is within {NO_SENSITIVITY} of the current one on train"),
        )
    } else if is_current {
        (
            "reject",
            "the current value is the best on the train scenarios".to_string(),
        )
    } else if !keeps_margin(proposed, &values, &found) {
        (
            "reject",
            format!(
                "{proposed} is {distance} from a cliff, less than {MARGIN_FRACTION} of the swept range ({})",
                MARGIN_FRACTION * span
            ),
        )
    } else {
        let (ok, why) = verdict(validation, threshold);
        (if ok { "accept" } else { "reject" }, why)
    };
    Decision {
        constant: constant.to_string(),
        current,
        proposed,
        train_delta: best.mean,
        validation_delta: val_delta,
        validation_ci95: if is_current {
            (0.0, 0.0)
        } else {
            validation.ci95
        },
        action: action.to_string(),
        reason,
        cliffs: found,
        cliff_distance: distance.is_finite().then_some(distance),
        margin_required: MARGIN_FRACTION * span,
        train_curve: curve.iter().map(|(v, p)| (*v, p.mean)).collect(),
    }
}

/// The ratchet's result.
#[derive(Clone, Debug, Serialize)]
pub struct RatchetResult {
    /// Train seed ids.
    pub train_seeds: Vec<u64>,
    /// Validation seed ids.
    pub validation_seeds: Vec<u64>,
    /// Policy tuned.
    pub policy: PolicyKind,
    /// Objective.
    pub objective: Objective,
    /// Acceptance threshold on the mean validation gain.
    pub threshold: f64,
    /// One per constant.
    pub decisions: Vec<Decision>,
    /// The input constants with every accepted value applied.
    pub proposed_constants: Constants,
    /// Seconds it took.
    pub duration_s: f64,
}

/// Runs the ratchet over every catalogued constant.
pub fn run(
    base: &Constants,
    n_seeds: u64,
    policy: PolicyKind,
    objective: Objective,
    threshold: f64,
) -> Result<RatchetResult, String> {
    let started = std::time::Instant::now();
    let r = Reference::new(base, n_seeds, policy)?;
    let (train, validation) = (&r.train, &r.validation);
    let (ref_train, ref_val) = (r.train_scores(), r.validation_scores());
    let mut decisions = Vec::new();
    let mut proposed = base.clone();
    for info in catalogue() {
        let current = base.get(info.name).expect("catalogued constants exist");
        let mut values = info.sweep.clone();
        if !values.contains(&current) {
            values.push(current);
            values.sort_by(f64::total_cmp);
        }
        let curve = train_curve(
            info.name, &values, base, train, ref_train, policy, objective,
        )?;
        let (best_value, _) = best_of(&curve);
        let val = if best_value == current {
            Paired::from_gains(vec![0.0; validation.len()])
        } else {
            validate_candidate(
                &base.with(info.name, best_value)?,
                validation,
                ref_val,
                policy,
                objective,
            )
        };
        let d = decide(info.name, current, &curve, &val, threshold);
        if d.action == "accept" {
            proposed = proposed.with(info.name, d.proposed)?;
        }
        decisions.push(d);
    }
    Ok(RatchetResult {
        train_seeds: train.iter().map(|s| s.id).collect(),
        validation_seeds: validation.iter().map(|s| s.id).collect(),
        policy,
        objective,
        threshold,
        decisions,
        proposed_constants: proposed,
        duration_s: started.elapsed().as_secs_f64(),
    })
}

/// The human-readable summary (`report.txt`).
pub fn report_text(r: &RatchetResult) -> String {
    let count = |a: &str| r.decisions.iter().filter(|d| d.action == a).count();
    let mut s = format!(
        "ratchet: policy {}, objective {}, {} train / {} validation scenarios, threshold {}\n\
         {} constants: {} accepted, {} rejected, {} without sensitivity; {:.2} s\n",
        r.policy.name(),
        // As `--objective` spells it.
        clap::ValueEnum::to_possible_value(&r.objective)
            .map_or_else(String::new, |v| v.get_name().to_string()),
        r.train_seeds.len(),
        r.validation_seeds.len(),
        r.threshold,
        r.decisions.len(),
        count("accept"),
        count("reject"),
        count("no_sensitivity"),
        r.duration_s
    );
    let untested = r
        .decisions
        .iter()
        .filter(|d| d.reason.starts_with(super::UNTESTED))
        .count();
    if untested > 0 {
        s.push_str(&format!(
            "untested: {untested} of the {} rejections (no validation scenario is affected by the change; \
             more --n-seeds gives more validation scenarios)\n",
            count("reject")
        ));
    }
    for (title, action) in [
        ("Accepted", "accept"),
        ("Rejected", "reject"),
        ("No sensitivity", "no_sensitivity"),
    ] {
        s.push_str(&format!("\n{title}:\n"));
        if count(action) == 0 {
            s.push_str("  (none)\n");
        }
        for d in r.decisions.iter().filter(|d| d.action == action) {
            s.push_str(&format!(
                "  {:<24} {} -> {}  train {:+.4}  validation {:+.4} [{:+.4}, {:+.4}]  {}\n",
                d.constant,
                d.current,
                d.proposed,
                d.train_delta,
                d.validation_delta,
                d.validation_ci95.0,
                d.validation_ci95.1,
                d.reason
            ));
        }
    }
    s.push_str("\nAccepted changes are evaluated one at a time against the current constants; check their\ncombination with `agentsched eval --candidate proposed_constants.json` before adopting it.\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(f64, f64)]) -> Vec<(f64, Paired)> {
        // Gains with a tiny spread so that intervals exist.
        points
            .iter()
            .map(|&(v, g)| (v, Paired::from_gains(vec![g - 0.001, g, g + 0.001])))
            .collect()
    }

    #[test]
    fn cliffs_are_adjacent_jumps_over_15_percent() {
        let c = cliffs(&[(0.0, 1.0), (1.0, 1.1), (2.0, 1.4), (4.0, 1.41)]);
        // 1.0 -> 1.1 is 10%: no cliff; 1.1 -> 1.4 is 27%: cliff; 1.4 -> 1.41: none.
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].from, c[0].to), (1.0, 2.0));
        assert!((c[0].rel_change - 0.3 / 1.1).abs() < 1e-12);
    }

    #[test]
    fn margin_is_distance_to_the_nearer_cliff_endpoint_over_10_percent_of_range() {
        let c = vec![Cliff {
            from: 2.0,
            to: 4.0,
            rel_change: 0.5,
        }];
        let values = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]; // range 4, margin 0.4
        assert_eq!(cliff_distance(1.0, &c), 1.0);
        assert!(keeps_margin(1.0, &values, &c));
        assert_eq!(cliff_distance(2.0, &c), 0.0, "an endpoint is on the cliff");
        assert!(!keeps_margin(2.0, &values, &c));
        // 1.7 is 0.3 from the cliff: inside the 0.4 margin.
        assert!(!keeps_margin(1.7, &values, &c));
        // Exactly at the margin passes (values exact in binary: span 5, margin 0.5).
        let c2 = vec![Cliff {
            from: 2.0,
            to: 5.0,
            rel_change: 0.5,
        }];
        let values2 = [0.0, 1.0, 1.5, 2.0, 5.0];
        assert_eq!(cliff_distance(1.5, &c2), 0.5);
        assert!(keeps_margin(1.5, &values2, &c2));
        assert!(!keeps_margin(1.75, &values2, &c2));
        assert!(keeps_margin(3.0, &values, &[]), "no cliff, no constraint");
    }

    #[test]
    fn a_proposal_next_to_a_cliff_is_rejected() {
        // The best value (2.0) sits right at a cliff edge: 2.0 -> 4.0 jumps.
        let cv = curve(&[(0.0, 0.0), (1.0, 0.02), (2.0, 0.05), (4.0, -0.6)]);
        let val = Paired::from_gains(vec![0.04, 0.05, 0.06]);
        let d = decide("x", 0.0, &cv, &val, 0.01);
        assert_eq!(d.proposed, 2.0);
        assert_eq!(d.action, "reject");
        assert!(d.reason.contains("cliff"), "{}", d.reason);
    }

    #[test]
    fn overfitting_guard_rejects_a_train_winner_that_loses_on_validation() {
        let cv = curve(&[(0.0, 0.0), (1.0, 0.08), (2.0, 0.09), (3.0, 0.085)]);
        let val = Paired::from_gains(vec![-0.02, 0.01, -0.03, 0.0, -0.01]);
        let d = decide("x", 0.0, &cv, &val, 0.01);
        assert_eq!(d.proposed, 2.0);
        assert!(d.train_delta > 0.05);
        assert_eq!(d.action, "reject");
        let ok = decide(
            "x",
            0.0,
            &cv,
            &Paired::from_gains(vec![0.05, 0.07, 0.06, 0.08, 0.065]),
            0.01,
        );
        assert_eq!(ok.action, "accept", "{}", ok.reason);
    }

    #[test]
    fn flat_curves_have_no_sensitivity() {
        let cv = curve(&[(0.0, 0.0), (1.0, 0.002), (2.0, -0.003)]);
        let d = decide(
            "x",
            0.0,
            &cv,
            &Paired::from_gains(vec![0.001, 0.002, 0.0]),
            0.01,
        );
        assert_eq!(d.action, "no_sensitivity");
    }
}
