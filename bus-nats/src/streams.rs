//! The streams the bus needs, and creating or checking them at connect.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bus_core::subject::AGGREGATES_TOKEN;
use bus_core::{BusError, Discard, Result, Storage};

use crate::{DEAD_LETTER_TOKEN, Inner, REDRIVE_TOKEN, errors};

/// Room for headers on top of the largest envelope the bus accepts: the bus
/// checks the envelope size itself; the server's limit covers the whole message.
pub(crate) const HEADER_ALLOWANCE: usize = 4096;

/// The event stream as `[bus.stream]` describes it: the events and the
/// append markers (`<prefix>.aggregates.>`), with atomic batches allowed
/// when the server has them (`allow_atomic`).
pub fn events(inner: &Inner, allow_atomic: bool) -> stream::Config {
    let s = &inner.stream;
    let mut duplicate_window = s.duplicate_window;
    if !s.max_age.is_zero() && duplicate_window > s.max_age {
        // JetStream refuses a window longer than the age limit.
        duplicate_window = s.max_age;
    }
    stream::Config {
        name: inner.config.stream_name.clone(),
        description: Some("angzarr events".to_owned()),
        subjects: vec![
            inner.layout.all().as_str().to_owned(),
            inner.layout.all_markers(),
        ],
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
        allow_atomic_publish: allow_atomic,
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

/// What connecting may change on an existing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// Any setting (`[bus.nats] update_stream`).
    pub settings: bool,
    /// Only what this version of the bus adds for appends (the marker
    /// subjects, `allow_atomic`): the embedded backend owns its server and
    /// store, so it upgrades them without being asked.
    pub upgrades: bool,
}

/// Creates the stream, or checks an existing one against `want`. A
/// difference is a `Conflict` naming every differing setting, unless
/// `changes` allows updating it. Returns the stream's configuration as the
/// server holds it (a server that does not know `allow_atomic` leaves it
/// out, whatever was asked).
pub async fn ensure(
    js: &jetstream::Context,
    want: &stream::Config,
    changes: Changes,
) -> Result<stream::Config> {
    let name = &want.name;
    for _ in 0..3 {
        match js.get_stream(name).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .map_err(|e| errors::classify(&format!("reading stream {name}"), e))?;
                let differences = diff(&info.config, want);
                let upgrades = upgrades(&info.config, want);
                if differences.is_empty() && upgrades.is_empty() {
                    return Ok(info.config.clone());
                }
                let all: Vec<String> = differences.iter().chain(&upgrades).cloned().collect();
                let allowed = changes.settings || (differences.is_empty() && changes.upgrades);
                if !allowed {
                    let hint = if differences.is_empty() {
                        "this version of the bus stores append markers in the event stream and \
                         appends them atomically; set [bus.nats] update_stream = true to add that \
                         to the stream"
                    } else {
                        "change [bus.stream] to match, or set [bus.nats] update_stream = true to \
                         update the stream"
                    };
                    return Err(BusError::Conflict(format!(
                        "stream {name} exists with other settings ({}); {hint}",
                        all.join("; ")
                    )));
                }
                if differences.is_empty() {
                    tracing::info!(stream = %name, changes = %all.join("; "), "upgrading the stream for appends");
                } else {
                    tracing::warn!(stream = %name, changes = %all.join("; "), "updating stream settings");
                }
                let updated = js.update_stream(want).await.map_err(|e| {
                    BusError::Conflict(format!(
                        "stream {name}: the server refused the update ({}): {e}",
                        all.join("; ")
                    ))
                })?;
                return Ok(updated.config);
            }
            Err(e) => {
                let text = e.to_string();
                if text.contains("10059") || text.to_lowercase().contains("stream not found") {
                    match js.create_stream(want.clone()).await {
                        Ok(mut created) => {
                            let info = created.info().await.map_err(|e| {
                                errors::classify(&format!("reading stream {name}"), e)
                            })?;
                            return Ok(info.config.clone());
                        }
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

/// What this version of the bus needs that the server's stream lacks: the
/// append marker subjects, and `allow_atomic` when it is asked for.
pub fn upgrades(have: &stream::Config, want: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    let markers = want
        .subjects
        .iter()
        .filter(|s| s.contains(&format!(".{AGGREGATES_TOKEN}.")))
        .filter(|s| !have.subjects.contains(s));
    for subject in markers {
        out.push(format!(
            "subjects: {subject} missing on the server (the append markers)"
        ));
    }
    if want.allow_atomic_publish && !have.allow_atomic_publish {
        out.push(
            "allow_atomic: false on the server, true needed (appends are atomic batches)"
                .to_owned(),
        );
    }
    out
}

/// Human-readable differences between the server's stream and ours.
pub fn diff(have: &stream::Config, want: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, have: String, want: String| {
        if have != want {
            out.push(format!("{what}: {have} on the server, {want} configured"));
        }
    };
    // The marker subjects are an upgrade (see `upgrades`), not a setting.
    let subjects = |c: &stream::Config| {
        c.subjects
            .iter()
            .filter(|s| !s.contains(&format!(".{AGGREGATES_TOKEN}.")))
            .cloned()
            .collect::<BTreeSet<_>>()
    };
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

    #[test]
    fn marker_subjects_and_allow_atomic_are_upgrades_not_settings() {
        let want = stream::Config {
            name: "s".into(),
            subjects: vec!["a.events.>".into(), "a.aggregates.>".into()],
            allow_atomic_publish: true,
            ..Default::default()
        };
        let old = stream::Config {
            subjects: vec!["a.events.>".into()],
            allow_atomic_publish: false,
            ..want.clone()
        };
        assert!(diff(&old, &want).is_empty(), "{:?}", diff(&old, &want));
        let u = upgrades(&old, &want);
        assert_eq!(u.len(), 2, "{u:?}");
        assert!(u[0].contains("a.aggregates.>"), "{u:?}");
        assert!(u[1].starts_with("allow_atomic"), "{u:?}");
        assert!(upgrades(&want, &want).is_empty());
        let not_asked = stream::Config {
            allow_atomic_publish: false,
            ..want.clone()
        };
        assert!(upgrades(&old, &not_asked).len() == 1);
    }
}
