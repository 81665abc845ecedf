//! Read models and the loop that feeds them from a durable consumer.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, BusError, Consumer, Delivery, EventEnvelope, Filter, StartPosition};
use tokio::sync::watch;

use crate::domain::Event;

/// Something built by folding events. Must ignore an event it has already
/// applied (delivery is at-least-once).
pub trait Projection: Send + 'static {
    /// Applies one event; returns false when it was already applied.
    fn apply(&mut self, envelope: &EventEnvelope) -> Result<bool, BusError>;
}

/// Event ids already applied. Delivery is at-least-once and a redelivery
/// may come after later events, so the models below are built to be
/// independent of order (sums and counts of amounts, not "balance after"),
/// and skip an event they have seen. (A production projector would keep this
/// in its own store, e.g. per aggregate a set of applied sequences.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied(HashSet<String>);

impl Applied {
    /// The decoded event the first time its id is seen; `None` for a repeat
    /// or an event type this service does not know.
    pub fn new_event(&mut self, e: &EventEnvelope) -> Result<Option<Event>, BusError> {
        let Some(event) = Event::from_envelope(e)? else {
            return Ok(None);
        };
        Ok(self.0.insert(e.event_id.clone()).then_some(event))
    }
}

/// Balances and hand statistics, from every event (`angzarr.events.*.>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Chips per player.
    pub balances: BTreeMap<String, i64>,
    /// Hands dealt to each player.
    pub hands_played: BTreeMap<String, u64>,
    /// Hands won by each player.
    pub hands_won: BTreeMap<String, u64>,
    /// Sum of all pots won.
    pub chips_won: i64,
    /// Events applied.
    pub events: u64,
    applied: Applied,
}

impl Projection for TableStats {
    fn apply(&mut self, envelope: &EventEnvelope) -> Result<bool, BusError> {
        let Some(event) = self.applied.new_event(envelope)? else {
            return Ok(false);
        };
        match event {
            Event::PlayerRegistered(e) => {
                self.balances.entry(e.player_id).or_insert(0);
            }
            Event::FundsDeposited(e) => {
                *self.balances.entry(e.player_id).or_insert(0) += e.amount;
            }
            Event::FundsWithdrawn(e) => {
                *self.balances.entry(e.player_id).or_insert(0) -= e.amount;
            }
            Event::CardsDealt(e) => {
                for p in e.player_ids {
                    *self.hands_played.entry(p).or_insert(0) += 1;
                }
            }
            Event::BetPlaced(_) => {}
            Event::HandWon(e) => {
                *self.hands_won.entry(e.player_id).or_insert(0) += 1;
                self.chips_won += e.pot;
            }
        }
        self.events += 1;
        Ok(true)
    }
}

/// Player directory, from player events only (`angzarr.events.player.>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayerDirectory {
    /// Names by player id.
    pub names: BTreeMap<String, String>,
    /// All chips ever deposited.
    pub deposited: i64,
    /// All chips ever withdrawn.
    pub withdrawn: i64,
    /// Events applied.
    pub events: u64,
    applied: Applied,
}

impl Projection for PlayerDirectory {
    fn apply(&mut self, envelope: &EventEnvelope) -> Result<bool, BusError> {
        let Some(event) = self.applied.new_event(envelope)? else {
            return Ok(false);
        };
        match event {
            Event::PlayerRegistered(e) => {
                self.names.insert(e.player_id, e.name);
            }
            Event::FundsDeposited(e) => self.deposited += e.amount,
            Event::FundsWithdrawn(e) => self.withdrawn += e.amount,
            _ => {}
        }
        self.events += 1;
        Ok(true)
    }
}

/// Feeds `model` from `consumer` until `stop` turns true. Each delivery is
/// applied in order, then the batch is acked; one that cannot be decoded is terminated (it goes to
/// the dead-letter store with the reason) rather than retried forever.
/// Returns how many deliveries it handled.
pub async fn run<P: Projection>(
    mut consumer: Consumer,
    model: Arc<Mutex<P>>,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, BusError> {
    let mut handled = 0;
    // The stop flag is checked between fetches (each waits at most 100 ms),
    // so no fetch is cut off mid-way; then the handle is closed, handing
    // back at once anything that reached it unreturned.
    while !*stop.borrow_and_update() {
        let batch = consumer.fetch(256, Duration::from_millis(100)).await?;
        // Apply in delivery order; then acknowledge the batch with one
        // confirmation (one round trip for the batch instead of one per event).
        let mut applied_ok = Vec::with_capacity(batch.len());
        for delivery in &batch {
            let applied = match model.lock() {
                Ok(mut m) => m.apply(delivery.envelope()),
                Err(poisoned) => poisoned.into_inner().apply(delivery.envelope()),
            };
            match applied {
                Ok(_) => applied_ok.push(delivery),
                Err(e) => {
                    delivery
                        .term(format!("projector cannot apply: {e}"))
                        .await?
                }
            }
            handled += 1;
        }
        Delivery::ack_all(applied_ok).await?;
    }
    consumer.close().await?;
    Ok(handled)
}

/// Folds a fresh model from a full replay of `filter`.
pub async fn rebuild<P: Projection + Default>(
    bus: &dyn Bus,
    filter: &Filter,
) -> Result<P, BusError> {
    let mut model = P::default();
    let mut replay = bus.replay(filter, StartPosition::Beginning).await?;
    while let Some(stored) = replay.next().await {
        model.apply(&stored?.envelope)?;
    }
    Ok(model)
}
