//! # The poker example
//!
//! An event-sourced service on the bus:
//! - [`domain`]: `player` and `hand` aggregates; commands validate against
//!   state folded from the aggregate's own events and yield new events.
//! - [`service`]: the command side: loads aggregate state (rebuilt from a
//!   replay at start, then kept current), runs commands, publishes the
//!   resulting events as one ordered batch per aggregate.
//! - [`projector`]: read models fed by durable consumers, idempotent by
//!   per-aggregate sequence, and the same model rebuilt from a full replay.
//! - [`job`]: the main job the README runs: load, stop and resume a
//!   projector, drain, and check the read model against a rebuild.

pub mod domain;
pub mod job;
pub mod projector;
pub mod service;

/// Generated protobuf types of the domain events.
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/poker.v1.rs"));
}
