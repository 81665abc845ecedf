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

use super::super::file_msg_size;
use super::record::{Format, RecordKind, decode_record};
use super::{MIN_RECORD, find_next_record};

/// Magic at the start of an index file: `B5 1E 49 58` (`"\xB5\x1EIX"`).
pub(super) const IDX_MAGIC: [u8; 4] = [0xB5, 0x1E, b'I', b'X'];
/// Index file format version written: 2, a summary section (with its own
/// checksum) before the events. Version 1 (events only) is still read.
pub(super) const IDX_VERSION: u8 = 2;
/// The first format: no summary section.
pub(super) const IDX_VERSION_1: u8 = 1;
/// The fixed header: magic, version, 3 zero bytes, base, segment length,
/// segment tail, then the body length (version 1) or the summary length
/// (version 2).
const IDX_HEADER_LEN: usize = 4 + 4 + 8 + 8 + 4 + 8;
/// What `open` reads of an index file at first: the fixed header and, in
/// nearly every file, the whole summary section. Tests read less, so the
/// second read (the rest of a longer summary) runs too.
#[cfg(not(test))]
pub(super) const IDX_SUMMARY_PROBE: usize = 4096;
#[cfg(test)]
pub(super) const IDX_SUMMARY_PROBE: usize = 48;
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

/// One subject of a [`Plain`] run: its name and where in the run it is
/// (slot indexes: the run's first message is 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SubjectSum {
    pub(super) name: String,
    pub(super) first: u32,
    pub(super) last: u32,
    pub(super) count: u32,
}

/// What replaying a *plain* segment (nothing but messages of consecutive
/// sequences, at least one, and state records: no damage, batch,
/// tombstone or erased record) does to the store, so that `open` can do it
/// without the events: the run its messages make (first sequence, count,
/// newest timestamp, subjects), the bytes they account for, and the net
/// effect of the sequences and state records met (see `FileStore::
/// replay_summary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plain {
    pub(super) first: u64,
    pub(super) count: u64,
    /// The newest message timestamp.
    pub(super) max_ts: i64,
    /// The messages' accounted size (`file_msg_size`), summed.
    pub(super) bytes: u64,
    /// Messages with a header block (those that can carry a message id).
    pub(super) hdrs: u64,
    /// The highest sequence met (messages and state records), and the
    /// timestamp of the last record met with it: what the store's
    /// last sequence and time become if it is not below the store's.
    pub(super) noted: (u64, i64),
    /// The last state record's floor.
    pub(super) floor: Option<u64>,
    /// The highest dead mark of its state records.
    pub(super) dead: Option<u64>,
    /// Per subject used, in the order of the segment's subject table (the
    /// empty subject first, if a message has none).
    pub(super) subjects: Vec<SubjectSum>,
}

/// The summary section of an index file (version 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Summary {
    /// Where the segment's records start.
    pub(super) start: u64,
    /// `None`: the segment is not plain (replay its events).
    pub(super) plain: Option<Plain>,
}

/// The summary of `scan`: `plain` set only if the segment is plain.
pub(super) fn summarize(scan: &Scan) -> Summary {
    Summary {
        start: scan.start,
        plain: plain_of(scan),
    }
}

fn plain_of(scan: &Scan) -> Option<Plain> {
    fn note(noted: &mut Option<(u64, i64)>, seq: u64, ts: i64) {
        match noted {
            Some((max, _)) if seq < *max => {}
            _ => *noted = Some((seq, ts)),
        }
    }
    let mut first = None;
    let mut next = 0u64;
    let mut count = 0u64;
    let (mut max_ts, mut bytes, mut hdrs) = (i64::MIN, 0u64, 0u64);
    let mut noted = None;
    let (mut floor, mut dead) = (None, None::<u64>);
    // Per entry of the subject table (0: none): first, last, count.
    let mut sums: Vec<Option<(u32, u32, u32)>> = vec![None; scan.subjects.len() + 1];
    for ev in &scan.events {
        let Event::Rec(rec) = ev else {
            return None;
        };
        match rec.kind {
            RecordKind::State => {
                if let Some((f, d)) = rec.values {
                    note(&mut noted, rec.seq, rec.ts);
                    floor = Some(f);
                    dead = Some(dead.map_or(d, |x| x.max(d)));
                }
            }
            RecordKind::Msg => {
                match first {
                    None => first = Some(rec.seq),
                    Some(_) if rec.seq != next => return None,
                    Some(_) => {}
                }
                next = rec.seq.checked_add(1)?;
                let i = u32::try_from(count).ok()?;
                let local = if (rec.subject as usize) < sums.len() {
                    rec.subject as usize
                } else {
                    0
                };
                let subject_len = local
                    .checked_sub(1)
                    .and_then(|j| scan.subjects.get(j))
                    .map_or(0, |s| s.len());
                bytes += file_msg_size(subject_len, rec.hdr_len as usize, rec.data_len as usize);
                if rec.hdr_len > 0 {
                    hdrs += 1;
                }
                max_ts = max_ts.max(rec.ts);
                note(&mut noted, rec.seq, rec.ts);
                match &mut sums[local] {
                    Some((_, last, n)) => {
                        *last = i;
                        *n += 1;
                    }
                    s @ None => *s = Some((i, i, 1)),
                }
                count += 1;
            }
            _ => return None,
        }
    }
    let first = first?;
    let subjects = sums
        .iter()
        .enumerate()
        .filter_map(|(local, s)| {
            let (first, last, count) = (*s)?;
            let name = match local.checked_sub(1) {
                Some(j) => scan.subjects.get(j)?.clone(),
                None => String::new(),
            };
            Some(SubjectSum {
                name,
                first,
                last,
                count,
            })
        })
        .collect();
    Some(Plain {
        first,
        count,
        max_ts,
        bytes,
        hdrs,
        noted: noted?,
        floor,
        dead,
        subjects,
    })
}

fn encode_summary(out: &mut Vec<u8>, summary: &Summary) {
    put_var(out, summary.start);
    let Some(p) = &summary.plain else {
        out.push(0);
        return;
    };
    out.push(1);
    put_var(out, p.first);
    put_var(out, p.count);
    put_var(out, zigzag(p.max_ts));
    put_var(out, p.bytes);
    put_var(out, p.hdrs);
    put_var(out, p.noted.0);
    put_var(out, zigzag(p.noted.1));
    for v in [p.floor, p.dead] {
        match v {
            Some(v) => {
                out.push(1);
                put_var(out, v);
            }
            None => out.push(0),
        }
    }
    put_var(out, p.subjects.len() as u64);
    for s in &p.subjects {
        put_var(out, s.name.len() as u64);
        out.extend_from_slice(s.name.as_bytes());
        put_var(out, u64::from(s.first));
        put_var(out, u64::from(s.last));
        put_var(out, u64::from(s.count));
    }
}

/// `seg_len`: the segment's length, which bounds the message count (every
/// record takes at least [`MIN_RECORD`] bytes), so a summary that verifies
/// but does not add up never makes the loader allocate for more.
fn decode_summary_body(buf: &[u8], seg_len: u64) -> Option<Summary> {
    let mut r = Reader { buf, at: 0 };
    let start = r.var()?;
    let plain = match r.byte()? {
        0 => None,
        1 => {
            let first = r.var()?;
            let count = r.var()?;
            let max_ts = unzigzag(r.var()?);
            let bytes = r.var()?;
            let hdrs = r.var()?;
            let noted = (r.var()?, unzigzag(r.var()?));
            let mut opt = || -> Option<Option<u64>> {
                match r.byte()? {
                    0 => Some(None),
                    1 => Some(Some(r.var()?)),
                    _ => None,
                }
            };
            let floor = opt()?;
            let dead = opt()?;
            let n = r.var()?;
            if n > buf.len() as u64 {
                return None;
            }
            let mut subjects = Vec::with_capacity(n as usize);
            let mut total = 0u64;
            for _ in 0..n {
                let len = usize::try_from(r.var()?).ok()?;
                let name = std::str::from_utf8(r.bytes(len)?).ok()?.to_owned();
                let (sf, sl, sc) = (r.var32()?, r.var32()?, r.var32()?);
                // A subject's messages lie within its span, inside the run.
                if sf > sl || u64::from(sl) >= count || sc == 0 || sc > sl - sf + 1 {
                    return None;
                }
                total += u64::from(sc);
                subjects.push(SubjectSum {
                    name,
                    first: sf,
                    last: sl,
                    count: sc,
                });
            }
            let last_seq = first.checked_add(count.checked_sub(1)?)?;
            if total != count
                || hdrs > count
                || noted.0 < last_seq
                || count > seg_len / MIN_RECORD as u64
            {
                return None;
            }
            Some(Plain {
                first,
                count,
                max_ts,
                bytes,
                hdrs,
                noted,
                floor,
                dead,
                subjects,
            })
        }
        _ => return None,
    };
    (r.at == buf.len()).then_some(Summary { start, plain })
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
    let mut summary = Vec::new();
    encode_summary(&mut summary, &summarize(scan));
    let mut out = Vec::with_capacity(IDX_HEADER_LEN + summary.len() + body.len() + 16);
    out.extend_from_slice(&IDX_MAGIC);
    out.extend_from_slice(&[IDX_VERSION, 0, 0, 0]);
    out.extend_from_slice(&id.base.to_le_bytes());
    out.extend_from_slice(&id.len.to_le_bytes());
    out.extend_from_slice(&id.tail);
    out.extend_from_slice(&(summary.len() as u64).to_le_bytes());
    out.extend_from_slice(&summary);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Test only: a version-1 index file (no summary), as the previous
/// version wrote.
#[cfg(test)]
pub(super) fn encode_v1(scan: &Scan, id: SegmentId) -> Vec<u8> {
    let v2 = encode(scan, id);
    let summary_len = u64::from_le_bytes(v2[28..36].try_into().expect("8 bytes")) as usize;
    let rest = &v2[IDX_HEADER_LEN + summary_len + 4..v2.len() - 4];
    let mut out = Vec::with_capacity(v2.len());
    out.extend_from_slice(&IDX_MAGIC);
    out.extend_from_slice(&[IDX_VERSION_1, 0, 0, 0]);
    out.extend_from_slice(&v2[8..28]);
    out.extend_from_slice(rest);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The fixed header of an index file, checked against the segment `id`:
/// its version, and for version 2 where the summary section ends (its
/// checksum included). `None`: not an index file of this segment as it is.
pub(super) fn head(prefix: &[u8], id: SegmentId) -> Option<(u8, usize)> {
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(prefix.get(at..at + 8)?.try_into().ok()?))
    };
    if prefix.get(..4)? != IDX_MAGIC || prefix.get(5..8)? != [0, 0, 0] {
        return None;
    }
    if u64_at(8)? != id.base || u64_at(16)? != id.len || prefix.get(24..28)? != id.tail {
        return None;
    }
    match *prefix.get(4)? {
        IDX_VERSION_1 => Some((IDX_VERSION_1, 0)),
        IDX_VERSION => {
            let n = usize::try_from(u64_at(28)?).ok()?;
            Some((IDX_VERSION, IDX_HEADER_LEN.checked_add(n)?.checked_add(4)?))
        }
        _ => None,
    }
}

/// The summary section of a version-2 index file of the segment `id`
/// (`bytes`: the file from its start, at least to the end of the summary
/// section), if its checksum verifies and it decodes exactly. Never
/// panics, whatever the bytes.
pub(super) fn decode_summary(bytes: &[u8], id: SegmentId) -> Option<Summary> {
    let (version, end) = head(bytes, id)?;
    if version != IDX_VERSION {
        return None;
    }
    let section = bytes.get(..end)?;
    let crc_at = end - 4;
    let want = u32::from_le_bytes(section.get(crc_at..)?.try_into().ok()?);
    if crc32c::crc32c(section.get(..crc_at)?) != want {
        return None;
    }
    decode_summary_body(section.get(IDX_HEADER_LEN..crc_at)?, id.len)
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
    // Version 2: the summary section (covered by the file's checksum
    // too) comes first; the events' body length follows it.
    let body_len_at = match head(covered, id)? {
        (IDX_VERSION_1, _) => IDX_HEADER_LEN - 8,
        (_, summary_end) => summary_end,
    };
    let body = covered.get(body_len_at.checked_add(8)?..)?;
    if u64_at(body_len_at)? != body.len() as u64 {
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

    /// Appends a message record of `seq` bytes of `fill`, with an empty
    /// header block when `with_header`.
    fn push_msg(
        buf: &mut Vec<u8>,
        format: Format,
        seq: u64,
        ts: i64,
        subj: &str,
        with_header: bool,
        fill: u8,
    ) {
        let hdr: &[u8] = if with_header {
            b"NATS/1.0\r\n\r\n"
        } else {
            b""
        };
        let payload = vec![fill; seq as usize];
        encode_record(
            buf,
            format,
            RecordKind::Msg,
            seq,
            ts,
            subj.as_bytes(),
            hdr,
            &payload,
        )
        .expect("small");
    }

    /// Appends a state record (floor, dead mark).
    fn push_state(buf: &mut Vec<u8>, format: Format, seq: u64, ts: i64, floor: u64, dead: u64) {
        let mut state = [0u8; 16];
        state[..8].copy_from_slice(&floor.to_le_bytes());
        state[8..].copy_from_slice(&dead.to_le_bytes());
        encode_record(buf, format, RecordKind::State, seq, ts, b"", b"", &state).expect("small");
    }

    fn segment() -> (Vec<u8>, Format) {
        let format = Format::salted(0x1234_5678_9ABC_DEF0);
        let mut buf = vec![0u8; 40];
        for seq in 1..=50u64 {
            let subj = format!("s.{}", seq % 4);
            push_msg(
                &mut buf,
                format,
                seq,
                seq as i64 * 1_000_003,
                &subj,
                seq % 3 == 0,
                7,
            );
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
        push_state(&mut buf, format, 50, 9, 3, 4);
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

    /// A plain segment: messages of consecutive sequences and state
    /// records only.
    fn plain_segment() -> (Vec<u8>, Format) {
        let format = Format::salted(0x0F0F_1234_5678_9ABC);
        let mut buf = vec![0u8; 40];
        push_state(&mut buf, format, 9, 5, 2, 3);
        for seq in 10..=40u64 {
            let subj = format!("p.{}", seq % 3);
            push_msg(
                &mut buf,
                format,
                seq,
                1_000 - seq as i64,
                &subj,
                seq % 7 == 0,
                1,
            );
        }
        push_state(&mut buf, format, 40, 77, 4, 1);
        (buf, format)
    }

    #[test]
    fn the_summary_of_a_plain_segment_is_what_its_messages_and_state_records_add_up_to() {
        let (buf, format) = plain_segment();
        let id = id_of(&buf);
        let s = scan(&buf, format, 40);
        let bytes = encode(&s, id);
        let summary = decode_summary(&bytes, id).expect("summary");
        assert_eq!(summary, summarize(&s));
        let p = summary.plain.expect("plain");
        assert_eq!((p.first, p.count), (10, 31));
        // Timestamps fall with the sequence here: the newest is the first.
        assert_eq!(p.max_ts, 990);
        assert_eq!(p.hdrs, 4, "14, 21, 28, 35");
        // The last state record repeats the last sequence with its time.
        assert_eq!(p.noted, (40, 77));
        assert_eq!((p.floor, p.dead), (Some(4), Some(3)));
        let want_bytes: u64 = (10..=40u64)
            .map(|seq| {
                let hdr = if seq % 7 == 0 { 12 } else { 0 };
                super::super::super::file_msg_size(3, hdr, seq as usize)
            })
            .sum();
        assert_eq!(p.bytes, want_bytes);
        let names: Vec<(&str, u32, u32, u32)> = p
            .subjects
            .iter()
            .map(|s| (s.name.as_str(), s.first, s.last, s.count))
            .collect();
        // Table order: p.1 (seq 10) first; slot index = seq - 10.
        assert_eq!(
            names,
            vec![("p.1", 0, 30, 11), ("p.2", 1, 28, 10), ("p.0", 2, 29, 10)]
        );
        // The events still decode, after the summary.
        assert_eq!(decode(&bytes, id), Some(s));
    }

    #[test]
    fn a_segment_with_a_tombstone_gap_or_damage_has_no_plain_summary() {
        let (buf, format) = segment();
        let s = scan(&buf, format, 40);
        assert_eq!(summarize(&s).plain, None, "tombstones");
        let id = id_of(&buf);
        let summary = decode_summary(&encode(&s, id), id).expect("summary");
        assert_eq!(summary.plain, None);
        let (mut buf, format) = plain_segment();
        let mid = buf.len() / 2;
        buf[mid] ^= 0x40;
        assert_eq!(summarize(&scan(&buf, format, 40)).plain, None, "damage");
    }

    #[test]
    fn every_bit_flip_of_the_summary_section_is_refused_without_panic() {
        let (buf, format) = plain_segment();
        let id = id_of(&buf);
        let bytes = encode(&scan(&buf, format, 40), id);
        let (_, end) = head(&bytes, id).expect("head");
        for i in 0..end {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                assert!(decode_summary(&b, id).is_none(), "flip at {i}");
            }
        }
        for cut in 0..end {
            assert!(decode_summary(&bytes[..cut], id).is_none(), "cut at {cut}");
        }
        // The summary is read without the events after it.
        assert!(decode_summary(&bytes[..end], id).is_some());
        // A flip in the events leaves the summary readable (the events fail
        // their own check when they are read).
        let mut b = bytes.clone();
        let last = b.len() - 6;
        b[last] ^= 0x08;
        assert!(decode_summary(&b, id).is_some());
        assert!(decode(&b, id).is_none());
    }

    #[test]
    fn a_summary_section_of_garbage_with_a_valid_checksum_is_refused_without_panic() {
        // Random bodies, and a valid summary with random bytes changed,
        // each sealed with a correct checksum: decoding never panics, and
        // what it accepts adds up (its subjects' counts are the run's, each
        // span inside the run).
        let (buf, format) = plain_segment();
        let id = id_of(&buf);
        let good = encode(&scan(&buf, format, 40), id);
        let (_, end) = head(&good, id).expect("head");
        let body = good[IDX_HEADER_LEN..end - 4].to_vec();
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut accepted = 0;
        for n in 0..4_000usize {
            let mut summary = if n % 2 == 0 {
                (0..n % 80).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                let mut b = body.clone();
                for _ in 0..1 + n % 3 {
                    let at = next() as usize % b.len();
                    b[at] = next() as u8;
                }
                b
            };
            if n % 7 == 0 {
                summary.truncate(next() as usize % (summary.len() + 1));
            }
            let mut out = good[..28].to_vec();
            out.extend_from_slice(&(summary.len() as u64).to_le_bytes());
            out.extend_from_slice(&summary);
            let crc = crc32c::crc32c(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            if let Some(Summary { plain: Some(p), .. }) = decode_summary(&out, id) {
                accepted += 1;
                let total: u64 = p.subjects.iter().map(|s| u64::from(s.count)).sum();
                assert_eq!(total, p.count);
                assert!(p.subjects.iter().all(|s| s.first <= s.last
                    && u64::from(s.last) < p.count
                    && s.count <= s.last - s.first + 1));
                assert!(p.noted.0 >= p.first + (p.count - 1));
            }
        }
        // Some changes (a timestamp, the bytes) leave a summary that adds up.
        assert!(accepted > 0);
    }

    #[test]
    fn a_version_1_index_file_still_decodes_and_has_no_summary() {
        let (buf, format) = plain_segment();
        let id = id_of(&buf);
        let s = scan(&buf, format, 40);
        let v1 = encode_v1(&s, id);
        assert_eq!(head(&v1, id), Some((IDX_VERSION_1, 0)));
        assert_eq!(decode(&v1, id), Some(s));
        assert!(decode_summary(&v1, id).is_none());
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
