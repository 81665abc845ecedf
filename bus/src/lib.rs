//! # bus: open the configured backend
//!
//! Applications depend on this crate (and on `bus-core` for the types, which it
//! re-exports). It exists because `bus-core` must not depend on any backend,
//! while something has to turn a [`BusConfig`] into a running [`Bus`]:
//!
//! ```no_run
//! # async fn run() -> Result<(), bus::BusError> {
//! let config = bus::BusConfig::load("config/memory.toml")?;
//! let bus = bus::open(&config).await?;
//! println!("running on {}", bus.backend());
//! # Ok(()) }
//! ```
//!
//! It owns only backend selection; it must not add behaviour of its own on
//! top of a backend (everything a caller sees is the backend's contract).

use std::sync::Arc;

pub use bus_core::*;

mod embedded;
pub use embedded::EmbeddedBus;

/// Opens the backend `config.backend` names.
///
/// `embedded` (the default) starts the bundled server in this process (see
/// [`EmbeddedBus`]); `nats` connects to an external server; `memory` keeps
/// everything in this process.
pub async fn open(config: &BusConfig) -> Result<Arc<dyn Bus>> {
    let layout = config.layout()?;
    match config.backend {
        Backend::Memory => Ok(Arc::new(bus_memory::MemoryBus::new(
            layout,
            config.stream.clone(),
            config.memory.clone(),
        ))),
        Backend::Nats => Ok(Arc::new(bus_nats::NatsBus::connect(config).await?)),
        Backend::Embedded => Ok(embedded::boxed(EmbeddedBus::start(config).await?)),
    }
}

/// Loads the file at `path` (with `BUS_BACKEND` / `NATS_URL` applied) and opens it.
pub async fn open_file(path: impl AsRef<std::path::Path>) -> Result<Arc<dyn Bus>> {
    let config = BusConfig::load(path)?;
    open(&config).await
}
