//! Snapshots on a JetStream key-value bucket, `<stream_name>-snapshots`
//! (history 1, the event stream's storage and replicas), created the first
//! time a snapshot is saved or read. One key per aggregate,
//! `<aggregate key of the type>.<aggregate key of the id>`; the value is
//! the protobuf `Snapshot`. Saving keeps the latest: a compare-and-set on
//! the key's revision, so a snapshot of an older version never replaces a
//! newer one, whatever the order writers get there.

use async_nats::jetstream::kv;
use bus_core::aggregate::{aggregate_key, validate_aggregate};
use bus_core::{BusError, Result, Snapshot, Storage};
use bytes::Bytes;
use prost::Message;

use crate::{Inner, aggregates, errors};

/// Compare-and-set rounds before giving up (other writers keep winning).
const MAX_ROUNDS: u32 = 32;

/// The bucket name for an event stream.
pub fn bucket_name(stream_name: &str) -> String {
    format!("{stream_name}-snapshots")
}

fn key(aggregate_type: &str, aggregate_id: &str) -> String {
    format!(
        "{}.{}",
        aggregate_key(aggregate_type),
        aggregate_key(aggregate_id)
    )
}

/// The bucket, created when missing.
async fn bucket(inner: &Inner) -> Result<&kv::Store> {
    inner
        .snapshots
        .get_or_try_init(|| async {
            let js = inner.js("snapshots")?;
            let name = bucket_name(&inner.config.stream_name);
            let doing = format!("opening the snapshot bucket {name}");
            if let Ok(store) = js.get_key_value(name.clone()).await {
                return Ok(store);
            }
            let config = kv::Config {
                bucket: name.clone(),
                description: format!(
                    "latest snapshots of the aggregates of {}",
                    inner.config.stream_name
                ),
                history: 1,
                storage: match inner.stream.storage {
                    Storage::File => async_nats::jetstream::stream::StorageType::File,
                    Storage::Memory => async_nats::jetstream::stream::StorageType::Memory,
                },
                num_replicas: usize::from(inner.stream.replicas),
                ..Default::default()
            };
            match js.create_key_value(config).await {
                Ok(store) => Ok(store),
                // Created meanwhile by another process.
                Err(create) => js
                    .get_key_value(name.clone())
                    .await
                    .map_err(|_| errors::classify(&doing, create)),
            }
        })
        .await
}

fn decode(bytes: &[u8], key: &str) -> Result<Snapshot> {
    Snapshot::decode(bytes)
        .map_err(|e| BusError::Decode(format!("snapshot {key} is not a Snapshot: {e}")))
}

/// Keeps `snapshot` unless one of the same or a later version is kept.
pub async fn save(inner: &Inner, snapshot: Snapshot) -> Result<()> {
    snapshot.validate()?;
    inner.js("saving a snapshot")?;
    let size = snapshot.encoded_len();
    let limit = inner.stream.max_msg_size;
    if size > limit {
        return Err(BusError::PayloadTooLarge { size, limit });
    }
    let actual =
        aggregates::version(inner, &snapshot.aggregate_type, &snapshot.aggregate_id).await?;
    if snapshot.version > actual {
        return Err(snapshot.ahead_of(actual));
    }
    let store = bucket(inner).await?;
    let key = key(&snapshot.aggregate_type, &snapshot.aggregate_id);
    let doing = format!("saving snapshot {key}");
    let value = Bytes::from(snapshot.encode_to_vec());
    for _ in 0..MAX_ROUNDS {
        let entry = store
            .entry(key.clone())
            .await
            .map_err(|e| errors::classify(&doing, e))?;
        let written = match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                if decode(&e.value, &key)?.version >= snapshot.version {
                    return Ok(());
                }
                store
                    .update(&key, value.clone(), e.revision)
                    .await
                    .map_err(|err| {
                        (
                            err.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            err.to_string(),
                        )
                    })
                    .map(|_| ())
            }
            _ => store
                .create(&key, value.clone())
                .await
                .map_err(|err| {
                    (
                        err.kind() == kv::CreateErrorKind::AlreadyExists,
                        err.to_string(),
                    )
                })
                .map(|_| ()),
        };
        match written {
            Ok(()) => return Ok(()),
            // Another writer got there first: look again.
            Err((true, _)) => continue,
            Err((false, text)) => return Err(errors::classify(&doing, text)),
        }
    }
    Err(BusError::Timeout {
        operation: format!("{doing}: other writers changed it {MAX_ROUNDS} times in a row"),
        after: std::time::Duration::ZERO,
    })
}

/// The aggregate's latest snapshot.
pub async fn load(
    inner: &Inner,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<Snapshot>> {
    validate_aggregate(aggregate_type, aggregate_id)?;
    inner.js("loading a snapshot")?;
    let store = bucket(inner).await?;
    let key = key(aggregate_type, aggregate_id);
    let value = store
        .get(key.clone())
        .await
        .map_err(|e| errors::classify(&format!("loading snapshot {key}"), e))?;
    value.map(|v| decode(&v, &key)).transpose()
}
