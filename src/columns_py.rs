//! `ColumnVaultCore` and `ColumnCore`: the native halves of the Python `ColumnVault` and
//! `Column`. Elements are converted here (Python objects <-> little-endian element bytes);
//! storage logic lives in the `columnar` crate.

use std::borrow::Cow;
use std::sync::Mutex;

use columnar::{ChunkPlan, Column, DType, Elements, ReadOut};
use kvault::Vault;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString};

use crate::convert::{non_negative, type_name, value_from_py};
use crate::errors::BindingError;
use crate::raw_buffer::{ndarray_bytes, RawBuffer};
use crate::vault_py::{run, PyVault};

/// Encoded elements. Variable-width items borrow the bytes of `bytes` objects the caller holds
/// references to (immutable, so safe to read with the GIL released); others are copied once.
enum Encoded<'a> {
    Fixed(Vec<u8>),
    Var(Vec<Cow<'a, [u8]>>),
}

impl Encoded<'_> {
    fn with_elements<T>(&self, f: impl FnOnce(Elements<'_>) -> T) -> T {
        match self {
            Encoded::Fixed(raw) => f(Elements::Fixed(raw)),
            Encoded::Var(items) => {
                let refs: Vec<&[u8]> = items.iter().map(AsRef::as_ref).collect();
                f(Elements::Var(&refs))
            }
        }
    }
}

fn overflow(value: &Bound<'_, PyAny>, dtype: DType) -> BindingError {
    BindingError::Py(PyOverflowError::new_err(format!(
        "value {} is out of range for dtype {}",
        value
            .repr()
            .map_or_else(|_| "?".to_string(), |r| r.to_string()),
        dtype.name()
    )))
}

fn wrong_type(value: &Bound<'_, PyAny>, dtype: DType, expected: &str) -> BindingError {
    BindingError::Py(PyTypeError::new_err(format!(
        "column of dtype {} takes {expected}, not {}",
        dtype.name(),
        type_name(value)
    )))
}

fn extract_int<T: TryFrom<i128>>(
    value: &Bound<'_, PyAny>,
    dtype: DType,
) -> Result<T, BindingError> {
    // Fast path: an exact int within i64 (the limited API has no cheap i128 conversion).
    if value.is_exact_instance_of::<PyInt>() {
        if let Ok(v) = value.extract::<i64>() {
            return T::try_from(i128::from(v)).map_err(|_| overflow(value, dtype));
        }
    }
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
        return Err(wrong_type(value, dtype, "integers"));
    }
    let wide: i128 = match value.extract::<i128>() {
        Ok(v) => v,
        Err(err) if err.is_instance_of::<PyOverflowError>(value.py()) => {
            return Err(overflow(value, dtype))
        }
        Err(_) => return Err(wrong_type(value, dtype, "integers")),
    };
    T::try_from(wide).map_err(|_| overflow(value, dtype))
}

fn extract_float(value: &Bound<'_, PyAny>, dtype: DType) -> Result<f64, BindingError> {
    if let Ok(float) = value.cast_exact::<PyFloat>() {
        return Ok(float.value());
    }
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
        return Err(wrong_type(value, dtype, "numbers"));
    }
    value.extract::<f64>().map_err(|err| {
        if err.is_instance_of::<PyOverflowError>(value.py()) {
            overflow(value, dtype)
        } else {
            wrong_type(value, dtype, "numbers")
        }
    })
}

/// Appends one element's encoding to `out` (fixed) or returns it (variable).
fn encode_fixed(
    dtype: DType,
    value: &Bound<'_, PyAny>,
    out: &mut Vec<u8>,
) -> Result<(), BindingError> {
    match dtype {
        DType::I8 => out.extend_from_slice(&extract_int::<i8>(value, dtype)?.to_le_bytes()),
        DType::I16 => out.extend_from_slice(&extract_int::<i16>(value, dtype)?.to_le_bytes()),
        DType::I32 => out.extend_from_slice(&extract_int::<i32>(value, dtype)?.to_le_bytes()),
        DType::I64 => out.extend_from_slice(&extract_int::<i64>(value, dtype)?.to_le_bytes()),
        DType::U8 => out.extend_from_slice(&extract_int::<u8>(value, dtype)?.to_le_bytes()),
        DType::U16 => out.extend_from_slice(&extract_int::<u16>(value, dtype)?.to_le_bytes()),
        DType::U32 => out.extend_from_slice(&extract_int::<u32>(value, dtype)?.to_le_bytes()),
        DType::U64 => out.extend_from_slice(&extract_int::<u64>(value, dtype)?.to_le_bytes()),
        DType::F64 => out.extend_from_slice(&extract_float(value, dtype)?.to_le_bytes()),
        DType::F32 => {
            let v = extract_float(value, dtype)?;
            if v.is_finite() && v.abs() > f64::from(f32::MAX) {
                return Err(overflow(value, dtype));
            }
            #[allow(clippy::cast_possible_truncation)]
            out.extend_from_slice(&(v as f32).to_le_bytes());
        }
        DType::Bool => {
            if let Ok(b) = value.cast::<PyBool>() {
                out.push(u8::from(b.is_true()));
            } else {
                match extract_int::<u8>(value, dtype) {
                    Ok(v @ (0 | 1)) => out.push(v),
                    _ => return Err(wrong_type(value, dtype, "True/False (or 0/1)")),
                }
            }
        }
        DType::FixedBytes(n) => {
            let bytes =
                value_from_py(value).map_err(|_| wrong_type(value, dtype, "bytes-like values"))?;
            let n = n as usize;
            if bytes.len() > n {
                return Err(BindingError::Py(PyValueError::new_err(format!(
                    "value of {} bytes is longer than the column's fixed width of {n} bytes",
                    bytes.len()
                ))));
            }
            out.extend_from_slice(&bytes);
            out.resize(out.len() + (n - bytes.len()), 0);
        }
        DType::Bytes | DType::Str => unreachable!("variable-width dtype in encode_fixed"),
    }
    Ok(())
}

fn encode_var<'a>(
    dtype: DType,
    value: &'a Bound<'_, PyAny>,
) -> Result<Cow<'a, [u8]>, BindingError> {
    if dtype == DType::Str {
        let text = value
            .cast::<PyString>()
            .map_err(|_| wrong_type(value, dtype, "str values"))?;
        return Ok(Cow::Owned(text.to_cow()?.into_owned().into_bytes()));
    }
    value_from_py(value).map_err(|_| wrong_type(value, dtype, "bytes-like values"))
}

/// References to a list's items, for variable-width dtypes whose encoding borrows them (fixed
/// widths copy each value out at once and need none).
fn hold_items<'py>(dtype: DType, values: &Bound<'py, PyList>) -> Vec<Bound<'py, PyAny>> {
    if dtype.fixed_width().is_some() {
        Vec::new()
    } else {
        values.iter().collect()
    }
}

/// Encodes a list; `held` is `hold_items(dtype, values)`.
fn encode_list<'a>(
    dtype: DType,
    values: &Bound<'_, PyList>,
    held: &'a [Bound<'_, PyAny>],
) -> Result<Encoded<'a>, BindingError> {
    match dtype.fixed_width() {
        Some(w) => {
            let mut out = Vec::with_capacity(values.len() * w);
            for value in values.iter() {
                encode_fixed(dtype, &value, &mut out)?;
            }
            Ok(Encoded::Fixed(out))
        }
        None => encode_values(dtype, held),
    }
}

/// Encodes `values`, which the caller keeps alive (and so owns references to) for as long as
/// the result is used.
fn encode_values<'a>(
    dtype: DType,
    values: &'a [Bound<'_, PyAny>],
) -> Result<Encoded<'a>, BindingError> {
    match dtype.fixed_width() {
        Some(w) => {
            let mut out = Vec::with_capacity(values.len() * w);
            for value in values {
                encode_fixed(dtype, value, &mut out)?;
            }
            Ok(Encoded::Fixed(out))
        }
        None => Ok(Encoded::Var(
            values
                .iter()
                .map(|v| encode_var(dtype, v))
                .collect::<Result<_, _>>()?,
        )),
    }
}

fn decode(py: Python<'_>, dtype: DType, raw: &[u8]) -> PyResult<Py<PyAny>> {
    fn arr<const N: usize>(raw: &[u8]) -> [u8; N] {
        raw.try_into().expect("element width checked by the caller")
    }
    Ok(match dtype {
        DType::I8 => i8::from_le_bytes(arr(raw))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DType::I16 => i16::from_le_bytes(arr(raw))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DType::I32 => i32::from_le_bytes(arr(raw))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DType::I64 => i64::from_le_bytes(arr(raw))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DType::U8 => raw[0].into_pyobject(py)?.into_any().unbind(),
        DType::U16 => u16::from_le_bytes(arr(raw))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DType::U32 => u32::from_le_bytes(arr(raw))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DType::U64 => u64::from_le_bytes(arr(raw))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DType::F32 => f64::from(f32::from_le_bytes(arr(raw)))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DType::F64 => f64::from_le_bytes(arr(raw))
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        DType::Bool => PyBool::new(py, raw[0] != 0).to_owned().into_any().unbind(),
        DType::FixedBytes(_) | DType::Bytes => PyBytes::new(py, raw).into_any().unbind(),
        DType::Str => match std::str::from_utf8(raw) {
            Ok(text) => PyString::new(py, text).into_any().unbind(),
            Err(_) => {
                return Err(crate::errors::CorruptionError::new_err(
                    "a str column holds bytes that are not UTF-8",
                ))
            }
        },
    })
}

fn decode_all(py: Python<'_>, dtype: DType, out: &ReadOut) -> PyResult<Vec<Py<PyAny>>> {
    match out {
        ReadOut::Fixed(raw) => {
            let w = dtype.fixed_width().unwrap_or(1).max(1);
            raw.chunks_exact(w).map(|e| decode(py, dtype, e)).collect()
        }
        ReadOut::Var { ends, data } => {
            let mut prev = 0usize;
            ends.iter()
                .map(|&end| {
                    let end = usize::try_from(end).unwrap_or(usize::MAX).min(data.len());
                    let item = decode(py, dtype, &data[prev.min(end)..end]);
                    prev = end;
                    item
                })
                .collect()
        }
    }
}

/// Raw element bytes: a numpy array's memory borrowed in place, any other buffer copied.
fn raw_bytes<'a>(raw: &'a Bound<'_, PyAny>) -> Result<Cow<'a, [u8]>, BindingError> {
    match ndarray_bytes(raw)? {
        Some(bytes) => Ok(Cow::Borrowed(bytes)),
        None => value_from_py(raw),
    }
}

/// The native column store of one vault file.
#[pyclass(module = "ambervault._ambervault", name = "ColumnVaultCore", frozen)]
pub struct PyColumnVault {
    vault: Vault,
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

    /// Creates a column; returns its core.
    fn create(&self, py: Python<'_>, name: String, dtype: &str) -> Result<PyColumn, BindingError> {
        let dtype = DType::parse(dtype)?;
        let plan = self.plan;
        let column = run(py, &self.vault, |s| Column::create(s, &name, dtype, plan))?;
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
    vault: Vault,
    /// The handle; replaced on rename (its name is what error messages say).
    column: Mutex<Column>,
    dtype: DType,
}

impl PyColumn {
    fn handle(&self) -> Column {
        self.column
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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

/// Adds this file's classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(canonical_dtype, m)?)?;
    m.add_function(wrap_pyfunction!(columns_summary, m)?)?;
    m.add_class::<PyColumnVault>()?;
    m.add_class::<PyColumn>()?;
    m.add_class::<PyPendingAppends>()?;
    m.add("ACCEPTED_DTYPES", columnar::ACCEPTED_DTYPES)?;
    Ok(())
}

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
