//! The JetStream and key-value workloads. Every run creates its own stream
//! or bucket (file storage, one replica) under a unique name and deletes it
//! afterwards; messages published only to set a run up are not timed.
//!
//! Every phase is bounded in time: a stalled server shows up as lost
//! messages or failed operations (with a warning on stderr saying why),
//! never as a hang.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy};
use async_nats::jetstream::{self, Context, ContextBuilder, kv, stream};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;

use crate::Result;
use crate::workloads::{
    IDLE_TIMEOUT, Latency, MAX_LATENCY_NS, MarksMut, Outcome, REQREP_DEADLINE, REQREP_WARMUP,
    Throughput, Workload, connect, summarize, throughput,
};

pub use crate::workloads::JS_DEFAULT_SIZE as DEFAULT_SIZE;
/// Publish acknowledgements (or key-value puts) awaited at once by js-pub,
/// kv-put and the untimed pre-publishing of the consume workloads.
pub const PUBLISH_WINDOW: usize = 1024;
/// Messages per pull request of js-fetch and js-fetch-ack.
pub const FETCH_BATCH: usize = 500;
/// Keys of the kv-put and kv-get buckets, written round robin (`k0` ...).
pub const KV_KEYS: u64 = 1_000;
/// Durable name of the pull consumer of js-fetch and js-fetch-ack.
const CONSUMER_NAME: &str = "bench";
/// How long one JetStream API request (create, info, delete) may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one publish may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one phase (publishing, consuming) may take in all.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the server may take to register the last acks of js-fetch-ack.
const ACK_SETTLE: Duration = Duration::from_secs(5);
/// Errors from a consumer's message stream after which consuming stops.
const MAX_STREAM_ERRORS: u64 = 100;

/// A stream or bucket name unique to this process and run, such as
/// `BENCH_JS_FETCH_4242_3` (letters, digits and `_` only).
pub fn unique_name(workload: Workload) -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    format!(
        "BENCH_{}_{}_{run}",
        workload.name().to_ascii_uppercase().replace('-', "_"),
        std::process::id()
    )
}

/// The key written by the `i`-th put.
fn key(i: u64) -> String {
    format!("k{}", i % KV_KEYS)
}

/// Runs one JetStream workload (the core ones are `crate::workloads::run`).
pub async fn run(
    url: &str,
    workload: Workload,
    size: usize,
    count: u64,
    marks: MarksMut<'_>,
) -> Result<Outcome> {
    let client = connect(url, 65_536).await?;
    let js = ContextBuilder::new()
        .timeout(API_TIMEOUT)
        .ack_timeout(ACK_TIMEOUT)
        .build(client.clone());
    let name = unique_name(workload);
    let subject = format!("bench.{}", name.to_ascii_lowercase());
    let payload = Bytes::from(vec![b'x'; size]);
    let outcome = match workload {
        Workload::JsPub => js_pub(&js, &name, &subject, &payload, count, marks)
            .await
            .map(Outcome::Throughput),
        Workload::JsPubSync => js_pub_sync(&js, &name, &subject, &payload, count, marks)
            .await
            .map(Outcome::Latency),
        Workload::JsFetch | Workload::JsFetchAck | Workload::JsOrdered | Workload::JsPush => {
            js_consume(&js, workload, &name, &subject, &payload, count, marks)
                .await
                .map(Outcome::Throughput)
        }
        Workload::KvPut => kv_put(&js, &name, &payload, count, marks)
            .await
            .map(Outcome::Throughput),
        Workload::KvGet => kv_get(&js, &name, &payload, count, marks)
            .await
            .map(Outcome::Latency),
        Workload::KvPutSync => kv_put_sync(&js, &name, &payload, count, marks)
            .await
            .map(Outcome::Latency),
        _ => Err(format!("{} is not a JetStream workload", workload.name()).into()),
    };
    let deleted = if matches!(
        workload,
        Workload::KvPut | Workload::KvPutSync | Workload::KvGet
    ) {
        timed(js.delete_key_value(&name))
            .await
            .map(|_| ())
            .map_err(|err| format!("deleting bucket {name}: {err}"))
    } else {
        timed(js.delete_stream(&name))
            .await
            .map(|_| ())
            .map_err(|err| format!("deleting stream {name}: {err}"))
    };
    if let (Ok(_), Err(err)) = (&outcome, deleted) {
        eprintln!("warning: {} {err}", workload.name());
    }
    drop(client);
    outcome
}

/// `future` bounded by [`API_TIMEOUT`], its error turned into [`crate::Error`].
async fn timed<T, E>(future: impl Future<Output = std::result::Result<T, E>>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(API_TIMEOUT, future).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(format!("no answer within {API_TIMEOUT:?}").into()),
    }
}

async fn create_stream(js: &Context, name: &str, subject: &str) -> Result<stream::Stream> {
    let config = stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    };
    timed(js.create_stream(config))
        .await
        .map_err(|err| format!("creating stream {name}: {err}").into())
}

async fn create_bucket(js: &Context, name: &str) -> Result<kv::Store> {
    let config = kv::Config {
        bucket: name.to_string(),
        history: 1,
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    };
    timed(js.create_key_value(config))
        .await
        .map_err(|err| format!("creating bucket {name}: {err}").into())
}

/// How many of a batch of publishes (or puts) were acknowledged.
#[derive(Default)]
struct Published {
    acked: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Published {
    fn record<T, E: std::fmt::Display>(&mut self, result: std::result::Result<T, E>) {
        match result {
            Ok(_) => self.acked += 1,
            Err(err) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }

    /// Why not all `expected` were acknowledged, if they were not.
    fn shortfall(&self, expected: u64) -> Option<String> {
        (self.acked < expected).then(|| {
            format!(
                "{} of {expected} acknowledged ({} failed{})",
                self.acked,
                self.failed,
                match &self.first_error {
                    Some(err) => format!(", first error: {err}"),
                    None => format!(", the rest not done within {PHASE_TIMEOUT:?}"),
                }
            )
        })
    }
}

/// Publishes `msgs` messages with up to [`PUBLISH_WINDOW`] acknowledgements
/// pending, until all are acknowledged, one fails to be sent, or
/// [`PHASE_TIMEOUT`] passes.
async fn publish_window(js: &Context, subject: &str, payload: &Bytes, msgs: u64) -> Published {
    let mut published = Published::default();
    let work = async {
        let mut pending = FuturesUnordered::new();
        for _ in 0..msgs {
            if pending.len() >= PUBLISH_WINDOW {
                if let Some(result) = pending.next().await {
                    published.record(result);
                }
            }
            match js.publish(subject.to_string(), payload.clone()).await {
                Ok(ack) => pending.push(ack.into_future()),
                Err(err) => {
                    published.record::<(), _>(Err(err));
                    break;
                }
            }
        }
        while let Some(result) = pending.next().await {
            published.record(result);
        }
    };
    let _ = tokio::time::timeout(PHASE_TIMEOUT, work).await;
    published
}

/// js-pub: time from the first publish to the last acknowledgement.
async fn js_pub(
    js: &Context,
    name: &str,
    subject: &str,
    payload: &Bytes,
    msgs: u64,
    marks: MarksMut<'_>,
) -> Result<Throughput> {
    let mut stream = create_stream(js, name, subject).await?;
    marks.start();
    let start = Instant::now();
    let published = publish_window(js, subject, payload, msgs).await;
    let elapsed = start.elapsed();
    marks.end();
    if let Some(why) = published.shortfall(msgs) {
        eprintln!("warning: js-pub: {why}");
    }
    // Untimed: the stream should hold every acknowledged message.
    let stored = timed(stream.info()).await?.state.messages;
    if stored < published.acked {
        eprintln!(
            "warning: js-pub: stream {name} holds {stored} messages, {} were acknowledged",
            published.acked
        );
    }
    Ok(throughput(
        Workload::JsPub,
        payload.len(),
        msgs,
        msgs,
        published.acked.min(stored),
        elapsed,
    ))
}

/// The latency workloads' loop: [`REQREP_WARMUP`] untimed rounds of
/// `op(i)`, then `requests` timed ones, one at a time (each awaits the
/// last), until [`REQREP_DEADLINE`]; a round counts when `op` returns
/// `Ok`. `what` is the verb of the shortfall warning ("acknowledged").
async fn one_at_a_time<F, Fut>(
    workload: Workload,
    size: usize,
    requests: u64,
    marks: MarksMut<'_>,
    what: &str,
    mut op: F,
) -> Result<Latency>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = std::result::Result<(), String>>,
{
    let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_NS, 3)?;
    let mut completed = 0;
    let mut first_error = None;
    let deadline = Instant::now() + REQREP_DEADLINE;
    for i in 0..REQREP_WARMUP + requests {
        if Instant::now() >= deadline {
            break;
        }
        if i == REQREP_WARMUP {
            marks.start();
        }
        let start = Instant::now();
        let result = op(i).await;
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if i < REQREP_WARMUP {
            continue;
        }
        match result {
            Ok(()) => {
                histogram.saturating_record(nanos.max(1));
                completed += 1;
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    marks.end();
    if completed < requests {
        eprintln!(
            "warning: {}: {completed} of {requests} {what}{}",
            workload.name(),
            first_error
                .map(|err| format!(", first error: {err}"))
                .unwrap_or_else(|| format!(", the rest not done within {REQREP_DEADLINE:?}"))
        );
    }
    Ok(Latency {
        workload,
        size,
        requests,
        completed,
        failed: requests - completed,
        percentiles: summarize(&histogram),
    })
}

/// js-pub-sync: each publish waits for its acknowledgement before the next.
async fn js_pub_sync(
    js: &Context,
    name: &str,
    subject: &str,
    payload: &Bytes,
    requests: u64,
    marks: MarksMut<'_>,
) -> Result<Latency> {
    create_stream(js, name, subject).await?;
    one_at_a_time(
        Workload::JsPubSync,
        payload.len(),
        requests,
        marks,
        "acknowledged",
        |_| async {
            let ack = js
                .publish(subject.to_string(), payload.clone())
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map(|_| ()).map_err(|e| e.to_string())
        },
    )
    .await
}

/// js-fetch, js-fetch-ack, js-ordered and js-push: publish `msgs` messages (untimed),
/// create the consumer (untimed), then time from starting to consume until
/// the last message has been received (and, for js-fetch-ack, its ack sent).
async fn js_consume(
    js: &Context,
    workload: Workload,
    name: &str,
    subject: &str,
    payload: &Bytes,
    msgs: u64,
    marks: MarksMut<'_>,
) -> Result<Throughput> {
    let stream = create_stream(js, name, subject).await?;
    let published = publish_window(js, subject, payload, msgs).await;
    if let Some(why) = published.shortfall(msgs) {
        return Err(format!("pre-publishing: {why}").into());
    }

    let (consumed, elapsed, unacked) = if workload == Workload::JsOrdered {
        let consumer = timed(stream.create_consumer(consumer::pull::OrderedConfig::default()))
            .await
            .map_err(|err| format!("creating ordered consumer: {err}"))?;
        marks.start();
        let start = Instant::now();
        let mut messages = timed(consumer.messages()).await?;
        let consumed = consume(&mut messages, msgs, false).await;
        let elapsed = start.elapsed();
        marks.end();
        (consumed, elapsed, 0)
    } else if workload == Workload::JsPush {
        let deliver_subject = js.client().new_inbox();
        let consumer = timed(stream.create_consumer(consumer::push::Config {
            deliver_subject,
            ack_policy: AckPolicy::None,
            ..Default::default()
        }))
        .await
        .map_err(|err| format!("creating push consumer: {err}"))?;
        marks.start();
        let start = Instant::now();
        let mut messages = timed(consumer.messages()).await?;
        let consumed = consume(&mut messages, msgs, false).await;
        let elapsed = start.elapsed();
        marks.end();
        (consumed, elapsed, 0)
    } else {
        let ack = workload == Workload::JsFetchAck;
        let config = consumer::pull::Config {
            durable_name: Some(CONSUMER_NAME.to_string()),
            ack_policy: if ack {
                AckPolicy::Explicit
            } else {
                AckPolicy::None
            },
            ..Default::default()
        };
        let mut consumer = timed(stream.create_consumer(config))
            .await
            .map_err(|err| format!("creating pull consumer: {err}"))?;
        marks.start();
        let start = Instant::now();
        let mut messages = timed(
            consumer
                .stream()
                .max_messages_per_batch(FETCH_BATCH)
                .messages(),
        )
        .await?;
        let consumed = consume(&mut messages, msgs, ack).await;
        if ack {
            // The acks are plain publishes: flushed, they are on their way.
            timed(js.client().flush()).await?;
        }
        let elapsed = start.elapsed();
        drop(messages);
        // Untimed, but inside the CPU window: the server's work on the
        // acks is part of consuming with acks.
        let unacked = if ack {
            unacknowledged(&mut consumer, consumed.count).await?
        } else {
            0
        };
        marks.end();
        (consumed, elapsed, unacked)
    };

    if let Some(why) = &consumed.error {
        eprintln!(
            "warning: {}: received {} of {msgs}: {why}",
            workload.name(),
            consumed.count
        );
    }
    if unacked > 0 {
        eprintln!(
            "warning: {}: {unacked} acks not registered by the server within {ACK_SETTLE:?}",
            workload.name()
        );
    }
    Ok(throughput(
        workload,
        payload.len(),
        msgs,
        msgs,
        consumed.count.saturating_sub(unacked),
        elapsed,
    ))
}

/// What a consumer received.
#[derive(Default)]
struct Consumed {
    count: u64,
    /// Why consuming stopped before `expected` messages, or the first error.
    error: Option<String>,
}

/// Receives up to `expected` messages (acking each if `ack`), stopping after
/// [`IDLE_TIMEOUT`] without a message, [`MAX_STREAM_ERRORS`] errors or
/// [`PHASE_TIMEOUT`] in all.
async fn consume<S, E>(messages: &mut S, expected: u64, ack: bool) -> Consumed
where
    S: futures::Stream<Item = std::result::Result<jetstream::Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut consumed = Consumed::default();
    let mut errors = 0;
    let start = Instant::now();
    while consumed.count < expected {
        if start.elapsed() >= PHASE_TIMEOUT {
            consumed
                .error
                .get_or_insert_with(|| format!("not done within {PHASE_TIMEOUT:?}"));
            break;
        }
        match tokio::time::timeout(IDLE_TIMEOUT, messages.next()).await {
            Err(_) => {
                consumed
                    .error
                    .get_or_insert_with(|| format!("no message for {IDLE_TIMEOUT:?}"));
                break;
            }
            Ok(None) => {
                consumed
                    .error
                    .get_or_insert_with(|| "message stream ended".to_string());
                break;
            }
            Ok(Some(Err(err))) => {
                consumed.error.get_or_insert_with(|| err.to_string());
                errors += 1;
                if errors >= MAX_STREAM_ERRORS {
                    break;
                }
            }
            Ok(Some(Ok(message))) => {
                if ack {
                    if let Err(err) = message.ack().await {
                        consumed
                            .error
                            .get_or_insert_with(|| format!("acking: {err}"));
                        break;
                    }
                }
                consumed.count += 1;
            }
        }
    }
    consumed
}

/// Of `acked` messages acked in order from the first, how many the server
/// has not registered as acknowledged within [`ACK_SETTLE`] (untimed).
async fn unacknowledged(consumer: &mut consumer::PullConsumer, acked: u64) -> Result<u64> {
    let start = Instant::now();
    loop {
        let info = timed(consumer.info()).await?;
        let floor = info.ack_floor.consumer_sequence;
        let missing = acked.saturating_sub(floor);
        if missing == 0 || start.elapsed() >= ACK_SETTLE {
            return Ok(missing);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Puts `count` values (keys round robin over [`KV_KEYS`]) with up to
/// [`PUBLISH_WINDOW`] puts in flight.
async fn put_window(store: &kv::Store, payload: &Bytes, count: u64) -> Published {
    let mut published = Published::default();
    let work = async {
        let mut puts = futures::stream::iter(0..count)
            .map(|i| store.put(key(i), payload.clone()))
            .buffer_unordered(PUBLISH_WINDOW);
        while let Some(result) = puts.next().await {
            published.record(result);
        }
    };
    let _ = tokio::time::timeout(PHASE_TIMEOUT, work).await;
    published
}

/// kv-put: time from the first put to the last acknowledged.
async fn kv_put(
    js: &Context,
    name: &str,
    payload: &Bytes,
    count: u64,
    marks: MarksMut<'_>,
) -> Result<Throughput> {
    let store = create_bucket(js, name).await?;
    marks.start();
    let start = Instant::now();
    let published = put_window(&store, payload, count).await;
    let elapsed = start.elapsed();
    marks.end();
    if let Some(why) = published.shortfall(count) {
        eprintln!("warning: kv-put: {why}");
    }
    Ok(throughput(
        Workload::KvPut,
        payload.len(),
        count,
        count,
        published.acked,
        elapsed,
    ))
}

/// kv-put-sync: 100 warm-up puts, then `requests` puts one at a time (keys
/// round robin over [`KV_KEYS`]), each awaiting its acknowledgement.
async fn kv_put_sync(
    js: &Context,
    name: &str,
    payload: &Bytes,
    requests: u64,
    marks: MarksMut<'_>,
) -> Result<Latency> {
    let store = create_bucket(js, name).await?;
    one_at_a_time(
        Workload::KvPutSync,
        payload.len(),
        requests,
        marks,
        "acknowledged",
        |i| {
            let put = store.put(key(i), payload.clone());
            async move { put.await.map(|_| ()).map_err(|e| e.to_string()) }
        },
    )
    .await
}

/// kv-get: [`KV_KEYS`] keys put (untimed), then `requests` gets one at a
/// time, keys round robin; a get fails on an error or a missing value.
async fn kv_get(
    js: &Context,
    name: &str,
    payload: &Bytes,
    requests: u64,
    marks: MarksMut<'_>,
) -> Result<Latency> {
    let store = create_bucket(js, name).await?;
    let published = put_window(&store, payload, KV_KEYS).await;
    if let Some(why) = published.shortfall(KV_KEYS) {
        return Err(format!("putting the keys: {why}").into());
    }
    one_at_a_time(
        Workload::KvGet,
        payload.len(),
        requests,
        marks,
        "succeeded",
        |i| {
            let get = store.get(key(i));
            async move {
                match get.await {
                    Ok(Some(value)) if value.len() == payload.len() => Ok(()),
                    Ok(Some(value)) => Err(format!(
                        "{} bytes instead of {}",
                        value.len(),
                        payload.len()
                    )),
                    Ok(None) => Err(format!("key {} not found", key(i))),
                    Err(err) => Err(err.to_string()),
                }
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::js_default_msgs as default_msgs;

    #[test]
    fn names_are_unique_and_valid() {
        let a = unique_name(Workload::JsFetchAck);
        let b = unique_name(Workload::JsFetchAck);
        assert_ne!(a, b);
        assert!(a.starts_with("BENCH_JS_FETCH_ACK_"), "{a}");
        for name in [&a, &b] {
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn keys_cycle() {
        assert_eq!(key(0), "k0");
        assert_eq!(key(KV_KEYS - 1), format!("k{}", KV_KEYS - 1));
        assert_eq!(key(KV_KEYS), "k0");
    }

    #[test]
    fn shortfall_says_why() {
        let mut published = Published::default();
        published.record::<(), &str>(Ok(()));
        assert_eq!(published.shortfall(1), None);
        published.record::<(), &str>(Err("boom"));
        assert_eq!(
            published.shortfall(3).as_deref(),
            Some("1 of 3 acknowledged (1 failed, first error: boom)")
        );
    }

    #[test]
    fn default_counts_shrink_with_size() {
        assert_eq!(default_msgs(DEFAULT_SIZE), 50_000);
        assert!(default_msgs(65_536) < default_msgs(4096));
    }
}
