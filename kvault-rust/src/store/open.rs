//! Opening a vault file: path checks, the WAL-batching VFS, an immutable fallback for files in
//! read-only directories, PRAGMAs, and the format markers written when a file becomes a vault.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::*;
use crate::error::{Error, Result};

/// Process-wide SQLite settings, applied once before SQLite initializes (afterwards SQLite
/// refuses them, which is harmless: it keeps its defaults).
pub(crate) fn configure_sqlite() {
    static CONFIGURED: Once = Once::new();
    CONFIGURED.call_once(|| {
        // Memory statistics make every SQLite allocation take a process-wide mutex; nothing
        // here reads them.
        // SAFETY: sqlite3_config is called before any connection exists in this library; if
        // SQLite is already initialized it returns SQLITE_MISUSE and changes nothing.
        unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            );
        }
    });
}

pub(crate) fn open_connection(location: &Location, options: &StoreOptions) -> Result<Connection> {
    configure_sqlite();
    let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
    flags |= if options.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    };
    let conn = match location {
        Location::Memory => Connection::open_in_memory_with_flags(flags)?,
        Location::File(path) => {
            check_path(path, options.read_only)?;
            let conn = open_file(path, flags)?;
            if options.read_only || conn.is_readonly(rusqlite::MAIN_DB)? {
                // A WAL file needs its -shm index; in a directory we cannot write, SQLite can
                // neither create nor use it. Such a file cannot change under us (no writer could
                // create the WAL either), so it is opened as immutable, without locking.
                match conn.query_row("PRAGMA schema_version", [], |_| Ok(())) {
                    Ok(()) => conn,
                    Err(err) => match err.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen) => {
                            drop(conn);
                            open_immutable(path)?
                        }
                        _ => return Err(err.into()),
                    },
                }
            } else {
                conn
            }
        }
    };
    configure(&conn, location, options)?;
    Ok(conn)
}

/// Whether the main database file was unlinked or replaced since it was opened (SQLite's
/// `SQLITE_FCNTL_HAS_MOVED`: one `stat` of the path).
pub(crate) fn file_has_moved(conn: &Connection) -> bool {
    let mut moved: std::os::raw::c_int = 0;
    // SAFETY: the handle is valid while `conn` lives; HAS_MOVED writes one int through the
    // pointer and has no other effect.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_HAS_MOVED,
            std::ptr::from_mut(&mut moved).cast(),
        )
    };
    rc == rusqlite::ffi::SQLITE_OK && moved != 0
}

/// Opens a vault file through the WAL-batching VFS (see `wal_vfs`), or SQLite's default VFS
/// where it could not be registered.
pub(crate) fn open_file(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    match crate::wal_vfs::register() {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    }
}

pub(crate) fn open_immutable(path: &Path) -> Result<Connection> {
    let absolute = std::fs::canonicalize(path)?;
    let uri = format!(
        "file:{}?immutable=1",
        percent_encode_path(&absolute.to_string_lossy())
    );
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Ok(Connection::open_with_flags(uri, flags)?)
}

pub(crate) fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub(crate) fn check_path(path: &Path, read_only: bool) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            format!("{} is a directory, not a vault file", path.display()),
        )));
    }
    if read_only && !path.exists() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{} does not exist (read_only=True never creates a file)",
                path.display()
            ),
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        if !parent.is_dir() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("directory {} does not exist", parent.display()),
            )));
        }
    }
    Ok(())
}

pub(crate) fn configure(
    conn: &Connection,
    location: &Location,
    options: &StoreOptions,
) -> Result<()> {
    // SQLite's own busy handler absorbs short waits; `with_retries` adds the backoff on top.
    let first_wait = Duration::from_secs_f64(options.backoff_base.max(0.001));
    conn.busy_timeout(first_wait)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{}; PRAGMA mmap_size = {}; PRAGMA temp_store = MEMORY;",
        options.cache_kb, options.mmap_size
    ))?;
    let writable = !options.read_only && !conn.is_readonly(rusqlite::MAIN_DB)?;
    if writable {
        // Reading the header first turns a non-SQLite file into a clean NOTADB error before any
        // PRAGMA that could write.
        conn.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
        conn.execute_batch(&format!("PRAGMA page_size = {};", options.page_size))?;
        if options.enable_wal && *location != Location::Memory {
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            // Keep the WAL file from staying huge after a burst of writes.
            conn.execute_batch("PRAGMA journal_size_limit = 67108864;")?;
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {};",
            options.synchronous.pragma_value()
        ))?;
    }
    Ok(())
}

impl Store {
    pub(crate) fn initialize(&mut self) -> Result<()> {
        let read_only = self.read_only;
        let created_at = self.now_ms();
        let conn = self.conn()?;
        // The first read of the header: fails with NOTADB on a file that is not SQLite.
        let application_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let user_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if application_id == APPLICATION_ID && user_version > FORMAT_VERSION {
            return Err(Error::IncompatibleFormat {
                found: user_version,
                supported: FORMAT_VERSION,
            });
        }
        if application_id != 0 && application_id != APPLICATION_ID {
            return Err(Error::Corrupted(format!(
                "this SQLite file belongs to another application (application_id {application_id:#x})"
            )));
        }
        if read_only || application_id == APPLICATION_ID {
            // Already a vault: opening needs no write (and so no write lock).
            return Ok(());
        }
        self.write(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS ambervault_meta (\
                   name TEXT PRIMARY KEY NOT NULL, value ANY) WITHOUT ROWID;",
            )?;
            if application_id == 0 {
                conn.execute_batch(&format!(
                    "PRAGMA application_id = {APPLICATION_ID}; \
                     PRAGMA user_version = {BASE_FORMAT_VERSION};"
                ))?;
                conn.execute(
                    "INSERT OR IGNORE INTO ambervault_meta(name, value) VALUES \
                     ('format_version', ?1), ('created_at_ms', ?2)",
                    (BASE_FORMAT_VERSION, created_at),
                )?;
            }
            Ok(())
        })
    }
}

/// Raises the file's format version to `version` (its `user_version` and the meta table's
/// `format_version`) inside the caller's write transaction, before the first write that needs
/// it; a file already at that version or newer is left alone.
///
/// # Errors
/// SQLite errors.
pub fn require_format_version(conn: &Connection, version: i64) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current >= version {
        return Ok(());
    }
    conn.execute_batch(&format!("PRAGMA user_version = {version};"))?;
    conn.execute(
        "INSERT INTO ambervault_meta (name, value) VALUES ('format_version', ?1) \
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        [version],
    )?;
    Ok(())
}
