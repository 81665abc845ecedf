//! Consumer handles and acknowledgement handles.
//!
//! A handle names one incarnation of a consumer (name + id): after the
//! consumer is deleted (even if re-created under the same name) the handle
//! reports `NotFound`. Waiting: register interest on the consumer's `Notify`
//! *before* looking at the state, look under the lock, and if nothing can be
//! handed out sleep until notified or until the consumer's earliest timer.
//! Deliveries are only taken from the state in the same critical section that
//! returns them, so dropping a waiting future loses nothing.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus_core::{Acker, BusError, ConsumerBackend, ConsumerInfo, Delivery, Result};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};

use crate::consumer::{ConsumerState, Settled};
use crate::dead::DeadLetters;
use crate::log::{Log, after_saturating};
use crate::state::Shared;

fn not_found(name: &str) -> BusError {
    BusError::NotFound {
        what: "consumer",
        name: name.to_owned(),
    }
}

/// One handle on a durable consumer.
pub(crate) struct MemoryConsumer {
    shared: Arc<Shared>,
    name: String,
    id: u64,
    notify: Arc<Notify>,
}

impl MemoryConsumer {
    pub fn new(shared: Arc<Shared>, name: String, id: u64, notify: Arc<Notify>) -> Self {
        MemoryConsumer {
            shared,
            name,
            id,
            notify,
        }
    }

    /// Takes up to `max` deliveries now. Returns them and, when there are
    /// none, the instant at which a timer of the consumer is next due.
    fn take(&self, max: usize) -> Result<(Vec<Delivery>, Option<Instant>)> {
        let mut guard = self.shared.lock();
        let now = Instant::now();
        guard.expire(now, &self.shared.stream);
        let (consumer, log, dead) = guard
            .consumer(&self.name, Some(self.id))
            .ok_or_else(|| not_found(&self.name))?;
        if consumer.sweep(now, log, dead) {
            // Others may wait on slots freed by dead-lettering.
            consumer.notify.notify_waiters();
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some((event, attempt)) = consumer.take(now, log, dead) else {
                break;
            };
            let acker = MemoryAcker {
                shared: Arc::clone(&self.shared),
                name: self.name.clone(),
                id: self.id,
                position: event.position,
                attempt,
            };
            out.push(Delivery::new(event, attempt, Box::new(acker)));
        }
        let wake = if out.is_empty() {
            consumer.next_wake()
        } else {
            None
        };
        Ok((out, wake))
    }
}

#[async_trait]
impl ConsumerBackend for MemoryConsumer {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            let (mut got, wake) = self.take(1)?;
            if let Some(delivery) = got.pop() {
                return Ok(delivery);
            }
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let deadline = after_saturating(Instant::now(), wait);
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            let (got, wake) = self.take(max)?;
            if !got.is_empty() || max == 0 {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                return Ok(got);
            }
            let until = wake.map_or(deadline, |w| w.min(deadline));
            tokio::select! {
                () = notified => {}
                () = sleep_until(until) => {}
            }
        }
    }

    async fn info(&self) -> Result<ConsumerInfo> {
        let mut guard = self.shared.lock();
        let now = Instant::now();
        guard.expire(now, &self.shared.stream);
        let (consumer, log, dead) = guard
            .consumer(&self.name, Some(self.id))
            .ok_or_else(|| not_found(&self.name))?;
        if consumer.sweep(now, log, dead) {
            consumer.notify.notify_waiters();
        }
        Ok(consumer.info(log))
    }
}

/// Acknowledgement handle of one delivery.
struct MemoryAcker {
    shared: Arc<Shared>,
    name: String,
    id: u64,
    position: u64,
    attempt: u32,
}

impl MemoryAcker {
    /// Runs `f` on the consumer under the lock; notifies its waiters when the
    /// state changed. `Ok(None)` when the consumer no longer exists.
    fn with_consumer(
        &self,
        f: impl FnOnce(&mut ConsumerState, &Log, &mut DeadLetters, Instant) -> Settled,
    ) -> Option<Settled> {
        let mut guard = self.shared.lock();
        let now = Instant::now();
        guard.expire(now, &self.shared.stream);
        let (consumer, log, dead) = guard.consumer(&self.name, Some(self.id))?;
        let settled = f(consumer, log, dead, now);
        if settled == Settled::Changed {
            consumer.notify.notify_waiters();
        }
        Some(settled)
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<()> {
        // Acknowledging for a deleted consumer has nothing left to do.
        let position = self.position;
        self.with_consumer(|c, _, dead, _| c.ack(position, dead));
        Ok(())
    }

    async fn nak(&self, delay: Option<Duration>, reason: Option<String>) -> Result<()> {
        let (position, attempt) = (self.position, self.attempt);
        self.with_consumer(|c, log, dead, now| {
            c.nak(position, attempt, (delay, reason), now, log, dead)
        })
        .map(|_| ())
        .ok_or_else(|| not_found(&self.name))
    }

    async fn term(&self, reason: String) -> Result<()> {
        let position = self.position;
        self.with_consumer(|c, log, dead, _| c.term(position, reason, log, dead))
            .map(|_| ())
            .ok_or_else(|| not_found(&self.name))
    }

    async fn in_progress(&self) -> Result<()> {
        let (position, attempt) = (self.position, self.attempt);
        self.with_consumer(|c, _, _, now| c.in_progress(position, attempt, now))
            .map(|_| ())
            .ok_or_else(|| not_found(&self.name))
    }
}
