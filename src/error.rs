//! Errors that reach the user, each with its exit code.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success / pass |
//! | 1 | a verdict failed (`validate` off theory, ...) |
//! | 2 | bad input: config, flags, files; the message names file, field and expectation |
//! | 3 | setup error |
//! | 4 | execution error (e.g. an output could not be written) |

use std::path::PathBuf;

/// An error with a user-facing message and an exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input (exit 2).
    #[error("{0}")]
    Input(String),
    /// A file could not be read as input (exit 2).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An output could not be written (exit 4).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The environment is not ready: an endpoint unreachable, a server
    /// that cannot start (exit 3).
    #[error("{0}")]
    Setup(String),
    /// Anything else that went wrong while executing (exit 4).
    #[error("{0}")]
    Execution(String),
    /// A command stopped by a signal after saving what it could; exits
    /// with the shell's code for the signal (130 for Ctrl-C, 143 for
    /// SIGTERM).
    #[error("{message}")]
    Stopped {
        /// The exit code.
        code: u8,
        /// What was kept and what was not.
        message: String,
    },
    /// Standard output was closed by its reader (`| head`): the command
    /// stops, quietly, with exit 0.
    #[error("standard output closed")]
    StdoutClosed,
}

/// The exit code of a setup error (an endpoint unreachable, say).
pub const EXIT_SETUP: u8 = 3;

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_) | Error::Read { .. } => 2,
            Error::Setup(_) => EXIT_SETUP,
            Error::Write { .. } | Error::Execution(_) => 4,
            Error::Stopped { code, .. } => *code,
            Error::StdoutClosed => 0,
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A deserializer's field path in the dotted form `--set` accepts
/// (`providers.llm_provider.tiers.0.slots`), never `tiers[0]`.
pub fn dotted_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let parts: Vec<String> = path
        .iter()
        .map(|s| match s {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.clone(),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => "?".to_string(),
        })
        .collect();
    parts.join(".")
}

/// A deserializer error as (dotted field, plain message). A missing field
/// is named in the path itself (`tiers.0.slots`, not `tiers.0`).
pub fn field_and_message<E: std::fmt::Display>(
    e: &serde_path_to_error::Error<E>,
) -> (String, String) {
    let mut field = dotted_path(e.path());
    let msg = e.inner().to_string();
    if let Some(name) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(name);
    }
    (field, plain_serde_message(&msg))
}

/// Rewrites a deserializer message in the user's terms: JSON kinds instead
/// of Rust types (`f64` is "a number", `internally tagged enum Arrivals` is
/// "an object with a `pattern` field").
pub fn plain_serde_message(msg: &str) -> String {
    let mut out = msg.to_string();
    for (rust, plain) in [
        (
            "internally tagged enum Arrivals",
            "an object with a `pattern` field (all_at_once, poisson, uniform or burst)",
        ),
        (
            "internally tagged enum Dist",
            "an object with a `dist` field (constant, uniform, exponential, lognormal, gamma or streaming)",
        ),
    ] {
        out = out.replace(rust, plain);
    }
    // Remaining Rust type names: "struct Tier", "enum X", "tuple struct X".
    for kind in [
        "internally tagged enum ",
        "tuple struct ",
        "struct ",
        "enum ",
    ] {
        while let Some(at) = out.find(&format!("expected {kind}")) {
            let start = at + "expected ".len();
            let name_start = start + kind.len();
            let name_end = out[name_start..]
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .map_or(out.len(), |e| name_start + e);
            out.replace_range(start..name_end, "a JSON object");
        }
    }
    for (rust, plain) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u16", "expected a non-negative integer"),
        ("expected u8", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected a boolean", "expected true or false"),
        (
            "invalid type: null",
            "invalid value: null (or a non-finite number)",
        ),
    ] {
        out = out.replace(rust, plain);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_json_kinds_not_rust_types() {
        let m = plain_serde_message(
            "invalid type: string \"x\", expected internally tagged enum Arrivals",
        );
        assert!(m.contains("an object with a `pattern` field"), "{m}");
        assert!(!m.contains("Arrivals"), "{m}");
        let m = plain_serde_message("invalid type: string \"x\", expected struct Tier");
        assert_eq!(m, "invalid type: string \"x\", expected a JSON object");
        assert_eq!(
            plain_serde_message("invalid type: null, expected f64"),
            "invalid value: null (or a non-finite number), expected a number"
        );
        assert_eq!(
            plain_serde_message("invalid value: integer `-1`, expected u32"),
            "invalid value: integer `-1`, expected a non-negative integer"
        );
    }

    #[test]
    fn paths_are_dotted_with_indices() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            slots: u32,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct P {
            tiers: Vec<T>,
        }
        let v = serde_json::json!({"tiers": [{"slots": 1}, {"slots": "x"}]});
        let e = serde_path_to_error::deserialize::<_, P>(v).unwrap_err();
        assert_eq!(dotted_path(e.path()), "tiers.1.slots");
    }
}
