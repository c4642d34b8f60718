//! Errors of the vault. "Absent" is never an error here: lookups return `Option`.

use rusqlite::ErrorCode;

/// Everything that can go wrong in a vault operation.
///
/// SQLite failures are classified when they are converted (see the `From<rusqlite::Error>`
/// impl), so callers can match on the condition instead of on SQLite result codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was refused before anything was written (bad table name, chunk size, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The vault (or the stream) was closed and cannot be used any more.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// Another connection held the write lock for longer than the retry budget allows.
    #[error("database is busy: gave up after {retries} retries ({detail})")]
    Busy {
        /// How many times the operation was retried with backoff.
        retries: u32,
        /// SQLite's own message.
        detail: String,
    },
    /// The file is not a SQLite database, or its pages or the vault's own invariants are damaged.
    #[error("vault file is corrupted or not a vault: {0}")]
    Corrupted(String),
    /// The file was written by a newer ambervault format than this build can read.
    #[error(
        "vault format version {found} is newer than the newest this build supports ({supported}); \
         upgrade ambervault to open this file"
    )]
    IncompatibleFormat {
        /// The version stored in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
    /// A write was attempted on a vault opened read-only or on a read-only file.
    #[error("vault is read-only: {0}")]
    ReadOnly(String),
    /// A conditional write (`if_version`, `if_absent`) found the key in another state.
    #[error("write conflict: {0}")]
    Conflict(String),
    /// A streamed value changed under an open reader (it was overwritten or deleted).
    #[error("value was overwritten or deleted while it was being read")]
    ValueChanged,
    /// The key does not open the file: a wrong key, a key for a file that is not encrypted, or
    /// a file that is neither a vault nor encrypted. Nothing was written to the file.
    #[error("{0}")]
    WrongKey(String),
    /// A key was given to a build without encryption (the `encryption` feature). Nothing was
    /// opened or created: this build never stores plaintext in place of an encrypted file.
    #[error(
        "this build of ambervault has no encryption (built without the `encryption` feature), \
         so it cannot open a vault with a key; install or build it with encryption \
         (see docs/encryption.md)"
    )]
    EncryptionUnavailable,
    /// An operating-system I/O failure (missing directory, disk full, permission, ...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Any other SQLite failure.
    #[error("sqlite error: {0}")]
    Sqlite(rusqlite::Error),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        let Some(code) = err.sqlite_error_code() else {
            return Error::Sqlite(err);
        };
        let detail = err.to_string();
        match code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                Error::Busy { retries: 0, detail }
            }
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => Error::Corrupted(detail),
            ErrorCode::ReadOnly => Error::ReadOnly(detail),
            ErrorCode::TooBig => {
                Error::InvalidArgument(format!("value too large for SQLite: {detail}"))
            }
            ErrorCode::DiskFull => Error::Io(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("disk full: {detail}"),
            )),
            ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::PermissionDenied => {
                Error::Io(std::io::Error::other(detail))
            }
            _ => Error::Sqlite(err),
        }
    }
}

impl Error {
    /// Whether retrying the same operation later may succeed (the lock was held by someone else).
    #[must_use]
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }
}
