//! # bus-core: the contract every event-bus backend implements
//!
//! Layout:
//! - [`envelope`]: the protobuf [`EventEnvelope`] and typed payload helpers.
//! - [`subject`]: the subject layout `<prefix>.events.<aggregate>.<EventType>`,
//!   token validation and NATS-style [`Filter`]s.
//! - [`bus`]: the [`Bus`] trait and its handles ([`Subscription`], [`Consumer`],
//!   [`Delivery`], [`Replay`]).
//! - [`aggregate`]: the event-store side: [`ExpectedVersion`], append
//!   receipts, loaded histories, [`Snapshot`]s and aggregate keys.
//! - [`settings`]: stream and consumer settings shared by all backends.
//! - [`config`]: the `[bus]` configuration file and environment overrides.
//! - [`error`]: [`BusError`], the one error enum callers match on.
//! - `testkit` (feature `testkit`): the contract suite every backend runs.
//!
//! This crate knows no backend and no wire protocol.

pub mod aggregate;
pub mod bus;
pub mod config;
pub mod envelope;
pub mod error;
pub mod settings;
pub mod subject;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use aggregate::{
    AggregateHistory, AppendReceipt, ExpectedVersion, MAX_APPEND_EVENTS, Snapshot, validate_append,
};
pub use bus::{
    Acker, Bus, Consumer, ConsumerBackend, ConsumerConfig, ConsumerInfo, DeadLetter, Delivery,
    LiveEvent, Receipt, RedriveReport, RedriveSelection, Replay, StartPosition, StoredEvent,
    StreamInfo, Subscription,
};
pub use config::{Backend, BusConfig, ConfigError};
pub use envelope::{EventBatch, EventEnvelope, validate_batch};
pub use error::{BusError, NameKind, Result};
pub use settings::{ConsumerDefaults, Discard, Storage, StreamSettings};
pub use subject::{Filter, SubjectLayout};
