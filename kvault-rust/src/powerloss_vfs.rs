//! A test-only VFS that records every write, truncation and sync of the database and WAL files,
//! so a checker can rebuild the files as a power cut at any point would have left them.
//!
//! A killed process loses nothing the kernel has: its writes reach the disk later anyway. A
//! power cut loses every write not followed by a completed sync of its file, and may keep any
//! subset of those, in any order, or part of one. This VFS lets tests simulate that without a
//! real power switch: it sits under everything ambervault opens (under the WAL-batching VFS, so
//! its buffered frames are seen as the disk sees them), forwards every call to SQLite's
//! default VFS unchanged, and appends each write (offset and bytes), truncation and sync to a
//! log, in the order they happen (one lock around the record and the operation). The checker
//! (`python/tests/powerloss.py`) replays the log up to a cut point, keeps what was synced,
//! drops or tears or reorders the rest, and opens the result with the normal VFS.
//!
//! Compiled only with the `test-hooks` feature, and active only when the environment variable
//! `AMBERVAULT_TEST_POWERLOSS_LOG` names a log file when the first vault of the process opens.
//! [`mark`] adds an application event (an acknowledged operation) to the log.
//! [`fail_db_syncs`] makes every sync of a database file fail (`SQLITE_IOERR_FSYNC`, nothing
//! synced) until it is turned off, for tests of what a failed sync does.
//!
//! Log records (little-endian): `O id:u32 len:u32 name` (a file opened), `W id:u32 offset:i64
//! len:u32 bytes`, `T id:u32 size:i64`, `S id:u32`, `D len:u32 name` (a file deleted), `M n:u64`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use rusqlite::ffi;

/// Name under which the recorder is registered (as the default VFS).
const VFS_NAME: &CStr = c"ambervault-powerloss-recorder";

/// The environment variable that turns recording on.
pub const LOG_ENV: &str = "AMBERVAULT_TEST_POWERLOSS_LOG";

/// The log and the next file id.
struct Recorder {
    log: File,
    next_id: u32,
}

static RECORDER: Mutex<Option<Recorder>> = Mutex::new(None);
/// The VFS the recorder forwards to.
static INNER_VFS: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// Whether syncs of database files fail (see [`fail_db_syncs`]).
static FAIL_DB_SYNCS: AtomicBool = AtomicBool::new(false);

/// Our part of an open file; the inner VFS's file follows at [`INNER_OFFSET`].
#[repr(C)]
struct RecordedFile {
    base: ffi::sqlite3_file,
    /// The file's id in the log (0: not recorded, e.g. a temporary file).
    id: u32,
    /// A main database file (not its WAL).
    main_db: bool,
}

const INNER_OFFSET: usize = std::mem::size_of::<RecordedFile>().next_multiple_of(16);

fn with_recorder<T>(f: impl FnOnce(&mut Recorder) -> T) -> Option<T> {
    let mut guard = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    guard.as_mut().map(f)
}

/// Installs the recorder as the process's default VFS if `AMBERVAULT_TEST_POWERLOSS_LOG` is
/// set (once; before the WAL-batching VFS captures the default).
pub(crate) fn install_if_asked() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let Some(path) = std::env::var_os(LOG_ENV) else {
            return;
        };
        let Ok(log) = File::create(path) else {
            return;
        };
        // SAFETY: the default VFS lives for the process; our copy is leaked so it does too.
        unsafe {
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            if default.is_null() {
                return;
            }
            INNER_VFS.store(default, Ordering::Release);
            let mut vfs = *default;
            vfs.szOsFile =
                c_int::try_from(INNER_OFFSET).unwrap_or(c_int::MAX / 2) + (*default).szOsFile;
            vfs.zName = VFS_NAME.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.xOpen = Some(open);
            vfs.xDelete = Some(delete);
            *RECORDER.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(Recorder { log, next_id: 1 });
            ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 1);
        }
    });
}

/// Whether `name` is the recorder's VFS name.
pub(crate) fn is_recorder(name: &CStr) -> bool {
    name == VFS_NAME
}

/// Appends an application event `n` to the log; false when nothing is being recorded.
pub fn mark(n: u64) -> bool {
    with_recorder(|r| {
        let mut record = vec![b'M'];
        record.extend_from_slice(&n.to_le_bytes());
        r.log.write_all(&record).is_ok()
    })
    .unwrap_or(false)
}

/// Makes every sync of a database file fail with `SQLITE_IOERR_FSYNC`, without syncing, while
/// `on` (a disk whose write-back failed); false when the recorder is not installed.
pub fn fail_db_syncs(on: bool) -> bool {
    FAIL_DB_SYNCS.store(on, Ordering::SeqCst);
    with_recorder(|_| ()).is_some()
}

/// Records that `from` was renamed to `to` (made durable with its directory at once), as
/// the creation of an encrypted file does (see `store::open`); false when nothing is recorded.
pub fn rename(from: &std::path::Path, to: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    with_recorder(|r| {
        let mut record = name_record(b'R', from.as_os_str().as_bytes());
        record.extend_from_slice(&name_record(b'R', to.as_os_str().as_bytes())[1..]);
        r.log.write_all(&record).is_ok()
    })
    .unwrap_or(false)
}

fn inner_vfs() -> *mut ffi::sqlite3_vfs {
    INNER_VFS.load(Ordering::Acquire)
}

/// # Safety
/// `file` must have been opened by [`open`].
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    unsafe { file.cast::<u8>().add(INNER_OFFSET).cast() }
}

/// # Safety
/// `file` must be an open file of the inner VFS.
unsafe fn methods<'f>(file: *mut ffi::sqlite3_file) -> &'f ffi::sqlite3_io_methods {
    unsafe { &*(*file).pMethods }
}

/// # Safety
/// `file` must have been opened by [`open`].
unsafe fn file_id(file: *mut ffi::sqlite3_file) -> u32 {
    unsafe { (*file.cast::<RecordedFile>()).id }
}

fn name_record(tag: u8, name: &[u8]) -> Vec<u8> {
    let mut record = vec![tag];
    record.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_le_bytes());
    record.extend_from_slice(name);
    record
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let vfs = inner_vfs();
    // SAFETY: SQLite passes a zeroed file of our szOsFile bytes; the inner file fits after
    // INNER_OFFSET.
    unsafe {
        let Some(inner_open) = (*vfs).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let wrapped = inner(file);
        let rc = inner_open(vfs, name, wrapped, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            (*file).pMethods = std::ptr::null();
            return rc;
        }
        let durable = flags & (ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL) != 0;
        let id = if durable && !name.is_null() {
            let path = CStr::from_ptr(name.cast::<c_char>()).to_bytes().to_vec();
            with_recorder(|r| {
                let id = r.next_id;
                r.next_id += 1;
                let mut record = name_record(b'O', &path);
                record.splice(1..1, id.to_le_bytes());
                let _ = r.log.write_all(&record);
                id
            })
            .unwrap_or(0)
        } else {
            0
        };
        (*file.cast::<RecordedFile>()).id = id;
        (*file.cast::<RecordedFile>()).main_db = flags & ffi::SQLITE_OPEN_MAIN_DB != 0;
        (*file).pMethods = &RECORDED_METHODS;
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    let inner = inner_vfs();
    // SAFETY: forwards SQLite's own arguments to the inner VFS.
    unsafe {
        let Some(inner_delete) = (*inner).xDelete else {
            return ffi::SQLITE_IOERR_DELETE;
        };
        let _ = vfs;
        let path = CStr::from_ptr(name).to_bytes().to_vec();
        let mut guard = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = guard.as_mut() {
            let _ = r.log.write_all(&name_record(b'D', &path));
        }
        inner_delete(inner, name, sync_dir)
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls this on a file `open` wrapped, with `amount` readable bytes.
    unsafe {
        let wrapped = inner(file);
        let Some(inner_write) = methods(wrapped).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let id = file_id(file);
        // One lock around the record and the write: the log's order is the files' order.
        let mut guard = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(r), true, Ok(len)) = (guard.as_mut(), id != 0, usize::try_from(amount)) {
            let mut record = Vec::with_capacity(17 + len);
            record.push(b'W');
            record.extend_from_slice(&id.to_le_bytes());
            record.extend_from_slice(&offset.to_le_bytes());
            record.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
            record.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
            let _ = r.log.write_all(&record);
        }
        inner_write(wrapped, data, amount, offset)
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: SQLite calls this on a file `open` wrapped.
    unsafe {
        let wrapped = inner(file);
        let Some(inner_truncate) = methods(wrapped).xTruncate else {
            return ffi::SQLITE_IOERR_TRUNCATE;
        };
        let id = file_id(file);
        let mut guard = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(r), true) = (guard.as_mut(), id != 0) {
            let mut record = vec![b'T'];
            record.extend_from_slice(&id.to_le_bytes());
            record.extend_from_slice(&size.to_le_bytes());
            let _ = r.log.write_all(&record);
        }
        inner_truncate(wrapped, size)
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite calls this on a file `open` wrapped.
    unsafe {
        let wrapped = inner(file);
        let Some(inner_sync) = methods(wrapped).xSync else {
            return ffi::SQLITE_IOERR_FSYNC;
        };
        if (*file.cast::<RecordedFile>()).main_db && FAIL_DB_SYNCS.load(Ordering::SeqCst) {
            return ffi::SQLITE_IOERR_FSYNC;
        }
        let id = file_id(file);
        let mut guard = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
        let rc = inner_sync(wrapped, flags);
        // Recorded once the sync completed: only then are the file's writes durable.
        if let (Some(r), true, ffi::SQLITE_OK) = (guard.as_mut(), id != 0, rc) {
            let mut record = vec![b'S'];
            record.extend_from_slice(&id.to_le_bytes());
            let _ = r.log.write_all(&record);
        }
        rc
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: called once, on a file `open` wrapped.
    unsafe {
        let wrapped = inner(file);
        methods(wrapped)
            .xClose
            .map_or(ffi::SQLITE_OK, |f| f(wrapped))
    }
}

/// Forwards a call to the inner file unchanged.
macro_rules! forward {
    ($name:ident, $method:ident, $ret:ty, $missing:expr, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $ret {
            // SAFETY: SQLite calls this on a file `open` wrapped.
            unsafe {
                let wrapped = inner(file);
                match methods(wrapped).$method {
                    Some(method) => method(wrapped, $($arg),*),
                    None => $missing,
                }
            }
        }
    };
}

forward!(read, xRead, c_int, ffi::SQLITE_IOERR_READ, (data: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));
forward!(file_size, xFileSize, c_int, ffi::SQLITE_IOERR_FSTAT, (size: *mut ffi::sqlite3_int64));
forward!(lock, xLock, c_int, ffi::SQLITE_OK, (level: c_int));
forward!(unlock, xUnlock, c_int, ffi::SQLITE_OK, (level: c_int));
forward!(check_reserved_lock, xCheckReservedLock, c_int, ffi::SQLITE_OK, (out: *mut c_int));
forward!(file_control, xFileControl, c_int, ffi::SQLITE_NOTFOUND, (op: c_int, arg: *mut c_void));
forward!(sector_size, xSectorSize, c_int, 4096, ());
forward!(device_characteristics, xDeviceCharacteristics, c_int, 0, ());
forward!(shm_map, xShmMap, c_int, ffi::SQLITE_IOERR_SHMMAP, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
forward!(shm_lock, xShmLock, c_int, ffi::SQLITE_IOERR_SHMLOCK, (offset: c_int, n: c_int, flags: c_int));
forward!(shm_unmap, xShmUnmap, c_int, ffi::SQLITE_OK, (delete: c_int));
forward!(unfetch, xUnfetch, c_int, ffi::SQLITE_OK, (offset: ffi::sqlite3_int64, page: *mut c_void));

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite calls this on a file `open` wrapped.
    unsafe {
        let wrapped = inner(file);
        if let Some(barrier) = methods(wrapped).xShmBarrier {
            barrier(wrapped);
        }
    }
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls this on a file `open` wrapped. Memory-mapped reads are refused so
    // every read goes through `xRead` (the mapping would bypass nothing we record, but a
    // mapping of the inner file must not outlive a truncation the log replays differently).
    unsafe {
        let _ = (file, offset, amount);
        *out = std::ptr::null_mut();
        ffi::SQLITE_OK
    }
}

/// Methods of a recorded file: every call forwarded, writes, truncations and syncs logged.
static RECORDED_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};
