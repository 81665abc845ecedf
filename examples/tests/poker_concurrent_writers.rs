//! Several writers on the same players and hands, in two processes: this
//! test's tasks and a second `poker --load-players` process, both on the
//! embedded server (the second one through the nats backend, as another
//! service would). Conflicts are retried after a reload, and the stored
//! histories show no lost update: every event of a player starts from the
//! balance its previous event left, no withdrawal exceeds the balance, and
//! every bet starts from the pot the previous one left.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use bus::{Bus, BusConfig, EmbeddedBus, StartPosition};
use examples::domain::Event;
use examples::job::{self, Hands, Tally};
use examples::service::CommandService;

const POKER: &str = env!("CARGO_BIN_EXE_poker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_two_processes_retry_conflicts_and_lose_no_update() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BusConfig::default();
    config.embedded.port = 0;
    config.embedded.data_dir = dir.path().join("data");
    let embedded = EmbeddedBus::start(&config).await.expect("embedded bus");
    let url = embedded.url().to_owned();
    let bus: Arc<dyn Bus> = Arc::new(embedded);

    let service = Arc::new(CommandService::new(Arc::clone(&bus)));
    let tally = Arc::new(Tally::default());
    let players: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
    job::register_players(&service, &players, 4, &tally)
        .await
        .expect("register");

    let child = {
        let ids = players.join(",");
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(POKER)
                .env("BUS_BACKEND", "nats")
                .env("NATS_URL", url)
                .env_remove("BUS_CONFIG")
                .args([
                    "--load-players",
                    &ids,
                    "--hands",
                    "40",
                    "--workers",
                    "4",
                    "--seed",
                    "11",
                    "--hand-prefix",
                    "other",
                    "--seats-at-once",
                ])
                .output()
                .expect("run poker")
        })
    };
    let (tasks, mut done) = job::spawn_hands(
        Arc::clone(&service),
        Arc::new(players.clone()),
        Hands {
            count: 40,
            seed: 5,
            workers: 4,
            prefix: "here".to_owned(),
            seats_at_once: true,
        },
        Arc::clone(&tally),
    );
    while done.recv().await.is_some() {}
    for t in tasks {
        t.await.expect("worker").expect("worker result");
    }
    let out = child.await.expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "second process failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("load: "))
        .unwrap_or_else(|| panic!("no summary line in {stdout}"));
    let child_conflicts: u64 = line
        .split(", ")
        .find_map(|p| p.strip_suffix(" conflicts retried"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no conflict count in {line}"));
    let conflicts = service.conflicts_retried() + child_conflicts;
    eprintln!(
        "conflicts retried: {} here, {child_conflicts} in the second process",
        service.conflicts_retried()
    );
    assert!(conflicts > 0, "the writers never raced: nothing was tested");

    // Fold every player and hand from the stream, checking each step.
    let all = bus
        .replay(&bus.layout().all(), StartPosition::Beginning)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("replay");
    let mut balances: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut pots: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut hands_won = 0;
    for stored in &all {
        let env = &stored.envelope;
        let event = Event::from_envelope(env)
            .expect("decode")
            .expect("known event");
        let what = format!(
            "{} {} v{}",
            env.aggregate_type, env.aggregate_id, env.sequence
        );
        match &event {
            Event::PlayerRegistered(_) | Event::FundsDeposited(_) | Event::FundsWithdrawn(_) => {
                let (version, balance) = balances.entry(env.aggregate_id.clone()).or_default();
                assert_eq!(env.sequence, *version + 1, "{what}: version order");
                *version += 1;
                match event {
                    Event::FundsDeposited(e) => {
                        assert_eq!(e.balance_after, *balance + e.amount, "{what}: lost update");
                        *balance = e.balance_after;
                    }
                    Event::FundsWithdrawn(e) => {
                        assert!(e.amount <= *balance, "{what}: overdrawn");
                        assert_eq!(e.balance_after, *balance - e.amount, "{what}: lost update");
                        *balance = e.balance_after;
                    }
                    _ => {}
                }
            }
            Event::CardsDealt(_) | Event::BetPlaced(_) | Event::HandWon(_) => {
                let (version, pot) = pots.entry(env.aggregate_id.clone()).or_default();
                assert_eq!(env.sequence, *version + 1, "{what}: version order");
                *version += 1;
                match event {
                    Event::BetPlaced(e) => {
                        assert_eq!(e.pot_after, *pot + e.amount, "{what}: lost bet");
                        *pot = e.pot_after;
                    }
                    Event::HandWon(e) => {
                        assert_eq!(e.pot, *pot, "{what}: pot");
                        hands_won += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    assert_eq!(hands_won, 80, "every hand of both processes was won");
    // What each aggregate's own load says equals the stream's fold.
    for (id, (version, balance)) in &balances {
        let p = service.load_player(id).await.expect("load");
        assert_eq!((p.version, p.balance), (*version, *balance), "player {id}");
    }
    bus.close().await.expect("close");
}
