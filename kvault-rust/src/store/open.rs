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
        // SQLCipher logs to stderr by default, e.g. an "hmac check failed" line for every wrong
        // key; a library reports that as an error instead. The settings are process-wide.
        #[cfg(feature = "encryption")]
        if let Ok(conn) = Connection::open_in_memory() {
            let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE; PRAGMA cipher_log = off;");
        }
    });
}

pub(crate) fn open_connection(location: &Location, options: &StoreOptions) -> Result<Connection> {
    configure_sqlite();
    let key = options.key.as_ref();
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
            if let (Some(key), false) = (key, options.read_only) {
                if !path.exists() {
                    create_encrypted(path, key)?;
                }
            }
            let conn = open_file(path, flags, key)?;
            if options.read_only || conn.is_readonly(rusqlite::MAIN_DB)? {
                // A WAL file needs its -shm index; in a directory we cannot write, SQLite can
                // neither create nor use it. Such a file cannot change under us (no writer could
                // create the WAL either), so it is opened as immutable, without locking.
                match conn.query_row("PRAGMA schema_version", [], |_| Ok(())) {
                    Ok(()) => conn,
                    Err(err) => match err.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen) => {
                            drop(conn);
                            let conn = open_immutable(path, key)?;
                            first_read(&conn, path, key)?;
                            conn
                        }
                        _ => return Err(refusal(&conn, path, key, err)),
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

/// Leftovers of an interrupted [`create_encrypted`] older than this are removed by the next.
const STALE_CREATION: std::time::Duration = std::time::Duration::from_secs(600);

/// Set on every new file, before its first page is written (SQLite fixes the mode then).
/// Incremental auto-vacuum keeps a map of each page's parent in the file (one map page per
/// about 800 pages), so a read at an offset inside a long value finds the overflow page it
/// needs through the map instead of touching every page of the chain before it: random 64 KiB
/// reads in 1 MiB chunks ran 1.2-1.4x as fast in a fresh process (`docs/performance.md`).
/// Free pages stay in the file as without it (nothing runs `incremental_vacuum` unasked).
/// Files made without it keep their mode.
const NEW_FILE_AUTO_VACUUM: &str = "PRAGMA auto_vacuum = INCREMENTAL;";

/// Creates the encrypted vault file `path`, which does not exist, so that a crash never
/// leaves a torn first page there. SQLCipher keeps the key-derivation salt and an HMAC of the
/// whole page in page 1, so a first page cut short by a power loss would make the file
/// unopenable for good (a plain file survives it: its first page is then an empty database
/// that still reads as one). The page is written and synced under a temporary name beside
/// `path`, then linked to `path` and the directory synced. A link fails if another process
/// created `path` meanwhile (its file is then used) or where the file system has no hard
/// links (SQLite then creates the file in place, as for plain files).
fn create_encrypted(path: &Path, key: &Key) -> Result<()> {
    let (Some(name), Some(dir)) = (path.file_name(), path.parent()) else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.creating-", name.to_string_lossy());
    remove_stale_creations(dir, &prefix);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!("{prefix}{}-{nanos}", std::process::id()));
    let created = (|| -> Result<()> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = open_file(&temp, flags, Some(key))?;
        conn.execute_batch(NEW_FILE_AUTO_VACUUM)?;
        // The switch to WAL writes page 1 (salt, header) and syncs it. The file stays in WAL
        // mode: switching it at `path` would rewrite page 1 there, outside the WAL's
        // protection, where a torn write is as fatal as at creation.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.close().map_err(|(_, e)| e)?;
        std::fs::File::open(&temp)?.sync_all()?;
        // A WAL at `path` without its database is a leftover of a deleted file: SQLite deletes
        // it when it finds the database empty, which this one no longer is.
        if !path.exists() {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            let _ = std::fs::remove_file(wal);
        }
        if std::fs::hard_link(&temp, path).is_ok() {
            std::fs::File::open(dir)?.sync_all()?;
            #[cfg(feature = "test-hooks")]
            {
                let absolute =
                    |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                let _ = crate::powerloss_vfs::rename(&absolute(&temp), &absolute(path));
            }
        }
        Ok(())
    })();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut leftover = temp.clone().into_os_string();
        leftover.push(suffix);
        let _ = std::fs::remove_file(leftover);
    }
    created
}

/// Removes the files of creations of `dir`'s vault named by `prefix` that were interrupted
/// (by a crash) at least [`STALE_CREATION`] ago.
fn remove_stale_creations(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(prefix)
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= STALE_CREATION);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The page size of every encrypted file (SQLCipher's default).
pub(crate) const ENCRYPTED_PAGE_SIZE: u32 = 4096;

/// Refuses a key this build or location cannot honour, before any file is touched.
pub(crate) fn check_key(location: &Location, options: &StoreOptions) -> Result<()> {
    if options.key.is_none() {
        return Ok(());
    }
    if !cfg!(feature = "encryption") {
        return Err(Error::EncryptionUnavailable);
    }
    if *location == Location::Memory {
        return Err(Error::InvalidArgument(
            "key= needs a file: an in-memory vault is never written to disk".into(),
        ));
    }
    // SQLCipher fixes the page size before the first read (it cannot be read from an encrypted
    // file), so a size other than its default would have to be given again at every open.
    if options.page_size != ENCRYPTED_PAGE_SIZE {
        return Err(Error::InvalidArgument(format!(
            "an encrypted vault has {ENCRYPTED_PAGE_SIZE}-byte pages; page_size={} cannot be \
             used with a key",
            options.page_size
        )));
    }
    Ok(())
}

/// Gives `key` to a connection that has just been opened: SQLCipher then decrypts every page
/// it reads and encrypts every page it writes, of the file and of its WAL. Must come before any
/// statement (the first read would otherwise take the file as plaintext).
#[cfg(feature = "encryption")]
pub(crate) fn apply_key(conn: &Connection, key: &Key) -> Result<()> {
    key_call(conn, key, rusqlite::ffi::sqlite3_key_v2)
}

/// The signature of SQLCipher's `sqlite3_key_v2` and `sqlite3_rekey_v2`.
#[cfg(feature = "encryption")]
pub(crate) type KeyFn = unsafe extern "C" fn(
    *mut rusqlite::ffi::sqlite3,
    *const std::os::raw::c_char,
    *const std::os::raw::c_void,
    std::os::raw::c_int,
) -> std::os::raw::c_int;

/// Hands `key`'s bytes to `f` (`sqlite3_key_v2` or `sqlite3_rekey_v2`) for the main database;
/// SQLite's message on failure.
#[cfg(feature = "encryption")]
pub(crate) fn key_call(conn: &Connection, key: &Key, f: KeyFn) -> Result<()> {
    let material = key.material();
    let len = std::os::raw::c_int::try_from(material.len())
        .map_err(|_| Error::InvalidArgument("key is too long".into()))?;
    // SAFETY: the handle is valid while `conn` lives; SQLCipher copies the `len` bytes it is
    // given before returning.
    let rc = unsafe {
        f(
            conn.handle(),
            c"main".as_ptr(),
            material.as_ptr().cast(),
            len,
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        return Ok(());
    }
    // SAFETY: the handle is valid; sqlite3_errmsg returns a NUL-terminated string owned by the
    // connection, copied here before any other call on it.
    let message = unsafe {
        let text = rusqlite::ffi::sqlite3_errmsg(conn.handle());
        (!text.is_null()).then(|| {
            std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned()
        })
    };
    Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), message).into())
}

/// Without the `encryption` feature no key reaches here ([`check_key`] refuses it first).
#[cfg(not(feature = "encryption"))]
pub(crate) fn apply_key(_conn: &Connection, _key: &Key) -> Result<()> {
    Err(Error::EncryptionUnavailable)
}

/// SQLite's 16-byte header string, which a plain SQLite file starts with and an encrypted one
/// does not (SQLCipher stores the key-derivation salt there).
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Whether the file at `path` starts with the plain SQLite header.
fn has_plain_header(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .is_ok_and(|()| &header == SQLITE_HEADER)
}

/// The first read of a file's header and schema; with a key, the proof that the key opens it.
fn first_read(conn: &Connection, path: &Path, key: Option<&Key>) -> Result<()> {
    conn.query_row("PRAGMA schema_version", [], |_| Ok(()))
        .map_err(|err| refusal(conn, path, key, err))
}

/// The error for a file whose first read failed. The connection is about to be dropped; it
/// must write nothing, not even the checkpoint SQLite runs when the last connection to a WAL
/// file closes (which would copy the WAL's frames into the file without decrypting them).
fn refusal(conn: &Connection, path: &Path, key: Option<&Key>, err: rusqlite::Error) -> Error {
    let _ = conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    );
    if err.sqlite_error_code() != Some(rusqlite::ErrorCode::NotADatabase) {
        return err.into();
    }
    let shown = path.display();
    match (key.is_some(), has_plain_header(path)) {
        (true, true) => Error::WrongKey(format!(
            "{shown} is not encrypted: open it without a key (a key was given)"
        )),
        (true, false) => Error::WrongKey(format!(
            "the key does not open {shown}: it is a wrong key, the file is not an encrypted \
             vault, or its first page is damaged"
        )),
        (false, false) => Error::Corrupted(format!(
            "{shown} is not a SQLite database; if it is an encrypted vault, open it with its key \
             ({err})"
        )),
        (false, true) => err.into(),
    }
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

/// `PRAGMA page_size` of the main file. SQLCipher answers it on a keyed connection as
/// `cipher_page_size`, in text; both forms are read here.
pub(crate) fn page_size(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA page_size", [], |row| match row.get_ref(0)? {
        rusqlite::types::ValueRef::Integer(size) => Ok(size),
        rusqlite::types::ValueRef::Text(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| {
                rusqlite::Error::InvalidColumnType(
                    0,
                    "page_size".into(),
                    rusqlite::types::Type::Text,
                )
            }),
        other => Err(rusqlite::Error::InvalidColumnType(
            0,
            "page_size".into(),
            other.data_type(),
        )),
    })
}

/// Bytes SQLite leaves unused at the end of every page of the main file (SQLCipher stores each
/// page's IV and MAC there; 0 in a plain file).
pub(crate) fn reserved_page_bytes(conn: &Connection) -> i64 {
    // -1 asks for the current value without changing it.
    let mut reserve: std::os::raw::c_int = -1;
    // SAFETY: the handle is valid while `conn` lives; RESERVE_BYTES reads and writes one int
    // through the pointer.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_RESERVE_BYTES,
            std::ptr::from_mut(&mut reserve).cast(),
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        i64::from(reserve.max(0))
    } else {
        0
    }
}

/// Opens a vault file through the WAL-batching VFS (see `vfs`), or SQLite's default VFS
/// where it could not be registered, and gives it `key` (if any) before anything else. The VFS
/// moves bytes only: with a key it sees encrypted pages, which it writes as they are.
pub(crate) fn open_file(path: &Path, flags: OpenFlags, key: Option<&Key>) -> Result<Connection> {
    let conn = match crate::vfs::register() {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    }?;
    if let Some(key) = key {
        apply_key(&conn, key)?;
    }
    Ok(conn)
}

pub(crate) fn open_immutable(path: &Path, key: Option<&Key>) -> Result<Connection> {
    let absolute = std::fs::canonicalize(path)?;
    let uri = format!(
        "file:{}?immutable=1",
        percent_encode_path(&absolute.to_string_lossy())
    );
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    if let Some(key) = key {
        apply_key(&conn, key)?;
    }
    Ok(conn)
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
    crate::sql_functions::register(conn)?;
    let writable = !options.read_only && !conn.is_readonly(rusqlite::MAIN_DB)?;
    if writable {
        // Reading the header first turns a non-SQLite file (or, with a key, a file the key does
        // not decrypt) into a clean error before any other PRAGMA (`cache_size` already reads
        // the schema; others could write). Read-only files had their first read on opening.
        if let Location::File(path) = location {
            first_read(conn, path, options.key.as_ref())?;
        }
    }
    // No memory map for an encrypted file: SQLCipher decrypts every page it reads, so a map
    // would serve nothing, and with one SQLite extends a new file with zeros before writing its
    // first page (a size hint), which SQLCipher then took as the file's salt: every new file
    // got the same, all-zero salt (found by `each_encrypted_file_has_its_own_random_salt`).
    let mmap_size = if options.key.is_some() {
        0
    } else {
        options.mmap_size
    };
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{}; PRAGMA mmap_size = {mmap_size}; PRAGMA temp_store = MEMORY;",
        options.cache_kb
    ))?;
    if writable {
        if options.key.is_none() {
            // (SQLCipher keeps its page size, checked equal in `check_key`.)
            conn.execute_batch(&format!("PRAGMA page_size = {};", options.page_size))?;
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            if pages == 0 {
                conn.execute_batch(NEW_FILE_AUTO_VACUUM)?;
            }
        }
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
