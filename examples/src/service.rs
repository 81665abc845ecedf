//! The command side: aggregate state, command execution, publishing.

use std::collections::HashMap;
use std::sync::Arc;

use bus::{Bus, BusError, EventEnvelope, StartPosition};

use crate::domain::{CommandError, Event, HAND, Hand, PLAYER, Player};

/// A command failed: refused by the domain, or the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The aggregate refused the command (expected in normal operation).
    #[error(transparent)]
    Rejected(#[from] CommandError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Runs commands against aggregate state and publishes the resulting events.
///
/// State is rebuilt from the bus at start ([`CommandService::rebuild`]) and kept
/// current as this service publishes; it assumes it is the only writer of
/// these aggregates (the example has one command process).
pub struct CommandService {
    bus: Arc<dyn Bus>,
    players: HashMap<String, Player>,
    hands: HashMap<String, Hand>,
    published: u64,
}

impl CommandService {
    /// A service with empty state.
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        CommandService {
            bus,
            players: HashMap::new(),
            hands: HashMap::new(),
            published: 0,
        }
    }

    /// A service whose state is folded from every event already on the bus.
    pub async fn rebuild(bus: Arc<dyn Bus>) -> Result<Self, BusError> {
        let mut s = CommandService::new(Arc::clone(&bus));
        let mut replay = bus
            .replay(&bus.layout().all(), StartPosition::Beginning)
            .await?;
        while let Some(stored) = replay.next().await {
            let stored = stored?;
            let env = &stored.envelope;
            if let Some(event) = Event::from_envelope(env)? {
                match env.aggregate_type.as_str() {
                    PLAYER => s
                        .players
                        .entry(env.aggregate_id.clone())
                        .or_default()
                        .apply(&event),
                    HAND => s
                        .hands
                        .entry(env.aggregate_id.clone())
                        .or_default()
                        .apply(&event),
                    _ => {}
                }
            }
        }
        Ok(s)
    }

    /// Events this service has published.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Current state of a player.
    pub fn player(&self, id: &str) -> Option<&Player> {
        self.players.get(id)
    }

    /// Register a player.
    pub async fn register(
        &mut self,
        id: &str,
        name: &str,
        cause: &str,
    ) -> Result<(), ServiceError> {
        let events = self.player_state(id).register(id, name)?;
        self.commit_player(id, events, cause).await
    }

    /// Deposit chips.
    pub async fn deposit(
        &mut self,
        id: &str,
        amount: i64,
        cause: &str,
    ) -> Result<(), ServiceError> {
        let events = self.player_state(id).deposit(id, amount, "deposit")?;
        self.commit_player(id, events, cause).await
    }

    /// Deal a hand.
    pub async fn deal(
        &mut self,
        hand: &str,
        players: &[String],
        seed: u64,
        cause: &str,
    ) -> Result<(), ServiceError> {
        for p in players {
            if !self.player_state(p).registered {
                return Err(CommandError::UnknownPlayer(p.clone()).into());
            }
        }
        let events = self.hand_state(hand).deal(hand, players, seed)?;
        self.commit_hand(hand, events, cause).await
    }

    /// A player stakes `amount`: chips leave the player, then enter the pot.
    pub async fn bet(
        &mut self,
        hand: &str,
        player: &str,
        amount: i64,
        cause: &str,
    ) -> Result<(), ServiceError> {
        let bet = self.hand_state(hand).bet(hand, player, amount)?;
        let withdraw =
            self.player_state(player)
                .withdraw(player, amount, &format!("bet:{hand}"))?;
        self.commit_player(player, withdraw, cause).await?;
        self.commit_hand(hand, bet, cause).await
    }

    /// A player wins the pot: the hand ends, then the chips reach the player.
    pub async fn win(&mut self, hand: &str, player: &str, cause: &str) -> Result<(), ServiceError> {
        let won = self.hand_state(hand).win(hand, player)?;
        let pot = self.hand_state(hand).pot;
        self.commit_hand(hand, won, cause).await?;
        if pot > 0 {
            let deposit =
                self.player_state(player)
                    .deposit(player, pot, &format!("hand_won:{hand}"))?;
            self.commit_player(player, deposit, cause).await?;
        }
        Ok(())
    }

    fn player_state(&self, id: &str) -> Player {
        self.players.get(id).cloned().unwrap_or_default()
    }

    fn hand_state(&self, id: &str) -> Hand {
        self.hands.get(id).cloned().unwrap_or_default()
    }

    async fn commit_player(
        &mut self,
        id: &str,
        events: Vec<Event>,
        cause: &str,
    ) -> Result<(), ServiceError> {
        let version = self.player_state(id).version;
        self.publish(id, version, &events, cause).await?;
        let state = self.players.entry(id.to_owned()).or_default();
        for e in &events {
            state.apply(e);
        }
        Ok(())
    }

    async fn commit_hand(
        &mut self,
        id: &str,
        events: Vec<Event>,
        cause: &str,
    ) -> Result<(), ServiceError> {
        let version = self.hand_state(id).version;
        self.publish(id, version, &events, cause).await?;
        let state = self.hands.entry(id.to_owned()).or_default();
        for e in &events {
            state.apply(e);
        }
        Ok(())
    }

    async fn publish(
        &mut self,
        id: &str,
        version: u64,
        events: &[Event],
        cause: &str,
    ) -> Result<(), BusError> {
        let envelopes: Vec<EventEnvelope> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                e.to_envelope(id, version + i as u64 + 1)
                    .with_correlation_id(cause)
                    .with_causation_id(cause)
            })
            .collect();
        let receipts = self.bus.publish_batch(envelopes).await?;
        self.published += receipts.iter().filter(|r| !r.duplicate).count() as u64;
        Ok(())
    }
}
