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

/// Opens the backend `config.backend` names.
///
/// `memory` and `nats` are available. `embedded` returns
/// [`BusError::Unsupported`] until the bundled server is implemented (see the
/// project's issues); the error says which setting to change.
pub async fn open(config: &BusConfig) -> Result<Arc<dyn Bus>> {
    let layout = config.layout()?;
    match config.backend {
        Backend::Memory => Ok(Arc::new(bus_memory::MemoryBus::new(
            layout,
            config.stream.clone(),
            config.memory.clone(),
        ))),
        Backend::Nats => Ok(Arc::new(bus_nats::NatsBus::connect(config).await?)),
        Backend::Embedded => Err(BusError::Unsupported(
            "backend \"embedded\" (the bundled server) is not implemented yet in this build; \
             set [bus] backend = \"memory\", or \"nats\" with a NATS server's URL \
             (BUS_BACKEND / NATS_URL)"
                .to_owned(),
        )),
    }
}

/// Loads the file at `path` (with `BUS_BACKEND` / `NATS_URL` applied) and opens it.
pub async fn open_file(path: impl AsRef<std::path::Path>) -> Result<Arc<dyn Bus>> {
    let config = BusConfig::load(path)?;
    open(&config).await
}
