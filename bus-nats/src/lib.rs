//! # bus-nats: the Bus on an external NATS server or cluster (not built yet)
//!
//! Purpose: implement `bus_core::Bus` on async-nats, in core mode (at-most-once
//! publish and live subscribe) and JetStream mode (stream created or checked
//! from configuration, PubAck-confirmed publish with `Nats-Msg-Id`, durable
//! pull consumers with max deliver, backoff and a dead-letter stream, replay).
//! It must pass the `bus_core::testkit` contract suite against a real
//! nats-server.
//!
//! Status: an empty crate. The work is tracked by the "bus-nats" issue; until
//! it lands, `bus::open` reports this backend as unavailable.
