//! # bus-embedded-server: a NATS-protocol server with JetStream, in Rust (not built yet)
//!
//! Purpose: a server any NATS client connects to unchanged (core protocol,
//! JetStream, KV, object store) that persists streams to a crash-safe file
//! store and starts inside any tokio program (the bus's zero-setup default),
//! plus a drop-in standalone binary taking nats-server's flags and config.
//!
//! Status: an empty crate. The work is tracked by the "bus-embedded-server"
//! issues; until they land, `bus::open` reports `backend = "embedded"` as
//! unavailable.
