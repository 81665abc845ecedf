//! The shared contract suite on a real nats-server 2.15.1 in JetStream mode:
//! a fresh server (own port, own store directory) per scenario, and for the
//! persistence scenarios the same server stopped and restarted on its store.

use std::sync::Arc;

use bus_core::testkit::Harness;
use bus_core::{Backend, Bus, BusConfig, StreamSettings};
use bus_nats::NatsBus;
use nats_test_server::NatsServer;
use tokio::sync::Mutex;

#[derive(Default)]
struct JetStream {
    server: Mutex<Option<NatsServer>>,
    config: Mutex<Option<BusConfig>>,
}

fn config_for(url: String, stream: StreamSettings) -> BusConfig {
    let mut config = BusConfig {
        backend: Backend::Nats,
        stream,
        ..BusConfig::default()
    };
    config.nats.url = url;
    config.nats.jetstream = true;
    config
}

#[async_trait::async_trait]
impl Harness for JetStream {
    async fn open(&self, stream: StreamSettings) -> Arc<dyn Bus> {
        let server = NatsServer::start().await;
        let config = config_for(server.url(), stream);
        let bus = NatsBus::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()));
        *self.server.lock().await = Some(server);
        *self.config.lock().await = Some(config);
        Arc::new(bus)
    }

    async fn reopen(&self) -> Arc<dyn Bus> {
        let mut server = self.server.lock().await;
        let server = server.as_mut().expect("open() first");
        // An orderly restart: nats-server flushes consumer state on shutdown.
        // (After kill -9 it may redeliver recently acked events, which is
        // at-least-once but not what these scenarios check.)
        server.stop().await;
        server.restart().await;
        let config = self.config.lock().await.clone().expect("open() first");
        Arc::new(
            NatsBus::connect(&config)
                .await
                .unwrap_or_else(|e| panic!("reconnect: {e}\n{}", server.log())),
        )
    }
}

bus_core::contract_suite!(JetStream::default());
bus_core::persistence_suite!(JetStream::default());
