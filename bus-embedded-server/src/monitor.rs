//! The monitoring HTTP server (`-m`): `/varz`, `/connz`, `/subsz`, `/jsz`,
//! `/healthz` (503 when a JetStream store refuses writes) with nats-server's field names for the fields we have, and
//! `/metrics` with the same figures in Prometheus text format.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::state::{ServerState, VERSION};

/// Serves monitoring requests on `listener` until the server shuts down.
pub(crate) async fn serve(shared: Arc<ServerState>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&shared), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Hands a request under the configured [`crate::config::HttpMount`] to its handler.
async fn mounted(
    mount: crate::config::HttpMount,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, crate::config::HttpRequest::MAX_BODY);
    let body = match limited.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"request body too large\n")));
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return Ok(r);
        }
    };
    let request = crate::config::HttpRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body,
    };
    let answer = mount.handler.handle(request).await;
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in answer.headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(&v),
        ) {
            response.headers_mut().append(k, v);
        }
    }
    Ok(response)
}

async fn handle(
    shared: Arc<ServerState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(mount) = &shared.config.http_mount {
        let path = req.uri().path();
        let inside = path
            .strip_prefix(mount.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if inside {
            return mounted(mount.clone(), req).await;
        }
    }
    let path = req.uri().path().trim_end_matches('/');
    let query = req.uri().query().unwrap_or("");
    let flag = |name: &str| {
        query.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            k == name && matches!(v, "true" | "1" | "")
        })
    };
    let (status, content_type, body) = match path {
        // `$G`'s JetStream, or with `?acc=NAME` that account's.
        "/jsz" => match query
            .split('&')
            .find_map(|kv| kv.strip_prefix("acc="))
            .filter(|a| *a != crate::config::GLOBAL_ACCOUNT)
            .map_or(shared.jetstream.clone(), |a| {
                shared.accounts.get(a).and_then(|a| a.jetstream.clone())
            }) {
            Some(js) => {
                let opts = crate::jetstream::jsz::JszOptions {
                    streams: flag("streams") || flag("accounts"),
                    consumers: flag("consumers"),
                    config: flag("config"),
                };
                (
                    StatusCode::OK,
                    "application/json",
                    pretty(&js.jsz(&shared.server_id, opts)),
                )
            }
            None => (
                StatusCode::OK,
                "application/json",
                pretty(&json!({
                    "server_id": shared.server_id,
                    "now": rfc3339(SystemTime::now()),
                    "disabled": true,
                })),
            ),
        },
        "/varz" => (StatusCode::OK, "application/json", pretty(&varz(&shared))),
        "/connz" => (StatusCode::OK, "application/json", pretty(&connz(&shared))),
        "/subsz" => (StatusCode::OK, "application/json", pretty(&subsz(&shared))),
        "/healthz" => {
            let problems: Vec<_> = shared
                .jetstream
                .iter()
                .cloned()
                .chain(
                    shared
                        .accounts
                        .all()
                        .into_iter()
                        .filter_map(|a| a.jetstream.clone()),
                )
                .flat_map(|js| js.health_problems())
                .collect();
            if problems.is_empty() {
                (
                    StatusCode::OK,
                    "application/json",
                    pretty(&json!({"status": "ok"})),
                )
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    pretty(&json!({
                        "status": "unavailable",
                        "error": problems.join("; "),
                    })),
                )
            }
        }
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics(&shared),
        ),
        "" => (
            StatusCode::OK,
            "text/plain",
            "varz connz subsz jsz healthz metrics\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(response)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".to_owned())
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Go-style duration text ("1h2m3s", "450ms").
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// Resident memory in bytes and CPU use in percent of one core since start,
/// from /proc (0 where /proc is not available).
pub(crate) fn process_usage(uptime: Duration) -> (u64, f64) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024);
    let cpu_secs = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0);
    let cpu = if uptime.as_secs_f64() > 0.0 {
        cpu_secs / uptime.as_secs_f64() * 100.0
    } else {
        0.0
    };
    (rss, (cpu * 100.0).round() / 100.0)
}

fn varz(s: &ServerState) -> Value {
    let now = SystemTime::now();
    let uptime = now.duration_since(s.started).unwrap_or_default();
    let (mem, cpu) = process_usage(uptime);
    let c = &s.config;
    let [in_msgs, in_bytes, out_msgs, out_bytes] = s.traffic();
    let mut v = json!({
        "server_id": s.server_id,
        "server_name": s.server_name,
        "version": VERSION,
        "proto": 1,
        "go": "rust",
        "host": c.host,
        "port": s.port(),
        "max_connections": c.max_connections,
        "ping_interval": c.ping_interval.as_nanos() as u64,
        "ping_max": c.ping_max,
        "http_host": c.host,
        "http_port": s.monitor_port(),
        "max_control_line": c.max_control_line,
        "max_payload": c.max_payload,
        "max_pending": c.max_pending,
        "write_deadline": c.write_deadline.as_nanos() as u64,
        "start": rfc3339(s.started),
        "now": rfc3339(now),
        "uptime": go_duration(uptime),
        "mem": mem,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": cpu,
        "connections": s.client_count(),
        "total_connections": s.stats.total_connections.load(Ordering::Relaxed),
        "routes": 0,
        "remotes": 0,
        "leafnodes": 0,
        "in_msgs": in_msgs,
        "out_msgs": out_msgs,
        "in_bytes": in_bytes,
        "out_bytes": out_bytes,
        "slow_consumers": s.stats.slow_consumers.load(Ordering::Relaxed),
        "subscriptions": s.subscription_count(),
    });
    let tls = c.tls.as_ref();
    let timeout = tls.map_or(crate::config::DEFAULT_TLS_TIMEOUT, |t| t.timeout);
    // Seconds, a whole number printed without a fraction (as Go does).
    v["tls_timeout"] = if timeout.subsec_nanos() == 0 {
        json!(timeout.as_secs())
    } else {
        json!(timeout.as_secs_f64())
    };
    if let Some(t) = tls {
        v["tls_required"] = json!(true);
        if t.verify {
            v["tls_verify"] = json!(true);
        }
    }
    if let Some(w) = &c.websocket {
        v["websocket"] = websocket_varz(w, s.ws_port.unwrap_or(0));
    }
    v
}

/// `/varz`'s `websocket` object as nats-server writes it (fields that are
/// false, empty or zero left out).
fn websocket_varz(w: &crate::config::WebSocketConfig, port: u16) -> Value {
    let mut ws = json!({ "host": w.host, "port": port });
    if let Some(t) = w.handshake_timeout {
        ws["handshake_timeout"] = json!(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
    }
    if w.tls.is_none() {
        ws["no_tls"] = json!(true);
    }
    if w.same_origin {
        ws["same_origin"] = json!(true);
    }
    if !w.allowed_origins.is_empty() {
        ws["allowed_origins"] = json!(w.allowed_origins);
    }
    if w.compression {
        ws["compression"] = json!(true);
    }
    ws
}

fn connz(s: &ServerState) -> Value {
    let now = SystemTime::now();
    let mut conns: Vec<Value> = s
        .clients()
        .iter()
        .map(|c| {
            let peer: SocketAddr = c.addr;
            json!({
                "cid": c.id,
                "ip": peer.ip().to_string(),
                "port": peer.port(),
                "start": rfc3339(c.started),
                "uptime": go_duration(now.duration_since(c.started).unwrap_or_default()),
                "pending_bytes": c.pending(),
                "in_msgs": c.in_msgs.load(Ordering::Relaxed),
                "out_msgs": c.out_msgs.load(Ordering::Relaxed),
                "in_bytes": c.in_bytes.load(Ordering::Relaxed),
                "out_bytes": c.out_bytes.load(Ordering::Relaxed),
                "subscriptions": c.subs.load(Ordering::Relaxed),
                "name": c.name_text(),
                "lang": c.lang_text(),
                "version": c.version_text(),
                "account": c.account_name(),
            })
        })
        .collect();
    conns.sort_by_key(|c| c["cid"].as_u64().unwrap_or(0));
    json!({
        "server_id": s.server_id,
        "now": rfc3339(now),
        "num_connections": conns.len(),
        "total": conns.len(),
        "offset": 0,
        "limit": conns.len(),
        "connections": conns,
    })
}

fn subsz(s: &ServerState) -> Value {
    json!({
        "server_id": s.server_id,
        "now": rfc3339(SystemTime::now()),
        "num_subscriptions": s.subscription_count(),
    })
}

fn metrics(s: &ServerState) -> String {
    let v = varz(s);
    let mut out = String::new();
    for (name, help, kind) in [
        ("in_msgs", "Messages received from clients.", "counter"),
        ("out_msgs", "Messages delivered to clients.", "counter"),
        ("in_bytes", "Payload bytes received.", "counter"),
        ("out_bytes", "Payload bytes delivered.", "counter"),
        ("connections", "Current client connections.", "gauge"),
        (
            "total_connections",
            "Client connections since start.",
            "counter",
        ),
        ("subscriptions", "Current subscriptions.", "gauge"),
        (
            "slow_consumers",
            "Connections closed as slow consumers.",
            "counter",
        ),
        ("mem", "Resident memory in bytes.", "gauge"),
        (
            "cpu",
            "CPU use in percent of one core since start.",
            "gauge",
        ),
    ] {
        let value = &v[name];
        out.push_str(&format!("# HELP nats_varz_{name} {help}\n# TYPE nats_varz_{name} {kind}\nnats_varz_{name} {value}\n"));
    }
    if let Some(js) = &s.jetstream {
        out.push_str(&js.metrics());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations_render_like_nats_server() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_secs(62)), "1m2s");
        assert_eq!(go_duration(Duration::from_millis(450)), "450ms");
    }
}
