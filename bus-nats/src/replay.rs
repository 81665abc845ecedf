//! Bounded ordered reads: replays of the event stream and reads of the
//! dead-letter stream. Each read is an ordered consumer (ephemeral, no acks,
//! flow-controlled, recreated by async-nats on gaps) that ends at the head
//! the stream had when the read began.

use std::sync::Arc;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use bus_core::{BusError, DeadLetter, Filter, Replay, Result, StartPosition, StoredEvent};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::{DEAD_LETTER_TOKEN, Inner, errors, wire};

/// A raw message read from a stream with its position and store time.
struct Read {
    position: u64,
    stored_at: std::time::SystemTime,
    message: async_nats::Message,
}

/// Reads `stream` for `filters` from `from` up to its current last sequence.
async fn bounded(
    inner: &Inner,
    stream_name: &str,
    filters: Vec<String>,
    from: StartPosition,
) -> Result<BoxStream<'static, Result<Read>>> {
    let js = inner.js("replay")?;
    let doing = format!("replaying stream {stream_name}");
    let mut stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| errors::classify(&doing, e))?;
    let head = stream
        .info()
        .await
        .map_err(|e| errors::classify(&doing, e))?
        .state
        .last_sequence;
    let deliver_policy = match from {
        StartPosition::New => return Ok(futures::stream::empty().boxed()),
        StartPosition::Beginning | StartPosition::Position(0) => DeliverPolicy::All,
        StartPosition::Position(p) if p > head => return Ok(futures::stream::empty().boxed()),
        StartPosition::Position(p) => DeliverPolicy::ByStartSequence { start_sequence: p },
        StartPosition::Time(t) => DeliverPolicy::ByStartTime {
            start_time: wire::offset_time(t),
        },
    };
    if head == 0 {
        return Ok(futures::stream::empty().boxed());
    }
    let (filter_subject, filter_subjects) = if filters.len() == 1 {
        (filters[0].clone(), Vec::new())
    } else {
        (String::new(), filters)
    };
    let mut consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject,
            filter_subjects,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| errors::classify(&doing, e))?;
    let pending = consumer
        .info()
        .await
        .map_err(|e| errors::classify(&doing, e))?
        .num_pending;
    if pending == 0 {
        return Ok(futures::stream::empty().boxed());
    }
    let messages = consumer
        .messages()
        .await
        .map_err(|e| errors::classify(&doing, e))?;
    // Stop at the first message past the head, or after the last one pending.
    let reads = futures::stream::unfold(Some(messages), move |state| {
        let doing = doing.clone();
        async move {
            let mut messages = state?;
            match messages.next().await {
                None => None,
                Some(Err(e)) => Some((Err(errors::classify(&doing, e)), None)),
                Some(Ok(m)) => {
                    let info = match m.info() {
                        Ok(i) => (i.stream_sequence, i.pending, wire::system_time(i.published)),
                        Err(e) => {
                            return Some((
                                Err(BusError::Backend(format!("{doing}: bad metadata: {e}"))),
                                None,
                            ));
                        }
                    };
                    let (position, pending, stored_at) = info;
                    if position > head {
                        return None;
                    }
                    let read = Read {
                        position,
                        stored_at,
                        message: m.message,
                    };
                    let next = (pending > 0 && position < head).then_some(messages);
                    Some((Ok(read), next))
                }
            }
        }
    });
    Ok(reads.boxed())
}

/// A replay of the event stream.
pub async fn events(inner: Arc<Inner>, filter: Filter, from: StartPosition) -> Result<Replay> {
    let stream_name = inner.config.stream_name.clone();
    let reads = bounded(&inner, &stream_name, vec![filter.as_str().to_owned()], from).await?;
    let events = reads.map(|read| {
        let read = read?;
        let subject = read.message.subject.to_string();
        let envelope = wire::decode(&subject, &read.message.payload)?;
        Ok(StoredEvent {
            position: read.position,
            subject,
            stored_at: read.stored_at,
            envelope,
        })
    });
    Ok(Replay::new(events.boxed()))
}

/// Every dead letter (of one consumer, or all), oldest first.
pub async fn dead_letters(inner: &Inner, consumer: Option<&str>) -> Result<Vec<DeadLetter>> {
    let filter = match consumer {
        Some(name) => inner.dead_letter_subject(name),
        None => format!("{}.{DEAD_LETTER_TOKEN}.>", inner.layout.prefix()),
    };
    let stream_name = inner.dead_letter_stream.clone();
    let mut reads = bounded(inner, &stream_name, vec![filter], StartPosition::Beginning).await?;
    let mut out = Vec::new();
    while let Some(read) = reads.next().await {
        let read = read?;
        out.push(wire::decode_dead_letter(
            read.position,
            read.message.headers.as_ref(),
            &read.message.payload,
            read.stored_at,
        )?);
    }
    Ok(out)
}
