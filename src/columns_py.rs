//! `ColumnVaultCore` and `ColumnCore`: the native halves of the Python `ColumnVault` and
//! `Column`. Elements are converted by `element_codec`; the column write cache's native half is
//! `pending_py`; storage logic lives in the `columnar` crate.

use std::sync::Mutex;

use columnar::{ChunkPlan, Column, DType, Elements, ReadOut};
use kvault::codec::Compression;
use kvault::Vault;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyList};

use crate::convert::non_negative;
use crate::element_codec::{
    decode_all, encode_list, encode_values, hold_items, raw_bytes, Encoded,
};
use crate::errors::BindingError;
use crate::raw_buffer::RawBuffer;
use crate::vault_py::{run, PyVault};

/// The native column store of one vault file.
#[pyclass(module = "ambervault._ambervault", name = "ColumnVaultCore", frozen)]
pub struct PyColumnVault {
    pub(crate) vault: Vault,
    plan: ChunkPlan,
}

#[pymethods]
impl PyColumnVault {
    /// The column store of the open file `vault` (its tables are created if missing).
    #[new]
    fn new(
        py: Python<'_>,
        vault: &Bound<'_, PyVault>,
        min_chunk: i64,
        max_chunk: i64,
    ) -> Result<Self, BindingError> {
        let plan = Self::plan(min_chunk, max_chunk)?;
        let vault = vault.get().vault().clone();
        run(py, &vault, Column::ensure_schema)?;
        Ok(Self { vault, plan })
    }

    /// Checks the chunk sizes without opening anything (a bad argument must create no file).
    #[staticmethod]
    fn validate(min_chunk: i64, max_chunk: i64) -> Result<(), BindingError> {
        Self::plan(min_chunk, max_chunk).map(|_| ())
    }

    /// Creates a column (compressed as `compression` says, see `compression_setting`);
    /// returns its core.
    #[pyo3(signature = (name, dtype, compression=None))]
    fn create(
        &self,
        py: Python<'_>,
        name: String,
        dtype: &str,
        compression: Option<&str>,
    ) -> Result<PyColumn, BindingError> {
        let dtype = DType::parse(dtype)?;
        // Parsed before anything is created: a bad setting creates no column.
        let compression = compression.map(Compression::parse).transpose()?.flatten();
        if let Some(c) = &compression {
            c.check_layout(dtype.layout())?;
        }
        let plan = self.plan;
        let column = run(py, &self.vault, |s| {
            let column = Column::create(s, &name, dtype, plan)?;
            if compression.is_some() {
                column.set_compression(s, compression)?;
            }
            Ok::<_, columnar::Error>(column)
        })?;
        Ok(self.core(column))
    }

    /// The core of column `name`, or None.
    fn find(&self, py: Python<'_>, name: String) -> Result<Option<PyColumn>, BindingError> {
        let column = run(py, &self.vault, |s| Column::find(s, &name))?;
        Ok(column.map(|c| self.core(c)))
    }

    /// `[(name, dtype, length)]` ordered by name.
    fn list(&self, py: Python<'_>) -> Result<Vec<(String, String, u64)>, BindingError> {
        let metas = run(py, &self.vault, Column::list)?;
        Ok(metas
            .into_iter()
            .map(|m| (m.name, m.dtype.name(), m.len))
            .collect())
    }

    /// Deletes a column; returns whether it existed.
    fn delete(&self, py: Python<'_>, name: String) -> Result<bool, BindingError> {
        run(py, &self.vault, |s| Column::delete(s, &name))
    }

    /// Renames a column.
    fn rename(&self, py: Python<'_>, old: String, new: String) -> Result<(), BindingError> {
        run(py, &self.vault, |s| Column::rename(s, &old, &new))
    }
}

/// `[(name, dtype, length, data_bytes)]` of the columns in the file `vault` (without creating
/// the column tables).
#[pyfunction]
fn columns_summary(
    py: Python<'_>,
    vault: &Bound<'_, PyVault>,
) -> Result<Vec<(String, String, u64, u64)>, BindingError> {
    let metas = run(py, vault.get().vault(), Column::list)?;
    Ok(metas
        .into_iter()
        .map(|m| (m.name, m.dtype.name(), m.len, m.data_bytes))
        .collect())
}

impl PyColumnVault {
    fn plan(min_chunk: i64, max_chunk: i64) -> Result<ChunkPlan, BindingError> {
        Ok(ChunkPlan::new(
            non_negative("min_chunk_bytes", min_chunk)?,
            non_negative("max_chunk_bytes", max_chunk)?,
        )?)
    }

    fn core(&self, column: Column) -> PyColumn {
        PyColumn {
            vault: self.vault.clone(),
            dtype: column.dtype,
            column: Mutex::new(column),
        }
    }
}

/// The native half of one column.
#[pyclass(module = "ambervault._ambervault", name = "ColumnCore", frozen)]
pub struct PyColumn {
    pub(crate) vault: Vault,
    /// The handle; replaced on rename (its name is what error messages say).
    column: Mutex<Column>,
    pub(crate) dtype: DType,
}

impl PyColumn {
    /// A copy of the column handle (its name as of the last rename).
    pub(crate) fn handle(&self) -> Column {
        self.column
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Raw element bytes are taken as they are, so they are refused where that could store an
    /// element the dtype cannot hold (text that is not valid in its encoding).
    fn check_raw_writable(&self) -> Result<(), BindingError> {
        if let DType::FixedStr(_) = self.dtype {
            return Err(BindingError::Py(PyTypeError::new_err(format!(
                "a {} column takes str values, not raw element bytes",
                self.dtype.name()
            ))));
        }
        Ok(())
    }
}

#[pymethods]
impl PyColumn {
    /// Canonical dtype string.
    #[getter]
    fn dtype(&self) -> String {
        self.dtype.name()
    }

    /// Fixed element width in bytes, or None for variable-width dtypes.
    #[getter]
    fn width(&self) -> Option<usize> {
        self.dtype.fixed_width()
    }

    /// The column's id in the file (with its name, what identifies it: ids of columns created
    /// in rolled-back transactions are given out again).
    #[getter]
    fn column_id(&self) -> i64 {
        self.handle().id
    }

    /// The column's compression setting (`"zstd:3:0.05"`, ...), or None.
    fn compression(&self, py: Python<'_>) -> Result<Option<String>, BindingError> {
        let column = self.handle();
        let meta = run(py, &self.vault, |s| column.meta(s))?;
        Ok(meta.compression.map(|c| c.to_setting()))
    }

    /// Sets how the column compresses its chunks (see `compression_setting`; `"none"` for
    /// none) and repacks the chunks already written, in one transaction.
    fn set_compression(&self, py: Python<'_>, setting: &str) -> Result<(), BindingError> {
        let compression = Compression::parse(setting)?;
        let column = self.handle();
        run(py, &self.vault, |s| column.set_compression(s, compression))
    }

    /// Records a rename done through the vault.
    fn set_name(&self, name: String) {
        self.column
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .name = name;
    }

    /// Number of elements.
    fn len(&self, py: Python<'_>) -> Result<u64, BindingError> {
        let column = self.handle();
        Ok(run(py, &self.vault, |s| column.meta(s))?.len)
    }

    /// Element `index` (negative counts from the end).
    fn get(&self, py: Python<'_>, index: i64) -> Result<Py<PyAny>, BindingError> {
        let column = self.handle();
        // One fixed-width element is a short read (often a cache hit): done under the GIL
        // when the store is free, instead of releasing and retaking it. (A WAL reader is only
        // refused in rare moments such as another process's recovery; then it backs off like
        // any read, briefly holding the GIL.)
        let quick = self
            .dtype
            .fixed_width()
            .and_then(|_| self.vault.try_with(|s| column.read_index(s, index)));
        let out = match quick {
            Some(out) => out?,
            None => run(py, &self.vault, |s| column.read_index(s, index))?,
        };
        Ok(decode_all(py, self.dtype, &out)?
            .pop()
            .expect("one element read"))
    }

    /// Elements of the slice `start:stop` as a list (Python slice rules with step 1: `None`
    /// is an open end, negative bounds count from the end, bounds are clamped), read from
    /// one snapshot.
    #[pyo3(signature = (start=None, stop=None))]
    fn get_range(
        &self,
        py: Python<'_>,
        start: Option<i64>,
        stop: Option<i64>,
    ) -> Result<Vec<Py<PyAny>>, BindingError> {
        let column = self.handle();
        let out = run(py, &self.vault, |s| column.read_slice(s, start, stop))?;
        Ok(decode_all(py, self.dtype, &out)?)
    }

    /// Raw little-endian bytes of fixed-width elements of the slice `start:stop` (as in
    /// `get_range`): a bytearray, or for large slices a `RawBuffer` filled in place (both wrap
    /// into numpy without a copy).
    #[pyo3(signature = (start=None, stop=None))]
    fn get_raw<'py>(
        &self,
        py: Python<'py>,
        start: Option<i64>,
        stop: Option<i64>,
    ) -> Result<Bound<'py, PyAny>, BindingError> {
        // Below this size the extra metadata lookup of the direct path costs more than a copy.
        const DIRECT_BYTES: u64 = 1 << 20;
        if self.dtype.fixed_width().is_none() {
            return Err(BindingError::Py(PyTypeError::new_err(
                "raw element bytes exist only for fixed-width dtypes",
            )));
        }
        // Up to this size a read is done under the GIL when the store is free (see `get`).
        const UNDER_GIL_BYTES: u64 = 64 << 10;
        let column = self.handle();
        let quick = self
            .vault
            .try_with(|s| column.read_slice_if_within(s, start, stop, UNDER_GIL_BYTES));
        if let Some(Some(ReadOut::Fixed(raw))) = quick.transpose()? {
            return Ok(PyByteArray::new(py, &raw).into_any());
        }
        if let Some(out) = run(py, &self.vault, |s| {
            column.read_slice_if_within(s, start, stop, DIRECT_BYTES)
        })? {
            return match out {
                ReadOut::Fixed(raw) => Ok(PyByteArray::new(py, &raw).into_any()),
                ReadOut::Var { .. } => Err(BindingError::Py(PyTypeError::new_err(
                    "raw element bytes exist only for fixed-width dtypes",
                ))),
            };
        }
        let bytes = run(py, &self.vault, |s| {
            column.read_slice_into(s, start, stop, RawBuffer::zeroed)
        })?;
        Ok(Bound::new(py, RawBuffer::from(bytes))?.into_any())
    }

    /// Appends one element.
    fn append(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> Result<u64, BindingError> {
        let encoded = encode_values(self.dtype, std::slice::from_ref(value))?;
        self.write_append(py, &encoded)
    }

    /// Appends every element of a list (converted first: a bad element writes nothing).
    fn extend(&self, py: Python<'_>, values: &Bound<'_, PyList>) -> Result<u64, BindingError> {
        let held = hold_items(self.dtype, values);
        let encoded = encode_list(self.dtype, values, &held)?;
        self.write_append(py, &encoded)
    }

    /// Appends fixed-width elements given as raw little-endian bytes (a numpy array's memory
    /// is read in place; other buffers are copied once).
    fn extend_raw(&self, py: Python<'_>, raw: &Bound<'_, PyAny>) -> Result<u64, BindingError> {
        self.check_raw_writable()?;
        let raw = raw_bytes(raw)?;
        let column = self.handle();
        run(py, &self.vault, |s| column.append(s, Elements::Fixed(&raw)))
    }

    /// Overwrites elements from `start` with the list `values`.
    fn set_range(
        &self,
        py: Python<'_>,
        start: i64,
        values: &Bound<'_, PyList>,
    ) -> Result<(), BindingError> {
        let start = non_negative("start", start)?;
        let held = hold_items(self.dtype, values);
        let encoded = encode_list(self.dtype, values, &held)?;
        let column = self.handle();
        run(py, &self.vault, |s| {
            encoded.with_elements(|e| column.set(s, start, e))
        })
    }

    /// Overwrites fixed-width elements from `start` with raw little-endian bytes.
    fn set_raw(
        &self,
        py: Python<'_>,
        start: i64,
        raw: &Bound<'_, PyAny>,
    ) -> Result<(), BindingError> {
        let start = non_negative("start", start)?;
        self.check_raw_writable()?;
        let raw = raw_bytes(raw)?;
        let column = self.handle();
        run(py, &self.vault, |s| {
            column.set(s, start, Elements::Fixed(&raw))
        })
    }

    /// Overwrites the elements at `indices` with `values` (same length), in one transaction.
    fn set_at(
        &self,
        py: Python<'_>,
        indices: Vec<u64>,
        values: &Bound<'_, PyList>,
    ) -> Result<(), BindingError> {
        let held = hold_items(self.dtype, values);
        let encoded = encode_list(self.dtype, values, &held)?;
        let column = self.handle();
        run(py, &self.vault, |s| {
            encoded.with_elements(|e| column.set_at(s, &indices, e))
        })
    }

    /// Inserts one element before `index` (0 <= index <= len).
    fn insert(
        &self,
        py: Python<'_>,
        index: i64,
        value: &Bound<'_, PyAny>,
    ) -> Result<(), BindingError> {
        let at = non_negative("index", index)?;
        let encoded = encode_values(self.dtype, std::slice::from_ref(value))?;
        let column = self.handle();
        run(py, &self.vault, |s| {
            encoded.with_elements(|e| column.insert(s, at, e))
        })
    }

    /// Deletes elements `start..stop` (clamped).
    fn delete_range(&self, py: Python<'_>, start: i64, stop: i64) -> Result<u64, BindingError> {
        let (start, stop) = (non_negative("start", start)?, non_negative("stop", stop)?);
        let column = self.handle();
        run(py, &self.vault, |s| column.delete_range(s, start, stop))
    }

    /// Deletes the elements at `indices`, in one transaction.
    fn delete_at(&self, py: Python<'_>, indices: Vec<u64>) -> Result<(), BindingError> {
        let column = self.handle();
        run(py, &self.vault, |s| column.delete_at(s, &indices))
    }

    /// Removes and returns element `index` (non-negative, in range).
    fn pop(&self, py: Python<'_>, index: i64) -> Result<Py<PyAny>, BindingError> {
        let index = non_negative("index", index)?;
        let column = self.handle();
        let out = run(py, &self.vault, |s| column.pop(s, index))?;
        Ok(decode_all(py, self.dtype, &out)?
            .pop()
            .expect("one element popped"))
    }
}

impl PyColumn {
    fn write_append(&self, py: Python<'_>, encoded: &Encoded) -> Result<u64, BindingError> {
        let column = self.handle();
        run(py, &self.vault, |s| {
            encoded.with_elements(|e| column.append(s, e))
        })
    }
}

/// The canonical form of a dtype string (`str:utf8` -> `str`); `InvalidArgument` if unknown.
#[pyfunction]
fn canonical_dtype(dtype: &str) -> Result<String, BindingError> {
    Ok(DType::parse(dtype)?.name())
}

/// The canonical form of a compression setting (`"zstd"`, `"zstd:<level>"`, `"lz4"`, `"pco"`,
/// `"pco:<level>"`, optionally `":<min_saving>"`), or None for `"none"`; raises
/// InvalidArgument for anything else, and for a numbers-only codec (pco) when `for_values`
/// (a key-value table's setting). Nothing is opened.
#[pyfunction]
#[pyo3(signature = (setting, for_values = false))]
fn compression_setting(setting: &str, for_values: bool) -> Result<Option<String>, BindingError> {
    let compression = Compression::parse(setting)?;
    if let (Some(c), true) = (&compression, for_values) {
        c.check_layout(kvault::codec::Layout::Bytes)?;
    }
    Ok(compression.map(|c| c.to_setting()))
}

/// Adds this file's classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compression_setting, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_dtype, m)?)?;
    m.add_function(wrap_pyfunction!(columns_summary, m)?)?;
    m.add_class::<PyColumnVault>()?;
    m.add_class::<PyColumn>()?;
    m.add("ACCEPTED_DTYPES", columnar::ACCEPTED_DTYPES)?;
    Ok(())
}
