//! Sending dead letters back to the consumer that gave up on them.
//!
//! A redrive puts one *item* per dead letter on the redrive queue (a
//! work-queue stream on `<prefix>.redrive.>`), on the subject
//! `<prefix>.redrive.<consumer>.<dead-letter id>`; the body is the original
//! envelope and the headers the dead letter's. A second JetStream pull
//! consumer of the same name, filtered on `<prefix>.redrive.<consumer>.*`,
//! feeds the consumer's handles (see `consumer`), so no other consumer ever
//! sees the item.
//!
//! Crash safety comes from the order of the steps and from keys:
//! - an item is stored once per dead letter: before publishing, the redrive
//!   looks for an item on that dead letter's subject, and the publish carries
//!   `Nats-Msg-Id: redrive.<consumer>.<id>`;
//! - when the consumer acknowledges the item, the handle first deletes the
//!   dead letter, then acknowledges the item. A crash between the two leaves
//!   the item, which is redelivered (the acknowledgement never returned), but
//!   never a dead letter whose item was acknowledged, so a later redrive
//!   cannot send an acknowledged event twice.

use async_nats::jetstream::consumer;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use bus_core::{BusError, DeadLetter, RedriveReport, RedriveSelection, Result};

use crate::{Inner, consumer as bus_consumer, errors, replay, wire};

/// JetStream's "no limit" for a consumer's max_deliver (the handles enforce
/// the caller's, as for the event consumer).
const UNLIMITED: i64 = -1;

/// Queues the selected dead letters of `name` for redelivery to it.
pub async fn redrive(
    inner: &Inner,
    name: &str,
    selection: &RedriveSelection,
) -> Result<RedriveReport> {
    bus_core::subject::validate_consumer_name(name)?;
    // The consumer must exist: its delivery settings shape the queue's consumer.
    let settings = bus_consumer::server_config_of(inner, name).await?;
    ensure_queue_consumer(inner, name, &settings).await?;
    let dead = replay::dead_letters(inner, Some(name)).await?;
    let chosen: Vec<&DeadLetter> = dead
        .iter()
        .filter(|d| match selection {
            RedriveSelection::All => true,
            RedriveSelection::Positions(p) => p.contains(&d.event.position),
        })
        .collect();
    let mut report = RedriveReport::default();
    if let RedriveSelection::Positions(wanted) = selection {
        report.not_found = wanted
            .iter()
            .copied()
            .filter(|p| !chosen.iter().any(|d| d.event.position == *p))
            .collect();
    }
    let js = inner.js("redriving dead letters")?;
    let queue = js
        .get_stream_no_info(&inner.redrive_stream)
        .await
        .map_err(|e| errors::classify("opening the redrive queue", e))?;
    for d in chosen {
        let subject = inner.redrive_subject(name, d.id);
        let position = d.event.position;
        match queue.get_last_raw_message_by_subject(&subject).await {
            Ok(_) => {
                report.already_pending.push(position);
                continue;
            }
            Err(e) if is_no_message(&e) => {}
            Err(e) => return Err(errors::classify("reading the redrive queue", e)),
        }
        let ack = js
            .publish_with_headers(
                subject.clone(),
                wire::redrive_headers(d),
                wire::encode(&d.event.envelope),
            )
            .await
            .map_err(|e| errors::publish(&subject, inner.config.request_timeout, &e))?
            .await
            .map_err(|e| errors::publish(&subject, inner.config.request_timeout, &e))?;
        if ack.duplicate {
            report.already_pending.push(position);
        } else {
            tracing::info!(consumer = %name, position, dead_letter = d.id, "dead letter redriven");
            report.redriven.push(position);
        }
    }
    Ok(report)
}

fn is_no_message(e: &impl std::fmt::Display) -> bool {
    let text = e.to_string().to_lowercase();
    text.contains("10037") || text.contains("no message found") || text.contains("not found")
}

/// Creates (or updates) the redrive queue's consumer for `name`, with the
/// event consumer's delivery settings.
async fn ensure_queue_consumer(
    inner: &Inner,
    name: &str,
    settings: &consumer::Config,
) -> Result<()> {
    let js = inner.js("redriving dead letters")?;
    let queue = js
        .get_stream_no_info(&inner.redrive_stream)
        .await
        .map_err(|e| errors::classify("opening the redrive queue", e))?;
    let config = pull::Config {
        durable_name: Some(name.to_owned()),
        name: Some(name.to_owned()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_deliver: UNLIMITED,
        filter_subject: inner.redrive_filter(name),
        max_ack_pending: settings.max_ack_pending,
        backoff: settings.backoff.clone(),
        ..Default::default()
    };
    queue
        .create_consumer(config)
        .await
        .map_err(|e| errors::classify(&format!("creating the redrive consumer {name}"), e))?;
    Ok(())
}

/// Removes dead letter `id` (its dead-letter stream sequence). Already gone
/// is fine: a redelivered item whose dead letter was deleted before a crash.
pub async fn delete_dead_letter(inner: &Inner, id: u64) -> Result<()> {
    let js = inner.js("redriving dead letters")?;
    let dlq = js
        .get_stream_no_info(&inner.dead_letter_stream)
        .await
        .map_err(|e| errors::classify("opening the dead-letter stream", e))?;
    match dlq.delete_message(id).await {
        Ok(_) => Ok(()),
        Err(e) if is_no_message(&e) => Ok(()),
        Err(e) => Err(BusError::Backend(format!(
            "removing dead letter {id} from {}: {e}",
            inner.dead_letter_stream
        ))),
    }
}

/// Deletes the redrive queue's consumer for `name`, if there is one.
pub async fn delete_queue_consumer(inner: &Inner, name: &str) -> Result<()> {
    let js = inner.js("deleting a consumer")?;
    let queue = js
        .get_stream_no_info(&inner.redrive_stream)
        .await
        .map_err(|e| errors::classify("opening the redrive queue", e))?;
    match queue.delete_consumer(name).await {
        Ok(_) => Ok(()),
        Err(e) if is_no_message(&e) => Ok(()),
        Err(e) => Err(errors::classify(
            &format!("deleting the redrive consumer {name}"),
            e,
        )),
    }
}
