//! Errors of the column store. Absence of a column is an error here (every operation names one).

/// Everything that can go wrong in a column operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bad argument (unknown dtype, wrong element width, bad chunk sizes, ...). Nothing written.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named column does not exist (or was deleted).
    #[error("column {0:?} does not exist")]
    ColumnNotFound(String),
    /// A column with that name already exists.
    #[error("column {0:?} already exists")]
    ColumnExists(String),
    /// An element index outside `0..len`.
    #[error("column index {index} out of range for length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The column's length.
        len: u64,
    },
    /// Stored bytes failed a structural check (offsets not monotonic, chunk too short, ...).
    #[error("column data corrupted: {0}")]
    Corrupted(String),
    /// An error from the vault file layer (busy, read-only, I/O, closed, ...).
    #[error(transparent)]
    Vault(#[from] kvault::Error),
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Self::Vault(kvault::Error::from(err))
    }
}

impl kvault::StoreError for Error {
    fn is_busy(&self) -> bool {
        matches!(self, Self::Vault(kvault::Error::Busy { .. }))
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
