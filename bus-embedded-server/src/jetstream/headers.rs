//! NATS message header blocks (`NATS/1.0[ status[ text]]\r\nK: V\r\n...\r\n\r\n`):
//! reading single values and building status and data headers.

/// The value of header `name` in a header block (first occurrence;
/// names compare case-sensitively first, then case-insensitively).
pub fn get<'a>(hdr: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(hdr).ok()?;
    let mut lines = text.split("\r\n");
    lines.next()?; // NATS/1.0 line
    let mut loose = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim();
        if k == name {
            return Some(v.trim());
        }
        if loose.is_none() && k.eq_ignore_ascii_case(name) {
            loose = Some(v.trim());
        }
    }
    loose
}

/// A header block's status code (`NATS/1.0 404 ...`), if any.
pub fn status(hdr: &[u8]) -> Option<u16> {
    let line = hdr.split(|b| *b == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("NATS/1.0")?.trim_start();
    rest.split(' ').next()?.parse().ok()
}

/// `hdr` with `name: value` appended after its existing lines (a new
/// block if `hdr` is empty); the rest of the block is kept byte for byte.
pub fn with_added(hdr: &[u8], name: &str, value: &str) -> Vec<u8> {
    let kept = match hdr.strip_suffix(b"\r\n\r\n") {
        Some(lines) => [lines, b"\r\n"].concat(),
        None if hdr.is_empty() => b"NATS/1.0\r\n".to_vec(),
        None => {
            let mut v = hdr.to_vec();
            if !v.ends_with(b"\r\n") {
                v.extend_from_slice(b"\r\n");
            }
            v
        }
    };
    let mut out = kept;
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// `hdr` without the lines whose name is exactly `name`; empty when only
/// the `NATS/1.0` line would be left (nats-server drops such a block).
pub fn without(hdr: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(hdr.len());
    for (i, line) in hdr.split_inclusive(|&b| b == b'\n').enumerate() {
        let key = line.iter().position(|&b| b == b':').map(|at| &line[..at]);
        if i > 0 && key == Some(name.as_bytes()) {
            continue;
        }
        out.extend_from_slice(line);
    }
    if out.len() <= b"NATS/1.0\r\n\r\n".len() {
        out.clear();
    }
    out
}

/// The JetStream API level this server implements (ADR-44), reported in
/// `$JS.API.INFO` and INFO's `api_lvl`, and checked against
/// `Nats-Required-Api-Level`. Level 4 is nats-server 2.14's: per-message
/// TTLs and subject delete markers (1), atomic batches, counters and
/// message schedules (2), fast-ingest batches (4, the level nats-server
/// 2.15.1 requires of a stream with `allow_batched`). nats-server 2.15
/// reports 5.
pub const API_LEVEL: i64 = 4;

/// Whether a request's `Nats-Required-Api-Level` asks for more than
/// [`API_LEVEL`] (or is not a number; empty asks for nothing).
pub(crate) fn requires_higher_level(hdr: &[u8]) -> bool {
    if hdr.is_empty() {
        return false;
    }
    match get(hdr, "Nats-Required-Api-Level") {
        None | Some("") => false,
        Some(v) => v.trim().parse::<i64>().map_or(true, |n| n > API_LEVEL),
    }
}

/// Builds a header block.
#[derive(Debug, Clone)]
pub struct HeaderBuilder {
    buf: Vec<u8>,
}

impl HeaderBuilder {
    /// `NATS/1.0` with no status.
    pub fn new() -> Self {
        HeaderBuilder {
            buf: b"NATS/1.0\r\n".to_vec(),
        }
    }

    /// `NATS/1.0 <code> <text>`.
    pub fn status(code: u16, text: &str) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"NATS/1.0 ");
        buf.extend_from_slice(code.to_string().as_bytes());
        if !text.is_empty() {
            buf.push(b' ');
            buf.extend_from_slice(text.as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        HeaderBuilder { buf }
    }

    /// Adds `name: value`.
    pub fn add(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value.to_string().as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Appends the header lines (not the version line, not the final blank
    /// line) of an existing block.
    pub fn extend_from(mut self, hdr: &[u8]) -> Self {
        if hdr.is_empty() {
            return self;
        }
        let start = hdr
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(hdr.len(), |p| p + 2);
        let mut body = &hdr[start.min(hdr.len())..];
        while body.ends_with(b"\r\n") {
            body = &body[..body.len() - 2];
        }
        if !body.is_empty() {
            self.buf.extend_from_slice(body);
            self.buf.extend_from_slice(b"\r\n");
        }
        self
    }

    /// The finished block (ends with the blank line).
    pub fn build(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(b"\r\n");
        self.buf
    }
}

impl Default for HeaderBuilder {
    fn default() -> Self {
        HeaderBuilder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_status() {
        let h = b"NATS/1.0 408 Request Timeout\r\nNats-Msg-Id: abc\r\nkv-operation: DEL\r\n\r\n";
        assert_eq!(get(h, "Nats-Msg-Id"), Some("abc"));
        assert_eq!(get(h, "KV-Operation"), Some("DEL"));
        assert_eq!(get(h, "Missing"), None);
        assert_eq!(status(h), Some(408));
        assert_eq!(status(b"NATS/1.0\r\n\r\n"), None);
    }

    #[test]
    fn an_added_header_keeps_the_block_as_it_was() {
        let h = b"NATS/1.0\r\nB: 2\r\nA: 1\r\n\r\n";
        assert_eq!(
            with_added(h, "C", "3"),
            b"NATS/1.0\r\nB: 2\r\nA: 1\r\nC: 3\r\n\r\n".to_vec()
        );
        assert_eq!(
            with_added(b"", "C", "3"),
            b"NATS/1.0\r\nC: 3\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn without_drops_the_named_lines_and_an_emptied_block() {
        let h = b"NATS/1.0\r\nA: 1\r\nNats-Required-Api-Level: 0\r\nB: 2\r\n\r\n";
        assert_eq!(
            without(h, "Nats-Required-Api-Level"),
            b"NATS/1.0\r\nA: 1\r\nB: 2\r\n\r\n".to_vec()
        );
        assert_eq!(without(h, "C"), h.to_vec());
        assert!(without(b"NATS/1.0\r\nX: 1\r\n\r\n", "X").is_empty());
    }

    #[test]
    fn builds_blocks_and_merges_existing_headers() {
        let h = HeaderBuilder::new()
            .add("Nats-Stream", "S")
            .extend_from(b"NATS/1.0\r\nA: 1\r\n\r\n")
            .build();
        assert_eq!(h, b"NATS/1.0\r\nNats-Stream: S\r\nA: 1\r\n\r\n".to_vec());
        let s = HeaderBuilder::status(404, "No Messages").build();
        assert_eq!(s, b"NATS/1.0 404 No Messages\r\n\r\n".to_vec());
    }
}
