//! The catalogue of tunable constants: default, unit, valid range, the
//! values the ratchet sweeps, and what each does. `agentsched constants`
//! prints it; its JSON form is accepted by `--constants`.

use serde::Serialize;

use super::params::Constants;

/// One tunable constant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConstantInfo {
    /// Name (a field of [`Constants`]).
    pub name: &'static str,
    /// Default value.
    pub default: f64,
    /// Unit.
    pub unit: &'static str,
    /// Smallest valid value.
    pub min: f64,
    /// Largest valid value.
    pub max: f64,
    /// Values the ratchet tries (ascending, the default among them).
    pub sweep: Vec<f64>,
    /// What it does.
    pub description: &'static str,
}

/// Every constant, in a fixed order.
pub fn catalogue() -> Vec<ConstantInfo> {
    let d = Constants::default();
    let c = |name, default, unit, min, max, sweep: &[f64], description| ConstantInfo {
        name,
        default,
        unit,
        min,
        max,
        sweep: sweep.to_vec(),
        description,
    };
    vec![
        c(
            "alpha",
            d.alpha,
            "1/s",
            0.0,
            100.0,
            &[0.0, 0.25, 0.5, 1.0, 2.0, 4.0],
            "weight of the remaining critical path in the DAG priority score",
        ),
        c(
            "beta",
            d.beta,
            "-",
            0.0,
            100.0,
            &[0.0, 0.25, 0.5, 1.0, 2.0],
            "weight of 1/(1+slack_s) in the DAG priority score",
        ),
        c(
            "gamma",
            d.gamma,
            "1/s",
            0.0,
            100.0,
            &[0.0, 0.05, 0.1, 0.2, 0.5],
            "weight of workflow age in the DAG priority score",
        ),
        c(
            "escalation_threshold_s",
            d.escalation_threshold_s,
            "s",
            0.0,
            60.0,
            &[0.0, 0.25, 0.5, 1.0, 2.0],
            "minimum expected seconds saved before a waiting call moves to a faster tier",
        ),
        c(
            "time_value_per_s",
            d.time_value_per_s,
            "$/s",
            0.0,
            10.0,
            &[0.005, 0.01, 0.02, 0.05, 0.1],
            "exchange rate between time and money for escalation",
        ),
        c(
            "hedge_stretch",
            d.hedge_stretch,
            "x p95",
            1.0,
            20.0,
            &[1.1, 1.25, 1.5, 2.0, 3.0],
            "a critical call running longer than this times its p95 estimate is hedged",
        ),
        c(
            "workflow_budget",
            d.workflow_budget,
            "$",
            0.0,
            1000.0,
            &[1.0, 2.5, 5.0, 10.0, 20.0],
            "per-workflow budget within which model routing, escalation and hedging spend",
        ),
        c(
            "max_in_flight",
            d.max_in_flight as f64,
            "calls",
            1.0,
            100000.0,
            &[4.0, 8.0, 16.0, 50.0, 200.0],
            "global cap on remote calls in flight (policy full)",
        ),
        c(
            "retry_backoff_ms",
            d.retry_backoff_ms,
            "ms",
            0.0,
            60000.0,
            &[25.0, 50.0, 100.0, 200.0, 400.0],
            "base of the exponential backoff between retries",
        ),
        c(
            "routing_threshold",
            d.routing_threshold,
            "-",
            0.0,
            1.0,
            &[0.2, 0.35, 0.5, 0.65, 0.8, 0.95],
            "calls with difficulty below this use the cheapest model (model routing)",
        ),
        c(
            "stats_window",
            d.stats_window as f64,
            "samples",
            10.0,
            100000.0,
            &[50.0, 200.0, 500.0, 1000.0, 2000.0],
            "samples per (node type, tier) behind the online latency estimates",
        ),
    ]
}

/// The catalogue entry of `name`.
pub fn info(name: &str) -> Option<ConstantInfo> {
    catalogue().into_iter().find(|c| c.name == name)
}

impl Constants {
    /// The value of constant `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        let v = serde_json::to_value(self).ok()?;
        v.get(name)?.as_f64()
    }

    /// A copy with constant `name` set to `value`, validated: an integer
    /// constant takes only whole values.
    pub fn with(&self, name: &str, value: f64) -> Result<Constants, String> {
        let mut v = serde_json::to_value(self).expect("constants serialize");
        let Some(slot) = v.get_mut(name) else {
            let names: Vec<&str> = catalogue().iter().map(|c| c.name).collect();
            return Err(format!(
                "unknown constant `{name}`; expected one of {}",
                names.join(", ")
            ));
        };
        *slot = if slot.is_u64() {
            if !(value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= 1e15) {
                return Err(format!(
                    "{name}: expected a non-negative integer (it counts {}), got {value}",
                    info(name).map_or("items", |c| c.unit)
                ));
            }
            serde_json::Value::from(value as u64)
        } else {
            serde_json::Number::from_f64(value)
                .map(serde_json::Value::Number)
                .ok_or_else(|| format!("{name}: expected a finite number, got {value}"))?
        };
        let c: Constants = serde_json::from_value(v).map_err(|e| format!("{name}: {e}"))?;
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_covers_every_constant_with_sane_sweeps() {
        let names: Vec<&str> = catalogue().iter().map(|c| c.name).collect();
        let fields = serde_json::to_value(Constants::default()).unwrap();
        let fields: Vec<&String> = fields.as_object().unwrap().keys().collect();
        assert_eq!(names.len(), fields.len());
        for c in catalogue() {
            assert!(
                fields.iter().any(|f| *f == c.name),
                "{} is not a constant",
                c.name
            );
            assert!(
                c.sweep.windows(2).all(|w| w[0] < w[1]),
                "{}: sweep ascending",
                c.name
            );
            assert!(
                c.sweep.contains(&c.default),
                "{}: sweep contains the default",
                c.name
            );
            assert!(
                c.sweep.iter().all(|v| (c.min..=c.max).contains(v)),
                "{}: sweep in range",
                c.name
            );
            for v in &c.sweep {
                Constants::default()
                    .with(c.name, *v)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    #[test]
    fn with_sets_and_validates() {
        let c = Constants::default().with("max_in_flight", 16.0).unwrap();
        assert_eq!(c.max_in_flight, 16);
        assert_eq!(c.get("max_in_flight"), Some(16.0));
        assert!(Constants::default().with("hedge_stretch", 0.5).is_err());
        assert!(
            Constants::default()
                .with("nope", 1.0)
                .unwrap_err()
                .contains("unknown constant")
        );
    }
}
