//! The pages, rendered on the server from what `data` and the `Bus` say.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::SystemTime;

use bus_core::{ConsumerInfo, DeadLetter, EventEnvelope, StoredEvent};
use serde_json::json;

use crate::data::{Sample, StreamRow, lag_series, rates};
use crate::html::{bytes, esc, lag_chart, live, payload_views, polyline, table, time};
use crate::http::encode;

/// The live figures every page's script asks for: text by key, chart
/// points by consumer.
pub fn live_json(rows: &[StreamRow], samples: &[Sample]) -> serde_json::Value {
    let mut values = BTreeMap::new();
    for s in rows {
        let (rate, byte_rate) = rates(samples, &s.name).unwrap_or((0.0, 0.0));
        values.insert(
            format!("stream.{}.messages", s.name),
            s.messages.to_string(),
        );
        values.insert(format!("stream.{}.bytes", s.name), bytes(s.bytes));
        values.insert(format!("stream.{}.rate", s.name), format!("{rate:.1}"));
        values.insert(
            format!("stream.{}.byte_rate", s.name),
            format!("{}/s", bytes(byte_rate.max(0.0) as u64)),
        );
        values.insert(format!("stream.{}.last", s.name), s.last.to_string());
    }
    let mut charts = BTreeMap::new();
    if let Some(last) = samples.last() {
        for (name, c) in &last.consumers {
            values.insert(
                format!("consumer.{name}.pending"),
                c.num_pending.to_string(),
            );
            values.insert(
                format!("consumer.{name}.ack_pending"),
                c.num_ack_pending.to_string(),
            );
            values.insert(
                format!("consumer.{name}.redelivered"),
                c.num_redelivered.to_string(),
            );
            values.insert(
                format!("consumer.{name}.delivered"),
                c.delivered.to_string(),
            );
            values.insert(
                format!("consumer.{name}.ack_floor"),
                c.ack_floor.to_string(),
            );
            values.insert(
                format!("consumer.{name}.dead_lettered"),
                c.dead_lettered.to_string(),
            );
            charts.insert(name.clone(), polyline(&lag_series(samples, name)));
        }
    }
    json!({ "values": values, "charts": charts })
}

/// Streams: messages, bytes, rates.
pub fn streams(base: &str, rows: &[StreamRow], samples: &[Sample]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            let (rate, byte_rate) = rates(samples, &s.name).unwrap_or((0.0, 0.0));
            let k = |f: &str| format!("stream.{}.{f}", s.name);
            vec![
                format!("<strong>{}</strong>", esc(&s.name)),
                esc(s.role),
                esc(&s.subjects.join(", ")),
                live(&k("messages"), &s.messages.to_string()),
                live(&k("bytes"), &bytes(s.bytes)),
                live(&k("rate"), &format!("{rate:.1}")),
                live(
                    &k("byte_rate"),
                    &format!("{}/s", bytes(byte_rate.max(0.0) as u64)),
                ),
                s.first.to_string(),
                live(&k("last"), &s.last.to_string()),
                s.consumers.to_string(),
            ]
        })
        .collect();
    let content = table(
        "streams",
        &[
            "Stream",
            "Role",
            "Subjects",
            "Messages",
            "Bytes",
            "Msgs/s",
            "Bytes/s",
            "First",
            "Last",
            "Consumers",
        ],
        &body,
    );
    crate::html::page(
        base,
        "streams",
        "Streams",
        &format!(
            "<p class=\"muted\">Rates over the last 10 s, updated every 2 s while this page is open.</p>{content}"
        ),
    )
}

/// Consumers: pending, ack pending, redelivered, lag chart.
pub fn consumers(base: &str, list: &[ConsumerInfo], samples: &[Sample]) -> String {
    let body: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let k = |f: &str| format!("consumer.{}.{f}", c.name);
            vec![
                format!("<strong>{}</strong>", esc(&c.name)),
                esc(&c.filters.join(", ")),
                live(&k("pending"), &c.num_pending.to_string()),
                live(&k("ack_pending"), &c.num_ack_pending.to_string()),
                live(&k("redelivered"), &c.num_redelivered.to_string()),
                live(&k("delivered"), &c.delivered.to_string()),
                live(&k("ack_floor"), &c.ack_floor.to_string()),
                format!(
                    "<a href=\"{base}/dead-letters?consumer={}\">{}</a>",
                    encode(&c.name),
                    live(&k("dead_lettered"), &c.dead_lettered.to_string())
                ),
                lag_chart(&c.name, &lag_series(samples, &c.name)),
            ]
        })
        .collect();
    let content = if list.is_empty() {
        "<p class=\"muted\">No durable consumers yet.</p>".to_owned()
    } else {
        table(
            "consumers",
            &[
                "Consumer",
                "Filters",
                "Pending",
                "Ack pending",
                "Redelivered",
                "Delivered",
                "Ack floor",
                "Dead letters",
                "Lag (pending over time)",
            ],
            &body,
        )
    };
    crate::html::page(base, "consumers", "Consumers", &content)
}

/// Dead letters, of one consumer or all, with a redrive-all action for one.
pub fn dead_letters(
    base: &str,
    csrf: &str,
    consumer: Option<&str>,
    list: &[DeadLetter],
    notice: Option<&str>,
) -> String {
    let mut content = String::new();
    if let Some(n) = notice {
        let _ = write!(content, "<p class=\"notice\" id=\"notice\">{}</p>", esc(n));
    }
    let _ = write!(
        content,
        "<form method=\"get\" action=\"{base}/dead-letters\" class=\"filters\">\
         <label>Consumer <input name=\"consumer\" value=\"{}\"></label> <button>Show</button></form>",
        esc(consumer.unwrap_or(""))
    );
    if list.is_empty() {
        content.push_str("<p class=\"muted\" id=\"no-dead-letters\">No dead letters.</p>");
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|d| {
                let e = &d.event.envelope;
                vec![
                    format!(
                        "<a class=\"dead-letter\" href=\"{base}/dead-letters/{id}\">#{id}</a>",
                        id = d.id
                    ),
                    d.event.position.to_string(),
                    esc(&d.consumer),
                    d.attempts.to_string(),
                    esc(&d.reason),
                    esc(&e.event_type),
                    esc(&format!("{}/{}", e.aggregate_type, e.aggregate_id)),
                    time(d.dead_lettered_at),
                ]
            })
            .collect();
        content.push_str(&table(
            "dead-letters",
            &[
                "Dead letter",
                "Position",
                "Consumer",
                "Attempts",
                "Reason",
                "Event",
                "Aggregate",
                "Dead-lettered at",
            ],
            &rows,
        ));
        if let Some(c) = consumer {
            let _ = write!(
                content,
                "<form method=\"post\" action=\"{base}/dead-letters/redrive\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"consumer\" value=\"{}\">\
                 <input type=\"hidden\" name=\"all\" value=\"1\">\
                 <button id=\"redrive-all\">Redrive all {} dead letters of {} to it</button></form>",
                esc(csrf),
                esc(c),
                list.len(),
                esc(c)
            );
        }
    }
    crate::html::page(base, "dead-letters", "Dead letters", &content)
}

fn envelope_rows(e: &EventEnvelope) -> Vec<(String, String)> {
    let occurred = e
        .occurred_at
        .and_then(|t| SystemTime::try_from(t).ok())
        .map(time)
        .unwrap_or_default();
    let mut rows = vec![
        ("Event id".to_owned(), e.event_id.clone()),
        ("Aggregate type".to_owned(), e.aggregate_type.clone()),
        ("Aggregate id".to_owned(), e.aggregate_id.clone()),
        ("Sequence".to_owned(), e.sequence.to_string()),
        ("Event type".to_owned(), e.event_type.clone()),
        ("Occurred at".to_owned(), occurred),
        ("Correlation id".to_owned(), e.correlation_id.clone()),
        ("Causation id".to_owned(), e.causation_id.clone()),
        (
            "Payload type".to_owned(),
            e.payload
                .as_ref()
                .map(|p| p.type_url.clone())
                .unwrap_or_default(),
        ),
    ];
    for (k, v) in &e.metadata {
        rows.push((format!("metadata: {k}"), v.clone()));
    }
    rows
}

fn key_values(id: &str, rows: &[(String, String)]) -> String {
    let mut out = format!("<dl id=\"{}\">", esc(id));
    for (k, v) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    out.push_str("</dl>");
    out
}

fn event_sections(event: &StoredEvent) -> String {
    let stored = vec![
        ("Position".to_owned(), event.position.to_string()),
        ("Subject".to_owned(), event.subject.clone()),
        ("Stored at".to_owned(), time(event.stored_at)),
    ];
    let payload = event
        .envelope
        .payload
        .as_ref()
        .map(|p| p.value.as_slice())
        .unwrap_or(&[]);
    format!(
        "<h2>Stored event</h2>{}<h2>Envelope</h2>{}<h2>Payload</h2>{}",
        key_values("stored", &stored),
        key_values("envelope", &envelope_rows(&event.envelope)),
        payload_views(payload)
    )
}

/// One dead letter: why, the envelope, the payload, and the redrive action.
pub fn dead_letter(base: &str, csrf: &str, d: &DeadLetter) -> String {
    let why = vec![
        ("Consumer".to_owned(), d.consumer.clone()),
        ("Reason".to_owned(), d.reason.clone()),
        ("Attempts".to_owned(), d.attempts.to_string()),
        ("Dead-lettered at".to_owned(), time(d.dead_lettered_at)),
    ];
    let content = format!(
        "{}<form method=\"post\" action=\"{base}/dead-letters/redrive\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"consumer\" value=\"{}\">\
         <input type=\"hidden\" name=\"position\" value=\"{}\">\
         <button id=\"redrive\">Redrive to {}</button> \
         <span class=\"muted\">sends it back to this consumer only; it leaves this list once the consumer acknowledges it</span></form>{}",
        key_values("dead-letter", &why),
        esc(csrf),
        esc(&d.consumer),
        d.event.position,
        esc(&d.consumer),
        event_sections(&d.event)
    );
    crate::html::page(
        base,
        "dead-letters",
        &format!("Dead letter #{} of {}", d.id, d.consumer),
        &content,
    )
}

/// What the event browser was asked for.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub position: Option<u64>,
    pub time: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub filter: String,
    pub limit: usize,
}

/// The event browser: a search form and the events found.
pub fn events(base: &str, q: &EventQuery, found: &[StoredEvent], note: Option<&str>) -> String {
    let mut content = format!(
        "<form method=\"get\" action=\"{base}/events\" class=\"filters\" id=\"event-search\">\
         <label>From position <input name=\"position\" value=\"{}\" size=\"8\"></label> \
         <label>From time <input name=\"time\" value=\"{}\" placeholder=\"RFC 3339 or 15m\" size=\"22\"></label> \
         <label>Aggregate type <input name=\"aggregate_type\" value=\"{}\" size=\"10\"></label> \
         <label>Aggregate id <input name=\"aggregate_id\" value=\"{}\" size=\"12\"></label> \
         <label>Filter <input name=\"filter\" value=\"{}\" placeholder=\"player.*\" size=\"16\"></label> \
         <label>Limit <input name=\"limit\" value=\"{}\" size=\"4\"></label> <button>Search</button></form>",
        q.position.map(|p| p.to_string()).unwrap_or_default(),
        esc(&q.time),
        esc(&q.aggregate_type),
        esc(&q.aggregate_id),
        esc(&q.filter),
        q.limit
    );
    if let Some(n) = note {
        let _ = write!(content, "<p class=\"notice\">{}</p>", esc(n));
    }
    if found.is_empty() {
        content.push_str("<p class=\"muted\">No events found.</p>");
    } else {
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|e| {
                let v = &e.envelope;
                vec![
                    format!(
                        "<a class=\"event\" href=\"{base}/events/{p}\">{p}</a>",
                        p = e.position
                    ),
                    time(e.stored_at),
                    esc(&v.aggregate_type),
                    esc(&v.aggregate_id),
                    v.sequence.to_string(),
                    esc(&v.event_type),
                    esc(&v.correlation_id),
                    v.payload
                        .as_ref()
                        .map(|p| p.value.len())
                        .unwrap_or(0)
                        .to_string(),
                ]
            })
            .collect();
        content.push_str(&table(
            "events",
            &[
                "Position",
                "Stored at",
                "Aggregate type",
                "Aggregate id",
                "Sequence",
                "Event type",
                "Correlation",
                "Payload bytes",
            ],
            &rows,
        ));
    }
    crate::html::page(base, "events", "Events", &content)
}

/// One event, decoded.
pub fn event(base: &str, e: &StoredEvent) -> String {
    crate::html::page(
        base,
        "events",
        &format!("Event {} ({})", e.position, e.envelope.event_type),
        &event_sections(e),
    )
}

/// An error page that says what went wrong (never a secret: bus errors
/// name servers and streams, not credentials).
pub fn error(base: &str, status: u16, message: &str) -> String {
    crate::html::page(
        base,
        "",
        &format!("Error {status}"),
        &format!("<p class=\"error\">{}</p>", esc(message)),
    )
}
