//! # bus-console: the operator console in the browser
//!
//! Server-rendered pages under one path prefix (`/console`):
//! - `streams`: every JetStream stream (the bus's marked): messages, bytes,
//!   first/last sequence, messages/s and bytes/s;
//! - `consumers`: the event stream's durable consumers: pending, ack pending,
//!   redelivered, delivered, ack floor, dead letters, and a lag chart
//!   (pending over time, inline SVG);
//! - `dead-letters` (`?consumer=`) and `dead-letters/<id>`: reason, attempts,
//!   consumer, the decoded envelope and the payload as text, JSON and hex,
//!   with a redrive action ([`bus_core::Bus::redrive_dead_letters`]);
//! - `events` (`?position=&time=&aggregate_type=&aggregate_id=&filter=&limit=`)
//!   and `events/<position>`: the event browser with the decoded envelope;
//! - `api/live`: the figures the pages' script refreshes every 2 s;
//! - `static/console.css`, `static/console.js`: the two assets, compiled in.
//!
//! Security: it binds where it is told (loopback by default, see
//! `angzarr-bus console` and `[bus.embedded] console`); with
//! [`Credentials`] every request needs them (HTTP Basic or a bearer token);
//! the redrive is a POST carrying a per-process random token and coming
//! from the console's own origin (CSRF guard); pages never show a
//! credential (URLs in error messages are shown without user information).
//!
//! Layout: [`http`] (types, forms, the two guards), `data` (listings and
//! samples), `html` (escaping, frame, chart, payload views), `pages`.
//! The console only reads, except the redrive, which goes through the `Bus`.

mod data;
mod html;
pub mod http;
mod pages;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bus_core::{Bus, BusError, Filter, RedriveSelection, StartPosition, StoredEvent};

pub use http::{Credentials, Request, Response};

/// Events the browser reads at most per search (and positions it scans).
const MAX_LIMIT: usize = 500;
const MAX_SCANNED: usize = 20_000;

/// What a console needs.
pub struct ConsoleConfig {
    /// The bus (a NATS or embedded bus).
    pub bus: Arc<dyn Bus>,
    /// A client of the same server, for listing streams and consumers.
    pub client: async_nats::Client,
    /// The event stream's name (`[bus.nats] stream_name`).
    pub events_stream: String,
    /// The dead-letter stream's name.
    pub dead_letter_stream: String,
    /// Credentials the browser must present; `None` = none (only when the
    /// server requires none).
    pub credentials: Option<Credentials>,
    /// Path prefix of every page, e.g. `/console`.
    pub base: String,
}

/// The console: answers [`Request`]s.
pub struct Console {
    source: data::Source,
    credentials: Option<Credentials>,
    csrf: String,
    base: String,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

impl Console {
    /// A console on `config.bus`.
    pub fn new(config: ConsoleConfig) -> Self {
        let mut js = async_nats::jetstream::new(config.client);
        js.set_timeout(Duration::from_secs(5));
        Console {
            source: data::Source::new(
                config.bus,
                js,
                config.events_stream,
                config.dead_letter_stream,
            ),
            credentials: config.credentials,
            csrf: uuid::Uuid::new_v4().simple().to_string(),
            base: config.base.trim_end_matches('/').to_owned(),
        }
    }

    /// The path prefix of the pages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Answers one request (authentication, routing, security headers).
    pub async fn handle(&self, request: Request) -> Response {
        let mut response = self.route(&request).await;
        for (k, v) in [
            (
                "content-security-policy",
                "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
                 img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
            ("cache-control", "no-store"),
        ] {
            response.headers.push((k.to_owned(), v.to_owned()));
        }
        response
    }

    async fn route(&self, request: &Request) -> Response {
        if let Some(creds) = &self.credentials {
            if !creds.accepts(request.header("authorization")) {
                let mut r = Response::text(401, "credentials required\n");
                r.headers.push((
                    "www-authenticate".to_owned(),
                    "Basic realm=\"angzarr-bus console\", charset=\"UTF-8\"".to_owned(),
                ));
                return r;
            }
        }
        let Some(rest) = request.path.strip_prefix(self.base.as_str()) else {
            return Response::text(404, "not found\n");
        };
        let rest = rest.trim_end_matches('/');
        let query = http::form(&request.query);
        let b = self.base.as_str();
        let get = request.method == "GET" || request.method == "HEAD";
        let result = match (get, rest) {
            (true, "") => Ok(Response::see_other(&format!("{b}/streams"))),
            (true, "/static/console.css") => Ok(Response::new(200, "text/css; charset=utf-8", CSS)),
            (true, "/static/console.js") => {
                Ok(Response::new(200, "text/javascript; charset=utf-8", JS))
            }
            (true, "/api/live") => self.live().await,
            (true, "/streams") => self.streams().await,
            (true, "/consumers") => self.consumers().await,
            (true, "/dead-letters") => self.dead_letters(&query).await,
            (true, "/events") => self.events(&query).await,
            (false, "/dead-letters/redrive") => self.redrive(request).await,
            (true, other) => {
                if let Some(id) = other.strip_prefix("/dead-letters/") {
                    self.dead_letter(id).await
                } else if let Some(p) = other.strip_prefix("/events/") {
                    self.event(p).await
                } else {
                    Ok(self.error(404, "no such page"))
                }
            }
            (false, _) => Ok(Response::text(405, "method not allowed\n")),
        };
        result.unwrap_or_else(|e| {
            let status = match e {
                BusError::NotFound { .. } => 404,
                BusError::InvalidArgument(_)
                | BusError::InvalidFilter { .. }
                | BusError::InvalidName { .. } => 400,
                _ => 502,
            };
            self.error(status, &redact(&e.to_string()))
        })
    }

    fn error(&self, status: u16, message: &str) -> Response {
        Response::html(status, pages::error(&self.base, status, message))
    }

    async fn live(&self) -> Result<Response, BusError> {
        let samples = self.source.sample().await?;
        let rows = self.source.streams().await?;
        Ok(Response::new(
            200,
            "application/json",
            pages::live_json(&rows, &samples).to_string(),
        ))
    }

    async fn streams(&self) -> Result<Response, BusError> {
        let samples = self.source.sample().await?;
        let rows = self.source.streams().await?;
        Ok(Response::html(
            200,
            pages::streams(&self.base, &rows, &samples),
        ))
    }

    async fn consumers(&self) -> Result<Response, BusError> {
        let samples = self.source.sample().await?;
        let list = self.source.consumers().await?;
        Ok(Response::html(
            200,
            pages::consumers(&self.base, &list, &samples),
        ))
    }

    async fn dead_letters(&self, query: &[(String, String)]) -> Result<Response, BusError> {
        let consumer = http::field(query, "consumer");
        let list = self.source.bus.dead_letters(consumer).await?;
        Ok(Response::html(
            200,
            pages::dead_letters(
                &self.base,
                &self.csrf,
                consumer,
                &list,
                http::field(query, "done"),
            ),
        ))
    }

    async fn dead_letter(&self, id: &str) -> Result<Response, BusError> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(self.error(404, "no such dead letter"));
        };
        let list = self.source.bus.dead_letters(None).await?;
        match list.iter().find(|d| d.id == id) {
            Some(d) => Ok(Response::html(
                200,
                pages::dead_letter(&self.base, &self.csrf, d),
            )),
            None => Ok(self.error(
                404,
                &format!("no dead letter #{id} (redriven and acknowledged, or never there)"),
            )),
        }
    }

    async fn redrive(&self, request: &Request) -> Result<Response, BusError> {
        let fields = http::form(&String::from_utf8_lossy(&request.body));
        if !http::csrf_ok(request, &fields, &self.csrf) {
            return Ok(self.error(
                403,
                "refused: the form's token is missing or wrong, or the request came from another site",
            ));
        }
        let Some(consumer) = http::field(&fields, "consumer") else {
            return Ok(self.error(400, "which consumer?"));
        };
        let selection = if http::field(&fields, "all").is_some() {
            RedriveSelection::All
        } else {
            let positions: Result<Vec<u64>, _> = fields
                .iter()
                .filter(|(k, _)| k == "position")
                .map(|(_, v)| v.trim().parse::<u64>())
                .collect();
            match positions {
                Ok(p) if !p.is_empty() => RedriveSelection::Positions(p),
                _ => return Ok(self.error(400, "which positions?")),
            }
        };
        let report = self
            .source
            .bus
            .redrive_dead_letters(consumer, &selection)
            .await?;
        tracing::info!(%consumer, redriven = ?report.redriven, "dead letters redriven from the console");
        let mut done = format!(
            "Redriven {} dead letter(s) to {consumer}",
            report.redriven.len()
        );
        if !report.already_pending.is_empty() {
            done.push_str(&format!(
                "; {} already on their way back",
                report.already_pending.len()
            ));
        }
        if !report.not_found.is_empty() {
            done.push_str(&format!("; {} not found", report.not_found.len()));
        }
        done.push_str(". Each leaves this list once the consumer acknowledges it.");
        Ok(Response::see_other(&format!(
            "{}/dead-letters?consumer={}&done={}",
            self.base,
            http::encode(consumer),
            http::encode(&done)
        )))
    }

    async fn events(&self, query: &[(String, String)]) -> Result<Response, BusError> {
        let mut q = pages::EventQuery {
            limit: 50,
            ..Default::default()
        };
        if let Some(p) = http::field(query, "position") {
            q.position = Some(p.parse().map_err(|_| {
                BusError::InvalidArgument(format!("position {p:?} is not a number"))
            })?);
        }
        q.time = http::field(query, "time").unwrap_or("").to_owned();
        q.aggregate_type = http::field(query, "aggregate_type")
            .unwrap_or("")
            .to_owned();
        q.aggregate_id = http::field(query, "aggregate_id").unwrap_or("").to_owned();
        q.filter = http::field(query, "filter").unwrap_or("").to_owned();
        if let Some(l) = http::field(query, "limit") {
            q.limit = l
                .parse::<usize>()
                .map_err(|_| BusError::InvalidArgument(format!("limit {l:?} is not a number")))?
                .clamp(1, MAX_LIMIT);
        }
        let layout = self.source.bus.layout();
        let filter: Filter = if !q.filter.is_empty() {
            let prefix = layout.prefix();
            let text = if q.filter.starts_with(&format!("{prefix}.")) {
                q.filter.clone()
            } else {
                format!("{prefix}.events.{}", q.filter)
            };
            layout.filter(&text)?
        } else if !q.aggregate_type.is_empty() {
            layout.filter(&format!(
                "{}.events.{}.>",
                layout.prefix(),
                q.aggregate_type
            ))?
        } else {
            layout.all()
        };
        let start = match (q.position, q.time.as_str()) {
            (Some(p), _) => StartPosition::Position(p),
            (None, "") => StartPosition::Beginning,
            (None, t) => StartPosition::Time(parse_time(t)?),
        };
        let mut replay = self.source.bus.replay(&filter, start).await?;
        let mut found: Vec<StoredEvent> = Vec::new();
        let mut scanned = 0usize;
        let mut note = None;
        while let Some(e) = replay.next().await {
            let e = e?;
            scanned += 1;
            let type_ok =
                q.aggregate_type.is_empty() || e.envelope.aggregate_type == q.aggregate_type;
            let id_ok = q.aggregate_id.is_empty() || e.envelope.aggregate_id == q.aggregate_id;
            if type_ok && id_ok {
                found.push(e);
                if found.len() >= q.limit {
                    note = Some(format!(
                        "The first {} matching events; search from position {} for more.",
                        q.limit,
                        found.last().map_or(0, |e| e.position + 1)
                    ));
                    break;
                }
            }
            if scanned >= MAX_SCANNED {
                note = Some(format!(
                    "Stopped after scanning {MAX_SCANNED} events; narrow the search or start later."
                ));
                break;
            }
        }
        Ok(Response::html(
            200,
            pages::events(&self.base, &q, &found, note.as_deref()),
        ))
    }

    async fn event(&self, position: &str) -> Result<Response, BusError> {
        let Ok(p) = position.parse::<u64>() else {
            return Ok(self.error(404, "no such event"));
        };
        let layout = self.source.bus.layout();
        let mut replay = self
            .source
            .bus
            .replay(&layout.all(), StartPosition::Position(p))
            .await?;
        match replay.next().await {
            Some(Ok(e)) if e.position == p => Ok(Response::html(200, pages::event(&self.base, &e))),
            Some(Err(e)) => Err(e),
            _ => Ok(self.error(404, &format!("no event at position {p}"))),
        }
    }
}

/// RFC 3339, or a duration ago (`15m`, `2h`).
fn parse_time(text: &str) -> Result<SystemTime, BusError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    match humantime::parse_duration(text) {
        Ok(d) => Ok(SystemTime::now() - d),
        Err(_) => Err(BusError::InvalidArgument(format!(
            "time {text:?}: expected RFC 3339 (2026-01-31T12:00:00Z) or a duration ago (15m)"
        ))),
    }
}

/// Removes user information from URLs in `text` (`nats://user:pw@host` ->
/// `nats://host`), so an error page never shows a credential.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == ',' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Serves `console` on `listener` (HTTP/1.1) until `shutdown` resolves.
pub async fn serve(
    console: Arc<Console>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = &mut shutdown => return,
        };
        let console = Arc::clone(&console);
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let console = Arc::clone(&console);
                async move {
                    let (parts, body) = req.into_parts();
                    let limited = http_body_util::Limited::new(body, 64 * 1024);
                    let answer = match limited.collect().await {
                        Ok(body) => {
                            let request = Request {
                                method: parts.method.as_str().to_owned(),
                                path: parts.uri.path().to_owned(),
                                query: parts.uri.query().unwrap_or("").to_owned(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .filter_map(|(k, v)| {
                                        Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))
                                    })
                                    .collect(),
                                body: body.to_bytes().to_vec(),
                            };
                            console.handle(request).await
                        }
                        Err(_) => Response::text(413, "request body too large\n"),
                    };
                    let mut response =
                        hyper::Response::new(http_body_util::Full::new(bytes_of(answer.body)));
                    *response.status_mut() = hyper::StatusCode::from_u16(answer.status)
                        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                    for (k, v) in answer.headers {
                        if let (Ok(k), Ok(v)) = (
                            hyper::header::HeaderName::from_bytes(k.as_bytes()),
                            hyper::header::HeaderValue::from_str(&v),
                        ) {
                            response.headers_mut().append(k, v);
                        }
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn bytes_of(v: Vec<u8>) -> hyper::body::Bytes {
    hyper::body::Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_user_information_from_urls() {
        assert_eq!(
            redact("cannot connect to nats://ops:s3cret@10.0.0.1:4222, tls://a:b@h/x"),
            "cannot connect to nats://10.0.0.1:4222, tls://h/x"
        );
        assert_eq!(redact("no url here"), "no url here");
    }

    #[test]
    fn times_are_rfc3339_or_ago() {
        assert!(parse_time("2026-01-31T12:00:00Z").is_ok());
        let t = parse_time("15m").unwrap_or(SystemTime::UNIX_EPOCH);
        assert!(t < SystemTime::now() && t > SystemTime::now() - Duration::from_secs(1000));
        assert!(parse_time("yesterday").is_err());
    }
}
