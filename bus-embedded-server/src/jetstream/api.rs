//! `$JS.API.*` handlers: parse the request, act on streams and consumers,
//! answer with nats-server's JSON shapes and error codes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::headers::HeaderBuilder;
use super::store::{Purge, StoredMsg, nowait};
use super::stream::Stream;
use super::stream::consumer::Consumer;
use super::stream::priority;
use super::types::{
    AckPolicy, ConsumerConfig, DeliverPolicy, Retention, StreamConfig, StreamStateJson, now_nanos,
    rfc3339,
};
use super::{JetStream, lock, versioning, write};
use crate::subject;

const API_PREFIX: &str = "io.nats.jetstream.api.v1.";

/// Handles `$JS.API.<api>`; false when the subject is not an API we serve
/// (the publisher then gets no-responders, as from nats-server).
/// True for the requests that write files (stream and consumer create,
/// update, delete, purge, message delete, consumer pause and reset): they
/// are served on a blocking thread.
pub(crate) fn touches_disk(api: &str) -> bool {
    [
        "STREAM.CREATE.",
        "STREAM.UPDATE.",
        "STREAM.DELETE.",
        "STREAM.PURGE.",
        "STREAM.MSG.DELETE.",
        "CONSUMER.CREATE.",
        "CONSUMER.DURABLE.CREATE.",
        "CONSUMER.DELETE.",
        "CONSUMER.PAUSE.",
        "CONSUMER.RESET.",
    ]
    .iter()
    .any(|p| api.starts_with(p))
}

/// Requests that read a stored message (`STREAM.MSG.GET`, `DIRECT.GET`):
/// answered at once on the caller's thread when the page cache holds the
/// message, else on a blocking thread (see `store::nowait`).
pub(crate) fn reads_messages(api: &str) -> bool {
    api.starts_with("DIRECT.GET.") || api.starts_with("STREAM.MSG.GET.")
}

/// Answers `api` again on a blocking thread, where reads may wait on the
/// disk: its first try stopped at a read that would have (nothing was sent).
/// The level check already passed, so the headers are not needed again.
fn answer_where_reads_may_wait(
    js: &JetStream,
    api: &str,
    reply: Option<&str>,
    data: &[u8],
) -> bool {
    if let (Ok(runtime), Some(js)) = (tokio::runtime::Handle::try_current(), js.weak().upgrade()) {
        let (api, reply, data) = (api.to_owned(), reply.map(str::to_owned), data.to_vec());
        runtime.spawn_blocking(move || {
            let _may_wait = nowait::leave();
            handle(&js, &api, reply.as_deref(), b"", &data);
        });
        return true;
    }
    // No runtime to hand it to: this thread reads, waiting if it must.
    let _may_wait = nowait::leave();
    handle(js, api, reply, b"", data)
}

pub(crate) fn handle(
    js: &JetStream,
    api: &str,
    reply: Option<&str>,
    hdr: &[u8],
    data: &[u8],
) -> bool {
    if requires_higher_level(hdr) {
        // Refused before anything is looked at, as nats-server does:
        // requests answered with messages get a status instead.
        if let Some(reply) = reply
            && (api.starts_with("DIRECT.GET.") || api.starts_with("CONSUMER.MSG.NEXT."))
        {
            let exists = match api.split('.').collect::<Vec<_>>().as_slice() {
                ["DIRECT", "GET", stream, ..] => js.stream(stream).is_some(),
                ["CONSUMER", "MSG", "NEXT", stream, name] => {
                    js.stream(stream).and_then(|s| s.consumer(name)).is_some()
                }
                _ => false,
            };
            if !exists {
                return false;
            }
            let h = HeaderBuilder::status(412, "Required Api Level").build();
            js.send(reply, None, &h, b"");
            return true;
        }
        if let Some(reply) = reply
            && let Some(body) = error_reply(api, ApiError::required_api_level())
        {
            js.api_stats.total.fetch_add(1, Ordering::Relaxed);
            js.api_stats.errors.fetch_add(1, Ordering::Relaxed);
            js.send(reply, None, b"", body.as_bytes());
            return true;
        }
    }
    let tokens: Vec<&str> = api.split('.').collect();
    // DIRECT.GET is answered with messages, not JSON.
    if tokens.len() >= 3 && tokens[0] == "DIRECT" && tokens[1] == "GET" {
        return match super::direct::direct_get(js, &tokens[2..], reply, data) {
            super::direct::Outcome::NotServed => false,
            super::direct::Outcome::Answered => true,
            super::direct::Outcome::WouldBlock => answer_where_reads_may_wait(js, api, reply, data),
        };
    }
    let (kind, result) = match tokens.as_slice() {
        ["INFO"] => ("account_info_response", account_info(js)),
        ["STREAM", "CREATE", name] => ("stream_create_response", stream_create(js, name, data)),
        ["STREAM", "UPDATE", name] => ("stream_update_response", stream_update(js, name, data)),
        ["STREAM", "INFO", name] => ("stream_info_response", stream_info(js, name, data)),
        ["STREAM", "DELETE", name] => ("stream_delete_response", stream_delete(js, name)),
        ["STREAM", "PURGE", name] => ("stream_purge_response", stream_purge(js, name, data)),
        ["STREAM", "NAMES"] => ("stream_names_response", stream_names(js, data, false)),
        ["STREAM", "LIST"] => ("stream_list_response", stream_names(js, data, true)),
        ["STREAM", "MSG", "GET", name] => ("stream_msg_get_response", msg_get(js, name, data)),
        ["STREAM", "MSG", "DELETE", name] => {
            ("stream_msg_delete_response", msg_delete(js, name, data))
        }
        ["CONSUMER", "CREATE", stream] => (
            "consumer_create_response",
            consumer_create(js, stream, None, None, data, false),
        ),
        ["CONSUMER", "CREATE", stream, name] => (
            "consumer_create_response",
            consumer_create(js, stream, Some(name), None, data, false),
        ),
        ["CONSUMER", "CREATE", stream, name, filter @ ..] => (
            "consumer_create_response",
            consumer_create(js, stream, Some(name), Some(filter.join(".")), data, false),
        ),
        ["CONSUMER", "DURABLE", "CREATE", stream, name] => (
            "consumer_create_response",
            consumer_create(js, stream, Some(name), None, data, true),
        ),
        ["CONSUMER", "INFO", stream, name] => {
            ("consumer_info_response", consumer_info(js, stream, name))
        }
        ["CONSUMER", "DELETE", stream, name] => (
            "consumer_delete_response",
            consumer_delete(js, stream, name),
        ),
        ["CONSUMER", "NAMES", stream] => (
            "consumer_names_response",
            consumer_names(js, stream, data, false),
        ),
        ["CONSUMER", "LIST", stream] => (
            "consumer_list_response",
            consumer_names(js, stream, data, true),
        ),
        ["CONSUMER", "MSG", "NEXT", stream, name] => {
            // nats-server listens per consumer: a pull on a missing one
            // gets no responders.
            let Some(c) = js.stream(stream).and_then(|s| s.consumer(name)) else {
                return false;
            };
            js.api_stats.total.fetch_add(1, Ordering::Relaxed);
            if let Some(reply) = reply {
                c.pull(js, reply, data);
            }
            return true;
        }
        // Newer consumer calls this server cannot honour: refused, so a
        // client is told rather than left waiting.
        ["CONSUMER", "PAUSE", stream, name] => (
            "consumer_pause_response",
            // Its errors carry the unpaused fields, as nats-server's do.
            consumer_pause(js, stream, name, data).map_err(|(e, _)| {
                (
                    e,
                    json!({"paused": false, "pause_until": "0001-01-01T00:00:00Z"}),
                )
            }),
        ),
        ["CONSUMER", "RESET", stream, name] => {
            // nats-server leaves a reset of a consumer it does not have
            // unanswered (no error, and no no-responders either).
            if js.stream(stream).and_then(|s| s.consumer(name)).is_none() {
                return true;
            }
            (
                "consumer_reset_response",
                consumer_reset(js, stream, name, data),
            )
        }
        ["CONSUMER", "UNPIN", stream, name] => (
            "consumer_unpin_response",
            consumer_unpin(js, stream, name, data),
        ),
        // nats-server answers nothing to an unknown API subject (its
        // `$JS.API.>` subscription takes it).
        _ => return true,
    };
    if let Err((e, _)) = &result
        && e.is_read_would_block()
    {
        return answer_where_reads_may_wait(js, api, reply, data);
    }
    // Requests without a reply are acted on, unanswered (as nats-server does).
    let Some(reply) = reply else {
        return true;
    };
    js.api_stats.total.fetch_add(1, Ordering::Relaxed);
    let changed_store = result.is_ok();
    let mut body = match result {
        Ok(Value::Object(map)) => map,
        Ok(_) => serde_json::Map::new(),
        Err((err, extra)) => {
            js.api_stats.errors.fetch_add(1, Ordering::Relaxed);
            let mut map = serde_json::Map::new();
            map.insert("error".into(), json!(err));
            if let Value::Object(extra) = extra {
                map.extend(extra);
            }
            map
        }
    };
    let mut out = serde_json::Map::new();
    out.insert("type".into(), Value::String(format!("{API_PREFIX}{kind}")));
    out.append(&mut body);
    let bytes = Value::Object(out).to_string();
    // A message delete or a purge is confirmed once it is durable, like a
    // publish (the stream's flusher sends the reply).
    if changed_store
        && let ["STREAM", "PURGE", name] | ["STREAM", "MSG", "DELETE", name] = tokens.as_slice()
        && let Some(stream) = js.stream(name)
    {
        stream.reply_when_durable(
            js,
            reply,
            bytes.into_bytes(),
            &format!("{API_PREFIX}{kind}"),
        );
        return true;
    }
    js.send(reply, None, b"", bytes.as_bytes());
    true
}

/// The answer nats-server gives to `$JS.API.<api>` in an account without
/// JetStream (while the server runs it): 503 / 10039 in the response type
/// of that API. `None` for subjects that are not a known API.
pub fn not_enabled_for_account(api: &str) -> Option<String> {
    error_reply(api, ApiError::not_enabled_for_account())
}

pub use super::headers::API_LEVEL;
use super::headers::requires_higher_level;

/// The error answer to `$JS.API.<api>` in that API's response type, with
/// the other fields nats-server's responses carry (zero). `None` for
/// subjects that are not a known API.
fn error_reply(api: &str, error: ApiError) -> Option<String> {
    let tokens: Vec<&str> = api.split('.').collect();
    let kind = match tokens.as_slice() {
        ["INFO"] => "account_info_response",
        ["STREAM", "CREATE", _] => "stream_create_response",
        ["STREAM", "UPDATE", _] => "stream_update_response",
        ["STREAM", "INFO", _] => "stream_info_response",
        ["STREAM", "DELETE", _] => "stream_delete_response",
        ["STREAM", "PURGE", _] => "stream_purge_response",
        ["STREAM", "NAMES"] => "stream_names_response",
        ["STREAM", "LIST"] => "stream_list_response",
        ["STREAM", "MSG", "GET", _] => "stream_msg_get_response",
        ["STREAM", "MSG", "DELETE", _] => "stream_msg_delete_response",
        ["CONSUMER", "CREATE", ..] | ["CONSUMER", "DURABLE", "CREATE", _, _] => {
            "consumer_create_response"
        }
        ["CONSUMER", "INFO", _, _] => "consumer_info_response",
        ["CONSUMER", "DELETE", _, _] => "consumer_delete_response",
        ["CONSUMER", "NAMES", _] => "consumer_names_response",
        ["CONSUMER", "LIST", _] => "consumer_list_response",
        ["CONSUMER", "PAUSE", _, _] => "consumer_pause_response",
        ["CONSUMER", "UNPIN", _, _] => "consumer_unpin_response",
        ["STREAM", "SNAPSHOT", _] => "stream_snapshot_response",
        _ => return None,
    };
    let mut out = serde_json::Map::new();
    out.insert("type".into(), Value::String(format!("{API_PREFIX}{kind}")));
    out.insert("error".into(), json!(error));
    // nats-server's responses carry their other fields, zero.
    let paged = |out: &mut serde_json::Map<String, Value>| {
        out.insert("total".into(), json!(0));
        out.insert("offset".into(), json!(0));
        out.insert("limit".into(), json!(0));
    };
    match kind {
        "stream_info_response" => paged(&mut out),
        "stream_names_response" => {
            paged(&mut out);
            out.insert("streams".into(), Value::Null);
        }
        "stream_list_response" => {
            paged(&mut out);
            out.insert("streams".into(), json!([]));
        }
        "consumer_names_response" | "consumer_list_response" => {
            paged(&mut out);
            out.insert("consumers".into(), json!([]));
        }
        "stream_purge_response" => {
            out.insert("purged".into(), json!(0));
        }
        "consumer_pause_response" => {
            out.insert("paused".into(), json!(false));
            out.insert("pause_until".into(), json!("0001-01-01T00:00:00Z"));
        }
        _ => {}
    }
    Some(Value::Object(out).to_string())
}

type ApiResult = Result<Value, (ApiError, Value)>;

fn err(e: ApiError) -> (ApiError, Value) {
    (e, Value::Null)
}

fn parse<T: for<'de> Deserialize<'de> + Default>(data: &[u8]) -> Result<T, (ApiError, Value)> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // async-nats sends `null` for "no options".
    serde_json::from_slice::<Option<T>>(data)
        .map(Option::unwrap_or_default)
        .map_err(|e| err(ApiError::invalid_json(e)))
}

fn account_info(js: &JetStream) -> ApiResult {
    let (mem, file) = js.resources.usage();
    let (reserved_memory, reserved_storage) = reserved(js, None);
    // The account's own limits (nats-server shows -1 for an account
    // without any, even when the server has limits of its own).
    let l = &js.resources.limits;
    Ok(json!({
        "memory": mem,
        "storage": file,
        "reserved_memory": reserved_memory,
        "reserved_storage": reserved_storage,
        "streams": js.all_streams().len(),
        "consumers": js.consumer_count(),
        "limits": {
            "max_memory": l.max_memory,
            "max_storage": l.max_store,
            "max_streams": l.max_streams,
            "max_consumers": l.max_consumers,
            "max_ack_pending": l.max_ack_pending,
            "memory_max_stream_bytes": l.memory_max_stream_bytes,
            "storage_max_stream_bytes": l.store_max_stream_bytes,
            "max_bytes_required": l.max_bytes_required,
        },
        "api": {
            "level": API_LEVEL,
            "total": js.api_stats.total.load(Ordering::Relaxed),
            "errors": js.api_stats.errors.load(Ordering::Relaxed),
        },
    }))
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid_config("stream name is required"));
    }
    if name.contains(['/', '\\']) {
        return Err(ApiError::stream_name_path_separators());
    }
    if name.contains(['.', '*', '>']) || name.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid_config("invalid stream name"));
    }
    if name.len() > 255 {
        return Err(ApiError::invalid_config(
            "stream name is too long, maximum allowed is 255",
        ));
    }
    Ok(())
}

/// The bytes the account's streams reserve (memory, file): the sum of
/// their `max_bytes`, leaving out the stream named `except`.
fn reserved(js: &JetStream, except: Option<&str>) -> (u64, u64) {
    let (mut mem, mut file) = (0u64, 0u64);
    for s in js.all_streams() {
        if Some(s.name.as_str()) == except {
            continue;
        }
        let cfg = s.config();
        let bytes = u64::try_from(cfg.max_bytes).unwrap_or(0);
        match cfg.storage {
            super::types::StorageType::Memory => mem = mem.saturating_add(bytes),
            super::types::StorageType::File => file = file.saturating_add(bytes),
        }
    }
    (mem, file)
}

/// `ttl_asked`: whether the request itself set `allow_msg_ttl` (before
/// delete markers turned it on).
fn check_stream_config(
    js: &JetStream,
    cfg: &StreamConfig,
    existing: Option<&str>,
    ttl_asked: bool,
) -> Result<(), ApiError> {
    valid_name(&cfg.name)?;
    if cfg.num_replicas < 0 {
        return Err(ApiError::replicas_negative());
    }
    super::stream::persist::check_config(cfg)?;
    if cfg.num_replicas > 1 {
        return Err(ApiError::replicas_not_supported());
    }
    if cfg.discard_new_per_subject {
        if cfg.discard != super::types::DiscardPolicy::New {
            return Err(ApiError::invalid_config(
                "discard new per subject requires discard new policy to be set",
            ));
        }
        if cfg.max_msgs_per_subject <= 0 {
            return Err(ApiError::invalid_config(
                "discard new per subject requires max msgs per subject > 0",
            ));
        }
    }
    super::stream::sourcing::config::check(cfg, &|name| js.stream(name).map(|s| s.config_ref()))?;
    super::stream::schedule::check_config(cfg)?;
    if cfg.max_age < 0 {
        return Err(ApiError::invalid_config("max age can not be negative"));
    }
    if cfg.duplicate_window < 0 {
        return Err(ApiError::invalid_config(
            "duplicates window can not be negative",
        ));
    }
    if cfg.allow_rollup_hdrs && cfg.deny_purge {
        return Err(ApiError::invalid_config(
            "roll-ups require the purge permission",
        ));
    }
    if cfg.max_age > 0 && cfg.duplicate_window > cfg.max_age {
        return Err(ApiError::invalid_config(
            "duplicates window can not be larger then max age",
        ));
    }
    super::stream::features::check_config(cfg, ttl_asked)?;
    super::stream::schedule::check_config(cfg)?;
    // Overlap checks in O(wildcards x subjects): literals only collide with
    // an equal literal (a hash lookup), so thousands of subjects stay cheap.
    let mut seen = SubjectSet::default();
    for s in &cfg.subjects {
        if !subject::valid_filter(s) {
            return Err(ApiError::invalid_config("invalid subject"));
        }
        if s == ">" {
            return Err(ApiError::invalid_config(
                "capturing all subjects requires no-ack to be true",
            ));
        }
        // nats-server refuses anything that could capture `$JS.` subjects.
        if subject::overlaps(s, "$JS.>") {
            return Err(ApiError::invalid_config(
                "subjects that overlap with jetstream api require no-ack to be true",
            ));
        }
        if let Some(o) = seen.overlap(s) {
            return Err(ApiError::invalid_config(format!(
                "subject {o:?} overlaps with {s:?}"
            )));
        }
        seen.insert(s);
    }
    super::stream::transform::check_config(cfg)?;
    for other in js.all_streams() {
        if Some(other.name.as_str()) == existing || other.name == cfg.name {
            continue;
        }
        let theirs = other.config().subjects;
        let mut set = SubjectSet::default();
        for t in &theirs {
            set.insert(t);
        }
        if cfg.subjects.iter().any(|s| set.overlap(s).is_some()) {
            return Err(ApiError::subjects_overlap());
        }
    }
    js.resources.check_stream_config(cfg)
}

/// Subjects and filters, for overlap checks that stay linear in the number
/// of literal subjects.
#[derive(Default)]
struct SubjectSet<'a> {
    literals: std::collections::HashSet<&'a str>,
    wildcards: Vec<&'a str>,
}

impl<'a> SubjectSet<'a> {
    fn insert(&mut self, s: &'a str) {
        if subject::has_wildcards(s) {
            self.wildcards.push(s);
        } else {
            self.literals.insert(s);
        }
    }

    /// A member some subject matching `s` would also match.
    fn overlap(&self, s: &str) -> Option<&'a str> {
        let wild = subject::has_wildcards(s);
        if !wild {
            if let Some(l) = self.literals.get(s) {
                return Some(l);
            }
        } else if let Some(l) = self.literals.iter().find(|l| subject::overlaps(l, s)) {
            return Some(l);
        }
        self.wildcards
            .iter()
            .find(|w| subject::overlaps(w, s))
            .copied()
    }
}

/// Subjects per page of STREAM.INFO (nats-server's limit).
const SUBJECTS_PAGE: usize = 100_000;

fn stream_info_value(stream: &Stream, subjects_filter: Option<&str>, deleted: bool) -> Value {
    stream_info_page(stream, subjects_filter, 0, deleted)
}

fn stream_info_page(
    stream: &Stream,
    subjects_filter: Option<&str>,
    offset: usize,
    deleted: bool,
) -> Value {
    let cfg = stream.config();
    let st = stream.state();
    let mut total = 0;
    let subjects = subjects_filter.filter(|f| !f.is_empty()).map(|f| {
        let all = stream.subjects(f);
        total = all.len();
        all.into_iter()
            .skip(offset)
            .take(SUBJECTS_PAGE)
            .collect::<BTreeMap<String, u64>>()
    });
    // No matching subject: nats-server shows neither subjects nor paging.
    let subjects = subjects.filter(|m| !m.is_empty());
    let state = StreamStateJson {
        messages: st.msgs,
        bytes: st.bytes,
        first_seq: if st.msgs == 0 && st.last_seq == 0 {
            0
        } else {
            st.first_seq
        },
        first_ts: rfc3339(st.first_ts),
        last_seq: st.last_seq,
        last_ts: rfc3339(st.last_ts),
        subjects,
        num_subjects: st.num_subjects,
        deleted: deleted.then(|| stream.deleted()).filter(|d| !d.is_empty()),
        num_deleted: st.num_deleted,
        consumer_count: stream.consumer_count() as u64,
    };
    let mut v = json!({
        "config": cfg,
        "created": rfc3339(stream.created),
        "state": state,
        "ts": rfc3339(now_nanos()),
    });
    if let Some((key, info)) = stream.sourcing_info(stream.js().as_deref())
        && let Value::Object(m) = &mut v
    {
        m.insert(key.into(), info);
    }
    if total > 0
        && let Value::Object(m) = &mut v
    {
        m.insert("total".into(), json!(total));
        m.insert("offset".into(), json!(offset));
        m.insert("limit".into(), json!(SUBJECTS_PAGE));
    }
    v
}

fn stream_create(js: &JetStream, name: &str, data: &[u8]) -> ApiResult {
    // An empty body or `null` is an empty config: its (empty) name does not
    // match the subject (nats-server does not take the name from the subject).
    let mut cfg: StreamConfig = if data.trim_ascii() == b"null" {
        StreamConfig::default()
    } else {
        parse(data)?
    };
    if cfg.name != name {
        return Err(err(ApiError::stream_mismatch()));
    }
    let ttl_asked = cfg.allow_msg_ttl;
    cfg.normalize();
    mirror_direct_from_origin(js, &mut cfg);
    // Before the comparison: a request's own `_nats.*` keys do not make
    // it differ (nats-server overwrites them too).
    versioning::stamp_stream(&mut cfg);
    let _admin = lock(&js.admin);
    if let Some(existing) = js.stream(name) {
        let stored = existing.config();
        let mut asked = cfg.clone();
        versioning::adopt_stored_level(&mut asked.metadata, stored.metadata.as_ref());
        if stored == asked {
            let mut v = stream_info_value(&existing, None, false);
            versioning::show_server_keys(&mut v);
            if let Value::Object(m) = &mut v {
                m.insert("did_create".into(), json!(true));
            }
            return Ok(v);
        }
        return Err(err(ApiError::stream_name_exist()));
    }
    check_stream_config(js, &cfg, None, ttl_asked).map_err(err)?;
    super::stream::sourcing::config::check_at_create(&cfg).map_err(err)?;
    js.resources
        .reserve(&cfg, None, js.all_streams().len(), reserved(js, None))
        .map_err(err)?;
    let stream = match Stream::create(js, cfg.clone()) {
        Ok(s) => s,
        Err(e) => {
            js.resources.release(&cfg);
            return Err(err(e));
        }
    };
    write(&js.streams).insert(name.to_owned(), Arc::clone(&stream));
    let sourcing = stream.install_sourcing();
    let mut v = stream_info_value(&stream, None, false);
    versioning::show_server_keys(&mut v);
    if let Value::Object(m) = &mut v {
        m.insert("did_create".into(), json!(true));
    }
    // Sourcing starts after the answer is built: like nats-server's, it
    // shows a mirror or source not yet in contact.
    if let Some(s) = sourcing {
        s.spawn(&stream);
    }
    Ok(v)
}

/// The stream `name` of this account, created from the JSON `config`
/// when missing: for the server's own users (the MQTT listener's
/// `$MQTT_*` streams), which act with no client's permissions. An
/// existing stream is used as it is (as nats-server does).
pub(crate) fn ensure_stream(
    js: &JetStream,
    name: &str,
    config: &[u8],
) -> Result<Arc<Stream>, ApiError> {
    if let Some(s) = js.stream(name) {
        return Ok(s);
    }
    match stream_create(js, name, config) {
        Ok(_) => js
            .stream(name)
            .ok_or_else(|| ApiError::invalid_config("stream vanished after its creation")),
        // Created meanwhile by someone else: theirs is used.
        Err((e, _)) => js.stream(name).ok_or(e),
    }
}

/// Creates (or updates to `config`) the consumer `name` of `stream`, for
/// the server's own users (the MQTT listener): `config` is the JSON of a
/// consumer configuration.
pub(crate) fn ensure_consumer(
    js: &JetStream,
    stream: &str,
    name: &str,
    config: &[u8],
) -> Result<(), ApiError> {
    let mut req = b"{\"stream_name\":".to_vec();
    req.extend_from_slice(json!(stream).to_string().as_bytes());
    req.extend_from_slice(b",\"config\":");
    req.extend_from_slice(config);
    req.push(b'}');
    consumer_create(js, stream, Some(name), None, &req, false)
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// Deletes the consumer `name` of `stream` (the server's own, as
/// [`ensure_consumer`]); a missing one is not an error.
pub(crate) fn remove_consumer(js: &JetStream, stream: &str, name: &str) -> Result<(), ApiError> {
    if js.stream(stream).and_then(|s| s.consumer(name)).is_none() {
        return Ok(());
    }
    consumer_delete(js, stream, name)
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// A mirror of a stream of this account answers direct gets as its origin
/// does: nats-server sets `mirror_direct` from the origin's `allow_direct`.
fn mirror_direct_from_origin(js: &JetStream, cfg: &mut StreamConfig) {
    if let Some(m) = &cfg.mirror
        && m.external.is_none()
        && let Some(origin) = js.stream(&m.name)
    {
        cfg.mirror_direct = origin.config_ref().allow_direct;
    }
}

/// Parses a request whose empty body is a bad request (10003), as
/// nats-server answers.
fn parse_typed<T: for<'de> Deserialize<'de>>(data: &[u8]) -> Result<T, (ApiError, Value)> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(err(ApiError::bad_request()));
    }
    serde_json::from_slice(data).map_err(|e| err(ApiError::invalid_json(e)))
}

fn stream_update(js: &JetStream, name: &str, data: &[u8]) -> ApiResult {
    let mut cfg: StreamConfig = parse(data)?;
    if cfg.name.is_empty() {
        return Err(err(ApiError::invalid_config(
            "stream name is required and can not contain '.', '*', '>', '\\', '/'",
        )));
    }
    if cfg.name != name {
        return Err(err(ApiError::stream_mismatch()));
    }
    let ttl_asked = cfg.allow_msg_ttl;
    cfg.normalize();
    mirror_direct_from_origin(js, &mut cfg);
    let _admin = lock(&js.admin);
    let stream = js
        .stream(name)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    let old = stream.config();
    if cfg.num_replicas > 1 {
        return Err(err(ApiError::replicas_not_supported()));
    }
    if old.storage != cfg.storage {
        return Err(err(ApiError::invalid_config(
            "stream configuration update can not change storage type",
        )));
    }
    // nats-server refuses (10052) only changes to or from work-queue; a
    // limits <-> interest change is not supported here yet and refused too.
    if old.retention != cfg.retention {
        let text = if old.retention == Retention::WorkQueue || cfg.retention == Retention::WorkQueue
        {
            "stream configuration update can not change retention policy to/from workqueue"
        } else {
            "stream configuration update can not change retention policy"
        };
        return Err(err(ApiError::invalid_config(text)));
    }
    if old.sealed && !cfg.sealed {
        return Err(err(ApiError::invalid_config(
            "stream configuration update can not unseal a sealed stream",
        )));
    }
    if old.deny_delete && !cfg.deny_delete {
        return Err(err(ApiError::invalid_config(
            "stream configuration update can not cancel deny message deletes",
        )));
    }
    if old.deny_purge && !cfg.deny_purge {
        return Err(err(ApiError::invalid_config(
            "stream configuration update can not cancel deny purge",
        )));
    }
    super::stream::persist::check_update(&old, &cfg).map_err(err)?;
    if cfg.sealed {
        // As nats-server: a sealed stream keeps everything and takes
        // nothing more.
        cfg.max_age = 0;
        cfg.discard = super::types::DiscardPolicy::New;
        cfg.deny_delete = true;
        cfg.deny_purge = true;
        cfg.allow_rollup_hdrs = false;
    }
    super::stream::features::check_update(&old, &cfg).map_err(err)?;
    super::stream::schedule::check_update(&old, &cfg).map_err(err)?;
    // After the immutable fields, as nats-server orders its checks.
    check_stream_config(js, &cfg, Some(name), ttl_asked).map_err(err)?;
    if cfg.mirror.is_some() && old.mirror != cfg.mirror {
        return Err(err(ApiError::mirror_not_updatable()));
    }
    // As nats-server 2.15.1: an update's empty republish destination, left
    // alone by the checks, then becomes `>` (the tokens after the source's
    // literal prefix).
    if let Some(rp) = &mut cfg.republish
        && rp.dest.is_empty()
    {
        rp.dest = ">".to_owned();
    }
    // New consumer limits must hold for the consumers there already.
    let limits = super::limits::StreamConsumerLimits::of(&cfg);
    let violators: Vec<String> = stream
        .consumers()
        .iter()
        .filter(|c| !limits.allow(&c.config()))
        .map(|c| c.name.clone())
        .collect();
    if !violators.is_empty() {
        return Err(err(ApiError::update_failed(format!(
            "change to limits violates consumers: {}",
            violators.join(", ")
        ))));
    }
    versioning::stamp_stream(&mut cfg);
    js.resources
        .reserve(&cfg, Some(&old), 0, reserved(js, Some(name)))
        .map_err(err)?;
    if let Err(e) = stream.update_config(cfg.clone()) {
        // Back to the old reservation.
        js.resources.release(&cfg);
        js.resources.restore(&old);
        return Err(err(e));
    }
    let mut v = stream_info_value(&stream, None, false);
    versioning::show_server_keys(&mut v);
    Ok(v)
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct InfoRequest {
    deleted_details: bool,
    subjects_filter: Option<String>,
    offset: usize,
}

fn stream_info(js: &JetStream, name: &str, data: &[u8]) -> ApiResult {
    let paging = json!({"total": 0, "offset": 0, "limit": 0});
    let req: InfoRequest = parse(data).map_err(|(e, _)| (e, paging.clone()))?;
    let stream = js
        .stream(name)
        .ok_or_else(|| (ApiError::stream_not_found(), paging.clone()))?;
    let mut v = stream_info_page(
        &stream,
        req.subjects_filter.as_deref(),
        req.offset,
        req.deleted_details,
    );
    versioning::show_server_keys(&mut v);
    if let Value::Object(m) = &mut v
        && !m.contains_key("total")
    {
        m.insert("total".into(), json!(0));
        m.insert("offset".into(), json!(0));
        m.insert("limit".into(), json!(0));
    }
    Ok(v)
}

fn stream_delete(js: &JetStream, name: &str) -> ApiResult {
    let _admin = lock(&js.admin);
    let stream = js
        .stream(name)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    write(&js.streams).remove(name);
    js.resources.release(&stream.config());
    stream.destroy().map_err(err)?;
    Ok(json!({"success": true}))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct PurgeRequest {
    filter: Option<String>,
    seq: Option<u64>,
    keep: Option<u64>,
}

fn stream_purge(js: &JetStream, name: &str, data: &[u8]) -> ApiResult {
    stream_purge_inner(js, name, data).map_err(|(e, _)| (e, json!({"purged": 0})))
}

fn stream_purge_inner(js: &JetStream, name: &str, data: &[u8]) -> ApiResult {
    let stream = js
        .stream(name)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    let req: PurgeRequest = parse(data)?;
    let cfg = stream.config();
    if cfg.deny_purge {
        return Err(err(ApiError::purge_failed("stream purge not permitted")));
    }
    if cfg.sealed {
        return Err(err(ApiError::stream_sealed()));
    }
    if req.seq.is_some() && req.keep.is_some() {
        return Err(err(ApiError::bad_request()));
    }
    let purged = stream
        .purge(&Purge {
            filter: req.filter.filter(|f| !f.is_empty()),
            seq: req.seq.filter(|s| *s > 0),
            keep: req.keep.filter(|k| *k > 0),
        })
        .map_err(err)?;
    Ok(json!({"success": true, "purged": purged}))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ListRequest {
    offset: i64,
    subject: Option<String>,
}

/// Error extras of paged responses (nats-server always sends the paging
/// fields, and a null or empty list).
fn paged_error(e: (ApiError, Value), key: &str, items: Value) -> (ApiError, Value) {
    (
        e.0,
        json!({"total": 0, "offset": 0, "limit": 0, key: items}),
    )
}

fn stream_names(js: &JetStream, data: &[u8], list: bool) -> ApiResult {
    let req: ListRequest = parse(data).map_err(|e| paged_error(e, "streams", Value::Null))?;
    let limit = if list { 256 } else { 1024 };
    let streams: Vec<Arc<Stream>> = js
        .all_streams()
        .into_iter()
        .filter(|s| match req.subject.as_deref().filter(|f| !f.is_empty()) {
            Some(f) => s.config().subjects.iter().any(|x| subject::overlaps(x, f)),
            None => true,
        })
        .collect();
    let total = streams.len();
    let offset = usize::try_from(req.offset).unwrap_or(0).min(total);
    let page: Vec<&Arc<Stream>> = streams.iter().skip(offset).take(limit).collect();
    let items: Vec<Value> = if list {
        page.iter()
            .map(|s| stream_info_value(s, None, false))
            .collect()
    } else {
        page.iter().map(|s| json!(s.name)).collect()
    };
    Ok(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        // Go's nil slice: an empty page of names is null.
        "streams": if items.is_empty() && !list { Value::Null } else { json!(items) },
    }))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct MsgGetRequest {
    seq: Option<u64>,
    last_by_subj: Option<String>,
    next_by_subj: Option<String>,
}

fn lookup(stream: &Stream, req: &MsgGetRequest) -> Result<Option<StoredMsg>, ApiError> {
    match (
        req.seq,
        req.last_by_subj.as_deref(),
        req.next_by_subj.as_deref(),
    ) {
        (Some(seq), None, None) if seq > 0 => stream.get_msg(seq),
        (None, Some(subj), None) if !subj.is_empty() => stream.last_by_subject(subj),
        (seq, None, Some(subj)) if !subj.is_empty() => {
            stream.next_by_subject(subj, seq.unwrap_or(0).max(1))
        }
        _ => Err(ApiError::bad_request()),
    }
}

fn msg_get(js: &JetStream, name: &str, data: &[u8]) -> ApiResult {
    let stream = js
        .stream(name)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    let req: MsgGetRequest = parse_typed(data)?;
    let msg = lookup(&stream, &req)
        .map_err(err)?
        .ok_or_else(|| err(ApiError::no_message_found()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut m = serde_json::Map::new();
    m.insert("subject".into(), json!(msg.subject.as_ref()));
    m.insert("seq".into(), json!(msg.seq));
    if !msg.hdr.is_empty() {
        m.insert("hdrs".into(), json!(b64.encode(&msg.hdr)));
    }
    if !msg.data.is_empty() {
        m.insert("data".into(), json!(b64.encode(&msg.data)));
    }
    m.insert("time".into(), json!(rfc3339(msg.ts)));
    Ok(json!({"message": Value::Object(m)}))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct MsgDeleteRequest {
    seq: u64,
    no_erase: bool,
}

fn msg_delete(js: &JetStream, name: &str, data: &[u8]) -> ApiResult {
    let stream = js
        .stream(name)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    let req: MsgDeleteRequest = parse_typed(data)?;
    let cfg = stream.config();
    if cfg.deny_delete {
        return Err(err(ApiError::msg_delete_failed(
            "message delete not permitted",
        )));
    }
    if cfg.sealed {
        return Err(err(ApiError::stream_sealed()));
    }
    if req.seq > stream.state().last_seq {
        return Err(err(ApiError::msg_delete_failed("stream store EOF")));
    }
    if req.seq == 0 || !stream.delete_msg(req.seq, !req.no_erase).map_err(err)? {
        return Err(err(ApiError::msg_delete_failed("no message found")));
    }
    Ok(json!({"success": true}))
}

#[derive(Default, Deserialize)]
struct CreateConsumerRequest {
    #[serde(default)]
    stream_name: String,
    config: Option<ConsumerConfig>,
    #[serde(default)]
    action: String,
}

fn valid_consumer_name(name: &str) -> Result<(), ApiError> {
    if name.contains(['/', '\\']) {
        return Err(ApiError::consumer_name_path_separators());
    }
    if name.is_empty() || name.contains(['.', '*', '>']) || name.chars().any(char::is_whitespace) {
        return Err(ApiError::bad_durable_name());
    }
    if name.len() > 255 {
        return Err(ApiError::consumer_name_too_long(255));
    }
    Ok(())
}

fn consumer_create(
    js: &JetStream,
    stream_name: &str,
    subject_name: Option<&str>,
    subject_filter: Option<String>,
    data: &[u8],
    legacy_durable: bool,
) -> ApiResult {
    // An empty body is an empty request (its stream name then mismatches).
    let req: CreateConsumerRequest = parse(data)?;
    if !matches!(req.action.as_str(), "" | "create" | "update") {
        return Err(err(ApiError::invalid_json(format!(
            "unknown consumer action {:?}",
            req.action
        ))));
    }
    // nats-server requires the body's stream_name (empty does not match).
    if req.stream_name != stream_name {
        return Err(err(ApiError::stream_mismatch()));
    }
    let stream = js
        .stream(stream_name)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    // No config: nats-server creates a consumer with the defaults.
    let mut cfg = req.config.unwrap_or_default();
    // A durable name wins over `name` (nats-server names the consumer
    // after the durable when both are given).
    if let Some(d) = cfg.durable_name.clone().filter(|d| !d.is_empty()) {
        cfg.name = Some(d);
    }
    if legacy_durable {
        match cfg.durable_name.as_deref() {
            None | Some("") => return Err(err(ApiError::durable_name_not_set())),
            Some(d) if Some(d) != subject_name => {
                return Err(err(ApiError::durable_name_not_match_subject()));
            }
            _ => {}
        }
    }
    if let Some(sn) = subject_name {
        let body_name = cfg
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| cfg.durable_name.clone().filter(|n| !n.is_empty()));
        match body_name {
            Some(b) if b != sn => return Err(err(ApiError::durable_name_not_match_subject())),
            _ => {}
        }
        if cfg.name.as_deref().is_none_or(str::is_empty) {
            cfg.name = Some(sn.to_owned());
        }
    }
    if let Some(f) = &subject_filter {
        if !cfg.filter_subjects.is_empty() {
            return Err(err(ApiError::multiple_filters_not_allowed()));
        }
        if cfg.filter_subject != *f {
            return Err(err(ApiError::filter_subject_mismatch()));
        }
        cfg.filter_subject = f.clone();
    }
    if subject_name.is_none() && cfg.durable_name.as_deref().is_some_and(|d| !d.is_empty()) {
        return Err(err(ApiError::ephemeral_with_durable()));
    }
    let durable = cfg.durable_name.as_deref().is_some_and(|d| !d.is_empty());
    let name = cfg
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| cfg.durable_name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(ephemeral_name);
    valid_consumer_name(&name).map_err(err)?;
    if durable && cfg.name.is_none() {
        cfg.name = Some(name.clone());
    }
    check_consumer_config(&stream, &mut cfg, durable).map_err(err)?;
    // The stream's consumer_limits and the account's max_ack_pending:
    // defaults, and ceilings.
    js.resources
        .apply_consumer_limits(
            &super::limits::StreamConsumerLimits::of(&stream.config()),
            &mut cfg,
        )
        .map_err(err)?;
    cfg.normalize(durable);
    versioning::stamp_consumer(&mut cfg);

    // From the existence check to the insert, one create, update or delete
    // at a time: the name, max_consumers and work-queue uniqueness checks
    // hold only while nobody else adds a consumer.
    let _admin = lock(&js.admin);
    if let Some(existing) = stream.consumer(&name) {
        let old = existing.config();
        // As nats-server 2.15.1: only CONSUMER.PAUSE changes a consumer's
        // pause; a create or update keeps the one it has.
        if cfg.pause_until != old.pause_until {
            cfg.pause_until.clone_from(&old.pause_until);
            versioning::stamp_consumer(&mut cfg);
        }
        let mut asked = cfg.clone();
        versioning::adopt_stored_level(&mut asked.metadata, old.metadata.as_ref());
        if old == asked {
            return Ok(consumer_info_value(&existing));
        }
        if req.action == "create" {
            return Err(err(ApiError::consumer_already_exists()));
        }
        check_update(&old, &cfg).map_err(err)?;
        existing.update_config(cfg).map_err(err)?;
        return Ok(consumer_info_value(&existing));
    }
    if req.action == "update" {
        return Err(err(ApiError::consumer_does_not_exist()));
    }
    let scfg = stream.config();
    let max = js.resources.max_consumers(scfg.max_consumers);
    if max > 0 && stream.consumer_count() as i64 >= max {
        return Err(err(ApiError::max_consumers()));
    }
    if scfg.retention == Retention::WorkQueue {
        let mine = cfg.filters();
        for other in stream.consumers() {
            let theirs = other.config().filters();
            if mine.is_empty() {
                return Err(err(ApiError::wq_multiple_unfiltered()));
            }
            if theirs.is_empty()
                || mine
                    .iter()
                    .any(|a| theirs.iter().any(|b| subject::overlaps(a, b)))
            {
                return Err(err(ApiError::wq_not_unique()));
            }
        }
    }
    let consumer = Consumer::create(js, &stream, name, cfg, durable).map_err(err)?;
    stream.add_consumer(Arc::clone(&consumer));
    Ok(consumer_info_value(&consumer))
}

/// A consumer's info as create, update, info and reset answer it: with
/// the server's `_nats.*` keys (lists show the stored metadata only).
fn consumer_info_value(consumer: &Consumer) -> Value {
    let mut v = json!(consumer.info());
    versioning::show_server_keys(&mut v);
    v
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct PauseRequest {
    pause_until: Option<String>,
}

/// `CONSUMER.PAUSE`: pauses a consumer until a time, or resumes it (no
/// time, or one not in the future); kept in its configuration.
fn consumer_pause(js: &JetStream, stream_name: &str, name: &str, data: &[u8]) -> ApiResult {
    let req: PauseRequest = parse(data)?;
    let stream = js
        .stream(stream_name)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    let _admin = lock(&js.admin);
    let consumer = stream
        .consumer(name)
        .ok_or_else(|| err(ApiError::consumer_not_found()))?;
    let mut cfg = consumer.config();
    cfg.pause_until = req
        .pause_until
        .filter(|t| !t.is_empty() && !t.starts_with("0001-01-01T00:00:00"));
    if let Some(t) = &cfg.pause_until
        && super::types::parse_rfc3339(t).is_none()
        && humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).is_err()
    {
        return Err(err(ApiError::invalid_json(format!(
            "invalid pause_until {t:?}"
        ))));
    }
    versioning::stamp_consumer(&mut cfg);
    consumer.update_config(cfg.clone()).map_err(err)?;
    let remaining = super::types::pause_remaining(cfg.pause_until.as_deref());
    let mut v = json!({
        "paused": remaining.is_some(),
        "pause_until": cfg.pause_until.as_deref().unwrap_or("0001-01-01T00:00:00Z"),
    });
    if let (Some(r), Value::Object(m)) = (remaining, &mut v) {
        m.insert("pause_remaining".into(), json!(r));
    }
    Ok(v)
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct UnpinRequest {
    group: String,
}

/// `CONSUMER.UNPIN` (priority groups): the consumer forgets its pin, so
/// the next request of the group to be served gets a new one.
fn consumer_unpin(js: &JetStream, stream_name: &str, name: &str, data: &[u8]) -> ApiResult {
    let req: UnpinRequest = parse(data)?;
    if req.group.is_empty() {
        return Err(err(ApiError::invalid_json("consumer group not specified")));
    }
    if !priority::valid_group_name(&req.group) {
        return Err(err(ApiError::invalid_group_name()));
    }
    let stream = js
        .stream(stream_name)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    let consumer = stream
        .consumer(name)
        .ok_or_else(|| err(ApiError::consumer_not_found()))?;
    consumer.unpin(js, &req.group).map_err(err)?;
    Ok(json!({}))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ResetRequest {
    seq: u64,
}

/// `CONSUMER.RESET` (nats-server 2.14): the consumer delivers again from
/// `seq`, or from where its deliver policy starts; answered with its info
/// and `reset_seq`.
fn consumer_reset(js: &JetStream, stream_name: &str, name: &str, data: &[u8]) -> ApiResult {
    let req: ResetRequest = parse(data)?;
    let stream = js
        .stream(stream_name)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    let _admin = lock(&js.admin);
    let consumer = stream
        .consumer(name)
        .ok_or_else(|| err(ApiError::consumer_not_found()))?;
    let start = consumer
        .reset((req.seq > 0).then_some(req.seq))
        .map_err(err)?;
    let mut v = consumer_info_value(&consumer);
    if let Value::Object(m) = &mut v {
        m.insert("reset_seq".into(), json!(start));
    }
    Ok(v)
}

fn ephemeral_name() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    u[..8].to_owned()
}

fn check_consumer_config(
    stream: &Stream,
    cfg: &mut ConsumerConfig,
    durable: bool,
) -> Result<(), ApiError> {
    let _ = durable;
    priority::normalize(cfg);
    let scfg = stream.config();
    if !cfg.filter_subject.is_empty() && !cfg.filter_subjects.is_empty() {
        return Err(ApiError::duplicate_filter_subjects());
    }
    if cfg.filter_subjects.iter().any(String::is_empty) {
        return Err(ApiError::empty_filter());
    }
    for (i, f) in cfg.filter_subjects.iter().enumerate() {
        if cfg.filter_subjects[..i]
            .iter()
            .any(|o| subject::overlaps(o, f))
        {
            return Err(ApiError::overlapping_filters());
        }
    }
    // Like nats-server (2.10+), a valid filter need not match the stream's
    // subjects.
    for f in cfg.filters() {
        if !subject::valid_filter(&f) {
            return Err(ApiError::filter_not_subset());
        }
    }
    if cfg.is_push() {
        let ds = cfg.deliver_subject.as_deref().unwrap_or("");
        if !subject::valid_filter(ds) {
            return Err(ApiError::invalid_deliver_subject());
        }
        if subject::has_wildcards(ds) {
            return Err(ApiError::deliver_to_wildcards());
        }
        if cfg.max_waiting != 0 {
            return Err(ApiError::push_max_waiting());
        }
        if scfg.subjects.iter().any(|s| subject::matches(s, ds)) {
            return Err(ApiError::deliver_cycle());
        }
    } else {
        if cfg.flow_control {
            return Err(ApiError::fc_requires_push());
        }
        if cfg.idle_heartbeat != 0 {
            return Err(ApiError::hb_requires_push());
        }
    }
    if cfg.flow_control && cfg.idle_heartbeat == 0 {
        return Err(ApiError::fc_needs_heartbeats());
    }
    if cfg.idle_heartbeat > 0 && cfg.idle_heartbeat < 100_000_000 {
        return Err(ApiError::small_heartbeat());
    }
    if cfg.ack_wait < 0 {
        return Err(ApiError::consumer_create(
            "consumer ack wait needs to be positive",
        ));
    }
    if cfg.backoff.iter().any(|b| *b <= 0) {
        return Err(ApiError::consumer_create(
            "consumer backoff needs to be positive",
        ));
    }
    if !cfg.backoff.is_empty()
        && cfg.max_deliver > 0
        && (cfg.max_deliver as usize) < cfg.backoff.len()
    {
        return Err(ApiError::max_deliver_backoff());
    }
    if cfg.num_replicas > 1 {
        return Err(ApiError::replicas_not_supported());
    }
    if cfg.deliver_policy == DeliverPolicy::LastPerSubject && cfg.filters().is_empty() {
        return Err(ApiError::invalid_policy(
            "consumer delivery policy is deliver last per subject, but optional filter subject is not set",
        ));
    }
    match cfg.deliver_policy {
        DeliverPolicy::ByStartSequence => {
            if cfg.opt_start_time.is_some() {
                return Err(ApiError::invalid_policy(
                    "consumer delivery policy is deliver by start sequence, but optional start time is also set",
                ));
            }
        }
        DeliverPolicy::ByStartTime => {
            if cfg.opt_start_seq.is_some() {
                return Err(ApiError::invalid_policy(
                    "consumer delivery policy is deliver by start time, but optional start sequence is also set",
                ));
            }
        }
        other => {
            if cfg.opt_start_seq.is_some() {
                return Err(ApiError::invalid_policy(format!(
                    "consumer delivery policy is deliver {}, but optional start sequence is also set",
                    policy_name(other)
                )));
            }
            if cfg.opt_start_time.is_some() {
                return Err(ApiError::invalid_policy(format!(
                    "consumer delivery policy is deliver {}, but optional start time is also set",
                    policy_name(other)
                )));
            }
        }
    }
    if scfg.retention == Retention::WorkQueue {
        if cfg.ack_policy != AckPolicy::Explicit {
            return Err(if cfg.is_push() {
                ApiError::wq_requires_explicit_ack()
            } else {
                ApiError::pull_requires_ack()
            });
        }
        if cfg.deliver_policy != DeliverPolicy::All {
            return Err(ApiError::wq_not_deliver_all());
        }
    }
    priority::check_config(cfg)
}

fn policy_name(p: DeliverPolicy) -> &'static str {
    match p {
        DeliverPolicy::All => "all",
        DeliverPolicy::Last => "last",
        DeliverPolicy::New => "new",
        DeliverPolicy::LastPerSubject => "last per subject",
        DeliverPolicy::ByStartSequence => "by start sequence",
        DeliverPolicy::ByStartTime => "by start time",
    }
}

fn check_update(old: &ConsumerConfig, new: &ConsumerConfig) -> Result<(), ApiError> {
    let fixed = |what: &str| {
        Err(ApiError::consumer_create(format!(
            "{what} can not be updated"
        )))
    };
    if old.deliver_policy != new.deliver_policy {
        return fixed("deliver policy");
    }
    if old.opt_start_seq != new.opt_start_seq {
        return fixed("start sequence");
    }
    if old.opt_start_time != new.opt_start_time {
        return fixed("start time");
    }
    if old.ack_policy != new.ack_policy {
        return fixed("ack policy");
    }
    if old.replay_policy != new.replay_policy {
        return fixed("replay policy");
    }
    if old.is_push() != new.is_push() {
        return Err(ApiError::consumer_create(if new.is_push() {
            "can not update pull consumer to push based"
        } else {
            "can not update push consumer to pull based"
        }));
    }
    if old.mem_storage != new.mem_storage {
        return fixed("storage");
    }
    Ok(())
}

fn consumer_info(js: &JetStream, stream: &str, name: &str) -> ApiResult {
    let s = js
        .stream(stream)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    let c = s
        .consumer(name)
        .ok_or_else(|| err(ApiError::consumer_not_found()))?;
    Ok(consumer_info_value(&c))
}

fn consumer_delete(js: &JetStream, stream: &str, name: &str) -> ApiResult {
    // Not while a create of the same name is between its check and its
    // insert (see consumer_create), nor the other way round.
    let _admin = lock(&js.admin);
    let s = js
        .stream(stream)
        .ok_or_else(|| err(ApiError::stream_not_found()))?;
    let c = s
        .consumer(name)
        .ok_or_else(|| err(ApiError::consumer_not_found()))?;
    // Confirmed only once the delete is durable: a consumer whose
    // directory could not be removed would come back after a restart.
    c.remove_files(&s)
        .map_err(|e| err(ApiError::stream_general(format!("consumer delete: {e}"))))?;
    if let Some(c) = s.remove_consumer(name) {
        c.stop(true);
    }
    Ok(json!({"success": true}))
}

fn consumer_names(js: &JetStream, stream: &str, data: &[u8], list: bool) -> ApiResult {
    let req: ListRequest = parse(data).map_err(|e| paged_error(e, "consumers", json!([])))?;
    let s = js
        .stream(stream)
        .ok_or_else(|| paged_error(err(ApiError::stream_not_found()), "consumers", json!([])))?;
    let limit = if list { 256 } else { 1024 };
    let all = s.consumers();
    let total = all.len();
    let offset = usize::try_from(req.offset).unwrap_or(0).min(total);
    let items: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|c| if list { json!(c.info()) } else { json!(c.name) })
        .collect();
    Ok(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "consumers": items,
    }))
}
