//! A small NATS-protocol proxy for tests: it forwards a client's
//! connection to a server and rewrites what the server says (its INFO
//! version, the acknowledgement of an atomic batch, the headers of a direct
//! get reply). Shared by `bus-nats/tests/event_store.rs` (nats-server) and
//! `bus/tests/embedded_event_store.rs` (the bundled server) through
//! `#[path]`; not every user needs every rule.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy changes in what the server sends.
#[derive(Default)]
pub struct Rules {
    /// Put this in INFO's `version`.
    pub version: Option<String>,
    /// Drop this many acknowledgements of atomic batches (PubAcks with `"batch"`).
    pub drop_batch_acks: usize,
    /// Batch acknowledgements dropped so far.
    pub dropped: usize,
    /// Remove `Nats-Num-Pending` from direct get replies and drop their
    /// end-of-batch status, as a server without batched direct get would.
    pub plain_direct_gets: bool,
}

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub url: String,
    rules: Arc<Mutex<Rules>>,
}

impl Proxy {
    /// Listens on a free port, forwarding to `upstream`.
    pub async fn start(upstream: String, rules: Rules) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("nats://{}", listener.local_addr().expect("addr"));
        let rules = Arc::new(Mutex::new(rules));
        let shared = Arc::clone(&rules);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.trim_start_matches("nats://").to_owned();
                let rules = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, mut cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(async move {
                        let mut cr = cr;
                        let mut sw = sw;
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    });
                    let _ = server_to_client(BufReader::new(sr), &mut cw, rules).await;
                });
            }
        });
        Proxy { url, rules }
    }

    /// Drops the next `n` batch acknowledgements.
    pub fn drop_next_batch_acks(&self, n: usize) {
        if let Ok(mut r) = self.rules.lock() {
            r.drop_batch_acks = n;
        }
    }

    /// Batch acknowledgements dropped so far.
    pub fn dropped(&self) -> usize {
        self.rules.lock().map(|r| r.dropped).unwrap_or(0)
    }
}

/// Forwards the server's protocol, one control line (and payload) at a time.
async fn server_to_client(
    mut from: BufReader<tokio::net::tcp::OwnedReadHalf>,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    rules: Arc<Mutex<Rules>>,
) -> std::io::Result<()> {
    loop {
        let mut line = String::new();
        if from.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("INFO") => {
                let version = rules.lock().ok().and_then(|r| r.version.clone());
                let mut out = line.clone();
                if let Some(v) = version {
                    if let Some(start) = out.find("\"version\":\"") {
                        let from_v = start + "\"version\":\"".len();
                        if let Some(len) = out[from_v..].find('"') {
                            out.replace_range(from_v..from_v + len, &v);
                        }
                    }
                }
                to.write_all(out.as_bytes()).await?;
            }
            Some(op @ ("MSG" | "HMSG")) => {
                // MSG <subject> <sid> [reply] <size>; HMSG ... <hdr size> <total size>
                let total: usize = words.last().and_then(|w| w.parse().ok()).unwrap_or(0);
                let hdr: usize = if op == "HMSG" {
                    words
                        .get(words.len() - 2)
                        .and_then(|w| w.parse().ok())
                        .unwrap_or(0)
                } else {
                    0
                };
                let mut payload = vec![0; total + 2];
                from.read_exact(&mut payload).await?;
                let body = &payload[hdr..total];
                let headers = String::from_utf8_lossy(&payload[..hdr]).into_owned();
                let (drop_ack, plain) = {
                    let mut r = rules
                        .lock()
                        .map_err(|_| std::io::Error::other("poisoned"))?;
                    let drop_ack = r.drop_batch_acks > 0
                        && String::from_utf8_lossy(body).contains("\"batch\":\"");
                    if drop_ack {
                        r.drop_batch_acks -= 1;
                        r.dropped += 1;
                    }
                    (drop_ack, r.plain_direct_gets && op == "HMSG")
                };
                if drop_ack {
                    continue;
                }
                if plain {
                    if headers.contains("NATS/1.0 204") {
                        continue;
                    }
                    if headers.contains("Nats-Num-Pending:") {
                        let kept: String = headers
                            .split_inclusive("\r\n")
                            .filter(|l| {
                                !l.starts_with("Nats-Num-Pending:")
                                    && !l.starts_with("Nats-Last-Sequence:")
                            })
                            .collect();
                        let new_total = kept.len() + body.len();
                        let mut head: Vec<String> = words[..words.len() - 2]
                            .iter()
                            .map(|w| (*w).to_owned())
                            .collect();
                        head.push(kept.len().to_string());
                        head.push(new_total.to_string());
                        let mut out = head.join(" ").into_bytes();
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(kept.as_bytes());
                        out.extend_from_slice(body);
                        out.extend_from_slice(b"\r\n");
                        to.write_all(&out).await?;
                        continue;
                    }
                }
                to.write_all(line.as_bytes()).await?;
                to.write_all(&payload).await?;
            }
            _ => to.write_all(line.as_bytes()).await?,
        }
    }
}
