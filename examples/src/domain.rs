//! Aggregates, commands and events of the poker domain.
//!
//! Each aggregate's state is a fold of its events (`apply`); each command is
//! checked against that state (`handle`) and yields events, never mutates.

use std::collections::BTreeSet;

use bus::EventEnvelope;
use prost::Name;

use crate::pb;

/// Aggregate type token of players.
pub const PLAYER: &str = "player";
/// Aggregate type token of hands.
pub const HAND: &str = "hand";

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The player is not registered.
    #[error("player {0} is not registered")]
    UnknownPlayer(String),
    /// The player is already registered.
    #[error("player {0} is already registered")]
    AlreadyRegistered(String),
    /// Amounts must be positive.
    #[error("amount must be positive, got {0}")]
    NonPositiveAmount(i64),
    /// Not enough chips.
    #[error("player {player} has {balance} chips, needs {needed}")]
    InsufficientFunds {
        /// The player.
        player: String,
        /// Current balance.
        balance: i64,
        /// Amount asked for.
        needed: i64,
    },
    /// The hand state does not allow this.
    #[error("hand {hand}: {reason}")]
    InvalidHand {
        /// The hand.
        hand: String,
        /// What is wrong.
        reason: String,
    },
}

/// A domain event of either aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A player joined.
    PlayerRegistered(pb::PlayerRegistered),
    /// Chips in.
    FundsDeposited(pb::FundsDeposited),
    /// Chips out.
    FundsWithdrawn(pb::FundsWithdrawn),
    /// A hand started.
    CardsDealt(pb::CardsDealt),
    /// A bet went into the pot.
    BetPlaced(pb::BetPlaced),
    /// A hand ended.
    HandWon(pb::HandWon),
}

impl Event {
    /// Decodes a bus envelope into a domain event; `None` for event types this
    /// service does not know (they are skipped, not failed).
    pub fn from_envelope(e: &EventEnvelope) -> Result<Option<Event>, bus::BusError> {
        Ok(Some(match e.event_type.as_str() {
            t if t == pb::PlayerRegistered::NAME => Event::PlayerRegistered(e.decode_payload()?),
            t if t == pb::FundsDeposited::NAME => Event::FundsDeposited(e.decode_payload()?),
            t if t == pb::FundsWithdrawn::NAME => Event::FundsWithdrawn(e.decode_payload()?),
            t if t == pb::CardsDealt::NAME => Event::CardsDealt(e.decode_payload()?),
            t if t == pb::BetPlaced::NAME => Event::BetPlaced(e.decode_payload()?),
            t if t == pb::HandWon::NAME => Event::HandWon(e.decode_payload()?),
            _ => return Ok(None),
        }))
    }

    /// Wraps the event in an envelope for `aggregate_id` at `sequence`.
    pub fn to_envelope(&self, aggregate_id: &str, sequence: u64) -> EventEnvelope {
        match self {
            Event::PlayerRegistered(m) => {
                EventEnvelope::from_message(PLAYER, aggregate_id, sequence, m)
            }
            Event::FundsDeposited(m) => {
                EventEnvelope::from_message(PLAYER, aggregate_id, sequence, m)
            }
            Event::FundsWithdrawn(m) => {
                EventEnvelope::from_message(PLAYER, aggregate_id, sequence, m)
            }
            Event::CardsDealt(m) => EventEnvelope::from_message(HAND, aggregate_id, sequence, m),
            Event::BetPlaced(m) => EventEnvelope::from_message(HAND, aggregate_id, sequence, m),
            Event::HandWon(m) => EventEnvelope::from_message(HAND, aggregate_id, sequence, m),
        }
    }
}

/// State of one player, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Player {
    /// Registered yet?
    pub registered: bool,
    /// Display name.
    pub name: String,
    /// Chips.
    pub balance: i64,
    /// Events applied (the aggregate version).
    pub version: u64,
}

impl Player {
    /// Folds one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::PlayerRegistered(e) => {
                self.registered = true;
                self.name.clone_from(&e.name);
            }
            Event::FundsDeposited(e) => self.balance = e.balance_after,
            Event::FundsWithdrawn(e) => self.balance = e.balance_after,
            _ => return,
        }
        self.version += 1;
    }

    /// Register.
    pub fn register(&self, id: &str, name: &str) -> Result<Vec<Event>, CommandError> {
        if self.registered {
            return Err(CommandError::AlreadyRegistered(id.to_owned()));
        }
        Ok(vec![Event::PlayerRegistered(pb::PlayerRegistered {
            player_id: id.to_owned(),
            name: name.to_owned(),
        })])
    }

    /// Deposit chips.
    pub fn deposit(&self, id: &str, amount: i64, reason: &str) -> Result<Vec<Event>, CommandError> {
        self.require(id)?;
        if amount <= 0 {
            return Err(CommandError::NonPositiveAmount(amount));
        }
        Ok(vec![Event::FundsDeposited(pb::FundsDeposited {
            player_id: id.to_owned(),
            amount,
            balance_after: self.balance + amount,
            reason: reason.to_owned(),
        })])
    }

    /// Withdraw chips (cash out or stake a bet).
    pub fn withdraw(
        &self,
        id: &str,
        amount: i64,
        reason: &str,
    ) -> Result<Vec<Event>, CommandError> {
        self.require(id)?;
        if amount <= 0 {
            return Err(CommandError::NonPositiveAmount(amount));
        }
        if amount > self.balance {
            return Err(CommandError::InsufficientFunds {
                player: id.to_owned(),
                balance: self.balance,
                needed: amount,
            });
        }
        Ok(vec![Event::FundsWithdrawn(pb::FundsWithdrawn {
            player_id: id.to_owned(),
            amount,
            balance_after: self.balance - amount,
            reason: reason.to_owned(),
        })])
    }

    fn require(&self, id: &str) -> Result<(), CommandError> {
        if self.registered {
            Ok(())
        } else {
            Err(CommandError::UnknownPlayer(id.to_owned()))
        }
    }
}

/// State of one hand, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hand {
    /// Dealt yet?
    pub dealt: bool,
    /// Seated players.
    pub players: BTreeSet<String>,
    /// Chips in the pot.
    pub pot: i64,
    /// Finished?
    pub won: bool,
    /// Events applied.
    pub version: u64,
}

impl Hand {
    /// Folds one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::CardsDealt(e) => {
                self.dealt = true;
                self.players = e.player_ids.iter().cloned().collect();
            }
            Event::BetPlaced(e) => self.pot = e.pot_after,
            Event::HandWon(_) => self.won = true,
            _ => return,
        }
        self.version += 1;
    }

    /// Deal two cards to each of 2..=9 players.
    pub fn deal(
        &self,
        id: &str,
        players: &[String],
        deck_seed: u64,
    ) -> Result<Vec<Event>, CommandError> {
        if self.dealt {
            return Err(self.invalid(id, "already dealt"));
        }
        let unique: BTreeSet<&String> = players.iter().collect();
        if !(2..=9).contains(&players.len()) || unique.len() != players.len() {
            return Err(self.invalid(id, "needs 2 to 9 distinct players"));
        }
        let cards = deal_cards(deck_seed, players.len() * 2);
        Ok(vec![Event::CardsDealt(pb::CardsDealt {
            hand_id: id.to_owned(),
            player_ids: players.to_vec(),
            cards,
        })])
    }

    /// A seated player bets.
    pub fn bet(&self, id: &str, player: &str, amount: i64) -> Result<Vec<Event>, CommandError> {
        if !self.dealt || self.won {
            return Err(self.invalid(id, "not in play"));
        }
        if !self.players.contains(player) {
            return Err(self.invalid(id, &format!("player {player} is not seated")));
        }
        if amount <= 0 {
            return Err(CommandError::NonPositiveAmount(amount));
        }
        Ok(vec![Event::BetPlaced(pb::BetPlaced {
            hand_id: id.to_owned(),
            player_id: player.to_owned(),
            amount,
            pot_after: self.pot + amount,
        })])
    }

    /// A seated player takes the pot.
    pub fn win(&self, id: &str, player: &str) -> Result<Vec<Event>, CommandError> {
        if !self.dealt || self.won {
            return Err(self.invalid(id, "not in play"));
        }
        if !self.players.contains(player) {
            return Err(self.invalid(id, &format!("player {player} is not seated")));
        }
        Ok(vec![Event::HandWon(pb::HandWon {
            hand_id: id.to_owned(),
            player_id: player.to_owned(),
            pot: self.pot,
        })])
    }

    fn invalid(&self, id: &str, reason: &str) -> CommandError {
        CommandError::InvalidHand {
            hand: id.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

fn deal_cards(mut seed: u64, n: usize) -> Vec<String> {
    const RANKS: &[u8] = b"23456789TJQKA";
    const SUITS: &[u8] = b"cdhs";
    let mut deck: Vec<String> = RANKS
        .iter()
        .flat_map(|r| {
            SUITS
                .iter()
                .map(move |s| format!("{}{}", *r as char, *s as char))
        })
        .collect();
    for i in (1..deck.len()).rev() {
        seed = splitmix(seed);
        let j = (seed % (i as u64 + 1)) as usize;
        deck.swap(i, j);
    }
    deck.truncate(n);
    deck
}

/// A small deterministic PRNG step (splitmix64), so runs are reproducible.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(balance: i64) -> Player {
        let mut p = Player::default();
        for e in p.register("p1", "Ann").unwrap() {
            p.apply(&e);
        }
        if balance > 0 {
            for e in p.deposit("p1", balance, "deposit").unwrap() {
                p.apply(&e);
            }
        }
        p
    }

    #[test]
    fn withdrawing_more_than_the_balance_is_refused() {
        let p = registered(100);
        assert!(matches!(
            p.withdraw("p1", 101, "bet"),
            Err(CommandError::InsufficientFunds { balance: 100, .. })
        ));
        assert!(p.withdraw("p1", 100, "bet").is_ok());
    }

    #[test]
    fn unregistered_player_cannot_deposit() {
        assert!(matches!(
            Player::default().deposit("x", 5, "d"),
            Err(CommandError::UnknownPlayer(_))
        ));
    }

    #[test]
    fn hand_lifecycle_folds_to_the_pot() {
        let mut h = Hand::default();
        let players = vec!["a".to_owned(), "b".to_owned()];
        for e in h.deal("h1", &players, 7).unwrap() {
            h.apply(&e);
        }
        assert!(h.deal("h1", &players, 7).is_err());
        for e in h.bet("h1", "a", 10).unwrap() {
            h.apply(&e);
        }
        assert!(h.bet("h1", "z", 10).is_err());
        for e in h.win("h1", "b").unwrap() {
            h.apply(&e);
        }
        assert_eq!((h.pot, h.won, h.version), (10, true, 3));
        assert!(h.bet("h1", "a", 1).is_err());
    }

    #[test]
    fn dealt_cards_are_distinct() {
        let cards = deal_cards(42, 18);
        let unique: BTreeSet<_> = cards.iter().collect();
        assert_eq!(unique.len(), 18);
    }
}
