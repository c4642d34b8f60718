//! Database files: a checkpoint's copy out of the WAL written in large pieces.
//!
//! A checkpoint copies each page from the WAL into the database file with a read and a write
//! of one page, 2 × 262,144 system calls for 1 GiB, and the kernel's per-call and per-page work
//! made the copy of a 1 GiB stream take about 2.2 s where copying the same bytes between plain
//! files in 124 KiB pieces takes about 0.8 (`dd`, measured; `docs/performance.md`). SQLite
//! tells the database file where the copy starts and ends (`SQLITE_FCNTL_CKPT_START`,
//! `SQLITE_FCNTL_CKPT_DONE`, sent around the copy loop and nowhere else). In between, this file
//! collects consecutive page writes and writes them in pieces of up to [`IO_PIECE`] bytes, and
//! the WAL file on the same thread reads ahead ([`checkpoint_window`]).
//!
//! Why this is safe:
//! - The pages a checkpoint writes are read from the database file by other connections only
//!   after it advances the log's backfill mark, which it does after `CKPT_DONE`, where the
//!   buffer is written out. Readers that could need the old pages hold back the frames the
//!   checkpoint may copy (SQLite's read marks), buffered or not. Every other call on the file
//!   (read, sync, truncate, size, other file controls, close) writes the buffer out first.
//! - A write SQLite makes reports its own failure, and a failed write stops the copy before the
//!   mark moves. A buffered write cannot, and SQLite ignores what `CKPT_DONE` returns, so the
//!   copy is buffered only where writing into the file cannot fail for want of space: on
//!   filesystems that overwrite in place (ext4, xfs, tmpfs), with the growth the checkpoint
//!   announces (`SQLITE_FCNTL_SIZE_HINT`) reserved first (`fallocate`, the size unchanged); a
//!   copy whose reservation fails is not buffered. A write-out that still fails is retried a
//!   page at a time and, failing that, every later read, write, sync, truncate and size call on
//!   the file fails with its error, so a complete checkpoint reports it and this connection never
//!   reads pages it could not write.
//!
//! Memory maps that follow the file's growth: the default VFS maps a database file once, at its
//! size then, and maps it again only when SQLite sees that another connection changed the
//! database. A connection whose file grows through checkpoints made by another connection of
//! this process (the vault's checkpoint thread) never sees that, so every page past its old map
//! was read with `pread` (a random 64 KiB range read in a 64 MiB value took about 170 µs, 16
//! `pread`s and a walk of the chunk's overflow pages). Connections to one file in this process
//! share a growth count, which a checkpoint that grew the file raises when its copy ends; a
//! connection that sees a new count drops its map when it holds no mapped page (the default VFS
//! maps the file afresh, at its current size, on the next fetch).

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rusqlite::ffi;

use super::IO_PIECE;

thread_local! {
    /// The checkpoint copy under way on this thread (0: none).
    static WINDOW: Cell<u64> = const { Cell::new(0) };
}

/// Numbers the copies, so a read-ahead of one copy never serves the next.
static NEXT_WINDOW: AtomicU64 = AtomicU64::new(1);

/// Where our state's pointer sits in the file: after the default VFS's file, which stays at the
/// start so its own methods take our file as theirs.
static STATE_OFFSET: AtomicUsize = AtomicUsize::new(0);

#[cfg(test)]
thread_local! {
    /// Write-outs of more than one page made on this thread (the copy was collected).
    static COPY_WRITES: Cell<u64> = const { Cell::new(0) };
    /// Maps dropped on this thread because the file grew.
    static MAPS_DROPPED: Cell<u64> = const { Cell::new(0) };
}

/// The number of the checkpoint copy under way on this thread, or 0 outside one.
pub(super) fn checkpoint_window() -> u64 {
    WINDOW.with(Cell::get)
}

/// Bytes a database file needs when the default VFS's file takes `inner`.
pub(super) const fn file_size(inner: usize) -> usize {
    inner.next_multiple_of(8) + std::mem::size_of::<*mut CopyState>()
}

/// The default VFS's methods for database files with ours in place of some.
struct DbMethods {
    /// The default methods these were made from (as an address).
    original: usize,
    methods: ffi::sqlite3_io_methods,
}

/// One database file's state.
struct CopyState {
    /// Page writes waiting to be made: `pending` belongs at file offset `start`.
    pending: Vec<u8>,
    start: i64,
    /// Size of the writes collected (a page), for writing them one by one after a failure.
    piece: usize,
    /// A copy is under way (between `CKPT_START` and `CKPT_DONE`) and its writes are collected.
    buffering: bool,
    /// The file is one whose copies may be buffered (see the module notes).
    can_buffer: bool,
    /// Its descriptor, for reserving space (-1: none to reserve through).
    fd: c_int,
    /// A write-out that could not be made: every later call fails with this.
    failed: c_int,
    /// This copy grew the file (`SQLITE_FCNTL_SIZE_HINT` above its size).
    grew: bool,
    /// Pages fetched from the map and not yet released.
    fetched: i64,
    /// The growth count of this file, shared by its connections in this process.
    growth: Arc<AtomicU64>,
    /// The count when this connection's map was last dropped or grown.
    seen_growth: u64,
    /// The name `growth` is registered under.
    name: CString,
}

/// Growth counts of the database files open in this process, by name (SQLite passes full
/// paths), shared by their connections.
static GROWTH: Mutex<Option<HashMap<CString, Arc<AtomicU64>>>> = Mutex::new(None);

fn growth_of(name: &CStr) -> Arc<AtomicU64> {
    let mut registry = GROWTH.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(
        registry
            .get_or_insert_with(HashMap::new)
            .entry(name.to_owned())
            .or_default(),
    )
}

/// Forgets a file's growth count when its last connection in this process closes.
fn release_growth(name: &CStr, growth: Arc<AtomicU64>) {
    let mut registry = GROWTH.lock().unwrap_or_else(PoisonError::into_inner);
    // The registry's reference and the one being dropped: no other connection holds it.
    if Arc::strong_count(&growth) == 2 {
        if let Some(map) = registry.as_mut() {
            map.remove(name);
        }
    }
}

/// Puts our methods in front of a database file the default VFS just opened, when its methods
/// are the ones ours were made from.
///
/// # Safety
/// `file` must have just been opened by `default` as a main database named `name`, inside a
/// file of at least [`file_size`] bytes.
pub(super) unsafe fn wrap(
    default: *mut ffi::sqlite3_vfs,
    file: *mut ffi::sqlite3_file,
    name: &CStr,
) {
    // SAFETY: the caller's contract; the state pointer's slot lies past the default file.
    unsafe {
        let original = (*file).pMethods;
        if original.is_null() {
            return;
        }
        let table = METHODS.get_or_init(|| DbMethods::over(&*original));
        if table.original != original as usize {
            return;
        }
        let offset = usize::try_from((*default).szOsFile)
            .unwrap_or(0)
            .next_multiple_of(8);
        STATE_OFFSET.store(offset, Ordering::Relaxed);
        let (can_buffer, fd) = buffering_allowed(default, file);
        let growth = growth_of(name);
        let seen_growth = growth.load(Ordering::Acquire);
        let state = Box::new(CopyState {
            pending: Vec::new(),
            start: 0,
            piece: 0,
            buffering: false,
            can_buffer,
            fd,
            failed: ffi::SQLITE_OK,
            grew: false,
            fetched: 0,
            growth,
            seen_growth,
            name: name.to_owned(),
        });
        *state_slot(file) = Box::into_raw(state);
        (*file).pMethods = &table.methods;
    }
}

static METHODS: OnceLock<DbMethods> = OnceLock::new();

impl DbMethods {
    fn over(original: &ffi::sqlite3_io_methods) -> Self {
        let mut methods = *original;
        methods.xClose = Some(db_close);
        methods.xRead = Some(db_read);
        methods.xWrite = Some(db_write);
        methods.xTruncate = Some(db_truncate);
        methods.xSync = Some(db_sync);
        methods.xFileSize = Some(db_file_size);
        methods.xFileControl = Some(db_file_control);
        // Memory-mapped reads: counted, and the map dropped when the file grew (module notes).
        // They need not write out collected pages: pages are collected only during a
        // checkpoint's copy, which fetches nothing, and all written out when it ends.
        if original.iVersion >= 3 && original.xFetch.is_some() && original.xUnfetch.is_some() {
            methods.xFetch = Some(db_fetch);
            methods.xUnfetch = Some(db_unfetch);
        }
        Self {
            original: std::ptr::from_ref(original) as usize,
            methods,
        }
    }
}

/// Whether a copy into this file may be buffered, and the descriptor to reserve space through.
///
/// # Safety
/// `file` must be open, by `default`.
unsafe fn buffering_allowed(
    default: *mut ffi::sqlite3_vfs,
    file: *mut ffi::sqlite3_file,
) -> (bool, c_int) {
    // SAFETY: zName is a NUL-terminated string owned by the VFS.
    let name = unsafe { std::ffi::CStr::from_ptr((*default).zName) };
    #[cfg(feature = "test-hooks")]
    if crate::powerloss_vfs::is_recorder(name) {
        // The power-loss recorder keeps writes in a log and never runs out of space: its tests
        // see the copy as it is made here.
        return (true, -1);
    }
    if name.to_bytes() != b"unix" {
        return (false, -1);
    }
    // SAFETY: the unix VFS's file starts with three pointers and then its descriptor (an
    // `int`), a layout SQLite has kept since the VFS exists; the descriptor is checked below to
    // be a regular file of the size SQLite reports before it is used.
    let fd = unsafe {
        *file
            .cast::<u8>()
            .add(3 * std::mem::size_of::<*const c_void>())
            .cast::<c_int>()
    };
    let mut reported = 0;
    // SAFETY: `file` is open; `reported` is a valid out-pointer.
    let sized = unsafe {
        match (*(*file).pMethods).xFileSize {
            Some(size) => size(file, &mut reported) == ffi::SQLITE_OK,
            None => false,
        }
    };
    // SAFETY: fstat/fstatfs only write the structs passed (zeroed C structs are valid).
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let mut fs: libc::statfs = std::mem::zeroed();
        if !sized
            || libc::fstat(fd, &mut st) != 0
            || st.st_mode & libc::S_IFMT != libc::S_IFREG
            || st.st_size != reported
            || libc::fstatfs(fd, &mut fs) != 0
        {
            return (false, -1);
        }
        // Filesystems that write into a file's existing blocks in place: ext4, xfs, tmpfs.
        let in_place = [0xEF53_i64, 0x5846_5342, 0x0102_1994];
        // `f_type` is an i64 here and a narrower integer on other targets.
        #[allow(clippy::useless_conversion)]
        let kind = i64::from(fs.f_type);
        (in_place.contains(&kind), fd)
    }
}

/// # Safety
/// `file` must be a database file [`wrap`] wrapped.
unsafe fn state_slot(file: *mut ffi::sqlite3_file) -> *mut *mut CopyState {
    unsafe {
        file.cast::<u8>()
            .add(STATE_OFFSET.load(Ordering::Relaxed))
            .cast()
    }
}

/// # Safety
/// `file` must be a database file [`wrap`] wrapped and not yet closed.
unsafe fn state<'f>(file: *mut ffi::sqlite3_file) -> &'f mut CopyState {
    unsafe { &mut **state_slot(file) }
}

/// The default VFS's methods for this file.
fn original() -> &'static ffi::sqlite3_io_methods {
    let table = METHODS.get().expect("wrapped files have methods");
    // SAFETY: `original` is the address of the default VFS's methods, which live for the
    // process.
    unsafe { &*(table.original as *const ffi::sqlite3_io_methods) }
}

/// Writes out the collected pages (or reports the failure that stopped an earlier write-out).
///
/// # Safety
/// `file` must be a database file [`wrap`] wrapped and not yet closed.
#[inline]
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let state = state(file);
        if state.failed == ffi::SQLITE_OK && state.pending.is_empty() {
            return ffi::SQLITE_OK;
        }
        write_out(state, file)
    }
}

/// [`flush`] when there is something to write or report.
///
/// # Safety
/// As [`flush`]; `state` is `file`'s.
#[inline(never)]
unsafe fn write_out(state: &mut CopyState, file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        if state.failed != ffi::SQLITE_OK {
            return state.failed;
        }
        let Some(write) = original().xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let len = c_int::try_from(state.pending.len()).unwrap_or(c_int::MAX);
        let mut rc = write(file, state.pending.as_ptr().cast(), len, state.start);
        #[cfg(test)]
        if state.pending.len() > state.piece {
            COPY_WRITES.with(|n| n.set(n.get() + 1));
        }
        if rc != ffi::SQLITE_OK {
            // One page at a time, as SQLite would have written them.
            rc = ffi::SQLITE_OK;
            for (i, page) in state.pending.chunks(state.piece.max(1)).enumerate() {
                let at = state.start + (i * state.piece) as i64;
                let page_len = c_int::try_from(page.len()).unwrap_or(c_int::MAX);
                rc = write(file, page.as_ptr().cast(), page_len, at);
                if rc != ffi::SQLITE_OK {
                    break;
                }
            }
        }
        state.pending.clear();
        if rc != ffi::SQLITE_OK {
            state.failed = rc;
        }
        rc
    }
}

unsafe extern "C" fn db_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls this on a file `wrap` wrapped, with `amount` readable bytes.
    unsafe {
        let state = state(file);
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let follows = offset == state.start + state.pending.len() as i64;
        if !state.buffering || !follows || state.pending.len() + len > IO_PIECE {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let state = self::state(file);
        if !state.buffering || len > IO_PIECE {
            return match original().xWrite {
                Some(write) => write(file, data, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        if state.pending.is_empty() {
            state.start = offset;
            state.piece = len;
            if state.pending.capacity() == 0 {
                state.pending.reserve_exact(IO_PIECE);
            }
        }
        state
            .pending
            .extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn db_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: called once, on a file `wrap` wrapped; the state is freed after its last use.
    unsafe {
        let flushed = flush(file);
        let closed = original()
            .xClose
            .map_or(ffi::SQLITE_OK, |close| close(file));
        let slot = state_slot(file);
        let state = Box::from_raw(*slot);
        *slot = std::ptr::null_mut();
        release_growth(&state.name, state.growth);
        if flushed == ffi::SQLITE_OK {
            closed
        } else {
            flushed
        }
    }
}

/// The file itself and the default VFS's methods, for `flush_then_forward!` (the default
/// VFS's file sits at the start of ours).
fn unwrapped(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    (file, original())
}

flush_then_forward!(db_read, flush, unwrapped, xRead, (data: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));
flush_then_forward!(db_truncate, flush, unwrapped, xTruncate, (size: ffi::sqlite3_int64));
flush_then_forward!(db_sync, flush, unwrapped, xSync, (flags: c_int));
flush_then_forward!(db_file_size, flush, unwrapped, xFileSize, (size: *mut ffi::sqlite3_int64));
flush_then_forward!(forward_file_control, flush, unwrapped, xFileControl, (op: c_int, arg: *mut c_void));

unsafe extern "C" fn db_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls this on a file `wrap` wrapped, with the argument `op` defines.
    unsafe {
        match op {
            ffi::SQLITE_FCNTL_CKPT_START => {
                let rc = flush(file);
                let state = state(file);
                state.buffering = state.can_buffer && rc == ffi::SQLITE_OK;
                state.grew = false;
                WINDOW.with(|w| w.set(NEXT_WINDOW.fetch_add(1, Ordering::Relaxed)));
                forward_file_control(file, op, arg)
            }
            ffi::SQLITE_FCNTL_CKPT_DONE => {
                let rc = flush(file);
                let state = state(file);
                state.buffering = false;
                if std::mem::take(&mut state.grew) && rc == ffi::SQLITE_OK {
                    // This connection's own map already grew (the default VFS maps the new
                    // size on the size hint); the others' maps are now short.
                    state.seen_growth = state.growth.fetch_add(1, Ordering::AcqRel) + 1;
                }
                WINDOW.with(|w| w.set(0));
                let forwarded = forward_file_control(file, op, arg);
                if rc == ffi::SQLITE_OK {
                    forwarded
                } else {
                    rc
                }
            }
            ffi::SQLITE_FCNTL_SIZE_HINT if !arg.is_null() => {
                let wanted = *arg.cast::<i64>();
                let mut size = 0;
                let sized = db_file_size(file, &mut size) == ffi::SQLITE_OK;
                let state = state(file);
                // Reserved before the default VFS extends the file to the hinted size (it does
                // when the file is memory-mapped), so the blocks under the new size exist.
                if state.buffering && !(sized && reserve(state.fd, size, wanted)) {
                    state.buffering = false;
                }
                state.grew |= sized && wanted > size;
                forward_file_control(file, op, arg)
            }
            _ => forward_file_control(file, op, arg),
        }
    }
}

/// Reserves the blocks a file of `size` bytes needs to grow to `wanted`, without changing its
/// size. Returns whether writes up to that size can no longer fail for want of space.
///
/// `fd` is the file's descriptor, or -1: nothing to reserve through (only the power-loss
/// recorder, which has no space to run out of).
fn reserve(fd: c_int, size: i64, wanted: i64) -> bool {
    if fd < 0 || wanted <= size {
        return true;
    }
    loop {
        // SAFETY: fallocate only reads its arguments; `fd` is the open file's descriptor.
        let rc = unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, size, wanted - size) };
        if rc == 0 {
            return true;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

unsafe extern "C" fn db_fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls this on a file `wrap` wrapped (with fetch methods), `out` valid.
    unsafe {
        let state = state(file);
        let methods = original();
        if state.fetched == 0 {
            let growth = state.growth.load(Ordering::Acquire);
            if growth != state.seen_growth {
                // No mapped page is held: drop the short map; the fetch below maps the file
                // at its current size.
                state.seen_growth = growth;
                #[cfg(test)]
                MAPS_DROPPED.with(|n| n.set(n.get() + 1));
                if let Some(unfetch) = methods.xUnfetch {
                    let rc = unfetch(file, 0, std::ptr::null_mut());
                    if rc != ffi::SQLITE_OK {
                        return rc;
                    }
                }
            }
        }
        let Some(fetch) = methods.xFetch else {
            *out = std::ptr::null_mut();
            return ffi::SQLITE_OK;
        };
        let rc = fetch(file, offset, amount, out);
        if rc == ffi::SQLITE_OK && !(*out).is_null() {
            state.fetched += 1;
        }
        rc
    }
}

unsafe extern "C" fn db_unfetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls this on a file `wrap` wrapped (with fetch methods).
    unsafe {
        if !page.is_null() {
            state(file).fetched -= 1;
        }
        match original().xUnfetch {
            Some(unfetch) => unfetch(file, offset, page),
            None => ffi::SQLITE_OK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::register;
    use rusqlite::{Connection, OpenFlags};

    fn open(path: &std::path::Path, vfs: bool) -> Connection {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if vfs {
            Connection::open_with_flags_and_vfs(path, flags, register().unwrap()).unwrap()
        } else {
            Connection::open_with_flags(path, flags).unwrap()
        };
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 268435456;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
        )
        .unwrap();
        conn
    }

    /// Whether this directory's filesystem is one the copy is buffered on.
    fn buffered_here(dir: &std::path::Path) -> bool {
        let file = std::fs::File::open(dir).unwrap();
        // SAFETY: fstatfs writes only the struct passed.
        unsafe {
            let mut fs: libc::statfs = std::mem::zeroed();
            assert_eq!(
                libc::fstatfs(std::os::fd::AsRawFd::as_raw_fd(&file), &mut fs),
                0
            );
            #[allow(clippy::useless_conversion)]
            let kind = i64::from(fs.f_type);
            [0xEF53_i64, 0x5846_5342, 0x0102_1994].contains(&kind)
        }
    }

    fn value(id: i64, round: i64) -> Vec<u8> {
        (0..3000 + (id % 5000))
            .map(|i| (i * 31 + id * 7 + round) as u8)
            .collect()
    }

    fn digest(conn: &Connection) -> Vec<(i64, Vec<u8>)> {
        conn.prepare("SELECT id, v FROM t ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn checkpoint(conn: &Connection, mode: &str) -> (i64, i64, i64) {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap()
    }

    /// Checkpoints through this VFS, complete and partial (a reader holding an old snapshot
    /// keeps the newest frames back), leave the database file with exactly the committed
    /// pages: a reader on SQLite's own VFS sees the model at every step, the reader with the
    /// old snapshot keeps seeing its snapshot, and once the log is truncated, the database file
    /// alone holds everything. On filesystems where the copy is buffered, a checkpoint that
    /// copied thousands of pages wrote them in far fewer calls.
    #[test]
    fn buffered_copies_match_the_model_in_complete_and_partial_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = open(&path, true);
        let plain = open(&path, false);
        let mut model = std::collections::BTreeMap::new();
        let before = COPY_WRITES.with(Cell::get);
        for round in 0..6i64 {
            writer.execute_batch("BEGIN").unwrap();
            for k in 0..400 {
                let id = (round * 137 + k * 11) % 1500;
                let v = value(id, round);
                writer
                    .execute(
                        "INSERT OR REPLACE INTO t VALUES (?1, ?2)",
                        rusqlite::params![id, v],
                    )
                    .unwrap();
                model.insert(id, v);
            }
            writer.execute_batch("COMMIT").unwrap();
            let snapshot: Vec<(i64, Vec<u8>)> = model.clone().into_iter().collect();
            // A reader on the plain VFS takes a snapshot; then more is committed; the
            // checkpoint may copy only what that reader's snapshot holds.
            plain.execute_batch("BEGIN").unwrap();
            assert_eq!(digest(&plain), snapshot, "round {round}");
            writer.execute_batch("BEGIN").unwrap();
            for k in 0..200 {
                let id = (round * 61 + k * 13) % 1500;
                let v = value(id, round + 100);
                writer
                    .execute(
                        "INSERT OR REPLACE INTO t VALUES (?1, ?2)",
                        rusqlite::params![id, v],
                    )
                    .unwrap();
                model.insert(id, v);
            }
            writer.execute_batch("COMMIT").unwrap();
            let (_, log, copied) = checkpoint(&writer, "PASSIVE");
            assert!(copied < log, "round {round}: the reader holds frames back");
            assert_eq!(digest(&plain), snapshot, "round {round}: the old snapshot");
            plain.execute_batch("COMMIT").unwrap();
            let expected: Vec<(i64, Vec<u8>)> = model.clone().into_iter().collect();
            assert_eq!(digest(&plain), expected, "round {round}: after the copy");
            if round % 2 == 1 {
                assert_eq!(checkpoint(&writer, "TRUNCATE"), (0, 0, 0));
                assert_eq!(
                    std::fs::metadata(path.with_extension("db-wal"))
                        .unwrap()
                        .len(),
                    0
                );
                let fresh = open(&path, false);
                assert_eq!(digest(&fresh), expected, "round {round}: the file alone");
            }
        }
        let integrity: String = plain
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        let pieces = COPY_WRITES.with(Cell::get) - before;
        if buffered_here(dir.path()) {
            assert!(pieces > 0, "the copies were written in pieces");
        }
    }

    /// A connection whose file grew through another connection's checkpoint (as the vault's
    /// checkpoint thread grows it) drops its short map and reads the new pages correctly.
    #[test]
    fn a_map_follows_growth_by_another_connections_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let reader = open(&path, true);
        let writer = open(&path, true);
        writer
            .execute("INSERT INTO t VALUES (0, x'00')", [])
            .unwrap();
        checkpoint(&writer, "PASSIVE");
        // The reader maps the small file.
        assert_eq!(digest(&reader).len(), 1);
        writer.execute_batch("BEGIN").unwrap();
        let mut expected = vec![(0, vec![0u8])];
        for id in 1..2000 {
            let v = value(id, 3);
            writer
                .execute("INSERT INTO t VALUES (?1, ?2)", rusqlite::params![id, v])
                .unwrap();
            expected.push((id, v));
        }
        writer.execute_batch("COMMIT").unwrap();
        let before = MAPS_DROPPED.with(Cell::get);
        assert_eq!(checkpoint(&writer, "TRUNCATE"), (0, 0, 0));
        assert_eq!(digest(&reader), expected);
        assert!(
            MAPS_DROPPED.with(Cell::get) > before,
            "the reader's map was dropped and made again at the new size"
        );
    }
}
