//! # bus-embedded-server: a NATS-protocol server in Rust
//!
//! Part 1 (this crate so far): the core NATS protocol, as a library that
//! starts inside any tokio program ([`start`] returns a [`ServerHandle`]) and
//! as the `angzarr-nats-server` binary.
//!
//! ## Layout
//! - [`parser`]: client protocol bytes -> [`parser::ClientOp`]; resumable,
//!   zero-copy, limits checked before allocating. Knows nothing else.
//! - [`sublist`]: the subscription index (trie with `*`/`>`), matching and
//!   queue groups, with a generation number for callers' caches.
//! - `client`: one connection: read loop, dispatch, per-connection outbound
//!   buffer and writer; slow-consumer and stale-connection handling.
//! - [`server`]: configuration, accept loop, shared state, shutdown.
//! - [`account`]: accounts (`accounts {}`): one subscription index per
//!   account, stream/service exports and imports, JetStream per account;
//!   without accounts everyone is in `$G` and nothing extra runs per message.
//! - [`auth`]: nkey signatures, per-user publish/subscribe permissions
//!   (compiled per connection, decisions cached), the `authorization {}` block.
//! - [`cli`]: nats-server's command-line flags, Go style (`-p`, `--port=`,
//!   `-DV`); [`conf`]: nats-server's configuration file format and the keys
//!   we support (others are warnings naming key and line). Both only parse.
//! - [`tls`]: TLS for client connections (rustls, ring provider): INFO in
//!   plain text then the client's handshake, or `handshake_first`; optional
//!   client certificate verification.
//! - `monitor`: the HTTP monitoring endpoints (`/varz`, `/connz`, `/subsz`,
//!   `/healthz`, `/metrics`); reads counters, never blocks the data path.
//!
//! ## Invariants
//! - Publishing never waits on another connection's socket: it appends to
//!   that connection's buffer; only the owner's writer task writes.
//! - A connection that cannot keep up (pending bytes over `max_pending`, or a
//!   write past `write_deadline`) is closed alone; others are unaffected.
//! - Nothing from the network is trusted for sizes: the parser rejects a
//!   declared size over `max_payload` before reading the payload.

pub mod account;
pub mod auth;
pub mod cli;
pub mod conf;
pub mod config;
pub mod jetstream;
mod monitor;
pub mod options;
mod outbound;
pub mod parser;
pub mod server;
mod session;
mod state;
pub mod subject;
pub mod sublist;
pub mod tls;

pub use auth::Credentials;
pub use config::{
    AccountConfig, Auth, Export, ExportKind, GLOBAL_ACCOUNT, Identity, Import, JetStreamConfig,
    Login, Permissions, ResponsePermission, ResponseType, ServerConfig, SubjectPermission,
    SyncPolicy, TlsConfig, User,
};
pub use server::{ServerError, ServerHandle, start};
pub use state::{Stats, VERSION};
