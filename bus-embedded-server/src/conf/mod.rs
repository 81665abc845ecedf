//! nats-server's configuration file, read in two layers:
//!
//! * [`syntax`]: the file format, generically ([`parse`], [`parse_file`]):
//!   text into a tree of [`Located`] values, with includes, variables, size
//!   suffixes and Go durations. It knows no key.
//! * the typed readers, which know what keys mean: [`server_conf()`] for the
//!   top-level options and the `tls {}` / `jetstream {}` blocks (into a
//!   [`ServerConf`] plus [`Warning`]s for keys it ignores),
//!   [`websocket_from_conf`] for `websocket {}`, [`mqtt_from_conf`] for
//!   `mqtt {}`,
//!   [`authorization_from_conf`] for `authorization {}` and
//!   [`accounts_from_conf`] / [`merge_users`] for `accounts {}`,
//!   [`mappings_from_conf`] for `mappings {}` (top level and in accounts),
//!   [`operator_from_conf`] for operator mode (`operator`, `resolver`,
//!   `resolver_preload`, `system_account`).
//!
//! Errors are enums naming the file or line and the key: [`ConfError`] and
//! [`BlockError`]. Turning a [`ServerConf`] plus command-line flags into a
//! `ServerConfig` is the `options` module's job; this module only
//! reads.

pub mod accounts;
pub mod authorization;
pub mod error;
pub mod listener_auth;
pub mod mappings;
pub mod mqtt;
pub mod operator;
pub mod server_conf;
pub mod syntax;
pub mod websocket;

pub use accounts::{accounts_from_conf, merge_users};
pub use authorization::{authorization_from_conf, permissions_from_conf};
pub use error::{BlockError, ConfError, Loc};
pub use listener_auth::ListenerAuthConf;
pub use mappings::mappings_from_conf;
pub use mqtt::{MqttConf, mqtt_from_conf};
pub use operator::{OperatorConf, ResolverConf, operator_from_conf};
pub use server_conf::{JetStreamConf, ServerConf, SyncInterval, TlsConf, Warning, server_conf};
pub use syntax::{DurationError, Located, Value, as_duration, parse, parse_duration, parse_file};
pub use websocket::{WebSocketConf, websocket_from_conf};
