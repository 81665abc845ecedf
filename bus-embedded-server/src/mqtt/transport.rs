//! The byte stream under an MQTT connection: plain TCP, or TLS from the
//! first byte when the `mqtt { }` block has `tls {}` (the handshake runs
//! here, with the rustls acceptor `crate::tls` builds for every
//! listener, bounded by the block's TLS `timeout` and abandoned at
//! shutdown). Must not read MQTT packets: `connection` does.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A plain or TLS MQTT connection.
pub(crate) enum MqttStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl MqttStream {
    /// `stream` as the listener serves it: as is, or after a TLS
    /// handshake finished within `timeout`. `None` when the handshake
    /// failed, took too long or shutdown came first (nats-server closes
    /// such a connection without a word too).
    pub(crate) async fn accept(
        stream: TcpStream,
        tls: Option<(&TlsAcceptor, Duration)>,
        mut shutdown: watch::Receiver<bool>,
        peer: SocketAddr,
        debug: bool,
    ) -> Option<MqttStream> {
        let _ = stream.set_nodelay(true);
        let Some((acceptor, timeout)) = tls else {
            return Some(MqttStream::Plain(stream));
        };
        let handshake = tokio::time::timeout(timeout, crate::tls::accept(acceptor, stream));
        let outcome = tokio::select! {
            r = handshake => r,
            _ = shutdown.changed() => return None,
        };
        match outcome {
            Ok(Ok(tls)) => Some(MqttStream::Tls(Box::new(tls))),
            Ok(Err(e)) => {
                if crate::tls::is_client_cert_error(&e) {
                    tracing::error!("{peer} - mqtt: TLS handshake error: {e}");
                } else if debug {
                    tracing::debug!("{peer} - mqtt: TLS handshake error: {e}");
                }
                None
            }
            Err(_) => {
                if debug {
                    tracing::debug!("{peer} - mqtt: TLS handshake timeout");
                }
                None
            }
        }
    }
}

impl AsyncRead for MqttStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MqttStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MqttStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MqttStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MqttStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MqttStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MqttStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MqttStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MqttStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MqttStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MqttStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MqttStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MqttStream::Plain(s) => s.is_write_vectored(),
            MqttStream::Tls(s) => s.is_write_vectored(),
        }
    }
}
