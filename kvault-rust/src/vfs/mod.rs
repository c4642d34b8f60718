//! The `ambervault-wal-batch` VFS: SQLite's default VFS with its small writes made in large
//! pieces.
//!
//! SQLite writes a WAL frame with two calls (its 24-byte header, then the page), and a
//! checkpoint copies the WAL into the database one page at a time (a read and a write per
//! page). The kernel's per-call work was about half of a 10M-element extend and most of a
//! 1 GiB checkpoint (measured with `perf`; `docs/performance.md`). Files are opened with the
//! default VFS; two kinds get a buffer in front:
//!
//! - WAL files ([`wal_file`]): consecutive frame writes collected and written in pieces, every
//!   commit in the file before its write returns; during a checkpoint, reads ahead.
//! - Database files ([`db_file`]): during a checkpoint's copy, consecutive page writes
//!   collected and written in pieces, all of them before the copy ends.
//!
//! Every other file (and a database file whose filesystem is not known to overwrite in place)
//! is the default VFS's file as it is.

/// Defines `$name`, an I/O method that writes out what the file has collected (`$flush`) and
/// then calls the default VFS's `$method` on the file and methods `$target` gives for it.
macro_rules! flush_then_forward {
    ($name:ident, $flush:path, $target:path, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite calls this on a file this VFS opened and wrapped.
            unsafe {
                let rc = $flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                let (target, methods) = $target(file);
                match methods.$method {
                    Some(method) => method(target, $($arg),*),
                    None => ffi::SQLITE_NOTFOUND,
                }
            }
        }
    };
}

mod db_file;
mod wal_file;

use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// Name under which the VFS is registered (not as the default).
pub const VFS_NAME: &CStr = c"ambervault-wal-batch";

/// The most bytes handed to the default VFS in one write: it masks lengths to 17 bits, so a
/// write must stay below 128 KiB; whole 4 KiB pages below that.
const IO_PIECE: usize = (128 << 10) - 4096;

/// The default VFS this one forwards to.
static DEFAULT_VFS: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// Registers the VFS once per process and returns its name, or `None` if SQLite has no default
/// VFS to wrap (callers then open with the default).
pub fn register() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // A power-loss test's recorder goes under everything, these buffers included.
        #[cfg(feature = "test-hooks")]
        crate::powerloss_vfs::install_if_asked();
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which lives for the process;
        // the copy we register is leaked so it does too.
        unsafe {
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            if default.is_null() {
                return false;
            }
            DEFAULT_VFS.store(default, Ordering::Release);
            let mut vfs = *default;
            let inner = usize::try_from((*default).szOsFile).unwrap_or(0);
            let ours = wal_file::file_size(inner).max(db_file::file_size(inner));
            vfs.szOsFile = c_int::try_from(ours).unwrap_or(c_int::MAX / 2);
            vfs.zName = VFS_NAME.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.xOpen = Some(open);
            // The other methods stay the default VFS's: they only read `pAppData` and
            // `mxPathname` from the VFS they are given, which the copy shares.
            let leaked = Box::into_raw(Box::new(vfs));
            ffi::sqlite3_vfs_register(leaked, 0) == ffi::SQLITE_OK
        }
    });
    ok.then_some(VFS_NAME)
}

fn default_vfs() -> *mut ffi::sqlite3_vfs {
    DEFAULT_VFS.load(Ordering::Acquire)
}

/// # Safety
/// `file` must be an open file of the default VFS.
unsafe fn methods<'f>(file: *mut ffi::sqlite3_file) -> &'f ffi::sqlite3_io_methods {
    unsafe { &*(*file).pMethods }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let default = default_vfs();
    // SAFETY: SQLite passes a zeroed file of our szOsFile bytes, which fits each kind's layout
    // (`file_size`).
    unsafe {
        let Some(default_open) = (*default).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_WAL != 0 {
            return wal_file::open(default, default_open, name, file, flags, out_flags);
        }
        let rc = default_open(default, name, file, flags, out_flags);
        if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !name.is_null() {
            db_file::wrap(default, file, CStr::from_ptr(name));
        }
        rc
    }
}
