//! TLS for client connections (rustls with the ring provider), as
//! nats-server does it:
//!
//! * by default the server sends INFO in plain text with `"tls_required":
//!   true` (and `"tls_verify": true` when client certificates are verified),
//!   then waits for the client to start the TLS handshake; anything else (a
//!   plain `CONNECT`) fails the handshake and the connection is closed without
//!   a reply, exactly like nats-server 2.15.1;
//! * with `handshake_first` the TLS handshake comes first and INFO is sent
//!   inside TLS; with a fallback delay (`handshake_first: auto`, 50 ms, or
//!   a duration) a client that has sent nothing by then gets INFO in plain
//!   text and goes on as without `handshake_first`, so TLS-first clients
//!   and the others both connect;
//! * with `verify` the client must present a certificate signed by
//!   `ca_file` (mutual TLS);
//! * a handshake not finished within `timeout` (default 2 s, nats-server's)
//!   closes the connection.
//!
//! This module owns the rustls configuration and the handshake; it hands
//! the session a byte stream and must not read or write protocol ops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig as RustlsConfig};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

/// A PEM file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    /// It cannot be opened or read.
    #[error("open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not well-formed PEM.
    #[error("{}: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        detail: String,
    },
    /// It holds no certificate.
    #[error("{}: no certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// It holds no private key.
    #[error("{}: no private key found", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
}

/// Why the TLS settings cannot be served (nats-server refuses to start in
/// the same cases).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The certificate or its key cannot be read.
    #[error("error parsing X509 certificate/key pair: {0}")]
    KeyPair(PemFileError),
    /// The certificate and key do not go together.
    #[error("error parsing X509 certificate/key pair: {0}")]
    Mismatch(rustls::Error),
    /// `verify` without `ca_file`.
    #[error("verify requires ca_file (the CA that signs client certificates)")]
    VerifyWithoutCa,
    /// The CA file cannot be read.
    #[error(transparent)]
    CaFile(PemFileError),
    /// The CA file holds a certificate rustls cannot use.
    #[error("{}: {reason}", path.display())]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// rustls cannot build a configuration.
    #[error("{0}")]
    Rustls(rustls::Error),
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> PemFileError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => PemFileError::Open {
            path: path.to_path_buf(),
            source,
        },
        other => PemFileError::Malformed {
            path: path.to_path_buf(),
            detail: format!("{other:?}"),
        },
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(PemFileError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Loads the files and builds the acceptor; the error says which file and
/// why.
pub(crate) fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsSetupError> {
    let chain = certs(&cfg.cert_file).map_err(TlsSetupError::KeyPair)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| {
        TlsSetupError::KeyPair(match e {
            rustls::pki_types::pem::Error::NoItemsFound => PemFileError::NoPrivateKey {
                path: cfg.key_file.clone(),
            },
            e => pem_error(&cfg.key_file, e),
        })
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = RustlsConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Rustls)?;
    let builder = if cfg.verify {
        let Some(ca_file) = &cfg.ca_file else {
            return Err(TlsSetupError::VerifyWithoutCa);
        };
        let bad_ca = |reason: String| TlsSetupError::BadCa {
            path: ca_file.clone(),
            reason,
        };
        let mut roots = RootCertStore::empty();
        for cert in certs(ca_file).map_err(TlsSetupError::CaFile)? {
            roots.add(cert).map_err(|e| bad_ca(e.to_string()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| bad_ca(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        if let Some(ca_file) = &cfg.ca_file {
            // Checked like nats-server does (a missing file stops the start)
            // even though only `verify` uses it.
            certs(ca_file).map_err(TlsSetupError::CaFile)?;
        }
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(TlsSetupError::Mismatch)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// True when a handshake failed because of the client certificate (missing
/// or not trusted): nats-server logs those as errors, other handshake
/// failures (plain-text clients, port scanners, timeouts) at debug level.
pub(crate) fn is_client_cert_error(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_))
    )
}

/// The content type of a TLS handshake record (a ClientHello starts with it).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The server side of a TLS handshake on `stream` (no time limit: the
/// caller bounds it). Like Go's TLS stack, it gives up without a reply (no
/// TLS alert) when the first record is not a handshake: a plain-text
/// client (its CONNECT) just sees the connection closed, as with
/// nats-server. Every listener with TLS (client port, MQTT) goes through
/// here.
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "tls: first record does not look like a TLS handshake",
            ));
        }
        Err(e) => return Err(e),
    }
    acceptor.accept(stream).await
}

/// A finished TLS handshake.
pub(crate) struct Upgraded {
    pub stream: TlsStream<TcpStream>,
    /// INFO already went out in plain text (not a TLS-first client).
    pub info_sent: bool,
}

/// The TLS handshake, as nats-server does it: unless `handshake_first`,
/// INFO goes out in plain text first and the client must then start the
/// handshake; with `handshake_first` and a fallback delay, INFO goes out
/// in plain text only if the client has sent nothing by then. A failure or
/// a handshake longer than the TLS timeout closes the connection without a
/// word (nats-server sends nothing either).
///
/// `info` is the INFO line to send in plain text; `shutdown` ends the wait
/// when the server stops; `debug` logs each step as nats-server's `-D`
/// does.
pub(crate) async fn handshake(
    mut stream: TcpStream,
    acceptor: &TlsAcceptor,
    config: &TlsConfig,
    info: &[u8],
    mut shutdown: watch::Receiver<bool>,
    (addr, cid, debug): (SocketAddr, u64, bool),
) -> Option<Upgraded> {
    let (timeout, mut handshake_first) = (config.timeout, config.handshake_first);
    if debug {
        tracing::debug!("{addr} - cid:{cid} - Client connection created");
    }
    if handshake_first && let Some(fallback) = config.handshake_first_fallback {
        // Anything the client sends within the delay means it starts the
        // handshake (a rogue byte fails the handshake below); silence means
        // it waits for INFO.
        let mut first = [0u8; 1];
        let waited = tokio::select! {
            r = tokio::time::timeout(fallback, stream.peek(&mut first)) => r,
            _ = shutdown.changed() => return None,
        };
        match waited {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) | Ok(Err(_)) => return None,
            Err(_) => handshake_first = false,
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    if !handshake_first {
        match tokio::time::timeout_at(deadline, stream.write_all(info)).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
    if debug {
        tracing::debug!("{addr} - cid:{cid} - Starting TLS client connection handshake");
    }
    let handshake = accept(acceptor, stream);
    let outcome = tokio::select! {
        r = tokio::time::timeout_at(deadline, handshake) => r,
        _ = shutdown.changed() => return None,
    };
    match outcome {
        Ok(Ok(tls)) => {
            if debug {
                let (_, conn) = tls.get_ref();
                tracing::debug!("{addr} - cid:{cid} - TLS handshake complete");
                tracing::debug!(
                    "{addr} - cid:{cid} - TLS version {}, cipher suite {}",
                    conn.protocol_version()
                        .map(|v| format!("{v:?}").replace("TLSv1_", "1."))
                        .unwrap_or_default(),
                    conn.negotiated_cipher_suite()
                        .map(|c| format!("{:?}", c.suite()))
                        .unwrap_or_default()
                );
            }
            Some(Upgraded {
                stream: tls,
                info_sent: !handshake_first,
            })
        }
        Ok(Err(e)) => {
            if is_client_cert_error(&e) {
                tracing::error!("{addr} - cid:{cid} - TLS handshake error: {e}");
            } else if debug {
                tracing::debug!("{addr} - cid:{cid} - TLS handshake error: {e}");
            }
            if debug {
                tracing::debug!(
                    "{addr} - cid:{cid} - Client connection closed: TLS Handshake Failure"
                );
            }
            None
        }
        Err(_) => {
            if debug {
                tracing::debug!("{addr} - cid:{cid} - TLS handshake timeout");
                tracing::debug!(
                    "{addr} - cid:{cid} - Client connection closed: TLS Handshake Failure"
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_refused_with_the_file_and_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let missing = dir.path().join("missing.pem");
        let err = |cfg: TlsConfig| acceptor(&cfg).err().expect("refused");
        assert!(matches!(
            err(TlsConfig::new(&missing, &missing)),
            TlsSetupError::KeyPair(PemFileError::Open { ref path, .. }) if *path == missing
        ));
        let e = err(TlsConfig::new(&empty, &empty));
        assert!(
            matches!(
                e,
                TlsSetupError::KeyPair(PemFileError::NoCertificate { .. })
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("error parsing X509 certificate/key pair: ")
        );
        assert!(e.to_string().ends_with("empty.pem: no certificate found"));
    }
}
