//! Per-segment index files (issue #15 item 6): what a full scan of a
//! sealed segment finds, saved next to it so `open` need not read the
//! segment again.
//!
//! A segment's scan is a list of [`Event`]s: every record read (kind,
//! sequence, timestamp, length, subject, header and state/batch values,
//! not the payload), every damaged span skipped, and a damaged tail with
//! nothing valid after it. The store replays these events exactly as it
//! replays a scan of the bytes, so an index file can only save time, never
//! change what `open` finds. The file `<base>.idx` holds the events of the
//! segment `<base>.log`, with the segment's length and its last 4 bytes (the
//! last record's checksum) to recognise a segment that changed since, and a
//! CRC32C over the whole file: any index file that does not verify, is for
//! another length or tail, or is missing is ignored and rebuilt by scanning
//! the segment. Format: `docs/file-store.md` ("Index files").
//!
//! Must not do I/O or touch the store's state: it scans bytes and encodes
//! and decodes index files.

use std::collections::HashMap;

use super::record::{Format, RecordKind, decode_record};
use super::{MIN_RECORD, find_next_record};

/// Magic at the start of an index file: `B5 1E 49 58` (`"\xB5\x1EIX"`).
pub(super) const IDX_MAGIC: [u8; 4] = [0xB5, 0x1E, b'I', b'X'];
/// Index file format version.
pub(super) const IDX_VERSION: u8 = 1;
/// The fixed header: magic, version, 3 zero bytes, base, segment length,
/// segment tail, body length.
const IDX_HEADER_LEN: usize = 4 + 4 + 8 + 8 + 4 + 8;
/// Index file suffix.
pub(super) const IDX_SUFFIX: &str = ".idx";

/// One record as the store replays it (no payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RecInfo {
    pub(super) kind: RecordKind,
    pub(super) seq: u64,
    pub(super) ts: i64,
    /// The record's length on disk.
    pub(super) len: u32,
    /// 1 + its index into [`Scan::subjects`]; 0: no subject.
    pub(super) subject: u32,
    pub(super) hdr_len: u32,
    pub(super) data_len: u32,
    /// State record: (floor, dead_below); batch records: (count, 0); `None`
    /// when the record's payload does not hold them.
    pub(super) values: Option<(u64, u64)>,
}

/// What the scan of a segment met, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    /// A valid record.
    Rec(RecInfo),
    /// Damaged bytes, skipped: a valid record follows them.
    Damage { len: u64, reason: String },
    /// Damaged bytes up to the end of the segment.
    Tail { reason: String },
}

/// A segment's scan: where its records start, the subjects its messages
/// use and the events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Scan {
    pub(super) start: u64,
    pub(super) subjects: Vec<String>,
    pub(super) events: Vec<Event>,
}

/// Scans a segment's bytes from `start` (after its header) in `format`.
pub(super) fn scan(buf: &[u8], format: Format, start: usize) -> Scan {
    let mut out = Scan {
        start: start as u64,
        ..Scan::default()
    };
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut pos = start;
    while let Some(rest) = buf.get(pos..) {
        if rest.is_empty() {
            break;
        }
        let (reason, next) = match decode_record(rest, format) {
            Ok(Some((rec, n))) => {
                let values = match rec.kind {
                    RecordKind::State => rec.state_values(),
                    RecordKind::Batch | RecordKind::BatchEnd => rec.batch_count().map(|c| (c, 0)),
                    _ => None,
                };
                let subject = if rec.subject.is_empty() {
                    0
                } else {
                    let next_id = ids.len() as u32;
                    *ids.entry(rec.subject).or_insert_with(|| {
                        out.subjects.push(rec.subject.to_owned());
                        next_id
                    }) + 1
                };
                out.events.push(Event::Rec(RecInfo {
                    kind: rec.kind,
                    seq: rec.seq,
                    ts: rec.ts,
                    len: n as u32,
                    subject,
                    hdr_len: rec.hdr.len() as u32,
                    data_len: rec.data.len() as u32,
                    values,
                }));
                pos += n;
                continue;
            }
            Ok(None) => ("incomplete record".to_owned(), None),
            Err(e) => {
                let next = match e.skip_len() {
                    Some(n) if pos + n < buf.len() => find_next_record(buf, pos + n, format),
                    Some(_) => None,
                    None => find_next_record(buf, pos + 1, format),
                };
                (e.to_string(), next)
            }
        };
        match next {
            Some(q) => {
                out.events.push(Event::Damage {
                    len: (q - pos) as u64,
                    reason,
                });
                pos = q;
            }
            None => {
                out.events.push(Event::Tail { reason });
                break;
            }
        }
    }
    out
}

fn put_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Bounds-checked reader; every method returns `None` past the end.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn var(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn var32(&mut self) -> Option<u32> {
        u32::try_from(self.var()?).ok()
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let b = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }
}

/// What an index file must match: the segment it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentId {
    pub(super) base: u64,
    /// The segment's length.
    pub(super) len: u64,
    /// Its last 4 bytes (zeros if shorter): the last record's checksum.
    pub(super) tail: [u8; 4],
}

/// The index file bytes for `scan` of the segment `id`.
pub(super) fn encode(scan: &Scan, id: SegmentId) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + scan.events.len() * 10);
    put_var(&mut body, scan.start);
    put_var(&mut body, scan.subjects.len() as u64);
    for s in &scan.subjects {
        put_var(&mut body, s.len() as u64);
        body.extend_from_slice(s.as_bytes());
    }
    put_var(&mut body, scan.events.len() as u64);
    let (mut seq, mut ts) = (0u64, 0i64);
    for ev in &scan.events {
        match ev {
            Event::Rec(r) => {
                body.push(r.kind.to_byte());
                put_var(&mut body, zigzag(r.seq.wrapping_sub(seq) as i64));
                put_var(&mut body, zigzag(r.ts.wrapping_sub(ts)));
                put_var(&mut body, u64::from(r.len));
                put_var(&mut body, u64::from(r.subject));
                put_var(&mut body, u64::from(r.hdr_len));
                put_var(&mut body, u64::from(r.data_len));
                match r.values {
                    Some((a, b)) => {
                        body.push(1);
                        put_var(&mut body, a);
                        put_var(&mut body, b);
                    }
                    None => body.push(0),
                }
                seq = r.seq;
                ts = r.ts;
            }
            Event::Damage { len, reason } => {
                body.push(0xFE);
                put_var(&mut body, *len);
                put_var(&mut body, reason.len() as u64);
                body.extend_from_slice(reason.as_bytes());
            }
            Event::Tail { reason } => {
                body.push(0xFF);
                put_var(&mut body, reason.len() as u64);
                body.extend_from_slice(reason.as_bytes());
            }
        }
    }
    let mut out = Vec::with_capacity(IDX_HEADER_LEN + body.len() + 4);
    out.extend_from_slice(&IDX_MAGIC);
    out.extend_from_slice(&[IDX_VERSION, 0, 0, 0]);
    out.extend_from_slice(&id.base.to_le_bytes());
    out.extend_from_slice(&id.len.to_le_bytes());
    out.extend_from_slice(&id.tail);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Tests: [`decode_reusing`] into a new vector.
#[cfg(test)]
pub(super) fn decode(bytes: &[u8], id: SegmentId) -> Option<Scan> {
    decode_reusing(bytes, id, Vec::new())
}

/// The scan an index file holds, if it verifies and describes exactly the
/// segment `id` (`None`: ignore it and scan the segment). Never panics,
/// whatever the bytes. Its events go into `events` (cleared first): `open`
/// hands back the vector of the previous segment, so it is not allocated
/// (and its pages not faulted in) again for every segment.
pub(super) fn decode_reusing(bytes: &[u8], id: SegmentId, mut events: Vec<Event>) -> Option<Scan> {
    let crc_at = bytes.len().checked_sub(4)?;
    let want = u32::from_le_bytes(bytes.get(crc_at..)?.try_into().ok()?);
    let covered = bytes.get(..crc_at)?;
    if crc32c::crc32c(covered) != want || covered.len() < IDX_HEADER_LEN {
        return None;
    }
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            covered.get(at..at + 8)?.try_into().ok()?,
        ))
    };
    if covered.get(..4)? != IDX_MAGIC || covered.get(4..8)? != [IDX_VERSION, 0, 0, 0] {
        return None;
    }
    if u64_at(8)? != id.base || u64_at(16)? != id.len || covered.get(24..28)? != id.tail {
        return None;
    }
    let body = covered.get(IDX_HEADER_LEN..)?;
    if u64_at(28)? != body.len() as u64 {
        return None;
    }
    let mut r = Reader { buf: body, at: 0 };
    let start = r.var()?;
    let nsubj = r.var()?;
    // Every subject takes at least one byte: a count past that is damage.
    if nsubj > body.len() as u64 {
        return None;
    }
    let mut subjects = Vec::with_capacity(nsubj as usize);
    for _ in 0..nsubj {
        let n = usize::try_from(r.var()?).ok()?;
        subjects.push(std::str::from_utf8(r.bytes(n)?).ok()?.to_owned());
    }
    let nev = r.var()?;
    if nev > body.len() as u64 {
        return None;
    }
    events.clear();
    events.reserve(nev as usize);
    let (mut seq, mut ts) = (0u64, 0i64);
    // The events must cover the segment exactly, as its scan did.
    let mut pos = start;
    for _ in 0..nev {
        let tag = r.byte()?;
        match tag {
            0xFE => {
                let len = r.var()?;
                let n = usize::try_from(r.var()?).ok()?;
                let reason = std::str::from_utf8(r.bytes(n)?).ok()?.to_owned();
                pos = pos.checked_add(len)?;
                events.push(Event::Damage { len, reason });
            }
            0xFF => {
                let n = usize::try_from(r.var()?).ok()?;
                let reason = std::str::from_utf8(r.bytes(n)?).ok()?.to_owned();
                pos = id.len;
                events.push(Event::Tail { reason });
            }
            k => {
                let kind = RecordKind::from_byte(k)?;
                seq = seq.wrapping_add(unzigzag(r.var()?) as u64);
                ts = ts.wrapping_add(unzigzag(r.var()?));
                let len = r.var32()?;
                let subject = r.var32()?;
                let hdr_len = r.var32()?;
                let data_len = r.var32()?;
                let values = match r.byte()? {
                    0 => None,
                    1 => Some((r.var()?, r.var()?)),
                    _ => return None,
                };
                if subject as usize > subjects.len() || (len as usize) < MIN_RECORD {
                    return None;
                }
                pos = pos.checked_add(u64::from(len))?;
                events.push(Event::Rec(RecInfo {
                    kind,
                    seq,
                    ts,
                    len,
                    subject,
                    hdr_len,
                    data_len,
                    values,
                }));
            }
        }
        if pos > id.len {
            return None;
        }
    }
    if r.at != body.len() || pos != id.len {
        return None;
    }
    Some(Scan {
        start,
        subjects,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::super::record::encode_record;
    use super::*;

    fn segment() -> (Vec<u8>, Format) {
        let format = Format::salted(0x1234_5678_9ABC_DEF0);
        let mut buf = vec![0u8; 40];
        for seq in 1..=50u64 {
            let subj = format!("s.{}", seq % 4);
            let hdr: &[u8] = if seq % 3 == 0 {
                b"NATS/1.0\r\n\r\n"
            } else {
                b""
            };
            encode_record(
                &mut buf,
                format,
                RecordKind::Msg,
                seq,
                seq as i64 * 1_000_003,
                subj.as_bytes(),
                hdr,
                &vec![7u8; seq as usize],
            )
            .expect("small");
            if seq % 10 == 0 {
                encode_record(
                    &mut buf,
                    format,
                    RecordKind::Delete,
                    seq - 5,
                    0,
                    b"",
                    b"",
                    b"",
                )
                .expect("small");
            }
        }
        let mut state = [0u8; 16];
        state[..8].copy_from_slice(&3u64.to_le_bytes());
        state[8..].copy_from_slice(&4u64.to_le_bytes());
        encode_record(&mut buf, format, RecordKind::State, 50, 9, b"", b"", &state).expect("small");
        (buf, format)
    }

    fn id_of(buf: &[u8]) -> SegmentId {
        let mut tail = [0u8; 4];
        tail.copy_from_slice(&buf[buf.len() - 4..]);
        SegmentId {
            base: 1,
            len: buf.len() as u64,
            tail,
        }
    }

    #[test]
    fn an_index_file_round_trips_the_scan_of_its_segment() {
        let (mut buf, format) = segment();
        // A damaged record in the middle: reported the same from the index.
        let mid = 40 + 300;
        buf[mid] ^= 0x55;
        let scan1 = scan(&buf, format, 40);
        assert!(
            scan1
                .events
                .iter()
                .any(|e| matches!(e, Event::Damage { .. }))
        );
        let id = id_of(&buf);
        let bytes = encode(&scan1, id);
        assert_eq!(decode(&bytes, id), Some(scan1));
    }

    #[test]
    fn an_index_file_for_another_length_tail_or_base_is_refused() {
        let (buf, format) = segment();
        let s = scan(&buf, format, 40);
        let id = id_of(&buf);
        let bytes = encode(&s, id);
        assert!(
            decode(
                &bytes,
                SegmentId {
                    len: id.len + 44,
                    ..id
                }
            )
            .is_none()
        );
        assert!(decode(&bytes, SegmentId { base: 2, ..id }).is_none());
        assert!(
            decode(
                &bytes,
                SegmentId {
                    tail: [1, 2, 3, 4],
                    ..id
                }
            )
            .is_none()
        );
    }

    #[test]
    fn every_bit_flip_and_truncation_of_an_index_file_is_refused_without_panic() {
        let (buf, format) = segment();
        let id = id_of(&buf);
        let bytes = encode(&scan(&buf, format, 40), id);
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                assert!(decode(&b, id).is_none(), "flip at {i}");
            }
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], id).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn garbage_with_a_valid_checksum_is_refused_without_panic() {
        // The checksum is not a defence against a crafted file; decoding
        // must still never panic nor accept a file that does not add up.
        let (buf, _) = segment();
        let id = id_of(&buf);
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for n in 0..2_000usize {
            let mut out = Vec::new();
            out.extend_from_slice(&IDX_MAGIC);
            out.extend_from_slice(&[IDX_VERSION, 0, 0, 0]);
            out.extend_from_slice(&id.base.to_le_bytes());
            out.extend_from_slice(&id.len.to_le_bytes());
            out.extend_from_slice(&id.tail);
            let body_len = n % 64;
            out.extend_from_slice(&(body_len as u64).to_le_bytes());
            for _ in 0..body_len {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                out.push(rng as u8);
            }
            let crc = crc32c::crc32c(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            if let Some(s) = decode(&out, id) {
                // Accepted only if it covers the segment exactly.
                let mut pos = s.start;
                for e in &s.events {
                    pos += match e {
                        Event::Rec(r) => u64::from(r.len),
                        Event::Damage { len, .. } => *len,
                        Event::Tail { .. } => id.len - pos,
                    };
                }
                assert_eq!(pos, id.len);
            }
        }
    }
}
