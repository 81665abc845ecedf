//! The `/jsz` monitoring document (nats-server's shape for the fields we
//! have), the JetStream part of `/healthz`, and Prometheus figures.

use serde_json::{Value, json};

use super::JetStream;
use super::SyncPolicy;
use super::stream::Stream;
use super::types::{now_nanos, rfc3339};

/// What `/jsz` should include (its query parameters).
#[derive(Debug, Clone, Copy, Default)]
pub struct JszOptions {
    /// `streams=true` (or `consumers=true`): per-stream details.
    pub streams: bool,
    /// `consumers=true`: per-consumer details.
    pub consumers: bool,
    /// `config=true`: stream and consumer configurations.
    pub config: bool,
}

fn stream_state(s: &Stream) -> Value {
    let st = s.state();
    let mut v = json!({
        "messages": st.msgs,
        "bytes": st.bytes,
        "first_seq": if st.msgs == 0 && st.last_seq == 0 { 0 } else { st.first_seq },
        "first_ts": rfc3339(st.first_ts),
        "last_seq": st.last_seq,
        "last_ts": rfc3339(st.last_ts),
        "consumer_count": s.consumer_count(),
    });
    if st.num_subjects > 0 {
        v["num_subjects"] = json!(st.num_subjects);
    }
    if st.num_deleted > 0 {
        v["num_deleted"] = json!(st.num_deleted);
    }
    v
}

impl JetStream {
    /// The `/jsz` document.
    pub fn jsz(&self, server_id: &str, opts: JszOptions) -> Value {
        let streams = self.all_streams();
        let (mem, file) = self.usage();
        let messages: u64 = streams.iter().map(|s| s.state().msgs).sum();
        let api = json!({
            "level": super::api::API_LEVEL,
            "total": self.api_stats.total.load(std::sync::atomic::Ordering::Relaxed),
            "errors": self.api_stats.errors.load(std::sync::atomic::Ordering::Relaxed),
        });
        let sync_interval = match self.config.sync {
            SyncPolicy::Always => 0,
            SyncPolicy::Interval(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        };
        let mut doc = json!({
            "server_id": server_id,
            "now": rfc3339(now_nanos()),
            "config": {
                "max_memory": self.config.max_memory,
                "max_storage": self.config.max_store,
                "store_dir": self.config.store_dir.join("jetstream").display().to_string(),
                "sync_interval": sync_interval,
                "sync_always": matches!(self.config.sync, SyncPolicy::Always),
            },
            "memory": mem,
            "storage": file,
            "reserved_memory": 0,
            "reserved_storage": 0,
            "accounts": 1,
            "ha_assets": 0,
            "api": api.clone(),
            "streams": streams.len(),
            "consumers": self.consumer_count(),
            "messages": messages,
            "bytes": mem + file,
        });
        let unhealthy: Vec<Value> = streams
            .iter()
            .flat_map(|s| {
                let poisoned = s.poisoned().map(|r| json!({"stream": s.name, "error": r}));
                let unreadable = s
                    .read_errors()
                    .into_iter()
                    .map(|(seq, e)| json!({"stream": s.name, "seq": seq, "error": e}));
                poisoned.into_iter().chain(unreadable)
            })
            .collect();
        if !unhealthy.is_empty() {
            doc["unhealthy"] = Value::Array(unhealthy);
        }
        if opts.streams || opts.consumers {
            let details: Vec<Value> = streams
                .iter()
                .map(|s| {
                    let mut d = json!({
                        "name": s.name,
                        "created": rfc3339(s.created),
                        "state": stream_state(s),
                    });
                    if opts.config {
                        d["config"] = json!(s.config());
                    }
                    // A mirror's or sources' lag and last contact, as in
                    // stream info (nats-server shows them here too).
                    if let Some((key, info)) = s.sourcing_info(s.js().as_deref()) {
                        d[key] = info;
                    }
                    let corrupt: Vec<Value> = s
                        .corrupt_records()
                        .into_iter()
                        .map(|c| {
                            json!({
                                "segment": c.segment,
                                "offset": c.offset,
                                "len": c.len,
                                "reason": c.reason,
                            })
                        })
                        .collect();
                    if !corrupt.is_empty() {
                        d["corrupt_records"] = Value::Array(corrupt);
                    }
                    if let Some(reason) = s.poisoned() {
                        d["poisoned"] = json!(reason);
                    }
                    let unreadable: Vec<Value> = s
                        .read_errors()
                        .into_iter()
                        .map(|(seq, error)| json!({"seq": seq, "error": error}))
                        .collect();
                    if !unreadable.is_empty() {
                        d["read_errors"] = Value::Array(unreadable);
                    }
                    if opts.consumers {
                        let cs: Vec<Value> = s
                            .consumers()
                            .iter()
                            .map(|c| {
                                let mut v = json!(c.info());
                                if !opts.config
                                    && let Value::Object(m) = &mut v
                                {
                                    m.remove("config");
                                }
                                v
                            })
                            .collect();
                        d["consumer_detail"] = Value::Array(cs);
                    }
                    d
                })
                .collect();
            doc["account_details"] = json!([{
                "name": "$G",
                "id": "$G",
                "memory": mem,
                "storage": file,
                "api": api,
                "stream_detail": details,
            }]);
        }
        doc
    }

    /// Problems that make JetStream unhealthy: poisoned stores, and
    /// messages consumers cannot read back.
    pub fn health_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for s in self.all_streams() {
            if let Some(r) = s.poisoned() {
                problems.push(format!("stream {} refuses writes: {r}", s.name));
            }
            for (seq, e) in s.read_errors() {
                problems.push(format!(
                    "stream {}: message {seq} (or the next one after it) cannot be read: {e}",
                    s.name
                ));
            }
        }
        problems
    }

    /// Prometheus text for JetStream.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let streams = self.all_streams();
        let gauge = |out: &mut String, name: &str, help: &str| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        };
        gauge(&mut out, "nats_jetstream_streams", "Streams.");
        out.push_str(&format!("nats_jetstream_streams {}\n", streams.len()));
        gauge(&mut out, "nats_jetstream_consumers", "Consumers.");
        out.push_str(&format!(
            "nats_jetstream_consumers {}\n",
            self.consumer_count()
        ));
        let (mem, file) = self.usage();
        gauge(
            &mut out,
            "nats_jetstream_memory_bytes",
            "Bytes in memory streams.",
        );
        out.push_str(&format!("nats_jetstream_memory_bytes {mem}\n"));
        gauge(
            &mut out,
            "nats_jetstream_storage_bytes",
            "Bytes in file streams.",
        );
        out.push_str(&format!("nats_jetstream_storage_bytes {file}\n"));
        let per_stream = [
            ("nats_jetstream_stream_messages", "Messages in the stream."),
            ("nats_jetstream_stream_bytes", "Bytes in the stream."),
            ("nats_jetstream_stream_first_seq", "First sequence."),
            ("nats_jetstream_stream_last_seq", "Last sequence."),
            (
                "nats_jetstream_stream_consumers",
                "Consumers of the stream.",
            ),
            (
                "nats_jetstream_stream_corrupt_records",
                "Damaged records skipped at open.",
            ),
            (
                "nats_jetstream_stream_poisoned",
                "1 when the store refuses writes after an I/O failure.",
            ),
        ];
        for (name, help) in per_stream {
            gauge(&mut out, name, help);
            for s in &streams {
                let st = s.state();
                let v = match name {
                    "nats_jetstream_stream_messages" => st.msgs,
                    "nats_jetstream_stream_bytes" => st.bytes,
                    "nats_jetstream_stream_first_seq" => st.first_seq,
                    "nats_jetstream_stream_last_seq" => st.last_seq,
                    "nats_jetstream_stream_consumers" => s.consumer_count() as u64,
                    "nats_jetstream_stream_corrupt_records" => s.corrupt_records().len() as u64,
                    _ => u64::from(s.poisoned().is_some()),
                };
                out.push_str(&format!("{name}{{stream=\"{}\"}} {v}\n", s.name));
            }
        }
        let per_consumer = [
            (
                "nats_jetstream_consumer_num_pending",
                "Messages left to deliver.",
            ),
            (
                "nats_jetstream_consumer_num_ack_pending",
                "Delivered, awaiting ack.",
            ),
            (
                "nats_jetstream_consumer_num_redelivered",
                "Pending messages delivered more than once.",
            ),
            (
                "nats_jetstream_consumer_delivered_stream_seq",
                "Last delivered stream sequence.",
            ),
            (
                "nats_jetstream_consumer_ack_floor_stream_seq",
                "Ack floor stream sequence.",
            ),
        ];
        let infos: Vec<_> = streams
            .iter()
            .flat_map(|s| s.consumers().into_iter().map(|c| c.info()))
            .collect();
        for (name, help) in per_consumer {
            gauge(&mut out, name, help);
            for i in &infos {
                let v = match name {
                    "nats_jetstream_consumer_num_pending" => i.num_pending,
                    "nats_jetstream_consumer_num_ack_pending" => i.num_ack_pending,
                    "nats_jetstream_consumer_num_redelivered" => i.num_redelivered,
                    "nats_jetstream_consumer_delivered_stream_seq" => i.delivered.stream_seq,
                    _ => i.ack_floor.stream_seq,
                };
                out.push_str(&format!(
                    "{name}{{stream=\"{}\",consumer=\"{}\"}} {v}\n",
                    i.stream_name, i.name
                ));
            }
        }
        out
    }
}
