//! The live-only contract scenarios on a real nats-server 2.15.1 without
//! JetStream (`[bus.nats] jetstream = false`).

use std::sync::Arc;

use bus_core::testkit::Harness;
use bus_core::{Backend, Bus, BusConfig, StreamSettings};
use bus_nats::NatsBus;
use nats_test_server::{NatsServer, ServerOptions};
use tokio::sync::Mutex;

#[derive(Default)]
struct Core {
    server: Mutex<Option<NatsServer>>,
}

#[async_trait::async_trait]
impl Harness for Core {
    async fn open(&self, stream: StreamSettings) -> Arc<dyn Bus> {
        let server = NatsServer::start_with(ServerOptions::core()).await;
        let mut config = BusConfig {
            backend: Backend::Nats,
            stream,
            ..BusConfig::default()
        };
        config.nats.url = server.url();
        config.nats.jetstream = false;
        let bus = NatsBus::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()));
        *self.server.lock().await = Some(server);
        Arc::new(bus)
    }
}

bus_core::core_contract_suite!(Core::default());
