//! Message tracing, as nats-server 2.15.1 does it (ADR-41): a client
//! publish carrying `Nats-Trace-Dest: <subject>` makes the server publish
//! one JSON event to that subject saying what happened to the message
//! (`in`: who published it where, `sm`: the subject mapping applied, `se`/
//! `si`: stream exports and service imports it crossed, `js`: the stream
//! that captured it, `eg`: every subscription it went to, or why not). With
//! `Nats-Trace-Only: 1|true|on` (any case) the message goes nowhere: the
//! event says where it would have gone.
//!
//! This module owns the event's shape (serde), the header checks that
//! decide whether a message is traced, and the collector ([`Tracer`]) the
//! delivery path appends to. It knows no account, connection or stream: the
//! session, the account's fan-out and JetStream report into it, and the
//! session publishes the finished event. A message without headers never
//! gets here; one with headers pays one pass over the header block.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Serialize;

/// The header asking for a trace, and where to send it.
pub(crate) const DEST: &str = "Nats-Trace-Dest";
/// The header asking for tracing without delivery.
pub(crate) const ONLY: &str = "Nats-Trace-Only";
/// The value nats-server writes over [`DEST`] where tracing must stop (an
/// invalid subject, so it can never be a destination).
pub(crate) const DISABLED: &str = "trace disabled";
/// A header nats-server's older routes set; a client message carrying it is
/// not traced.
const ORIGIN_ACCOUNT: &str = "Nats-Trace-Origin-Account";

/// Connection kind of a client connection (nats-server's `CLIENT`).
const KIND_CLIENT: u8 = 0;

/// Why an egress did not deliver (nats-server's texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotDelivered {
    /// The publisher asked for no echo and is the subscriber.
    NoEcho,
    /// The subscriber's permissions deny this subject.
    SubscriptionDenied,
    /// The subscriber's connection is closed.
    ClientClosed,
    /// The subscription already reached its `UNSUB` max.
    AutoUnsubscribeExceeded,
}

impl NotDelivered {
    fn text(self) -> &'static str {
        match self {
            NotDelivered::NoEcho => "Not delivered because of no echo",
            NotDelivered::SubscriptionDenied => {
                "Not delivered because subscription denies this subject"
            }
            NotDelivered::ClientClosed => "Not delivered because client is closed",
            NotDelivered::AutoUnsubscribeExceeded => {
                "Not delivered because auto-unsubscribe exceeded"
            }
        }
    }
}

/// What a publish's headers ask for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Trace to `dest` (a valid publish subject); `only`: do not deliver.
    Trace {
        dest: String,
        only: bool,
        /// Every header with a value, names as sent, values in order.
        headers: BTreeMap<String, Vec<String>>,
    },
    /// The trace cannot be done (invalid destination, or a header that
    /// disables it): deliver untraced, or, when `only`, drop silently;
    /// `disable`: deliver with `Nats-Trace-Dest` set to [`DISABLED`].
    Untraced { only: bool, disable: bool },
}

/// Reads a publish's header block (`NATS/1.0\r\n...`) in one pass: `None`
/// when it asks for no trace (no `Nats-Trace-Dest` with a value, or the
/// value nats-server uses to disable tracing). Header names are compared
/// exactly, as nats-server does for its own headers.
pub(crate) fn requested(hdr: &[u8]) -> Option<Request> {
    let rest = hdr.strip_prefix(b"NATS/1.0")?;
    // The status line may carry a code; headers start after its CRLF.
    let start = memchr::memmem::find(rest, b"\r\n")? + 2;
    let mut lines = HeaderLines(&rest[start..]);
    // Cheap first pass: is the trace header there at all?
    let found = lines.any(|(k, v)| k == DEST.as_bytes() && v != DISABLED.as_bytes());
    if !found {
        return None;
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in HeaderLines(&rest[start..]) {
        headers
            .entry(String::from_utf8_lossy(k).into_owned())
            .or_default()
            .push(String::from_utf8_lossy(v).into_owned());
    }
    let first = |key: &str| headers.get(key).and_then(|v| v.first());
    let only =
        first(ONLY).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on"));
    let dest = first(DEST).cloned().unwrap_or_default();
    if first(ORIGIN_ACCOUNT).is_some() {
        return Some(Request::Untraced {
            only,
            disable: true,
        });
    }
    if !crate::subject::valid_literal(&dest) {
        return Some(Request::Untraced {
            only,
            disable: false,
        });
    }
    Some(Request::Trace {
        dest,
        only,
        headers,
    })
}

/// The `key: value` lines of a header block (after its first line), values
/// trimmed of spaces and tabs, lines without a name or value skipped (as
/// nats-server does when it lifts headers for a trace).
struct HeaderLines<'a>(&'a [u8]);

impl<'a> Iterator for HeaderLines<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.0.is_empty() {
                return None;
            }
            let end = memchr::memmem::find(self.0, b"\r\n").unwrap_or(self.0.len());
            let line = &self.0[..end];
            self.0 = self.0.get(end + 2..).unwrap_or_default();
            let Some(colon) = memchr::memchr(b':', line) else {
                if line.is_empty() {
                    return None;
                }
                continue;
            };
            let key = &line[..colon];
            let value = line[colon + 1..].trim_ascii();
            if !key.is_empty() && !value.is_empty() {
                return Some((key, value));
            }
        }
    }
}

/// Replaces the value of header `key` in a header block, keeping its place
/// (as nats-server's `setHeader`); appends the header when absent.
pub(crate) fn set_header(hdr: &[u8], key: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(hdr.len() + value.len() + key.len() + 4);
    let mut pos = 0;
    let mut found = false;
    while let Some(off) = memchr::memmem::find(&hdr[pos..], b"\r\n") {
        let line = &hdr[pos..pos + off];
        if !found
            && pos > 0
            && line.len() > key.len()
            && line.starts_with(key.as_bytes())
            && line[key.len()] == b':'
        {
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            found = true;
        } else if line.is_empty() && !found && pos > 0 {
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
            found = true;
        } else {
            out.extend_from_slice(line);
        }
        out.extend_from_slice(b"\r\n");
        pos += off + 2;
    }
    out.extend_from_slice(&hdr[pos..]);
    out
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// One entry of the event's `events` list.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum Entry {
    #[serde(rename = "in")]
    Ingress {
        ts: String,
        kind: u8,
        cid: u64,
        #[serde(skip_serializing_if = "String::is_empty")]
        name: String,
        acc: String,
        subj: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        error: String,
    },
    #[serde(rename = "sm")]
    SubjectMapping { ts: String, to: String },
    #[serde(rename = "se")]
    StreamExport { ts: String, acc: String, to: String },
    #[serde(rename = "si")]
    ServiceImport {
        ts: String,
        acc: String,
        from: String,
        to: String,
    },
    #[serde(rename = "js")]
    JetStream {
        ts: String,
        stream: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        subject: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        nointerest: bool,
        #[serde(skip_serializing_if = "String::is_empty")]
        error: String,
    },
    #[serde(rename = "eg")]
    Egress {
        ts: String,
        kind: u8,
        cid: u64,
        #[serde(skip_serializing_if = "String::is_empty")]
        name: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        acc: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        sub: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        queue: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        error: String,
    },
}

#[derive(Debug, Serialize)]
struct RequestInfo {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "is_zero")]
    msgsize: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct Event<'a> {
    server: &'a serde_json::Value,
    request: &'a RequestInfo,
    events: &'a [Entry],
}

/// What JetStream did with a traced message (the `js` entry).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct JetStreamReport {
    /// The capturing stream.
    pub(crate) stream: String,
    /// The subject stored under (after the stream's transform); empty on
    /// an error.
    pub(crate) subject: String,
    /// Interest retention with no consumer interested: not kept.
    pub(crate) no_interest: bool,
    /// Why it was not stored (nats-server's text).
    pub(crate) error: String,
}

/// Who received (or would have received) a traced message.
pub(crate) struct Receiver<'a> {
    pub(crate) cid: u64,
    pub(crate) name: String,
    /// The receiver's account name.
    pub(crate) account: &'a str,
    pub(crate) subscription: &'a [u8],
    pub(crate) queue: Option<&'a [u8]>,
}

/// The trace of one message under way: the entries so far. Shared by
/// reference along one publish's delivery (one thread), hence the
/// `RefCell`.
pub(crate) struct Tracer {
    /// Where the event goes.
    pub(crate) dest: String,
    /// Trace only: nothing is delivered or stored.
    pub(crate) only: bool,
    /// The publisher's account: egresses into another account name theirs.
    ingress_account: String,
    request: RequestInfo,
    entries: RefCell<Vec<Entry>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("dest", &self.dest)
            .field("only", &self.only)
            .finish_non_exhaustive()
    }
}

/// The publishing connection, for the `in` entry.
pub(crate) struct Publisher<'a> {
    pub(crate) cid: u64,
    pub(crate) name: String,
    pub(crate) account: &'a str,
    /// The subject as published (before any mapping).
    pub(crate) subject: &'a str,
    /// Header and body bytes.
    pub(crate) size: usize,
}

impl Tracer {
    /// A trace of a client publish (`in` entry first).
    pub(crate) fn new(
        dest: String,
        only: bool,
        headers: BTreeMap<String, Vec<String>>,
        p: Publisher<'_>,
    ) -> Tracer {
        Tracer {
            dest,
            only,
            ingress_account: p.account.to_owned(),
            request: RequestInfo {
                header: headers,
                msgsize: p.size,
            },
            entries: RefCell::new(vec![Entry::Ingress {
                ts: now(),
                kind: KIND_CLIENT,
                cid: p.cid,
                name: p.name,
                acc: p.account.to_owned(),
                subj: p.subject.to_owned(),
                error: String::new(),
            }]),
        }
    }

    fn push(&self, e: Entry) {
        self.entries.borrow_mut().push(e);
    }

    /// The publish was refused at the door (its permissions).
    pub(crate) fn ingress_error(&self, text: String) {
        if let Some(Entry::Ingress { error, .. }) = self.entries.borrow_mut().first_mut() {
            *error = text;
        }
    }

    /// A subject mapping changed the subject to `to`.
    pub(crate) fn mapped(&self, to: &str) {
        self.push(Entry::SubjectMapping {
            ts: now(),
            to: to.to_owned(),
        });
    }

    /// A stream export carried it into `account` as `to`.
    pub(crate) fn stream_export(&self, account: &str, to: &str) {
        self.push(Entry::StreamExport {
            ts: now(),
            acc: account.to_owned(),
            to: to.to_owned(),
        });
    }

    /// A service import carried it from `from` into `account` as `to`.
    pub(crate) fn service_import(&self, account: &str, from: &str, to: &str) {
        self.push(Entry::ServiceImport {
            ts: now(),
            acc: account.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }

    /// A stream captured it.
    pub(crate) fn jetstream(&self, r: JetStreamReport) {
        self.push(Entry::JetStream {
            ts: now(),
            stream: r.stream,
            subject: r.subject,
            nointerest: r.no_interest,
            error: r.error,
        });
    }

    /// A subscription got it (or would have, or why not).
    pub(crate) fn egress(&self, r: Receiver<'_>, failed: Option<NotDelivered>) {
        let acc = if r.account == self.ingress_account {
            String::new()
        } else {
            r.account.to_owned()
        };
        self.push(Entry::Egress {
            ts: now(),
            kind: KIND_CLIENT,
            cid: r.cid,
            name: r.name,
            acc,
            sub: String::from_utf8_lossy(r.subscription).into_owned(),
            queue: r
                .queue
                .map(|q| String::from_utf8_lossy(q).into_owned())
                .unwrap_or_default(),
            error: failed.map(|f| f.text().to_owned()).unwrap_or_default(),
        });
    }

    /// The finished event, as JSON, with `server` the server's identity
    /// object (as in the system account's messages).
    pub(crate) fn finish(self, server: &serde_json::Value) -> Vec<u8> {
        let entries = self.entries.into_inner();
        let event = Event {
            server,
            request: &self.request,
            events: &entries,
        };
        serde_json::to_vec(&event).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(lines: &[&str]) -> Vec<u8> {
        let mut h = b"NATS/1.0\r\n".to_vec();
        for l in lines {
            h.extend_from_slice(l.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    #[test]
    fn a_message_without_the_trace_header_is_not_traced() {
        assert_eq!(requested(&hdr(&["X: y", "Nats-Trace-Only: true"])), None);
        // Header names are compared exactly, as nats-server does.
        assert_eq!(requested(&hdr(&["nats-trace-dest: t"])), None);
        // An empty value is no request.
        assert_eq!(requested(&hdr(&["Nats-Trace-Dest:  "])), None);
        // The disabled marker is no request either.
        assert_eq!(requested(&hdr(&["Nats-Trace-Dest: trace disabled"])), None);
    }

    #[test]
    fn the_trace_header_gives_the_destination_and_every_header() {
        let Some(Request::Trace {
            dest,
            only,
            headers,
        }) = requested(&hdr(&["x-low: v", "Nats-Trace-Dest: t.d", "A: 1", "A: 2"]))
        else {
            panic!("not traced");
        };
        assert_eq!(dest, "t.d");
        assert!(!only);
        assert_eq!(headers["A"], vec!["1", "2"]);
        assert_eq!(headers["x-low"], vec!["v"]);
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn trace_only_takes_the_values_nats_server_accepts() {
        for (v, want) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("On", true),
            ("yes", false),
            ("0", false),
        ] {
            let h = hdr(&["Nats-Trace-Dest: t", &format!("Nats-Trace-Only: {v}")]);
            match requested(&h) {
                Some(Request::Trace { only, .. }) => assert_eq!(only, want, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_invalid_destination_is_untraced() {
        for d in ["a..b", "a.*", "a.>", "trace disabled x"] {
            let h = hdr(&[&format!("Nats-Trace-Dest: {d}"), "Nats-Trace-Only: true"]);
            assert_eq!(
                requested(&h),
                Some(Request::Untraced {
                    only: true,
                    disable: false
                }),
                "{d}"
            );
        }
        let h = hdr(&["Nats-Trace-Dest: t", "Nats-Trace-Origin-Account: A"]);
        assert_eq!(
            requested(&h),
            Some(Request::Untraced {
                only: false,
                disable: true
            })
        );
    }

    #[test]
    fn set_header_replaces_in_place_or_appends() {
        let h = hdr(&["A: 1", "Nats-Trace-Dest: t", "B: 2"]);
        assert_eq!(
            set_header(&h, DEST, DISABLED),
            hdr(&["A: 1", "Nats-Trace-Dest: trace disabled", "B: 2"])
        );
        let h = hdr(&["A: 1"]);
        assert_eq!(
            set_header(&h, DEST, "x"),
            hdr(&["A: 1", "Nats-Trace-Dest: x"])
        );
    }

    #[test]
    fn the_event_has_nats_server_field_names_and_omits_empty_ones() {
        let t = Tracer::new(
            "t".into(),
            false,
            BTreeMap::from([("Nats-Trace-Dest".into(), vec!["t".into()])]),
            Publisher {
                cid: 3,
                name: String::new(),
                account: "A",
                subject: "s",
                size: 38,
            },
        );
        t.egress(
            Receiver {
                cid: 4,
                name: "n".into(),
                account: "B",
                subscription: b"s",
                queue: Some(b"q"),
            },
            Some(NotDelivered::NoEcho),
        );
        t.jetstream(JetStreamReport {
            stream: "S".into(),
            subject: "s".into(),
            no_interest: false,
            error: String::new(),
        });
        let v: serde_json::Value =
            serde_json::from_slice(&t.finish(&serde_json::json!({"id": "x"}))).unwrap();
        assert_eq!(v["request"]["msgsize"], 38);
        assert_eq!(v["events"][0]["type"], "in");
        assert_eq!(v["events"][0]["acc"], "A");
        assert!(v["events"][0].get("name").is_none());
        assert!(v["events"][0].get("error").is_none());
        assert_eq!(v["events"][1]["type"], "eg");
        assert_eq!(v["events"][1]["acc"], "B");
        assert_eq!(v["events"][1]["queue"], "q");
        assert_eq!(v["events"][1]["error"], "Not delivered because of no echo");
        assert_eq!(v["events"][2]["type"], "js");
        assert!(v["events"][2].get("nointerest").is_none());
        assert!(v.get("hops").is_none());
    }
}
