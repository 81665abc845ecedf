//! Direct gets (`$JS.API.DIRECT.GET.<stream>`, the stream has
//! `allow_direct`): one message by sequence, the last or the next message
//! of a subject, and on servers that have them (nats-server 2.11+, ADR-31)
//! batches: up to `batch` messages from a sequence, of one subject or of
//! any, answered as one message each and an end-of-batch status.
//!
//! These are what loading one aggregate costs: each request is answered
//! from the server's per-subject index or by sequence, whatever the size of
//! the stream.

use std::time::{Duration, SystemTime};

use bus_core::{BusError, Result};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use crate::{Inner, errors};

/// The most messages one batched request asks for.
pub const MAX_BATCH: usize = 1000;

/// One stored message as a direct get returns it.
#[derive(Debug, Clone)]
pub struct Raw {
    /// Stream sequence.
    pub seq: u64,
    /// Subject it was stored under.
    pub subject: String,
    /// When it was stored.
    pub time: SystemTime,
    /// Its body.
    pub payload: Bytes,
}

/// Which message to get.
#[derive(Debug, Clone, Copy)]
pub enum Get<'a> {
    /// The message at this sequence.
    Seq(u64),
    /// The last message of this (literal) subject.
    Last(&'a str),
    /// The first message of this subject at or after `from`.
    Next {
        /// The subject.
        subject: &'a str,
        /// First sequence to look at.
        from: u64,
    },
}

impl Get<'_> {
    fn body(&self) -> serde_json::Value {
        match *self {
            Get::Seq(seq) => json!({ "seq": seq }),
            Get::Last(subject) => json!({ "last_by_subj": subject }),
            Get::Next { subject, from } => json!({ "seq": from.max(1), "next_by_subj": subject }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Get::Seq(seq) => format!("message {seq}"),
            Get::Last(subject) => format!("the last message on {subject}"),
            Get::Next { subject, from } => format!("the next message on {subject} from {from}"),
        }
    }
}

fn api_subject(inner: &Inner) -> String {
    format!("$JS.API.DIRECT.GET.{}", inner.config.stream_name)
}

/// Reads one reply: a message (`Some`), not found (`None`), or an error.
fn parse(doing: &str, m: async_nats::Message) -> Result<Option<Raw>> {
    if let Some(status) = m.status {
        return match status.as_u16() {
            404 => Ok(None),
            code => Err(BusError::Backend(format!(
                "{doing}: the server answered {code} {}",
                m.description.as_deref().unwrap_or("")
            ))),
        };
    }
    let headers = m.headers.unwrap_or_default();
    let header = |key: &str| -> Result<String> {
        headers
            .get(key)
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| BusError::Backend(format!("{doing}: the reply has no {key} header")))
    };
    let seq = header("Nats-Sequence")?
        .parse::<u64>()
        .map_err(|e| BusError::Backend(format!("{doing}: bad Nats-Sequence: {e}")))?;
    let subject = header("Nats-Subject")?;
    let stamp = header("Nats-Time-Stamp")?;
    let time = time::OffsetDateTime::parse(&stamp, &time::format_description::well_known::Rfc3339)
        .map(crate::wire::system_time)
        .map_err(|e| BusError::Backend(format!("{doing}: bad Nats-Time-Stamp {stamp:?}: {e}")))?;
    Ok(Some(Raw {
        seq,
        subject,
        time,
        payload: m.payload,
    }))
}

/// One message, or `None` when there is none.
pub async fn get(inner: &Inner, which: Get<'_>) -> Result<Option<Raw>> {
    let doing = format!(
        "reading {} of stream {}",
        which.describe(),
        inner.config.stream_name
    );
    let request = async_nats::Request::new()
        .payload(Bytes::from(which.body().to_string()))
        .timeout(Some(inner.config.request_timeout));
    let reply = inner
        .client
        .send_request(api_subject(inner), request)
        .await
        .map_err(|e| request_error(&doing, inner.config.request_timeout, e))?;
    parse(&doing, reply)
}

fn request_error(doing: &str, after: Duration, e: async_nats::RequestError) -> BusError {
    match e.kind() {
        async_nats::RequestErrorKind::TimedOut => BusError::Timeout {
            operation: doing.to_owned(),
            after,
        },
        async_nats::RequestErrorKind::NoResponders => BusError::Unavailable(format!(
            "{doing}: no responders (the stream is missing, has no allow_direct, or JetStream is down)"
        )),
        _ => errors::classify(doing, e),
    }
}

/// What a batched direct get returned.
#[derive(Debug)]
pub struct Batch {
    /// The messages, in stream order.
    pub raws: Vec<Raw>,
    /// How many more match after them.
    pub pending: u64,
    /// False when the server answered as to a plain direct get (one
    /// message, no `Nats-Num-Pending`): it has no batched direct get.
    pub batched: bool,
}

/// Up to `max` (at most [`MAX_BATCH`]) messages from sequence `from`, of
/// `subject` or of any subject, in stream order; and how many more match
/// after them (servers 2.11+; others answer with one message, which the
/// result says).
pub async fn batch(inner: &Inner, subject: Option<&str>, from: u64, max: usize) -> Result<Batch> {
    let doing = format!(
        "reading up to {max} messages{} from {from} of stream {}",
        subject.map(|s| format!(" on {s}")).unwrap_or_default(),
        inner.config.stream_name
    );
    let mut body = json!({ "seq": from.max(1), "batch": max.clamp(1, MAX_BATCH) });
    if let Some(s) = subject {
        body["next_by_subj"] = json!(s);
    }
    let inbox = inner.client.new_inbox();
    let mut replies = inner
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| errors::classify(&doing, e))?;
    inner
        .client
        .publish_with_reply(api_subject(inner), inbox, Bytes::from(body.to_string()))
        .await
        .map_err(|e| errors::classify(&doing, e))?;
    let timeout = inner.config.request_timeout;
    let mut out = Batch {
        raws: Vec::new(),
        pending: 0,
        batched: true,
    };
    loop {
        let m = match tokio::time::timeout(timeout, replies.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(BusError::Unavailable(format!(
                    "{doing}: the connection closed"
                )));
            }
            Err(_) => {
                return Err(BusError::Timeout {
                    operation: doing,
                    after: timeout,
                });
            }
        };
        let num_pending = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Num-Pending"))
            .and_then(|v| v.as_str().parse::<u64>().ok());
        match m.status.map(|s| s.as_u16()) {
            // End of batch: how many more match is in Nats-Num-Pending.
            Some(204) => {
                out.pending = num_pending.unwrap_or(0);
                break;
            }
            Some(503) => {
                return Err(BusError::Unavailable(format!(
                    "{doing}: no responders (the stream is missing, has no allow_direct, or JetStream is down)"
                )));
            }
            status => {
                let plain = status.is_none() && num_pending.is_none();
                match parse(&doing, m)? {
                    Some(raw) => out.raws.push(raw),
                    None => break,
                }
                if plain {
                    // A server without batched direct get answered the
                    // first message only, and nothing follows.
                    out.batched = false;
                    break;
                }
            }
        }
    }
    // Unsubscribing is best effort: the inbox is never used again.
    let _ = replies.unsubscribe().await;
    Ok(out)
}
