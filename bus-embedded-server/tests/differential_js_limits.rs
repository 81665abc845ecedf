//! JetStream resource limits, side by side with nats-server 2.15.1: the
//! server's `jetstream { max_mem, max_file }` and each account's
//! `jetstream { max_mem, max_file, max_streams, max_consumers,
//! max_ack_pending, max_bytes_required, store_max_stream_bytes, ... }`.
//! The same configuration file is given to both servers; every answer
//! (error code and text, the limits and reservations ACCOUNT.INFO reports,
//! the publish a stream is refused at) must be the same.

use std::path::Path;
use std::time::Duration;

use bus_embedded_server::cli::Cli;
use bus_embedded_server::{ServerConfig, ServerHandle, options, start};
use nats_test_server::{NatsServer, ServerOptions};
use serde_json::{Value, json};

/// Ours, from the configuration file as the binary reads it.
async fn ours(conf_path: &Path) -> ServerHandle {
    let cli = Cli {
        config: Some(conf_path.to_path_buf()),
        ..Cli::default()
    };
    let mut o = options::from_cli(&cli, ServerConfig::default()).expect("configuration accepted");
    o.config.port = 0;
    start(o.config).await.expect("start")
}

async fn reference(conf_text: &str) -> NatsServer {
    NatsServer::start_with(ServerOptions {
        extra_config: Some(conf_text.to_owned()),
        ..ServerOptions::core()
    })
    .await
}

/// A step, as a user of one account.
enum Step {
    /// A JetStream API request: `$JS.API.<api>` with a JSON body.
    Api(&'static str, String, Value),
    /// Publishes messages of `size` bytes to a subject until one is
    /// refused, at most `max`.
    Fill(&'static str, &'static str, usize, usize),
    /// Publishes an atomic batch of `count` messages of `size` bytes.
    Batch(&'static str, &'static str, usize, u64),
}

fn api(user: &'static str, api: &str, body: Value) -> Step {
    Step::Api(user, api.to_owned(), body)
}

/// What an answer says, without what legitimately differs (times, ids,
/// server names).
fn summary(api: &str, v: &Value) -> String {
    if let Some(e) = v.get("error") {
        return format!("error {} {} {}", e["code"], e["err_code"], e["description"]);
    }
    if api.starts_with("STREAM.INFO") {
        return format!(
            "messages {} bytes {}",
            v["state"]["messages"], v["state"]["bytes"]
        );
    }
    if api == "INFO" {
        return format!(
            "memory {} storage {} reserved {} {} streams {} consumers {} limits {}",
            v["memory"],
            v["storage"],
            v["reserved_memory"],
            v["reserved_storage"],
            v["streams"],
            v["consumers"],
            v["limits"]
        );
    }
    if api.starts_with("CONSUMER.CREATE") {
        return format!(
            "consumer, max_ack_pending {}",
            v["config"]["max_ack_pending"]
        );
    }
    "ok".to_owned()
}

async fn run(url: &str, steps: &[Step]) -> Vec<String> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Api(user, api, body) => {
                let c = connect(url, user).await;
                let reply = c
                    .request(format!("$JS.API.{api}"), body.to_string().into())
                    .await
                    .unwrap_or_else(|e| panic!("{api}: {e}"));
                let v: Value = serde_json::from_slice(&reply.payload).expect("JSON answer");
                out.push(format!("{user} {api}: {}", summary(api, &v)));
            }
            Step::Fill(user, subject, size, max) => {
                let c = connect(url, user).await;
                let payload: Vec<u8> = vec![b'x'; *size];
                let mut stored = 0;
                let mut end = "never refused".to_owned();
                for _ in 0..*max {
                    let reply = c
                        .request(subject.to_string(), payload.clone().into())
                        .await
                        .expect("publish answered");
                    let v: Value = serde_json::from_slice(&reply.payload).expect("JSON PubAck");
                    if v.get("error").is_some() {
                        end = summary("PUB", &v);
                        break;
                    }
                    stored += 1;
                }
                out.push(format!(
                    "{user} fill {subject}: {stored} stored, then {end}"
                ));
            }
            Step::Batch(user, subject, size, count) => {
                let c = connect(url, user).await;
                let payload: Vec<u8> = vec![b'x'; *size];
                let mut answers = Vec::new();
                for seq in 1..=*count {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert("Nats-Batch-Id", "limits-batch");
                    h.insert("Nats-Batch-Sequence", seq.to_string().as_str());
                    if seq == *count {
                        h.insert("Nats-Batch-Commit", "1");
                        match c
                            .request_with_headers(subject.to_string(), h, payload.clone().into())
                            .await
                        {
                            Ok(reply) => {
                                let v: Value =
                                    serde_json::from_slice(&reply.payload).expect("JSON");
                                answers.push(summary("PUB", &v));
                            }
                            Err(e) => answers.push(format!("no answer ({e})")),
                        }
                    } else {
                        // nats-server wants a reply subject on every
                        // message of a batch.
                        c.publish_with_reply_and_headers(
                            subject.to_string(),
                            "batch.staged",
                            h,
                            payload.clone().into(),
                        )
                        .await
                        .expect("publish");
                    }
                }
                out.push(format!("{user} batch {subject}: {}", answers.join(", ")));
            }
        }
    }
    out
}

async fn connect(url: &str, user: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(url)
        .await
        .expect("connect")
}

/// Runs `steps` on nats-server and ours, each with `conf` (its
/// `STORE_DIR` replaced by a directory of its own), and compares.
async fn differential(conf: &str, steps: &[Step]) {
    let ref_dir = tempfile::tempdir().expect("tempdir");
    let our_dir = tempfile::tempdir().expect("tempdir");
    let conf_for = |dir: &Path| conf.replace("STORE_DIR", &dir.join("js").display().to_string());
    let reference = reference(&conf_for(ref_dir.path())).await;
    let conf_path = our_dir.path().join("server.conf");
    std::fs::write(&conf_path, conf_for(our_dir.path())).expect("write conf");
    let ours = ours(&conf_path).await;
    let theirs = run(&reference.url(), steps).await;
    let mine = run(&format!("nats://{}", ours.addr()), steps).await;
    for (t, m) in theirs.iter().zip(&mine) {
        println!("nats-server: {t}\nours:        {m}");
    }
    assert_eq!(mine, theirs, "ours differs from nats-server 2.15.1");
    ours.shutdown(Duration::from_secs(1)).await;
}

fn stream_info(name: &str) -> String {
    format!("STREAM.INFO.{name}")
}

fn stream(name: &str, storage: &str, max_bytes: i64) -> Value {
    json!({"name": name, "subjects": [format!("{}.>", name.to_lowercase())], "storage": storage, "max_bytes": max_bytes})
}

const ACCOUNTS: &str = r#"
jetstream { store_dir: "STORE_DIR", max_mem: 10M, max_file: 100M }
accounts {
  A: { jetstream: { max_mem: 1M, max_file: 2M, max_streams: 2, max_consumers: 2 }, users: [{user: a, password: a}] }
  B: { jetstream: { max_file: 2M, max_bytes_required: true, store_max_stream_bytes: 1M }, users: [{user: b, password: b}] }
  C: { jetstream: { max_ack_pending: 100 }, users: [{user: c, password: c}] }
  D: { jetstream: enabled, users: [{user: d, password: d}] }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_stream_count_reservations_and_usage_are_limited_as_nats_server_limits_them() {
    differential(
        ACCOUNTS,
        &[
            api("a", "INFO", json!({})),
            api("a", "STREAM.CREATE.S1", stream("S1", "file", 1_000_000)),
            api("a", "STREAM.CREATE.S2", stream("S2", "memory", 2_000_000)),
            api("a", "STREAM.CREATE.S2", stream("S2", "file", 3_000_000)),
            api("a", "STREAM.CREATE.S2", stream("S2", "file", -1)),
            api("a", "STREAM.CREATE.S3", stream("S3", "memory", 1000)),
            api("a", "INFO", json!({})),
            api("a", "STREAM.DELETE.S2", json!({})),
            api("a", "STREAM.CREATE.S3", stream("S3", "memory", 500_000)),
            api("a", "STREAM.UPDATE.S3", stream("S3", "memory", 2_000_000)),
            api("a", "INFO", json!({})),
            Step::Fill("a", "s1.x", 100_000, 40),
            Step::Fill("a", "s3.x", 100_000, 40),
            api("a", "INFO", json!({})),
            // A stream without max_bytes grows until the account is full.
            api("a", "STREAM.DELETE.S1", json!({})),
            api("a", "STREAM.CREATE.S4", stream("S4", "file", -1)),
            Step::Fill("a", "s4.x", 100_000, 40),
            api("a", "INFO", json!({})),
            // Room again once some of it is gone.
            api("a", "STREAM.PURGE.S4", json!({"keep": 10})),
            Step::Fill("a", "s4.x", 100_000, 40),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_consumer_count_and_ack_pending_ceiling_are_enforced_as_nats_server_enforces_them()
{
    differential(
        ACCOUNTS,
        &[
            api("a", "STREAM.CREATE.S1", stream("S1", "file", 1_000_000)),
            api("a", "STREAM.CREATE.S2", stream("S2", "memory", 1000)),
            api(
                "a",
                "CONSUMER.CREATE.S1.C1",
                json!({"stream_name": "S1", "config": {"name": "C1", "ack_policy": "explicit"}}),
            ),
            api(
                "a",
                "CONSUMER.CREATE.S2.C2",
                json!({"stream_name": "S2", "config": {"name": "C2", "ack_policy": "explicit"}}),
            ),
            // The third consumer of the account, on either stream.
            api(
                "a",
                "CONSUMER.CREATE.S1.C3",
                json!({"stream_name": "S1", "config": {"name": "C3", "ack_policy": "explicit"}}),
            ),
            // A stream may not allow more consumers than the account.
            api(
                "a",
                "STREAM.UPDATE.S2",
                json!({"name": "S2", "subjects": ["s2.>"], "storage": "memory", "max_bytes": 1000, "max_consumers": 5}),
            ),
            api("a", "CONSUMER.DELETE.S2.C2", json!({})),
            api(
                "a",
                "CONSUMER.CREATE.S1.C3",
                json!({"stream_name": "S1", "config": {"name": "C3", "ack_policy": "explicit"}}),
            ),
            api("a", "INFO", json!({})),
            api("c", "STREAM.CREATE.S1", stream("S1", "file", -1)),
            api(
                "c",
                "CONSUMER.CREATE.S1.OVER",
                json!({"stream_name": "S1", "config": {"name": "OVER", "ack_policy": "explicit", "max_ack_pending": 200}}),
            ),
            api(
                "c",
                "CONSUMER.CREATE.S1.DEFAULTED",
                json!({"stream_name": "S1", "config": {"name": "DEFAULTED", "ack_policy": "explicit"}}),
            ),
            api(
                "c",
                "CONSUMER.CREATE.S1.UNDER",
                json!({"stream_name": "S1", "config": {"name": "UNDER", "ack_policy": "explicit", "max_ack_pending": 50}}),
            ),
            api(
                "c",
                "CONSUMER.CREATE.S1.NOACK",
                json!({"stream_name": "S1", "config": {"name": "NOACK", "ack_policy": "none"}}),
            ),
            // Raising an existing consumer's window past the ceiling.
            api(
                "c",
                "CONSUMER.CREATE.S1.UNDER",
                json!({"stream_name": "S1", "config": {"name": "UNDER", "ack_policy": "explicit", "max_ack_pending": 101}}),
            ),
            api("c", "INFO", json!({})),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_required_and_the_per_stream_ceiling_are_checked_on_create_and_update() {
    differential(
        ACCOUNTS,
        &[
            api("b", "STREAM.CREATE.S1", stream("S1", "file", -1)),
            api("b", "STREAM.CREATE.S1", stream("S1", "file", 2_000_000)),
            api("b", "STREAM.CREATE.S1", stream("S1", "file", 500_000)),
            api("b", "STREAM.UPDATE.S1", stream("S1", "file", 2_000_000)),
            api("b", "STREAM.UPDATE.S1", stream("S1", "file", 1_000_000)),
            // Memory has no per-stream ceiling in this account.
            api("b", "STREAM.CREATE.M1", stream("M1", "memory", 5_000_000)),
            api("b", "INFO", json!({})),
            // An account without limits shows none, whatever the server's.
            api("d", "INFO", json!({})),
        ],
    )
    .await;
}

const SERVER_LIMITS: &str = r#"
jetstream { store_dir: "STORE_DIR", max_mem: 1M, max_file: 1M }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_memory_and_storage_limits_refuse_reservations_and_publishes() {
    differential(
        SERVER_LIMITS,
        &[
            api("", "STREAM.CREATE.F1", stream("F1", "file", 2_000_000)),
            api("", "STREAM.CREATE.M1", stream("M1", "memory", 2_000_000)),
            api("", "STREAM.CREATE.F1", stream("F1", "file", -1)),
            api("", "STREAM.CREATE.M1", stream("M1", "memory", -1)),
            Step::Fill("", "f1.x", 100_000, 30),
            Step::Fill("", "m1.x", 100_000, 30),
            api("", "STREAM.PURGE.F1", json!({})),
            Step::Fill("", "f1.x", 100_000, 3),
            api("", "INFO", json!({})),
        ],
    )
    .await;
}

const BATCH_LIMITS: &str = r#"
jetstream { store_dir: "STORE_DIR" }
accounts {
  A: { jetstream: { max_file: 1M }, users: [{user: a, password: a}] }
}
"#;

/// Ours alone, with `conf`.
async fn ours_alone(conf: &str, steps: &[Step]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf_path = dir.path().join("server.conf");
    let text = conf.replace("STORE_DIR", &dir.path().join("js").display().to_string());
    std::fs::write(&conf_path, text).expect("write conf");
    let ours = ours(&conf_path).await;
    let out = run(&format!("nats://{}", ours.addr()), steps).await;
    ours.shutdown(Duration::from_secs(1)).await;
    out
}

/// Not side by side: nats-server 2.15.1 stores the first messages of such
/// a batch (as many as fit) and never answers the commit, which breaks
/// the batch's promise. Ours refuses the whole batch with the account's
/// error and stores none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_batch_that_would_pass_the_account_limit_is_refused_whole() {
    let out = ours_alone(
        BATCH_LIMITS,
        &[
            api(
                "a",
                "STREAM.CREATE.B",
                json!({"name": "B", "subjects": ["b.>"], "storage": "file", "allow_atomic": true}),
            ),
            Step::Batch("a", "b.x", 100_000, 4),
            Step::Batch("a", "b.x", 100_000, 8),
            api("a", &stream_info("B"), json!({})),
            Step::Batch("a", "b.x", 100_000, 5),
            api("a", &stream_info("B"), json!({})),
        ],
    )
    .await;
    assert_eq!(
        out,
        [
            "a STREAM.CREATE.B: ok",
            "a batch b.x: ok",
            "a batch b.x: error 400 10002 \"resource limits exceeded for account\"",
            "a STREAM.INFO.B: messages 4 bytes 400430",
            "a batch b.x: ok",
            "a STREAM.INFO.B: messages 9 bytes 900962",
        ]
    );
}

/// Usage and reservations are recounted from what a restarted server
/// finds on disk: a full server stays full, a reservation stays taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_reservations_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf_path = dir.path().join("server.conf");
    let text = SERVER_LIMITS.replace("STORE_DIR", &dir.path().join("js").display().to_string());
    std::fs::write(&conf_path, text).expect("write conf");

    let first = ours(&conf_path).await;
    let url = format!("nats://{}", first.addr());
    let before = run(
        &url,
        &[
            api("", "STREAM.CREATE.R", stream("R", "file", 400_000)),
            api("", "STREAM.CREATE.F", stream("F", "file", -1)),
            Step::Fill("", "f.x", 100_000, 30),
        ],
    )
    .await;
    assert_eq!(
        before[2],
        " fill f.x: 10 stored, then error 503 10023 \"insufficient resources\""
    );
    first.shutdown(Duration::from_secs(1)).await;

    let second = ours(&conf_path).await;
    let url = format!("nats://{}", second.addr());
    let after = run(
        &url,
        &[
            Step::Fill("", "f.x", 100_000, 5),
            // R's 400,000 bytes are still reserved: 700,000 more do not fit.
            api("", "STREAM.CREATE.T", stream("T", "file", 700_000)),
            api("", "STREAM.DELETE.R", json!({})),
            api("", "STREAM.CREATE.T", stream("T", "file", 700_000)),
        ],
    )
    .await;
    assert_eq!(
        after,
        [
            " fill f.x: 0 stored, then error 503 10023 \"insufficient resources\"",
            " STREAM.CREATE.T: error 500 10047 \"insufficient storage resources available\"",
            " STREAM.DELETE.R: ok",
            " STREAM.CREATE.T: ok",
        ]
    );
    second.shutdown(Duration::from_secs(1)).await;
}
