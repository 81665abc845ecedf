//! TLS for client connections (rustls with the ring provider), as
//! nats-server does it:
//!
//! * by default the server sends INFO in plain text with `"tls_required":
//!   true` (and `"tls_verify": true` when client certificates are verified),
//!   then waits for the client to start the TLS handshake; anything else (a
//!   plain `CONNECT`) fails the handshake and the connection is closed without
//!   a reply, exactly like nats-server 2.15.1;
//! * with `handshake_first` the TLS handshake comes first and INFO is sent
//!   inside TLS;
//! * with `verify` the client must present a certificate signed by
//!   `ca_file` (mutual TLS);
//! * a handshake not finished within `timeout` (default 2 s, nats-server's)
//!   closes the connection.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig as RustlsConfig};

use crate::config::TlsConfig;

fn io_text(path: &Path, e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => format!("open {}: {io}", path.display()),
        other => format!("{}: {other:?}", path.display()),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| io_text(path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io_text(path, &e))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// Loads the files and builds the acceptor; the error text says which file
/// and why (nats-server refuses to start in the same cases).
pub(crate) fn acceptor(cfg: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, String> {
    let pair = |e: String| format!("error parsing X509 certificate/key pair: {e}");
    let chain = certs(&cfg.cert_file).map_err(pair)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            pair(format!("{}: no private key found", cfg.key_file.display()))
        }
        e => pair(io_text(&cfg.key_file, &e)),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = RustlsConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if cfg.verify {
        let Some(ca_file) = &cfg.ca_file else {
            return Err(
                "verify requires ca_file (the CA that signs client certificates)".to_owned(),
            );
        };
        let mut roots = RootCertStore::empty();
        for cert in certs(ca_file)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca_file.display()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        if let Some(ca_file) = &cfg.ca_file {
            // Checked like nats-server does (a missing file stops the start)
            // even though only `verify` uses it.
            certs(ca_file)?;
        }
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| pair(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
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
