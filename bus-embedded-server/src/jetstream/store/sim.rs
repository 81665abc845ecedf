//! A simulated filesystem for tests ([`SimFs`]): an in-memory tree of
//! directories and files that remembers what was fsynced, so it can
//! "lose power" (drop every byte and directory entry not yet durable), fail
//! any operation on purpose (EIO, ENOSPC, short writes), and "crash" a
//! process (every open handle dies, the page cache survives).
//!
//! Durability model (the conservative POSIX reading):
//! - a file's bytes and length are durable after `sync_data`/`sync_all` of
//!   that file; writes since then are kept in a log;
//! - a directory entry (create, rename in or out, remove) is durable only
//!   after `sync_dir` of the directory holding it.
//!
//! [`SimFs::power_loss`] then reverts every directory to its last synced
//! entries and every file to its last synced bytes. With
//! [`PowerLoss::Torn`] some files instead keep a random prefix of their
//! unsynced writes, the last of them possibly cut short (a torn write), and
//! some directories keep their unsynced entries: what a real disk may
//! also leave behind, since it is allowed to persist more than was synced.
//!
//! Everything is deterministic for a given seed: one SplitMix64 generator
//! drives faults and power-loss choices.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use super::storage::{DirEntry, EntryKind, Storage, StorageFile};

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// How [`SimFs::power_loss`] treats what was not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// Drop every unsynced byte and directory entry.
    Strict,
    /// Per file: drop, or keep a random prefix of the unsynced writes (the
    /// last one maybe torn); per directory: mostly revert, sometimes keep.
    Torn,
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { off: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone)]
enum Node {
    File {
        data: Vec<u8>,
        synced: Vec<u8>,
        /// Writes since the last sync, oldest first.
        log: Vec<FileOp>,
    },
    Dir {
        entries: BTreeMap<OsString, usize>,
        synced: BTreeMap<OsString, usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Sync,
    Meta,
}

/// An operation [`SimFs::fail_next`] can make fail once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOp {
    /// `write_at` (nothing is written).
    Write,
    /// `sync_data` / `sync_all` of a file.
    SyncFile,
    /// `sync_dir`.
    SyncDir,
    /// `remove_file`.
    RemoveFile,
    /// `rename`.
    Rename,
    /// `create_dir` / `create_dir_all`.
    CreateDir,
    /// `remove_dir_all`.
    RemoveDir,
}

#[derive(Debug, Clone)]
struct State {
    nodes: Vec<Node>,
    generation: u64,
    rng: Rng,
    /// Probability (per mille) that an operation fails.
    fault_rate: u64,
    /// Operations still allowed before every operation fails ("the
    /// process died here").
    die_after: Option<u64>,
    ops: u64,
    faults_injected: u64,
    pages_dropped: u64,
    /// One-shot failures of named operations.
    fail_next: Vec<SimOp>,
    /// Bytes read per file (node), for tests that count reads.
    bytes_read: BTreeMap<usize, u64>,
}

const ROOT: usize = 0;

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated I/O error: {what}"))
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn apply(data: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { off, bytes } => {
            let off = *off as usize;
            if data.len() < off + bytes.len() {
                data.resize(off + bytes.len(), 0);
            }
            data[off..off + bytes.len()].copy_from_slice(bytes);
        }
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

/// Splits a path into its names (the root and `.` are skipped).
fn names(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "simulated filesystem: `..` is not supported",
                ));
            }
        }
    }
    Ok(out)
}

impl State {
    /// A one-shot failure of `op`, if one is armed.
    fn named(&mut self, op: SimOp) -> io::Result<()> {
        match self.fail_next.iter().position(|o| *o == op) {
            Some(i) => {
                self.fail_next.remove(i);
                self.faults_injected += 1;
                Err(eio(&format!("{op:?} (armed)")))
            }
            None => Ok(()),
        }
    }

    /// Counts an operation and decides whether it fails.
    fn step(&mut self, op: Op) -> Result<(), io::Error> {
        self.fault(op).map_err(|(e, _)| e)
    }

    /// Like `step`; the flag tells an injected I/O error (true) from the
    /// process having died (false: the operation never happened).
    fn fault(&mut self, op: Op) -> Result<(), (io::Error, bool)> {
        self.ops += 1;
        if let Some(left) = self.die_after.as_mut() {
            if *left == 0 {
                return Err((eio("the process is dead"), false));
            }
            *left -= 1;
        }
        if self.fault_rate > 0 && self.rng.chance(self.fault_rate) {
            self.faults_injected += 1;
            return Err((
                match op {
                    Op::Write if self.rng.chance(400) => enospc(),
                    Op::Read => eio("read"),
                    Op::Write => eio("write"),
                    Op::Sync => eio("fsync"),
                    Op::Meta => eio("directory operation"),
                },
                true,
            ));
        }
        Ok(())
    }

    fn lookup(&self, path: &Path) -> io::Result<Option<usize>> {
        let mut at = ROOT;
        for name in names(path)? {
            match &self.nodes[at] {
                Node::Dir { entries, .. } => match entries.get(name) {
                    Some(&n) => at = n,
                    None => return Ok(None),
                },
                Node::File { .. } => return Ok(None),
            }
        }
        Ok(Some(at))
    }

    /// The directory that holds `path`'s last name, and that name.
    fn parent_dir<'a>(&self, path: &'a Path) -> io::Result<(usize, &'a OsStr)> {
        let mut parts = names(path)?;
        let Some(last) = parts.pop() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "simulated filesystem: the root has no parent",
            ));
        };
        let mut at = ROOT;
        for name in parts {
            match &self.nodes[at] {
                Node::Dir { entries, .. } => match entries.get(name) {
                    Some(&n) => at = n,
                    None => return Err(not_found(path)),
                },
                Node::File { .. } => return Err(not_found(path)),
            }
        }
        match self.nodes[at] {
            Node::Dir { .. } => Ok((at, last)),
            Node::File { .. } => Err(not_found(path)),
        }
    }

    fn entries_mut(&mut self, dir: usize) -> &mut BTreeMap<OsString, usize> {
        match &mut self.nodes[dir] {
            Node::Dir { entries, .. } => entries,
            Node::File { .. } => unreachable!("parent_dir returns directories only"),
        }
    }

    fn add_node(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn new_file(&mut self, path: &Path, exclusive: bool, truncate: bool) -> io::Result<usize> {
        let (dir, name) = self.parent_dir(path)?;
        let existing = self.entries_mut(dir).get(name).copied();
        match existing {
            Some(_) if exclusive => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: file exists", path.display()),
            )),
            Some(n) => match &mut self.nodes[n] {
                Node::File { data, log, .. } => {
                    if truncate {
                        data.clear();
                        log.push(FileOp::SetLen(0));
                    }
                    Ok(n)
                }
                Node::Dir { .. } => Err(io::Error::other("is a directory")),
            },
            None => {
                let n = self.add_node(Node::File {
                    data: Vec::new(),
                    synced: Vec::new(),
                    log: Vec::new(),
                });
                self.entries_mut(dir).insert(name.to_owned(), n);
                Ok(n)
            }
        }
    }

    fn mkdir(&mut self, path: &Path) -> io::Result<()> {
        let (dir, name) = self.parent_dir(path)?;
        if self.entries_mut(dir).contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", path.display()),
            ));
        }
        let n = self.add_node(Node::Dir {
            entries: BTreeMap::new(),
            synced: BTreeMap::new(),
        });
        self.entries_mut(dir).insert(name.to_owned(), n);
        Ok(())
    }

    fn power_loss(&mut self, mode: PowerLoss) {
        self.generation += 1;
        for i in 0..self.nodes.len() {
            let torn = mode == PowerLoss::Torn;
            let keep_some = torn && self.rng.chance(500);
            let keep_dir = torn && self.rng.chance(150);
            let cut = self.rng.next_u64();
            let how_many = self.rng.next_u64();
            match &mut self.nodes[i] {
                Node::File { data, synced, log } => {
                    let mut out = synced.clone();
                    if keep_some && !log.is_empty() {
                        let k = (how_many % (log.len() as u64 + 1)) as usize;
                        for op in &log[..k] {
                            apply(&mut out, op);
                        }
                        if let Some(FileOp::Write { off, bytes }) = log.get(k) {
                            let part = (cut % (bytes.len() as u64 + 1)) as usize;
                            apply(
                                &mut out,
                                &FileOp::Write {
                                    off: *off,
                                    bytes: bytes[..part].to_vec(),
                                },
                            );
                        }
                    }
                    *data = out.clone();
                    *synced = out;
                    log.clear();
                }
                Node::Dir { entries, synced } => {
                    if keep_dir {
                        *synced = entries.clone();
                    } else {
                        *entries = synced.clone();
                    }
                }
            }
        }
    }
}

/// The simulated filesystem; clones share the same tree.
#[derive(Debug, Clone)]
pub struct SimFs {
    st: Arc<Mutex<State>>,
}

/// An open file of a [`SimFs`]; dies with the process that opened it
/// ([`SimFs::crash`], [`SimFs::power_loss`]).
#[derive(Debug)]
pub struct SimFile {
    fs: SimFs,
    node: usize,
    generation: u64,
}

impl SimFs {
    /// An empty filesystem (only `/`), its generator seeded with `seed`.
    pub fn new(seed: u64) -> SimFs {
        SimFs {
            st: Arc::new(Mutex::new(State {
                nodes: vec![Node::Dir {
                    entries: BTreeMap::new(),
                    synced: BTreeMap::new(),
                }],
                generation: 0,
                rng: Rng(seed),
                fault_rate: 0,
                die_after: None,
                ops: 0,
                faults_injected: 0,
                pages_dropped: 0,
                fail_next: Vec::new(),
                bytes_read: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.st.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// An independent copy of the whole filesystem (same content, same
    /// durability state, same generator state).
    pub fn fork(&self) -> SimFs {
        let st = self.lock().clone();
        SimFs {
            st: Arc::new(Mutex::new(st)),
        }
    }

    /// Every operation fails with this probability (per mille) from now on.
    pub fn set_fault_rate(&self, per_mille: u64) {
        self.lock().fault_rate = per_mille;
    }

    /// The next `op` fails with EIO (once; several calls arm several).
    pub fn fail_next(&self, op: SimOp) {
        self.lock().fail_next.push(op);
    }

    /// After `n` more operations every operation fails ("the process died
    /// there"); `None` lifts it.
    pub fn die_after(&self, n: Option<u64>) {
        self.lock().die_after = n;
    }

    /// Operations so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Faults injected so far.
    pub fn faults_injected(&self) -> u64 {
        self.lock().faults_injected
    }

    /// How many failed fsyncs dropped a file's unsynced bytes so far.
    pub fn pages_dropped(&self) -> u64 {
        self.lock().pages_dropped
    }

    /// The process crashes: every open handle fails from now on; what was
    /// written stays (the page cache survives a process crash).
    pub fn crash(&self) {
        let mut st = self.lock();
        st.generation += 1;
        st.die_after = None;
        st.fault_rate = 0;
    }

    /// The machine loses power: handles die, and what was not durable is
    /// dropped (see [`PowerLoss`]).
    pub fn power_loss(&self, mode: PowerLoss) {
        let mut st = self.lock();
        st.die_after = None;
        st.fault_rate = 0;
        st.power_loss(mode);
    }

    /// Test access, without faults: the file's current bytes.
    pub fn peek(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        let n = st.lookup(path).ok()??;
        match &st.nodes[n] {
            Node::File { data, .. } => Some(data.clone()),
            Node::Dir { .. } => None,
        }
    }

    /// Test access, without faults: replaces a file's bytes, durably (bit
    /// rot, a damaged disk).
    pub fn poke(&self, path: &Path, bytes: &[u8]) -> bool {
        let mut st = self.lock();
        let Ok(Some(n)) = st.lookup(path) else {
            return false;
        };
        match &mut st.nodes[n] {
            Node::File { data, synced, log } => {
                *data = bytes.to_vec();
                *synced = bytes.to_vec();
                log.clear();
                true
            }
            Node::Dir { .. } => false,
        }
    }

    /// Test access, without faults: the names in a directory, sorted.
    pub fn names(&self, path: &Path) -> Vec<String> {
        let st = self.lock();
        match st.lookup(path) {
            Ok(Some(n)) => match &st.nodes[n] {
                Node::Dir { entries, .. } => entries
                    .keys()
                    .map(|k| k.to_string_lossy().into_owned())
                    .collect(),
                Node::File { .. } => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Bytes read so far from the file at `path` (through handles).
    pub fn bytes_read(&self, path: &Path) -> u64 {
        let st = self.lock();
        match st.lookup(path) {
            Ok(Some(n)) => st.bytes_read.get(&n).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// Test access, without faults: whether anything is at `path`.
    pub fn exists(&self, path: &Path) -> bool {
        matches!(self.lock().lookup(path), Ok(Some(_)))
    }
}

impl SimFile {
    fn with<T>(
        &self,
        op: Op,
        f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>, &mut Vec<FileOp>, &mut Rng) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut st = self.fs.lock();
        if st.generation != self.generation {
            return Err(eio("stale handle: its process crashed"));
        }
        st.step(op)?;
        let State { nodes, rng, .. } = &mut *st;
        match &mut nodes[self.node] {
            Node::File { data, synced, log } => f(data, synced, log, rng),
            Node::Dir { .. } => Err(io::Error::other("is a directory")),
        }
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let n = self.with(Op::Read, |data, _, _, _| {
            let Some(src) = usize::try_from(off).ok().and_then(|o| data.get(o..)) else {
                return Ok(0);
            };
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            Ok(n)
        })?;
        *self.fs.lock().bytes_read.entry(self.node).or_insert(0) += n as u64;
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize> {
        let mut st = self.fs.lock();
        if st.generation != self.generation {
            return Err(eio("stale handle: its process crashed"));
        }
        st.named(SimOp::Write)?;
        // A failed write may still have written a prefix (then ENOSPC/EIO);
        // a dead process writes nothing.
        let fault = match st.fault(Op::Write) {
            Ok(()) => None,
            Err((e, true)) => Some(e),
            Err((e, false)) => return Err(e),
        };
        let rate = st.fault_rate;
        let State { nodes, rng, .. } = &mut *st;
        let Node::File { data, log, .. } = &mut nodes[self.node] else {
            return Err(io::Error::other("is a directory"));
        };
        let n = if fault.is_some() {
            rng.below(buf.len() as u64) as usize
        } else if rate > 0 && buf.len() > 1 && rng.chance(rate) {
            // A short write: fewer bytes, no error.
            1 + rng.below(buf.len() as u64 - 1) as usize
        } else {
            buf.len()
        };
        if n > 0 {
            let op = FileOp::Write {
                off,
                bytes: buf[..n].to_vec(),
            };
            apply(data, &op);
            log.push(op);
        }
        match fault {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    fn file_len(&self) -> io::Result<u64> {
        self.with(Op::Read, |data, _, _, _| Ok(data.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(Op::Write, |data, _, log, _| {
            let op = FileOp::SetLen(len);
            apply(data, &op);
            log.push(op);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.fs.lock();
        if st.generation != self.generation {
            return Err(eio("stale handle: its process crashed"));
        }
        st.named(SimOp::SyncFile)?;
        let failed = st.fault(Op::Sync).err();
        let State {
            nodes,
            rng,
            pages_dropped,
            ..
        } = &mut *st;
        let Node::File { data, synced, log } = &mut nodes[self.node] else {
            return Err(io::Error::other("is a directory"));
        };
        match failed {
            None => {
                *synced = data.clone();
                log.clear();
                Ok(())
            }
            Some((e, injected)) => {
                // Linux may mark the dirty pages clean after a failed
                // fsync (an I/O error, not a dead process): later reads,
                // and a restart, see the old bytes.
                if injected && rng.chance(500) {
                    *data = synced.clone();
                    log.clear();
                    *pages_dropped += 1;
                }
                Err(e)
            }
        }
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}

impl Storage for SimFs {
    type File = SimFile;

    fn open_rw(&self, path: &Path) -> io::Result<SimFile> {
        let mut st = self.lock();
        st.step(Op::Meta)?;
        match st.lookup(path)? {
            Some(n) if matches!(st.nodes[n], Node::File { .. }) => Ok(SimFile {
                fs: self.clone(),
                node: n,
                generation: st.generation,
            }),
            Some(_) => Err(io::Error::other("is a directory")),
            None => Err(not_found(path)),
        }
    }

    fn create_new(&self, path: &Path) -> io::Result<SimFile> {
        let mut st = self.lock();
        st.step(Op::Meta)?;
        let node = st.new_file(path, true, false)?;
        Ok(SimFile {
            fs: self.clone(),
            node,
            generation: st.generation,
        })
    }

    fn create_truncate(&self, path: &Path) -> io::Result<SimFile> {
        let mut st = self.lock();
        st.step(Op::Meta)?;
        let node = st.new_file(path, false, true)?;
        Ok(SimFile {
            fs: self.clone(),
            node,
            generation: st.generation,
        })
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut st = self.lock();
        st.step(Op::Read)?;
        match st.lookup(path)? {
            Some(n) => match &st.nodes[n] {
                Node::File { data, .. } => Ok(data.clone()),
                Node::Dir { .. } => Err(io::Error::other("is a directory")),
            },
            None => Err(not_found(path)),
        }
    }

    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        let mut st = self.lock();
        st.step(Op::Meta)?;
        Ok(st.lookup(path)?.map(|n| match st.nodes[n] {
            Node::File { .. } => EntryKind::File,
            Node::Dir { .. } => EntryKind::Dir,
        }))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.named(SimOp::CreateDir)?;
        st.step(Op::Meta)?;
        st.mkdir(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.named(SimOp::CreateDir)?;
        st.step(Op::Meta)?;
        let parts = names(path)?;
        let mut at = std::path::PathBuf::from("/");
        for name in parts {
            at.push(name);
            match st.lookup(&at)? {
                Some(n) if matches!(st.nodes[n], Node::Dir { .. }) => {}
                Some(_) => return Err(io::Error::other("not a directory")),
                None => st.mkdir(&at)?,
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut st = self.lock();
        st.step(Op::Meta)?;
        let Some(n) = st.lookup(path)? else {
            return Err(not_found(path));
        };
        match &st.nodes[n] {
            Node::Dir { entries, .. } => Ok(entries
                .iter()
                .map(|(name, &c)| DirEntry {
                    name: name.clone(),
                    kind: match st.nodes[c] {
                        Node::File { .. } => EntryKind::File,
                        Node::Dir { .. } => EntryKind::Dir,
                    },
                })
                .collect()),
            Node::File { .. } => Err(io::Error::other("not a directory")),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.named(SimOp::Rename)?;
        st.step(Op::Meta)?;
        let (fd, fname) = st.parent_dir(from)?;
        let (td, tname) = st.parent_dir(to)?;
        let Some(&node) = st.entries_mut(fd).get(fname) else {
            return Err(not_found(from));
        };
        if let Some(&target) = st.entries_mut(td).get(tname) {
            if target == node {
                return Ok(());
            }
            match (&st.nodes[node], &st.nodes[target]) {
                (Node::File { .. }, Node::File { .. }) => {}
                (Node::Dir { .. }, Node::Dir { entries, .. }) if entries.is_empty() => {}
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{}: target exists", to.display()),
                    ));
                }
            }
        }
        st.entries_mut(fd).remove(fname);
        st.entries_mut(td).insert(tname.to_owned(), node);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.named(SimOp::RemoveFile)?;
        st.step(Op::Meta)?;
        let (dir, name) = st.parent_dir(path)?;
        match st.entries_mut(dir).get(name).copied() {
            Some(n) if matches!(st.nodes[n], Node::File { .. }) => {
                st.entries_mut(dir).remove(name);
                Ok(())
            }
            Some(_) => Err(io::Error::other("is a directory")),
            None => Err(not_found(path)),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.named(SimOp::RemoveDir)?;
        st.step(Op::Meta)?;
        let (dir, name) = st.parent_dir(path)?;
        let Some(n) = st.entries_mut(dir).get(name).copied() else {
            return Err(not_found(path));
        };
        // Like the real one: the children go first, one entry at a time
        // (each removal is a separate, unsynced directory change).
        fn empty(st: &mut State, n: usize) {
            let children: Vec<usize> = match &st.nodes[n] {
                Node::Dir { entries, .. } => entries.values().copied().collect(),
                Node::File { .. } => return,
            };
            for c in children {
                empty(st, c);
            }
            if let Node::Dir { entries, .. } = &mut st.nodes[n] {
                entries.clear();
            }
        }
        empty(&mut st, n);
        st.entries_mut(dir).remove(name);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.named(SimOp::SyncDir)?;
        st.step(Op::Sync)?;
        let Some(n) = st.lookup(path)? else {
            return Err(not_found(path));
        };
        match &mut st.nodes[n] {
            Node::Dir { entries, synced } => {
                *synced = entries.clone();
                Ok(())
            }
            Node::File { .. } => Err(io::Error::other("not a directory")),
        }
    }

    fn random_u64(&self) -> u64 {
        self.lock().rng.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::super::storage::atomic_write;
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn unsynced_bytes_and_entries_are_lost_synced_ones_kept() {
        let fs = SimFs::new(1);
        fs.create_dir_all(p("/a/b")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        fs.sync_dir(p("/a")).unwrap();
        let f = fs.create_new(p("/a/b/x")).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b" world", 5).unwrap();
        // The file's entry in /a/b was never synced: the file is gone.
        let snapshot = fs.fork();
        snapshot.power_loss(PowerLoss::Strict);
        assert!(snapshot.exists(p("/a/b")));
        assert!(!snapshot.exists(p("/a/b/x")));
        // With the entry synced, the synced bytes survive, the rest not.
        fs.sync_dir(p("/a/b")).unwrap();
        fs.power_loss(PowerLoss::Strict);
        assert_eq!(fs.peek(p("/a/b/x")).unwrap(), b"hello");
        // The old handle died with the process.
        assert!(f.read_at(&mut [0u8; 1], 0).is_err());
    }

    #[test]
    fn an_extension_by_set_len_reads_as_zeros_and_is_lost_unless_fsynced() {
        let fs = SimFs::new(3);
        fs.create_dir_all(p("/d")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        let f = fs.create_new(p("/d/x")).unwrap();
        fs.sync_dir(p("/d")).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        // Extended, not fsynced: inside the size, nothing written reads
        // as zeros; a power loss takes the size back.
        f.set_len(16).unwrap();
        f.write_all_at(b"de", 3).unwrap();
        let mut buf = [9u8; 16];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"abcde\0\0\0\0\0\0\0\0\0\0\0");
        let lost = fs.fork();
        lost.power_loss(PowerLoss::Strict);
        assert_eq!(lost.peek(p("/d/x")).unwrap(), b"abc");
        // Fsynced: the size is durable, and so are the zeros after the
        // writes; a later write inside the size leaves the size alone.
        f.sync_data().unwrap();
        f.write_all_at(b"f", 5).unwrap();
        fs.power_loss(PowerLoss::Strict);
        let after = fs.peek(p("/d/x")).unwrap();
        assert_eq!(after.len(), 16);
        assert_eq!(&after[..6], b"abcde\0");
        assert!(after[5..].iter().all(|&b| b == 0));
    }

    #[test]
    fn renames_and_removes_need_a_directory_sync() {
        let fs = SimFs::new(2);
        fs.create_dir(p("/d")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        atomic_write(&fs, p("/d/meta.json"), b"v1").unwrap();
        let before = fs.fork();
        fs.rename(p("/d/meta.json"), p("/d/old.json")).unwrap();
        fs.remove_file(p("/d/old.json")).unwrap();
        fs.power_loss(PowerLoss::Strict);
        assert_eq!(fs.peek(p("/d/meta.json")).unwrap(), b"v1");
        before.remove_dir_all(p("/d")).unwrap();
        before.sync_dir(p("/")).unwrap();
        before.power_loss(PowerLoss::Strict);
        assert!(!before.exists(p("/d")));
    }

    #[test]
    fn a_process_crash_keeps_written_bytes() {
        let fs = SimFs::new(3);
        let f = fs.create_new(p("/f")).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        fs.crash();
        assert!(f.write_at(b"z", 0).is_err());
        assert_eq!(fs.peek(p("/f")).unwrap(), b"abc");
    }

    #[test]
    fn faults_fail_operations_and_short_writes_are_completed() {
        let fs = SimFs::new(4);
        let f = fs.create_new(p("/f")).unwrap();
        fs.set_fault_rate(300);
        let mut errors = 0;
        let mut ok = 0;
        for i in 0..200u64 {
            match f.write_all_at(&[i as u8; 64], i * 64) {
                Ok(()) => ok += 1,
                Err(_) => errors += 1,
            }
        }
        assert!(errors > 10 && ok > 10, "{errors} errors, {ok} ok");
        assert!(fs.faults_injected() > 0);
        fs.set_fault_rate(0);
        // Every successful write_all_at is there in full.
        f.write_all_at(&[7u8; 64], 0).unwrap();
        assert_eq!(&fs.peek(p("/f")).unwrap()[..64], &[7u8; 64]);
        fs.die_after(Some(1));
        assert!(f.sync_data().is_ok());
        assert!(f.sync_data().is_err());
    }

    #[test]
    fn torn_power_loss_keeps_a_prefix_of_the_unsynced_writes() {
        let mut saw_partial = false;
        for seed in 0..64 {
            let fs = SimFs::new(seed);
            let f = fs.create_new(p("/f")).unwrap();
            fs.sync_dir(p("/")).unwrap();
            f.write_all_at(b"AAAA", 0).unwrap();
            f.sync_data().unwrap();
            f.write_all_at(b"BBBB", 4).unwrap();
            f.write_all_at(b"CCCC", 8).unwrap();
            fs.power_loss(PowerLoss::Torn);
            let got = fs.peek(p("/f")).unwrap();
            let full = b"AAAABBBBCCCC";
            assert!(full.starts_with(&got), "seed {seed}: {got:?}");
            assert!(got.len() >= 4);
            saw_partial |= got.len() > 4 && got.len() < 12;
        }
        assert!(saw_partial);
    }
}
