//! The filesystem operations the file store and the stream and consumer
//! directories need, as a trait ([`Storage`], with [`StorageFile`] for an
//! open file), and [`RealFs`], the operating system's filesystem. Tests use
//! a simulated filesystem (`sim::SimFs`) that fails operations and loses
//! power.
//!
//! The file store is generic over its storage (static dispatch): the
//! production path calls `std::fs` through inlined wrappers and allocates
//! nothing more than before.
//!
//! Durability vocabulary used by the helpers here: a file's bytes are
//! durable after [`StorageFile::sync_data`] (or `sync_all`); a directory
//! entry (a create, rename or remove) is durable after
//! [`Storage::sync_dir`] of the directory that holds it.

use std::ffi::OsString;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else (symlink, socket, device...).
    Other,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (not a path).
    pub name: OsString,
    /// Its kind (symlinks are not followed).
    pub kind: EntryKind,
}

/// An open file: positional reads and writes, length, fsync.
pub trait StorageFile: Debug + Send + Sync + 'static {
    /// Reads at `off`; returns how many bytes were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes at `off`; returns how many bytes were written (may be short).
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize>;
    /// Current length.
    fn file_len(&self) -> io::Result<u64>;
    /// Truncates or extends to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Where the file's last region of data ends: every byte past it (up
    /// to the length) is a hole, read as zeros. The default, for files
    /// that cannot tell, is the length (all of it may be data).
    fn data_end(&self) -> io::Result<u64> {
        self.file_len()
    }
    /// Makes the file's bytes (and its length) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's bytes and metadata durable.
    fn sync_all(&self) -> io::Result<()>;

    /// Like [`StorageFile::read_exact_at`], but never waits on the device:
    /// when the bytes are not all in memory (the page cache) it fails with
    /// [`io::ErrorKind::WouldBlock`] and the caller reads again where it may
    /// wait. The default (files that live in memory) is a plain read.
    fn read_exact_at_nowait(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.read_exact_at(buf, off)
    }

    /// Reads exactly `buf.len()` bytes at `off` (end of file is an error).
    fn read_exact_at(&self, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, off) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ));
                }
                Ok(n) => {
                    let rest = std::mem::take(&mut buf);
                    buf = rest.get_mut(n..).unwrap_or_default();
                    off += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `off`, continuing after short writes.
    fn write_all_at(&self, mut buf: &[u8], mut off: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, off) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole buffer",
                    ));
                }
                Ok(n) => {
                    buf = buf.get(n..).unwrap_or_default();
                    off += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.file_len()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// A filesystem: files, directories, renames, fsyncs.
pub trait Storage: Debug + Clone + Send + Sync + 'static {
    /// Its open files.
    type File: StorageFile;

    /// Opens an existing file for reading and writing.
    fn open_rw(&self, path: &Path) -> io::Result<Self::File>;
    /// Creates a file that must not exist yet, for reading and writing.
    fn create_new(&self, path: &Path) -> io::Result<Self::File>;
    /// Creates a file, or empties it if it exists, for writing.
    fn create_truncate(&self, path: &Path) -> io::Result<Self::File>;
    /// The whole content of a file.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// What `path` is (following symlinks); `None` when nothing is there.
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>>;
    /// Creates one directory (its parent must exist).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and every missing parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The entries of a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Renames (atomically replaces a file at `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of a directory (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// A random number (salts, unique names).
    fn random_u64(&self) -> u64;
}

/// The operating system's filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RealFs;

impl StorageFile for File {
    #[inline]
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, off)
    }
    #[inline]
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize> {
        FileExt::write_at(self, buf, off)
    }
    #[inline]
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    #[inline]
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    #[inline]
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    #[inline]
    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
    #[inline]
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, off)
    }
    #[inline]
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, off)
    }
    fn read_exact_at_nowait(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        read_cached(self, buf, off)
    }
    fn data_end(&self) -> io::Result<u64> {
        data_end(self)
    }
}

/// `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)` over the whole file: the end of
/// its last data region. Dirty pages not yet allocated on disk count as
/// data (the filesystems' delayed allocation is reported as data), so
/// nothing written is ever taken for a hole. A filesystem that cannot say
/// (`EINVAL`, `EOPNOTSUPP`) gives the length: all of it is read. Moves the
/// file offset, which positional reads and writes never use.
#[cfg(target_os = "linux")]
fn data_end(file: &File) -> io::Result<u64> {
    use rustix::fs::{SeekFrom, seek};
    use rustix::io::Errno;
    let len = file.metadata()?.len();
    let mut end = 0;
    let mut at = 0;
    while at < len {
        let data = match seek(file, SeekFrom::Data(at)) {
            Ok(d) => d,
            // No data at or after `at`.
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(len),
            Err(e) => return Err(e.into()),
        };
        let hole = match seek(file, SeekFrom::Hole(data)) {
            Ok(h) => h,
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(len),
            Err(e) => return Err(e.into()),
        };
        if hole <= data || data < at {
            // Not what the call promises: read everything.
            return Ok(len);
        }
        end = hole.min(len);
        at = hole;
    }
    Ok(end)
}

/// Elsewhere: the whole file may be data.
#[cfg(not(target_os = "linux"))]
fn data_end(file: &File) -> io::Result<u64> {
    Ok(file.metadata()?.len())
}

/// `preadv2(RWF_NOWAIT)`: the bytes only if the page cache holds all of
/// them. A short read, `EAGAIN`, or a kernel or filesystem without the flag
/// (`EOPNOTSUPP`, `EINVAL`) all mean "would block": the caller retries on a
/// thread that may wait, so a missing feature costs speed, never a wrong
/// answer.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    let want = buf.len();
    if want == 0 {
        return Ok(());
    }
    loop {
        match preadv2(
            file,
            &mut [io::IoSliceMut::new(buf)],
            off,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(n) if n == want => return Ok(()),
            Ok(_) | Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::INVAL) => {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Elsewhere there is no way to ask for cached bytes only: every read goes
/// to a thread that may wait.
#[cfg(not(target_os = "linux"))]
fn read_cached(_: &File, _: &mut [u8], _: u64) -> io::Result<()> {
    Err(io::ErrorKind::WouldBlock.into())
}

fn kind_of(t: fs::FileType) -> EntryKind {
    if t.is_file() {
        EntryKind::File
    } else if t.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::Other
    }
}

impl Storage for RealFs {
    type File = File;

    fn open_rw(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
    }
    fn create_truncate(&self, path: &Path) -> io::Result<File> {
        File::create(path)
    }
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(kind_of(m.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            out.push(DirEntry {
                name: entry.file_name(),
                kind: kind_of(entry.file_type()?),
            });
        }
        Ok(out)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn random_u64(&self) -> u64 {
        let b = *uuid::Uuid::new_v4().as_bytes();
        let mut x = [0u8; 8];
        for (i, v) in x.iter_mut().enumerate() {
            *v = b[i] ^ b[i + 8];
        }
        u64::from_le_bytes(x)
    }
}

/// Writes a file atomically: a temporary file beside it, fsync, rename over
/// `path`, fsync of the directory (an error there is returned: the new
/// content is not durable).
pub fn atomic_write<S: Storage>(fs: &S, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let f = fs.create_truncate(&tmp)?;
        f.write_all_at(bytes, 0)?;
        f.sync_all()?;
    }
    fs.rename(&tmp, path)?;
    if let Some(parent) = parent_of(path) {
        fs.sync_dir(parent)?;
    }
    Ok(())
}

/// The parent of `path`, `None` for a root or a bare name.
pub fn parent_of(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

/// `path` with `suffix` appended to its last component.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Marks a directory being built under a temporary name (stream and
/// consumer names cannot contain `.`, so no real name looks like this).
pub const CREATING: &str = ".creating-";
/// Marks a directory being deleted.
pub const DELETED: &str = ".deleted-";
/// Marks leftovers moved aside (kept for the operator).
pub const ORPHANED: &str = ".orphaned-";

/// What a directory entry's name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirName {
    /// A live directory.
    Live,
    /// Built under a temporary name and never renamed into place: it was
    /// never confirmed, recovery removes it.
    Creating,
    /// Being deleted (already confirmed gone): recovery removes it.
    Deleted,
    /// Moved aside, kept.
    Orphaned,
}

/// Classifies a directory entry name.
pub fn dir_name(name: &str) -> DirName {
    if name.contains(DELETED) {
        DirName::Deleted
    } else if name.contains(CREATING) {
        DirName::Creating
    } else if name.contains(ORPHANED) {
        DirName::Orphaned
    } else {
        DirName::Live
    }
}

/// `dir` renamed with `mark` and a random number after its name.
pub fn marked<S: Storage>(fs: &S, dir: &Path, mark: &str) -> PathBuf {
    with_suffix(dir, &format!("{mark}{:016x}", fs.random_u64()))
}

/// Creates `path` and every missing parent, making each new directory
/// entry durable (an fsync of the directory that holds it) before it
/// returns. The entries of directories that already existed are fsynced
/// too, best effort (they may have been created by a process that died, or
/// by code that did not fsync; an unreadable ancestor is no error).
pub fn create_dir_durable<S: Storage>(fs: &S, path: &Path) -> io::Result<()> {
    let parent = parent_of(path);
    if let Some(parent) = parent {
        create_dir_durable(fs, parent)?;
    }
    let created = match fs.kind(path)? {
        Some(EntryKind::Dir) => false,
        Some(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", path.display()),
            ));
        }
        None => match fs.create_dir(path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        },
    };
    if let Some(parent) = parent {
        match fs.sync_dir(parent) {
            Ok(()) => {}
            Err(e) if created => return Err(e),
            Err(_) => {}
        }
    }
    Ok(())
}

/// The first step of a crash-safe directory delete: renames `dir` to
/// `<dir>.deleted-<n>` and fsyncs its parent. From then on the directory is
/// gone under its name, also after a crash or a power loss (recovery
/// removes `.deleted-` directories). Returns the new path.
pub fn mark_deleted<S: Storage>(fs: &S, dir: &Path) -> io::Result<PathBuf> {
    let gone = marked(fs, dir, DELETED);
    fs.rename(dir, &gone)?;
    if let Some(parent) = parent_of(dir) {
        fs.sync_dir(parent)?;
    }
    Ok(gone)
}

/// The second step: removes a directory renamed by [`mark_deleted`] (or
/// found at recovery) and fsyncs its parent. Not needed for correctness:
/// a failure leaves garbage that the next recovery removes.
pub fn finish_delete<S: Storage>(fs: &S, gone: &Path) -> io::Result<()> {
    match fs.remove_dir_all(gone) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = parent_of(gone) {
        fs.sync_dir(parent)?;
    }
    Ok(())
}

/// Deletes a directory crash-safely: [`mark_deleted`], then
/// [`finish_delete`] (whose failure is only logged). After `Ok` the
/// directory does not come back, whatever happens next.
pub fn remove_dir_durable<S: Storage>(fs: &S, dir: &Path) -> io::Result<()> {
    let gone = mark_deleted(fs, dir)?;
    if let Err(e) = finish_delete(fs, &gone) {
        tracing::warn!(dir = %gone.display(), error = %e, "could not remove a deleted directory; the next start removes it");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::sim::{PowerLoss, SimFs};
    use super::*;

    #[test]
    fn a_cached_only_read_of_bytes_just_written_returns_them_and_never_reads_past_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seg");
        let file = RealFs.create_new(&path).expect("create");
        let bytes: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        StorageFile::write_all_at(&file, &bytes, 0).expect("write");
        // Just written: in the page cache, so the read needs no device.
        let mut buf = vec![0u8; 1000];
        file.read_exact_at_nowait(&mut buf, 4000)
            .expect("cached read");
        assert_eq!(buf, bytes[4000..5000]);
        // Past the end is a short read: "would block" (the caller retries
        // with a plain read, which reports the end of file), never success.
        let mut past = vec![0u8; 100];
        let e = file
            .read_exact_at_nowait(&mut past, 8150)
            .expect_err("a short read is not a read");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn the_data_end_of_an_extended_file_covers_every_written_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = RealFs.create_new(&dir.path().join("seg")).expect("create");
        assert_eq!(StorageFile::data_end(&file).expect("empty"), 0);
        StorageFile::set_len(&file, 8 << 20).expect("extend");
        StorageFile::write_all_at(&file, &[1u8; 5000], 0).expect("write");
        // Written after a hole (as a lost write before it would leave).
        StorageFile::write_all_at(&file, &[2u8; 10], 3 << 20).expect("write");
        let end = StorageFile::data_end(&file).expect("data end");
        assert!(((3 << 20) + 10..=8 << 20).contains(&end), "{end}");
        let mut past = vec![9u8; usize::try_from((8 << 20) - end).expect("fits")];
        StorageFile::read_exact_at(&file, &mut past, end).expect("read");
        assert!(past.iter().all(|&b| b == 0));
        // Fsynced or not, written bytes are data.
        StorageFile::sync_data(&file).expect("fsync");
        assert_eq!(StorageFile::data_end(&file).expect("again"), end);
    }

    #[test]
    fn durable_directories_survive_power_loss_and_deleted_ones_stay_deleted() {
        let fs = SimFs::new(1);
        // Ancestors made by code that never fsynced them.
        fs.create_dir_all(Path::new("/a/b")).unwrap();
        create_dir_durable(&fs, Path::new("/a/b/c/d")).unwrap();
        atomic_write(&fs, Path::new("/a/b/c/d/meta.json"), b"m").unwrap();
        fs.power_loss(PowerLoss::Strict);
        assert_eq!(fs.peek(Path::new("/a/b/c/d/meta.json")).unwrap(), b"m");
        remove_dir_durable(&fs, Path::new("/a/b/c")).unwrap();
        fs.power_loss(PowerLoss::Strict);
        assert!(!fs.exists(Path::new("/a/b/c")));
        assert!(fs.names(Path::new("/a/b")).is_empty());
        // A crash between the two steps leaves a `.deleted-` directory.
        create_dir_durable(&fs, Path::new("/a/b/x")).unwrap();
        let gone = mark_deleted(&fs, Path::new("/a/b/x")).unwrap();
        fs.power_loss(PowerLoss::Strict);
        let names = fs.names(Path::new("/a/b"));
        assert_eq!(names.len(), 1);
        assert_eq!(dir_name(&names[0]), DirName::Deleted);
        finish_delete(&fs, &gone).unwrap();
        assert!(fs.names(Path::new("/a/b")).is_empty());
    }
}
