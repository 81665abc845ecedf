//! Throughput of the NATS backend against a real nats-server 2.15.1 started
//! here, with the raw async-nats client as the ceiling:
//!
//! - publishing: one at a time (await each PubAck), pipelined batches
//!   (`publish_batch`, acks awaited together) from several tasks, and raw
//!   async-nats JetStream publishing with every ack in flight;
//! - replay strategies over the same stream: the bus's replay (ordered
//!   consumer), a pull consumer fetching batches, and batched direct gets;
//! - a durable consumer fetching and acking.
//!
//! Run: `cargo bench -p bus-nats --bench throughput` (env BENCH_EVENTS sets the
//! stream size, default 50000). Figures are events/s on this machine and only
//! meaningful as ratios within one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bus_core::testkit::{deposit, filter};
use bus_core::{Backend, Bus, BusConfig, ConsumerConfig, StartPosition};
use bus_nats::NatsBus;
use bytes::Bytes;
use futures::StreamExt;
use nats_test_server::NatsServer;

struct Row {
    name: &'static str,
    events: usize,
    elapsed: Duration,
}

impl Row {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn print(title: &str, rows: &[Row], baseline: usize) {
    println!("\n{title}");
    println!(
        "  {:<52} {:>9} {:>10} {:>12} {:>7}",
        "", "events", "time", "events/s", "ratio"
    );
    let base = rows[baseline].rate();
    for r in rows {
        println!(
            "  {:<52} {:>9} {:>9.2?} {:>12.0} {:>6.2}x",
            r.name,
            r.events,
            r.elapsed,
            r.rate(),
            r.rate() / base
        );
    }
}

async fn bus(url: &str) -> Arc<dyn Bus> {
    let mut config = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    config.nats.url = url.to_owned();
    Arc::new(NatsBus::connect(&config).await.expect("connect"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let server = NatsServer::start().await;
    let url = server.url();
    println!("nats-server 2.15.1 at {url}, file storage, {n} events of ~120 bytes");

    // ---------------------------------------------------------- publishing
    let mut publish_rows = Vec::new();
    {
        let bus = bus(&url).await;
        let count = (n / 10).max(1000);
        let start = Instant::now();
        for i in 0..count {
            bus.publish(deposit("seq", i as u64 + 1))
                .await
                .expect("publish");
        }
        publish_rows.push(Row {
            name: "bus.publish, one at a time",
            events: count,
            elapsed: start.elapsed(),
        });
    }
    {
        let bus = bus(&url).await;
        let tasks = 8;
        let per_task = n / tasks;
        let start = Instant::now();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let bus = Arc::clone(&bus);
            handles.push(tokio::spawn(async move {
                let mut seq = 0u64;
                while (seq as usize) < per_task {
                    let batch: Vec<_> = (0..100)
                        .map(|_| {
                            seq += 1;
                            deposit(&format!("agg{t}"), seq)
                        })
                        .collect();
                    bus.publish_batch(batch).await.expect("batch");
                }
            }));
        }
        for h in handles {
            h.await.expect("task");
        }
        publish_rows.push(Row {
            name: "bus.publish_batch(100), 8 tasks",
            events: tasks * per_task,
            elapsed: start.elapsed(),
        });
    }
    {
        let client = async_nats::connect(&url).await.expect("connect");
        let js = jetstream::new(client);
        let count = n;
        // A real envelope body, so the replays below can decode every event.
        let body = Bytes::from(prost::Message::encode_to_vec(&deposit("raw", 1)));
        let start = Instant::now();
        let mut acks = Vec::with_capacity(1000);
        for i in 0..count {
            acks.push(
                js.publish("angzarr.events.raw.FundsDeposited", body.clone())
                    .await
                    .expect("publish"),
            );
            if acks.len() == 1000 || i + 1 == count {
                for a in acks.drain(..) {
                    a.await.expect("ack");
                }
            }
        }
        publish_rows.push(Row {
            name: "raw async-nats, 1000 acks in flight (ceiling)",
            events: count,
            elapsed: start.elapsed(),
        });
    }
    print("publish (ratio vs one at a time)", &publish_rows, 0);

    // ---------------------------------------------------------- replay
    let bus = bus(&url).await;
    let head = bus.stream_info().await.expect("info").last_position;
    let all = filter("angzarr.events.>");
    let mut replay_rows = Vec::new();
    {
        let start = Instant::now();
        let mut replay = bus
            .replay(&all, StartPosition::Beginning)
            .await
            .expect("replay");
        let mut count = 0;
        while let Some(e) = replay.next().await {
            e.expect("event");
            count += 1;
        }
        replay_rows.push(Row {
            name: "bus.replay (ordered consumer)",
            events: count,
            elapsed: start.elapsed(),
        });
    }
    let client = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(client.clone());
    {
        let stream = js.get_stream("angzarr-events").await.expect("stream");
        let start = Instant::now();
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                filter_subject: all.as_str().to_owned(),
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut count = 0u64;
        while count < head {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .expect("fetch");
            let mut got = 0;
            while let Some(m) = batch.next().await {
                m.expect("message");
                got += 1;
            }
            if got == 0 {
                break;
            }
            count += got;
        }
        replay_rows.push(Row {
            name: "pull consumer, fetch(1000), no acks",
            events: count as usize,
            elapsed: start.elapsed(),
        });
    }
    {
        let start = Instant::now();
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await.expect("sub");
        let mut next = 1u64;
        let mut count = 0usize;
        'outer: while next <= head {
            let request = serde_json::json!({
                "seq": next, "batch": 1000, "next_by_subj": all.as_str(), "up_to_seq": head
            });
            client
                .publish_with_reply(
                    "$JS.API.DIRECT.GET.angzarr-events",
                    inbox.clone(),
                    Bytes::from(request.to_string()),
                )
                .await
                .expect("request");
            loop {
                let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
                    .await
                    .expect("direct get answers")
                    .expect("sub open");
                match m.status {
                    None | Some(async_nats::StatusCode::OK) => {
                        let seq: u64 = m
                            .headers
                            .as_ref()
                            .and_then(|h| h.get("Nats-Sequence"))
                            .and_then(|v| v.as_str().parse().ok())
                            .expect("Nats-Sequence header");
                        count += 1;
                        next = seq + 1;
                    }
                    // End of batch (204) or nothing more (404).
                    Some(_) => {
                        if next > head || m.status == Some(async_nats::StatusCode::NOT_FOUND) {
                            break 'outer;
                        }
                        break;
                    }
                }
            }
        }
        replay_rows.push(Row {
            name: "batched direct get (1000 per request)",
            events: count,
            elapsed: start.elapsed(),
        });
    }
    print(
        "replay of the whole stream (ratio vs bus.replay)",
        &replay_rows,
        0,
    );

    // ---------------------------------------------------------- consuming
    let mut consume_rows = Vec::new();
    {
        let mut consumer = bus
            .consumer(ConsumerConfig::new("bench", all.clone()).max_ack_pending(10_000))
            .await
            .expect("consumer");
        let target = (head as usize).min(n);
        let start = Instant::now();
        let mut count = 0;
        while count < target {
            let batch = consumer
                .fetch(500, Duration::from_secs(2))
                .await
                .expect("fetch");
            if batch.is_empty() {
                break;
            }
            for d in &batch {
                d.ack().await.expect("ack");
                count += 1;
            }
        }
        consume_rows.push(Row {
            name: "durable consumer fetch(500), acks one by one",
            events: count,
            elapsed: start.elapsed(),
        });
    }
    {
        let mut consumer = bus
            .consumer(ConsumerConfig::new("bench2", all.clone()).max_ack_pending(10_000))
            .await
            .expect("consumer");
        let target = (head as usize).min(n);
        let start = Instant::now();
        let mut count = 0;
        while count < target {
            let batch = consumer
                .fetch(500, Duration::from_secs(2))
                .await
                .expect("fetch");
            if batch.is_empty() {
                break;
            }
            // Handle in order, then confirm the acks of the batch together.
            let acks = futures::future::join_all(batch.iter().map(|d| d.ack())).await;
            for a in acks {
                a.expect("ack");
                count += 1;
            }
        }
        consume_rows.push(Row {
            name: "durable consumer fetch(500), acks in flight together",
            events: count,
            elapsed: start.elapsed(),
        });
    }
    print(
        "durable consumer (ratio vs acks one by one)",
        &consume_rows,
        0,
    );
    drop(server);
}
