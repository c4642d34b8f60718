//! WAL files: frames written in large pieces, and read ahead during a checkpoint.
//!
//! SQLite writes each WAL frame with two `write` calls (the 24-byte frame header, then the
//! page), so an 80 MB bulk append costs 40,000 system calls; the kernel's per-call work was
//! about half of such an append's time (measured with `perf`). A WAL file gets a buffer that
//! collects consecutive writes and hands them to the real file in large pieces.
//!
//! Why this is safe: frames become visible to other connections only when the writer publishes
//! a new WAL-index header, which SQLite does after a commit's last write to the WAL. Every
//! write that can be that last one reaches the file before it returns: the page of a commit
//! frame (the buffer is flushed with it), a commit frame's header rewritten in place (SQLite
//! recomputes checksums after the commit frame when a transaction overwrote frames; written
//! straight through), and anything after a sync until the next ordinary frame header (written
//! straight through). So every frame a reader can find is in the file. Frames of a transaction
//! still in progress may wait in the buffer; nobody else reads them, the writer's own reads go
//! through `xRead`, which flushes first, and a crash loses them exactly as it would lose an
//! unfinished transaction. Every other call on the file (sync, truncate, size, read, file control, close)
//! flushes first too, so the file looks to SQLite exactly as if each write had been made at
//! once, and a non-consecutive write (a frame rewritten in place, a restarted log) flushes the
//! buffer before it goes ahead.
//!
//! Reads ahead: a checkpoint reads the frames it copies one page at a time, in the order of
//! their database pages, which for pages a bulk write appended is the order of the log. While
//! the database file says a checkpoint's copy is under way on this thread
//! ([`db_file::checkpoint_window`]), a read the last read-ahead does not hold reads up to
//! [`IO_PIECE`] bytes from there, and the following reads are served from them. The frames a
//! checkpoint copies do not change while it copies (SQLite reads them on the same premise), and
//! the bytes read ahead serve only reads of the same copy: the next one starts afresh.

use std::ffi::{c_int, c_void};

use rusqlite::ffi;

use super::{db_file, methods, IO_PIECE};

/// Bytes a WAL file collects before writing them out. The default VFS writes at most
/// 128 KiB - 1 bytes per call (it masks larger lengths), so the buffer stays below that.
const BUFFER_BYTES: usize = 96 << 10;
/// Size of a WAL frame header; its bytes 4..8 are the commit field (non-zero on a commit frame).
const FRAME_HEADER_BYTES: c_int = 24;

/// Our part of an open WAL file; the default VFS's file follows at [`INNER_OFFSET`].
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    buffer: *mut WriteBuffer,
    ahead: *mut ReadAhead,
}

/// Where the wrapped file starts inside ours (aligned for any C struct).
const INNER_OFFSET: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// Bytes a WAL file needs when the default VFS's file takes `inner`.
pub(super) const fn file_size(inner: usize) -> usize {
    INNER_OFFSET + inner
}

/// Writes waiting to be made: `bytes` belong at file offset `start`.
#[derive(Default)]
struct WriteBuffer {
    bytes: Vec<u8>,
    start: i64,
    /// The last write was the header of a commit frame: its page completes the commit.
    commit_pending: bool,
    /// End of the furthest write through this handle since the log last started (offset 0):
    /// a write below it rewrites bytes this connection wrote.
    high_water: i64,
    /// A sync happened and no ordinary frame header has been written since: writes go
    /// straight through (see `wal_write`).
    after_sync: bool,
}

/// Bytes read ahead during one checkpoint's copy: `bytes` are the log's from offset `start`.
#[derive(Default)]
struct ReadAhead {
    bytes: Vec<u8>,
    start: i64,
    /// The copy they were read for ([`db_file::checkpoint_window`]); 0: none.
    window: u64,
    /// The log's size when this copy first read ahead (it only grows during a copy).
    file_len: i64,
}

/// The default VFS's file inside ours.
///
/// # Safety
/// `file` must be a WAL file opened by [`open`].
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    unsafe { file.cast::<u8>().add(INNER_OFFSET).cast() }
}

/// # Safety
/// `file` must be a WAL file opened by [`open`] and not yet closed.
unsafe fn buffer<'f>(file: *mut ffi::sqlite3_file) -> &'f mut WriteBuffer {
    unsafe { &mut *(*file.cast::<WalFile>()).buffer }
}

/// Opens a WAL file with the default VFS and puts the buffers in front of it.
///
/// # Safety
/// As the VFS's `xOpen`, with `file` of at least [`file_size`] zeroed bytes.
pub(super) unsafe fn open(
    default: *mut ffi::sqlite3_vfs,
    default_open: unsafe extern "C" fn(
        *mut ffi::sqlite3_vfs,
        ffi::sqlite3_filename,
        *mut ffi::sqlite3_file,
        c_int,
        *mut c_int,
    ) -> c_int,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: the wrapped file fits after INNER_OFFSET (the caller's contract).
    unsafe {
        let wrapped = inner(file);
        let rc = default_open(default, name, wrapped, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            (*file).pMethods = std::ptr::null();
            return rc;
        }
        (*file.cast::<WalFile>()).buffer = Box::into_raw(Box::default());
        (*file.cast::<WalFile>()).ahead = Box::into_raw(Box::default());
        (*file).pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

/// Writes out the buffer.
///
/// # Safety
/// `file` must be a WAL file opened by [`open`] and not yet closed.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let pending = buffer(file);
        if pending.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let len = c_int::try_from(pending.bytes.len()).unwrap_or(c_int::MAX);
        let rc = write_inner(file, pending.bytes.as_ptr().cast(), len, pending.start);
        // Written or failed, these bytes are done with: a failure reaches SQLite through the
        // call that caused the flush, and SQLite abandons the transaction.
        pending.bytes.clear();
        rc
    }
}

/// Writes to the wrapped file directly.
///
/// # Safety
/// `file` must be a WAL file opened by [`open`]; `data` must hold `amount` readable bytes.
unsafe fn write_inner(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    unsafe {
        let wrapped = inner(file);
        match methods(wrapped).xWrite {
            Some(write) => write(wrapped, data, amount, offset),
            None => ffi::SQLITE_IOERR_WRITE,
        }
    }
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls this on a file `open` wrapped, with `amount` readable bytes.
    unsafe {
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        let pending = buffer(file);
        let is_header = amount == FRAME_HEADER_BYTES;
        let is_commit_header = is_header && bytes[4..8] != [0, 0, 0, 0];
        if offset == 0 {
            // The log (re)starts with its header.
            pending.high_water = 0;
        }
        if is_header && !is_commit_header {
            pending.after_sync = false;
        }
        let follows =
            !pending.bytes.is_empty() && offset == pending.start + pending.bytes.len() as i64;
        let end = offset + i64::from(amount);
        // Written straight through: writes too large for the buffer; a commit frame's header
        // rewritten in place (SQLite recomputes the checksums of a transaction whose frames it
        // overwrote after writing its commit frame; no page write follows that header); and
        // the writes that follow a sync until the next ordinary frame (the rest of a frame
        // split at a sync point, which also ends a commit).
        let through = len > BUFFER_BYTES
            || pending.after_sync
            || (is_commit_header && !follows && offset < pending.high_water);
        pending.high_water = pending.high_water.max(end);
        // What is buffered goes first when this write does not continue it, or goes straight
        // through: nothing written before it may be left behind.
        if !follows || through {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let pending = buffer(file);
        if through {
            // A commit header written through still needs its page written through.
            pending.commit_pending = is_commit_header;
            return write_inner(file, data, amount, offset);
        }
        if pending.bytes.is_empty() {
            pending.start = offset;
            if pending.bytes.capacity() == 0 {
                pending.bytes.reserve_exact(BUFFER_BYTES);
            }
        }
        pending.bytes.extend_from_slice(bytes);
        let completes_commit = if is_header {
            pending.commit_pending = is_commit_header;
            false
        } else {
            std::mem::take(&mut pending.commit_pending)
        };
        if completes_commit || pending.bytes.len() >= BUFFER_BYTES {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: called once, on a file `open` wrapped; the buffer is freed after its last use.
    unsafe {
        let flushed = flush(file);
        let wrapped = inner(file);
        let closed = methods(wrapped)
            .xClose
            .map_or(ffi::SQLITE_OK, |close| close(wrapped));
        drop(Box::from_raw((*file.cast::<WalFile>()).buffer));
        drop(Box::from_raw((*file.cast::<WalFile>()).ahead));
        (*file.cast::<WalFile>()).buffer = std::ptr::null_mut();
        (*file.cast::<WalFile>()).ahead = std::ptr::null_mut();
        if flushed == ffi::SQLITE_OK {
            closed
        } else {
            flushed
        }
    }
}

/// The wrapped file and its methods, for `flush_then_forward!`.
///
/// # Safety
/// `file` must be a WAL file opened by [`open`] and not yet closed.
unsafe fn wrapped<'f>(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'f ffi::sqlite3_io_methods) {
    unsafe {
        let wrapped = inner(file);
        (wrapped, methods(wrapped))
    }
}

flush_then_forward!(forward_read, flush, wrapped, xRead, (data: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));

unsafe extern "C" fn wal_read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let window = db_file::checkpoint_window();
    // SAFETY: SQLite calls this on a file `open` wrapped, with `amount` writable bytes at
    // `data`.
    unsafe {
        if window == 0 || !buffer(file).bytes.is_empty() {
            return forward_read(file, data, amount, offset);
        }
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_READ;
        };
        let ahead = &mut *(*file.cast::<WalFile>()).ahead;
        if ahead.window != window {
            ahead.window = window;
            ahead.bytes.clear();
            let mut size = 0;
            let wrapped = inner(file);
            ahead.file_len = match methods(wrapped).xFileSize {
                Some(file_size) if file_size(wrapped, &mut size) == ffi::SQLITE_OK => size,
                _ => 0,
            };
        }
        let held = offset >= ahead.start
            && offset + i64::from(amount) <= ahead.start + ahead.bytes.len() as i64;
        if !held {
            let want = usize::try_from(ahead.file_len - offset)
                .unwrap_or(0)
                .min(IO_PIECE);
            if want < len {
                return forward_read(file, data, amount, offset);
            }
            ahead.bytes.resize(want, 0);
            let wrapped = inner(file);
            let Some(read) = methods(wrapped).xRead else {
                return ffi::SQLITE_IOERR_READ;
            };
            let want_c = c_int::try_from(want).unwrap_or(c_int::MAX);
            if read(wrapped, ahead.bytes.as_mut_ptr().cast(), want_c, offset) != ffi::SQLITE_OK {
                ahead.bytes.clear();
                return forward_read(file, data, amount, offset);
            }
            ahead.start = offset;
        }
        let at = usize::try_from(offset - ahead.start).unwrap_or(0);
        std::ptr::copy_nonoverlapping(ahead.bytes[at..].as_ptr(), data.cast::<u8>(), len);
        ffi::SQLITE_OK
    }
}
flush_then_forward!(forward_truncate, flush, wrapped, xTruncate, (size: ffi::sqlite3_int64));
flush_then_forward!(forward_sync, flush, wrapped, xSync, (flags: c_int));

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: SQLite calls this on a file `open` wrapped.
    unsafe {
        let rc = forward_truncate(file, size);
        let pending = buffer(file);
        pending.high_water = pending.high_water.min(size);
        rc
    }
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite calls this on a file `open` wrapped.
    unsafe {
        let rc = forward_sync(file, flags);
        buffer(file).after_sync = true;
        rc
    }
}
flush_then_forward!(wal_file_size, flush, wrapped, xFileSize, (size: *mut ffi::sqlite3_int64));
flush_then_forward!(wal_lock, flush, wrapped, xLock, (level: c_int));
flush_then_forward!(wal_unlock, flush, wrapped, xUnlock, (level: c_int));
flush_then_forward!(wal_check_reserved_lock, flush, wrapped, xCheckReservedLock, (out: *mut c_int));
flush_then_forward!(wal_file_control, flush, wrapped, xFileControl, (op: c_int, arg: *mut c_void));

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on a file `open` wrapped.
    unsafe {
        let wrapped = inner(file);
        methods(wrapped).xSectorSize.map_or(4096, |f| f(wrapped))
    }
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on a file `open` wrapped.
    unsafe {
        let wrapped = inner(file);
        methods(wrapped)
            .xDeviceCharacteristics
            .map_or(0, |f| f(wrapped))
    }
}

/// Methods of a wrapped WAL file: version 1 (WAL files use no shared memory or mapping).
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{register, VFS_NAME};
    use rusqlite::{Connection, OpenFlags};

    fn flags() -> OpenFlags {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    }

    /// A connection through this VFS with a tiny page cache, so transactions spill frames (and
    /// rewrite spilled frames in place) long before they commit.
    fn batching(path: &std::path::Path) -> Connection {
        let conn = Connection::open_with_flags_and_vfs(path, flags(), register().unwrap()).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = 8;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
        )
        .unwrap();
        conn
    }

    /// Another connection through SQLite's default VFS: it sees only what reached the files.
    fn plain(path: &std::path::Path) -> Connection {
        Connection::open_with_flags(path, flags()).unwrap()
    }

    /// The database and its WAL copied as a crash leaves them (no WAL index, so opening the
    /// copy makes SQLite recover from the frames' checksum chain), opened on the default VFS.
    /// The directory must outlive the connection.
    fn crash_copy(path: &std::path::Path) -> (tempfile::TempDir, Connection) {
        let copy = tempfile::tempdir().unwrap();
        let copied = copy.path().join(path.file_name().unwrap());
        std::fs::copy(path, &copied).unwrap();
        let wal = path.with_extension("db-wal");
        if wal.exists() {
            std::fs::copy(&wal, copied.with_extension("db-wal")).unwrap();
        }
        let conn = plain(&copied);
        (copy, conn)
    }

    fn sum_and_count(conn: &Connection) -> (i64, i64) {
        conn.query_row("SELECT total(length(v) + id), count(*) FROM t", [], |r| {
            Ok((r.get::<_, f64>(0)? as i64, r.get(1)?))
        })
        .unwrap()
    }

    fn integrity(conn: &Connection) -> String {
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn every_commit_is_in_the_file_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let writer = batching(&path);
        let reader = plain(&path);
        let mut expected = (0i64, 0i64);
        for round in 0..30i64 {
            // Small commits (one frame) and large ones (hundreds of frames, spilled), mixed.
            let rows = if round % 3 == 0 { 400 } else { 1 };
            writer.execute_batch("BEGIN").unwrap();
            for k in 0..rows {
                let id = round * 1000 + k;
                let len = 500 + (id % 700) as usize;
                writer
                    .execute(
                        "INSERT INTO t VALUES (?1, ?2)",
                        rusqlite::params![id, vec![7u8; len]],
                    )
                    .unwrap();
                expected.0 += id + len as i64;
                expected.1 += 1;
            }
            // Rewrite rows written earlier in this transaction, whose pages were spilled.
            writer
                .execute("UPDATE t SET v = v || x'01' WHERE id >= ?1", [round * 1000])
                .unwrap();
            expected.0 += rows;
            writer.execute_batch("COMMIT").unwrap();
            assert_eq!(sum_and_count(&reader), expected, "round {round}");
        }
        assert_eq!(integrity(&reader), "ok");
    }

    #[test]
    fn rolled_back_spills_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let writer = batching(&path);
        writer
            .execute("INSERT INTO t VALUES (1, x'0102')", [])
            .unwrap();
        for attempt in 0..3 {
            writer.execute_batch("BEGIN").unwrap();
            for id in 2..600i64 {
                writer
                    .execute("INSERT INTO t VALUES (?1, zeroblob(900))", [id])
                    .unwrap();
            }
            writer.execute_batch("ROLLBACK").unwrap();
            // The next commit lands where the abandoned frames were.
            writer
                .execute("INSERT INTO t VALUES (?1, x'03')", [10_000 + attempt])
                .unwrap();
        }
        let reader = plain(&path);
        assert_eq!(sum_and_count(&reader), (1 + 2 + 3 * (10_001 + 1), 4));
        assert_eq!(integrity(&reader), "ok");
    }

    #[test]
    fn a_restarted_log_and_full_sync_stay_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = batching(&path);
        writer.execute_batch("PRAGMA synchronous = FULL").unwrap();
        let mut rows = 0;
        for round in 0..6i64 {
            writer.execute_batch("BEGIN").unwrap();
            for k in 0..200 {
                writer
                    .execute(
                        "INSERT INTO t VALUES (?1, zeroblob(1000))",
                        [round * 1000 + k],
                    )
                    .unwrap();
                rows += 1;
            }
            writer.execute_batch("COMMIT").unwrap();
            // A complete checkpoint lets the next transaction restart the log at its start.
            writer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .unwrap();
        }
        let reader = plain(&path);
        assert_eq!(
            reader
                .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                .unwrap(),
            rows
        );
        assert_eq!(integrity(&reader), "ok");
        drop(writer);
        // The last connection's close checkpoints and removes the log; the file stands alone.
        drop(reader);
        assert!(!dir.path().join("c.db-wal").exists());
        assert_eq!(integrity(&plain(&path)), "ok");
    }

    /// The file looks to SQLite as if every write had been made at once: reads and sizes see
    /// bytes still in the buffer, and a commit frame reaches the file before its write returns.
    #[test]
    fn reads_sizes_and_commits_see_buffered_writes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.db"), b"").unwrap();
        let wal_path = dir.path().join("x.db-wal");
        // SQLite hands VFSes file names followed by (empty) URI parameters: two more NULs.
        let mut name = wal_path.to_str().unwrap().as_bytes().to_vec();
        name.extend_from_slice(&[0, 0, 0]);
        register().unwrap();
        // SAFETY: the VFS is registered; `storage` is szOsFile bytes, aligned for the file
        // structs; every call passes that file, open, with buffers of the stated sizes.
        unsafe {
            let vfs = ffi::sqlite3_vfs_find(VFS_NAME.as_ptr());
            let words = usize::try_from((*vfs).szOsFile).unwrap().div_ceil(8);
            let mut storage = vec![0u64; words];
            let file = storage.as_mut_ptr().cast::<ffi::sqlite3_file>();
            let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_WAL;
            let mut out = 0;
            let rc = (*vfs).xOpen.unwrap()(vfs, name.as_ptr().cast(), file, flags, &mut out);
            assert_eq!(rc, ffi::SQLITE_OK);
            let io = &*(*file).pMethods;
            let page: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
            let plain_header = [0u8; 24];
            let mut commit_header = [0u8; 24];
            commit_header[4..8].copy_from_slice(&[0, 0, 0, 2]);
            let write = io.xWrite.unwrap();
            assert_eq!(
                write(file, plain_header.as_ptr().cast(), 24, 32),
                ffi::SQLITE_OK
            );
            assert_eq!(write(file, page.as_ptr().cast(), 4096, 56), ffi::SQLITE_OK);
            // Not a commit: nothing has reached the file yet.
            assert_eq!(std::fs::metadata(&wal_path).unwrap().len(), 0);
            let mut back = vec![0u8; 4096];
            assert_eq!(
                io.xRead.unwrap()(file, back.as_mut_ptr().cast(), 4096, 56),
                ffi::SQLITE_OK
            );
            assert_eq!(back, page);
            let mut size = 0;
            assert_eq!(io.xFileSize.unwrap()(file, &mut size), ffi::SQLITE_OK);
            assert_eq!(size, 56 + 4096);
            // A commit frame is written through before its page's write returns.
            assert_eq!(
                write(file, commit_header.as_ptr().cast(), 24, 4152),
                ffi::SQLITE_OK
            );
            assert_eq!(
                write(file, page.as_ptr().cast(), 4096, 4176),
                ffi::SQLITE_OK
            );
            assert_eq!(std::fs::metadata(&wal_path).unwrap().len(), 4176 + 4096);
            assert_eq!(io.xClose.unwrap()(file), ffi::SQLITE_OK);
        }
        let on_disk = std::fs::read(&wal_path).unwrap();
        assert_eq!(
            &on_disk[4176..],
            &(0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()[..]
        );
    }

    /// A copy of the files taken right after a commit (as a crash would leave them, without
    /// the WAL index) recovers that commit, including transactions whose spilled frames were
    /// rewritten in place: SQLite then rewrites the frame headers' checksums after writing
    /// the commit frame, and recovery trusts only frames whose checksums chain.
    #[test]
    fn a_crash_right_after_a_commit_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer = batching(&path);
        for round in 0..4i64 {
            writer.execute_batch("BEGIN").unwrap();
            for k in 0..300 {
                writer
                    .execute(
                        "INSERT INTO t VALUES (?1, zeroblob(300))",
                        [round * 1000 + k],
                    )
                    .unwrap();
            }
            // Rewrites pages spilled earlier in this transaction: their frames are
            // overwritten in place, so the commit rewrites checksums.
            writer
                .execute(
                    "UPDATE t SET v = zeroblob(301) WHERE id >= ?1",
                    [round * 1000],
                )
                .unwrap();
            writer.execute_batch("COMMIT").unwrap();
            let (_copy, recovered) = crash_copy(&path);
            let (rows, bytes): (i64, i64) = recovered
                .query_row("SELECT count(*), total(length(v)) FROM t", [], |r| {
                    Ok((r.get(0)?, r.get::<_, f64>(1)? as i64))
                })
                .unwrap();
            assert_eq!(
                (rows, bytes),
                ((round + 1) * 300, (round + 1) * 300 * 301),
                "round {round}"
            );
            assert_eq!(integrity(&recovered), "ok");
        }
    }

    /// Random transactions (small and spilling, with in-place rewrites, rollbacks,
    /// checkpoints and both sync modes) against a model: after every commit, another
    /// connection and a crash copy (files without the WAL index) both hold exactly the model.
    #[test]
    fn random_transactions_match_a_model_live_and_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let writer = batching(&path);
        let reader = plain(&path);
        let mut model: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
        let mut seed = 0x5eed_u64;
        let mut next = |bound: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % bound
        };
        let digest = |conn: &Connection| -> Vec<(i64, i64)> {
            conn.prepare("SELECT id, length(v) FROM t ORDER BY id")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        for step in 0..120 {
            if next(4) == 0 {
                let mode = if next(2) == 0 { "NORMAL" } else { "FULL" };
                writer
                    .execute_batch(&format!("PRAGMA synchronous = {mode}"))
                    .unwrap();
            }
            let mut staged = model.clone();
            writer.execute_batch("BEGIN").unwrap();
            let inserts = if next(3) == 0 {
                300 + next(300)
            } else {
                next(4)
            };
            for _ in 0..inserts {
                let id = next(5000) as i64;
                let len = 1 + next(1500) as i64;
                writer
                    .execute(
                        "INSERT OR REPLACE INTO t VALUES (?1, zeroblob(?2))",
                        [id, len],
                    )
                    .unwrap();
                staged.insert(id, len);
            }
            if next(2) == 0 {
                // Rewrites rows (and pages) this transaction may already have spilled.
                let (low, high) = (next(5000) as i64, next(5000) as i64);
                let len = 1 + next(900) as i64;
                writer
                    .execute(
                        "UPDATE t SET v = zeroblob(?3) WHERE id BETWEEN ?1 AND ?2",
                        [low.min(high), low.max(high), len],
                    )
                    .unwrap();
                for (_, v) in staged.range_mut(low.min(high)..=low.max(high)) {
                    *v = len;
                }
            }
            if next(5) == 0 {
                writer.execute_batch("ROLLBACK").unwrap();
            } else {
                writer.execute_batch("COMMIT").unwrap();
                model = staged;
            }
            match next(6) {
                0 => writer
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    .unwrap(),
                1 => writer
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .unwrap(),
                _ => {}
            }
            let expected: Vec<(i64, i64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(digest(&reader), expected, "live, step {step}");
            if step % 2 == 1 {
                let (_copy, recovered) = crash_copy(&path);
                assert_eq!(digest(&recovered), expected, "after a crash, step {step}");
                assert_eq!(integrity(&recovered), "ok");
            }
        }
    }
}
