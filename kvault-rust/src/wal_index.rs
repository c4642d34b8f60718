//! A read-only look at the WAL index header, to tell without a read transaction whether any
//! connection (in any process) has committed since a given moment.
//!
//! Every commit in WAL mode rewrites the 48-byte header at the start of the WAL index (it
//! carries a commit counter, the last frame and checksums), and a WAL restart changes its salts.
//! SQLite writes the second copy of the header, then a memory barrier, then the first; a reader
//! that finds both copies equal has a header no writer was in the middle of. Comparing that
//! header with one read earlier is thus a sound "nothing was committed in between" test: the
//! same information `PRAGMA data_version` gives, without its read lock (two `fcntl` calls).
//!
//! The layout is SQLite's documented WAL-index format (<https://sqlite.org/walformat.html>).
//! The view is the connection's own mapping of the index, obtained through the VFS's `xShmMap`
//! exactly as SQLite's WAL code obtains it. Opening the `-shm` file separately would be wrong:
//! closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
//! included (a first version did that; another process then rebuilt the index under it).
//! The mapping lives until the connection closes, so the store drops the view before that.

use std::os::raw::c_void;

use rusqlite::{ffi, Connection};

/// Size of one copy of the header.
pub const HEADER_BYTES: usize = 48;

/// Bytes of one WAL-index region, as SQLite maps them.
const REGION_BYTES: i32 = 32 * 1024;

/// The header bytes, as a token that changes with every commit.
pub type CommitToken = [u8; HEADER_BYTES];

/// The first WAL-index region of one connection (SQLite's mapping, not a copy).
#[derive(Debug)]
pub struct WalIndexView {
    region: *const u8,
}

// SAFETY: the region is only read, through volatile loads, while its connection is open (the
// store owning both guarantees that); any thread may do so.
unsafe impl Send for WalIndexView {}

impl WalIndexView {
    /// The WAL index of `conn`'s main database, or `None` if it has none mapped (not in WAL
    /// mode, a VFS without shared memory, or an error).
    ///
    /// The caller must drop the view before `conn` closes.
    #[must_use]
    pub fn open(conn: &Connection) -> Option<Self> {
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: FILE_POINTER writes the main database's sqlite3_file pointer into `file`.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                std::ptr::from_mut(&mut file).cast(),
            )
        };
        if rc != ffi::SQLITE_OK || file.is_null() {
            return None;
        }
        // SAFETY: `file` is the open main-database file of `conn`; its methods table is
        // SQLite's. xShmMap exists from io-methods version 2. With bExtend = 0 it only returns
        // the region if the file already has it, which the WAL code then maps the same way.
        unsafe {
            let methods = (*file).pMethods;
            if methods.is_null() || (*methods).iVersion < 2 {
                return None;
            }
            let shm_map = (*methods).xShmMap?;
            let mut region: *mut c_void = std::ptr::null_mut();
            if shm_map(file, 0, REGION_BYTES, 0, &mut region) != ffi::SQLITE_OK || region.is_null()
            {
                return None;
            }
            Some(Self {
                region: region.cast::<u8>().cast_const(),
            })
        }
    }

    /// The current header, or `None` while a writer is updating it (or before the index is
    /// initialised): callers then take the slow path.
    #[must_use]
    pub fn token(&self) -> Option<CommitToken> {
        let mut first = [0u8; HEADER_BYTES];
        let mut second = [0u8; HEADER_BYTES];
        // SAFETY: both copies lie inside the mapped region, which outlives this view; volatile
        // reads because other processes write the memory.
        unsafe {
            for (i, byte) in first.iter_mut().enumerate() {
                *byte = std::ptr::read_volatile(self.region.add(i));
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            for (i, byte) in second.iter_mut().enumerate() {
                *byte = std::ptr::read_volatile(self.region.add(HEADER_BYTES + i));
            }
        }
        // Byte 12 is `isInit`.
        (first == second && first[12] == 1).then_some(first)
    }
}
