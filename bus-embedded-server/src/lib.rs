//! # bus-embedded-server: a NATS-protocol server in Rust
//!
//! The core NATS protocol, authentication and permissions, accounts with
//! imports and exports, TLS, monitoring, and JetStream on a crash-safe
//! file store: as a library that starts inside any tokio program
//! ([`start`] returns a [`ServerHandle`]) and as the `angzarr-nats-server`
//! binary, which takes nats-server's flags and configuration file.
//!
//! ## Floor plan (each module uses only those below it)
//! - `server`: [`start`], the accept loop, [`ServerHandle`] (lame duck,
//!   shutdown). Uses `websocket`, `mqtt`, `session`, `monitor`, `state`, `account`,
//!   `tls`.
//! - `websocket`: the WebSocket listener: TLS, the HTTP upgrade and its
//!   refusals (origin rules, missing headers), then a byte stream over the
//!   messages handed to `session`, so WebSocket clients are ordinary
//!   sessions.
//! - `mqtt`: the MQTT 3.1.1 listener: its own packet codec and topic
//!   mapping; each MQTT connection speaks NATS to a `session` over an
//!   in-process pipe, so MQTT clients are ordinary sessions too.
//! - `session`: one connection's life: TLS upgrade, read loop, dispatch of
//!   CONNECT/SUB/UNSUB/PUB/PING, publishes handed to the account's fan-out
//!   and then to JetStream.
//! - `monitor`: `/varz`, `/connz`, `/subsz`, `/jsz`, `/healthz`,
//!   `/metrics`; reads counters, never blocks the data path.
//! - `state`: what connections share: configuration, accounts, the
//!   connection registry, counters, INFO lines.
//! - [`account`]: accounts at run time: each one's subscription index, the
//!   one fan-out (plain subscriptions, queue groups, imports and exports,
//!   service replies) used by clients and JetStream alike.
//! - [`jetstream`]: streams, consumers, the `$JS.API`, the stores; it sends
//!   through the account (the [`jetstream::Router`] trait) and never
//!   touches a socket.
//! - `outbound`: a connection's output buffer, writer task and
//!   slow-consumer rule; [`auth`]: credential checks and permissions;
//!   [`tls`]: rustls setup and the handshake.
//! - [`sublist`]: the subscription trie; [`subject`]: subject syntax and
//!   every comparison of subjects; [`parser`]: client bytes to
//!   [`parser::ClientOp`].
//! - Configuration, beside the runtime: [`config`] (every configuration
//!   type), [`conf`] (nats-server's file format, then what its keys mean),
//!   [`cli`] (nats-server's flags), [`options`] (defaults, file and flags
//!   merged into a [`ServerConfig`], for both binaries).
//! - [`memory`]: the allocator setting that gives memory back after load
//!   (process-wide: the binaries call it, the library never does).
//!
//! ## Invariants
//! - Publishing never waits on another connection's socket: it appends to
//!   that connection's buffer; only the owner's writer task writes.
//! - A connection that cannot keep up (pending bytes over `max_pending`, or a
//!   write past `write_deadline`) is closed alone; others are unaffected.
//! - Nothing from the network is trusted for sizes: the parser rejects a
//!   declared size over `max_payload` before reading the payload.
//! - A PubAck means durable: JetStream acknowledges only what its store says
//!   is on disk (or written to the kernel under `sync_interval`).
//! - Configuration the server cannot honour (authorization, TLS options)
//!   stops the start with the key and line; it is never silently ignored.

pub mod account;
pub mod auth;
pub mod cli;
pub mod conf;
pub mod config;
pub mod jetstream;
pub mod jwt;
pub mod mapping;
pub mod memory;
mod monitor;
mod mqtt;
pub mod options;
mod outbound;
pub mod parser;
mod replies;
pub mod server;
mod session;
mod state;
pub mod subject;
pub mod sublist;
mod system;
pub mod tls;
mod trace;
mod websocket;

pub use auth::Credentials;
pub use config::{
    AccountConfig, Auth, Export, ExportKind, GLOBAL_ACCOUNT, HttpHandler, HttpMount, HttpRequest,
    HttpResponse, Identity, Import, JetStreamConfig, ListenerAuth, Login, MqttConfig, Permissions,
    ResponsePermission, ResponseType, ServerConfig, SubjectPermission, SyncPolicy, TlsConfig, User,
    WebSocketConfig,
};
pub use server::{ServerError, ServerHandle, start};
pub use state::{Stats, VERSION};
pub use websocket::WebSocketSetupError;
