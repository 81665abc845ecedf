//! MQTT 3.1.1 packets written and read by hand, for tests that need what a
//! client library will not send (refused features, garbage, a vanishing
//! client) or that must see the exact bytes. Used by `compat_mqtt.rs` and
//! `crash_mqtt.rs` (`mod mqtt_raw;`).
// Each test file uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// An MQTT string: u16 big-endian length, then the bytes.
pub fn mqtt_str(s: &str) -> Vec<u8> {
    let mut v = u16::try_from(s.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// A packet: the first byte, the remaining length (variable-length
/// integer), the body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// CONNECT with protocol level 4, `flags`, keep-alive 30 s and an optional
/// will (topic, message).
pub fn connect_packet(client_id: &str, flags: u8, will: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = mqtt_str("MQTT");
    body.extend_from_slice(&[4, flags, 0, 30]);
    body.extend(mqtt_str(client_id));
    if let Some((t, m)) = will {
        body.extend(mqtt_str(t));
        body.extend(mqtt_str(m));
    }
    packet(0x10, &body)
}

/// Exactly `n` bytes from the server, within 5 s.
pub async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("answer in time")
        .expect("answer");
    buf
}

/// True when the server closes the connection (EOF) within 5 s.
pub async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}
