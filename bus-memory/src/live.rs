//! Live (at-most-once) subscribers: a bounded channel each, fed under the bus
//! lock in store order with `try_send`. A full channel loses the event for
//! that subscriber only (like a core NATS slow consumer); a closed one is
//! removed.

use std::time::Duration;

use bus_core::{EventEnvelope, Filter, LiveEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// At most one warning per subscriber in this interval; other drops log at debug.
const WARN_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<LiveEvent>,
    /// Drops since the last warning.
    unreported: u64,
    /// Drops over the subscriber's lifetime.
    dropped: u64,
    last_warning: Option<Instant>,
}

/// Every live subscriber of the bus.
#[derive(Debug, Default)]
pub(crate) struct Live {
    subscribers: Vec<Subscriber>,
    dropped_total: u64,
}

impl Live {
    /// Registers a subscriber with a buffer of `buffer` events (at least 1).
    pub fn add(&mut self, filter: Filter, buffer: usize) -> mpsc::Receiver<LiveEvent> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        self.subscribers.push(Subscriber {
            filter,
            tx,
            unreported: 0,
            dropped: 0,
            last_warning: None,
        });
        rx
    }

    /// True when there is nobody to send to.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Events dropped for slow subscribers since the bus was created.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Offers one stored event to every matching subscriber.
    pub fn dispatch(&mut self, subject: &str, envelope: &EventEnvelope, now: Instant) {
        let mut dropped_here = 0;
        self.subscribers.retain_mut(|s| {
            if s.tx.is_closed() {
                return false;
            }
            if !s.filter.matches(subject) {
                return true;
            }
            let event = LiveEvent {
                subject: subject.to_owned(),
                envelope: envelope.clone(),
            };
            match s.tx.try_send(event) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped_here += 1;
                    s.dropped += 1;
                    s.unreported += 1;
                    let due = s
                        .last_warning
                        .is_none_or(|at| now.saturating_duration_since(at) >= WARN_INTERVAL);
                    if due {
                        tracing::warn!(
                            filter = %s.filter,
                            dropped = s.unreported,
                            dropped_total = s.dropped,
                            "live subscriber is not keeping up; events dropped (at-most-once)"
                        );
                        s.unreported = 0;
                        s.last_warning = Some(now);
                    } else {
                        tracing::debug!(filter = %s.filter, subject, "live event dropped for a slow subscriber");
                    }
                    true
                }
            }
        });
        self.dropped_total += dropped_here;
    }
}
