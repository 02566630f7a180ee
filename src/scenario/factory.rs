//! The parametric scenario factory: many varied research-agent scenarios
//! from seed ids, so that policy constants are tuned on a distribution of
//! workloads and providers rather than on one scenario.
//!
//! Each [`ScenarioSeed`] draws every axis independently from a generator
//! keyed by (master seed, seed id): no pools cycled with fixed strides and
//! no regime that depends on the id, so an id-based train/validation split
//! gives two samples of the same distribution.
//!
//! | axis | range |
//! |---|---|
//! | `workflows` | 10..=40 |
//! | `pdfs`, `iters`, `subqueries` | 2..=6, 1..=3, 1..=4 |
//! | `arrival` | all_at_once, poisson, uniform, burst (equally likely) |
//! | `arrival_rate_per_s` | 0.05..1.0 (log-uniform) |
//! | `heavy_tail_prob`, `heavy_tail_mult` | 0..0.05, 5..60 |
//! | `llm_slots` | tier 0 1..=4, tier 1 2..=8 |
//! | `embed_slots` | tier 0 2..=6, tier 1 4..=12 |
//! | `llm_rate_per_s` | tier 0 2..10, tier 1 10..40 |
//! | `price_ratio` | tier 1 / tier 0 price, 2..10 |
//! | `latency_ratio` | tier 1 / tier 0 latency, 0.3..0.8 |
//! | `error_rate` | 0..0.06 (tier 1 half of it) |
//! | `token_scale` | 0.5..2.0 |
//! | `model_routing` | on with probability 0.5 |
//! | `small_quality` | the `small` model's quality curve: midpoint 0.5..0.9, slope 5..15 |
//! | `token_limit` | on with probability 0.5: LLM tier 0 60k..600k tokens/min (log-uniform), tier 1 4x; burst 2..20 s of refill; enforced by the client or the provider (equally likely) |
//!
//! The last two axes came later: they are drawn from a second keyed
//! generator, so that every earlier axis of every seed kept its value.

use serde::{Deserialize, Serialize};

use crate::policy::PolicyKind;
use crate::rng::{SimRng, Stream, keyed, unit};
use crate::scenario::{Arrivals, Enforcer, QualityCurve, Scenario, TokenLimit};

/// The factory's fixed master seed: `default_seeds(n)` is the same everywhere.
pub const MASTER_SEED: u64 = 0x5eed_fac7_0123_4567;

/// The axes of one generated scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSeed {
    /// Seed id (also the scenario's simulation seed).
    pub id: u64,
    /// Workflows.
    pub workflows: u64,
    /// PDFs per iteration.
    pub pdfs: u32,
    /// Maximum iterations.
    pub iters: u32,
    /// Subqueries per PDF.
    pub subqueries: u32,
    /// `all_at_once`, `poisson`, `uniform` or `burst`.
    pub arrival: String,
    /// Arrival rate (workflows per second) for the timed patterns.
    pub arrival_rate_per_s: f64,
    /// Heavy-tail probability.
    pub heavy_tail_prob: f64,
    /// Heavy-tail multiplier.
    pub heavy_tail_mult: f64,
    /// LLM tier slots (cheap, fast).
    pub llm_slots: (u32, u32),
    /// Embedding tier slots.
    pub embed_slots: (u32, u32),
    /// LLM tier rate limits per second.
    pub llm_rate_per_s: (f64, f64),
    /// Fast tier price over cheap tier price.
    pub price_ratio: f64,
    /// Fast tier latency over cheap tier latency.
    pub latency_ratio: f64,
    /// Failure probability of the cheap tiers.
    pub error_rate: f64,
    /// Token-size scale.
    pub token_scale: f64,
    /// Model routing on.
    pub model_routing: bool,
    /// The `small` model's quality curve (midpoint, slope).
    #[serde(default = "default_small_quality")]
    pub small_quality: (f64, f64),
    /// LLM tokens-per-minute limits, if any.
    #[serde(default)]
    pub token_limit: Option<FactoryTokenLimit>,
}

fn default_small_quality() -> (f64, f64) {
    (0.7, 10.0)
}

/// The token-limit axis of a generated scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactoryTokenLimit {
    /// Tokens per minute of LLM tier 0 and tier 1.
    pub tokens_per_min: (f64, f64),
    /// Bucket capacity in seconds of refill.
    pub burst_s: f64,
    /// `client` or `provider`.
    pub enforced_by: Enforcer,
}

fn range(r: &mut SimRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit(r)
}

fn int(r: &mut SimRng, lo: u32, hi: u32) -> u32 {
    lo + ((hi - lo + 1) as f64 * unit(r)) as u32
}

impl ScenarioSeed {
    /// Draws seed `id` under `master`: every axis from one keyed generator,
    /// in a fixed order.
    pub fn draw(master: u64, id: u64) -> ScenarioSeed {
        let r = &mut keyed(master, Stream::Factory, [id, 0, 0, 0]);
        ScenarioSeed {
            id,
            workflows: int(r, 10, 40) as u64,
            pdfs: int(r, 2, 6),
            iters: int(r, 1, 3),
            subqueries: int(r, 1, 4),
            arrival: ["all_at_once", "poisson", "uniform", "burst"][int(r, 0, 3) as usize]
                .to_string(),
            arrival_rate_per_s: (range(r, 0.05f64.ln(), 1.0f64.ln())).exp(),
            heavy_tail_prob: range(r, 0.0, 0.05),
            heavy_tail_mult: range(r, 5.0, 60.0),
            llm_slots: (int(r, 1, 4), int(r, 2, 8)),
            embed_slots: (int(r, 2, 6), int(r, 4, 12)),
            llm_rate_per_s: (range(r, 2.0, 10.0), range(r, 10.0, 40.0)),
            price_ratio: range(r, 2.0, 10.0),
            latency_ratio: range(r, 0.3, 0.8),
            error_rate: range(r, 0.0, 0.06),
            token_scale: range(r, 0.5, 2.0),
            model_routing: unit(r) < 0.5,
            small_quality: (0.0, 0.0),
            token_limit: None,
        }
        .with_later_axes(master)
    }

    /// Draws the axes added after the first ones, from their own generator.
    fn with_later_axes(mut self, master: u64) -> ScenarioSeed {
        let r = &mut keyed(master, Stream::Factory, [self.id, 1, 0, 0]);
        self.small_quality = (range(r, 0.5, 0.9), range(r, 5.0, 15.0));
        let limited = unit(r) < 0.5;
        let tier0 = range(r, 60_000f64.ln(), 600_000f64.ln()).exp();
        let burst_s = range(r, 2.0, 20.0);
        let by = if unit(r) < 0.5 {
            Enforcer::Client
        } else {
            Enforcer::Provider
        };
        self.token_limit = limited.then_some(FactoryTokenLimit {
            tokens_per_min: (tier0, 4.0 * tier0),
            burst_s,
            enforced_by: by,
        });
        self
    }

    /// The scenario: the default research agent with this seed's axes.
    pub fn scenario(&self, policy: PolicyKind) -> Scenario {
        let mut s = Scenario::default_research_agent();
        s.name = format!("factory_{}", self.id);
        s.seed = self.id;
        s.policy = policy;
        let w = &mut s.workload;
        w.workflows = self.workflows;
        w.pdfs = self.pdfs;
        w.iters = self.iters;
        w.subqueries = self.subqueries;
        w.token_scale = self.token_scale;
        let interval_ms = 1000.0 / self.arrival_rate_per_s;
        s.arrivals = match self.arrival.as_str() {
            "poisson" => Arrivals::Poisson {
                rate_per_s: self.arrival_rate_per_s,
            },
            "uniform" => Arrivals::Uniform { interval_ms },
            "burst" => Arrivals::Burst {
                size: 5,
                interval_ms: 5.0 * interval_ms,
            },
            _ => Arrivals::AllAtOnce,
        };
        s.heavy_tail.prob = self.heavy_tail_prob;
        s.heavy_tail.mult = self.heavy_tail_mult;
        s.ablations.enable_model_routing = self.model_routing;
        for (name, slots) in [
            ("llm_provider", self.llm_slots),
            ("embed_provider", self.embed_slots),
        ] {
            let tiers = &mut s.providers.get_mut(name).expect("default providers").tiers;
            tiers[0].slots = slots.0;
            tiers[1].slots = slots.1;
            tiers[1].latency_scale = self.latency_ratio;
            tiers[1].price_per_call = tiers[0].price_per_call * self.price_ratio;
            tiers[0].failure_prob = self.error_rate;
            tiers[1].failure_prob = self.error_rate / 2.0;
        }
        let llm = &mut s
            .providers
            .get_mut("llm_provider")
            .expect("default providers")
            .tiers;
        for (t, rate) in [(0, self.llm_rate_per_s.0), (1, self.llm_rate_per_s.1)] {
            if let Some(rl) = llm[t].rate_limit.as_mut() {
                rl.rate_per_s = rate;
            }
            for m in llm[t].models.iter_mut().filter(|m| m.name == "small") {
                m.quality = Some(QualityCurve {
                    midpoint: self.small_quality.0,
                    slope: self.small_quality.1,
                });
            }
            if let Some(tl) = &self.token_limit {
                let per_min = if t == 0 {
                    tl.tokens_per_min.0
                } else {
                    tl.tokens_per_min.1
                };
                llm[t].token_limit = Some(TokenLimit {
                    tokens_per_min: per_min,
                    // At least one call's worth, whatever the token scale.
                    token_burst: ((per_min * tl.burst_s / 60.0) as u64).max(4_000),
                    enforced_by: tl.enforced_by,
                    reject_latency_ms: 20.0,
                });
            }
        }
        s.validate()
            .expect("factory scenarios are valid by construction");
        s
    }
}

/// The first `n` seeds under the fixed master seed.
pub fn default_seeds(n: u64) -> Vec<ScenarioSeed> {
    (0..n)
        .map(|id| ScenarioSeed::draw(MASTER_SEED, id))
        .collect()
}

/// Deterministic 70/30 split by id: the first `round(0.7 n)` ids train
/// (for n = 50: ids 0-34), the rest validate (35-49).
pub fn split(n: u64) -> (Vec<u64>, Vec<u64>) {
    let train = ((n as f64) * 0.7).round() as u64;
    ((0..train).collect(), (train..n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seeds_are_deterministic_in_range_and_make_valid_scenarios(id in 0u64..100_000) {
            let a = ScenarioSeed::draw(MASTER_SEED, id);
            prop_assert_eq!(&a, &ScenarioSeed::draw(MASTER_SEED, id));
            prop_assert!((10..=40).contains(&a.workflows));
            prop_assert!((2..=6).contains(&a.pdfs) && (1..=3).contains(&a.iters) && (1..=4).contains(&a.subqueries));
            prop_assert!((0.05..=1.0).contains(&a.arrival_rate_per_s));
            prop_assert!((0.0..0.05).contains(&a.heavy_tail_prob) && (5.0..60.0).contains(&a.heavy_tail_mult));
            prop_assert!((1..=4).contains(&a.llm_slots.0) && (2..=8).contains(&a.llm_slots.1));
            prop_assert!((2..=6).contains(&a.embed_slots.0) && (4..=12).contains(&a.embed_slots.1));
            prop_assert!((2.0..10.0).contains(&a.price_ratio) && (0.3..0.8).contains(&a.latency_ratio));
            prop_assert!((0.0..0.06).contains(&a.error_rate) && (0.5..2.0).contains(&a.token_scale));
            prop_assert!((0.5..0.9).contains(&a.small_quality.0) && (5.0..15.0).contains(&a.small_quality.1));
            if let Some(tl) = &a.token_limit {
                prop_assert!((60_000.0..600_000.0).contains(&tl.tokens_per_min.0));
                prop_assert!((2.0..20.0).contains(&tl.burst_s));
            }
            let s = a.scenario(PolicyKind::Full);
            prop_assert!(s.validate().is_ok());
            prop_assert_eq!(Scenario::from_json_str(&s.to_pretty_json()).unwrap(), s);
        }
    }

    #[test]
    fn split_is_disjoint_total_and_70_30() {
        let (t, v) = split(50);
        assert_eq!(
            (t.first(), t.last(), v.first(), v.last()),
            (Some(&0), Some(&34), Some(&35), Some(&49))
        );
        for n in 1..200 {
            let (t, v) = split(n);
            assert_eq!(t.len() + v.len(), n as usize);
            assert!(t.iter().all(|i| !v.contains(i)));
            assert!(t.iter().chain(&v).copied().eq(0..n));
        }
    }

    /// Train and validation ids come from one distribution: the axis means
    /// of the first 70% and the last 30% of 2000 seeds agree within 5
    /// standard errors, and categorical axes are not tied to the id.
    #[test]
    fn train_and_validation_come_from_the_same_distribution() {
        let seeds = default_seeds(2000);
        let (t, v) = split(2000);
        type Axis = (&'static str, fn(&ScenarioSeed) -> f64);
        let axes: Vec<Axis> = vec![
            ("workflows", |s| s.workflows as f64),
            ("pdfs", |s| s.pdfs as f64),
            ("iters", |s| s.iters as f64),
            ("heavy_tail_prob", |s| s.heavy_tail_prob),
            ("llm_slots.0", |s| s.llm_slots.0 as f64),
            ("price_ratio", |s| s.price_ratio),
            ("latency_ratio", |s| s.latency_ratio),
            ("error_rate", |s| s.error_rate),
            ("poisson", |s| (s.arrival == "poisson") as u8 as f64),
            ("routing", |s| s.model_routing as u8 as f64),
            ("small_quality.0", |s| s.small_quality.0),
            ("token_limit", |s| s.token_limit.is_some() as u8 as f64),
        ];
        for (name, f) in axes {
            let a: Vec<f64> = t.iter().map(|&i| f(&seeds[i as usize])).collect();
            let b: Vec<f64> = v.iter().map(|&i| f(&seeds[i as usize])).collect();
            let (da, db) = (crate::stats::describe(&a), crate::stats::describe(&b));
            let se = (da.std.powi(2) / a.len() as f64 + db.std.powi(2) / b.len() as f64).sqrt();
            assert!(
                (da.mean - db.mean).abs() < 5.0 * se,
                "{name}: train {} vs validation {}",
                da.mean,
                db.mean
            );
        }
        // No stride: consecutive ids do not repeat the arrival pattern in a cycle.
        let pattern: Vec<&str> = seeds.iter().take(40).map(|s| s.arrival.as_str()).collect();
        for stride in 1..=8 {
            assert!(
                pattern
                    .iter()
                    .zip(pattern.iter().skip(stride))
                    .any(|(a, b)| a != b),
                "stride {stride}"
            );
        }
    }
}
