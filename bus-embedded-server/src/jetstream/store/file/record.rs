//! The on-disk record of the file store: encoder and a panic-free decoder,
//! and the segment file header that carries the store's salt.
//!
//! Record layout (all integers little-endian; see `docs/file-store.md`):
//!
//! | offset | size | field                                            |
//! |-------:|-----:|--------------------------------------------------|
//! | 0      | 2    | magic `B5 1E`                                    |
//! | 2      | 1    | format version (1 unsalted, 2 salted)            |
//! | 3      | 1    | kind (1 msg, 2 delete, 3 state, 4 erased)        |
//! | 4      | 4    | total length of the record, header to checksum   |
//! | 8      | 8    | sequence                                         |
//! | 16     | 8    | timestamp (Unix ns, i64)                         |
//! | 24     | 4    | subject length                                   |
//! | 28     | 4    | header-block length                              |
//! | 32     | 4    | payload length                                   |
//! | 36     | 4    | CRC32C of bytes 0..36 (header checksum)          |
//! | 40     | ..   | subject, header block, payload                   |
//! | end-4  | 4    | CRC32C of every byte before it (record checksum) |
//!
//! Version 2 seeds both checksums with the segment's salt (a random number
//! per store, in the segment header), so bytes a client stored (a payload
//! shaped like a record, a copy of another store's segment) never verify
//! as a record when the reader scans past damage. Version 1 (unsalted,
//! segments without a header) is still read.

/// First two bytes of every record.
pub const MAGIC: [u8; 2] = [0xB5, 0x1E];
/// Record format version written by this code (salted checksums).
pub const VERSION: u8 = 2;
/// The first record format (unsalted checksums), still read.
pub const VERSION_1: u8 = 1;

/// How a segment's records are checksummed: the version byte and the
/// seeds of the two CRC32Cs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    version: u8,
    header_seed: u32,
    record_seed: u32,
}

impl Format {
    /// Version 1: unsalted (segments written before the salt existed).
    pub const V1: Format = Format {
        version: VERSION_1,
        header_seed: 0,
        record_seed: 0,
    };

    /// Version 2 with this salt: the header checksum is seeded with its low
    /// 32 bits, the record checksum with its high 32 bits, so forging a
    /// record takes guessing 64 unknown bits.
    pub fn salted(salt: u64) -> Format {
        Format {
            version: VERSION,
            header_seed: salt as u32,
            record_seed: (salt >> 32) as u32,
        }
    }

    /// The version byte of its records.
    pub fn version(self) -> u8 {
        self.version
    }

    fn header_crc(self, bytes: &[u8]) -> u32 {
        crc32c::crc32c_append(self.header_seed, bytes)
    }

    fn record_crc(self, bytes: &[u8]) -> u32 {
        crc32c::crc32c_append(self.record_seed, bytes)
    }
}

/// Size of a segment file header (two copies of magic, version, salt, CRC).
pub const SEGMENT_HEADER_LEN: usize = 40;
/// First bytes of a segment header copy.
pub const SEGMENT_MAGIC: [u8; 4] = [0xB5, 0x1E, b'S', b'G'];
const SEGMENT_COPY_LEN: usize = SEGMENT_HEADER_LEN / 2;

/// The header every version-2 segment starts with: two identical 20-byte
/// copies of `SEGMENT_MAGIC`, the version (2), three zero bytes, the salt
/// (u64) and a CRC32C of the 16 bytes before it. One damaged copy is
/// survived.
pub fn encode_segment_header(salt: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut copy = [0u8; SEGMENT_COPY_LEN];
    copy[..4].copy_from_slice(&SEGMENT_MAGIC);
    copy[4] = VERSION;
    copy[8..16].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&copy[..16]);
    copy[16..].copy_from_slice(&crc.to_le_bytes());
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[..SEGMENT_COPY_LEN].copy_from_slice(&copy);
    out[SEGMENT_COPY_LEN..].copy_from_slice(&copy);
    out
}

/// The salt of the segment header at the start of `buf`, if either copy
/// verifies. Never panics.
pub fn decode_segment_header(buf: &[u8]) -> Option<u64> {
    for i in 0..2 {
        let at = i * SEGMENT_COPY_LEN;
        let Some(copy) = buf.get(at..at + SEGMENT_COPY_LEN) else {
            continue;
        };
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&copy[16..]);
        if copy[..4] == SEGMENT_MAGIC
            && copy[4] == VERSION
            && copy[5..8] == [0, 0, 0]
            && crc32c::crc32c(&copy[..16]) == u32::from_le_bytes(crc)
        {
            let mut salt = [0u8; 8];
            salt.copy_from_slice(&copy[8..16]);
            return Some(u64::from_le_bytes(salt));
        }
    }
    None
}
/// Size of the fixed header, including its own checksum.
pub const HEADER_LEN: usize = 40;
/// Size of the trailing record checksum.
pub const TRAILER_LEN: usize = 4;
/// Payload length of a [`RecordKind::State`] record (floor, dead_below).
pub const STATE_BODY_LEN: usize = 16;
/// Payload length of a [`RecordKind::Batch`] record (how many messages).
pub const BATCH_BODY_LEN: usize = 8;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A stored message.
    Msg,
    /// Tombstone: the message with this sequence is gone.
    Delete,
    /// Store bounds: `seq`/`ts` are the last assigned sequence and its time,
    /// the payload holds the purge floor and the "everything below is gone"
    /// mark (two u64).
    State,
    /// A message rewritten in place by an erasing delete: headers and
    /// payload are zeros; it counts as deleted.
    Erased,
    /// An atomic batch starts: `seq` is its first message's sequence, the
    /// payload its message count (u64). The messages follow at once, in
    /// order, then a [`RecordKind::BatchEnd`].
    Batch,
    /// An atomic batch was written whole (same `seq` and payload as its
    /// [`RecordKind::Batch`]): recovery keeps a batch's messages only if
    /// this record follows them.
    BatchEnd,
}

impl RecordKind {
    /// The kind's byte on disk.
    pub fn to_byte(self) -> u8 {
        match self {
            RecordKind::Msg => 1,
            RecordKind::Delete => 2,
            RecordKind::State => 3,
            RecordKind::Erased => 4,
            RecordKind::Batch => 5,
            RecordKind::BatchEnd => 6,
        }
    }

    /// The kind for a byte, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordKind::Msg),
            2 => Some(RecordKind::Delete),
            3 => Some(RecordKind::State),
            4 => Some(RecordKind::Erased),
            5 => Some(RecordKind::Batch),
            6 => Some(RecordKind::BatchEnd),
            _ => None,
        }
    }
}

/// A decoded record borrowing from the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Kind.
    pub kind: RecordKind,
    /// Sequence (for [`RecordKind::State`]: the last assigned sequence).
    pub seq: u64,
    /// Timestamp, Unix nanoseconds.
    pub ts: i64,
    /// Subject (empty for tombstones and state records).
    pub subject: &'a str,
    /// NATS header block.
    pub hdr: &'a [u8],
    /// Payload.
    pub data: &'a [u8],
}

impl Record<'_> {
    /// For [`RecordKind::Batch`] and [`RecordKind::BatchEnd`]: how many
    /// messages the batch holds.
    pub fn batch_count(&self) -> Option<u64> {
        if !matches!(self.kind, RecordKind::Batch | RecordKind::BatchEnd) {
            return None;
        }
        let n: [u8; 8] = self.data.get(0..BATCH_BODY_LEN)?.try_into().ok()?;
        Some(u64::from_le_bytes(n))
    }

    /// For a state record: (floor, dead_below).
    pub fn state_values(&self) -> Option<(u64, u64)> {
        if self.kind != RecordKind::State {
            return None;
        }
        let floor: [u8; 8] = self.data.get(0..8)?.try_into().ok()?;
        let dead: [u8; 8] = self.data.get(8..16)?.try_into().ok()?;
        Some((u64::from_le_bytes(floor), u64::from_le_bytes(dead)))
    }
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first bytes are not the record magic.
    #[error("bad magic")]
    BadMagic,
    /// A format version this code does not know.
    #[error("unknown format version {0}")]
    BadVersion(u8),
    /// The fixed header's checksum does not match.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// The header checksum matched but its lengths do not add up.
    #[error("inconsistent lengths in header")]
    BadLengths,
    /// Unknown record kind (header intact, so its length can be skipped).
    #[error("unknown record kind {kind}")]
    BadKind {
        /// The kind byte.
        kind: u8,
        /// Record length from the intact header.
        total_len: usize,
    },
    /// A tombstone or state record with a body of the wrong shape.
    #[error("malformed {kind:?} record")]
    BadShape {
        /// Kind.
        kind: RecordKind,
        /// Record length from the intact header.
        total_len: usize,
    },
    /// The record checksum does not match (header intact).
    #[error("record checksum mismatch")]
    Checksum {
        /// Record length from the intact header.
        total_len: usize,
    },
    /// The subject is not UTF-8 (checksums intact).
    #[error("subject is not UTF-8")]
    BadSubject {
        /// Record length from the intact header.
        total_len: usize,
    },
}

impl DecodeError {
    /// When the header was intact: how many bytes the damaged record spans,
    /// so a reader can skip exactly it.
    pub fn skip_len(&self) -> Option<usize> {
        match self {
            DecodeError::BadKind { total_len, .. }
            | DecodeError::BadShape { total_len, .. }
            | DecodeError::Checksum { total_len }
            | DecodeError::BadSubject { total_len } => Some(*total_len),
            DecodeError::BadMagic
            | DecodeError::BadVersion(_)
            | DecodeError::HeaderChecksum
            | DecodeError::BadLengths => None,
        }
    }
}

/// The record is over the format's 4 GiB limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record too large for the file store format")]
pub struct TooLarge;

/// Encoded size of a record with these body lengths.
pub fn record_len(subject: usize, hdr: usize, data: usize) -> Result<usize, TooLarge> {
    let total = HEADER_LEN
        .checked_add(subject)
        .and_then(|n| n.checked_add(hdr))
        .and_then(|n| n.checked_add(data))
        .and_then(|n| n.checked_add(TRAILER_LEN))
        .ok_or(TooLarge)?;
    u32::try_from(total).map_err(|_| TooLarge)?;
    Ok(total)
}

/// Appends one encoded record to `out`; returns its length. Writes nothing
/// when the record is too large.
#[allow(clippy::too_many_arguments)]
pub fn encode_record(
    out: &mut Vec<u8>,
    format: Format,
    kind: RecordKind,
    seq: u64,
    ts: i64,
    subject: &[u8],
    hdr: &[u8],
    data: &[u8],
) -> Result<usize, TooLarge> {
    let total = record_len(subject.len(), hdr.len(), data.len())?;
    let as_u32 = |n: usize| u32::try_from(n).map_err(|_| TooLarge);
    let (total32, sl, hl, dl) = (
        as_u32(total)?,
        as_u32(subject.len())?,
        as_u32(hdr.len())?,
        as_u32(data.len())?,
    );
    let start = out.len();
    out.reserve(total);
    out.extend_from_slice(&MAGIC);
    out.push(format.version);
    out.push(kind.to_byte());
    out.extend_from_slice(&total32.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&sl.to_le_bytes());
    out.extend_from_slice(&hl.to_le_bytes());
    out.extend_from_slice(&dl.to_le_bytes());
    let hcrc = format.header_crc(&out[start..]);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(subject);
    out.extend_from_slice(hdr);
    out.extend_from_slice(data);
    let crc = format.record_crc(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(total)
}

fn u32_at(h: &[u8; HEADER_LEN], at: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, v) in b.iter_mut().enumerate() {
        *v = h.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(b)
}

fn u64_at(h: &[u8; HEADER_LEN], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, v) in b.iter_mut().enumerate() {
        *v = h.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

/// The fixed header of a record, read on its own (the body may be damaged
/// or missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The kind byte (maybe unknown).
    pub kind: u8,
    /// Total record length the header claims.
    pub total: usize,
    /// Sequence.
    pub seq: u64,
}

/// The header at the start of `buf` if it is complete and verifies in
/// `format` (magic, version, header checksum, consistent lengths). Never
/// panics.
pub fn decode_header(buf: &[u8], format: Format) -> Option<Header> {
    let h = <&[u8; HEADER_LEN]>::try_from(buf.get(..HEADER_LEN)?).ok()?;
    if h[..2] != MAGIC || h[2] != format.version || format.header_crc(&h[..36]) != u32_at(h, 36) {
        return None;
    }
    let total = u32_at(h, 4) as usize;
    let lens = (
        u32_at(h, 24) as usize,
        u32_at(h, 28) as usize,
        u32_at(h, 32) as usize,
    );
    if record_len(lens.0, lens.1, lens.2).ok() != Some(total) {
        return None;
    }
    Some(Header {
        kind: h[3],
        total,
        seq: u64_at(h, 8),
    })
}

/// Decodes the record at the start of `buf`, written in `format`.
///
/// `Ok(Some((record, len)))`: a valid record of `len` bytes.
/// `Ok(None)`: `buf` is a prefix of what may be a valid record (too short
/// to tell, or the intact header claims more bytes than `buf` has).
/// `Err(_)`: not a valid record; [`DecodeError::skip_len`] tells whether its
/// extent is known.
///
/// Never panics and never allocates, whatever the bytes.
pub fn decode_record(
    buf: &[u8],
    format: Format,
) -> Result<Option<(Record<'_>, usize)>, DecodeError> {
    for (have, want) in buf.iter().zip(MAGIC.iter()) {
        if have != want {
            return Err(DecodeError::BadMagic);
        }
    }
    if let Some(&v) = buf.get(2)
        && v != format.version
    {
        return Err(DecodeError::BadVersion(v));
    }
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let Ok(h) = <&[u8; HEADER_LEN]>::try_from(head) else {
        return Ok(None);
    };
    if format.header_crc(&h[..36]) != u32_at(h, 36) {
        return Err(DecodeError::HeaderChecksum);
    }
    let kind_byte = h[3];
    let total = u32_at(h, 4) as usize;
    let seq = u64_at(h, 8);
    let ts = u64_at(h, 16) as i64;
    let sl = u32_at(h, 24) as usize;
    let hl = u32_at(h, 28) as usize;
    let dl = u32_at(h, 32) as usize;
    if record_len(sl, hl, dl).ok() != Some(total) {
        return Err(DecodeError::BadLengths);
    }
    let Some(kind) = RecordKind::from_byte(kind_byte) else {
        return Err(DecodeError::BadKind {
            kind: kind_byte,
            total_len: total,
        });
    };
    let shape_ok = match kind {
        RecordKind::Msg | RecordKind::Erased => true,
        RecordKind::Delete => sl == 0 && hl == 0 && dl == 0,
        RecordKind::State => sl == 0 && hl == 0 && dl == STATE_BODY_LEN,
        RecordKind::Batch | RecordKind::BatchEnd => sl == 0 && hl == 0 && dl == BATCH_BODY_LEN,
    };
    if !shape_ok {
        return Err(DecodeError::BadShape {
            kind,
            total_len: total,
        });
    }
    let Some(rec) = buf.get(..total) else {
        return Ok(None);
    };
    let body_end = total - TRAILER_LEN;
    let (covered, trailer) = rec.split_at(body_end);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(trailer);
    if format.record_crc(covered) != u32::from_le_bytes(stored) {
        return Err(DecodeError::Checksum { total_len: total });
    }
    let body = &covered[HEADER_LEN..];
    let (subject, rest) = body.split_at(sl);
    let (hdr, data) = rest.split_at(hl);
    let subject =
        std::str::from_utf8(subject).map_err(|_| DecodeError::BadSubject { total_len: total })?;
    Ok(Some((
        Record {
            kind,
            seq,
            ts,
            subject,
            hdr,
            data,
        },
        total,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALTED: Format = Format {
        version: VERSION,
        header_seed: 0x1234_5678,
        record_seed: 0x9ABC_DEF0,
    };

    fn msg_in(format: Format, seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(
            &mut out,
            format,
            RecordKind::Msg,
            seq,
            7,
            b"a.b",
            b"NATS/1.0\r\n\r\n",
            b"hello",
        )
        .unwrap();
        out
    }

    fn msg(seq: u64) -> Vec<u8> {
        msg_in(SALTED, seq)
    }

    #[test]
    fn encoded_record_decodes_to_the_same_fields() {
        for format in [SALTED, Format::V1, Format::salted(0)] {
            let buf = msg_in(format, 42);
            let (rec, n) = decode_record(&buf, format).unwrap().unwrap();
            assert_eq!(n, buf.len());
            assert_eq!(
                (rec.kind, rec.seq, rec.ts, rec.subject, rec.hdr, rec.data),
                (
                    RecordKind::Msg,
                    42,
                    7,
                    "a.b",
                    &b"NATS/1.0\r\n\r\n"[..],
                    &b"hello"[..]
                )
            );
            assert_eq!(decode_header(&buf, format).map(|h| h.seq), Some(42));
        }
    }

    #[test]
    fn a_record_verifies_only_with_its_own_salt_and_version() {
        let buf = msg(1);
        for other in [
            Format::V1,
            Format::salted(1),
            Format::salted(0x9ABC_DEF0_1234_5679),
        ] {
            assert!(
                !matches!(decode_record(&buf, other), Ok(Some(_))),
                "{other:?}"
            );
            assert_eq!(decode_header(&buf, other), None, "{other:?}");
        }
        let v1 = msg_in(Format::V1, 1);
        assert!(!matches!(decode_record(&v1, SALTED), Ok(Some(_))));
        assert!(matches!(decode_record(&v1, Format::V1), Ok(Some(_))));
    }

    #[test]
    fn segment_header_round_trips_and_survives_one_damaged_copy() {
        let salt = 0xDEAD_BEEF_0123_4567;
        let h = encode_segment_header(salt);
        assert_eq!(decode_segment_header(&h), Some(salt));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut b = h;
            b[i] ^= 0x40;
            assert_eq!(decode_segment_header(&b), Some(salt), "byte {i}");
        }
        let mut both = h;
        both[3] ^= 1;
        both[SEGMENT_COPY_LEN + 9] ^= 1;
        assert_eq!(decode_segment_header(&both), None);
        for cut in 0..SEGMENT_COPY_LEN {
            assert_eq!(decode_segment_header(&h[..cut]), None);
        }
        // A version-1 record is not a segment header.
        assert_eq!(decode_segment_header(&msg_in(Format::V1, 1)), None);
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_bit_flip_is_caught() {
        let buf = msg(1);
        for cut in 0..buf.len() {
            assert_eq!(decode_record(&buf[..cut], SALTED), Ok(None), "cut at {cut}");
        }
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                assert!(
                    !matches!(decode_record(&b, SALTED), Ok(Some(_))),
                    "flip {i}:{bit} accepted"
                );
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..200 {
            let mut b = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(x as u8);
            }
            if len >= 2 {
                b[0] = MAGIC[0];
                b[1] = MAGIC[1];
            }
            if len >= 3 {
                b[2] = VERSION;
            }
            let _ = decode_record(&b, SALTED);
            let _ = decode_record(&b, Format::V1);
            let _ = decode_header(&b, SALTED);
            let _ = decode_segment_header(&b);
        }
    }
}
