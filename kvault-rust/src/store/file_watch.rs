//! Telling whether the vault file was deleted or replaced while open, cheaply.
//!
//! Writes are refused once the vault's path no longer leads to the file SQLite has open: they
//! would be acknowledged and then lost (its WAL is found by the path's name). SQLite's own
//! check (`SQLITE_FCNTL_HAS_MOVED`) makes a `stat` of the whole path before every write; in
//! durable appends it cost about a microsecond, a tenth of the append (measured with `perf`).
//!
//! On Linux a watch keeps an `O_PATH` descriptor of the file's directory (of its real path:
//! symlinks resolved, as SQLite resolves them) and looks the file's name up in it (`fstatat`,
//! one name instead of the whole path). The name must still lead to the file SQLite found the
//! first time: the same device and inode. Deleting it, renaming another file over it, or
//! linking it elsewhere and then deleting it all change what the name leads to. Moving a
//! directory above the file does not count (the file and its WAL move together).
//!
//! An `O_PATH` descriptor reads nothing and holds no lock.

use std::cell::Cell;
use std::ffi::CString;
use std::fs::File;
use std::path::Path;

use rusqlite::Connection;

use super::file_has_moved;

/// A file's device and inode.
type Identity = (u64, u64);

/// A watch of the vault file's name in its directory, for [`FileWatch::has_moved`].
#[derive(Debug, Default)]
pub(crate) struct FileWatch {
    /// The directory's `O_PATH` descriptor and the file's name in it; none where they cannot
    /// be had (SQLite's check is then made every time).
    entry: Option<(File, CString)>,
    /// What the name led to when SQLite's check first found the file in place.
    identity: Cell<Option<Identity>>,
}

impl FileWatch {
    /// A watch of the vault file at `path`.
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            entry: open_entry(path),
            identity: Cell::new(None),
        }
    }

    /// Whether the file `conn` has open was deleted or replaced since it was opened.
    pub(crate) fn has_moved(&self, conn: &Connection) -> bool {
        let Some((dir, name)) = &self.entry else {
            return file_has_moved(conn);
        };
        if let Some(known) = self.identity.get() {
            return match lookup(dir, name) {
                Lookup::Found(now) => now != known,
                Lookup::Gone => true,
                // A lookup that failed otherwise (a network filesystem's hiccup, say) proves
                // nothing either way: SQLite's check decides.
                Lookup::Failed => file_has_moved(conn),
            };
        }
        // The first time, SQLite's check says whether the name leads to its file. What the
        // name led to is kept only if it led there both before and after that check.
        let before = lookup(dir, name);
        if file_has_moved(conn) {
            return true;
        }
        if let Lookup::Found(identity) = before {
            if lookup(dir, name) == before {
                self.identity.set(Some(identity));
            }
        }
        false
    }
}

/// What a name in a directory leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// A file, by its device and inode.
    Found(Identity),
    /// Nothing: no such name (or a part of it is not a directory).
    Gone,
    /// The lookup failed for another reason.
    Failed,
}

#[cfg(target_os = "linux")]
fn open_entry(path: &Path) -> Option<(File, CString)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;

    let real = std::fs::canonicalize(path).ok()?;
    let name = CString::new(real.file_name()?.as_bytes()).ok()?;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(real.parent()?)
        .ok()?;
    Some((dir, name))
}

#[cfg(not(target_os = "linux"))]
fn open_entry(_path: &Path) -> Option<(File, CString)> {
    None
}

/// What `name` in `dir` leads to (`fstatat`, following a symlink as SQLite's `stat` does).
#[cfg(target_os = "linux")]
fn lookup(dir: &File, name: &CString) -> Lookup {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: the descriptor is open while `dir` lives, `name` is NUL-terminated; fstatat
    // fills the buffer on success.
    let rc = unsafe {
        libc::fstatat(
            std::os::fd::AsRawFd::as_raw_fd(dir),
            name.as_ptr(),
            stat.as_mut_ptr(),
            0,
        )
    };
    if rc != 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => Lookup::Gone,
            _ => Lookup::Failed,
        };
    }
    // SAFETY: initialized by the successful call above.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::useless_conversion)] // the field types differ between architectures
    Lookup::Found((u64::from(stat.st_dev), u64::from(stat.st_ino)))
}

#[cfg(not(target_os = "linux"))]
fn lookup(_dir: &File, _name: &CString) -> Lookup {
    Lookup::Failed
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
    fn a_learned_file_is_followed_through_changes_of_other_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let (conn, watch) = opened(&path);
        assert!(!watch.has_moved(&conn));
        let learned = watch.identity.get().expect("learned at the first check");
        for i in 0..3 {
            std::fs::write(dir.path().join(format!("beside{i}")), b"x").unwrap();
            assert!(!watch.has_moved(&conn));
        }
        assert_eq!(watch.identity.get(), Some(learned));

        // A hard link keeps the file, but the path no longer leads to it: its WAL would be
        // left behind under the old name.
        std::fs::hard_link(&path, dir.path().join("kept.db")).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(watch.has_moved(&conn));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_replacement_after_the_file_was_learned_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let (conn, watch) = opened(&path);
        let other = dir.path().join("other.db");
        drop(opened(&other));
        assert!(!watch.has_moved(&conn));
        assert!(watch.identity.get().is_some());
        std::fs::rename(&other, &path).unwrap();
        assert!(watch.has_moved(&conn));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_path_through_a_symlink_watches_the_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let path = dir.path().join("link").join("v.db");
        let (conn, watch) = opened(&path);
        assert!(!watch.has_moved(&conn));
        assert!(watch.identity.get().is_some());
        std::fs::remove_file(real.join("v.db")).unwrap();
        assert!(watch.has_moved(&conn));
    }
}
