//! The one error type every `Bus` operation returns, with kinds callers match on.

use std::time::Duration;

/// Result of every bus operation.
pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// What kind of name a [`BusError::InvalidName`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// The subject prefix (`angzarr` by default).
    SubjectPrefix,
    /// An aggregate type such as `player`.
    AggregateType,
    /// An event type such as `FundsDeposited`.
    EventType,
    /// A durable consumer name.
    ConsumerName,
    /// A stream name.
    StreamName,
}

impl std::fmt::Display for NameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameKind::SubjectPrefix => "subject prefix",
            NameKind::AggregateType => "aggregate type",
            NameKind::EventType => "event type",
            NameKind::ConsumerName => "consumer name",
            NameKind::StreamName => "stream name",
        })
    }
}

/// Every way a bus operation can fail. Match on the variant, not on the text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The backend cannot be reached or has gone away (connection refused,
    /// lost connection, server shutting down).
    #[error("bus unavailable: {0}")]
    Unavailable(String),

    /// The backend refused our credentials or permissions (wrong password,
    /// token or creds file; a subject the user may not use).
    #[error("not authorized: {0}")]
    Unauthorized(String),

    /// An operation did not complete in time.
    #[error("timed out{} while {operation}", waited(*after))]
    Timeout {
        /// What was being done, e.g. "waiting for the publish acknowledgement".
        operation: String,
        /// How long we waited; zero when the backend did not say (its own
        /// request timeout ran out).
        after: Duration,
    },

    /// A name that must be a single subject token is not one.
    #[error("invalid {kind} {token:?}: {reason}")]
    InvalidName {
        /// Which name was bad.
        kind: NameKind,
        /// The offending value, verbatim.
        token: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A subscription or consumer filter is malformed or outside the bus namespace.
    #[error("invalid filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The offending filter, verbatim.
        filter: String,
        /// Why it was rejected.
        reason: String,
    },

    /// An event envelope or argument is invalid (bad event id, empty aggregate id,
    /// a batch mixing aggregates, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The encoded event is larger than the bus accepts.
    #[error("payload too large: {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Encoded size of the rejected event.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },

    /// A stream limit with discard policy `new` refused the event.
    #[error("limit reached: {0}")]
    LimitReached(String),

    /// A named thing does not exist.
    #[error("{what} not found: {name}")]
    NotFound {
        /// "consumer", "stream", ...
        what: &'static str,
        /// Its name.
        name: String,
    },

    /// The request conflicts with existing state (for example a consumer that
    /// exists with a different filter).
    #[error("conflict: {0}")]
    Conflict(String),

    /// An append expected the aggregate at another version than it is:
    /// another writer appended first. Reload the aggregate and decide again.
    #[error(
        "version conflict on {aggregate_type} {aggregate_id:?}: expected version {expected}, \
         the aggregate is at version {actual}"
    )]
    VersionConflict {
        /// The aggregate type.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
        /// The version the append expected (0: no aggregate yet).
        expected: u64,
        /// The version the aggregate was at.
        actual: u64,
    },

    /// Bytes could not be decoded into an envelope or into the requested message type.
    #[error("decode error: {0}")]
    Decode(String),

    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The backend cannot do this in its current mode (e.g. durable consumers on
    /// core NATS without JetStream).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// The bus, subscription or consumer was closed.
    #[error("closed: {0}")]
    Closed(String),

    /// Any other backend failure, with its message.
    #[error("backend error: {0}")]
    Backend(String),
}

/// " after <d>" for a known wait, nothing for an unknown (zero) one, so a
/// timeout never reads "timed out after 0ns".
fn waited(after: Duration) -> String {
    if after.is_zero() {
        String::new()
    } else {
        format!(" after {after:?}")
    }
}

impl BusError {
    /// True for failures that may succeed when retried (unavailable, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(self, BusError::Unavailable(_) | BusError::Timeout { .. })
    }
}

impl From<prost::DecodeError> for BusError {
    fn from(e: prost::DecodeError) -> Self {
        BusError::Decode(e.to_string())
    }
}

/// A configuration problem, naming where it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {file}: {source}")]
    Io {
        /// The file.
        file: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: line {line}: invalid TOML: {message}")]
    Syntax {
        /// The file (or `<string>`).
        origin: String,
        /// 1-based line.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A key under `[bus]` that this version does not know.
    #[error("{origin}{}: unknown key `{key}`{}", line_suffix(*.line), expected_suffix(.expected))]
    UnknownKey {
        /// The file.
        origin: String,
        /// Full dotted key, e.g. `bus.nats.jetsream`.
        key: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// The keys allowed there.
        expected: String,
    },
    /// A key has a value of the wrong type or out of range.
    #[error("{origin}{}: key `{key}`: {message}", line_suffix(*.line))]
    InvalidValue {
        /// The file, or `environment` for overrides.
        origin: String,
        /// Full dotted key, e.g. `bus.nats.url`.
        key: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The file has no `[bus]` table.
    #[error("{origin}: no [bus] table")]
    MissingBusTable {
        /// The file.
        origin: String,
    },
    /// An environment override is invalid.
    #[error("environment variable {var}={value:?}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(": line {l}")).unwrap_or_default()
}

fn expected_suffix(expected: &str) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!(" (expected one of {expected})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_names_its_wait_only_when_it_is_known() {
        let known = BusError::Timeout {
            operation: "waiting for the acknowledgement".into(),
            after: Duration::from_secs(3),
        };
        assert_eq!(
            known.to_string(),
            "timed out after 3s while waiting for the acknowledgement"
        );
        let unknown = BusError::Timeout {
            operation: "creating stream s".into(),
            after: Duration::ZERO,
        };
        assert_eq!(unknown.to_string(), "timed out while creating stream s");
    }
}
