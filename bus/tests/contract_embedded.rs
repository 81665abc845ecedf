//! The shared contract suite on the embedded backend: the bundled server
//! started in-process (free port, own data directory per scenario) with the
//! NATS adapter on top; the persistence scenarios close the bus (an orderly
//! server shutdown) and open it again on the same data directory.

use std::sync::Arc;

use bus_core::testkit::Harness;
use bus_core::{Backend, Bus, BusConfig, StreamSettings};
use tokio::sync::Mutex;

#[derive(Default)]
struct Embedded {
    dir: Mutex<Option<tempfile::TempDir>>,
    config: Mutex<Option<BusConfig>>,
    current: Mutex<Option<Arc<dyn Bus>>>,
}

#[async_trait::async_trait]
impl Harness for Embedded {
    async fn open(&self, stream: StreamSettings) -> Arc<dyn Bus> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = BusConfig {
            backend: Backend::Embedded,
            stream,
            ..BusConfig::default()
        };
        config.embedded.port = 0;
        config.embedded.data_dir = dir.path().join("data");
        let bus = bus::open(&config).await.expect("embedded bus opens");
        *self.dir.lock().await = Some(dir);
        *self.config.lock().await = Some(config);
        *self.current.lock().await = Some(Arc::clone(&bus));
        bus
    }

    async fn reopen(&self) -> Arc<dyn Bus> {
        if let Some(old) = self.current.lock().await.take() {
            old.close().await.expect("close");
        }
        let config = self.config.lock().await.clone().expect("open() first");
        let bus = bus::open(&config).await.expect("embedded bus reopens");
        *self.current.lock().await = Some(Arc::clone(&bus));
        bus
    }
}

bus_core::contract_suite!(Embedded::default());
bus_core::persistence_suite!(Embedded::default());
