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
    /// Anything else that went wrong while executing (exit 4).
    #[error("{0}")]
    Execution(String),
    /// Standard output was closed by its reader (`| head`): the command
    /// stops, quietly, with exit 0.
    #[error("standard output closed")]
    StdoutClosed,
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_) | Error::Read { .. } => 2,
            Error::Write { .. } | Error::Execution(_) => 4,
            Error::StdoutClosed => 0,
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
