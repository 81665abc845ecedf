//! The bus commands (everything except `server` and `bench`).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bus::{Bus, BusError, EventEnvelope, Filter, StartPosition};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::args::{AggregateArgs, PublishArgs, ReplayArgs, TailArgs};
use crate::connect::{Resolved, expand_filter, jetstream};
use crate::error::{CliError, CliResult, op_error};
use crate::format::{EventView, time};
use crate::table::{Table, key_values, truncate};

/// Writes `text` to stdout as is.
pub fn out(text: &str) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Writes one line to stdout and flushes it (tail/replay output is read live).
pub fn out_line(text: &str) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

fn out_json(value: &Value) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::msg(format!("cannot encode the JSON output: {e}")))?;
    out_line(&text)
}

fn filter_of(bus: &dyn Bus, text: &str) -> CliResult<Filter> {
    let full = expand_filter(bus.layout().prefix(), text);
    bus.layout()
        .filter(&full)
        .map_err(|e| op_error(&format!("filter {text:?}"), e))
}

fn read_payload(spec: &str) -> CliResult<Vec<u8>> {
    match spec.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| {
                CliError::msg(format!("cannot read the payload from standard input: {e}"))
            })?;
            Ok(buf)
        }
        Some(path) => std::fs::read(path).map_err(|e| {
            CliError::msg(format!(
                "cannot read the payload file {path:?} ({e}): pass an existing file as @FILE, \
                 or text without a leading @"
            ))
        }),
        None => Ok(spec.as_bytes().to_vec()),
    }
}

/// `publish`.
pub async fn publish(bus: &Arc<dyn Bus>, args: PublishArgs, json: bool) -> CliResult {
    let payload = match &args.payload {
        Some(spec) => Some(prost_types::Any {
            type_url: args.type_url.clone().unwrap_or_default(),
            value: read_payload(spec)?,
        }),
        None => None,
    };
    let envelope = EventEnvelope {
        event_id: args
            .event_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        aggregate_type: args.aggregate.clone(),
        aggregate_id: args.aggregate_id.clone(),
        sequence: args.sequence,
        event_type: args.event_type.clone(),
        payload,
        occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        correlation_id: args.correlation_id.clone().unwrap_or_default(),
        causation_id: args.causation_id.clone().unwrap_or_default(),
        metadata: args.metadata.iter().cloned().collect(),
    };
    let subject = bus
        .layout()
        .event_subject(&envelope.aggregate_type, &envelope.event_type)
        .map_err(|e| op_error("publish", e))?;
    let event_id = envelope.event_id.clone();
    let receipt = bus
        .publish(envelope)
        .await
        .map_err(|e| op_error("publish", e))?;
    if json {
        return out_json(&json!({
            "position": receipt.position,
            "duplicate": receipt.duplicate,
            "event_id": event_id,
            "subject": subject,
        }));
    }
    let text = if receipt.position == 0 {
        format!("published {event_id} on {subject} (core NATS: not stored, no position)")
    } else if receipt.duplicate {
        format!(
            "duplicate: event {event_id} is already stored at position {}; nothing was stored",
            receipt.position
        )
    } else {
        format!(
            "published {event_id} on {subject} at position {}",
            receipt.position
        )
    };
    out_line(&text)
}

/// `tail`: until Ctrl-C or the bus ends the subscription.
pub async fn tail(bus: &Arc<dyn Bus>, r: &Resolved, args: TailArgs, json: bool) -> CliResult {
    let filter = filter_of(bus.as_ref(), &args.filter)?;
    let mut sub = bus
        .subscribe(&filter)
        .await
        .map_err(|e| op_error("tail", e))?;
    eprintln!(
        "tailing {filter} on {} (live events only; Ctrl-C to stop)",
        r.target.describe
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            item = sub.next() => match item {
                None => {
                    eprintln!("the bus ended the subscription");
                    return Ok(());
                }
                Some(Err(BusError::Decode(e))) => {
                    eprintln!("skipping a message that is not an event envelope: {e}");
                }
                Some(Err(e)) => return Err(op_error("tail", e)),
                Some(Ok(ev)) => {
                    let view = EventView {
                        position: None,
                        subject: &ev.subject,
                        stored_at: None,
                        envelope: &ev.envelope,
                    };
                    if json {
                        out_line(&view.json(args.payload).to_string())?;
                    } else {
                        out_line(&view.line(args.payload))?;
                    }
                }
            },
            _ = &mut ctrl_c => return Ok(()),
        }
    }
}

/// Progress of a replay on stderr: redrawn in place on a terminal, a line
/// every few seconds otherwise.
struct Progress {
    enabled: bool,
    tty: bool,
    started: Instant,
    last: Instant,
    drawn: bool,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        let now = Instant::now();
        Progress {
            enabled,
            tty: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            drawn: false,
        }
    }

    fn tick(&mut self, count: u64, position: u64, head: u64) {
        if !self.enabled {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let pct = if head > 0 {
            format!(" ({:.0}%)", position as f64 * 100.0 / head as f64)
        } else {
            String::new()
        };
        let text = format!(
            "replaying: {count} events, position {position}/{head}{pct}, {:.0?} elapsed",
            self.started.elapsed()
        );
        if self.tty {
            eprint!("\r\x1b[2K{text}");
            self.drawn = true;
        } else {
            eprintln!("{text}");
        }
    }

    fn finish(&self, count: u64, last: Option<u64>, head: u64) {
        if !self.enabled {
            return;
        }
        if self.drawn {
            eprint!("\r\x1b[2K");
        }
        let upto = last.map_or_else(String::new, |p| format!(", last at position {p}"));
        eprintln!(
            "replayed {count} events{upto} (stream head was {head}) in {:.1?}",
            self.started.elapsed()
        );
    }
}

/// `replay`: from the start position to the head seen when it began.
pub async fn replay(bus: &Arc<dyn Bus>, args: ReplayArgs, json: bool) -> CliResult {
    let filter = filter_of(bus.as_ref(), &args.filter)?;
    let from = match (args.from_position, args.from_time) {
        (Some(p), _) => StartPosition::Position(p),
        (None, Some(t)) => StartPosition::Time(t),
        (None, None) => StartPosition::Beginning,
    };
    let head = bus
        .stream_info()
        .await
        .map_err(|e| op_error("replay", e))?
        .last_position;
    let mut replay = bus
        .replay(&filter, from)
        .await
        .map_err(|e| op_error("replay", e))?;
    let mut progress = Progress::new(!args.quiet);
    let mut count = 0u64;
    let mut last = None;
    while let Some(item) = replay.next().await {
        let ev = item.map_err(|e| op_error("replay", e))?;
        let view = EventView {
            position: Some(ev.position),
            subject: &ev.subject,
            stored_at: Some(ev.stored_at),
            envelope: &ev.envelope,
        };
        if json {
            out_line(&view.json(args.payload).to_string())?;
        } else {
            out_line(&view.line(args.payload))?;
        }
        count += 1;
        last = Some(ev.position);
        progress.tick(count, ev.position, head);
    }
    progress.finish(count, last, head);
    Ok(())
}

fn jetstream_error(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::msg(format!(
        "{what}: {e}: check that the server runs with JetStream (`angzarr-bus server` does)"
    ))
}

/// One stream in `streams`.
struct StreamRow {
    name: String,
    role: &'static str,
    subjects: Vec<String>,
    messages: u64,
    bytes: u64,
    first: u64,
    last: u64,
    consumers: Option<usize>,
}

/// `streams`.
pub async fn streams(bus: &Arc<dyn Bus>, r: &Resolved, json: bool) -> CliResult {
    let info = bus
        .stream_info()
        .await
        .map_err(|e| op_error("reading the event stream", e))?;
    let events_name = r.config.nats.stream_name.clone();
    let dlq_name = r.config.nats.dead_letter_stream_name();
    let mut rows = Vec::new();
    match jetstream(r).await? {
        Some(js) => {
            let mut list = js.streams();
            while let Some(s) = list.next().await {
                let s = s.map_err(|e| jetstream_error("listing streams", e))?;
                let role = if s.config.name == events_name {
                    "events"
                } else if s.config.name == dlq_name {
                    "dead letters"
                } else if s.config.name == format!("{events_name}-redrive") {
                    "redrive queue"
                } else {
                    ""
                };
                rows.push(StreamRow {
                    name: s.config.name.clone(),
                    role,
                    subjects: s.config.subjects.clone(),
                    messages: s.state.messages,
                    bytes: s.state.bytes,
                    first: s.state.first_sequence,
                    last: s.state.last_sequence,
                    consumers: Some(s.state.consumer_count),
                });
            }
            rows.sort_by(|a, b| a.name.cmp(&b.name));
        }
        None => rows.push(StreamRow {
            name: format!("{} (memory)", events_name),
            role: "events",
            subjects: vec![bus.layout().all().to_string()],
            messages: info.messages,
            bytes: info.bytes,
            first: info.first_position,
            last: info.last_position,
            consumers: None,
        }),
    }
    if json {
        let streams: Vec<Value> = rows
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "role": s.role,
                    "subjects": s.subjects,
                    "messages": s.messages,
                    "bytes": s.bytes,
                    "first_position": s.first,
                    "last_position": s.last,
                    "consumers": s.consumers,
                })
            })
            .collect();
        return out_json(&json!({
            "backend": bus.backend(),
            "event_stream": stream_info_json(&events_name, &info),
            "streams": streams,
        }));
    }
    let mut t = Table::new([
        "STREAM",
        "ROLE",
        "SUBJECTS",
        "MESSAGES",
        "BYTES",
        "FIRST",
        "LAST",
        "CONSUMERS",
    ])
    .right(&[3, 4, 5, 6, 7]);
    for s in &rows {
        t.row([
            s.name.clone(),
            s.role.to_owned(),
            s.subjects.join(","),
            s.messages.to_string(),
            s.bytes.to_string(),
            s.first.to_string(),
            s.last.to_string(),
            s.consumers
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
        ]);
    }
    out(&t.render())
}

fn stream_info_json(name: &str, info: &bus::StreamInfo) -> Value {
    json!({
        "name": name,
        "messages": info.messages,
        "bytes": info.bytes,
        "first_position": info.first_position,
        "last_position": info.last_position,
    })
}

fn limit(v: i64) -> String {
    if v < 0 {
        "unlimited".to_owned()
    } else {
        v.to_string()
    }
}

/// `stream info [name]`.
pub async fn stream_info(
    bus: &Arc<dyn Bus>,
    r: &Resolved,
    name: Option<String>,
    json: bool,
) -> CliResult {
    let events_name = r.config.nats.stream_name.clone();
    let js = jetstream(r).await?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut doc = serde_json::Map::new();
    let target = name.clone().unwrap_or_else(|| events_name.clone());
    if name.is_none() || name.as_deref() == Some(events_name.as_str()) {
        let info = bus
            .stream_info()
            .await
            .map_err(|e| op_error("reading the event stream", e))?;
        pairs.extend([
            ("stream".to_owned(), events_name.clone()),
            ("backend".to_owned(), bus.backend().to_owned()),
            ("subjects".to_owned(), bus.layout().all().to_string()),
            ("messages".to_owned(), info.messages.to_string()),
            ("bytes".to_owned(), info.bytes.to_string()),
            ("first position".to_owned(), info.first_position.to_string()),
            ("last position".to_owned(), info.last_position.to_string()),
        ]);
        if let Value::Object(m) = stream_info_json(&events_name, &info) {
            doc = m;
        }
        doc.insert("backend".to_owned(), json!(bus.backend()));
    }
    match &js {
        Some(js) => {
            let stream = js.get_stream(&target).await.map_err(|e| {
                use async_nats::jetstream::context::GetStreamErrorKind;
                match e.kind() {
                    GetStreamErrorKind::JetStream(j)
                        if j.error_code()
                            == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        CliError::msg(format!(
                            "stream {target:?} does not exist: list the streams with `angzarr-bus streams`"
                        ))
                    }
                    _ => jetstream_error(&format!("reading stream {target}"), e),
                }
            })?;
            let info = stream.cached_info();
            let c = &info.config;
            let s = &info.state;
            if pairs.is_empty() {
                pairs.extend([
                    ("stream".to_owned(), c.name.clone()),
                    ("subjects".to_owned(), c.subjects.join(",")),
                    ("messages".to_owned(), s.messages.to_string()),
                    ("bytes".to_owned(), s.bytes.to_string()),
                    ("first position".to_owned(), s.first_sequence.to_string()),
                    ("last position".to_owned(), s.last_sequence.to_string()),
                ]);
                doc.insert("name".to_owned(), json!(c.name));
                doc.insert("subjects".to_owned(), json!(c.subjects));
                doc.insert("messages".to_owned(), json!(s.messages));
                doc.insert("bytes".to_owned(), json!(s.bytes));
                doc.insert("first_position".to_owned(), json!(s.first_sequence));
                doc.insert("last_position".to_owned(), json!(s.last_sequence));
            }
            let created = time(SystemTime::from(info.created));
            let storage = format!("{:?}", c.storage).to_lowercase();
            let retention = format!("{:?}", c.retention).to_lowercase();
            let discard = format!("{:?}", c.discard).to_lowercase();
            pairs.extend([
                ("created".to_owned(), created.clone()),
                ("storage".to_owned(), storage.clone()),
                ("retention".to_owned(), retention.clone()),
                ("discard".to_owned(), discard.clone()),
                ("max messages".to_owned(), limit(c.max_messages)),
                ("max bytes".to_owned(), limit(c.max_bytes)),
                (
                    "max age".to_owned(),
                    if c.max_age.is_zero() {
                        "unlimited".to_owned()
                    } else {
                        humantime::format_duration(c.max_age).to_string()
                    },
                ),
                (
                    "duplicate window".to_owned(),
                    humantime::format_duration(c.duplicate_window).to_string(),
                ),
                ("replicas".to_owned(), c.num_replicas.to_string()),
                ("consumers".to_owned(), s.consumer_count.to_string()),
                ("subjects stored".to_owned(), s.subjects_count.to_string()),
                (
                    "deleted".to_owned(),
                    s.deleted_count.unwrap_or(0).to_string(),
                ),
            ]);
            doc.insert("created".to_owned(), json!(created));
            doc.insert("storage".to_owned(), json!(storage));
            doc.insert("retention".to_owned(), json!(retention));
            doc.insert("discard".to_owned(), json!(discard));
            doc.insert("max_messages".to_owned(), json!(c.max_messages));
            doc.insert("max_bytes".to_owned(), json!(c.max_bytes));
            doc.insert("max_age_secs".to_owned(), json!(c.max_age.as_secs_f64()));
            doc.insert(
                "duplicate_window_secs".to_owned(),
                json!(c.duplicate_window.as_secs_f64()),
            );
            doc.insert("replicas".to_owned(), json!(c.num_replicas));
            doc.insert("consumers".to_owned(), json!(s.consumer_count));
            doc.insert("deleted".to_owned(), json!(s.deleted_count.unwrap_or(0)));
        }
        None if name.is_some() && name.as_deref() != Some(events_name.as_str()) => {
            return Err(CliError::msg(format!(
                "stream {target:?}: naming a stream needs a NATS server: pass --url, or omit the \
                 name for the bus's event stream"
            )));
        }
        None => {}
    }
    if json {
        return out_json(&Value::Object(doc));
    }
    out(&key_values(&pairs))
}

/// `consumers`: the durable consumers of the event stream.
pub async fn consumers(bus: &Arc<dyn Bus>, r: &Resolved, json: bool) -> CliResult {
    let Some(js) = jetstream(r).await? else {
        return Err(CliError::msg(
            "listing consumers needs a NATS server (the memory backend keeps them inside one \
             process): pass --url, or use `angzarr-bus consumer info NAME`",
        ));
    };
    let name = &r.config.nats.stream_name;
    let stream = js
        .get_stream_no_info(name)
        .await
        .map_err(|e| jetstream_error(&format!("opening stream {name}"), e))?;
    let mut list = stream.consumers();
    let mut infos = Vec::new();
    while let Some(c) = list.next().await {
        let c = c.map_err(|e| jetstream_error("listing consumers", e))?;
        if c.config.durable_name.is_some() {
            infos.push(c);
        }
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = Vec::new();
    for c in &infos {
        let mut filters = c.config.filter_subjects.clone();
        if !c.config.filter_subject.is_empty() {
            filters.insert(0, c.config.filter_subject.clone());
        }
        // Dead letters live in their own stream; the Bus counts them.
        let dead = bus
            .consumer_info(&c.name)
            .await
            .ok()
            .map(|i| i.dead_lettered);
        rows.push(json!({
            "name": c.name,
            "filters": filters,
            "num_pending": c.num_pending,
            "num_ack_pending": c.num_ack_pending,
            "num_redelivered": c.num_redelivered,
            "num_waiting": c.num_waiting,
            "delivered": c.delivered.stream_sequence,
            "ack_floor": c.ack_floor.stream_sequence,
            "dead_lettered": dead,
        }));
    }
    if json {
        return out_json(&Value::Array(rows));
    }
    if rows.is_empty() {
        return out_line(&format!(
            "no durable consumers on stream {name} (services create them with Bus::consumer)"
        ));
    }
    let mut t = Table::new([
        "CONSUMER",
        "FILTERS",
        "PENDING",
        "ACK PENDING",
        "REDELIVERED",
        "DELIVERED",
        "ACK FLOOR",
        "DEAD",
    ])
    .right(&[2, 3, 4, 5, 6, 7]);
    let num = |v: &Value| match v {
        Value::Null => "?".to_owned(),
        v => v.to_string(),
    };
    for row in &rows {
        let filters = row["filters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        t.row([
            row["name"].as_str().unwrap_or_default().to_owned(),
            filters,
            num(&row["num_pending"]),
            num(&row["num_ack_pending"]),
            num(&row["num_redelivered"]),
            num(&row["delivered"]),
            num(&row["ack_floor"]),
            num(&row["dead_lettered"]),
        ]);
    }
    out(&t.render())
}

/// `consumer info NAME`.
pub async fn consumer_info(bus: &Arc<dyn Bus>, name: &str, json: bool) -> CliResult {
    let info = bus
        .consumer_info(name)
        .await
        .map_err(|e| op_error(&format!("consumer {name}"), e))?;
    if json {
        return out_json(&json!({
            "name": info.name,
            "filters": info.filters,
            "num_pending": info.num_pending,
            "num_ack_pending": info.num_ack_pending,
            "num_redelivered": info.num_redelivered,
            "delivered": info.delivered,
            "ack_floor": info.ack_floor,
            "dead_lettered": info.dead_lettered,
        }));
    }
    out(&key_values(&[
        ("consumer", info.name.clone()),
        ("filters", info.filters.join(",")),
        ("pending", info.num_pending.to_string()),
        ("ack pending", info.num_ack_pending.to_string()),
        ("redelivered", info.num_redelivered.to_string()),
        ("delivered", info.delivered.to_string()),
        ("ack floor", info.ack_floor.to_string()),
        ("dead lettered", info.dead_lettered.to_string()),
    ]))
}

/// `dead-letters`.
pub async fn dead_letters(bus: &Arc<dyn Bus>, consumer: Option<&str>, json: bool) -> CliResult {
    let letters = bus
        .dead_letters(consumer)
        .await
        .map_err(|e| op_error("reading dead letters", e))?;
    if json {
        let rows: Vec<Value> = letters
            .iter()
            .map(|d| {
                let mut v = EventView {
                    position: Some(d.event.position),
                    subject: &d.event.subject,
                    stored_at: Some(d.event.stored_at),
                    envelope: &d.event.envelope,
                }
                .json(false);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("consumer".to_owned(), json!(d.consumer));
                    obj.insert("attempts".to_owned(), json!(d.attempts));
                    obj.insert("reason".to_owned(), json!(d.reason));
                    obj.insert(
                        "dead_lettered_at".to_owned(),
                        json!(time(d.dead_lettered_at)),
                    );
                }
                v
            })
            .collect();
        return out_json(&Value::Array(rows));
    }
    if letters.is_empty() {
        return out_line(&match consumer {
            Some(c) => format!("no dead letters for consumer {c}"),
            None => "no dead letters".to_owned(),
        });
    }
    let mut t = Table::new([
        "POSITION",
        "CONSUMER",
        "ATTEMPTS",
        "REASON",
        "EVENT",
        "AGGREGATE",
        "DEAD-LETTERED AT",
    ])
    .right(&[0, 2]);
    for d in &letters {
        let e = &d.event.envelope;
        t.row([
            d.event.position.to_string(),
            d.consumer.clone(),
            d.attempts.to_string(),
            truncate(&d.reason, 60),
            e.event_type.clone(),
            format!("{}/{}", e.aggregate_type, e.aggregate_id),
            time(d.dead_lettered_at),
        ]);
    }
    out(&t.render())
}

/// `dead-letters redrive`.
pub async fn redrive(bus: &Arc<dyn Bus>, a: crate::args::RedriveArgs, json: bool) -> CliResult {
    let selection = if a.all {
        bus::RedriveSelection::All
    } else {
        bus::RedriveSelection::Positions(a.position.clone())
    };
    let report = bus
        .redrive_dead_letters(&a.consumer, &selection)
        .await
        .map_err(|e| op_error(&format!("redriving dead letters of {}", a.consumer), e))?;
    if json {
        return out_json(&json!({
            "consumer": a.consumer,
            "redriven": report.redriven,
            "already_pending": report.already_pending,
            "not_found": report.not_found,
        }));
    }
    let list = |p: &[u64]| p.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let mut text = format!(
        "redriven {} dead letter{} to consumer {}",
        report.redriven.len(),
        if report.redriven.len() == 1 { "" } else { "s" },
        a.consumer
    );
    if !report.redriven.is_empty() {
        text.push_str(&format!(" (positions {})", list(&report.redriven)));
    }
    if !report.already_pending.is_empty() {
        text.push_str(&format!(
            "\nalready on their way back (not sent again): positions {}",
            list(&report.already_pending)
        ));
    }
    if !report.not_found.is_empty() {
        text.push_str(&format!(
            "\nno dead letter of {} at positions {}",
            a.consumer,
            list(&report.not_found)
        ));
    }
    out_line(&text)
}

/// `aggregate TYPE ID`: the aggregate's version and its events after
/// `--after-version`, by [`Bus::load`] (the aggregate's own index).
pub async fn aggregate(bus: &Arc<dyn Bus>, args: AggregateArgs, json: bool) -> CliResult {
    let what = format!("aggregate {} {:?}", args.aggregate, args.aggregate_id);
    let history = bus
        .load(&args.aggregate, &args.aggregate_id, args.after_version)
        .await
        .map_err(|e| op_error(&what, e))?;
    if json {
        let events: Vec<Value> = history
            .events
            .iter()
            .map(|ev| {
                EventView {
                    position: Some(ev.position),
                    subject: &ev.subject,
                    stored_at: Some(ev.stored_at),
                    envelope: &ev.envelope,
                }
                .json(args.payload)
            })
            .collect();
        return out_json(&json!({
            "aggregate_type": history.aggregate_type,
            "aggregate_id": history.aggregate_id,
            "version": history.version,
            "after_version": args.after_version,
            "events": events,
        }));
    }
    let head = format!(
        "{} {:?}: version {}",
        history.aggregate_type, history.aggregate_id, history.version
    );
    if history.version == 0 {
        return out_line(&format!("{head}, no events"));
    }
    let shown = if args.after_version == 0 {
        format!("{} events", history.events.len())
    } else {
        format!(
            "{} events after version {}",
            history.events.len(),
            args.after_version
        )
    };
    out_line(&format!("{head}, {shown}"))?;
    if history.events.is_empty() {
        return Ok(());
    }
    let mut headers = vec![
        "VERSION",
        "POSITION",
        "STORED AT",
        "EVENT",
        "EVENT ID",
        "CORRELATION",
        "SIZE",
    ];
    if args.payload {
        headers.push("PAYLOAD");
    }
    let mut t = Table::new(headers).right(&[0, 1, 6]);
    for ev in &history.events {
        let e = &ev.envelope;
        let bytes = crate::format::payload_bytes(e);
        let mut row = vec![
            e.sequence.to_string(),
            ev.position.to_string(),
            time(ev.stored_at),
            e.event_type.clone(),
            e.event_id.clone(),
            if e.correlation_id.is_empty() {
                "-".to_owned()
            } else {
                e.correlation_id.clone()
            },
            format!("{}B", bytes.len()),
        ];
        if args.payload {
            let (encoding, text) = crate::format::payload_text(bytes);
            row.push(if encoding == "utf8" {
                truncate(&format!("{text:?}"), 60)
            } else {
                truncate(&format!("0x{text}"), 60)
            });
        }
        t.row(row);
    }
    out(&t.render())
}
