//! The event store on a real nats-server 2.15.1, where only a server can
//! show it: a server too old for atomic batches, a lost acknowledgement of
//! an append, a stream created by an earlier version of the bus, and a
//! server that answers batched direct gets as plain ones. The odd servers
//! are nats-server behind a small NATS-protocol proxy that rewrites what the
//! server says (its INFO version, the acknowledgement of a batch, the
//! headers of a direct get reply).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bus_core::testkit::deposit;
use bus_core::{Backend, Bus, BusConfig, BusError, EventEnvelope, ExpectedVersion, StartPosition};
use bus_nats::NatsBus;
use nats_test_server::NatsServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn config(url: &str) -> BusConfig {
    let mut c = BusConfig {
        backend: Backend::Nats,
        ..BusConfig::default()
    };
    c.nats.url = url.to_owned();
    c
}

fn deposits(id: &str, n: usize) -> Vec<EventEnvelope> {
    (0..n).map(|_| deposit(id, 0)).collect()
}

// ------------------------------------------------------------------ proxy

/// What the proxy changes in what the server sends.
#[derive(Default)]
struct Rules {
    /// Put this in INFO's `version`.
    version: Option<String>,
    /// Drop this many acknowledgements of atomic batches (PubAcks with `"batch"`).
    drop_batch_acks: usize,
    /// Batch acknowledgements dropped so far.
    dropped: usize,
    /// Remove `Nats-Num-Pending` from direct get replies and drop their
    /// end-of-batch status, as a server without batched direct get would.
    plain_direct_gets: bool,
}

struct Proxy {
    url: String,
    rules: Arc<Mutex<Rules>>,
}

impl Proxy {
    async fn start(upstream: String, rules: Rules) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("nats://{}", listener.local_addr().expect("addr"));
        let rules = Arc::new(Mutex::new(rules));
        let shared = Arc::clone(&rules);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.trim_start_matches("nats://").to_owned();
                let rules = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, mut cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(async move {
                        let mut cr = cr;
                        let mut sw = sw;
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    });
                    let _ = server_to_client(BufReader::new(sr), &mut cw, rules).await;
                });
            }
        });
        Proxy { url, rules }
    }

    fn drop_next_batch_acks(&self, n: usize) {
        if let Ok(mut r) = self.rules.lock() {
            r.drop_batch_acks = n;
        }
    }

    fn dropped(&self) -> usize {
        self.rules.lock().map(|r| r.dropped).unwrap_or(0)
    }
}

/// Forwards the server's protocol, one control line (and payload) at a time.
async fn server_to_client(
    mut from: BufReader<tokio::net::tcp::OwnedReadHalf>,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    rules: Arc<Mutex<Rules>>,
) -> std::io::Result<()> {
    loop {
        let mut line = String::new();
        if from.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("INFO") => {
                let version = rules.lock().ok().and_then(|r| r.version.clone());
                let mut out = line.clone();
                if let Some(v) = version {
                    if let Some(start) = out.find("\"version\":\"") {
                        let from_v = start + "\"version\":\"".len();
                        if let Some(len) = out[from_v..].find('"') {
                            out.replace_range(from_v..from_v + len, &v);
                        }
                    }
                }
                to.write_all(out.as_bytes()).await?;
            }
            Some(op @ ("MSG" | "HMSG")) => {
                // MSG <subject> <sid> [reply] <size>; HMSG ... <hdr size> <total size>
                let total: usize = words.last().and_then(|w| w.parse().ok()).unwrap_or(0);
                let hdr: usize = if op == "HMSG" {
                    words
                        .get(words.len() - 2)
                        .and_then(|w| w.parse().ok())
                        .unwrap_or(0)
                } else {
                    0
                };
                let mut payload = vec![0; total + 2];
                from.read_exact(&mut payload).await?;
                let body = &payload[hdr..total];
                let headers = String::from_utf8_lossy(&payload[..hdr]).into_owned();
                let (drop_ack, plain) = {
                    let mut r = rules
                        .lock()
                        .map_err(|_| std::io::Error::other("poisoned"))?;
                    let drop_ack = r.drop_batch_acks > 0
                        && String::from_utf8_lossy(body).contains("\"batch\":\"");
                    if drop_ack {
                        r.drop_batch_acks -= 1;
                        r.dropped += 1;
                    }
                    (drop_ack, r.plain_direct_gets && op == "HMSG")
                };
                if drop_ack {
                    continue;
                }
                if plain {
                    if headers.contains("NATS/1.0 204") {
                        continue;
                    }
                    if headers.contains("Nats-Num-Pending:") {
                        let kept: String = headers
                            .split_inclusive("\r\n")
                            .filter(|l| {
                                !l.starts_with("Nats-Num-Pending:")
                                    && !l.starts_with("Nats-Last-Sequence:")
                            })
                            .collect();
                        let new_total = kept.len() + body.len();
                        let mut head: Vec<String> = words[..words.len() - 2]
                            .iter()
                            .map(|w| (*w).to_owned())
                            .collect();
                        head.push(kept.len().to_string());
                        head.push(new_total.to_string());
                        let mut out = head.join(" ").into_bytes();
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(kept.as_bytes());
                        out.extend_from_slice(body);
                        out.extend_from_slice(b"\r\n");
                        to.write_all(&out).await?;
                        continue;
                    }
                }
                to.write_all(line.as_bytes()).await?;
                to.write_all(&payload).await?;
            }
            _ => to.write_all(line.as_bytes()).await?,
        }
    }
}

// ------------------------------------------------------------------ tests

/// An external server older than 2.12 has no atomic batches: connecting
/// works, `append` is `Unsupported` naming the version it needs and the one
/// the server has, and `load` still reads what a newer client appended
/// (with single direct gets, since 2.10 has no batched ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_on_a_server_older_than_2_12_is_unsupported_naming_the_version() {
    let server = NatsServer::start().await;
    let direct = NatsBus::connect(&config(&server.url()))
        .await
        .expect("connect");
    let mut version = 0;
    for k in [1usize, 40, 3, 60] {
        let r = direct
            .append(ExpectedVersion::Exactly(version), deposits("p1", k))
            .await
            .expect("append on 2.15.1");
        version = r.version;
    }
    let proxy = Proxy::start(
        server.url(),
        Rules {
            version: Some("2.10.7".into()),
            ..Rules::default()
        },
    )
    .await;
    let old = NatsBus::connect(&config(&proxy.url))
        .await
        .expect("connecting to an old server works");
    match old.append(ExpectedVersion::Any, deposits("p1", 1)).await {
        Err(BusError::Unsupported(m)) => {
            assert!(m.contains("2.12.0"), "names the version it needs: {m}");
            assert!(m.contains("2.10.7"), "names the server's version: {m}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    for after in [0, 1, 41, 100, version] {
        let through_old = old.load("player", "p1", after).await.expect("load");
        let reference = direct.load("player", "p1", after).await.expect("load");
        assert_eq!(through_old, reference, "load after {after}");
        assert_eq!(
            through_old.events.len() as u64,
            version - after,
            "after {after}"
        );
    }
}

/// The acknowledgement of an append is lost: the bus sends the same batch
/// again, the server refuses it (the expectation no longer holds), and the
/// bus recognises its own first append: the receipt has its positions and
/// `duplicate: true`, and the events are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_append_acknowledgement_is_retried_and_reports_the_first_append() {
    let server = NatsServer::start().await;
    let proxy = Proxy::start(server.url(), Rules::default()).await;
    let mut c = config(&proxy.url);
    c.nats.request_timeout = Duration::from_secs(1);
    c.nats.publish_retries = 2;
    let bus = NatsBus::connect(&c).await.expect("connect");
    bus.append(ExpectedVersion::NoAggregate, deposits("p1", 2))
        .await
        .expect("first append");
    proxy.drop_next_batch_acks(1);
    let events = deposits("p1", 3);
    let r = bus
        .append(ExpectedVersion::Exactly(2), events.clone())
        .await
        .expect("the append succeeds despite the lost acknowledgement");
    assert_eq!(proxy.dropped(), 1, "the proxy dropped the acknowledgement");
    assert!(r.duplicate, "the retry found the first attempt: {r:?}");
    assert_eq!(r.version, 5);
    let loaded = bus.load("player", "p1", 2).await.expect("load");
    let positions: Vec<u64> = loaded.events.iter().map(|e| e.position).collect();
    assert_eq!(r.positions, positions);
    let ids: Vec<&str> = loaded
        .events
        .iter()
        .map(|e| e.envelope.event_id.as_str())
        .collect();
    let sent: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, sent);
    let all = bus
        .replay(&bus.layout().all(), StartPosition::Beginning)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("replay");
    assert_eq!(all.len(), 5, "each event stored once");
}

/// With no retries configured the lost acknowledgement is a `Timeout`; the
/// caller's own retry of the same append is then recognised as the append
/// that was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_lost_ack_is_a_timeout_and_the_callers_retry_is_recognised() {
    let server = NatsServer::start().await;
    let proxy = Proxy::start(
        server.url(),
        Rules {
            drop_batch_acks: 1,
            ..Rules::default()
        },
    )
    .await;
    let mut c = config(&proxy.url);
    c.nats.request_timeout = Duration::from_secs(1);
    c.nats.publish_retries = 0;
    let bus = NatsBus::connect(&c).await.expect("connect");
    let events = deposits("p1", 2);
    match bus
        .append(ExpectedVersion::NoAggregate, events.clone())
        .await
    {
        Err(BusError::Timeout { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    let r = bus
        .append(ExpectedVersion::NoAggregate, events.clone())
        .await
        .expect("the retry");
    assert!(r.duplicate, "{r:?}");
    assert_eq!(r.version, 2);
    let loaded = bus.load("player", "p1", 0).await.expect("load");
    assert_eq!(
        loaded.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        r.positions
    );
}

/// A stream made by an earlier version of the bus (events only, no
/// `allow_atomic`): connecting is a `Conflict` naming what is missing, and
/// `update_stream` adds it, keeping the events, after which appends work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_from_before_appends_conflicts_and_update_stream_upgrades_it() {
    let server = NatsServer::start().await;
    let client = async_nats::connect(server.url()).await.expect("client");
    let js = jetstream::new(client);
    let old = NatsBus::connect(&config(&server.url()))
        .await
        .expect("connect");
    old.publish(deposit("p0", 1)).await.expect("publish");
    drop(old);
    // What earlier versions created: the events subject only.
    let mut info = js
        .get_stream("angzarr-events")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    info.subjects = vec!["angzarr.events.>".into()];
    info.allow_atomic_publish = false;
    js.update_stream(&info).await.expect("downgrade the stream");

    match NatsBus::connect(&config(&server.url())).await {
        Err(BusError::Conflict(m)) => {
            assert!(m.contains("angzarr.aggregates.>"), "{m}");
            assert!(m.contains("allow_atomic"), "{m}");
            assert!(m.contains("update_stream"), "{m}");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let mut c = config(&server.url());
    c.nats.update_stream = true;
    let bus = NatsBus::connect(&c).await.expect("update_stream upgrades");
    let r = bus
        .append(ExpectedVersion::NoAggregate, deposits("p1", 2))
        .await
        .expect("append after the upgrade");
    assert_eq!(r.version, 2);
    let after: stream::Config = js
        .get_stream("angzarr-events")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    assert!(after.allow_atomic_publish);
    assert!(after.subjects.contains(&"angzarr.aggregates.>".to_owned()));
    let all = bus
        .replay(&bus.layout().all(), StartPosition::Beginning)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("replay");
    assert_eq!(all.len(), 3, "the old event is still there");
}

/// A server that answers a batched direct get with one plain message (as
/// servers before 2.11 do): loads notice and read with single direct gets,
/// with the same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_fall_back_to_single_direct_gets_when_batches_are_answered_plainly() {
    let server = NatsServer::start().await;
    let direct = NatsBus::connect(&config(&server.url()))
        .await
        .expect("connect");
    let mut version = 0;
    for k in [5usize, 70, 2, 90] {
        version = direct
            .append(ExpectedVersion::Exactly(version), deposits("p1", k))
            .await
            .expect("append")
            .version;
        direct
            .append(ExpectedVersion::Any, deposits("other", 3))
            .await
            .expect("append");
    }
    let proxy = Proxy::start(
        server.url(),
        Rules {
            plain_direct_gets: true,
            ..Rules::default()
        },
    )
    .await;
    let plain = NatsBus::connect(&config(&proxy.url))
        .await
        .expect("connect");
    for after in [0, 4, 75, 160, version] {
        let got = tokio::time::timeout(Duration::from_secs(20), plain.load("player", "p1", after))
            .await
            .expect("no waiting for an end of batch that never comes")
            .expect("load");
        let reference = direct.load("player", "p1", after).await.expect("load");
        assert_eq!(got, reference, "load after {after}");
        assert_eq!(got.events.len() as u64, version - after);
    }
}
