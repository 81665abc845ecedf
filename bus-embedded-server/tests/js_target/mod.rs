//! Where an async-nats JetStream scenario runs: our server in-process
//! (JetStream in a temporary store) or nats-server 2.15.1, and the
//! `scenario!` macro that runs one scenario function against both, to
//! prove the scenario on the reference (`both!` for scenarios that take
//! the server's URL and make their own connections). Used by
//! `compat_js_priority.rs`, `compat_js_republish.rs` (`scenario!`) and
//! `compat_js_messages.rs`, `compat_js_schedule.rs`,
//! `compat_js_pull_overlap.rs` (`both!`).
// Each test file uses a part of it.
#![allow(dead_code, unused_macros, unused_imports)]

use std::time::Duration;

use async_nats::jetstream::{self, Context};
use bus_embedded_server::{ServerConfig, ServerHandle, jetstream::JetStreamConfig, start};
use nats_test_server::{NatsServer, ServerOptions};

/// A server a scenario runs against.
pub enum Target {
    /// Ours, with its store directory (removed when the target stops).
    Ours(ServerHandle, tempfile::TempDir),
    /// nats-server 2.15.1.
    Reference(NatsServer),
}

impl Target {
    /// Our server with JetStream in a new temporary directory.
    pub async fn ours() -> Self {
        let dir = tempfile::tempdir().expect("temp store dir");
        let handle = start(ServerConfig {
            port: 0,
            jetstream: Some(JetStreamConfig {
                store_dir: dir.path().to_path_buf(),
                ..Default::default()
            }),
            ..ServerConfig::default()
        })
        .await
        .expect("our server starts with JetStream");
        Target::Ours(handle, dir)
    }

    /// nats-server with JetStream.
    pub async fn reference() -> Self {
        Target::Reference(
            NatsServer::start_with(ServerOptions {
                jetstream: true,
                ..ServerOptions::default()
            })
            .await,
        )
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        match self {
            Target::Ours(h, _) => h.client_url(),
            Target::Reference(s) => s.url(),
        }
    }

    /// A new client connection and its JetStream context.
    pub async fn js(&self) -> (async_nats::Client, Context) {
        let c = async_nats::connect(self.url()).await.expect("connect");
        (c.clone(), jetstream::new(c))
    }

    /// Shuts ours down and removes its store; the reference stops when
    /// dropped.
    pub async fn stop(self) {
        if let Target::Ours(h, dir) = self {
            h.shutdown(Duration::from_secs(2)).await;
            drop(dir);
        }
    }
}

/// `scenario!(f)`: tests `f::against_our_server` and
/// `f::against_nats_server` running `async fn f(&Target)`.
macro_rules! scenario {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn against_our_server() {
                let t = super::js_target::Target::ours().await;
                super::$name(&t).await;
                t.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn against_nats_server() {
                let t = super::js_target::Target::reference().await;
                super::$name(&t).await;
                t.stop().await;
            }
        }
    };
}
pub(crate) use scenario;

/// `both!(f)`: tests `f::against_our_server` and `f::against_nats_server`
/// running `async fn f(url: &str)`.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn against_our_server() {
                let t = super::js_target::Target::ours().await;
                super::$name(&t.url()).await;
                t.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn against_nats_server() {
                let t = super::js_target::Target::reference().await;
                super::$name(&t.url()).await;
                t.stop().await;
            }
        }
    };
}
pub(crate) use both;
