//! Atomic batch publish (ADR-50, nats-server 2.12+; async-nats 0.51 has no
//! call for it, so the headers are set here): every message carries
//! `Nats-Batch-Id` and its place `Nats-Batch-Sequence` (from 1), the last
//! one `Nats-Batch-Commit: 1`. The server stores the whole batch when the
//! commit arrives, or nothing; only the commit is answered, with a PubAck
//! carrying the last message's sequence, the batch id and the count, or
//! with the error that refused the batch.

use std::time::Duration;

use async_nats::HeaderMap;
use bus_core::BusError;
use bytes::Bytes;
use serde::Deserialize;

use crate::{Inner, errors, wire};

/// The most messages in one batch (nats-server's limit).
pub const MAX_BATCH_MESSAGES: usize = 1000;

/// nats-server error codes a batch can be refused with.
mod code {
    /// `Nats-Expected-Last-(Subject-)Sequence` did not match.
    pub const WRONG_LAST_SEQUENCE: u64 = 10071;
    /// The stream does not have `allow_atomic`.
    pub const ATOMIC_DISABLED: u64 = 10174;
    /// The server did not get every message of the batch (one was lost,
    /// or the batch was not accepted because too many were open).
    pub const INCOMPLETE: u64 = 10176;
    /// Too many batches open on the stream at once.
    pub const TOO_MANY_INFLIGHT: u64 = 10210;
    /// A message of the batch has a `Nats-Msg-Id` stored inside the
    /// duplicate window (2.12.1+).
    pub const DUPLICATE_MSG_ID: u64 = 10201;
}

/// One message of a batch.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its subject.
    pub subject: String,
    /// Its own headers; the batch headers are added.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

/// The stored batch: the sequence of its last message and how many it had.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// Stream sequence of the last message.
    pub last_seq: u64,
    /// Messages stored.
    pub count: u64,
}

/// Why a batch was not (known to be) stored.
#[derive(Debug)]
pub enum Refused {
    /// The expected last (subject) sequence did not match: nothing stored.
    WrongLastSequence,
    /// An event id of the batch is already stored inside the duplicate window.
    DuplicateMsgId,
    /// No answer: the batch may or may not have been stored.
    Unknown(BusError),
    /// The server was busy (too many open batches, a batch cut short):
    /// nothing was stored; sending it again may work.
    Busy(BusError),
    /// Refused for good.
    Failed(BusError),
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct Ack {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    batch: Option<String>,
    #[serde(default)]
    count: Option<u64>,
}

/// Publishes `messages` as one atomic batch and waits for the commit's answer.
pub async fn publish(
    inner: &Inner,
    messages: Vec<Outgoing>,
) -> std::result::Result<Stored, Refused> {
    let n = messages.len();
    if n == 0 || n > MAX_BATCH_MESSAGES {
        return Err(Refused::Failed(BusError::InvalidArgument(format!(
            "an atomic batch holds 1 to {MAX_BATCH_MESSAGES} messages, not {n}"
        ))));
    }
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let doing = format!("publishing an atomic batch of {n} messages");
    let client = &inner.client;
    let mut commit = None;
    for (i, m) in messages.into_iter().enumerate() {
        let Outgoing {
            subject,
            mut headers,
            body,
        } = m;
        headers.insert(wire::BATCH_ID, batch_id.as_str());
        headers.insert(wire::BATCH_SEQUENCE, (i + 1).to_string().as_str());
        if i + 1 == n {
            headers.insert(wire::BATCH_COMMIT, "1");
            commit = Some((subject, headers, body));
        } else {
            // Only the commit is answered; the others go without a reply
            // subject, in order on this connection.
            client
                .publish_with_headers(subject, headers, body)
                .await
                .map_err(|e| Refused::Unknown(errors::classify(&doing, e)))?;
        }
    }
    let Some((subject, headers, body)) = commit else {
        return Err(Refused::Failed(BusError::Backend(format!(
            "{doing}: no commit message"
        ))));
    };
    let timeout = inner.config.request_timeout;
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(body)
        .timeout(Some(timeout));
    let reply = client
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::TimedOut => Refused::Unknown(BusError::Timeout {
                operation: format!(
                    "waiting for the acknowledgement of an atomic batch to {subject}"
                ),
                after: timeout,
            }),
            async_nats::RequestErrorKind::NoResponders => {
                Refused::Unknown(BusError::Unavailable(format!(
                    "{doing}: no stream answered for {subject} (a leader election, a deleted \
                     stream, or JetStream is down)"
                )))
            }
            _ => Refused::Unknown(errors::classify(&doing, e)),
        })?;
    let ack: Ack = serde_json::from_slice(&reply.payload).map_err(|e| {
        Refused::Unknown(BusError::Backend(format!(
            "{doing}: unreadable acknowledgement {:?}: {e}",
            String::from_utf8_lossy(&reply.payload)
        )))
    })?;
    if let Some(err) = ack.error {
        let text = format!("{doing}: {} (err_code {})", err.description, err.err_code);
        return Err(match err.err_code {
            code::WRONG_LAST_SEQUENCE => Refused::WrongLastSequence,
            code::DUPLICATE_MSG_ID => Refused::DuplicateMsgId,
            code::TOO_MANY_INFLIGHT | code::INCOMPLETE => {
                Refused::Busy(BusError::Unavailable(text))
            }
            code::ATOMIC_DISABLED => Refused::Failed(BusError::Unsupported(format!(
                "{text}: the stream {} does not allow atomic batches (allow_atomic)",
                inner.config.stream_name
            ))),
            _ => Refused::Failed(errors::classify(&doing, &text)),
        });
    }
    let count = ack.count.unwrap_or(0);
    if ack.batch.as_deref() != Some(batch_id.as_str()) || count != n as u64 || ack.seq < count {
        return Err(Refused::Failed(BusError::Backend(format!(
            "{doing}: the server acknowledged batch {:?} with {count} messages at {}, \
             not batch {batch_id} with {n}: it does not store atomic batches as nats-server 2.12+ does",
            ack.batch, ack.seq
        ))));
    }
    Ok(Stored {
        last_seq: ack.seq,
        count,
    })
}

/// How long to wait before sending a batch again after `attempt` busy answers.
pub fn busy_backoff(attempt: u32) -> Duration {
    Duration::from_millis(5 * u64::from(attempt.min(40)))
}
