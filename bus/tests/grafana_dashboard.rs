//! The Grafana dashboard the Helm chart ships
//! (`helm/angzarr-bus/dashboards/angzarr-bus.json`, the exact file the
//! chart's ConfigMap embeds) is a valid dashboard, and every metric it
//! queries is exported by a live bundled server's `/metrics` once there has
//! been traffic: events published, a durable consumer with events pending,
//! in flight and redelivered, and one event dead-lettered. A panel querying
//! a metric the server does not export (a typo, a renamed metric) fails here
//! with the metric's name.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use bus::{BusConfig, EmbeddedBus};
use bus_core::testkit::{all, deposits};
use bus_core::{Bus, ConsumerConfig, Delivery, StartPosition};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../helm/angzarr-bus/dashboards/angzarr-bus.json"
);

/// Grafana's own variables a query may use besides the dashboard's.
const GRAFANA_VARIABLES: &[&str] = &["__rate_interval", "__interval", "__range"];

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_grafana_dashboard_queries_only_metrics_a_live_server_exports() {
    let dashboard = load_dashboard();
    check_dashboard_structure(&dashboard);
    let queries = dashboard_queries(&dashboard);
    let wanted: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    assert!(
        !wanted.is_empty(),
        "the dashboard's queries name no metric at all: {queries:#?}"
    );
    // The panels must cover what the chart promises (issue #16).
    for family in [
        "nats_varz_in_msgs",
        "nats_varz_connections",
        "nats_jetstream_stream_messages",
        "nats_jetstream_consumer_num_pending",
        "nats_jetstream_consumer_num_ack_pending",
        "nats_jetstream_consumer_num_redelivered",
    ] {
        assert!(
            wanted.contains(family),
            "the dashboard has no panel on {family}"
        );
    }

    // A live bundled server with its monitoring port on.
    let dir = tempfile::tempdir().expect("temp dir");
    let (bus, config, monitor_port) = start_with_monitoring(&dir.path().join("data")).await;

    // Traffic: events, a durable consumer with work pending, in flight and
    // redelivered, and one event dead-lettered.
    let published = bus
        .publish_batch(deposits("grafana", 12))
        .await
        .expect("publish");
    assert_eq!(published.len(), 12);
    let mut consumer = bus
        .consumer(
            ConsumerConfig::new("projector", all())
                .start(StartPosition::Beginning)
                .ack_wait(Duration::from_secs(60))
                .max_deliver(3)
                .backoff(Vec::new())
                .max_ack_pending(100),
        )
        .await
        .expect("durable consumer");
    let poison = next(&mut consumer).await;
    poison
        .term("grafana dashboard test: poison")
        .await
        .expect("term");
    let retried = next(&mut consumer).await;
    let retried_position = retried.event.position;
    retried.nak_with_delay(Duration::ZERO).await.expect("nak");
    // Ack what comes until the nak'd event is back; keep the redelivery
    // unacknowledged (redelivered and ack pending), leave the rest pending.
    let mut in_flight: Vec<Delivery> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "the nak'd event (position {retried_position}) was not redelivered within 20 s"
        );
        let d = next(&mut consumer).await;
        if d.event.position == retried_position {
            assert_eq!(d.attempt, 2, "redelivery of the nak'd event");
            in_flight.push(d);
            break;
        }
        d.ack().await.expect("ack");
    }
    wait_for_dead_letter(&bus, "projector").await;

    // Every metric the dashboard queries has samples, and the dead-letter
    // panels' default selector finds the dead-lettered event.
    let dlq = config.nats.dead_letter_stream_name();
    let dlq_regex = dead_letter_variable_default(&dashboard);
    assert!(
        matches_default_dead_letter_regex(&dlq_regex, &dlq),
        "the dashboard's dead_letter_stream default {dlq_regex:?} does not match the bus's \
         dead-letter stream {dlq:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let (missing, dead_letters, text) = loop {
        let text = get_metrics(monitor_port).await;
        let samples = sample_names(&text);
        let missing: Vec<&String> = wanted.iter().filter(|m| !samples.contains(*m)).collect();
        let dead_letters = sample_value(
            &text,
            &format!("nats_jetstream_stream_messages{{stream=\"{dlq}\"}}"),
        );
        if (missing.is_empty() && dead_letters.unwrap_or(0.0) >= 1.0) || Instant::now() > deadline {
            break (
                missing.into_iter().cloned().collect::<Vec<_>>(),
                dead_letters,
                text,
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the server's /metrics does not export: {} \
         (queried: {wanted:?})\n--- /metrics ---\n{text}",
        missing.join(", ")
    );
    assert!(
        dead_letters.unwrap_or(0.0) >= 1.0,
        "nats_jetstream_stream_messages{{stream=\"{dlq}\"}} is {dead_letters:?}, expected >= 1 \
         after a term\n--- /metrics ---\n{text}"
    );

    drop(in_flight);
    drop(consumer);
    bus.close().await.expect("close");
}

// ---------------------------------------------------------------------------
// The live server
// ---------------------------------------------------------------------------

/// The embedded bus with its monitoring port on a free port it reports.
async fn start_with_monitoring(data_dir: &Path) -> (EmbeddedBus, BusConfig, u16) {
    let config = BusConfig::parse(
        &format!(
            "[bus]\nbackend = \"embedded\"\n[bus.embedded]\nport = 0\nhttp_port = 0\n\
             data_dir = {:?}\n",
            data_dir.display().to_string()
        ),
        "grafana-dashboard.toml",
    )
    .expect("config");
    let bus = EmbeddedBus::start(&config)
        .await
        .expect("the embedded bus starts");
    let port = bus.monitor_port().expect("monitoring is on");
    (bus, config, port)
}

async fn next(consumer: &mut bus_core::Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("delivery")
}

async fn wait_for_dead_letter(bus: &dyn Bus, consumer: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dl = bus
            .dead_letters(Some(consumer))
            .await
            .expect("dead letters");
        if !dl.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter of {consumer} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /metrics` over plain HTTP/1.0 (the server closes the connection
/// after the response); the body, after checking the status is 200.
async fn get_metrics(port: u16) -> String {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .expect("connect within 5 s")
    .expect("connect to the monitoring port");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("response within 5 s")
        .expect("read response");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    let status = head.lines().next().unwrap_or_default();
    assert!(
        status.starts_with("HTTP/1.") && status.split_whitespace().nth(1) == Some("200"),
        "GET /metrics: {status:?}"
    );
    body.to_owned()
}

/// Names of the metrics with at least one sample (not just `# HELP`/`# TYPE`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.trim().rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------
// The dashboard
// ---------------------------------------------------------------------------

fn load_dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD)
        .unwrap_or_else(|e| panic!("read the chart's dashboard {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .map(|l| l.iter().collect())
        .unwrap_or_default()
}

/// What Grafana needs to import the dashboard, and what the chart promises:
/// a Prometheus data-source variable every panel and query uses, unique
/// panel ids, panels inside the 24-column grid, queries using only defined
/// variables.
fn check_dashboard_structure(d: &Value) {
    let title = d["title"].as_str().unwrap_or_default();
    assert!(!title.is_empty(), "dashboard without a title");
    let uid = d["uid"].as_str().unwrap_or_default();
    assert!(
        !uid.is_empty() && uid.len() <= 40,
        "dashboard uid {uid:?} must be 1 to 40 characters"
    );
    assert!(
        d["schemaVersion"].is_u64(),
        "dashboard without schemaVersion"
    );
    assert!(
        d["id"].is_null(),
        "a provisioned dashboard must not carry a database id"
    );

    let vars = variables(d);
    let names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(
        names.len(),
        vars.len(),
        "variables with duplicate or no names"
    );
    let ds: Vec<_> = vars.iter().filter(|v| v["type"] == "datasource").collect();
    assert!(
        ds.len() == 1 && ds[0]["name"] == "datasource" && ds[0]["query"] == "prometheus",
        "the dashboard needs one Prometheus data-source variable named datasource: {ds:?}"
    );
    let uses_variable = |what: &str, v: &Value| {
        assert!(
            v["type"] == "prometheus" && v["uid"] == "${datasource}",
            "{what}: datasource must be {{type: prometheus, uid: ${{datasource}}}}, is {v}"
        );
    };
    for v in vars.iter().filter(|v| v["type"] == "query") {
        uses_variable(&format!("variable {}", v["name"]), &v["datasource"]);
    }

    let panels = all_panels(d);
    assert!(!panels.is_empty(), "dashboard without panels");
    let mut ids = BTreeSet::new();
    for p in &panels {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel without a numeric id: {}", p["title"]));
        assert!(ids.insert(id), "panel id {id} used twice");
        let (x, w) = (p["gridPos"]["x"].as_u64(), p["gridPos"]["w"].as_u64());
        let (Some(x), Some(w)) = (x, w) else {
            panic!("panel {} without gridPos x/w", p["title"]);
        };
        assert!(
            (1..=24).contains(&w) && x + w <= 24,
            "panel {} outside the 24-column grid",
            p["title"]
        );
        assert!(p["gridPos"]["h"].as_u64().unwrap_or(0) >= 1, "panel height");
        if p["type"] == "row" {
            continue;
        }
        let what = format!("panel {}", p["title"]);
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{what}");
        uses_variable(&what, &p["datasource"]);
        let targets = p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "{what} has no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            uses_variable(&what, &t["datasource"]);
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{what}: a query without expr"
            );
            assert!(
                refs.insert(t["refId"].as_str().unwrap_or_default()),
                "{what}: refId reused"
            );
        }
    }

    for q in dashboard_queries(d) {
        for var in referenced_variables(&q) {
            assert!(
                names.contains(var.as_str()) || GRAFANA_VARIABLES.contains(&var.as_str()),
                "query {q:?} uses ${var}, which the dashboard does not define"
            );
        }
    }
}

/// The PromQL of every panel query and of every query variable
/// (`label_values(<selector>, label)` gives its selector).
fn dashboard_queries(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in all_panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(e.to_owned());
            }
        }
    }
    for v in variables(d).into_iter().filter(|v| v["type"] == "query") {
        let q = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .unwrap_or_default()
            .trim();
        if let Some(args) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            // label_values(label) names no metric; label_values(sel, label) does.
            if let Some((selector, _label)) = split_last_top_level_comma(args) {
                out.push(selector.trim().to_owned());
            }
        } else if let Some(inner) = q
            .strip_prefix("query_result(")
            .and_then(|r| r.strip_suffix(')'))
        {
            out.push(inner.to_owned());
        } else if !q.is_empty() {
            out.push(q.to_owned());
        }
    }
    out
}

fn split_last_top_level_comma(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    let mut quote = None;
    let mut last = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '(' | '{' | '[') => depth += 1,
            (None, ')' | '}' | ']') => depth -= 1,
            (None, ',') if depth == 0 => last = Some(i),
            _ => {}
        }
    }
    last.map(|i| (&s[..i], &s[i + 1..]))
}

/// The default of the dashboard's `dead_letter_stream` variable (a regex).
fn dead_letter_variable_default(d: &Value) -> String {
    let v = variables(d)
        .into_iter()
        .find(|v| v["name"] == "dead_letter_stream")
        .expect("the dashboard has a dead_letter_stream variable");
    let default = v["query"].as_str().unwrap_or_default();
    assert_eq!(
        v["current"]["value"].as_str(),
        Some(default),
        "dead_letter_stream: current value and default differ"
    );
    default.to_owned()
}

/// The shipped default is `.*<literal suffix>`: check it the way Prometheus'
/// anchored regex would match a stream name, without a regex engine.
fn matches_default_dead_letter_regex(regex: &str, stream: &str) -> bool {
    let suffix = regex
        .strip_prefix(".*")
        .unwrap_or_else(|| panic!("dead_letter_stream default {regex:?} is not .*<suffix>"));
    assert!(
        !suffix.contains([
            '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '^', '$', '\\'
        ]),
        "dead_letter_stream default {regex:?}: the suffix should be literal"
    );
    stream.ends_with(suffix)
}

// ---------------------------------------------------------------------------
// PromQL: the metric names a query reads
// ---------------------------------------------------------------------------

const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    // Aggregation operators, which may stand before their parentheses
    // (`sum by (x) (...)`).
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Removes string literals, `{...}` label matchers and `[...]` ranges.
fn strip_literals_and_matchers(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut depth = 0usize; // inside {...} or [...]
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Identifier-like words of `s` with their byte offsets.
fn words(s: &str) -> Vec<(usize, &str)> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
        match (start, is_word(c)) {
            (None, true) => start = Some(i),
            (Some(b), false) => {
                out.push((b, &s[b..i]));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// The metric names a PromQL expression reads: identifiers that are not
/// functions (followed by `(`), keywords, numbers or durations, Grafana
/// variables (`$name`), label names in `by (...)` / `on (...)` lists, or
/// anything inside label matchers, ranges and strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let s = strip_literals_and_matchers(expr);
    let ws = words(&s);
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < ws.len() {
        let (at, w) = ws[i];
        let after = s[at + w.len()..].trim_start();
        let before = s[..at].chars().next_back();
        if matches!(
            w,
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        ) && after.starts_with('(')
        {
            // Skip the label list up to its ')'.
            let close = at + w.len() + s[at + w.len()..].find(')').unwrap_or(0);
            while i < ws.len() && ws[i].0 < close {
                i += 1;
            }
            continue;
        }
        i += 1;
        if w.starts_with(|c: char| c.is_ascii_digit())
            || before == Some('$')
            || after.starts_with('(')
            || PROMQL_KEYWORDS.contains(&w.to_ascii_lowercase().as_str())
        {
            continue;
        }
        names.insert(w.to_owned());
    }
    names
}

/// The Grafana variables (`$name`, `${name}`, `[[name]]`) a query uses.
fn referenced_variables(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut rest = expr;
    while let Some(pos) = rest.find('$') {
        rest = &rest[pos + 1..];
        let body = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = body.chars().take_while(|&c| is_name(c)).collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn metric_names_skip_functions_labels_matchers_ranges_and_variables() {
    let got = metric_names(
        "sum by (stream, consumer) (rate(nats_a{stream=~\"nats_fake.*\", job=~\"$job\"}\
         [$__rate_interval])) / on (instance) group_left(pod) nats_b offset 5m \
         + ignoring(x) (nats_c > bool 1e3) and nats_d:recorded",
    );
    let want: BTreeSet<String> = ["nats_a", "nats_b", "nats_c", "nats_d:recorded"]
        .map(str::to_owned)
        .into();
    assert_eq!(got, want);
    assert!(metric_names("vector(1)").is_empty());
    assert_eq!(
        referenced_variables("x{a=~\"$job\", b=\"${instance}\"}[$__rate_interval]"),
        ["__rate_interval", "instance", "job"]
            .map(str::to_owned)
            .into()
    );
}

#[test]
fn sample_names_ignore_help_and_type_lines() {
    let text = "# HELP nats_x X.\n# TYPE nats_x gauge\n# HELP nats_y Y.\n# TYPE nats_y gauge\n\
                nats_y{stream=\"s\"} 3\nnats_z 1\n";
    let got = sample_names(text);
    assert_eq!(got, ["nats_y", "nats_z"].map(str::to_owned).into());
    assert_eq!(sample_value(text, "nats_y{stream=\"s\"}"), Some(3.0));
    assert_eq!(sample_value(text, "nats_x"), None);
}
