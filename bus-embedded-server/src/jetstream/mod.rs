//! JetStream: streams, consumers and their storage.

pub mod store;
