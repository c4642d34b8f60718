//! One place where core errors become Python exceptions.
//!
//! The exception classes are defined in `python/ambervault/exceptions.py` (so they can also
//! subclass the matching built-ins, e.g. `InvalidArgument` is a `ValueError`) and imported here.

use pyo3::exceptions::PyTypeError;
use pyo3::PyErr;

pyo3::import_exception!(ambervault.exceptions, VaultError);
pyo3::import_exception!(ambervault.exceptions, InvalidArgument);
pyo3::import_exception!(ambervault.exceptions, DatabaseBusy);
pyo3::import_exception!(ambervault.exceptions, IoError);
pyo3::import_exception!(ambervault.exceptions, ReadOnlyError);
pyo3::import_exception!(ambervault.exceptions, CorruptionError);
pyo3::import_exception!(ambervault.exceptions, IncompatibleFormatError);
pyo3::import_exception!(ambervault.exceptions, ClosedError);
pyo3::import_exception!(ambervault.exceptions, ValueChangedError);
pyo3::import_exception!(ambervault.exceptions, NotFound);
pyo3::import_exception!(ambervault.exceptions, Conflict);
pyo3::import_exception!(ambervault.exceptions, WrongKeyError);
pyo3::import_exception!(ambervault.exceptions, EncryptionUnavailableError);

/// Errors a binding method can return; `?` converts core errors and `PyErr`s alike.
pub enum BindingError {
    /// An error from the key-value core.
    Vault(kvault::Error),
    /// An error from the column store.
    Column(columnar::Error),
    /// An error raised on the Python side (conversion, a reader's exception, ...).
    Py(PyErr),
}

impl From<kvault::Error> for BindingError {
    fn from(err: kvault::Error) -> Self {
        Self::Vault(err)
    }
}

impl From<columnar::Error> for BindingError {
    fn from(err: columnar::Error) -> Self {
        Self::Column(err)
    }
}

impl From<PyErr> for BindingError {
    fn from(err: PyErr) -> Self {
        Self::Py(err)
    }
}

impl From<BindingError> for PyErr {
    fn from(err: BindingError) -> Self {
        match err {
            BindingError::Py(err) => err,
            BindingError::Vault(err) => map_vault_error(err),
            BindingError::Column(err) => map_column_error(err),
        }
    }
}

/// Maps a core error to the matching Python exception, with the core's message.
pub fn map_vault_error(err: kvault::Error) -> PyErr {
    use kvault::Error as E;
    let message = err.to_string();
    match err {
        E::InvalidArgument(_) => InvalidArgument::new_err(message),
        E::Closed(_) => ClosedError::new_err(message),
        E::Busy { .. } => DatabaseBusy::new_err(message),
        E::Corrupted(_) => CorruptionError::new_err(message),
        E::IncompatibleFormat { .. } => IncompatibleFormatError::new_err(message),
        E::ReadOnly(_) => ReadOnlyError::new_err(message),
        E::ValueChanged => ValueChangedError::new_err(message),
        E::Conflict(_) => Conflict::new_err(message),
        E::WrongKey(_) => WrongKeyError::new_err(message),
        E::EncryptionUnavailable => EncryptionUnavailableError::new_err(message),
        E::Io(io) => match io.raw_os_error() {
            Some(errno) => IoError::new_err((errno, message)),
            None => IoError::new_err((io_kind_errno(io.kind()), message)),
        },
        // The enum is #[non_exhaustive]: a variant added later degrades to the base class
        // instead of failing to compile or panicking.
        _ => VaultError::new_err(message),
    }
}

/// Maps a column-store error to the matching Python exception.
pub fn map_column_error(err: columnar::Error) -> PyErr {
    use columnar::Error as E;
    let message = err.to_string();
    match err {
        E::InvalidArgument(_) | E::ColumnExists(_) => InvalidArgument::new_err(message),
        E::ColumnNotFound(name) => NotFound::new_err(name),
        E::IndexOutOfRange { .. } => pyo3::exceptions::PyIndexError::new_err(format!(
            "column index out of range ({message})"
        )),
        E::Corrupted(_) => CorruptionError::new_err(message),
        E::Vault(inner) => map_vault_error(inner),
        // #[non_exhaustive]: later variants degrade to the base class.
        _ => VaultError::new_err(message),
    }
}

fn io_kind_errno(kind: std::io::ErrorKind) -> i32 {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound => libc_errno::ENOENT,
        K::PermissionDenied => libc_errno::EACCES,
        K::AlreadyExists => libc_errno::EEXIST,
        K::IsADirectory => libc_errno::EISDIR,
        K::StorageFull => libc_errno::ENOSPC,
        _ => libc_errno::EIO,
    }
}

// POSIX errno values (identical on Linux and macOS for these), so Python's OSError.errno is
// meaningful without pulling libc into the binding.
mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EACCES: i32 = 13;
    pub const EEXIST: i32 = 17;
    pub const EISDIR: i32 = 21;
    pub const ENOSPC: i32 = 28;
}

/// A `TypeError` with the given message.
pub fn type_error(message: String) -> BindingError {
    BindingError::Py(PyTypeError::new_err(message))
}
