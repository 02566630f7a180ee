//! `agentsched bench`: the engine's benchmark suite and its eval report.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::bench::{self, BenchOptions, ResultsFile, Suite, eval, paired};
use crate::error::{Error, Result};

/// Flags of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `full`: every benchmark, 7 repetitions; `quick`: 3 repetitions and no traced run (under a minute).
    #[arg(long, value_enum, default_value = "full")]
    pub suite: Suite,
    /// Timed repetitions per benchmark, after one warm-up (default: the suite's).
    #[arg(allow_negative_numbers = true, long, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub reps: Option<u64>,
    /// Run only the benchmarks whose name contains this text (repeatable); a full name runs that benchmark alone.
    #[arg(long)]
    pub only: Vec<String>,
    /// Directory of the `results_<unix time>.json` files.
    #[arg(long, alias = "results_dir", default_value = ".agentsched/bench")]
    pub results_dir: PathBuf,
    /// Compare with the newest earlier results file and write the JSON eval report here; exit 1 when it is not acceptable.
    #[arg(long, alias = "eval_report")]
    pub eval_report: Option<PathBuf>,
    /// Compare with this results file instead of the newest earlier one.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Time this other build of agentsched alternately with this one, benchmark by benchmark, and compare with it (both results files are written).
    #[arg(
        long,
        alias = "baseline_bin",
        value_name = "PATH",
        conflicts_with = "baseline"
    )]
    pub baseline_bin: Option<PathBuf>,
    /// List the suite's benchmarks and exit.
    #[arg(long)]
    pub list: bool,
    /// No progress lines on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

fn fmt_rate(per_s: Option<f64>, unit: &str) -> String {
    match per_s {
        Some(r) if r >= 1e6 => format!("{:.2}M {unit}/s", r / 1e6),
        Some(r) if r >= 1e3 => format!("{:.1}k {unit}/s", r / 1e3),
        Some(r) => format!("{r:.2} {unit}/s"),
        None => "-".into(),
    }
}

fn results_table(r: &ResultsFile) -> String {
    let mut s = format!(
        "{:<40} {:>10} {:>10} {:>8} {:>22}  digest\n",
        "benchmark", "min (s)", "median (s)", "spread", "throughput"
    );
    for b in &r.benchmarks {
        s.push_str(&format!(
            "{:<40} {:>10.4} {:>10.4} {:>7.1}% {:>22}  {}\n",
            b.name,
            b.time_s.unwrap_or(f64::NAN),
            b.median_s.unwrap_or(f64::NAN),
            100.0 * b.spread.unwrap_or(f64::NAN),
            fmt_rate(b.per_s, &b.unit),
            b.output_digest
                .as_deref()
                .map_or("-", |d| &d[..12.min(d.len())]),
        ));
    }
    let num = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.3}"));
    for q in &r.ratios {
        // Each repetition's own ratio, beside the minimum times' verdict.
        let paired = q.paired.as_ref().map_or(String::new(), |p| {
            eval::median_text(
                "per repetition: median",
                p.median,
                (p.low, p.high),
                p.repetitions,
                num,
            )
        });
        s.push_str(&format!(
            "{}: {} (goal {}{}){paired}\n",
            q.name,
            num(q.value),
            q.target,
            match q.met {
                Some(true) => ", met",
                Some(false) => ", NOT met",
                None => "",
            }
        ));
    }
    s
}

pub(crate) fn run(a: BenchArgs) -> Result<u8> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.list {
        for s in bench::suite(cores)? {
            let suites = if s.quick { "full, quick" } else { "full" };
            outln!("{:<40} {} {} ({suites})", s.name, s.items, s.unit);
        }
        return Ok(0);
    }
    if let Some(bin) = &a.baseline_bin {
        return run_paired(&a, bin, cores);
    }
    // The baseline is read before an expensive run, so a bad one fails fast.
    let baseline_path = match &a.baseline {
        Some(p) => Some(p.clone()),
        None => bench::results_files(&a.results_dir)?.pop(),
    };
    let baseline = baseline_path
        .as_ref()
        .map(|p| bench::read_results(p).map(|r| (p.clone(), r)))
        .transpose()?;
    check_report_path(&a, baseline_path.as_deref())?;
    let opts = BenchOptions {
        suite: a.suite,
        repetitions: a.reps.map(|r| r as usize),
        only: a.only.clone(),
        progress: !a.quiet,
    };
    let results = bench::run_suite(&opts)?;
    let written = bench::write_results(&a.results_dir, &results)?;
    out!("{}", results_table(&results));
    outln!("results: {}", written.display());
    let Some((bpath, base)) = baseline else {
        outln!(
            "first run: no earlier results in {}, so no eval report{}",
            a.results_dir.display(),
            if a.eval_report.is_some() {
                " was written"
            } else {
                ""
            }
        );
        return Ok(0);
    };
    if (base.suite, base.repetitions) != (results.suite, results.repetitions) {
        eprintln!(
            "warning: {} is a `{}` suite run of {} repetitions, this is a `{}` suite run of {}: the minimum of fewer repetitions is noisier; compare like with like (--baseline FILE)",
            bpath.display(),
            base.suite.name(),
            base.repetitions,
            results.suite.name(),
            results.repetitions
        );
    }
    report(&a, &bpath, &base, &written, &results, false)
}

/// The eval report must not take a name the results history uses, nor
/// replace the baseline, and must be writable: checked (and its directory
/// made) before the run, which may take minutes, not after it.
fn check_report_path(a: &BenchArgs, baseline: Option<&Path>) -> Result<()> {
    let Some(report) = &a.eval_report else {
        return Ok(());
    };
    if report.is_dir() {
        return Err(Error::Input(format!(
            "--eval-report {}: is a directory; expected a file name, e.g. {}",
            report.display(),
            report.join("eval.json").display()
        )));
    }
    if let Some(dir) = report.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        return Err(Error::Input(format!(
            "--eval-report {}: cannot make its directory {}: {e}",
            report.display(),
            dir.display()
        )));
    }
    let name = report.file_name().map(|n| n.to_string_lossy().to_string());
    if let Some(name) = name.filter(|n| bench::results_key(n).is_some())
        && crate::output::same_file(report, &a.results_dir.join(&name))
    {
        return Err(Error::Input(format!(
            "--eval-report {}: that name is a results file of --results-dir; choose another name",
            report.display()
        )));
    }
    if let Some(b) = baseline
        && crate::output::same_file(report, b)
    {
        return Err(Error::Input(format!(
            "--eval-report {}: is the baseline results file; it would be overwritten",
            report.display()
        )));
    }
    Ok(())
}

/// `--baseline-bin`: both binaries timed alternately, both results files
/// written (the baseline's first, so this binary's is the newest), then
/// compared.
fn run_paired(a: &BenchArgs, bin: &Path, cores: usize) -> Result<u8> {
    check_report_path(a, None)?;
    let current_bin = std::env::current_exe().map_err(|e| {
        Error::Setup(format!(
            "cannot find this executable to time it beside --baseline-bin: {e}"
        ))
    })?;
    let (specs, not_selected) = bench::selection(cores, a.suite, &a.only)?;
    let names: Vec<String> = specs.into_iter().map(|s| s.name).collect();
    let p = paired::run_paired(
        &paired::PairedOptions {
            baseline_bin: bin.to_path_buf(),
            current_bin,
            suite: a.suite,
            repetitions: a.reps.map(|r| r as usize),
            progress: !a.quiet,
            not_selected,
        },
        &names,
    )?;
    let bpath = bench::write_results(&a.results_dir, &p.baseline)?;
    let written = bench::write_results(&a.results_dir, &p.current)?;
    outln!("baseline {}:", bin.display());
    out!("{}", results_table(&p.baseline));
    outln!("this binary:");
    out!("{}", results_table(&p.current));
    outln!(
        "results: {} (baseline), {}",
        bpath.display(),
        written.display()
    );
    report(a, &bpath, &p.baseline, &written, &p.current, true)
}

/// Prints the comparison (with each repetition's own gain when the two
/// were timed alternately); with --eval-report, writes it and exits 1 when
/// it is not acceptable.
fn report(
    a: &BenchArgs,
    bpath: &Path,
    base: &ResultsFile,
    written: &Path,
    results: &ResultsFile,
    paired: bool,
) -> Result<u8> {
    let mut report = eval::evaluate(
        base,
        &bpath.display().to_string(),
        results,
        &written.display().to_string(),
    );
    if paired {
        eval::add_paired(&mut report, base, results);
    }
    out!("{}", eval::report_text(&report));
    match &a.eval_report {
        Some(path) => {
            let text = serde_json::to_string_pretty(&report).expect("eval json") + "\n";
            crate::output::atomic_write(path, text.as_bytes())?;
            outln!("eval report: {}", path.display());
            Ok(if report.is_acceptable { 0 } else { 1 })
        }
        None => Ok(0),
    }
}
