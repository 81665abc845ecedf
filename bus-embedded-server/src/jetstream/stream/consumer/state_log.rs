//! A durable consumer's state written as an append-only log
//! (`obs/<name>/state.log`) next to `state.json`, so that confirming acks
//! costs one `fdatasync` of an appended record instead of a whole atomic
//! file replacement (temporary file, fsync, rename, directory fsync).
//!
//! Every write stamps the state with the next *version* (a counter per
//! consumer). Most writes append a record holding the whole state to the
//! log and sync its data; the first write of a process, any write after a
//! failed one, a write once the log passed [`COMPACT_AT`] bytes and a clean
//! shutdown *compact* instead: `state.json` is replaced atomically (it
//! carries the version too), then the log is emptied and synced. At
//! recovery ([`newest_state`]) the state with the highest version among
//! `state.json` and the log's valid records wins; the log is read up to its
//! first record that does not verify (a torn tail).
//!
//! A compaction always starts a fresh log, so an append never lands after a
//! torn tail of an earlier process, and a version is never written twice:
//! a failed write consumed its version (its record may still have reached
//! the disk), so the next write is newer than anything on disk.
//!
//! It owns the log file of one consumer; it must not decide when to write
//! (the consumer's task does) nor send confirmations (they go out after
//! [`StateLog::write`] returned `Ok`).

use std::io;
use std::path::{Path, PathBuf};

use super::ConsumerStateFile;
use crate::jetstream::store::storage::{self, Storage, StorageFile};

/// The log's file name in the consumer's directory.
pub(crate) const LOG_FILE: &str = "state.log";
/// Record magic: `B5 1E` (the store's) then `C`, `S` (consumer state).
const MAGIC: [u8; 4] = [0xB5, 0x1E, b'C', b'S'];
/// magic, payload length (u32 LE), CRC32C of the payload (u32 LE).
const HEADER: usize = 12;
/// The log is folded into `state.json` once it holds this many bytes.
/// (Small in tests, so the model test compacts often.)
pub(crate) const COMPACT_AT: u64 = if cfg!(test) { 2048 } else { 4 << 20 };

/// The writer of one consumer's state (held under the consumer's
/// `persisting` lock, so writes are serialized and the last one is the
/// newest state).
#[derive(Debug)]
pub(crate) struct StateLog<S: Storage> {
    dir: PathBuf,
    /// The open log, `None` until the first compaction of this process and
    /// after a failed write (the next write compacts).
    file: Option<S::File>,
    /// Where the next record goes.
    end: u64,
    /// Version of the last write attempted (recovered from disk at open).
    version: u64,
}

impl<S: Storage> StateLog<S> {
    /// The writer of the consumer in `dir`, whose newest state on disk has
    /// `version` (0 for a new consumer or a store of an older version).
    pub(crate) fn new(dir: PathBuf, version: u64) -> StateLog<S> {
        StateLog {
            dir,
            file: None,
            end: 0,
            version,
        }
    }

    /// Makes `state` durable: after `Ok` it (or a newer state) is what
    /// recovery finds, whatever happens next (crash, power loss); after an
    /// error the previous durable state or this one is.
    pub(crate) fn write(&mut self, fs: &S, state: ConsumerStateFile) -> io::Result<()> {
        if self.file.is_none() || self.end >= COMPACT_AT {
            return self.compact(fs, state);
        }
        self.version += 1;
        let state = state.with_version(self.version);
        let result = self.append(&state);
        if result.is_err() {
            self.file = None;
        }
        result
    }

    /// Writes `state` as `state.json` and empties the log (also what a
    /// clean shutdown does, so a stopped server leaves one small file).
    pub(crate) fn compact(&mut self, fs: &S, state: ConsumerStateFile) -> io::Result<()> {
        self.file = None;
        self.version += 1;
        let state = state.with_version(self.version);
        let bytes = serde_json::to_vec(&state).map_err(io::Error::other)?;
        storage::atomic_write(fs, &self.dir.join("state.json"), &bytes)?;
        // From here on state.json is newer than every record in the log;
        // emptying it is only housekeeping, but a log that cannot be
        // emptied is not appended to (the next write compacts again).
        let path = self.dir.join(LOG_FILE);
        let file = fs.create_truncate(&path)?;
        file.sync_all()?;
        fs.sync_dir(&self.dir)?;
        self.file = Some(file);
        self.end = 0;
        Ok(())
    }

    /// The consumer's directory is about to be removed: no write may be
    /// confirmed through the open log any more. The next write compacts,
    /// which fails once the directory is gone (as a write of `state.json`
    /// always did).
    pub(crate) fn forget_file(&mut self) {
        self.file = None;
    }

    fn append(&mut self, state: &ConsumerStateFile) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Err(io::Error::other("consumer state log not open"));
        };
        let record = encode(state)?;
        file.write_all_at(&record, self.end)?;
        file.sync_data()?;
        self.end += record.len() as u64;
        Ok(())
    }
}

/// One record: header, then the state as JSON (ASCII only, so the magic's
/// `B5` never occurs inside a payload).
fn encode(state: &ConsumerStateFile) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(state).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::other("consumer state too large for one record"))?;
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&MAGIC);
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// The newest state in the log's bytes: the highest version among the
/// records before the first one that does not verify; `None` when no
/// record does.
fn newest_in_log(bytes: &[u8], consumer: &str) -> Option<ConsumerStateFile> {
    let mut newest: Option<ConsumerStateFile> = None;
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + HEADER) {
        if header[..4] != MAGIC {
            break;
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match serde_json::from_slice::<ConsumerStateFile>(payload) {
            Ok(s) => {
                if newest.as_ref().is_none_or(|n| s.version > n.version) {
                    newest = Some(s);
                }
            }
            Err(e) => {
                tracing::error!(%consumer, "state log record unreadable ({e}); later records ignored");
                break;
            }
        }
        at += HEADER + len;
    }
    if at < bytes.len() {
        tracing::debug!(%consumer, "state log: {} bytes after the last good record ignored (torn tail)", bytes.len() - at);
    }
    newest
}

/// What recovery takes: `saved` (from `state.json`) or a newer state from
/// the log in `dir`. A log that cannot be read (an I/O error) is an error,
/// as for `state.json`: it may hold confirmed acks.
pub(crate) fn newest_state<S: Storage>(
    fs: &S,
    dir: &Path,
    consumer: &str,
    saved: ConsumerStateFile,
) -> Result<ConsumerStateFile, String> {
    let path = dir.join(LOG_FILE);
    let bytes = match fs.read_file(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(saved),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    Ok(match newest_in_log(&bytes, consumer) {
        Some(logged) if logged.version > saved.version => logged,
        _ => saved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::store::sim::{PowerLoss, SimFs, SimOp};
    use crate::jetstream::store::storage::create_dir_durable;

    fn state(floor: u64) -> ConsumerStateFile {
        let mut s = ConsumerStateFile::starting(1, Default::default());
        s.ack_floor_stream_seq = floor;
        s.ack_floor_consumer_seq = floor;
        s.delivered_stream_seq = floor;
        s.delivered_consumer_seq = floor;
        s.next_sseq = floor + 1;
        s
    }

    fn recovered(fs: &SimFs, dir: &Path) -> ConsumerStateFile {
        let saved: ConsumerStateFile = fs
            .read_file(&dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        match newest_state(fs, dir, "C", saved) {
            Ok(s) => s,
            Err(e) => panic!("recovery: {e}"),
        }
    }

    fn setup() -> (SimFs, PathBuf) {
        let fs = SimFs::new(7);
        let dir = PathBuf::from("/obs/C");
        create_dir_durable(&fs, Path::new("/obs")).expect("obs");
        create_dir_durable(&fs, &dir).expect("dir");
        (fs, dir)
    }

    #[test]
    fn confirmed_writes_are_appended_to_the_log_and_the_newest_wins_after_power_loss() {
        let (fs, dir) = setup();
        let mut log = StateLog::<SimFs>::new(dir.clone(), 0);
        for floor in 1..=5 {
            log.write(&fs, state(floor)).expect("write");
        }
        // The first write compacted (state.json), the other four appended.
        let json: ConsumerStateFile =
            serde_json::from_slice(&fs.read_file(&dir.join("state.json")).expect("json"))
                .expect("parse");
        assert_eq!(json.ack_floor_stream_seq, 1);
        assert!(fs.read_file(&dir.join(LOG_FILE)).expect("log").len() > 4 * HEADER);
        fs.power_loss(PowerLoss::Strict);
        let got = recovered(&fs, &dir);
        assert_eq!(got.ack_floor_stream_seq, 5, "{got:?}");
        assert_eq!(got.version, 5);
    }

    /// The group fsync has not run: a record written but not synced may
    /// be lost (its acks were never confirmed), never a synced one.
    #[test]
    fn power_loss_before_the_sync_loses_only_the_unsynced_record() {
        let (fs, dir) = setup();
        let mut log = StateLog::<SimFs>::new(dir.clone(), 0);
        log.write(&fs, state(1)).expect("compact");
        log.write(&fs, state(2)).expect("append");
        // A record written without its sync, as if the process lost power
        // between the write and the fdatasync.
        let unsynced = encode(&state(3).with_version(3)).expect("encode");
        let file = fs.open_rw(&dir.join(LOG_FILE)).expect("open");
        file.write_all_at(&unsynced, log.end).expect("write");
        for mode in [PowerLoss::Strict, PowerLoss::Torn] {
            let copy = fs.fork();
            copy.power_loss(mode);
            let got = recovered(&copy, &dir);
            assert!(
                got.ack_floor_stream_seq == 2 || got.ack_floor_stream_seq == 3,
                "{mode:?}: {got:?}"
            );
            if mode == PowerLoss::Strict {
                assert_eq!(got.ack_floor_stream_seq, 2, "unsynced record survived");
            }
        }
    }

    #[test]
    fn a_torn_tail_is_ignored_and_the_next_process_compacts_before_appending() {
        let (fs, dir) = setup();
        let mut log = StateLog::<SimFs>::new(dir.clone(), 0);
        for floor in 1..=3 {
            log.write(&fs, state(floor)).expect("write");
        }
        let path = dir.join(LOG_FILE);
        let mut bytes = fs.read_file(&path).expect("log");
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&[0xFF; 7]);
        let f = fs.create_truncate(&path).expect("rewrite");
        f.write_all_at(&bytes, 0).expect("write");
        f.sync_all().expect("sync");
        let got = recovered(&fs, &dir);
        assert_eq!((got.ack_floor_stream_seq, got.version), (3, 3));
        // The next process starts from there: its first write compacts
        // (version 4), so nothing is ever appended after the garbage.
        let mut log = StateLog::<SimFs>::new(dir.clone(), got.version);
        log.write(&fs, state(4)).expect("compact");
        log.write(&fs, state(5)).expect("append");
        fs.power_loss(PowerLoss::Strict);
        let got = recovered(&fs, &dir);
        assert_eq!((got.ack_floor_stream_seq, got.version), (5, 5));
    }

    #[test]
    fn a_failed_append_makes_the_next_write_compact_with_a_newer_version() {
        let (fs, dir) = setup();
        let mut log = StateLog::<SimFs>::new(dir.clone(), 0);
        log.write(&fs, state(1)).expect("compact");
        // The append's data reaches the file, its sync fails: that record
        // (version 2) may be on disk, unconfirmed.
        fs.fail_next(SimOp::SyncFile);
        assert!(log.write(&fs, state(2)).is_err());
        log.write(&fs, state(3)).expect("compact again");
        fs.power_loss(PowerLoss::Torn);
        let got = recovered(&fs, &dir);
        // Version 1 compacted, 2 was the failed append (maybe on disk),
        // 3 the compaction after it: newer, so it wins.
        assert_eq!((got.ack_floor_stream_seq, got.version), (3, 3));
    }

    #[test]
    fn writes_after_the_directory_is_forgotten_fail_once_it_is_gone() {
        let (fs, dir) = setup();
        let mut log = StateLog::<SimFs>::new(dir.clone(), 0);
        log.write(&fs, state(1)).expect("compact");
        log.forget_file();
        super::super::remove_consumer_dir(&fs, &dir).expect("remove");
        assert!(
            log.write(&fs, state(2)).is_err(),
            "confirmed into a removed consumer"
        );
    }

    #[test]
    fn a_store_without_a_log_reads_its_state_json_as_before() {
        let (fs, dir) = setup();
        let old = br#"{"delivered_consumer_seq":4,"delivered_stream_seq":4,"ack_floor_consumer_seq":4,"ack_floor_stream_seq":4,"next_sseq":5,"pending":[],"lps":[]}"#;
        storage::atomic_write(&fs, &dir.join("state.json"), old).expect("write");
        let got = recovered(&fs, &dir);
        assert_eq!((got.ack_floor_stream_seq, got.version), (4, 0));
    }
}
