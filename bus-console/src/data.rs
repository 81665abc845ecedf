//! What the pages show, read from the server: streams and consumers
//! (JetStream listings for names, the `Bus` for the bus's own figures), and
//! a short history of samples for rates and lag charts.
//!
//! Samples are taken when someone looks (a page or the live endpoint), at
//! most one a second, and the last [`KEEP`] are kept: a console nobody has
//! open costs the server nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bus_core::{Bus, BusError, ConsumerInfo};
use futures::StreamExt;
use tokio::time::Instant;

/// Samples kept (at one a second at most: five minutes and more).
pub const KEEP: usize = 300;
/// Least time between two samples.
const EVERY: Duration = Duration::from_millis(900);

/// One stream as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    /// Stream name.
    pub name: String,
    /// What it is to the bus: `events`, `dead letters`, `redrive queue`, or empty.
    pub role: &'static str,
    /// Its subjects.
    pub subjects: Vec<String>,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// First sequence.
    pub first: u64,
    /// Last sequence.
    pub last: u64,
    /// Consumers.
    pub consumers: usize,
}

/// One moment's figures.
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    /// Wall-clock time, for the chart's axis.
    pub unix: f64,
    /// Stream name -> (messages, bytes).
    pub streams: BTreeMap<String, (u64, u64)>,
    /// Consumer name -> its state.
    pub consumers: BTreeMap<String, ConsumerInfo>,
}

/// Where the console reads from.
pub struct Source {
    pub bus: std::sync::Arc<dyn Bus>,
    pub js: async_nats::jetstream::Context,
    pub events_stream: String,
    pub dead_letter_stream: String,
    pub redrive_stream: String,
    samples: Mutex<VecDeque<Sample>>,
}

fn backend(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Backend(format!("{what}: {e}"))
}

impl Source {
    /// A source on `bus`, listing through `js`.
    pub fn new(
        bus: std::sync::Arc<dyn Bus>,
        js: async_nats::jetstream::Context,
        events_stream: String,
        dead_letter_stream: String,
    ) -> Self {
        Source {
            bus,
            js,
            redrive_stream: format!("{events_stream}-redrive"),
            events_stream,
            dead_letter_stream,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Every JetStream stream of the account, the bus's marked.
    pub async fn streams(&self) -> Result<Vec<StreamRow>, BusError> {
        let mut list = self.js.streams();
        let mut rows = Vec::new();
        while let Some(s) = list.next().await {
            let s = s.map_err(|e| backend("listing streams", e))?;
            let name = s.config.name.clone();
            let role = if name == self.events_stream {
                "events"
            } else if name == self.dead_letter_stream {
                "dead letters"
            } else if name == self.redrive_stream {
                "redrive queue"
            } else {
                ""
            };
            rows.push(StreamRow {
                name,
                role,
                subjects: s.config.subjects.clone(),
                messages: s.state.messages,
                bytes: s.state.bytes,
                first: s.state.first_sequence,
                last: s.state.last_sequence,
                consumers: s.state.consumer_count,
            });
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// The durable consumers of the event stream, with the bus's figures.
    pub async fn consumers(&self) -> Result<Vec<ConsumerInfo>, BusError> {
        let stream = self
            .js
            .get_stream_no_info(&self.events_stream)
            .await
            .map_err(|e| backend("opening the event stream", e))?;
        let mut names = stream.consumer_names();
        let mut out = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| backend("listing consumers", e))?;
            match self.bus.consumer_info(&name).await {
                Ok(info) => out.push(info),
                // Deleted meanwhile, or an ephemeral (replay) consumer gone.
                Err(BusError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Takes a sample unless one was taken less than a second ago; returns
    /// the samples kept, oldest first.
    pub async fn sample(&self) -> Result<Vec<Sample>, BusError> {
        let due = self.lock().back().is_none_or(|s| s.at.elapsed() >= EVERY);
        if due {
            let streams = self.streams().await?;
            let consumers = self.consumers().await?;
            let sample = Sample {
                at: Instant::now(),
                unix: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
                streams: streams
                    .into_iter()
                    .map(|s| (s.name, (s.messages, s.bytes)))
                    .collect(),
                consumers: consumers.into_iter().map(|c| (c.name.clone(), c)).collect(),
            };
            let mut samples = self.lock();
            samples.push_back(sample);
            while samples.len() > KEEP {
                samples.pop_front();
            }
        }
        Ok(self.lock().iter().cloned().collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        // A panic while holding it leaves plain data; keep using it.
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Messages/s and bytes/s of `stream` over the last ~10 s of samples.
pub fn rates(samples: &[Sample], stream: &str) -> Option<(f64, f64)> {
    let last = samples.last()?;
    let first = samples
        .iter()
        .rev()
        .find(|s| last.at.duration_since(s.at) >= Duration::from_secs(10))
        .or_else(|| samples.first())?;
    let dt = last.at.duration_since(first.at).as_secs_f64();
    if dt <= 0.0 {
        return None;
    }
    let (m1, b1) = last.streams.get(stream)?;
    let (m0, b0) = first.streams.get(stream)?;
    Some((
        (*m1 as f64 - *m0 as f64) / dt,
        (*b1 as f64 - *b0 as f64) / dt,
    ))
}

/// `(unix time, pending)` of `consumer` over the samples kept.
pub fn lag_series(samples: &[Sample], consumer: &str) -> Vec<(f64, u64)> {
    samples
        .iter()
        .filter_map(|s| s.consumers.get(consumer).map(|c| (s.unix, c.num_pending)))
        .collect()
}
