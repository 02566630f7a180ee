//! `agentsched scenario show|mmc`.

use clap::{Args, Subcommand};

use crate::cli::ScenarioArgs;
use crate::error::{Error, Result};
use crate::scenario::Scenario;

/// Scenario subcommands.
#[derive(Subcommand, Debug)]
pub enum ScenarioCmd {
    /// Print the effective scenario JSON (file or default, then flags and --set).
    Show(ScenarioArgs),
    /// Print an M/M/c scenario: single calls, Poisson arrivals, one tier with C slots, exponential service.
    Mmc(MmcArgs),
}

/// `scenario mmc` flags.
#[derive(Args, Debug)]
pub struct MmcArgs {
    /// Servers (slots of the single tier).
    #[arg(allow_negative_numbers = true, long)]
    pub servers: u32,
    /// Arrivals per second.
    #[arg(allow_hyphen_values = true, long = "arrival-rate", alias = "arrival_rate", value_parser = crate::cli::args::finite_f64)]
    pub arrival_rate: f64,
    /// Services per second per server.
    #[arg(allow_hyphen_values = true, long = "service-rate", alias = "service_rate", value_parser = crate::cli::args::finite_f64)]
    pub service_rate: f64,
    /// Customers (workflows).
    #[arg(allow_negative_numbers = true, long)]
    pub workflows: u64,
    /// Seed.
    #[arg(allow_negative_numbers = true, long, default_value_t = 1)]
    pub seed: u64,
}

pub(crate) fn run(c: ScenarioCmd) -> Result<u8> {
    let s = match c {
        ScenarioCmd::Show(a) => a.resolve()?,
        ScenarioCmd::Mmc(m) => {
            if !(m.service_rate.is_finite() && m.service_rate > 0.0) {
                return Err(Error::Input(format!(
                    "--service-rate: expected a number > 0, got {}",
                    m.service_rate
                )));
            }
            let s = Scenario::mmc(
                m.servers,
                m.arrival_rate,
                m.service_rate,
                m.workflows,
                m.seed,
            );
            s.validate()
                .map_err(|e| Error::Input(format!("scenario mmc: {e}")))?;
            // On stderr, so that `scenario mmc ... > mmc.json` stays a scenario.
            eprintln!("{}", mmc_theory(m.servers, m.arrival_rate, m.service_rate));
            s
        }
    };
    out!("{}", s.to_pretty_json());
    Ok(0)
}

/// What queueing theory expects of the M/M/c scenario printed, so that a
/// simulation of it can be read against the steady state (or told there is
/// none).
fn mmc_theory(servers: u32, lambda: f64, mu: f64) -> String {
    let rho = lambda / (f64::from(servers) * mu);
    if rho >= 1.0 {
        return format!(
            "warning: M/M/{servers} at utilisation {rho:.3} (arrival rate / (servers x service rate)) has no \
             steady state: the queue grows with every arrival, so waits grow with --workflows"
        );
    }
    let p_wait = crate::validate::erlang_c(servers, lambda / mu);
    let wq_ms = 1000.0 * crate::validate::mmc_wq(servers, lambda, mu);
    format!(
        "M/M/{servers} at utilisation {rho:.3}: in steady state (Erlang C) an arrival waits with probability \
         {p_wait:.4}, the mean queue wait is {wq_ms:.3} ms and the mean latency {:.3} ms; a simulation's \
         queue_wait_mean_ms and makespan_mean_ms approach them as --workflows grows",
        wq_ms + 1000.0 / mu
    )
}

#[cfg(test)]
mod tests {
    use super::mmc_theory;

    #[test]
    fn mmc_theory_gives_erlang_c_by_hand_and_warns_without_a_steady_state() {
        // M/M/1 at lambda 1, mu 2: P(wait) = rho = 0.5, Wq = rho / (mu - lambda) = 0.5 s,
        // latency Wq + 1/mu = 1 s.
        let m1 = mmc_theory(1, 1.0, 2.0);
        assert!(m1.starts_with("M/M/1 at utilisation 0.500:"), "{m1}");
        assert!(m1.contains("probability 0.5000,"), "{m1}");
        assert!(m1.contains("mean queue wait is 500.000 ms"), "{m1}");
        assert!(m1.contains("mean latency 1000.000 ms"), "{m1}");
        // M/M/2 at a = 1 (rho 0.5): C = (a^2/2 / (1 - rho)) / (1 + a + a^2/2/(1 - rho)) = 1/3;
        // Wq = C / (c mu - lambda) = (1/3) / (2 - 1) s.
        let m2 = mmc_theory(2, 1.0, 1.0);
        assert!(m2.contains("probability 0.3333,"), "{m2}");
        assert!(m2.contains("mean queue wait is 333.333 ms"), "{m2}");
        for (c, lambda) in [(2, 2.0), (2, 3.0)] {
            let w = mmc_theory(c, lambda, 1.0);
            assert!(w.starts_with("warning: M/M/2 at utilisation"), "{w}");
            assert!(w.contains("no steady state"), "{w}");
        }
    }
}
