//! Consumer priority groups (ADR-42, nats-server 2.11/2.12): the
//! `priority_policy` of a pull consumer and what it does to the waiting
//! pull requests.
//!
//! - `overflow`: a request carrying `min_pending` / `min_ack_pending` is
//!   served only while the consumer has at least that many messages left to
//!   deliver / awaiting acknowledgement; others are passed over.
//! - `pinned_client`: the first request of the group to be served pins the
//!   consumer to a fresh id (sent in `Nats-Pin-Id` on every delivery); only
//!   requests carrying that id are served afterwards, requests with another
//!   id get `423`. The pin lapses after `priority_timeout` without a request
//!   carrying it, or on `$JS.API.CONSUMER.UNPIN`.
//! - `prioritized`: requests wait ordered by their `priority` (0 first),
//!   oldest first within one priority.
//!
//! This module owns the configuration rules (nats-server's texts and error
//! codes), the request checks and the choice of the request to serve; the
//! consumer keeps the pin in its state and calls in here only when its
//! policy is not `none`, so plain consumers pay one comparison.
//! It must not deliver, read the stream or touch the store.

use serde::Deserialize;
use tokio::time::Instant;

use crate::jetstream::errors::ApiError;
use crate::jetstream::types::ConsumerConfig;
pub use crate::jetstream::types::PriorityPolicy;

/// How long a pin lasts without a request carrying it, by default (ns).
pub const DEFAULT_PINNED_TTL: i64 = 120_000_000_000;

/// A valid group name: 1 to 16 of `A-Z a-z 0-9 - _ / =`.
pub fn valid_group_name(name: &str) -> bool {
    (1..=16).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'='))
}

/// The configuration rules, in nats-server's order (after its other
/// consumer checks).
pub(crate) fn check_config(cfg: &ConsumerConfig) -> Result<(), ApiError> {
    if !cfg.priority_policy.is_none() {
        if cfg.is_push() {
            return Err(ApiError::push_with_priority_group());
        }
        if cfg.priority_groups.is_empty() {
            return Err(ApiError::priority_policy_without_group());
        }
        for group in &cfg.priority_groups {
            if group.is_empty() {
                return Err(ApiError::empty_group_name());
            }
            if !valid_group_name(group) {
                return Err(ApiError::invalid_group_name());
            }
        }
    } else {
        if !cfg.priority_groups.is_empty() {
            return Err(ApiError::priority_group_with_policy_none());
        }
        if cfg.priority_timeout > 0 {
            return Err(ApiError::pinned_ttl_without_priority_policy());
        }
    }
    Ok(())
}

/// nats-server's defaults: a negative timeout is none, a pinned consumer
/// without one gets two minutes.
pub(crate) fn normalize(cfg: &mut ConsumerConfig) {
    if cfg.priority_timeout < 0 {
        cfg.priority_timeout = 0;
    }
    if cfg.priority_policy == PriorityPolicy::PinnedClient && cfg.priority_timeout == 0 {
        cfg.priority_timeout = DEFAULT_PINNED_TTL;
    }
}

/// The priority fields of a JSON pull request (nats-server reads them from
/// any JSON body, so a JSON request always has them, empty or not; a bare
/// number or an empty body has none).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PullPriority {
    pub group: String,
    pub min_pending: i64,
    pub min_ack_pending: i64,
    pub id: String,
    pub priority: i64,
}

impl PullPriority {
    /// Its rank in a prioritized queue (requests without JSON come last).
    pub fn rank(p: Option<&PullPriority>) -> i64 {
        p.map_or(i64::from(i32::MAX), |p| p.priority)
    }
}

/// Why a pull request is refused on arrival: the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `400 Bad Request - ...`
    BadRequest(&'static str),
    /// `423 Nats-Pin-Id mismatch`: the consumer is pinned to another id.
    PinMismatch,
}

impl Refusal {
    /// Status code and description.
    pub fn status(&self) -> (u16, String) {
        match self {
            Refusal::BadRequest(why) => (400, format!("Bad Request - {why}")),
            Refusal::PinMismatch => (423, "Nats-Pin-Id mismatch".to_owned()),
        }
    }
}

/// The consumer's current pin.
#[derive(Debug, Clone)]
pub(crate) struct Pin {
    /// The id requests must carry.
    pub id: String,
    /// When it was assigned (Unix ns).
    pub ts: i64,
    /// The group it was assigned for.
    pub group: String,
    /// When it lapses unless a request carrying it arrives.
    pub expires: Instant,
}

/// Checks an arriving pull request's priority fields against the
/// consumer's policy (nats-server's order). `Ok(true)`: the request carries
/// the current pin, whose timer starts again.
pub(crate) fn check_request(
    cfg: &ConsumerConfig,
    pin: Option<&Pin>,
    req: Option<&PullPriority>,
) -> Result<bool, Refusal> {
    let Some(p) = req else {
        return Ok(false);
    };
    let policy = cfg.priority_policy;
    if (p.min_pending != 0 || p.min_ack_pending != 0) && policy != PriorityPolicy::Overflow {
        return Err(Refusal::BadRequest("Not a Overflow Priority consumer"));
    }
    if !p.id.is_empty() && policy != PriorityPolicy::PinnedClient {
        return Err(Refusal::BadRequest("Not a Pinned Client Priority consumer"));
    }
    if !(0..=9).contains(&p.priority) {
        return Err(Refusal::BadRequest("Priority must be between 0 and 9"));
    }
    if policy.is_none() {
        return Ok(false);
    }
    if p.group.is_empty() {
        return Err(Refusal::BadRequest("Priority Group missing"));
    }
    if !cfg.priority_groups.contains(&p.group) {
        return Err(Refusal::BadRequest("Invalid Priority Group"));
    }
    match pin {
        Some(pin) if pin.id == p.id => Ok(true),
        Some(_) if !p.id.is_empty() => Err(Refusal::PinMismatch),
        _ => Ok(false),
    }
}

/// What to do with the request at the head of the queue, for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve it; `pin` it first with a new id for its group, if `Some`.
    Serve { pin: Option<String> },
    /// Pass it over for now (to the back of the queue).
    Skip,
    /// End it with `423 Nats-Wrong-Pin-Id` (it carries a stale pin).
    WrongPin,
}

/// Decides for the request at the head of the queue. `pending`: messages
/// left to deliver counting the one at hand; `ack_pending`: messages
/// awaiting acknowledgement now.
pub(crate) fn verdict(
    policy: PriorityPolicy,
    pin: Option<&Pin>,
    req: Option<&PullPriority>,
    pending: u64,
    ack_pending: u64,
) -> Verdict {
    let id = req.map_or("", |p| p.id.as_str());
    let mut new_pin = None;
    if policy == PriorityPolicy::PinnedClient {
        match pin {
            None if id.is_empty() => {
                // The first request served pins the consumer (a request
                // without a group, a bare batch size, is served unpinned).
                new_pin = req.filter(|p| !p.group.is_empty()).map(|p| p.group.clone());
            }
            None => return Verdict::WrongPin,
            Some(pin) if pin.id == id => {}
            Some(_) if id.is_empty() => return Verdict::Skip,
            Some(_) => return Verdict::WrongPin,
        }
    }
    if policy == PriorityPolicy::Overflow
        && let Some(p) = req
        && (p.min_pending > 0 || p.min_ack_pending > 0)
    {
        let over_pending =
            p.min_pending > 0 && u64::try_from(p.min_pending).is_ok_and(|m| m <= pending);
        let over_acks = p.min_ack_pending > 0
            && u64::try_from(p.min_ack_pending).is_ok_and(|m| m <= ack_pending);
        if !over_pending && !over_acks {
            return Verdict::Skip;
        }
    }
    Verdict::Serve { pin: new_pin }
}

/// A new pin id: 22 random base-62 characters (the shape of nats-server's).
pub(crate) fn new_pin_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = u128::from_le_bytes(*uuid::Uuid::new_v4().as_bytes());
    let mut out = String::with_capacity(22);
    for _ in 0..22 {
        out.push(char::from(ALPHABET[(n % 62) as usize]));
        n /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(policy: PriorityPolicy, groups: &[&str]) -> ConsumerConfig {
        ConsumerConfig {
            priority_policy: policy,
            priority_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..ConsumerConfig::default()
        }
    }

    fn req(group: &str, id: &str) -> PullPriority {
        PullPriority {
            group: group.to_owned(),
            id: id.to_owned(),
            ..PullPriority::default()
        }
    }

    #[test]
    fn group_names_follow_nats_servers_pattern() {
        for ok in ["A", "jobs", "a-b_c/d=e", "0123456789abcdef"] {
            assert!(valid_group_name(ok), "{ok}");
        }
        for bad in ["", "a.b", "a b", "0123456789abcdefg", "é"] {
            assert!(!valid_group_name(bad), "{bad}");
        }
    }

    #[test]
    fn config_rules_give_nats_servers_errors() {
        let code = |c: &ConsumerConfig| check_config(c).err().map(|e| e.err_code);
        assert_eq!(code(&cfg(PriorityPolicy::Overflow, &[])), Some(10159));
        assert_eq!(code(&cfg(PriorityPolicy::Overflow, &[""])), Some(10161));
        assert_eq!(code(&cfg(PriorityPolicy::Overflow, &["a.b"])), Some(10162));
        assert_eq!(code(&cfg(PriorityPolicy::None, &["A"])), Some(10196));
        let mut push = cfg(PriorityPolicy::PinnedClient, &["A"]);
        push.deliver_subject = Some("d".into());
        assert_eq!(code(&push), Some(10178));
        let mut ttl = cfg(PriorityPolicy::None, &[]);
        ttl.priority_timeout = 1;
        assert_eq!(code(&ttl), Some(10197));
        assert_eq!(code(&cfg(PriorityPolicy::Prioritized, &["A", "B"])), None);
    }

    #[test]
    fn a_pinned_consumer_without_a_timeout_gets_two_minutes() {
        let mut c = cfg(PriorityPolicy::PinnedClient, &["A"]);
        c.priority_timeout = -5;
        normalize(&mut c);
        assert_eq!(c.priority_timeout, DEFAULT_PINNED_TTL);
        let mut o = cfg(PriorityPolicy::Overflow, &["A"]);
        normalize(&mut o);
        assert_eq!(o.priority_timeout, 0);
    }

    #[test]
    fn request_checks_come_in_nats_servers_order() {
        let pinned = cfg(PriorityPolicy::PinnedClient, &["A"]);
        let mut p = req("A", "");
        p.min_pending = 1;
        assert_eq!(
            check_request(&pinned, None, Some(&p)),
            Err(Refusal::BadRequest("Not a Overflow Priority consumer"))
        );
        let overflow = cfg(PriorityPolicy::Overflow, &["A"]);
        assert_eq!(
            check_request(&overflow, None, Some(&req("A", "x"))),
            Err(Refusal::BadRequest("Not a Pinned Client Priority consumer"))
        );
        let mut p = req("A", "");
        p.priority = 10;
        assert!(check_request(&overflow, None, Some(&p)).is_err());
        assert_eq!(
            check_request(&overflow, None, Some(&req("", ""))),
            Err(Refusal::BadRequest("Priority Group missing"))
        );
        assert_eq!(
            check_request(&overflow, None, Some(&req("B", ""))),
            Err(Refusal::BadRequest("Invalid Priority Group"))
        );
        let pin = Pin {
            id: "P".into(),
            ts: 0,
            group: "A".into(),
            expires: Instant::now(),
        };
        assert_eq!(
            check_request(&pinned, Some(&pin), Some(&req("A", "P"))),
            Ok(true)
        );
        assert_eq!(
            check_request(&pinned, Some(&pin), Some(&req("A", ""))),
            Ok(false)
        );
        assert_eq!(
            check_request(&pinned, Some(&pin), Some(&req("A", "Q"))),
            Err(Refusal::PinMismatch)
        );
        // No JSON body: nothing to check, even on a priority consumer.
        assert_eq!(check_request(&pinned, Some(&pin), None), Ok(false));
    }

    #[test]
    fn overflow_requests_wait_until_the_consumer_is_behind_enough() {
        let mut p = req("A", "");
        p.min_pending = 5;
        let v = |pending, acks| verdict(PriorityPolicy::Overflow, None, Some(&p), pending, acks);
        assert_eq!(v(4, 100), Verdict::Skip);
        assert_eq!(v(5, 0), Verdict::Serve { pin: None });
        p.min_ack_pending = 3;
        let v = |pending, acks| verdict(PriorityPolicy::Overflow, None, Some(&p), pending, acks);
        assert_eq!(v(1, 3), Verdict::Serve { pin: None });
        assert_eq!(v(1, 2), Verdict::Skip);
    }

    #[test]
    fn the_first_request_served_pins_and_others_wait_or_are_refused() {
        let policy = PriorityPolicy::PinnedClient;
        assert_eq!(
            verdict(policy, None, Some(&req("A", "")), 1, 0),
            Verdict::Serve {
                pin: Some("A".into())
            }
        );
        assert_eq!(
            verdict(policy, None, Some(&req("A", "old")), 1, 0),
            Verdict::WrongPin
        );
        assert_eq!(
            verdict(policy, None, None, 1, 0),
            Verdict::Serve { pin: None }
        );
        let pin = Pin {
            id: "P".into(),
            ts: 0,
            group: "A".into(),
            expires: Instant::now(),
        };
        assert_eq!(
            verdict(policy, Some(&pin), Some(&req("A", "P")), 1, 0),
            Verdict::Serve { pin: None }
        );
        assert_eq!(
            verdict(policy, Some(&pin), Some(&req("A", "")), 1, 0),
            Verdict::Skip
        );
        assert_eq!(verdict(policy, Some(&pin), None, 1, 0), Verdict::Skip);
        assert_eq!(
            verdict(policy, Some(&pin), Some(&req("A", "Q")), 1, 0),
            Verdict::WrongPin
        );
    }

    #[test]
    fn pin_ids_are_22_base62_characters_and_differ() {
        let a = new_pin_id();
        assert_eq!(a.len(), 22);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, new_pin_id());
    }
}
