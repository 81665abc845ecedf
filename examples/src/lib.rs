//! # The poker example
//!
//! An event-sourced service on the bus:
//! - [`domain`]: `player` and `hand` aggregates; commands validate against
//!   state folded from the aggregate's own events and yield new events.
//! - [`service`]: the command side: decides each command on the state it
//!   last saw of the aggregate and appends the events expecting that
//!   version; on a version conflict it loads what it missed and retries, so
//!   any number of workers and processes can share aggregates.
//! - [`projector`]: read models fed by durable consumers, idempotent by
//!   per-aggregate sequence, and the same model rebuilt from a full replay.
//! - [`job`]: the main job the README runs: load from concurrent workers,
//!   stop and resume a projector, drain, and check the read model against
//!   a rebuild.

pub mod domain;
pub mod job;
pub mod projector;
pub mod service;

/// Generated protobuf types of the domain events.
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/poker.v1.rs"));
}
