//! The differential harness for `$JS.API.*` (shared by the
//! `differential_js*.rs` test files): the same steps sent to nats-server
//! 2.15.1 and to ours must get the same answers once volatile values
//! (times, ephemeral names, ...) are masked.
//!
//! Each scenario starts from an empty JetStream (every stream is deleted
//! first) and is a list of steps. A step publishes one message with a
//! fresh reply inbox and collects what arrives there: JSON bodies are
//! compared structurally (after [`normalise`]), status messages by code,
//! description and headers, deliveries by subject, headers and the layout
//! of their `$JS.ACK` reply. [`check`] runs a list of scenarios on both
//! servers (`SCENARIO=<part of a name>` runs only the matching ones;
//! `JS_DIFF_DUMP=1` prints nats-server's outputs, with `--nocapture`).
#![allow(dead_code)]

use base64::Engine as _;
use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::{Client, HeaderMap, Message};
use bus_embedded_server::jetstream::JetStreamConfig;
use bus_embedded_server::{ServerConfig, start};
use futures::{FutureExt, StreamExt};
use nats_test_server::{NatsServer, ServerOptions};
use serde_json::{Value, json};

/// How long a step waits for its first reply.
pub const FIRST: Duration = Duration::from_millis(1000);
/// After a reply, how long to wait for more before the step ends.
pub const QUIET: Duration = Duration::from_millis(60);
/// After the last step, how long to wait for late replies to any step.
pub const LATE: Duration = Duration::from_millis(300);
/// How long a step waits for replies it is known to get ([`Step::replies`])
/// or for a state it polls for ([`until`]): it only bounds a hang, a
/// loaded machine may take seconds for what takes milliseconds alone.
pub const SETTLE: Duration = Duration::from_secs(60);
/// Between two polls of an [`until`] step.
pub const POLL: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub enum Mode {
    /// Wait for a first reply (or [`FIRST`], or [`SETTLE`] when the other
    /// server answered the step: see [`Answers`]), then until quiet.
    Reply,
    /// Collect whatever arrives during this long.
    Collect(Duration),
    /// Publish without a reply subject; nothing to collect.
    NoReply,
    /// Only wait.
    Sleep(Duration),
    /// Wait until the wall clock is this far past a whole second (for
    /// scenarios whose outcome depends on where whole-second timers fall).
    AlignToSecond(Duration),
    /// Subscribe to the step's subject until the scenario ends; what
    /// arrives there is reported, in order, on this step as `"watched"`.
    Watch,
    /// Wait for this many replies (or [`SETTLE`]), then until quiet: for
    /// a step whose replies do not all go out at once (a notice, then an
    /// ack sent once the message is durable).
    Replies(usize),
    /// Send the request again (every [`POLL`], for at most [`SETTLE`])
    /// until the body of its first reply has these values at these JSON
    /// pointers (after [`normalise`]); the reply that has them is the
    /// step's. For states reached by the clock (expiry): the state is
    /// observed, not raced.
    Until(Vec<(&'static str, Value)>),
}

#[derive(Clone)]
pub struct Step {
    pub subject: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub mode: Mode,
    /// Reply subject `<inbox>.<tail>` instead of `<inbox>` (the step then
    /// listens on `<inbox>.>`), for protocols that encode state in the
    /// reply subject (fast batch publish).
    pub reply_tail: Option<String>,
}

impl Step {
    pub fn hdr(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn collect(mut self, ms: u64) -> Self {
        self.mode = Mode::Collect(Duration::from_millis(ms));
        self
    }
    pub fn no_reply(mut self) -> Self {
        self.mode = Mode::NoReply;
        self
    }
    /// Waits for `n` replies, not for a pause between them ([`Mode::Replies`]).
    pub fn replies(mut self, n: usize) -> Self {
        self.mode = Mode::Replies(n);
        self
    }
    pub fn reply_tail(mut self, tail: impl Into<String>) -> Self {
        self.reply_tail = Some(tail.into());
        self
    }
}

/// A request to `$JS.API.<api>`.
pub fn api(api: &str, body: &str) -> Step {
    raw(&format!("$JS.API.{api}"), body)
}

/// One message of an atomic batch: `Nats-Batch-Id`, `-Sequence` and,
/// with `commit`, `Nats-Batch-Commit`.
pub fn batch(subject: &str, id: &str, seq: u64, commit: Option<&str>) -> Step {
    let step = raw(subject, &format!("{id}-{seq}"))
        .hdr("Nats-Batch-Id", id)
        .hdr("Nats-Batch-Sequence", seq.to_string());
    match commit {
        Some(c) => step.hdr("Nats-Batch-Commit", c),
        None => step,
    }
}

/// A message to any subject (a publish to a stream, an ack...).
pub fn raw(subject: &str, body: &str) -> Step {
    Step {
        subject: subject.to_owned(),
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
        mode: Mode::Reply,
        reply_tail: None,
    }
}

/// Subscribes to `subject` (wildcards allowed) for the rest of the
/// scenario: messages the servers send there by themselves (republished
/// copies, advisories) are compared in arrival order.
pub fn watch(subject: &str) -> Step {
    Step {
        subject: subject.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        mode: Mode::Watch,
        reply_tail: None,
    }
}

/// `step` (a request) sent again until its reply's body holds `values`
/// (JSON pointer, value) all at once; see [`Mode::Until`].
pub fn until(step: Step, values: &[(&'static str, Value)]) -> Step {
    Step {
        mode: Mode::Until(values.to_vec()),
        ..step
    }
}

pub fn sleep(ms: u64) -> Step {
    Step {
        subject: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        mode: Mode::Sleep(Duration::from_millis(ms)),
        reply_tail: None,
    }
}

/// Wait until the wall clock is `ms` milliseconds past a whole second, so
/// the next step happens at the same phase of the second on both servers.
pub fn align_to_second(ms: u64) -> Step {
    Step {
        subject: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        mode: Mode::AlignToSecond(Duration::from_millis(ms.min(999))),
        reply_tail: None,
    }
}

/// `STREAM.CREATE` of `name` with `extra` config fields (a JSON object body without braces).
pub fn create(name: &str, extra: &str) -> Step {
    let body = if extra.is_empty() {
        format!(r#"{{"name":"{name}"}}"#)
    } else {
        format!(r#"{{"name":"{name}",{extra}}}"#)
    };
    api(&format!("STREAM.CREATE.{name}"), &body)
}

/// Publishes `n` messages to `subject` with acks (bodies `m1`, `m2`...).
pub fn publish_n(subject: &str, n: usize) -> Vec<Step> {
    (1..=n).map(|i| raw(subject, &format!("m{i}"))).collect()
}

pub fn pull(stream: &str, consumer: &str, body: &str) -> Step {
    api(&format!("CONSUMER.MSG.NEXT.{stream}.{consumer}"), body)
}

pub type Scenario = (&'static str, Vec<Step>);

/// For scenarios whose every [`Mode::Reply`] step is answered (on
/// nats-server too): each waits for its first reply for up to [`SETTLE`]
/// instead of [`FIRST`], since an answer that needs an fsync (a stream
/// create, a pub ack) can take longer than [`FIRST`] on a loaded machine;
/// cut off there, it was reported as late and the next steps ran too soon.
pub fn answered(scenarios: Vec<Scenario>) -> Vec<Scenario> {
    scenarios
        .into_iter()
        .map(|(name, steps)| {
            let steps = steps
                .into_iter()
                .map(|s| match s.mode {
                    Mode::Reply => s.replies(1),
                    _ => s,
                })
                .collect();
            (name, steps)
        })
        .collect()
}

pub fn concat(parts: Vec<Vec<Step>>) -> Vec<Step> {
    parts.into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------
// Running a scenario
// ---------------------------------------------------------------------------

/// Deletes every stream (not compared).
pub async fn reset(client: &Client) {
    let mut deleted_any = false;
    // Stream deletes on nats-server finish in the background (its store
    // directory and the stream's internal send queue): wait until the names
    // list is empty, so that the next scenario neither meets a half-removed
    // store (10049 "error creating store for stream") nor a late republish.
    for _ in 0..100 {
        let names = stream_names(client).await;
        if names.is_empty() {
            break;
        }
        deleted_any = true;
        for name in names {
            client
                .request(format!("$JS.API.STREAM.DELETE.{name}"), "".into())
                .await
                .expect("stream delete");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if deleted_any {
        // Messages the deleted streams had already handed to the server's
        // internal queues (republish, sourcing) are let through before the
        // next scenario's watchers subscribe.
        tokio::time::sleep(Duration::from_millis(150)).await;
        client.flush().await.expect("flush");
    }
}

async fn stream_names(client: &Client) -> Vec<String> {
    let reply = client
        .request("$JS.API.STREAM.NAMES", "".into())
        .await
        .expect("stream names");
    let v: Value = serde_json::from_slice(&reply.payload).expect("names json");
    v["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

/// What each side's [`Mode::Reply`] steps got within [`FIRST`]: `Some(true)`
/// once a step was answered, `Some(false)` when [`FIRST`] passed without an
/// answer. The two servers run a scenario side by side and each tells the
/// other, so that a step one of them answered is not cut off at [`FIRST`]
/// on the other: on a loaded machine a reply that waits for an fsync can
/// take longer, and a cut-off reply shows up as a difference (`late`).
pub struct Answers {
    mine: tokio::sync::watch::Sender<Vec<Option<bool>>>,
    theirs: tokio::sync::watch::Receiver<Vec<Option<bool>>>,
}

impl Answers {
    /// Two linked halves, one for each server's run of `steps` steps.
    pub fn pair(steps: usize) -> (Answers, Answers) {
        let (a_tx, a_rx) = tokio::sync::watch::channel(vec![None; steps]);
        let (b_tx, b_rx) = tokio::sync::watch::channel(vec![None; steps]);
        (
            Answers {
                mine: a_tx,
                theirs: b_rx,
            },
            Answers {
                mine: b_tx,
                theirs: a_rx,
            },
        )
    }

    fn tell(&self, step: usize, answered: bool) {
        self.mine.send_modify(|v| {
            if let Some(slot) = v.get_mut(step) {
                *slot = Some(answered);
            }
        });
    }

    /// Whether the other server answered `step` within [`FIRST`]; waits for
    /// it to get there (bounded by [`SETTLE`]).
    async fn other_answered(&mut self, step: usize) -> bool {
        let got = tokio::time::timeout(
            SETTLE,
            self.theirs
                .wait_for(|v| v.get(step).is_none_or(|a| a.is_some())),
        )
        .await;
        matches!(got, Ok(Ok(v)) if v.get(step).copied().flatten() == Some(true))
    }
}

/// Runs `steps` on one server; returns one value per step (what came back,
/// normalised). `answers` links it to the other server's run of the same
/// steps.
async fn run(client: &Client, steps: &[Step], mut answers: Answers) -> Vec<Value> {
    reset(client).await;
    let mut ephemerals: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut open_inboxes = Vec::new();
    let mut watches = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if let Mode::Watch = step.mode {
            let sub = client
                .subscribe(step.subject.clone())
                .await
                .expect("subscribe");
            client.flush().await.expect("flush");
            watches.push((out.len(), sub));
            out.push(json!({"step": i, "subject": step.subject}));
            continue;
        }
        if let Mode::Until(values) = &step.mode {
            let (reached, inbox, sub, got) = poll_until(client, step, values).await;
            let mut replies: Vec<Value> = got.iter().map(|m| describe(m, &inbox)).collect();
            for r in &mut replies {
                mask_ephemerals(r, &ephemerals);
            }
            let mut v = json!({"step": i, "subject": step.subject, "replies": replies});
            if !reached {
                v["until"] = json!(format!("not reached in {SETTLE:?}"));
            }
            open_inboxes.push((out.len(), inbox, sub));
            out.push(v);
            continue;
        }
        let inbox = format!("_INBOX.diff.{}", client.new_inbox().replace("_INBOX.", ""));
        let (listen, reply_to) = match &step.reply_tail {
            Some(tail) => (format!("{inbox}.>"), format!("{inbox}.{tail}")),
            None => (inbox.clone(), inbox.clone()),
        };
        let mut sub = client.subscribe(listen).await.expect("subscribe");
        client.flush().await.expect("flush");
        let mut headers = HeaderMap::new();
        for (k, v) in &step.headers {
            headers.insert(*k, v.as_str());
        }
        let payload = step.body.clone().into();
        match step.mode {
            Mode::Sleep(d) => {
                tokio::time::sleep(d).await;
                continue;
            }
            Mode::AlignToSecond(at) => {
                let since_epoch = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let into_second = Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
                let wait = if into_second <= at {
                    at - into_second
                } else {
                    Duration::from_secs(1) - into_second + at
                };
                tokio::time::sleep(wait).await;
                continue;
            }
            Mode::NoReply => {
                if step.headers.is_empty() {
                    client.publish(step.subject.clone(), payload).await
                } else {
                    client
                        .publish_with_headers(step.subject.clone(), headers, payload)
                        .await
                }
                .expect("publish");
                client.flush().await.expect("flush");
                out.push(json!({"step": i, "subject": step.subject}));
                continue;
            }
            _ => {}
        }
        if step.headers.is_empty() {
            client
                .publish_with_reply(step.subject.clone(), reply_to, payload)
                .await
        } else {
            client
                .publish_with_reply_and_headers(step.subject.clone(), reply_to, headers, payload)
                .await
        }
        .expect("publish");
        client.flush().await.expect("flush");
        let mut got = Vec::new();
        match step.mode {
            Mode::Collect(d) => {
                let until = tokio::time::Instant::now() + d;
                while let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await {
                    got.push(m);
                }
            }
            Mode::Replies(n) => {
                let until = tokio::time::Instant::now() + SETTLE;
                while got.len() < n
                    && let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await
                {
                    got.push(m);
                }
                while let Ok(Some(m)) = tokio::time::timeout(QUIET, sub.next()).await {
                    got.push(m);
                }
            }
            _ => {
                let mut first = tokio::time::timeout(FIRST, sub.next()).await.ok().flatten();
                answers.tell(i, first.is_some());
                if first.is_none() && answers.other_answered(i).await {
                    first = tokio::time::timeout(SETTLE, sub.next())
                        .await
                        .ok()
                        .flatten();
                }
                if let Some(m) = first {
                    got.push(m);
                    while let Ok(Some(m)) = tokio::time::timeout(QUIET, sub.next()).await {
                        got.push(m);
                    }
                }
            }
        }
        // Kept open: whatever else arrives here before the scenario ends is
        // reported as late (see below).
        open_inboxes.push((out.len(), inbox.clone(), sub));
        // Ephemeral consumer names are random on both servers.
        let tokens: Vec<&str> = step.subject.split('.').collect();
        if tokens.len() == 5 && tokens[2] == "CONSUMER" && tokens[3] == "CREATE" {
            for m in &got {
                if let Ok(v) = serde_json::from_slice::<Value>(&m.payload)
                    && let Some(name) = v["name"].as_str()
                    && !ephemerals.iter().any(|e| e == name)
                {
                    ephemerals.push(name.to_owned());
                }
            }
        }
        let mut replies: Vec<Value> =
            dedup_heartbeats(got.iter().map(|m| describe(m, &inbox)).collect());
        for r in &mut replies {
            mask_ephemerals(r, &ephemerals);
        }
        out.push(json!({"step": i, "subject": step.subject, "replies": replies}));
    }
    // Replies that came after a step's window (a duplicate answer, a
    // delivery nobody asked for) must come from both servers alike.
    // Timer-driven statuses (heartbeats, request timeouts) are left out:
    // when they land relative to the end of the scenario varies.
    tokio::time::sleep(LATE).await;
    for (at, mut sub) in watches {
        let mut seen = Vec::new();
        while let Some(Some(m)) = sub.next().now_or_never() {
            let mut r = describe(&m, "");
            mask_ephemerals(&mut r, &ephemerals);
            seen.push(r);
        }
        let _ = sub.unsubscribe().await;
        out[at]["watched"] = json!(seen);
    }
    for (at, inbox, mut sub) in open_inboxes {
        let mut late = Vec::new();
        while let Some(Some(m)) = sub.next().now_or_never() {
            let status = m.status.map(|s| s.as_u16());
            if !matches!(status, Some(100 | 408)) {
                let mut r = describe(&m, &inbox);
                mask_ephemerals(&mut r, &ephemerals);
                late.push(r);
            }
        }
        let _ = sub.unsubscribe().await;
        if !late.is_empty() {
            out[at]["late"] = json!(late);
        }
    }
    out
}

/// Sends `step` (with a fresh inbox each time) until the first reply's
/// body holds `values`, for at most [`SETTLE`]. Returns whether it did,
/// and the inbox, its (still open) subscription and the replies of the
/// last request sent.
async fn poll_until(
    client: &Client,
    step: &Step,
    values: &[(&'static str, Value)],
) -> (bool, String, async_nats::Subscriber, Vec<Message>) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let inbox = format!("_INBOX.diff.{}", client.new_inbox().replace("_INBOX.", ""));
        let mut sub = client.subscribe(inbox.clone()).await.expect("subscribe");
        client.flush().await.expect("flush");
        let payload = step.body.clone().into();
        if step.headers.is_empty() {
            client
                .publish_with_reply(step.subject.clone(), inbox.clone(), payload)
                .await
        } else {
            let mut headers = HeaderMap::new();
            for (k, v) in &step.headers {
                headers.insert(*k, v.as_str());
            }
            client
                .publish_with_reply_and_headers(
                    step.subject.clone(),
                    inbox.clone(),
                    headers,
                    payload,
                )
                .await
        }
        .expect("publish");
        client.flush().await.expect("flush");
        let mut got = Vec::new();
        if let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
            got.push(m);
            while let Ok(Some(m)) = tokio::time::timeout(QUIET, sub.next()).await {
                got.push(m);
            }
        }
        let holds = got.first().is_some_and(|m| {
            let body = &describe(m, &inbox)["body"];
            values
                .iter()
                .all(|(at, want)| body.pointer(at) == Some(want))
        });
        if holds || tokio::time::Instant::now() >= deadline {
            return (holds, inbox, sub, got);
        }
        let _ = sub.unsubscribe().await;
        tokio::time::sleep(POLL).await;
    }
}

/// Idle heartbeats arrive on a timer: a run of identical ones becomes one
/// entry with its length in `"repeats"`, which [`same_replies`] lets differ
/// by one between the servers (how many fit in a window varies by one on
/// either server), and no more.
pub fn dedup_heartbeats(replies: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for r in replies {
        if r["status"] == json!(100)
            && let Some(last) = out.last_mut()
        {
            let mut bare = last.clone();
            if let Value::Object(m) = &mut bare {
                m.remove("repeats");
            }
            if bare == r {
                let n = last["repeats"].as_u64().unwrap_or(1) + 1;
                last["repeats"] = json!(n);
                continue;
            }
        }
        out.push(r);
    }
    out
}

/// Two steps' outputs are the same, but for heartbeat runs whose lengths
/// differ by one.
pub fn same_replies(want: &Value, got: &Value) -> bool {
    fn without_repeats(v: &Value) -> (Value, Vec<u64>) {
        let mut v = v.clone();
        let mut runs = Vec::new();
        if let Some(Value::Array(items)) = v.get_mut("replies") {
            for item in items {
                if let Value::Object(m) = item
                    && m.get("status") == Some(&json!(100))
                {
                    runs.push(m.remove("repeats").and_then(|r| r.as_u64()).unwrap_or(1));
                }
            }
        }
        (v, runs)
    }
    let (w, w_runs) = without_repeats(want);
    let (g, g_runs) = without_repeats(got);
    w == g && w_runs.iter().zip(&g_runs).all(|(a, b)| a.abs_diff(*b) <= 1)
}

/// What matters of one message that came back.
pub fn describe(m: &Message, inbox: &str) -> Value {
    let mut v = serde_json::Map::new();
    let subject = m.subject.as_str();
    let subject = if subject == inbox {
        "<inbox>".to_owned()
    } else if let Some(tail) = subject
        .strip_prefix(inbox)
        .and_then(|t| t.strip_prefix('.'))
    {
        format!("<inbox>.{tail}")
    } else {
        subject.to_owned()
    };
    v.insert("subject".into(), json!(subject));
    if let Some(reply) = &m.reply {
        v.insert("reply".into(), json!(ack_layout(reply.as_str())));
    }
    if let Some(status) = m.status {
        v.insert("status".into(), json!(status.as_u16()));
    }
    if let Some(d) = &m.description {
        // A pull request that is not valid JSON: the text ends with the
        // JSON parser's message, which reads differently in Go and serde.
        // Any other Bad Request reason is compared as it is.
        let d = match d.strip_prefix("Bad Request - ") {
            Some(rest) if is_json_parser_message(rest) => "Bad Request - <parser message>",
            _ => d.as_str(),
        };
        v.insert("description".into(), json!(d));
    }
    if let Some(h) = &m.headers {
        let mut hs = BTreeMap::new();
        for (k, vals) in h.iter() {
            let name = k.to_string();
            let vals: Vec<String> = vals
                .iter()
                .map(|x| {
                    if name == "Nats-Time-Stamp" || is_schedule_next_time(&name, x.as_str()) {
                        "<time>".to_owned()
                    } else if name == "Nats-Pin-Id" && !x.as_str().is_empty() {
                        // A pinned consumer's pin id is random.
                        "<pin>".to_owned()
                    } else {
                        x.to_string()
                    }
                })
                .collect();
            hs.insert(name, vals);
        }
        if !hs.is_empty() {
            v.insert("headers".into(), json!(hs));
        }
    }
    if !m.payload.is_empty() {
        let body = match serde_json::from_slice::<Value>(&m.payload) {
            Ok(mut j) => {
                normalise(&mut j);
                j
            }
            Err(_) => json!(String::from_utf8_lossy(&m.payload)),
        };
        v.insert("body".into(), body);
    }
    Value::Object(v)
}

/// Ephemeral consumer names are random on both servers: each is replaced
/// by its order of creation, where a consumer name goes and nowhere else
/// (a consumer's `name` and `config.name`, the `consumers` of a names
/// list, the consumer token of an ack reply).
pub fn mask_ephemerals(reply: &mut Value, ephemerals: &[String]) {
    let label = |name: &str| {
        ephemerals
            .iter()
            .position(|e| e == name)
            .map(|n| format!("<ephemeral{n}>"))
    };
    let mask = |v: &mut Value| {
        if let Some(l) = v.as_str().and_then(label) {
            *v = json!(l);
        }
    };
    if let Some(body) = reply.get_mut("body") {
        if body.get("stream_name").is_some()
            && let Some(name) = body.get_mut("name")
        {
            mask(name);
        }
        if let Some(name) = body.pointer_mut("/config/name") {
            mask(name);
        }
        if let Some(Value::Array(names)) = body.get_mut("consumers") {
            for n in names.iter_mut() {
                if n.is_string() {
                    mask(n);
                } else {
                    if let Some(name) = n.get_mut("name") {
                        mask(name);
                    }
                    if let Some(name) = n.pointer_mut("/config/name") {
                        mask(name);
                    }
                }
            }
        }
    }
    if let Some(Value::String(r)) = reply.get_mut("reply") {
        let mut tokens: Vec<String> = r.split('.').map(str::to_owned).collect();
        if r.starts_with("$JS.ACK.")
            && let Some(l) = tokens.get(3).and_then(|t| label(t))
        {
            tokens[3] = l;
            *r = tokens.join(".");
        }
    }
}

/// Whether `text` is a JSON parser's error: Go's encoding/json ("invalid
/// character ...", "unexpected end of JSON input", "json: ...") or serde's
/// ("... at line 1 column 5").
pub fn is_json_parser_message(text: &str) -> bool {
    text.starts_with("invalid character ")
        || text.starts_with("unexpected end of JSON input")
        || text.starts_with("json: ")
        || (text.contains(" at line ") && text.contains(" column "))
}

/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`
/// with the timestamp masked.
pub fn ack_layout(reply: &str) -> String {
    if !reply.starts_with("$JS.ACK.") {
        return reply.to_owned();
    }
    reply
        .split('.')
        .map(|t| {
            if t.len() >= 16 && t.bytes().all(|b| b.is_ascii_digit()) {
                "<ts>"
            } else {
                t
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A sourced message's `Nats-Stream-Source` ends with the origin stream's
/// identity, a hash of its creation time: masked.
fn mask_source_identity(line: &str) -> String {
    match line.strip_prefix("Nats-Stream-Source: ") {
        Some(v) if v.split(' ').count() >= 6 => {
            let kept: Vec<&str> = v.split(' ').take(5).collect();
            format!("Nats-Stream-Source: {} <ident>", kept.join(" "))
        }
        _ => line.to_owned(),
    }
}

/// A scheduled message's `Nats-Schedule-Next` holding a time (the next
/// firing, from each server's own clock), not `purge`.
pub fn is_schedule_next_time(name: &str, value: &str) -> bool {
    name == "Nats-Schedule-Next" && value != "purge"
}

/// Masks what legitimately differs between two servers.
pub fn normalise(v: &mut Value) {
    match v {
        Value::Object(map) => {
            // Server identity and placement: one server each, different ids.
            map.remove("cluster");
            map.remove("domain");
            // The API level (2.11+) in account info.
            if let Some(Value::Object(api)) = map.get_mut("api") {
                api.remove("level");
            }
            // The server's version and API level stamped into stream and
            // consumer metadata (2.11+) differ by design: their values are
            // masked, their presence and `_nats.req.level` are compared.
            if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                for key in ["_nats.ver", "_nats.level"] {
                    if let Some(v) = meta.get_mut(key) {
                        *v = json!("<server>");
                    }
                }
            }
            for key in ["created", "ts", "time", "last_active"] {
                if let Some(t) = map.get_mut(key)
                    && t.is_string()
                {
                    *t = json!("<time>");
                }
            }
            // Priority groups: pin ids are random.
            for key in ["pinned_client_id", "pinned_id"] {
                if let Some(t) = map.get_mut(key)
                    && t.is_string()
                {
                    *t = json!("<pin>");
                }
            }
            for key in ["first_ts", "last_ts", "pinned_ts"] {
                if let Some(t) = map.get_mut(key)
                    && t.as_str() != Some("0001-01-01T00:00:00Z")
                {
                    *t = json!("<time>");
                }
            }
            // Stored headers are the bytes the client sent, and async-nats
            // sends a HeaderMap's lines in hash order, which differs between
            // the two connections: compare the lines as a sorted list.
            if let Some(Value::String(h)) = map.get("hdrs")
                && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(h)
            {
                let text = String::from_utf8_lossy(&raw).into_owned();
                let mut lines: Vec<String> = text
                    .split("\r\n")
                    .map(|l| match l.split_once(": ") {
                        Some((k, v)) if is_schedule_next_time(k, v) => {
                            "Nats-Schedule-Next: <time>".to_owned()
                        }
                        _ => mask_source_identity(l),
                    })
                    .collect();
                if lines.len() > 1 {
                    lines[1..].sort_unstable();
                }
                map.insert("hdrs".into(), json!(lines));
            }
            // A mirror's or source's last contact (stream info `active`,
            // nanoseconds ago) is a time: only "never" (-1) compares.
            if let Some(a) = map.get_mut("active")
                && a.as_i64().is_some_and(|n| n >= 0)
            {
                *a = json!("<active>");
            }
            // Go's and serde's JSON parser errors read differently.
            if map.get("err_code") == Some(&json!(10025)) {
                map.insert(
                    "description".into(),
                    json!("invalid JSON: <parser message>"),
                );
            }
            for (_, child) in map.iter_mut() {
                normalise(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}
/// Runs `scenarios` on nats-server 2.15.1 and on ours and fails with every
/// difference.
pub async fn check(scenarios: Vec<Scenario>) {
    let reference = NatsServer::start_with(ServerOptions {
        jetstream: true,
        ..ServerOptions::default()
    })
    .await;
    let store = tempfile::tempdir().expect("tempdir");
    let ours = start(ServerConfig {
        port: 0,
        jetstream: Some(JetStreamConfig {
            store_dir: store.path().to_owned(),
            ..Default::default()
        }),
        ..ServerConfig::default()
    })
    .await
    .expect("ours starts");
    // The requests of `reset` (stream names and deletes, which fsync) get
    // SETTLE, not the client's default 10 s, before they fail the test.
    let options = || async_nats::ConnectOptions::new().request_timeout(Some(SETTLE));
    let theirs = options()
        .connect(reference.url())
        .await
        .expect("connect reference");
    let mine = options()
        .connect(format!("nats://{}", ours.addr()))
        .await
        .expect("connect ours");
    let only = std::env::var("SCENARIO").ok();
    let mut differences = Vec::new();
    let mut ran = 0;
    for (name, steps) in scenarios {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        ran += 1;
        let (a, b) = Answers::pair(steps.len());
        let (want, got) = tokio::join!(run(&theirs, &steps, a), run(&mine, &steps, b));
        if std::env::var("JS_DIFF_DUMP").is_ok() {
            for w in &want {
                eprintln!("DUMP [{name}] {w}");
            }
        }
        for (w, g) in want.iter().zip(&got) {
            if !same_replies(w, g) {
                differences.push(format!(
                    "[{name}] step {} {}\n  nats-server: {} late {} watched {}\n  ours:        {} late {} watched {}",
                    w["step"],
                    w["subject"],
                    w["replies"],
                    w["late"],
                    w["watched"],
                    g["replies"],
                    g["late"],
                    g["watched"]
                ));
            }
        }
    }
    assert!(ran > 0, "no scenario matched SCENARIO={only:?}");
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
