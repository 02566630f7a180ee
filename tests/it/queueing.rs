//! The simulator against queueing theory, with sizes and tolerances that
//! cannot flake: every check sits at >= 5 standard deviations of the
//! measured seed-to-seed spread (see `agentsched::validate`).

use agentsched::validate;

#[test]
fn erlang_c_and_friends_agree_across_seeds() {
    for seed in 1..=4 {
        for c in validate::run_all(200_000, seed) {
            assert!(c.pass, "seed {seed}: {c:?}");
        }
    }
}

#[test]
fn averaged_over_seeds_the_mmc_wait_is_unbiased() {
    // The standard deviation of one seed's relative error at 200k customers
    // is 3.38% * sqrt(2) = 4.8%; the mean of 8 seeds has 1.7%, so 5 sigma is 8.5%.
    let errs: Vec<f64> = (10..18)
        .map(|seed| {
            let c = &validate::run_all(200_000, seed)[2];
            assert_eq!(c.case, "M/M/8 rho=0.9");
            (c.simulated - c.theory) / c.theory
        })
        .collect();
    let mean = errs.iter().sum::<f64>() / errs.len() as f64;
    assert!(mean.abs() < 0.085, "mean relative error {mean}");
}
