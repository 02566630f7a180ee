//! Latency distributions a scenario can name, and their sampling.

use rand_distr::{Distribution, Exp, Gamma, LogNormal};
use serde::{Deserialize, Serialize};

use crate::rng::{SimRng, unit};

/// A latency distribution in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// Always `ms`.
    Constant {
        /// The latency.
        ms: f64,
    },
    /// Uniform on `[low_ms, high_ms]`.
    Uniform {
        /// Lower bound.
        low_ms: f64,
        /// Upper bound.
        high_ms: f64,
    },
    /// Exponential with mean `mean_ms`.
    Exponential {
        /// The mean.
        mean_ms: f64,
    },
    /// `exp(N(mu + mu_per_output_token * output_tokens, sigma))`: the seed's
    /// LLM latency model, where longer outputs take longer.
    Lognormal {
        /// Location of the underlying normal (log-milliseconds).
        mu: f64,
        /// Scale of the underlying normal.
        sigma: f64,
        /// Added to `mu` per output token of the call.
        #[serde(default, skip_serializing_if = "is_zero")]
        mu_per_output_token: f64,
    },
    /// Gamma with `shape` and `scale_ms` (mean = shape * scale).
    Gamma {
        /// Shape k.
        shape: f64,
        /// Scale theta, in ms.
        scale_ms: f64,
    },
    /// A streamed LLM call: the first token after
    /// `exp(N(ttft_mu, ttft_sigma)) + ttft_ms_per_input_token * input_tokens`
    /// (prefill grows with the prompt), then each further output token
    /// after a time per output token `exp(N(tpot_mu, tpot_sigma))` drawn
    /// once per attempt: `ttft + (output_tokens - 1) * tpot` in all.
    Streaming {
        /// Location of the time to first token's normal (log-ms).
        ttft_mu: f64,
        /// Its scale.
        ttft_sigma: f64,
        /// Prefill time per prompt token (ms).
        #[serde(default)]
        ttft_ms_per_input_token: f64,
        /// Location of the time per output token's normal (log-ms).
        tpot_mu: f64,
        /// Its scale.
        tpot_sigma: f64,
    },
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// An optional tail: with probability `prob` the draw is multiplied by `mult`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tail {
    /// Probability of the tail.
    pub prob: f64,
    /// Multiplier applied in the tail.
    pub mult: f64,
}

/// A distribution checked and turned into a ready-to-draw sampler.
#[derive(Clone, Debug)]
pub enum Sampler {
    /// See [`Dist::Constant`].
    Constant(f64),
    /// See [`Dist::Uniform`].
    Uniform(f64, f64),
    /// See [`Dist::Exponential`].
    Exponential(Exp<f64>),
    /// See [`Dist::Lognormal`]; `LogNormal` is rebuilt when `mu` shifts.
    Lognormal {
        /// Shift of mu per output token.
        per_token: f64,
        /// The unshifted distribution.
        base: LogNormal<f64>,
    },
    /// See [`Dist::Gamma`].
    Gamma(Gamma<f64>),
    /// See [`Dist::Streaming`].
    Streaming {
        /// Time to first token at an empty prompt.
        ttft: LogNormal<f64>,
        /// Prefill ms per prompt token.
        per_input_token: f64,
        /// Time per output token.
        tpot: LogNormal<f64>,
    },
}

impl Dist {
    /// The variant and its parameters, bit for bit: two distributions with
    /// equal bits draw the same numbers (a memo key; `-0.0` and `0.0`, or
    /// two NaNs, differ).
    pub fn bits(&self) -> [u64; 6] {
        let f = f64::to_bits;
        match *self {
            Dist::Constant { ms } => [0, f(ms), 0, 0, 0, 0],
            Dist::Uniform { low_ms, high_ms } => [1, f(low_ms), f(high_ms), 0, 0, 0],
            Dist::Exponential { mean_ms } => [2, f(mean_ms), 0, 0, 0, 0],
            Dist::Lognormal {
                mu,
                sigma,
                mu_per_output_token,
            } => [3, f(mu), f(sigma), f(mu_per_output_token), 0, 0],
            Dist::Gamma { shape, scale_ms } => [4, f(shape), f(scale_ms), 0, 0, 0],
            Dist::Streaming {
                ttft_mu,
                ttft_sigma,
                ttft_ms_per_input_token,
                tpot_mu,
                tpot_sigma,
            } => [
                5,
                f(ttft_mu),
                f(ttft_sigma),
                f(ttft_ms_per_input_token),
                f(tpot_mu),
                f(tpot_sigma),
            ],
        }
    }

    /// Checks parameters; the error says which parameter and what was expected.
    pub fn check(&self) -> Result<(), String> {
        use super::{MAX_FACTOR, MAX_MS, MAX_SIGMA, show};
        let in_range = |name: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "{name}: expected a number in [{}, {}], got {}",
                    show(lo),
                    show(hi),
                    show(v)
                ))
            }
        };
        let pos_ms = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= MAX_MS {
                Ok(())
            } else {
                Err(format!(
                    "{name}: expected a number in (0, {}], got {}",
                    show(MAX_MS),
                    show(v)
                ))
            }
        };
        // Log-ms locations: e^20 ms is about 5.6 days; below e^-50 is zero.
        let log_ms = |name: &str, v: f64| in_range(name, v, -50.0, 20.0);
        match *self {
            Dist::Constant { ms } => in_range("ms", ms, 0.0, MAX_MS),
            Dist::Uniform { low_ms, high_ms } => {
                in_range("low_ms", low_ms, 0.0, MAX_MS)?;
                in_range("high_ms", high_ms, 0.0, MAX_MS)?;
                if high_ms < low_ms {
                    return Err(format!(
                        "high_ms: expected >= low_ms ({low_ms}), got {high_ms}"
                    ));
                }
                Ok(())
            }
            Dist::Exponential { mean_ms } => pos_ms("mean_ms", mean_ms),
            Dist::Lognormal {
                mu,
                sigma,
                mu_per_output_token,
            } => {
                log_ms("mu", mu)?;
                in_range("sigma", sigma, 0.0, MAX_SIGMA)?;
                // The seed's models use 0.001; draws past 10^12 ms are capped.
                in_range("mu_per_output_token", mu_per_output_token, -0.1, 0.1)
            }
            Dist::Gamma { shape, scale_ms } => {
                if !(shape.is_finite() && shape > 0.0 && shape <= MAX_FACTOR) {
                    return Err(format!(
                        "shape: expected a number in (0, {MAX_FACTOR}], got {shape}"
                    ));
                }
                pos_ms("scale_ms", scale_ms)?;
                if shape * scale_ms > MAX_MS {
                    return Err(format!(
                        "scale_ms: the mean shape x scale_ms = {:e} ms is past {MAX_MS:e} ms",
                        shape * scale_ms
                    ));
                }
                Ok(())
            }
            Dist::Streaming {
                ttft_mu,
                ttft_sigma,
                ttft_ms_per_input_token,
                tpot_mu,
                tpot_sigma,
            } => {
                log_ms("ttft_mu", ttft_mu)?;
                log_ms("tpot_mu", tpot_mu)?;
                in_range("ttft_sigma", ttft_sigma, 0.0, MAX_SIGMA)?;
                in_range("tpot_sigma", tpot_sigma, 0.0, MAX_SIGMA)?;
                in_range("ttft_ms_per_input_token", ttft_ms_per_input_token, 0.0, 1e3)
            }
        }
    }

    /// Whether it models streaming (a time to first token).
    pub fn is_streaming(&self) -> bool {
        matches!(self, Dist::Streaming { .. })
    }

    /// The mean in ms for a call with `input_tokens` and `output_tokens`
    /// (before tails).
    pub fn mean_ms(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        match *self {
            Dist::Constant { ms } => ms,
            Dist::Uniform { low_ms, high_ms } => (low_ms + high_ms) / 2.0,
            Dist::Exponential { mean_ms } => mean_ms,
            Dist::Lognormal {
                mu,
                sigma,
                mu_per_output_token,
            } => (mu + mu_per_output_token * output_tokens as f64 + sigma * sigma / 2.0).exp(),
            Dist::Gamma { shape, scale_ms } => shape * scale_ms,
            Dist::Streaming {
                ttft_mu,
                ttft_sigma,
                ttft_ms_per_input_token,
                tpot_mu,
                tpot_sigma,
            } => {
                (ttft_mu + ttft_sigma * ttft_sigma / 2.0).exp()
                    + ttft_ms_per_input_token * input_tokens as f64
                    + output_tokens.saturating_sub(1) as f64
                        * (tpot_mu + tpot_sigma * tpot_sigma / 2.0).exp()
            }
        }
    }

    /// Builds the sampler. Call [`Dist::check`] first; invalid parameters
    /// here are a programming error.
    pub fn sampler(&self) -> Sampler {
        match *self {
            Dist::Constant { ms } => Sampler::Constant(ms),
            Dist::Uniform { low_ms, high_ms } => Sampler::Uniform(low_ms, high_ms),
            Dist::Exponential { mean_ms } => {
                Sampler::Exponential(Exp::new(1.0 / mean_ms).expect("checked rate"))
            }
            Dist::Lognormal {
                mu,
                sigma,
                mu_per_output_token,
            } => Sampler::Lognormal {
                per_token: mu_per_output_token,
                base: LogNormal::new(mu, sigma).expect("checked lognormal"),
            },
            Dist::Gamma { shape, scale_ms } => {
                Sampler::Gamma(Gamma::new(shape, scale_ms).expect("checked gamma"))
            }
            Dist::Streaming {
                ttft_mu,
                ttft_sigma,
                ttft_ms_per_input_token,
                tpot_mu,
                tpot_sigma,
            } => Sampler::Streaming {
                ttft: LogNormal::new(ttft_mu, ttft_sigma).expect("checked lognormal"),
                per_input_token: ttft_ms_per_input_token,
                tpot: LogNormal::new(tpot_mu, tpot_sigma).expect("checked lognormal"),
            },
        }
    }
}

impl Sampler {
    /// One draw in ms for a call with `input_tokens` and `output_tokens`.
    #[inline]
    pub fn sample(&self, rng: &mut SimRng, input_tokens: u32, output_tokens: u32) -> f64 {
        self.sample_split(rng, input_tokens, output_tokens).0
    }

    /// One draw in ms, and for a streaming model its time to first token.
    #[inline]
    pub fn sample_split(
        &self,
        rng: &mut SimRng,
        input_tokens: u32,
        output_tokens: u32,
    ) -> (f64, Option<f64>) {
        let ms = match self {
            Sampler::Constant(ms) => *ms,
            Sampler::Uniform(lo, hi) => lo + (hi - lo) * unit(rng),
            Sampler::Exponential(e) => e.sample(rng),
            Sampler::Lognormal { per_token, base } => {
                if *per_token == 0.0 {
                    base.sample(rng)
                } else {
                    // exp(mu + shift + sigma Z) = exp(shift) * LogNormal(mu, sigma)
                    base.sample(rng) * (per_token * output_tokens as f64).exp()
                }
            }
            Sampler::Gamma(g) => g.sample(rng),
            Sampler::Streaming {
                ttft,
                per_input_token,
                tpot,
            } => {
                let first = ttft.sample(rng) + per_input_token * input_tokens as f64;
                let per_token = tpot.sample(rng);
                let total = first + output_tokens.saturating_sub(1) as f64 * per_token;
                return (total, Some(first));
            }
        };
        (ms, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, keyed};

    fn sample_mean(d: &Dist, tokens: u32, n: usize) -> f64 {
        let s = d.sampler();
        let mut r = keyed(11, Stream::Prior, [0; 4]);
        (0..n).map(|_| s.sample(&mut r, 700, tokens)).sum::<f64>() / n as f64
    }

    fn dist_of(variant: u8, p: [f64; 5]) -> Dist {
        match variant {
            0 => Dist::Constant { ms: p[0] },
            1 => Dist::Uniform {
                low_ms: p[0],
                high_ms: p[1],
            },
            2 => Dist::Exponential { mean_ms: p[0] },
            3 => Dist::Lognormal {
                mu: p[0],
                sigma: p[1],
                mu_per_output_token: p[2],
            },
            4 => Dist::Gamma {
                shape: p[0],
                scale_ms: p[1],
            },
            _ => Dist::Streaming {
                ttft_mu: p[0],
                ttft_sigma: p[1],
                ttft_ms_per_input_token: p[2],
                tpot_mu: p[3],
                tpot_sigma: p[4],
            },
        }
    }

    proptest::proptest! {
        /// Without zeros or NaNs, equal bits mean equal distributions: the
        /// variant and every parameter take part.
        #[test]
        fn bits_are_equal_exactly_for_equal_dists(
            va in 0u8..6, vb in 0u8..6,
            pa in proptest::array::uniform5(proptest::sample::select(vec![1.0, 2.0, 3.5])),
            pb in proptest::array::uniform5(proptest::sample::select(vec![1.0, 2.0, 3.5])),
        ) {
            let (a, b) = (dist_of(va, pa), dist_of(vb, pb));
            proptest::prop_assert_eq!(a.bits() == b.bits(), a == b, "{:?} vs {:?}", a, b);
        }
    }

    #[test]
    fn sample_means_match_analytic_means() {
        let cases = [
            Dist::Constant { ms: 120.0 },
            Dist::Uniform {
                low_ms: 45.0,
                high_ms: 55.0,
            },
            Dist::Exponential { mean_ms: 1000.0 },
            Dist::Lognormal {
                mu: 6.0,
                sigma: 0.8,
                mu_per_output_token: 0.0,
            },
            Dist::Lognormal {
                mu: 6.0,
                sigma: 0.8,
                mu_per_output_token: 0.001,
            },
            Dist::Gamma {
                shape: 4.0,
                scale_ms: 25.0,
            },
            Dist::Streaming {
                ttft_mu: 5.0,
                ttft_sigma: 0.5,
                ttft_ms_per_input_token: 0.1,
                tpot_mu: 3.0,
                tpot_sigma: 0.3,
            },
        ];
        for d in &cases {
            d.check().unwrap();
            let m = sample_mean(d, 270, 200_000);
            let want = d.mean_ms(700, 270);
            assert!(
                (m - want).abs() / want < 0.02,
                "{d:?}: sample mean {m}, analytic {want}"
            );
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = Dist::Gamma {
            shape: 0.0,
            scale_ms: 1.0,
        }
        .check()
        .unwrap_err();
        assert!(e.starts_with("shape"), "{e}");
        let e = Dist::Uniform {
            low_ms: 5.0,
            high_ms: 1.0,
        }
        .check()
        .unwrap_err();
        assert!(e.starts_with("high_ms"), "{e}");
    }

    #[test]
    fn json_form_is_tagged_and_strict() {
        let d: Dist = serde_json::from_str(r#"{"dist":"gamma","shape":4,"scale_ms":25}"#).unwrap();
        assert_eq!(
            d,
            Dist::Gamma {
                shape: 4.0,
                scale_ms: 25.0
            }
        );
        assert!(
            serde_json::from_str::<Dist>(r#"{"dist":"gamma","shape":4,"scal_ms":25}"#).is_err()
        );
        assert!(serde_json::from_str::<Dist>(r#"{"dist":"weibull"}"#).is_err());
    }
}
