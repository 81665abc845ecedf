//! The main job: generate load from several concurrent workers, stop and
//! resume a projector, drain, verify.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus::{Bus, BusError, ConsumerConfig, ConsumerDefaults, StartPosition};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::domain::splitmix;
use crate::projector::{self, PlayerDirectory, Projection, TableStats};
use crate::service::{CommandService, ServiceError};

/// Durable name of the projector on every event.
pub const TABLE_PROJECTOR: &str = "table-stats";
/// Durable name of the projector on player events.
pub const PLAYER_PROJECTOR: &str = "player-directory";

/// How much load to generate.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Players registered.
    pub players: usize,
    /// Hands played.
    pub hands: usize,
    /// Seed of the deterministic load.
    pub seed: u64,
    /// Consumer defaults (ack wait, max deliver, ...).
    pub consumer: ConsumerDefaults,
    /// Hands played at once, each by its own worker task (they share
    /// players). 1: one command at a time.
    pub workers: usize,
    /// The seated players of a hand also bet at once, so appends to the
    /// hand race too (many more conflicts: a hand of n seats costs about
    /// n²/2 retries).
    pub seats_at_once: bool,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            players: 200,
            hands: 1500,
            seed: 7,
            consumer: ConsumerDefaults::default(),
            workers: 32,
            seats_at_once: false,
        }
    }
}

/// What the job reports while it runs.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Load is being generated.
    Load {
        /// Commands executed so far.
        commands: u64,
        /// Events published so far.
        events: u64,
        /// Since the load started.
        elapsed: Duration,
        /// Hands done / all.
        hands_done: usize,
        /// Hands in all.
        hands_total: usize,
    },
    /// The table projector was stopped (as if its process died).
    ProjectorStopped {
        /// Its ack floor at the stop.
        ack_floor: u64,
        /// Deliveries it had handled.
        handled: u64,
    },
    /// The table projector bound again and is resuming.
    ProjectorResumed {
        /// First position it will receive.
        from_position: u64,
        /// Events waiting for it.
        pending: u64,
    },
    /// The stream already held events (an earlier run on the same data):
    /// the projectors' read models live in memory, so they start over from
    /// the beginning of the stream.
    History {
        /// Events already in the stream.
        events: u64,
    },
    /// Waiting for projectors to catch up.
    Draining {
        /// Events still pending over both projectors.
        pending: u64,
    },
}

/// The outcome.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Backend name.
    pub backend: &'static str,
    /// Commands executed (accepted).
    pub commands: u64,
    /// Commands the domain refused (on purpose: overdrawn bets).
    pub rejected: u64,
    /// Events published.
    pub events: u64,
    /// Appends refused with a version conflict (another worker appended
    /// first), then reloaded, decided again and retried.
    pub conflicts_retried: u64,
    /// Worker tasks that generated the load.
    pub workers: usize,
    /// Load generation time.
    pub load_time: Duration,
    /// Where the table projector resumed.
    pub resumed_from: u64,
    /// Table projector model equals a rebuild from full replay.
    pub table_matches: bool,
    /// Player directory equals a rebuild from replay of player events.
    pub directory_matches: bool,
    /// Events in the table projector's model.
    pub table_events: u64,
    /// Events in the player directory's model.
    pub directory_events: u64,
    /// Dead letters (should be 0).
    pub dead_letters: usize,
    /// Sum of balances in the read model.
    pub total_balance: i64,
    /// Players in the directory.
    pub players: usize,
}

impl Summary {
    /// True when both read models match their rebuilds and nothing was dead-lettered.
    pub fn ok(&self) -> bool {
        self.table_matches && self.directory_matches && self.dead_letters == 0
    }

    /// Events per second during load.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.load_time.as_secs_f64().max(1e-9)
    }
}

/// The job failed (as opposed to finishing with a mismatch, which is a
/// [`Summary`] whose `ok()` is false).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A projector task panicked or was cancelled.
    #[error("projector task failed: {0}")]
    Task(String),
    /// The projectors did not catch up in time.
    #[error("projectors still had {pending} events pending after {waited:?}")]
    NotDrained {
        /// Events left.
        pending: u64,
        /// How long we waited.
        waited: Duration,
    },
}

/// Counts accepted and refused commands; a bus failure ends the job.
#[derive(Debug, Default)]
pub struct Tally {
    commands: AtomicU64,
    rejected: AtomicU64,
}

impl Tally {
    fn count<T>(&self, result: Result<T, ServiceError>) -> Result<Option<T>, JobError> {
        match result {
            Ok(v) => {
                self.commands.fetch_add(1, Ordering::Relaxed);
                Ok(Some(v))
            }
            Err(ServiceError::Rejected(_)) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(ServiceError::Bus(e)) => Err(e.into()),
        }
    }

    /// Commands accepted.
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    /// Commands the domain refused.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// Deterministic random numbers for reproducible load.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = splitmix(self.0);
        self.0 % bound.max(1)
    }
}

/// Which hands [`spawn_hands`] plays.
#[derive(Debug, Clone)]
pub struct Hands {
    /// How many.
    pub count: usize,
    /// Seed of their choices.
    pub seed: u64,
    /// Hands played at once (each by its own task).
    pub workers: usize,
    /// Hand ids are `<prefix>-<number>`.
    pub prefix: String,
    /// The seated players of each hand bet at once (see
    /// [`JobOptions::seats_at_once`]).
    pub seats_at_once: bool,
}

/// Starts `hands.workers` tasks that play hands `0..hands.count` among
/// `player_ids` (registered), each taking the next hand not yet taken; every
/// hand done is reported on the returned channel.
pub fn spawn_hands(
    service: Arc<CommandService>,
    player_ids: Arc<Vec<String>>,
    hands: Hands,
    tally: Arc<Tally>,
) -> (
    Vec<JoinHandle<Result<(), JobError>>>,
    mpsc::UnboundedReceiver<()>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = mpsc::unbounded_channel::<()>();
    let workers = hands.workers.max(1);
    let tasks = (0..workers)
        .map(|_| {
            let (service, tally, player_ids, next, done_tx, hands) = (
                Arc::clone(&service),
                Arc::clone(&tally),
                Arc::clone(&player_ids),
                Arc::clone(&next),
                done_tx.clone(),
                hands.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let h = next.fetch_add(1, Ordering::Relaxed);
                    if h >= hands.count {
                        return Ok(());
                    }
                    let hand = format!("{}-{h:06}", hands.prefix);
                    play_hand(
                        &service,
                        &player_ids,
                        &hand,
                        hands.seed,
                        h,
                        &tally,
                        hands.seats_at_once,
                    )
                    .await?;
                    let _ = done_tx.send(());
                }
            })
        })
        .collect();
    (tasks, done_rx)
}

/// Registers `player_ids` (with 500 chips each), `workers` at a time.
pub async fn register_players(
    service: &CommandService,
    player_ids: &[String],
    workers: usize,
    tally: &Tally,
) -> Result<(), JobError> {
    futures::stream::iter(player_ids.iter().enumerate())
        .map(|(i, p)| async move {
            let cause = uuid::Uuid::new_v4().to_string();
            if tally
                .count(service.register(p, &format!("Player {i}"), &cause).await)?
                .is_some()
            {
                tally.count(service.deposit(p, 500, &cause).await)?;
            }
            Ok::<(), JobError>(())
        })
        .buffer_unordered(workers.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Plays hand number `h` (id `hand`) among `player_ids`: deal, every seated
/// player tops up when low and bets (all at once when `seats_at_once`, so
/// their appends to the hand race), then one of them wins the pot. The hand's choices come from
/// `seed` and `h` only, whatever the order workers run in.
pub async fn play_hand(
    service: &CommandService,
    player_ids: &[String],
    hand: &str,
    seed: u64,
    h: usize,
    tally: &Tally,
    seats_at_once: bool,
) -> Result<(), JobError> {
    let mut rng = Rng(splitmix(
        seed ^ (h as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    ));
    let cause = uuid::Uuid::new_v4().to_string();
    let seats = 2 + rng.below(5) as usize;
    let mut seated: Vec<String> = Vec::with_capacity(seats);
    while seated.len() < seats.min(player_ids.len()) {
        let p = &player_ids[rng.below(player_ids.len() as u64) as usize];
        if !seated.contains(p) {
            seated.push(p.clone());
        }
    }
    if tally
        .count(
            service
                .deal(hand, &seated, rng.below(u64::MAX), &cause)
                .await,
        )?
        .is_none()
    {
        return Ok(());
    }
    // One bet in ten asks for more than the player has: the domain refuses it.
    let bets: Vec<(String, bool, i64)> = seated
        .iter()
        .map(|p| (p.clone(), rng.below(10) == 0, 1 + rng.below(20) as i64))
        .collect();
    let cause = &cause;
    let at_once = if seats_at_once { bets.len() } else { 1 };
    futures::stream::iter(bets.into_iter().map(|(p, overdraw, stake)| async move {
        if service
            .top_up(&p, 20, 200, cause)
            .await
            .map_err(|e| match e {
                ServiceError::Bus(e) => JobError::Bus(e),
                ServiceError::Rejected(r) => JobError::Task(format!("top-up refused: {r}")),
            })?
        {
            tally.commands.fetch_add(1, Ordering::Relaxed);
        }
        let amount = move |balance: i64| if overdraw { balance + 1_000 } else { stake };
        tally.count(service.bet(hand, &p, amount, cause).await)?;
        Ok::<(), JobError>(())
    }))
    .buffer_unordered(at_once)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<(), JobError>>()?;
    let winner = seated[rng.below(seated.len() as u64) as usize].clone();
    tally.count(service.win(hand, &winner, cause).await)?;
    Ok(())
}

struct Running<P> {
    model: Arc<Mutex<P>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<u64, BusError>>,
}

async fn start<P: Projection>(
    bus: &dyn Bus,
    config: ConsumerConfig,
    model: Arc<Mutex<P>>,
) -> Result<Running<P>, BusError> {
    let consumer = bus.consumer(config).await?;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(projector::run(consumer, Arc::clone(&model), stop_rx));
    Ok(Running { model, stop, task })
}

async fn halt<P>(r: Running<P>) -> Result<(Arc<Mutex<P>>, u64), JobError> {
    // A send error means the task already ended; its result says why.
    let _ = r.stop.send(true);
    let handled = r.task.await.map_err(|e| JobError::Task(e.to_string()))??;
    Ok((r.model, handled))
}

fn snapshot<P: Clone>(m: &Arc<Mutex<P>>) -> P {
    match m.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Runs the whole job on `bus`.
pub async fn run(
    bus: Arc<dyn Bus>,
    options: &JobOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Summary, JobError> {
    let layout = bus.layout().clone();
    let table_cfg = ConsumerConfig::with_defaults(
        TABLE_PROJECTOR,
        layout.filter(&format!("{}.events.*.>", layout.prefix()))?,
        &options.consumer,
    )
    .start(StartPosition::Beginning);
    let players_cfg = ConsumerConfig::with_defaults(
        PLAYER_PROJECTOR,
        layout.filter(&format!("{}.events.player.>", layout.prefix()))?,
        &options.consumer,
    )
    .start(StartPosition::Beginning);

    // The read models below are in memory: a durable position left by an
    // earlier process would skip the events they need, so the projectors
    // start over (a real projector keeps its model and position together).
    let history = bus.stream_info().await?.messages;
    if history > 0 {
        progress(Progress::History { events: history });
    }
    for name in [TABLE_PROJECTOR, PLAYER_PROJECTOR] {
        match bus.delete_consumer(name).await {
            Ok(()) | Err(BusError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let table = start(
        &*bus,
        table_cfg.clone(),
        Arc::new(Mutex::new(TableStats::default())),
    )
    .await?;
    let directory = start(
        &*bus,
        players_cfg,
        Arc::new(Mutex::new(PlayerDirectory::default())),
    )
    .await?;
    let mut table = Some(table);
    let mut parked: Option<Arc<Mutex<TableStats>>> = None;

    let service = Arc::new(CommandService::new(Arc::clone(&bus)));
    let tally = Arc::new(Tally::default());
    let workers = options.workers.max(1);
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let player_ids: Arc<Vec<String>> = Arc::new(
        (0..options.players)
            .map(|i| format!("p{i:05}-{}", &run_id[..8]))
            .collect(),
    );
    register_players(&service, &player_ids, workers, &tally).await?;

    // Workers take the next hand until none is left; each reports a hand
    // done, and the job stops the table projector halfway.
    let (tasks, mut done_rx) = spawn_hands(
        Arc::clone(&service),
        Arc::clone(&player_ids),
        Hands {
            count: options.hands,
            seed: options.seed,
            workers,
            prefix: format!("h-{}", &run_id[..8]),
            seats_at_once: options.seats_at_once,
        },
        Arc::clone(&tally),
    );
    let mut resumed_from = 0;
    let mut hands_done = 0;
    while done_rx.recv().await.is_some() {
        hands_done += 1;
        progress(Progress::Load {
            commands: tally.commands(),
            events: service.published(),
            elapsed: started.elapsed(),
            hands_done,
            hands_total: options.hands,
        });
        if hands_done == options.hands / 2 {
            if let Some(running) = table.take() {
                // Stop it as if its process died between two batches. Its
                // model stays (a real projector keeps it in its own store);
                // the bus keeps its position.
                let (model, handled) = halt(running).await?;
                let info = bus.consumer_info(TABLE_PROJECTOR).await?;
                progress(Progress::ProjectorStopped {
                    ack_floor: info.ack_floor,
                    handled,
                });
                parked = Some(model);
            }
        }
    }
    for t in tasks {
        t.await.map_err(|e| JobError::Task(e.to_string()))??;
    }
    let load_time = started.elapsed();

    // Resume the table projector where the bus says it stopped.
    if let Some(model) = parked.take() {
        let info = bus.consumer_info(TABLE_PROJECTOR).await?;
        resumed_from = info.ack_floor + 1;
        progress(Progress::ProjectorResumed {
            from_position: resumed_from,
            pending: info.num_pending + info.num_ack_pending,
        });
        table = Some(start(&*bus, table_cfg, model).await?);
    }
    let Some(table) = table else {
        return Err(JobError::Task("table projector missing".to_owned()));
    };

    // Drain: wait until neither consumer has anything pending.
    let drain_start = Instant::now();
    let limit = Duration::from_secs(300);
    loop {
        let a = bus.consumer_info(TABLE_PROJECTOR).await?;
        let b = bus.consumer_info(PLAYER_PROJECTOR).await?;
        let pending = a.num_pending + a.num_ack_pending + b.num_pending + b.num_ack_pending;
        progress(Progress::Draining { pending });
        if pending == 0 {
            break;
        }
        if drain_start.elapsed() > limit {
            return Err(JobError::NotDrained {
                pending,
                waited: limit,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (table_model, _) = halt(table).await?;
    let (directory_model, _) = halt(directory).await?;

    let table_now = snapshot(&table_model);
    let directory_now = snapshot(&directory_model);
    let table_rebuilt: TableStats = projector::rebuild(&*bus, &layout.all()).await?;
    let directory_rebuilt: PlayerDirectory = projector::rebuild(
        &*bus,
        &layout.filter(&format!("{}.events.player.>", layout.prefix()))?,
    )
    .await?;
    let dead_letters = bus.dead_letters(None).await?.len();

    Ok(Summary {
        backend: bus.backend(),
        commands: tally.commands(),
        rejected: tally.rejected(),
        events: service.published(),
        conflicts_retried: service.conflicts_retried(),
        workers,
        load_time,
        resumed_from,
        table_matches: table_now == table_rebuilt,
        directory_matches: directory_now == directory_rebuilt,
        table_events: table_now.events,
        directory_events: directory_now.events,
        dead_letters,
        total_balance: table_now.balances.values().sum(),
        players: directory_now.names.len(),
    })
}
