//! Telling whether the vault file was deleted or replaced while open, cheaply.
//!
//! Writes are refused once the vault's path no longer leads to the file SQLite has open: they
//! would be acknowledged and then lost (its WAL is found by the path's name). SQLite's own
//! check (`SQLITE_FCNTL_HAS_MOVED`) makes a `stat` of the path before every write, about
//! 1.8 µs here, a tenth of a durable append (measured with `perf`).
//!
//! Every way of changing which file a name leads to (unlink, rename, link) changes the
//! directory holding the name, and so its modification time. On Linux a watch keeps an
//! `O_PATH` descriptor of that directory and asks `fstat` (about 0.5 µs) whether its times
//! are still those seen when SQLite's check last found the file in place; only then is that
//! check skipped. Times are remembered only once the modification time is [`SETTLED`] old, so a change made
//! later cannot carry the same time, whatever the filesystem's timestamp granularity. A
//! directory that changes often (a file written beside the vault) makes writes fall back to
//! SQLite's check. Moving a directory above the file's does not count (the file and its WAL
//! move together); SQLite's check would refuse writes then.
//!
//! An `O_PATH` descriptor reads nothing and holds no lock.

use std::cell::Cell;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use super::file_has_moved;

/// Age a directory's modification time must have before it is trusted to change on the next
/// change of its names: above any filesystem's timestamp granularity (1 s at worst).
const SETTLED: Duration = Duration::from_secs(2);

/// A directory's identity and times, as `fstat` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirStamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// A watch of the directory holding the vault file, for [`FileWatch::has_moved`].
#[derive(Debug, Default)]
pub(crate) struct FileWatch {
    /// The directory's `O_PATH` descriptor; none where `O_PATH` is not available (SQLite's
    /// check is then made every time).
    dir: Option<File>,
    /// The directory's stamp when SQLite's check last found the file in place, if settled.
    confirmed: Cell<Option<DirStamp>>,
}

impl FileWatch {
    /// A watch of the directory of `path` (the vault's file).
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            dir: open_dir(path),
            confirmed: Cell::new(None),
        }
    }

    /// Whether the file `conn` has open was deleted or replaced since it was opened.
    pub(crate) fn has_moved(&self, conn: &Connection) -> bool {
        let Some(stamp) = self.dir.as_ref().and_then(dir_stamp) else {
            return file_has_moved(conn);
        };
        if self.confirmed.get() == Some(stamp) {
            return false;
        }
        // Taken before SQLite's check: a change after it shows as a new stamp next time.
        let moved = file_has_moved(conn);
        if !moved && is_settled(stamp) {
            self.confirmed.set(Some(stamp));
        }
        moved
    }
}

/// Whether the directory's names last changed at least [`SETTLED`] ago (its modification
/// time: every change of a name sets it to the time of the change).
fn is_settled(stamp: DirStamp) -> bool {
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return false;
    };
    i64::try_from(now.saturating_sub(SETTLED).as_secs()).is_ok_and(|limit| stamp.mtime.0 < limit)
}

#[cfg(target_os = "linux")]
fn open_dir(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;

    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_dir(_path: &Path) -> Option<File> {
    None
}

/// The directory's stamp (`fstat`), or none if it cannot be read.
#[cfg(target_os = "linux")]
fn dir_stamp(dir: &File) -> Option<DirStamp> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: the descriptor is open while `dir` lives; fstat fills the buffer on success.
    let rc = unsafe { libc::fstat(std::os::fd::AsRawFd::as_raw_fd(dir), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: initialized by the successful call above.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::useless_conversion)] // the field types differ between architectures
    Some(DirStamp {
        dev: u64::from(stat.st_dev),
        ino: u64::from(stat.st_ino),
        mtime: (i64::from(stat.st_mtime), i64::from(stat.st_mtime_nsec)),
        ctime: (i64::from(stat.st_ctime), i64::from(stat.st_ctime_nsec)),
    })
}

#[cfg(not(target_os = "linux"))]
fn dir_stamp(_dir: &File) -> Option<DirStamp> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(path: &Path) -> (Connection, FileWatch) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
            .unwrap();
        (conn, FileWatch::new(path))
    }

    /// Sets the directory's modification time an hour back, as if nothing changed in it since.
    fn age(dir: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::open(dir).unwrap().set_modified(old).unwrap();
    }

    #[test]
    fn deleting_or_replacing_the_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let (conn, watch) = opened(&path);
        assert!(!watch.has_moved(&conn));
        std::fs::remove_file(&path).unwrap();
        assert!(watch.has_moved(&conn));

        let (conn, watch) = opened(&path);
        let other = dir.path().join("other.db");
        drop(opened(&other));
        std::fs::rename(&other, &path).unwrap();
        assert!(watch.has_moved(&conn));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_quiet_directory_is_trusted_until_a_name_in_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let (conn, watch) = opened(&path);
        assert!(!watch.has_moved(&conn));
        assert_eq!(
            watch.confirmed.get(),
            None,
            "a fresh directory is not trusted yet"
        );
        age(dir.path());
        assert!(!watch.has_moved(&conn));
        assert!(watch.confirmed.get().is_some(), "an old one is");
        assert!(!watch.has_moved(&conn));

        // A hard link keeps the file, but the path no longer leads to it: its WAL would be
        // left behind under the old name.
        std::fs::hard_link(&path, dir.path().join("kept.db")).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(watch.has_moved(&conn));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_replacement_after_the_directory_was_trusted_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let (conn, watch) = opened(&path);
        let other = dir.path().join("other.db");
        drop(opened(&other));
        age(dir.path());
        assert!(!watch.has_moved(&conn));
        assert!(watch.confirmed.get().is_some());
        std::fs::rename(&other, &path).unwrap();
        assert!(watch.has_moved(&conn));
    }
}
