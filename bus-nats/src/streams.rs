//! The streams the bus needs, and creating or checking them at connect.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bus_core::{BusError, Discard, Result, Storage};

use crate::{DEAD_LETTER_TOKEN, Inner, REDRIVE_TOKEN, errors};

/// Room for headers on top of the largest envelope the bus accepts: the bus
/// checks the envelope size itself; the server's limit covers the whole message.
const HEADER_ALLOWANCE: usize = 4096;

/// The event stream as `[bus.stream]` describes it.
pub fn events(inner: &Inner) -> stream::Config {
    let s = &inner.stream;
    let mut duplicate_window = s.duplicate_window;
    if !s.max_age.is_zero() && duplicate_window > s.max_age {
        // JetStream refuses a window longer than the age limit.
        duplicate_window = s.max_age;
    }
    stream::Config {
        name: inner.config.stream_name.clone(),
        description: Some("angzarr events".to_owned()),
        subjects: vec![inner.layout.all().as_str().to_owned()],
        retention: stream::RetentionPolicy::Limits,
        max_messages: limit(s.max_msgs),
        max_bytes: limit(s.max_bytes),
        max_age: s.max_age,
        max_message_size: i32::try_from(s.max_msg_size.saturating_add(HEADER_ALLOWANCE))
            .unwrap_or(i32::MAX),
        storage: storage(s.storage),
        num_replicas: usize::from(s.replicas),
        duplicate_window: if duplicate_window.is_zero() {
            // Dedup off: the bus sends no Nats-Msg-Id; keep the server default.
            Duration::from_secs(120)
        } else {
            duplicate_window
        },
        discard: match s.discard {
            Discard::Old => stream::DiscardPolicy::Old,
            Discard::New => stream::DiscardPolicy::New,
        },
        allow_direct: true,
        ..Default::default()
    }
}

/// The dead-letter stream: same storage and replicas, no limits.
pub fn dead_letters(inner: &Inner) -> stream::Config {
    stream::Config {
        name: inner.dead_letter_stream.clone(),
        description: Some("angzarr dead letters".to_owned()),
        subjects: vec![format!("{}.{DEAD_LETTER_TOKEN}.>", inner.layout.prefix())],
        retention: stream::RetentionPolicy::Limits,
        max_messages: -1,
        max_bytes: -1,
        max_message_size: -1,
        storage: storage(inner.stream.storage),
        num_replicas: usize::from(inner.stream.replicas),
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    }
}

/// The redrive queue: dead letters on their way back to their consumer, on
/// `<prefix>.redrive.<consumer>.<dead-letter id>`. Work-queue retention:
/// an item is gone once its consumer acknowledges it.
pub fn redrives(inner: &Inner) -> stream::Config {
    stream::Config {
        name: inner.redrive_stream.clone(),
        description: Some("angzarr dead letters being redriven".to_owned()),
        subjects: vec![format!("{}.{REDRIVE_TOKEN}.>", inner.layout.prefix())],
        retention: stream::RetentionPolicy::WorkQueue,
        max_messages: -1,
        max_bytes: -1,
        max_message_size: -1,
        storage: storage(inner.stream.storage),
        num_replicas: usize::from(inner.stream.replicas),
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    }
}

fn limit(n: u64) -> i64 {
    if n == 0 {
        -1
    } else {
        i64::try_from(n).unwrap_or(i64::MAX)
    }
}

fn storage(s: Storage) -> stream::StorageType {
    match s {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    }
}

/// Creates the stream, or checks an existing one against `want`. A difference
/// is a `Conflict` naming every differing setting, unless `update` is set.
pub async fn ensure(js: &jetstream::Context, want: &stream::Config, update: bool) -> Result<()> {
    let name = &want.name;
    for _ in 0..3 {
        match js.get_stream(name).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .map_err(|e| errors::classify(&format!("reading stream {name}"), e))?;
                let differences = diff(&info.config, want);
                if differences.is_empty() {
                    return Ok(());
                }
                if !update {
                    return Err(BusError::Conflict(format!(
                        "stream {name} exists with other settings ({}); change [bus.stream] to match, \
                         or set [bus.nats] update_stream = true to update the stream",
                        differences.join("; ")
                    )));
                }
                tracing::warn!(stream = %name, changes = %differences.join("; "), "updating stream settings");
                js.update_stream(want).await.map_err(|e| {
                    BusError::Conflict(format!(
                        "stream {name}: the server refused the update ({}): {e}",
                        differences.join("; ")
                    ))
                })?;
                return Ok(());
            }
            Err(e) => {
                let text = e.to_string();
                if text.contains("10059") || text.to_lowercase().contains("stream not found") {
                    match js.create_stream(want.clone()).await {
                        Ok(_) => return Ok(()),
                        Err(e) if e.to_string().contains("10058") => continue,
                        Err(e) => {
                            return Err(errors::classify(&format!("creating stream {name}"), e));
                        }
                    }
                }
                return Err(errors::classify(&format!("reading stream {name}"), e));
            }
        }
    }
    Err(BusError::Conflict(format!(
        "stream {name} keeps changing while it is being created"
    )))
}

/// Human-readable differences between the server's stream and ours.
pub fn diff(have: &stream::Config, want: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, have: String, want: String| {
        if have != want {
            out.push(format!("{what}: {have} on the server, {want} configured"));
        }
    };
    let subjects = |c: &stream::Config| c.subjects.iter().cloned().collect::<BTreeSet<_>>();
    check(
        "subjects",
        format!("{:?}", subjects(have)),
        format!("{:?}", subjects(want)),
    );
    check(
        "retention",
        format!("{:?}", have.retention),
        format!("{:?}", want.retention),
    );
    // JetStream reports "unlimited" as -1 whatever was sent (0 or -1).
    let unlimited = |n: i64| {
        if n <= 0 {
            "unlimited".to_owned()
        } else {
            n.to_string()
        }
    };
    check(
        "max_msgs",
        unlimited(have.max_messages),
        unlimited(want.max_messages),
    );
    check(
        "max_bytes",
        unlimited(have.max_bytes),
        unlimited(want.max_bytes),
    );
    check(
        "max_age",
        format!("{:?}", have.max_age),
        format!("{:?}", want.max_age),
    );
    check(
        "max_msg_size",
        unlimited(i64::from(have.max_message_size)),
        unlimited(i64::from(want.max_message_size)),
    );
    check(
        "storage",
        format!("{:?}", have.storage),
        format!("{:?}", want.storage),
    );
    check(
        "replicas",
        have.num_replicas.max(1).to_string(),
        want.num_replicas.max(1).to_string(),
    );
    check(
        "duplicate_window",
        format!("{:?}", have.duplicate_window),
        format!("{:?}", want.duplicate_window),
    );
    check(
        "discard",
        format!("{:?}", have.discard),
        format!("{:?}", want.discard),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_differing_setting() {
        let want = stream::Config {
            name: "s".into(),
            subjects: vec!["a.>".into()],
            max_age: Duration::from_secs(60),
            num_replicas: 1,
            ..Default::default()
        };
        let mut have = want.clone();
        assert!(diff(&have, &want).is_empty());
        have.max_age = Duration::from_secs(30);
        have.num_replicas = 3;
        let d = diff(&have, &want);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("max_age"), "{d:?}");
        assert!(d[1].starts_with("replicas"), "{d:?}");
    }
}
