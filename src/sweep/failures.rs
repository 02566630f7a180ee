//! Why runs failed, said once per reason.
//!
//! A big sweep that fails usually fails for a handful of reasons (a value
//! the scenario check refuses, an endpoint that is down), each repeated
//! over many runs. The sweep's closing lines, `collect` and the report
//! group failed runs by exit code and message, most frequent first, and
//! name one run of each group to look at.

use std::collections::BTreeMap;

use crate::sweep::collect::succeeded;
use crate::sweep::row::Row;

/// The most characters of a message kept: a message is one line, but a
/// panic's can be long, and `runs.csv` repeats it in every failed row.
pub const MESSAGE_MAX_CHARS: usize = 500;

/// The reason a failed run gives in its `stderr.txt`: the last line that
/// starts with `error: ` (prefix removed), else the last non-empty line;
/// at most [`MESSAGE_MAX_CHARS`] characters. None for an empty file.
pub fn reason_in_stderr(stderr: &str) -> Option<String> {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines()
        .filter_map(|l| l.strip_prefix("error:"))
        .next_back()
        .map(str::trim_start)
        .or_else(|| lines().next_back())?;
    Some(shorten(line))
}

/// `message` cut to [`MESSAGE_MAX_CHARS`] characters, with `…` when cut.
pub fn shorten(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_MAX_CHARS) {
        None => message.to_string(),
        Some((at, _)) => format!("{}…", &message[..at]),
    }
}

/// Why a row of `runs.csv` failed: its `error`, else its `collect_error`;
/// None for a successful run.
pub fn message_of(r: &Row) -> Option<&str> {
    if succeeded(r) {
        return None;
    }
    let said = |k| r.get(k).filter(|m| !m.is_empty());
    Some(
        said("error")
            .or_else(|| said("collect_error"))
            .unwrap_or("no message (stderr.txt is empty)"),
    )
}

/// Failed runs grouped by (exit code, message).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// (exit code, message) -> (runs, the first run's id in the order added).
    groups: BTreeMap<(String, String), (usize, String)>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Counts a failed run. `exit_code` is as `runs.csv` writes it (empty
    /// when the run wrote none).
    pub fn add(&mut self, exit_code: &str, message: &str, run_id: &str) {
        self.groups
            .entry((exit_code.to_string(), message.to_string()))
            .or_insert_with(|| (0, run_id.to_string()))
            .0 += 1;
    }

    /// The failed rows of `runs.csv`, grouped.
    pub fn of_rows<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Tally {
        let mut t = Tally::new();
        for r in rows {
            t.add_row(r);
        }
        t
    }

    /// Counts a row of `runs.csv` if it failed.
    pub fn add_row(&mut self, r: &Row) {
        if let Some(msg) = message_of(r) {
            self.add(
                r.get("exit_code").unwrap_or(""),
                msg,
                r.get("run_id").unwrap_or(""),
            );
        }
    }

    /// Failed runs counted.
    pub fn runs(&self) -> usize {
        self.groups.values().map(|(n, _)| n).sum()
    }

    /// Distinct reasons.
    pub fn reasons(&self) -> usize {
        self.groups.len()
    }

    /// The groups, most runs first (ties by exit code, then message):
    /// (exit code, message, runs, an example run).
    pub fn groups(&self) -> Vec<(&str, &str, usize, &str)> {
        let mut g: Vec<_> = self
            .groups
            .iter()
            .map(|((code, msg), (n, run))| (code.as_str(), msg.as_str(), *n, run.as_str()))
            .collect();
        g.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1))));
        g
    }

    /// One line per reason, the `max` most frequent, then one saying how
    /// many reasons (and runs) are left out:
    /// `3 runs, exit 2: workload.pdfs: … (e.g. <run id>)`.
    pub fn lines(&self, max: usize) -> Vec<String> {
        let groups = self.groups();
        let mut out: Vec<String> = groups
            .iter()
            .take(max)
            .map(|(code, msg, n, run)| {
                // A run with exit code 0 failed in `collect` (unreadable outputs).
                let code = if code.is_empty() || *code == "0" {
                    String::new()
                } else {
                    format!(", exit {code}")
                };
                let runs = if *n == 1 { "run" } else { "runs" };
                format!("{n} {runs}{code}: {msg} (e.g. {run})")
            })
            .collect();
        if groups.len() > max {
            let rest: usize = groups[max..].iter().map(|g| g.2).sum();
            out.push(format!(
                "and {} more reasons ({rest} runs)",
                groups.len() - max
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_last_error_line() {
        assert_eq!(
            reason_in_stderr("error: workload.pdfs: expected an integer >= 1, got 0\n").as_deref(),
            Some("workload.pdfs: expected an integer >= 1, got 0")
        );
        assert_eq!(
            reason_in_stderr("warning: x\nerror: first\nnote\nerror:  second \n\n").as_deref(),
            Some("second")
        );
        // Without an `error:` line, the last line that says anything.
        assert_eq!(
            reason_in_stderr("thread panicked\n  at src/x.rs\n\n").as_deref(),
            Some("at src/x.rs")
        );
        assert_eq!(reason_in_stderr(" \n\n"), None);
        assert_eq!(reason_in_stderr(""), None);
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        let long = "é".repeat(MESSAGE_MAX_CHARS + 3);
        let cut = shorten(&long);
        assert_eq!(cut.chars().count(), MESSAGE_MAX_CHARS + 1);
        assert!(cut.ends_with("é…"));
        let fits = "é".repeat(MESSAGE_MAX_CHARS);
        assert_eq!(shorten(&fits), fits);
    }

    #[test]
    fn reasons_are_grouped_most_frequent_first() {
        let mut t = Tally::new();
        t.add("2", "workload.pdfs: expected an integer >= 1, got 0", "r1");
        t.add("4", "the simulator panicked: boom", "r2");
        t.add("2", "workload.pdfs: expected an integer >= 1, got 0", "r3");
        t.add("2", "another", "r4");
        t.add("0", "out/summary.csv has no data row", "r5");
        assert_eq!((t.runs(), t.reasons()), (5, 4));
        assert_eq!(
            t.lines(10),
            [
                "2 runs, exit 2: workload.pdfs: expected an integer >= 1, got 0 (e.g. r1)",
                "1 run: out/summary.csv has no data row (e.g. r5)",
                "1 run, exit 2: another (e.g. r4)",
                "1 run, exit 4: the simulator panicked: boom (e.g. r2)",
            ]
        );
        assert_eq!(t.lines(2)[2..], ["and 2 more reasons (2 runs)".to_string()]);
        assert!(Tally::new().lines(3).is_empty());
    }
}
