//! Hostile input: the bad-input corpus (`tests/corpus/bad_inputs.txt`),
//! the collect/report cases that need a real experiment, and a mutation
//! fuzzer over the shipped scenarios and experiment configs. Every run is
//! bounded in memory (`ulimit -v`) and time; none may panic, exit outside
//! the documented codes, or change a file it was given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;

const PKG: &str = env!("CARGO_MANIFEST_DIR");
/// Address space per run: well above what any valid input here needs,
/// far below what an unbounded allocation would take.
const MEMORY_KB: u64 = 3_000_000;
/// Wall time per run.
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// How a bounded run ended.
struct Bounded {
    output: Output,
    elapsed: Duration,
}

/// Runs the binary in `cwd` under `ulimit -v`, killing it past the time
/// limit (the test then fails).
fn run_bounded(cwd: &Path, args: &[String]) -> Bounded {
    let started = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_KB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_agentsched"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    // Drain the pipes on threads so a chatty child cannot block on them.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut b).ok();
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut b).ok();
        b
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > TIME_LIMIT {
            child.kill().ok();
            let s = child.wait().expect("wait");
            panic!(
                "agentsched {args:?} ran past {TIME_LIMIT:?} (killed: {s:?}); stderr so far: {}",
                String::from_utf8_lossy(&t_err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Bounded {
        output: Output {
            status,
            stdout: t_out.join().unwrap(),
            stderr: t_err.join().unwrap(),
        },
        elapsed: started.elapsed(),
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` (but `skip`) with its bytes.
fn snapshot(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.starts_with(skip) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                files.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

/// The documented exit codes (README "Exit codes").
fn documented(code: Option<i32>) -> bool {
    matches!(code, Some(0..=4))
}

/// Applies `set /pointer JSON`, `del /pointer` or `raw TEXT` edits to a
/// document; returns the file's text.
fn edit(base: &str, spec: &str) -> String {
    if let Some(raw) = spec.strip_prefix("raw ") {
        return raw.to_string();
    }
    let mut doc: Value = serde_json::from_str(base).unwrap();
    for op in spec.split(" ; ") {
        let (verb, rest) = op.trim().split_once(' ').expect("an edit");
        let (pointer, value) = match verb {
            "set" => {
                let (p, v) = rest.split_once(' ').expect("set /pointer VALUE");
                (
                    p,
                    Some(serde_json::from_str::<Value>(v).expect("VALUE is JSON")),
                )
            }
            "del" => (rest, None),
            other => panic!("unknown edit `{other}`"),
        };
        let (parent, key) = pointer.rsplit_once('/').expect("a /pointer");
        let target = doc.pointer_mut(parent).expect("the parent exists");
        match (target, value) {
            (Value::Object(m), Some(v)) => {
                m.insert(key.to_string(), v);
            }
            (Value::Object(m), None) => {
                m.remove(key);
            }
            (Value::Array(a), Some(v)) => a[key.parse::<usize>().unwrap()] = v,
            (Value::Array(a), None) => {
                a.remove(key.parse::<usize>().unwrap());
            }
            _ => panic!("{pointer}: not in an object or array"),
        }
    }
    serde_json::to_string_pretty(&doc).unwrap()
}

struct Case {
    line: usize,
    kind: String,
    exit: i32,
    needle: String,
    spec: String,
}

fn corpus() -> Vec<Case> {
    let text = std::fs::read_to_string(Path::new(PKG).join("tests/corpus/bad_inputs.txt"))
        .expect("corpus");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let parts: Vec<&str> = l.splitn(4, " | ").collect();
            assert_eq!(
                parts.len(),
                4,
                "line {}: KIND | EXIT | NEEDLE | SPEC",
                i + 1
            );
            Case {
                line: i + 1,
                kind: parts[0].trim().to_string(),
                exit: parts[1].trim().parse().expect("EXIT"),
                needle: parts[2].trim().to_string(),
                spec: parts[3].trim().to_string(),
            }
        })
        .collect()
}

/// Sets up one case in `tmp` and returns its command line.
fn prepare(c: &Case, tmp: &Path, out: &Path) -> Vec<String> {
    let pkg = Path::new(PKG);
    let write = |name: &str, text: &str| std::fs::write(tmp.join(name), text).unwrap();
    let words = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
    let out_s = out.display().to_string();
    match c.kind.as_str() {
        "flags" => {
            // Files the commands name, as the user's own copies.
            std::fs::create_dir_all(tmp.join("scenarios")).unwrap();
            std::fs::copy(pkg.join("Cargo.toml"), tmp.join("Cargo.toml")).unwrap();
            std::fs::copy(
                pkg.join("scenarios/mmc.json"),
                tmp.join("scenarios/mmc.json"),
            )
            .unwrap();
            words(&c.spec.replace("{out}", &out_s))
        }
        "scenario" => {
            let base = std::fs::read_to_string(pkg.join("scenarios/research_agent.json")).unwrap();
            write("s.json", &edit(&base, &c.spec));
            words(&format!("simulate --scenario s.json --out {out_s}"))
        }
        "config" => {
            let base = std::fs::read_to_string(pkg.join("scenarios/default.json")).unwrap();
            write("c.json", &edit(&base, &c.spec));
            words(&format!(
                "sweep --config c.json --dry-run --out-root {out_s}"
            ))
        }
        "constants" => {
            write("c.json", &c.spec);
            words(&format!("simulate --constants c.json --out {out_s}"))
        }
        "candidate" => {
            write("c.json", &c.spec);
            words(&format!(
                "eval --candidate c.json --report {out_s}/r.json --n-seeds 4"
            ))
        }
        "endpoints" => {
            write("e.json", &c.spec);
            words(&format!(
                "live run --endpoints e.json --workflows 1 --out {out_s}"
            ))
        }
        "runs_csv" => {
            write("r.csv", &c.spec.replace("\\n", "\n"));
            words(&format!(
                "report --exp-dir . --runs-csv r.csv --out-dir {out_s}"
            ))
        }
        other => panic!("line {}: unknown kind `{other}`", c.line),
    }
}

fn check_case(c: &Case) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let args = prepare(c, tmp.path(), &out);
    let before = snapshot(tmp.path(), &out);
    let r = run_bounded(tmp.path(), &args);
    let err = stderr(&r.output);
    let mut problems = Vec::new();
    if r.output.status.code() != Some(c.exit) {
        problems.push(format!(
            "exit {:?}, expected {}",
            r.output.status.code(),
            c.exit
        ));
    }
    if !err.contains(&c.needle) {
        problems.push(format!("stderr does not name `{}`", c.needle));
    }
    if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
        problems.push("panicked".into());
    }
    if snapshot(tmp.path(), &out) != before {
        problems.push("an input file changed".into());
    }
    if c.exit != 0 && out.join("summary.csv").exists() {
        problems.push("a failing run wrote summary.csv".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "line {} `{}`: {} ({:.1} s)\n  stderr: {}",
            c.line,
            c.spec,
            problems.join("; "),
            r.elapsed.as_secs_f64(),
            err.trim()
        ))
    }
}

#[test]
fn every_corpus_case_fails_cleanly_naming_the_field() {
    let cases = corpus();
    assert!(cases.len() >= 150, "the corpus has {} cases", cases.len());
    let kinds: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds.len(), 7, "every input kind is covered: {kinds:?}");
    // Two workers: the machine has two cores.
    let failures: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<&[Case]> = cases.chunks(cases.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|c| check_case(c).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn collect_and_report_survive_foreign_and_empty_run_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.json");
    std::fs::write(
        &cfg,
        r#"{"name": "x", "out_root": "runs", "common_args": {"workflows": 2, "pdfs": 1, "iters": 1, "subqueries": 1},
            "matrix": {"policy": ["fifo_cheapest", "dag_cheapest", "full"]}, "jobs": 1}"#,
    )
    .unwrap();
    let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let r = run_bounded(tmp.path(), &args("sweep --config c.json --quiet"));
    assert_eq!(r.output.status.code(), Some(0), "{}", stderr(&r.output));
    let exp = tmp.path().join("runs/x");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(exp.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 3);
    // A tiers.csv with foreign columns, an empty summary.csv, one intact run.
    std::fs::write(dirs[0].join("out/tiers.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(dirs[1].join("out/summary.csv"), "").unwrap();
    let r = run_bounded(tmp.path(), &args("collect --exp-dir runs/x"));
    let err = stderr(&r.output);
    assert_eq!(r.output.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        String::from_utf8_lossy(&r.output.stdout).contains("3 runs (2 failed)"),
        "{}",
        String::from_utf8_lossy(&r.output.stdout)
    );
    assert!(
        err.contains("out/tiers.csv row 1 has no `provider`"),
        "{err}"
    );
    assert!(err.contains("out/summary.csv"), "{err}");
    let runs_csv = std::fs::read_to_string(exp.join("aggregate/runs.csv")).unwrap();
    let mut rd = csv::Reader::from_reader(runs_csv.as_bytes());
    let head = rd.headers().unwrap().clone();
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    let with_error = rows
        .iter()
        .filter(|r| !r[col("collect_error")].is_empty())
        .count();
    assert_eq!(with_error, 2, "{runs_csv}");
    let measured = rows
        .iter()
        .filter(|r| !r[col("makespan_p95_ms")].is_empty())
        .count();
    assert!(
        measured >= 1,
        "the intact run keeps its metrics: {runs_csv}"
    );
    // The report is written from the one intact run.
    let r = run_bounded(tmp.path(), &args("report --exp-dir runs/x"));
    assert_eq!(r.output.status.code(), Some(0), "{}", stderr(&r.output));
    // A summary.csv with foreign columns only, in every run: report refuses.
    for d in &dirs {
        std::fs::write(d.join("out/summary.csv"), "x,y\n1,2\n").unwrap();
    }
    let r = run_bounded(tmp.path(), &args("collect --exp-dir runs/x"));
    assert_eq!(r.output.status.code(), Some(0), "{}", stderr(&r.output));
    assert!(stderr(&r.output).contains("not this tool's summary (no `"));
    let r = run_bounded(tmp.path(), &args("report --exp-dir runs/x"));
    assert_eq!(r.output.status.code(), Some(2), "{}", stderr(&r.output));
    assert!(
        stderr(&r.output).contains("none of its 3 runs succeeded"),
        "{}",
        stderr(&r.output)
    );
}
