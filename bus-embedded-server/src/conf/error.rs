//! What can go wrong reading a configuration, as enums callers can match:
//! [`ConfError`] for the file and its top-level options (syntax, includes,
//! variables, a key with a wrong value: always with file and line), and
//! [`BlockError`] for the `authorization {}` and `accounts {}` blocks (with
//! the line, and nats-server's wording where it has one).

use std::fmt;
use std::path::PathBuf;

use crate::config::ExportKind;
use crate::mapping::MappingError;

/// A position in a configuration file: displays as `file:line`, or
/// `line N` when the file is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Option<PathBuf>,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}", file.display(), self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// Everything that can go wrong reading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The text is not valid configuration syntax.
    #[error("{at}: {message}")]
    Syntax { at: Loc, message: String },
    /// `$name` is neither an earlier key nor an environment variable.
    #[error("{at}: variable reference for '{name}' can not be found")]
    UnknownVariable { at: Loc, name: String },
    /// The environment variable behind `$name` is not a valid value.
    #[error("{at}: variable reference for '{name}' could not be parsed: {message}")]
    BadVariable {
        at: Loc,
        name: String,
        message: String,
    },
    /// A file includes itself, directly or through other files.
    #[error("{at}: include cycle: '{}' is already being read", path.display())]
    IncludeCycle { at: Loc, path: PathBuf },
    /// An included file could not be read.
    #[error("{at}: error reading include file '{}': {source}", path.display())]
    Include {
        at: Loc,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration file itself could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A known key has a value of the wrong type or an invalid value.
    #[error("{at}: {}", key_message(key, message))]
    Invalid {
        at: Loc,
        key: String,
        message: String,
    },
    /// The configuration holds no keys at all (nats-server refuses these).
    #[error("{}: config has no values or is empty", display_opt(file))]
    Empty { file: Option<PathBuf> },
}

fn key_message(key: &str, message: &str) -> String {
    if key.is_empty() {
        message.to_string()
    } else {
        format!("{key}: {message}")
    }
}

fn display_opt(file: &Option<PathBuf>) -> String {
    match file {
        Some(f) => f.display().to_string(),
        None => "configuration".to_string(),
    }
}

/// What is wrong with an `authorization {}` or `accounts {}` block. The
/// texts follow nats-server's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// A value has the wrong type or is not valid; `key` is empty when the
    /// message names what is wrong itself.
    #[error("line {line}: {}", key_message(key, message))]
    Invalid {
        /// Line of the value.
        line: usize,
        /// The key (may be a path such as `allow_responses: max`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A key nats-server knows that this server cannot enforce: the start
    /// is refused rather than run with less protection than configured.
    #[error("line {line}: {context}{key} is not supported yet by this server; refusing to start")]
    Unsupported {
        /// Line of the key.
        line: usize,
        /// Where the key is (`users: `, `A: `, or empty at the top).
        context: String,
        /// The key as written.
        key: String,
    },
    /// A user name or nkey defined twice.
    #[error("{}Duplicate {kind} \"{name}\" detected", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Duplicate {
        /// Line of the second definition, when known.
        line: Option<usize>,
        /// `user` or `nkey`.
        kind: &'static str,
        /// The name or key.
        name: String,
    },
    /// Settings that cannot be combined.
    #[error("{0}")]
    Conflict(&'static str),
    /// An import names an account that is not defined.
    #[error("{account}: \"{exporter}\" account not defined for {kind} import")]
    UnknownAccount {
        /// The importing account.
        account: String,
        /// The account named as exporter.
        exporter: String,
        /// Stream or service.
        kind: ExportKind,
    },
    /// A subject mapping nats-server would not add (`to`: the destination
    /// when written as a plain string).
    #[error("line {line}: mappings: Error adding mapping for \"{subject}\"{} : {error}", to.as_ref().map(|t| format!(" to \"{t}\"")).unwrap_or_default())]
    Mapping {
        /// Line of the mapping.
        line: usize,
        /// The mapping's source subject.
        subject: String,
        /// The destination, when given as a plain string.
        to: Option<String>,
        /// What is wrong.
        error: MappingError,
    },
    /// An import that no export of the exporting account allows.
    #[error("{account}: Error adding {kind} import \"{subject}\": {kind} import not authorized")]
    ImportNotAuthorized {
        /// The importing account.
        account: String,
        /// The imported subject.
        subject: String,
        /// Stream or service.
        kind: ExportKind,
    },
}

impl BlockError {
    /// [`BlockError::Invalid`].
    pub fn invalid(line: usize, key: &str, message: impl Into<String>) -> BlockError {
        BlockError::Invalid {
            line,
            key: key.to_owned(),
            message: message.into(),
        }
    }
}
