//! `PendingAppends`: the native half of the column write cache (the Python `ColumnCache`).
//! Appends are checked and encoded at once and held here until a flush writes them all in one
//! transaction.

use std::sync::Mutex;

use columnar::{Column, DType, Elements};
use kvault::Vault;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::columns_py::{PyColumn, PyColumnVault};
use crate::element_codec::{encode_list, encode_values, hold_items, Encoded};
use crate::errors::BindingError;

/// Appends of one column held by a [`PyPendingAppends`], already encoded.
struct PendingColumn {
    column: Py<PyColumn>,
    /// Fixed-width: the elements back to back. Variable-width: the items back to back.
    data: Vec<u8>,
    /// Variable-width only: each item's end offset within `data`.
    ends: Vec<usize>,
    count: usize,
}

#[derive(Default)]
struct Pending {
    columns: Vec<PendingColumn>,
    nbytes: usize,
}

impl Pending {
    fn slot(&mut self, column: &Bound<'_, PyColumn>) -> &mut PendingColumn {
        let at = match self
            .columns
            .iter()
            .position(|c| c.column.as_ptr() == column.as_ptr())
        {
            Some(at) => at,
            None => {
                self.columns.push(PendingColumn {
                    column: column.clone().unbind(),
                    data: Vec::new(),
                    ends: Vec::new(),
                    count: 0,
                });
                self.columns.len() - 1
            }
        };
        &mut self.columns[at]
    }
}

/// The dtype of `column`, which must belong to `vault`.
fn own_column(column: &Bound<'_, PyColumn>, vault: &Vault) -> Result<DType, BindingError> {
    let core = column.get();
    if !core.vault.same_file(vault) {
        return Err(BindingError::Py(crate::errors::InvalidArgument::new_err(
            "the column belongs to another ColumnVault",
        )));
    }
    Ok(core.dtype)
}

/// The column cache's pending appends, encoded and held natively (the Python `ColumnCache`
/// keeps the thresholds, the idle thread and the locking around it).
///
/// Each add checks and encodes its elements at once, so a bad element is refused at append
/// time with nothing held; a flush writes every column's appends in one transaction.
#[pyclass(module = "ambervault._ambervault", name = "PendingAppends", frozen)]
pub struct PyPendingAppends {
    vault: Vault,
    inner: Mutex<Pending>,
}

impl PyPendingAppends {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds encoded elements for `column` unless that would pass `cap` bytes.
    fn hold(
        &self,
        column: &Bound<'_, PyColumn>,
        encoded: Encoded<'_>,
        count: usize,
        cap: usize,
    ) -> Result<Option<usize>, BindingError> {
        let size = match &encoded {
            Encoded::Fixed(raw) => raw.len(),
            Encoded::Var(items) => items.iter().map(|i| i.len() + 8).sum(),
        };
        let mut pending = self.pending();
        if pending.nbytes + size > cap {
            return Ok(None);
        }
        pending.nbytes += size;
        let slot = pending.slot(column);
        slot.count += count;
        match encoded {
            Encoded::Fixed(raw) => slot.data.extend_from_slice(&raw),
            Encoded::Var(items) => {
                for item in items {
                    slot.data.extend_from_slice(&item);
                    slot.ends.push(slot.data.len());
                }
            }
        }
        Ok(Some(pending.nbytes))
    }
}

#[pymethods]
impl PyPendingAppends {
    /// An empty buffer for columns of `vault`.
    #[new]
    fn new(vault: &PyColumnVault) -> Self {
        Self {
            vault: vault.vault.clone(),
            inner: Mutex::new(Pending::default()),
        }
    }

    /// Holds one element for `column`; returns the bytes now held, or `None` (holding nothing)
    /// when it would pass `cap` bytes. A bad element raises and nothing is held.
    fn add(
        &self,
        column: &Bound<'_, PyColumn>,
        value: &Bound<'_, PyAny>,
        cap: usize,
    ) -> Result<Option<usize>, BindingError> {
        let dtype = own_column(column, &self.vault)?;
        let encoded = encode_values(dtype, std::slice::from_ref(value))?;
        self.hold(column, encoded, 1, cap)
    }

    /// Holds every element of a list for `column` (all or none), as `add`.
    fn add_many(
        &self,
        column: &Bound<'_, PyColumn>,
        values: &Bound<'_, PyList>,
        cap: usize,
    ) -> Result<Option<usize>, BindingError> {
        let dtype = own_column(column, &self.vault)?;
        let held = hold_items(dtype, values);
        let encoded = encode_list(dtype, values, &held)?;
        self.hold(column, encoded, values.len(), cap)
    }

    /// Bytes held.
    #[getter]
    fn nbytes(&self) -> usize {
        self.pending().nbytes
    }

    /// Whether appends to `column` are held.
    fn holds(&self, column: &Bound<'_, PyColumn>) -> bool {
        self.pending()
            .columns
            .iter()
            .any(|c| c.column.as_ptr() == column.as_ptr())
    }

    /// Drops the appends held for `column` (it is being deleted).
    fn discard(&self, column: &Bound<'_, PyColumn>) {
        let mut pending = self.pending();
        if let Some(at) = pending
            .columns
            .iter()
            .position(|c| c.column.as_ptr() == column.as_ptr())
        {
            let gone = pending.columns.remove(at);
            pending.nbytes -= gone.data.len() + 8 * gone.ends.len();
        }
    }

    /// Writes everything held, every column in one transaction, and empties the buffer;
    /// returns how many elements were written. On an error nothing is written and everything
    /// stays held (a later flush retries).
    fn flush(&self, py: Python<'_>) -> Result<usize, BindingError> {
        // The buffer's mutex is taken and released with the GIL released: an appender waiting
        // for it holds the GIL, so this thread must not need the GIL while holding it.
        let (written, _written_out) =
            py.detach(|| -> Result<(usize, Pending), columnar::Error> {
                let mut pending = self.pending();
                if pending.columns.is_empty() {
                    return Ok((0, Pending::default()));
                }
                let handles: Vec<Column> = pending
                    .columns
                    .iter()
                    .map(|c| c.column.get().handle())
                    .collect();
                let parts: Vec<(&Column, Elements<'_>)> = pending
                    .columns
                    .iter()
                    .zip(&handles)
                    .map(|(c, handle)| {
                        let core = c.column.get();
                        let elements = if core.dtype.fixed_width().is_some() {
                            Elements::Fixed(&c.data)
                        } else {
                            Elements::Packed {
                                data: &c.data,
                                ends: &c.ends,
                            }
                        };
                        (handle, elements)
                    })
                    .collect();
                Column::append_many(&mut self.vault.store(), &parts)?;
                let written = pending.columns.iter().map(|c| c.count).sum();
                drop(parts);
                // Handed back to be dropped with the GIL held (it holds column references).
                Ok((written, std::mem::take(&mut *pending)))
            })?;
        Ok(written)
    }
}

/// Adds this file's class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPendingAppends>()?;
    Ok(())
}
