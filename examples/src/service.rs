//! The command side: aggregate state, command execution, appends with an
//! expected version.
//!
//! Any number of workers (tasks sharing one [`CommandService`], and other
//! processes with their own) may run commands on the same aggregates. A
//! command is decided on the aggregate's state at some version `v` and its
//! events are appended expecting exactly `v` ([`Bus::append`]): if another
//! writer appended first, the bus refuses with
//! [`BusError::VersionConflict`], the service loads the events it missed
//! ([`Bus::load`] after `v`), decides again and retries. Nothing assumes a
//! single writer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

use bus::{Bus, BusError, EventEnvelope, ExpectedVersion};

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

/// State folded from one aggregate's events.
pub trait AggregateState: Clone + Default + Send {
    /// The aggregate type token.
    const TYPE: &'static str;
    /// Folds one event.
    fn apply(&mut self, event: &Event);
    /// Events folded so far (the aggregate version).
    fn version(&self) -> u64;
}

impl AggregateState for Player {
    const TYPE: &'static str = PLAYER;
    fn apply(&mut self, event: &Event) {
        Player::apply(self, event);
    }
    fn version(&self) -> u64 {
        self.version
    }
}

impl AggregateState for Hand {
    const TYPE: &'static str = HAND;
    fn apply(&mut self, event: &Event) {
        Hand::apply(self, event);
    }
    fn version(&self) -> u64 {
        self.version
    }
}

/// The latest state seen of each aggregate of one type, shared by the tasks
/// of one service. Only a cache: the bus decides who wins.
struct Cache<A>(Mutex<HashMap<String, A>>);

impl<A: AggregateState> Cache<A> {
    fn new() -> Self {
        Cache(Mutex::new(HashMap::new()))
    }

    fn get(&self, id: &str) -> A {
        let map = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.get(id).cloned().unwrap_or_default()
    }

    /// Keeps `state` unless a later version is already cached.
    fn offer(&self, id: &str, state: &A) {
        let mut map = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match map.get_mut(id) {
            Some(have) if have.version() >= state.version() => {}
            Some(have) => *have = state.clone(),
            None => {
                map.insert(id.to_owned(), state.clone());
            }
        }
    }
}

/// Runs commands on `player` and `hand` aggregates and appends the resulting
/// events with an expected version. Share it between tasks (`Arc`).
pub struct CommandService {
    bus: Arc<dyn Bus>,
    players: Cache<Player>,
    hands: Cache<Hand>,
    published: AtomicU64,
    conflicts: AtomicU64,
}

impl CommandService {
    /// A service with nothing cached: aggregates are read from the bus when
    /// an append finds them further on than the cache.
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        CommandService {
            bus,
            players: Cache::new(),
            hands: Cache::new(),
            published: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        }
    }

    /// Events this service has appended.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Appends refused with a version conflict, then reloaded and retried.
    pub fn conflicts_retried(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// The latest state of a player this service has seen.
    pub fn player(&self, id: &str) -> Player {
        self.players.get(id)
    }

    /// A player's state read from the bus now.
    pub async fn load_player(&self, id: &str) -> Result<Player, BusError> {
        let mut state = Player::default();
        self.catch_up(&self.players, id, &mut state).await?;
        Ok(state)
    }

    /// Register a player.
    pub async fn register(&self, id: &str, name: &str, cause: &str) -> Result<(), ServiceError> {
        self.execute(&self.players, id, cause, |p| p.register(id, name))
            .await
            .map(drop)
    }

    /// Deposit chips.
    pub async fn deposit(&self, id: &str, amount: i64, cause: &str) -> Result<(), ServiceError> {
        self.execute(&self.players, id, cause, |p| {
            p.deposit(id, amount, "deposit")
        })
        .await
        .map(drop)
    }

    /// Deposit `amount` when the player has fewer than `below` chips;
    /// returns whether it did.
    pub async fn top_up(
        &self,
        id: &str,
        below: i64,
        amount: i64,
        cause: &str,
    ) -> Result<bool, ServiceError> {
        let mut did = false;
        self.execute(&self.players, id, cause, |p| {
            did = p.balance < below;
            if did {
                p.deposit(id, amount, "deposit")
            } else {
                Ok(Vec::new())
            }
        })
        .await?;
        Ok(did)
    }

    /// Deal a hand (its players must be registered).
    pub async fn deal(
        &self,
        hand: &str,
        players: &[String],
        seed: u64,
        cause: &str,
    ) -> Result<(), ServiceError> {
        for p in players {
            let mut state = self.players.get(p);
            if !state.registered {
                self.catch_up(&self.players, p, &mut state).await?;
            }
            if !state.registered {
                return Err(CommandError::UnknownPlayer(p.clone()).into());
            }
        }
        self.execute(&self.hands, hand, cause, |h| h.deal(hand, players, seed))
            .await
            .map(drop)
    }

    /// A player stakes chips: they leave the player, then enter the pot.
    /// `amount` decides the stake from the player's balance at that moment.
    pub async fn bet(
        &self,
        hand: &str,
        player: &str,
        amount: impl Fn(i64) -> i64 + Send + Sync,
        cause: &str,
    ) -> Result<(), ServiceError> {
        // The hand must take the bet before chips leave the player.
        let mut h = self.hands.get(hand);
        if h.bet(hand, player, 1).is_err() {
            self.catch_up(&self.hands, hand, &mut h).await?;
            h.bet(hand, player, 1)?;
        }
        let mut staked = 0;
        self.execute(&self.players, player, cause, |p| {
            staked = amount(p.balance);
            p.withdraw(player, staked, &format!("bet:{hand}"))
        })
        .await?;
        self.execute(&self.hands, hand, cause, |h| h.bet(hand, player, staked))
            .await
            .map(drop)
    }

    /// A player wins the pot: the hand ends, then the chips reach the player.
    pub async fn win(&self, hand: &str, player: &str, cause: &str) -> Result<(), ServiceError> {
        let mut pot = 0;
        self.execute(&self.hands, hand, cause, |h| {
            pot = h.pot;
            h.win(hand, player)
        })
        .await?;
        if pot > 0 {
            self.execute(&self.players, player, cause, |p| {
                p.deposit(player, pot, &format!("hand_won:{hand}"))
            })
            .await?;
        }
        Ok(())
    }

    /// Decides on the cached state and appends expecting its version; on a
    /// version conflict (or a refusal that newer events might change),
    /// loads what was missed and decides again. Returns the state after.
    async fn execute<A: AggregateState>(
        &self,
        cache: &Cache<A>,
        id: &str,
        cause: &str,
        mut decide: impl FnMut(&A) -> Result<Vec<Event>, CommandError> + Send,
    ) -> Result<A, ServiceError> {
        let mut state = cache.get(id);
        loop {
            let events = match decide(&state) {
                Ok(events) => events,
                Err(refused) => {
                    // Refused on what we knew: decide again if there is more.
                    if self.catch_up(cache, id, &mut state).await? == 0 {
                        return Err(refused.into());
                    }
                    continue;
                }
            };
            if events.is_empty() {
                return Ok(state);
            }
            let version = state.version();
            let envelopes: Vec<EventEnvelope> = events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    e.to_envelope(id, version + i as u64 + 1)
                        .with_correlation_id(cause)
                        .with_causation_id(cause)
                })
                .collect();
            let expected = if version == 0 {
                ExpectedVersion::NoAggregate
            } else {
                ExpectedVersion::Exactly(version)
            };
            match self.bus.append(expected, envelopes).await {
                Ok(receipt) => {
                    if !receipt.duplicate {
                        self.published
                            .fetch_add(events.len() as u64, Ordering::Relaxed);
                    }
                    for e in &events {
                        state.apply(e);
                    }
                    cache.offer(id, &state);
                    return Ok(state);
                }
                Err(BusError::VersionConflict { .. }) => {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    self.catch_up(cache, id, &mut state).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Folds the aggregate's events after `state`'s version into it; returns
    /// how many there were.
    async fn catch_up<A: AggregateState>(
        &self,
        cache: &Cache<A>,
        id: &str,
        state: &mut A,
    ) -> Result<u64, BusError> {
        let history = self.bus.load(A::TYPE, id, state.version()).await?;
        let mut n = 0;
        for stored in &history.events {
            let env = &stored.envelope;
            if env.sequence != state.version() + 1 {
                return Err(BusError::Backend(format!(
                    "{} {id:?}: event {} is version {}, expected {}",
                    A::TYPE,
                    env.event_id,
                    env.sequence,
                    state.version() + 1
                )));
            }
            match Event::from_envelope(env)? {
                Some(event) => state.apply(&event),
                None => {
                    return Err(BusError::Decode(format!(
                        "{} {id:?}: unknown event type {} at version {}",
                        A::TYPE,
                        env.event_type,
                        env.sequence
                    )));
                }
            }
            n += 1;
        }
        cache.offer(id, state);
        Ok(n)
    }
}
