//! The `websocket { }` (or `ws { }`) block: the WebSocket listener's
//! address, TLS, origin checks, handshake timeout and its own
//! `authorization {}` / `no_auth_user`, into a
//! [`WebSocketConf`], with `compression`, `headers` and `ping_interval`.
//! Keys nats-server knows that this server cannot honour (the credential
//! cookies) refuse the start naming the key; unknown keys are errors, as in
//! nats-server. Whether the block is complete (a port, TLS or `no_tls`) is
//! checked by `options`, which builds the listener's configuration.

use std::time::Duration;

use super::error::ConfError;
use super::listener_auth::ListenerAuthConf;
use super::server_conf::{Reader, TlsConf, Warning};
use super::syntax::{Located, Value, duration_of};

/// The `websocket { }` block as written; `None` / `false` when unset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebSocketConf {
    /// `host` / `net`, or the host of `listen`.
    pub host: Option<String>,
    /// `port`, or the port of `listen`; -1 means a free port, 0 (or unset)
    /// means no listener, as in nats-server.
    pub port: Option<i32>,
    /// The `tls { }` block inside.
    pub tls: Option<TlsConf>,
    /// `no_tls: true`: plain `ws://`.
    pub no_tls: bool,
    /// `same_origin`.
    pub same_origin: bool,
    /// `allowed_origins` (also `allowed_origin`, `allow_origins`,
    /// `allow_origin`, `origins`, `origin`).
    pub allowed_origins: Vec<String>,
    /// `handshake_timeout`: seconds or a duration string.
    pub handshake_timeout: Option<Duration>,
    /// `authorization { }` (or `authentication { }`) inside.
    pub authorization: Option<ListenerAuthConf>,
    /// `no_auth_user` inside.
    pub no_auth_user: Option<String>,
    /// `compression` (or `compress`): permessage-deflate for clients that
    /// offer it.
    pub compression: bool,
    /// `headers { }`: extra lines of the 101 response, in file order.
    pub headers: Vec<(String, String)>,
    /// `ping_interval`: the server's PING interval for this listener's
    /// clients (the server's `ping_interval` when unset).
    pub ping_interval: Option<Duration>,
    /// Line of the block (for errors about the block as a whole).
    pub line: usize,
}

/// Keys nats-server knows inside `websocket { }` that this server does not
/// implement: each changes who may connect or what goes on the wire, so
/// ignoring one would run the listener differently than configured.
const REFUSED_WEBSOCKET: &[&str] = &["jwt_cookie", "user_cookie", "pass_cookie", "token_cookie"];

/// Reads a `websocket { }` block (kept raw by `server_conf`), with
/// [`Warning`]s for keys read but without effect.
pub fn websocket_from_conf(block: &Located) -> Result<(WebSocketConf, Vec<Warning>), ConfError> {
    let mut r = Reader {
        warnings: Vec::new(),
    };
    let w = r.websocket(block)?;
    Ok((w, r.warnings))
}

impl Reader {
    /// Reads the `websocket { }` block.
    fn websocket(&mut self, value: &Located) -> Result<WebSocketConf, ConfError> {
        let Value::Map(entries) = &value.value else {
            return self.wrong_type("websocket", value, "a map");
        };
        let mut w = WebSocketConf {
            line: value.line,
            ..WebSocketConf::default()
        };
        for (k, v) in entries {
            let name = format!("websocket.{k}");
            match k.to_ascii_lowercase().as_str() {
                "listen" => {
                    let (host, port) = self.host_port(&name, v)?;
                    if let Some(host) = host {
                        w.host = host;
                    }
                    w.port = Some(port);
                }
                "port" => w.port = Some(self.port(&name, v)?),
                "host" | "net" => w.host = Some(self.string(&name, v)?),
                "no_tls" => w.no_tls = self.boolean(&name, v)?,
                "tls" => w.tls = Some(self.tls(v)?),
                "authorization" | "authentication" => {
                    w.authorization = Some(self.listener_authorization(&name, v)?);
                }
                "no_auth_user" => w.no_auth_user = Some(self.string(&name, v)?),
                "same_origin" => w.same_origin = self.boolean(&name, v)?,
                "allowed_origins" | "allowed_origin" | "allow_origins" | "allow_origin"
                | "origins" | "origin" => {
                    w.allowed_origins = match &v.value {
                        Value::String(s) => vec![s.clone()],
                        Value::Array(items) => items
                            .iter()
                            .map(|item| self.string(&name, item))
                            .collect::<Result<_, _>>()?,
                        _ => return self.wrong_type(&name, v, "a string or an array of strings"),
                    };
                }
                "handshake_timeout" => {
                    w.handshake_timeout = Some(match v.value {
                        Value::Integer(i) if i >= 0 => Duration::from_secs(i.unsigned_abs()),
                        _ => duration_of(&name, v)?,
                    });
                }
                "compress" | "compression" => w.compression = self.boolean(&name, v)?,
                "headers" => {
                    let Value::Map(headers) = &v.value else {
                        return self.invalid(
                            &name,
                            v,
                            "error parsing headers: unsupported type (expected a map)",
                        );
                    };
                    w.headers.clear();
                    for (hk, hv) in headers {
                        let Value::String(value) = &hv.value else {
                            return self.invalid(
                                &name,
                                hv,
                                format!("error parsing header key {hk}: unsupported type"),
                            );
                        };
                        w.headers.push((hk.clone(), value.clone()));
                    }
                }
                "ping_interval" => {
                    w.ping_interval = Some(match v.value {
                        Value::Integer(i) if i > 0 => Duration::from_secs(i.unsigned_abs()),
                        _ => duration_of(&name, v)?,
                    });
                }
                "advertise" => {
                    // nats-server only passes it to the other servers of a
                    // cluster (for their INFO's connect URLs); a lone
                    // server sends it to nobody.
                    self.string(&name, v)?;
                    self.warn(
                        name.clone(),
                        v,
                        format!("'{name}' has no effect without a cluster"),
                    );
                }
                lower if REFUSED_WEBSOCKET.contains(&lower) => {
                    return self.invalid(
                        &name,
                        v,
                        format!("{k} is not supported yet by this server; refusing to start"),
                    );
                }
                _ if v.used_as_variable => {}
                _ => {
                    return self.invalid(&name, v, format!("unknown field \"{k}\""));
                }
            }
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::super::server_conf::server_conf;
    use super::super::syntax::tests::p;
    use super::*;

    fn ws(text: &str) -> Result<WebSocketConf, String> {
        let (c, _) = server_conf(&p(text)).map_err(|e| e.to_string())?;
        let block = c.websocket.ok_or("no websocket block")?;
        websocket_from_conf(&block)
            .map(|(w, _)| w)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn websocket_block_reads_every_supported_key() {
        let w = ws(r#"websocket {
                listen: "0.0.0.0:8080"
                no_tls: true
                same_origin: true
                allowed_origins: ["https://a.example", "http://b.example:8000"]
                handshake_timeout: "3s"
                compression: true
            }"#)
        .unwrap_or_default();
        assert!(w.compression);
        assert_eq!(w.host.as_deref(), Some("0.0.0.0"));
        assert_eq!(w.port, Some(8080));
        assert!(w.no_tls && w.same_origin);
        assert_eq!(
            w.allowed_origins,
            vec!["https://a.example", "http://b.example:8000"]
        );
        assert_eq!(w.handshake_timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn ws_alias_single_origin_and_integer_timeout() {
        let w = ws("ws { port: -1, origin: \"http://x\", handshake_timeout: 2, tls { cert_file: \"c\", key_file: \"k\" } }")
            .unwrap_or_default();
        assert_eq!(w.port, Some(-1));
        assert_eq!(w.allowed_origins, vec!["http://x"]);
        assert_eq!(w.handshake_timeout, Some(Duration::from_secs(2)));
        assert!(w.tls.is_some_and(|t| t.cert_file.is_some()));
    }

    #[test]
    fn compress_alias_and_a_non_boolean_compression() {
        let w = ws("websocket { port: 8080, no_tls: true, compress: true }").unwrap_or_default();
        assert!(w.compression);
        let e = ws("websocket { port: 8080, no_tls: true, compression: \"yes\" }")
            .err()
            .unwrap_or_default();
        assert!(e.contains("websocket.compression"), "{e}");
    }

    #[test]
    fn headers_and_ping_interval_are_read() {
        let w = ws("websocket { port: 8080, no_tls: true, headers { X-A: \"1\", X-B: two }, ping_interval: \"250ms\" }")
            .unwrap_or_default();
        assert_eq!(
            w.headers,
            vec![
                ("X-A".to_owned(), "1".to_owned()),
                ("X-B".to_owned(), "two".to_owned())
            ]
        );
        assert_eq!(w.ping_interval, Some(Duration::from_millis(250)));
        let w = ws("websocket { port: 8080, no_tls: true, ping_interval: 3 }").unwrap_or_default();
        assert_eq!(w.ping_interval, Some(Duration::from_secs(3)));
        for bad in ["headers: 1", "headers { X-A: 1 }"] {
            let e = ws(&format!("websocket {{ port: 8080, no_tls: true, {bad} }}"))
                .err()
                .unwrap_or_default();
            assert!(e.contains("websocket.headers"), "{bad}: {e}");
        }
    }

    #[test]
    fn websocket_cookies_refuse_the_start() {
        for key in [
            "jwt_cookie: c",
            "user_cookie: u",
            "pass_cookie: p",
            "token_cookie: t",
        ] {
            let e = ws(&format!("websocket {{ port: 8080, no_tls: true, {key} }}"))
                .err()
                .unwrap_or_default();
            assert!(e.contains("not supported yet"), "{key}: {e}");
        }
    }

    #[test]
    fn unknown_websocket_key_is_an_error() {
        let e = ws("websocket { port: 8080, no_tls: true, bogus: 1 }")
            .err()
            .unwrap_or_default();
        assert!(e.contains("websocket.bogus"), "{e}");
    }
}
