//! Sweep throughput: the seed's default matrix (96 runs) in-process, with
//! every output file written and made durable, on 1 and 2 worker threads
//! -> runs per second.

use std::time::Duration;

use agentsched::sweep::{ExperimentConfig, SweepOptions, run_sweep};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let text = include_str!("../scenarios/default.json");
    let cfg =
        ExperimentConfig::from_value(serde_json::from_str(text).unwrap(), "default.json", None)
            .unwrap();
    let mut g = c.benchmark_group("sweep");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(96));
    // Every iteration writes a fresh experiment under one parent directory
    // that is removed only after measuring: deleting thousands of files
    // between iterations would slow the next iteration's file creation
    // (ext4 avoids reusing just-freed inodes), which no real sweep pays.
    let parent = tempfile::tempdir().unwrap();
    let mut n = 0usize;
    for jobs in [1usize, 2] {
        g.bench_function(format!("default_matrix_96_runs/jobs{jobs}"), |b| {
            b.iter(|| {
                n += 1;
                let opts = SweepOptions {
                    out_root: Some(parent.path().join(format!("i{n}"))),
                    jobs: Some(jobs),
                    quiet: true,
                    ..Default::default()
                };
                let o = run_sweep(&cfg, &opts).unwrap();
                assert_eq!(o.failed, 0);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
