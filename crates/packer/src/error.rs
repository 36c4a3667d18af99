//! The packer's one error type: every variant names the file and says what to do.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why packing stopped. Nothing was written to the output directory when this is returned.
#[derive(Debug)]
pub enum Error {
    /// An input file exists but is not what the crate needs (wrong format, arch, linkage).
    Invalid {
        /// The offending input file.
        file: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// An input file that must be there is not.
    Missing {
        /// The path that was looked for.
        file: PathBuf,
        /// What produces it.
        hint: String,
    },
    /// A `.crate` came out larger than crates.io accepts.
    TooLarge {
        /// The `.crate` file name.
        file: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// A template is malformed (unknown placeholder, unreadable, not UTF-8).
    Template {
        /// The template file.
        file: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The command line or options are unusable.
    Usage(String),
    /// Reading or writing a file failed.
    Io {
        /// The file being read or written.
        file: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    /// An [`Error::Invalid`] for `file`.
    pub fn invalid(file: &Path, problem: impl Into<String>) -> Self {
        Error::Invalid {
            file: file.to_path_buf(),
            problem: problem.into(),
        }
    }

    /// An [`Error::Io`] for `file`.
    pub fn io(file: &Path, source: io::Error) -> Self {
        Error::Io {
            file: file.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { file, problem } => write!(f, "{}: {problem}", file.display()),
            Error::Missing { file, hint } => write!(f, "{}: missing; {hint}", file.display()),
            Error::TooLarge { file, size, limit } => write!(
                f,
                "{file}: {size} bytes ({:.2} MiB) is over the crates.io limit of {limit} bytes \
                 ({:.0} MiB); shrink the kernel config or the binaries",
                *size as f64 / MIB,
                *limit as f64 / MIB
            ),
            Error::Template { file, problem } => {
                write!(f, "{}: bad template: {problem}", file.display())
            }
            Error::Usage(msg) => f.write_str(msg),
            Error::Io { file, source } => write!(f, "{}: {source}", file.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// The packer's result type.
pub type Result<T> = std::result::Result<T, Error>;
