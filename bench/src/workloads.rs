//! The benchmark workloads, run against one NATS server URL with async-nats
//! clients (one client per publisher, subscriber, responder and requester).
//!
//! Every phase is bounded in time: a stalled server shows up as lost
//! messages or failed requests, never as a hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Result;

/// How long connecting (and the first handshake) to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one publisher may take for all of its messages.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long subscribers may go without receiving anything, once the publisher
/// is done, before the missing messages are counted as lost.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a round trip through the server (see [`sync`]) may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may wait for its reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long all requests of one reqrep run may take together.
pub const REQREP_DEADLINE: Duration = Duration::from_secs(60);
/// Subscribers in the fanout workload and members of the queue group.
pub const FANOUT_SUBSCRIBERS: usize = 4;
/// Requests sent before the measured ones (connection and cache warm-up).
pub const REQREP_WARMUP: u64 = 100;
/// Largest latency the histogram can hold (1 minute, in nanoseconds).
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Bytes published between two explicit flushes.
const FLUSH_BYTES: usize = 1 << 20;

/// One benchmark workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// One publisher, no subscribers.
    Pub,
    /// One publisher, one subscriber.
    Pubsub,
    /// One publisher, four subscribers on the same subject.
    Fanout,
    /// One publisher, a queue group of four members.
    Queue,
    /// Sequential request/reply latency (one requester, one responder).
    Reqrep,
    /// JetStream publish to a file stream, many acknowledgements in flight.
    JsPub,
    /// JetStream publish latency, one publish awaited at a time.
    JsPubSync,
    /// Pull consumer (ack policy none) reading pre-published messages.
    JsFetch,
    /// Pull consumer (ack policy explicit) reading and acking each message.
    JsFetchAck,
    /// Ordered consumer replaying pre-published messages.
    JsOrdered,
    /// Push consumer (ack policy none) delivering pre-published messages.
    JsPush,
    /// Key-value puts, many in flight.
    KvPut,
    /// Key-value put latency, one put awaited at a time.
    KvPutSync,
    /// Key-value get latency, one get at a time.
    KvGet,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Pub => "pub",
            Workload::Pubsub => "pubsub",
            Workload::Fanout => "fanout",
            Workload::Queue => "queue",
            Workload::Reqrep => "reqrep",
            Workload::JsPub => "js-pub",
            Workload::JsPubSync => "js-pub-sync",
            Workload::JsFetch => "js-fetch",
            Workload::JsFetchAck => "js-fetch-ack",
            Workload::JsOrdered => "js-ordered",
            Workload::JsPush => "js-push",
            Workload::KvPut => "kv-put",
            Workload::KvPutSync => "kv-put-sync",
            Workload::KvGet => "kv-get",
        }
    }

    /// Whether the workload needs JetStream on the server.
    pub fn is_jetstream(self) -> bool {
        !matches!(
            self,
            Workload::Pub
                | Workload::Pubsub
                | Workload::Fanout
                | Workload::Queue
                | Workload::Reqrep
        )
    }

    /// Whether the workload measures latency percentiles (one operation at
    /// a time) rather than throughput.
    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Workload::Reqrep | Workload::JsPubSync | Workload::KvPutSync | Workload::KvGet
        )
    }

    /// The operations of one run when none are given: requests for the
    /// latency workloads, messages otherwise.
    pub fn default_count(self, size: usize) -> u64 {
        match self {
            Workload::Reqrep | Workload::KvGet => 5_000,
            Workload::JsPubSync | Workload::KvPutSync => 2_000,
            w if w.is_jetstream() => js_default_msgs(size),
            _ => default_msgs(size),
        }
    }

    /// What one unit of [`Outcome::delivered`] is for this workload: what
    /// `compare` divides the server's CPU time by.
    pub fn delivered(self) -> &'static str {
        match self {
            Workload::Pub => "messages published (all processed by the server)",
            Workload::Pubsub => "messages received by the subscriber",
            Workload::Fanout => {
                "messages received, summed over the 4 subscribers (4 per message published)"
            }
            Workload::Queue => "messages received by the queue group (1 per message published)",
            Workload::Reqrep => "requests answered (request + reply = 1; warm-up not counted)",
            Workload::JsPub => "publishes acknowledged (and found in the stream)",
            Workload::JsPubSync => "publishes acknowledged (warm-up not counted)",
            Workload::JsFetch | Workload::JsOrdered | Workload::JsPush => {
                "messages consumed (untimed pre-publishing not counted)"
            }
            Workload::JsFetchAck => {
                "messages consumed and acked, acks registered by the server (pre-publishing not counted)"
            }
            Workload::KvPut => "puts acknowledged",
            Workload::KvPutSync => "puts acknowledged (warm-up not counted)",
            Workload::KvGet => "gets answered (untimed key puts and warm-up not counted)",
        }
    }

    /// Payload sizes used when `--sizes` is not given.
    pub fn default_sizes(self) -> &'static [usize] {
        if self.is_jetstream() {
            &[JS_DEFAULT_SIZE]
        } else {
            &[16, 1024, 65_536]
        }
    }
}

/// Payload size of the JetStream workloads when `--sizes` is not given.
pub const JS_DEFAULT_SIZE: usize = 128;

/// Default message count of the throughput JetStream workloads.
pub fn js_default_msgs(size: usize) -> u64 {
    match size {
        0..=1024 => 50_000,
        1025..=16384 => 20_000,
        _ => 5_000,
    }
}

/// Default message count for a payload size: a few seconds per run at most
/// on a 2-core machine.
pub fn default_msgs(size: usize) -> u64 {
    match size {
        0..=256 => 200_000,
        257..=4096 => 100_000,
        4097..=16384 => 40_000,
        _ => 10_000,
    }
}

/// Throughput of a publish workload. For `pub` the rate is measured at the
/// publisher (first publish until the server has processed the last one);
/// for the others at the subscribers (first to last message received).
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub workload: Workload,
    pub size: usize,
    /// Messages published.
    pub sent: u64,
    /// Deliveries expected at the subscribers (`sent` times the subscribers
    /// for fanout; `sent` for pub, pubsub and queue).
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub elapsed_secs: f64,
    pub msgs_per_sec: f64,
    pub mib_per_sec: f64,
}

/// Latency percentiles of the reqrep workload, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub workload: Workload,
    pub size: usize,
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    #[serde(flatten)]
    pub percentiles: Percentiles,
}

/// The result of one workload run.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Throughput(Throughput),
    Latency(Latency),
}

impl Outcome {
    /// Messages delivered in the measured phase (see [`Workload::delivered`]):
    /// received (or, for pub, published; for the JetStream throughput
    /// workloads, acknowledged or consumed) for a throughput run, operations
    /// completed for a latency run.
    pub fn delivered(&self) -> u64 {
        match self {
            Outcome::Throughput(t) => t.received,
            Outcome::Latency(l) => l.completed,
        }
    }

    /// A run that failed with an error: nothing received, every operation
    /// counted as lost or failed.
    pub fn failed(workload: Workload, size: usize, count: u64) -> Outcome {
        if workload.is_latency() {
            Outcome::Latency(Latency {
                workload,
                size,
                requests: count,
                completed: 0,
                failed: count,
                percentiles: Percentiles::default(),
            })
        } else {
            Outcome::Throughput(throughput(workload, size, count, count, 0, Duration::ZERO))
        }
    }
}

/// Told where a run's measured phase starts and ends: `compare` reads the
/// server's CPU time at both marks, so that set-up (connecting, subscribing,
/// creating and filling streams, warm-up requests) and clean-up are left
/// out. Every workload calls [`Marks::start`] once just before its measured
/// operations and [`Marks::end`] once when the server has done all of their
/// work (the last message received, acknowledged or answered).
pub trait Marks {
    fn start(&mut self);
    fn end(&mut self);
    /// Appended to the run's progress line.
    fn note(&self) -> String {
        String::new()
    }
}

/// No marks wanted (`run`, warm-ups).
impl Marks for () {
    fn start(&mut self) {}
    fn end(&mut self) {}
}

/// The marks a workload function is given.
pub type MarksMut<'a> = &'a mut (dyn Marks + Send);

/// Runs `workload` once against `url` with `size`-byte payloads: `msgs`
/// messages for the publish workloads, `msgs` requests for the latency ones.
pub async fn run(
    url: &str,
    workload: Workload,
    size: usize,
    msgs: u64,
    marks: MarksMut<'_>,
) -> Result<Outcome> {
    if workload.is_jetstream() {
        // The JetStream workloads run in the jetstream module, which
        // builds on this one; the caller picks.
        return Err(format!("{} is a JetStream workload", workload.name()).into());
    }
    let subject = unique_subject(workload);
    let payload = Bytes::from(vec![b'x'; size]);
    let outcome = match workload {
        Workload::Pub => {
            Outcome::Throughput(publish_only(url, subject, payload, msgs, marks).await?)
        }
        Workload::Pubsub | Workload::Fanout | Workload::Queue => {
            let group = match workload {
                Workload::Pubsub => Group::Single,
                Workload::Fanout => Group::Fanout,
                _ => Group::Queue,
            };
            Outcome::Throughput(fan(url, workload, subject, payload, msgs, group, marks).await?)
        }
        Workload::Reqrep => {
            Outcome::Latency(request_reply(url, subject, payload, msgs, marks).await?)
        }
        _ => return Err(format!("{} is not a core workload", workload.name()).into()),
    };
    Ok(outcome)
}

pub fn unique_subject(workload: Workload) -> Subject {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    Subject::from(format!(
        "bench.{}.{}.{run}",
        workload.name(),
        std::process::id()
    ))
}

pub async fn connect(url: &str, subscription_capacity: usize) -> Result<Client> {
    let options = ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .subscription_capacity(subscription_capacity.max(1024));
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect(url)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(err)) => Err(format!("connecting to {url}: {err}").into()),
        Err(_) => Err(format!("connecting to {url} timed out").into()),
    }
}

/// A round trip through the server on `client`'s connection: once a message
/// published to the client's own inbox comes back, the server has processed
/// everything the client sent before it (subscriptions, publishes).
async fn sync(client: &Client) -> Result<()> {
    let inbox = Subject::from(client.new_inbox());
    let mut sub = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, Bytes::from_static(b"sync")).await?;
    client.flush().await?;
    let echoed = tokio::time::timeout(SYNC_TIMEOUT, sub.next())
        .await
        .map_err(|_| "round trip through the server timed out")?;
    if echoed.is_none() {
        return Err("connection closed during a round trip through the server".into());
    }
    sub.unsubscribe().await?;
    Ok(())
}

/// Publishes `msgs` messages, flushing every [`FLUSH_BYTES`] and at the end.
/// Returns how many were handed to the client when it finished or timed out.
async fn publish_all(client: &Client, subject: &Subject, payload: &Bytes, msgs: u64) -> u64 {
    let batch = (FLUSH_BYTES / payload.len().max(1)).clamp(1, 10_000) as u64;
    let mut sent = 0;
    let publish = async {
        for _ in 0..msgs {
            client.publish(subject.clone(), payload.clone()).await?;
            sent += 1;
            if sent % batch == 0 {
                client.flush().await?;
            }
        }
        client.flush().await?;
        Ok::<_, async_nats::Error>(())
    };
    // A timeout or a connection error ends publishing; the shortfall is
    // reported as lost messages.
    let _ = tokio::time::timeout(PUBLISH_TIMEOUT, publish).await;
    sent
}

async fn publish_only(
    url: &str,
    subject: Subject,
    payload: Bytes,
    msgs: u64,
    marks: MarksMut<'_>,
) -> Result<Throughput> {
    let client = connect(url, 1024).await?;
    marks.start();
    let start = Instant::now();
    let sent = publish_all(&client, &subject, &payload, msgs).await;
    // The server handles a connection's messages in order: after the round
    // trip it has processed every publish.
    sync(&client).await?;
    let elapsed = start.elapsed();
    marks.end();
    Ok(throughput(
        Workload::Pub,
        payload.len(),
        sent,
        msgs,
        sent,
        elapsed,
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    /// One plain subscriber.
    Single,
    /// [`FANOUT_SUBSCRIBERS`] plain subscribers: each gets every message.
    Fanout,
    /// A queue group of [`FANOUT_SUBSCRIBERS`]: each message goes to one.
    Queue,
}

/// What one subscriber received.
#[derive(Default)]
pub struct Received {
    pub count: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Received {
    /// One message received at `now`.
    pub fn record(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.count += 1;
    }

    /// Adds what another subscriber received.
    pub fn merge(&mut self, other: &Received) {
        self.count += other.count;
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, other.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// From the first message received to the last.
    pub fn span(&self) -> Duration {
        match (self.first, self.last) {
            (Some(first), Some(last)) => last.duration_since(first),
            _ => Duration::ZERO,
        }
    }
}

async fn fan(
    url: &str,
    workload: Workload,
    subject: Subject,
    payload: Bytes,
    msgs: u64,
    group: Group,
    marks: MarksMut<'_>,
) -> Result<Throughput> {
    let members = if group == Group::Single {
        1
    } else {
        FANOUT_SUBSCRIBERS
    };
    let expected = if group == Group::Queue {
        msgs
    } else {
        msgs * members as u64
    };
    // Let the client buffer every message so that no message is dropped in
    // the client; losses then come from the server only.
    let capacity = usize::try_from(msgs)
        .unwrap_or(usize::MAX)
        .saturating_add(16);

    let progress = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::with_capacity(members);
    let mut tasks: Vec<JoinHandle<Received>> = Vec::with_capacity(members);
    for _ in 0..members {
        let client = connect(url, capacity).await?;
        let sub = if group == Group::Queue {
            client
                .queue_subscribe(subject.clone(), "bench".to_string())
                .await?
        } else {
            client.subscribe(subject.clone()).await?
        };
        sync(&client).await?;
        tasks.push(tokio::spawn(consume(
            sub,
            Arc::clone(&progress),
            stop_rx.clone(),
        )));
        clients.push(client);
    }

    let publisher = connect(url, 1024).await?;
    marks.start();
    let sent = publish_all(&publisher, &subject, &payload, msgs).await;
    let expected_now = if group == Group::Fanout {
        sent * members as u64
    } else {
        sent
    };
    wait_for(&progress, expected_now, IDLE_TIMEOUT).await;
    marks.end();
    let _ = stop_tx.send(true);

    let mut all = Received::default();
    for task in tasks {
        all.merge(&task.await?);
    }
    drop(clients);
    Ok(throughput(
        workload,
        payload.len(),
        sent,
        expected,
        all.count,
        all.span(),
    ))
}

/// Receives until told to stop (or the subscription ends).
async fn consume(
    mut sub: Subscriber,
    progress: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut got = Received::default();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = sub.next() => {
                if msg.is_none() {
                    break;
                }
                got.record(Instant::now());
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    got
}

/// Waits until `progress` reaches `expected`, or stops moving for `idle`.
async fn wait_for(progress: &AtomicU64, expected: u64, idle: Duration) {
    let mut wait = Wait::new(progress);
    while wait.goes_on(progress, expected, idle) {
        tokio::time::sleep(WAIT_STEP).await;
    }
}

/// How often a wait for deliveries looks at their count.
pub const WAIT_STEP: Duration = Duration::from_millis(2);

/// A wait for a delivery count: over once it is reached, or once it has not
/// moved for a while.
pub struct Wait {
    seen: u64,
    moved: Instant,
}

impl Wait {
    pub fn new(progress: &AtomicU64) -> Wait {
        Wait {
            seen: progress.load(Ordering::Relaxed),
            moved: Instant::now(),
        }
    }

    /// Whether to look again after [`WAIT_STEP`]: `expected` not reached
    /// and the count moved within the last `idle`.
    pub fn goes_on(&mut self, progress: &AtomicU64, expected: u64, idle: Duration) -> bool {
        let now = progress.load(Ordering::Relaxed);
        if now != self.seen {
            self.seen = now;
            self.moved = Instant::now();
        }
        self.seen < expected && self.moved.elapsed() < idle
    }
}

pub fn throughput(
    workload: Workload,
    size: usize,
    sent: u64,
    expected: u64,
    received: u64,
    elapsed: Duration,
) -> Throughput {
    let secs = elapsed.as_secs_f64();
    let msgs_per_sec = if secs > 0.0 {
        received as f64 / secs
    } else {
        0.0
    };
    Throughput {
        workload,
        size,
        sent,
        expected,
        received,
        lost: expected.saturating_sub(received),
        elapsed_secs: secs,
        msgs_per_sec,
        mib_per_sec: msgs_per_sec * size as f64 / (1024.0 * 1024.0),
    }
}

async fn request_reply(
    url: &str,
    subject: Subject,
    payload: Bytes,
    requests: u64,
    marks: MarksMut<'_>,
) -> Result<Latency> {
    let responder = connect(url, 65_536).await?;
    let mut sub = responder.subscribe(subject.clone()).await?;
    sync(&responder).await?;
    let replies = responder.clone();
    let serve = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                if replies.publish(reply, msg.payload).await.is_err() {
                    break;
                }
            }
        }
    });

    let requester = connect(url, 1024).await?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_NS, 3)?;
    let mut completed = 0;
    let deadline = Instant::now() + REQREP_DEADLINE;
    for i in 0..REQREP_WARMUP + requests {
        if Instant::now() >= deadline {
            break;
        }
        if i == REQREP_WARMUP {
            marks.start();
        }
        let start = Instant::now();
        let reply = tokio::time::timeout(
            REQUEST_TIMEOUT,
            requester.request(subject.clone(), payload.clone()),
        )
        .await;
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if i < REQREP_WARMUP {
            continue;
        }
        if let Ok(Ok(_)) = reply {
            histogram.saturating_record(nanos.max(1));
            completed += 1;
        }
    }
    // Each reply has been received: the server has done its part.
    marks.end();
    serve.abort();
    Ok(Latency {
        workload: Workload::Reqrep,
        size: payload.len(),
        requests,
        completed,
        // Timed out, failed, or not sent before the deadline.
        failed: requests - completed,
        percentiles: summarize(&histogram),
    })
}

/// Percentiles of a histogram of nanoseconds, in microseconds.
pub fn summarize(histogram: &Histogram<u64>) -> Percentiles {
    if histogram.is_empty() {
        return Percentiles::default();
    }
    let us = |nanos: u64| nanos as f64 / 1000.0;
    Percentiles {
        p50_us: us(histogram.value_at_quantile(0.50)),
        p99_us: us(histogram.value_at_quantile(0.99)),
        p999_us: us(histogram.value_at_quantile(0.999)),
        mean_us: histogram.mean() / 1000.0,
        max_us: us(histogram.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_counts_shrink_with_size() {
        assert_eq!(default_msgs(16), 200_000);
        assert_eq!(default_msgs(1024), 100_000);
        assert_eq!(default_msgs(65_536), 10_000);
        assert!(default_msgs(8192) < default_msgs(1024));
    }

    #[test]
    fn summary_of_empty_histogram_is_zero() {
        let histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_NS, 3).unwrap();
        assert_eq!(summarize(&histogram), Percentiles::default());
    }

    #[test]
    fn summary_in_microseconds() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_NS, 3).unwrap();
        // 1000 samples of 10 µs, 9 of 100 µs, 1 of 1 ms.
        for _ in 0..990 {
            histogram.record(10_000).unwrap();
        }
        for _ in 0..9 {
            histogram.record(100_000).unwrap();
        }
        histogram.record(1_000_000).unwrap();
        let summary = summarize(&histogram);
        assert!((summary.p50_us - 10.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p99_us - 10.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p999_us - 100.0).abs() < 0.5, "{summary:?}");
        assert!((summary.max_us - 1000.0).abs() < 1.0, "{summary:?}");
        let mean = (990.0 * 10.0 + 9.0 * 100.0 + 1000.0) / 1000.0;
        assert!((summary.mean_us - mean).abs() < 0.1, "{summary:?}");
    }

    #[test]
    fn delivered_is_received_or_completed() {
        let fanout = Outcome::Throughput(throughput(
            Workload::Fanout,
            16,
            100,
            400,
            396,
            Duration::from_secs(1),
        ));
        assert_eq!(fanout.delivered(), 396);
        let failed = Outcome::failed(Workload::Reqrep, 16, 50);
        assert_eq!(failed.delivered(), 0);
        let failed = Outcome::failed(Workload::JsFetch, 128, 50);
        assert_eq!(failed.delivered(), 0);
        let fanout = Workload::Fanout.delivered();
        assert!(
            fanout.contains(&format!("{FANOUT_SUBSCRIBERS} subscribers")),
            "{fanout}"
        );
        for workload in <Workload as clap::ValueEnum>::value_variants() {
            assert!(!workload.delivered().is_empty(), "{}", workload.name());
        }
    }

    #[test]
    fn throughput_counts_losses() {
        let result = throughput(Workload::Pubsub, 1024, 100, 100, 90, Duration::from_secs(2));
        assert_eq!(result.lost, 10);
        assert!((result.msgs_per_sec - 45.0).abs() < 1e-9);
        assert!((result.mib_per_sec - 45.0 / 1024.0).abs() < 1e-9);
    }
}
