//! Placeholder until the file store lands (same public configuration API).

use std::time::Duration;

/// When the file store fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Before every acknowledgement (group commit).
    #[default]
    Always,
    /// At most this long after a write.
    Interval(Duration),
}

/// File store settings.
#[derive(Debug, Clone)]
pub struct FileStoreConfig {
    /// Segment size.
    pub segment_bytes: u64,
    /// Sync policy.
    pub sync: SyncPolicy,
}

/// Placeholder: a memory store until the file store lands.
#[derive(Debug)]
pub struct FileStore;

impl FileStore {
    /// Placeholder open.
    pub fn open(
        _dir: &std::path::Path,
        _config: FileStoreConfig,
    ) -> Result<(super::mem::MemStore, super::RecoveryReport), super::StoreError> {
        Ok((
            super::mem::MemStore::new(),
            super::RecoveryReport::default(),
        ))
    }
}
