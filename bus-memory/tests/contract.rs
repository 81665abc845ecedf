//! The shared contract suite (bus-core's testkit) on the memory backend.

use std::sync::Arc;

use bus_core::config::MemoryConfig;
use bus_core::testkit::Harness;
use bus_core::{Bus, StreamSettings, SubjectLayout};
use bus_memory::MemoryBus;

struct Memory;

#[async_trait::async_trait]
impl Harness for Memory {
    async fn open(&self, stream: StreamSettings) -> Arc<dyn Bus> {
        Arc::new(MemoryBus::new(
            SubjectLayout::default(),
            stream,
            MemoryConfig::default(),
        ))
    }
}

bus_core::contract_suite!(Memory);
