//! JetStream resource limits, as nats-server 2.15.1 enforces them on a
//! single server:
//!
//! - the server's (`jetstream { max_mem, max_file }`), shared by every
//!   account: [`ServerResources`];
//! - an account's (`accounts { A: { jetstream { max_mem, max_file,
//!   max_streams, max_consumers, max_ack_pending, max_bytes_required,
//!   memory_max_stream_bytes, store_max_stream_bytes } } }`):
//!   [`AccountResources`].
//!
//! Two kinds of figure are checked. *Reservations*: a stream's
//! `max_bytes` is reserved when it is created (or raised), and a new
//! stream must fit beside the reservations already made (a stream without
//! `max_bytes` needs one byte). *Usage*: the bytes stored, kept by the
//! [`Meter`]s every stream's store is charged to
//! ([`super::store::metered`]); a publish that would take the account past
//! its limit is refused (10002), and once the server's usage is past its
//! limit every publish is (10023).
//!
//! This module decides; it does not count streams or consumers itself
//! (the caller passes what it has) and holds no reference to an engine.

use std::sync::{Arc, Mutex};

use super::errors::ApiError;
use super::store::metered::Meter;
use super::types::{AckPolicy, ConsumerConfig, StorageType, StreamConfig};
use crate::config::AccountJetStreamLimits;

fn slot(storage: StorageType) -> usize {
    match storage {
        StorageType::Memory => 0,
        StorageType::File => 1,
    }
}

/// A stream's reservation: its `max_bytes` when set.
fn reservation(cfg: &StreamConfig) -> u64 {
    u64::try_from(cfg.max_bytes).unwrap_or(0)
}

/// The server's limits and what every account together uses and reserves.
#[derive(Debug)]
pub struct ServerResources {
    /// Memory, file; negative is unlimited.
    max: [i64; 2],
    used: [Arc<Meter>; 2],
    /// Sum of the `max_bytes` of every stream of every account that set
    /// one, by storage type. Changed only under this lock, with the check.
    reserved: Mutex<[u64; 2]>,
}

impl ServerResources {
    /// `max_memory`, `max_store`: negative is unlimited.
    pub fn new(max_memory: i64, max_store: i64) -> Arc<ServerResources> {
        Arc::new(ServerResources {
            max: [max_memory, max_store],
            used: Default::default(),
            reserved: Mutex::new([0, 0]),
        })
    }

    /// Bytes stored by every account (memory, file).
    pub fn usage(&self) -> (u64, u64) {
        (self.used[0].bytes(), self.used[1].bytes())
    }

    /// Bytes reserved by every account's streams (memory, file).
    pub fn reserved(&self) -> (u64, u64) {
        let r = self.reserved.lock().map_or([0, 0], |r| *r);
        (r[0], r[1])
    }
}

/// One account's limits and usage, tied to the server's.
#[derive(Debug)]
pub struct AccountResources {
    /// The configured limits.
    pub limits: AccountJetStreamLimits,
    server: Arc<ServerResources>,
    used: [Arc<Meter>; 2],
    /// Whether a publish to a stream of this storage type has anything to
    /// check (an account or server byte limit): without one, the publish
    /// path reads no meter.
    publish_checked: [bool; 2],
}

impl AccountResources {
    /// An account with `limits` on `server`.
    pub fn new(limits: AccountJetStreamLimits, server: Arc<ServerResources>) -> AccountResources {
        let account_max = [limits.max_memory, limits.max_store];
        let account_stream_max = [
            limits.memory_max_stream_bytes,
            limits.store_max_stream_bytes,
        ];
        let publish_checked =
            [0, 1].map(|i| account_max[i] >= 0 || account_stream_max[i] > 0 || server.max[i] >= 0);
        AccountResources {
            limits,
            server,
            used: Default::default(),
            publish_checked,
        }
    }

    /// Unlimited, on an unlimited server of its own (tests, `$G` without
    /// limits).
    pub fn unlimited() -> AccountResources {
        AccountResources::new(
            AccountJetStreamLimits::default(),
            ServerResources::new(-1, -1),
        )
    }

    /// The server this account is on.
    pub fn server(&self) -> &Arc<ServerResources> {
        &self.server
    }

    /// The meters a store of this storage type is charged to: the
    /// account's and the server's.
    pub fn meters(&self, storage: StorageType) -> Vec<Arc<Meter>> {
        let i = slot(storage);
        vec![Arc::clone(&self.used[i]), Arc::clone(&self.server.used[i])]
    }

    /// Bytes this account stores (memory, file).
    pub fn usage(&self) -> (u64, u64) {
        (self.used[0].bytes(), self.used[1].bytes())
    }

    /// Whether a publish of `size` bytes (the store's accounting size) to
    /// a stream of `storage` fits: the account's usage plus the message
    /// within the account's limits (10002), and the server not already
    /// past its own (10023).
    pub fn check_publish(&self, storage: StorageType, size: u64) -> Result<(), ApiError> {
        let i = slot(storage);
        if !self.publish_checked[i] {
            return Ok(());
        }
        let after = self.used[i].bytes().saturating_add(size);
        let (max, stream_max) = match storage {
            StorageType::Memory => (self.limits.max_memory, self.limits.memory_max_stream_bytes),
            StorageType::File => (self.limits.max_store, self.limits.store_max_stream_bytes),
        };
        // nats-server compares the account's total with the per-stream
        // limit too.
        if (stream_max > 0 && after > stream_max as u64) || (max >= 0 && after > max as u64) {
            return Err(ApiError::account_resources_exceeded());
        }
        let server_max = self.server.max[i];
        if server_max >= 0 && self.server.used[i].bytes() > server_max as u64 {
            return Err(ApiError::insufficient_resources());
        }
        Ok(())
    }

    /// The account's checks on a stream's configuration (nats-server makes
    /// them with the config's validation): `max_bytes` required, and
    /// within the per-stream limit.
    pub fn check_stream_config(&self, cfg: &StreamConfig) -> Result<(), ApiError> {
        if self.limits.max_bytes_required && cfg.max_bytes <= 0 {
            return Err(ApiError::stream_max_bytes_required());
        }
        let limit = match cfg.storage {
            StorageType::Memory => self.limits.memory_max_stream_bytes,
            StorageType::File => self.limits.store_max_stream_bytes,
        };
        if limit > 0 && cfg.max_bytes > limit {
            return Err(ApiError::stream_max_stream_bytes_exceeded());
        }
        Ok(())
    }

    /// Reserves what a stream being created (`old` `None`) or updated
    /// asks for, or refuses: the account's stream count (`streams`: the
    /// account's streams now, on create), its `max_consumers` against the
    /// account's, and its `max_bytes` beside the reservations of the
    /// account's other streams (`account_reserved`: memory, file, without
    /// this stream) and of the whole server. On success the server's
    /// reservation is taken; give it back with [`Self::release`].
    pub fn reserve(
        &self,
        cfg: &StreamConfig,
        old: Option<&StreamConfig>,
        streams: usize,
        account_reserved: (u64, u64),
    ) -> Result<(), ApiError> {
        let l = &self.limits;
        if old.is_none() && l.max_streams > 0 && streams as i64 >= l.max_streams {
            return Err(ApiError::max_streams());
        }
        if cfg.max_consumers > 0 && l.max_consumers > 0 && cfg.max_consumers > l.max_consumers {
            return Err(ApiError::max_consumers());
        }
        let i = slot(cfg.storage);
        let exceeded = || match cfg.storage {
            StorageType::Memory => ApiError::memory_exceeded(),
            StorageType::File => ApiError::storage_exceeded(),
        };
        // A stream without max_bytes needs room for one byte.
        let asks = reservation(cfg).max(1);
        let account_max = [l.max_memory, l.max_store][i];
        let account_res = [account_reserved.0, account_reserved.1][i];
        if account_max >= 0 && account_res.saturating_add(asks) > account_max as u64 {
            return Err(exceeded());
        }
        let mut reserved = self.server.reserved.lock().map_err(|_| exceeded())?;
        let mine = old
            .filter(|o| o.storage == cfg.storage)
            .map_or(0, reservation);
        let others = reserved[i].saturating_sub(mine);
        let server_max = self.server.max[i];
        if server_max >= 0 && others.saturating_add(asks) > server_max as u64 {
            return Err(exceeded());
        }
        if let Some(o) = old {
            let j = slot(o.storage);
            reserved[j] = reserved[j].saturating_sub(reservation(o));
        }
        reserved[i] = reserved[i].saturating_add(reservation(cfg));
        Ok(())
    }

    /// Takes a recovered stream's reservation without checking (it was
    /// checked when the stream was created).
    pub fn restore(&self, cfg: &StreamConfig) {
        if let Ok(mut r) = self.server.reserved.lock() {
            let i = slot(cfg.storage);
            r[i] = r[i].saturating_add(reservation(cfg));
        }
    }

    /// Gives back a stream's reservation (deleted, or its create failed).
    pub fn release(&self, cfg: &StreamConfig) {
        if let Ok(mut r) = self.server.reserved.lock() {
            let i = slot(cfg.storage);
            r[i] = r[i].saturating_sub(reservation(cfg));
        }
    }

    /// How many consumers a stream whose own limit is `stream_max` may
    /// have: the stricter of the two, the account's when the stream sets
    /// none. nats-server 2.15.1 counts the account's `max_consumers` per
    /// stream, not over the account, and so does this.
    pub fn max_consumers(&self, stream_max: i64) -> i64 {
        let account = self.limits.max_consumers;
        if stream_max <= 0 || (account > 0 && account < stream_max) {
            account
        } else {
            stream_max
        }
    }

    /// The stream's `consumer_limits` and the account's `max_ack_pending`
    /// on a consumer's config (create or update), as nats-server applies
    /// them: the default window is the smallest of 1,000 and the limits,
    /// a larger one is refused (10121); a stream's inactivity limit is the
    /// default `inactive_threshold` and its ceiling (10153).
    pub fn apply_consumer_limits(
        &self,
        stream: &StreamConsumerLimits,
        cfg: &mut ConsumerConfig,
    ) -> Result<(), ApiError> {
        let account = self.limits.max_ack_pending;
        if cfg.max_ack_pending == 0 && cfg.ack_policy != AckPolicy::None {
            // Only a consumer that takes acks has a window to default.
            let mut window = DEFAULT_MAX_ACK_PENDING;
            for limit in [stream.max_ack_pending, account] {
                if limit > 0 && limit < window {
                    window = limit;
                }
            }
            cfg.max_ack_pending = window;
        }
        if cfg.max_ack_pending > 0 {
            for limit in [stream.max_ack_pending, account] {
                if limit > 0 && cfg.max_ack_pending > limit {
                    return Err(ApiError::max_ack_pending_exceeds_limit(limit));
                }
            }
        }
        let idle = stream.inactive_threshold;
        if idle > 0 {
            if cfg.inactive_threshold == 0 {
                cfg.inactive_threshold = idle;
            } else if cfg.inactive_threshold > idle {
                return Err(ApiError::inactive_threshold_exceeds_limit(&go_duration(
                    idle,
                )));
            }
        }
        Ok(())
    }
}

/// A stream's `consumer_limits` (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamConsumerLimits {
    /// Most unacknowledged messages a consumer may allow.
    pub max_ack_pending: i64,
    /// Longest inactivity before a consumer is deleted, nanoseconds.
    pub inactive_threshold: i64,
}

impl StreamConsumerLimits {
    /// Read from a stream's configuration (a missing or odd field is 0).
    pub fn of(cfg: &StreamConfig) -> StreamConsumerLimits {
        let get = |k: &str| {
            cfg.consumer_limits
                .get(k)
                .and_then(serde_json::Value::as_i64)
        };
        StreamConsumerLimits {
            max_ack_pending: get("max_ack_pending").unwrap_or(0),
            inactive_threshold: get("inactive_threshold").unwrap_or(0),
        }
    }

    /// Whether a consumer with `cfg` is within these limits (a stream
    /// update must not put an existing consumer outside them).
    pub fn allow(&self, cfg: &ConsumerConfig) -> bool {
        let window_over = self.max_ack_pending > 0 && cfg.max_ack_pending > self.max_ack_pending;
        let idle_over =
            self.inactive_threshold > 0 && cfg.inactive_threshold > self.inactive_threshold;
        !window_over && !idle_over
    }
}

/// Go's `time.Duration` text for whole and fractional seconds and
/// minutes ("5s", "1.5s", "1m30s", "250ms"), as nats-server prints limits.
fn go_duration(nanos: i64) -> String {
    let n = nanos.max(0);
    if n < 1_000_000_000 {
        let ms = n as f64 / 1e6;
        return format!("{}ms", trim(ms));
    }
    let total = n as f64 / 1e9;
    let (h, rest) = ((total / 3600.0).floor(), total % 3600.0);
    let (m, s) = ((rest / 60.0).floor(), rest % 60.0);
    let mut out = String::new();
    if h > 0.0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0.0 || m > 0.0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", trim(s)));
    out
}

fn trim(v: f64) -> String {
    let text = format!("{v:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A consumer's `max_ack_pending` when it sets none (nats-server's).
pub const DEFAULT_MAX_ACK_PENDING: i64 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(storage: StorageType, max_bytes: i64) -> StreamConfig {
        StreamConfig {
            name: "S".into(),
            storage,
            max_bytes,
            ..StreamConfig::default()
        }
    }

    fn account(limits: AccountJetStreamLimits, server: &Arc<ServerResources>) -> AccountResources {
        AccountResources::new(limits, Arc::clone(server))
    }

    #[test]
    fn an_unlimited_account_on_an_unlimited_server_checks_nothing() {
        let a = AccountResources::unlimited();
        assert_eq!(a.publish_checked, [false, false]);
        assert!(a.check_publish(StorageType::File, u64::MAX).is_ok());
        assert!(
            a.reserve(&stream(StorageType::File, -1), None, 1000, (0, 0))
                .is_ok()
        );
    }

    #[test]
    fn a_stream_must_fit_beside_the_reservations_of_the_account_and_the_server() {
        let server = ServerResources::new(-1, 3_000_000);
        let a = account(
            AccountJetStreamLimits {
                max_store: 2_000_000,
                max_streams: 3,
                ..Default::default()
            },
            &server,
        );
        let err = a
            .reserve(&stream(StorageType::File, 3_000_000), None, 0, (0, 0))
            .unwrap_err();
        assert_eq!(err.err_code, 10047);
        a.reserve(&stream(StorageType::File, 1_000_000), None, 0, (0, 0))
            .unwrap();
        assert_eq!(server.reserved(), (0, 1_000_000));
        // Another account fills the server's reservations.
        let b = account(AccountJetStreamLimits::default(), &server);
        assert_eq!(
            b.reserve(&stream(StorageType::File, 2_000_001), None, 0, (0, 0))
                .unwrap_err()
                .err_code,
            10047
        );
        b.reserve(&stream(StorageType::File, 2_000_000), None, 0, (0, 0))
            .unwrap();
        // No room for even one byte now.
        assert_eq!(
            b.reserve(&stream(StorageType::File, -1), None, 1, (2_000_000, 0))
                .unwrap_err()
                .err_code,
            10047
        );
        // A memory stream is not a file stream's concern.
        b.reserve(&stream(StorageType::Memory, -1), None, 1, (0, 2_000_000))
            .unwrap();
        // The stream count is checked on create only.
        assert_eq!(
            a.reserve(&stream(StorageType::Memory, -1), None, 3, (0, 1_000_000))
                .unwrap_err()
                .err_code,
            10027
        );
        // Raising a stream's max_bytes counts only the difference.
        let old = stream(StorageType::File, 2_000_000);
        b.release(&old);
        b.reserve(&old, None, 0, (0, 0)).unwrap();
        b.reserve(&stream(StorageType::File, 2_000_000), Some(&old), 1, (0, 0))
            .unwrap();
        assert_eq!(server.reserved(), (0, 3_000_000));
    }

    #[test]
    fn a_publish_past_the_account_usage_limit_is_refused_and_past_the_server_usage_too() {
        let server = ServerResources::new(-1, 1000);
        let a = account(
            AccountJetStreamLimits {
                max_store: 500,
                ..Default::default()
            },
            &server,
        );
        let meters = a.meters(StorageType::File);
        for m in &meters {
            m.charge_for_test(400);
        }
        a.check_publish(StorageType::File, 100).unwrap();
        assert_eq!(
            a.check_publish(StorageType::File, 101)
                .unwrap_err()
                .err_code,
            10002
        );
        // The server is past its limit (another account stored the rest).
        let b = account(AccountJetStreamLimits::default(), &server);
        b.meters(StorageType::File)[1].charge_for_test(601);
        assert_eq!(
            b.check_publish(StorageType::File, 1).unwrap_err().err_code,
            10023
        );
        // Memory is counted apart.
        b.check_publish(StorageType::Memory, 1).unwrap();
    }

    #[test]
    fn the_account_max_ack_pending_is_the_default_and_the_ceiling() {
        let a = account(
            AccountJetStreamLimits {
                max_ack_pending: 100,
                max_consumers: 2,
                ..Default::default()
            },
            &ServerResources::new(-1, -1),
        );
        let explicit = || ConsumerConfig {
            ack_policy: AckPolicy::Explicit,
            ..ConsumerConfig::default()
        };
        let mut cfg = explicit();
        a.apply_consumer_limits(&StreamConsumerLimits::default(), &mut cfg)
            .unwrap();
        assert_eq!(cfg.max_ack_pending, 100);
        // Without acks there is no window to default.
        let mut cfg = ConsumerConfig {
            ack_policy: AckPolicy::None,
            ..ConsumerConfig::default()
        };
        a.apply_consumer_limits(&StreamConsumerLimits::default(), &mut cfg)
            .unwrap();
        assert_eq!(cfg.max_ack_pending, 0);
        let mut cfg = ConsumerConfig {
            max_ack_pending: 200,
            ..explicit()
        };
        let e = a
            .apply_consumer_limits(&StreamConsumerLimits::default(), &mut cfg)
            .unwrap_err();
        assert_eq!(e.err_code, 10121);
        assert_eq!(
            e.description,
            "consumer max ack pending exceeds system limit of 100"
        );
    }

    #[test]
    fn stream_consumer_limits_default_and_cap_the_window_and_the_inactivity() {
        let a = AccountResources::unlimited();
        let stream = StreamConsumerLimits {
            max_ack_pending: 10,
            inactive_threshold: 5_000_000_000,
        };
        let mut cfg = ConsumerConfig {
            ack_policy: AckPolicy::Explicit,
            ..ConsumerConfig::default()
        };
        a.apply_consumer_limits(&stream, &mut cfg).unwrap();
        assert_eq!(
            (cfg.max_ack_pending, cfg.inactive_threshold),
            (10, 5_000_000_000)
        );
        assert!(stream.allow(&cfg));
        cfg.max_ack_pending = 11;
        assert_eq!(
            a.apply_consumer_limits(&stream, &mut cfg)
                .unwrap_err()
                .err_code,
            10121
        );
        assert!(!stream.allow(&cfg));
        cfg.max_ack_pending = 5;
        cfg.inactive_threshold = 90_500_000_000;
        let e = a.apply_consumer_limits(&stream, &mut cfg).unwrap_err();
        assert_eq!(
            (e.err_code, e.description.as_str()),
            (
                10153,
                "consumer inactive threshold exceeds system limit of 5s"
            )
        );
        assert_eq!(go_duration(90_500_000_000), "1m30.5s");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    }

    #[test]
    fn the_account_max_consumers_is_a_per_stream_ceiling_the_stricter_one_wins() {
        let a = account(
            AccountJetStreamLimits {
                max_consumers: 2,
                ..Default::default()
            },
            &ServerResources::new(-1, -1),
        );
        assert_eq!(a.max_consumers(0), 2);
        assert_eq!(a.max_consumers(5), 2);
        assert_eq!(a.max_consumers(1), 1);
        let u = AccountResources::unlimited();
        assert_eq!(u.max_consumers(0), -1);
        assert_eq!(u.max_consumers(3), 3);
    }
}
