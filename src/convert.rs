//! Conversions at the Python boundary: keys, values, typed values and metadata filters.

use std::borrow::Cow;

use kvault::{Encoding, Filter, FilterValue, KeyKind, TupleItem};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::{type_error, BindingError};

/// A key as bytes plus the type it was given as. `str` keys are their UTF-8 bytes; tuple keys
/// their order-preserving encoding (`kvault::encode_tuple`).
pub fn key_from_py<'a>(
    obj: &'a Bound<'_, PyAny>,
) -> Result<(Cow<'a, [u8]>, KeyKind), BindingError> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok((Cow::Borrowed(bytes.as_bytes()), KeyKind::Bytes));
    }
    if let Ok(text) = obj.cast::<PyString>() {
        let utf8 = text.to_cow()?;
        return Ok((Cow::Owned(utf8.into_owned().into_bytes()), KeyKind::Str));
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        let items = tuple_items(tuple, 0)?;
        return Ok((Cow::Owned(kvault::encode_tuple(&items)?), KeyKind::Tuple));
    }
    Err(type_error(format!(
        "keys must be str, bytes or tuple, not {}",
        type_name(obj)
    )))
}

fn tuple_items(tuple: &Bound<'_, PyTuple>, depth: usize) -> Result<Vec<TupleItem>, BindingError> {
    if depth >= kvault::MAX_TUPLE_DEPTH {
        return Err(BindingError::Vault(kvault::Error::InvalidArgument(
            format!(
                "tuple keys nest at most {} levels deep",
                kvault::MAX_TUPLE_DEPTH
            ),
        )));
    }
    tuple.iter().map(|item| tuple_item(&item, depth)).collect()
}

fn tuple_item(item: &Bound<'_, PyAny>, depth: usize) -> Result<TupleItem, BindingError> {
    if let Ok(bytes) = item.cast::<PyBytes>() {
        return Ok(TupleItem::Bytes(bytes.as_bytes().to_vec()));
    }
    if let Ok(text) = item.cast::<PyString>() {
        return Ok(TupleItem::Str(text.to_cow()?.into_owned()));
    }
    if let Ok(nested) = item.cast::<PyTuple>() {
        return Ok(TupleItem::Tuple(tuple_items(nested, depth + 1)?));
    }
    // A bool is an int to Python, but would come back as 0 or 1: refused.
    if item.is_instance_of::<PyInt>() && !item.is_instance_of::<PyBool>() {
        if let Ok(small) = item.extract::<i64>() {
            return Ok(TupleItem::int(small));
        }
        // Beyond 64 bits: sign and big-endian magnitude through int.to_bytes.
        let negative = item.lt(0)?;
        let magnitude = item.call_method0("__abs__")?;
        let bits: usize = magnitude.call_method0("bit_length")?.extract()?;
        let bytes = magnitude.call_method1("to_bytes", (bits.div_ceil(8), "big"))?;
        let bytes = bytes.cast::<PyBytes>().map_err(PyErr::from)?;
        return Ok(TupleItem::Int {
            negative,
            magnitude: bytes.as_bytes().to_vec(),
        });
    }
    Err(type_error(format!(
        "tuple key items must be str, bytes, int or tuple, not {}",
        type_name(item)
    )))
}

fn tuple_to_py<'py>(py: Python<'py>, items: &[TupleItem]) -> PyResult<Bound<'py, PyTuple>> {
    let objects = items
        .iter()
        .map(|item| item_to_py(py, item))
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, objects)
}

fn item_to_py<'py>(py: Python<'py>, item: &TupleItem) -> PyResult<Bound<'py, PyAny>> {
    Ok(match item {
        TupleItem::Bytes(bytes) => PyBytes::new(py, bytes).into_any(),
        TupleItem::Str(text) => PyString::new(py, text).into_any(),
        TupleItem::Tuple(items) => tuple_to_py(py, items)?.into_any(),
        TupleItem::Int {
            negative,
            magnitude,
        } => {
            let int_type = py.get_type::<PyInt>();
            let value =
                int_type.call_method1("from_bytes", (PyBytes::new(py, magnitude), "big"))?;
            if *negative {
                value.neg()?
            } else {
                value
            }
        }
    })
}

/// Bytes for a key given only as a prefix or continuation (str or bytes).
pub fn raw_key(obj: &Bound<'_, PyAny>) -> Result<Vec<u8>, BindingError> {
    Ok(key_from_py(obj)?.0.into_owned())
}

/// A value's bytes: `bytes` borrowed, any other C-contiguous buffer copied once.
pub fn value_from_py<'a>(obj: &'a Bound<'_, PyAny>) -> Result<Cow<'a, [u8]>, BindingError> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(bytes.as_bytes()));
    }
    if let Ok(array) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(array.to_vec()));
    }
    if obj.is_instance_of::<PyString>() {
        return Err(type_error(
            "values must be bytes-like, not str (encode it, e.g. text.encode())".into(),
        ));
    }
    let py = obj.py();
    let builtins = py.import("builtins")?;
    let view = match builtins.getattr("memoryview")?.call1((obj,)) {
        Ok(view) => view,
        Err(_) => {
            return Err(type_error(format!(
                "values must be bytes-like (bytes, bytearray, memoryview or another buffer), \
                 not {}",
                type_name(obj)
            )))
        }
    };
    if !view.getattr("c_contiguous")?.extract::<bool>()? {
        return Err(type_error(
            "value buffer must be C-contiguous (copy it, e.g. with bytes(...))".into(),
        ));
    }
    let copied = view.call_method0("tobytes")?;
    let copied = copied.cast::<PyBytes>().map_err(PyErr::from)?;
    Ok(Cow::Owned(copied.as_bytes().to_vec()))
}

/// A key as Python gets it back: the type it was written as (`str`, `bytes` or a tuple).
pub fn key_to_py(py: Python<'_>, key: &[u8], kind: KeyKind) -> PyResult<Py<PyAny>> {
    Ok(match kind {
        KeyKind::Tuple => match kvault::decode_tuple(key) {
            Ok(items) => tuple_to_py(py, &items)?.into_any().unbind(),
            // A damaged tuple key: give the raw bytes back rather than failing the whole scan.
            Err(_) => PyBytes::new(py, key).into_any().unbind(),
        },
        KeyKind::Str => match std::str::from_utf8(key) {
            Ok(text) => PyString::new(py, text).into_any().unbind(),
            // Stored as str but not valid UTF-8 (damaged file): give the raw bytes back rather
            // than failing the whole scan.
            Err(_) => PyBytes::new(py, key).into_any().unbind(),
        },
        _ => PyBytes::new(py, key).into_any().unbind(),
    })
}

/// `type(obj).__name__`, for error messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "object".to_string(), |n| n.to_string())
}

/// An integer argument that must be non-negative and fit `T` (sizes, counts, indices).
pub fn non_negative<T: TryFrom<i64>>(name: &str, value: i64) -> Result<T, BindingError> {
    T::try_from(value).map_err(|_| {
        BindingError::Py(crate::errors::InvalidArgument::new_err(format!(
            "{name} must be a non-negative integer in range, not {value}"
        )))
    })
}

/// Key bytes as stored: a `str` key is its UTF-8 bytes. The one place keys are checked, for
/// the Python code that needs raw keys itself (the write-back cache, scan filters).
#[pyfunction]
pub fn raw_key_bytes<'py>(key: &Bound<'py, PyAny>) -> Result<Bound<'py, PyBytes>, BindingError> {
    if let Ok(bytes) = key.cast_exact::<PyBytes>() {
        return Ok(bytes.clone());
    }
    Ok(PyBytes::new(key.py(), &key_from_py(key)?.0))
}

/// An immutable `bytes` snapshot of a bytes-like value (a later change to a `bytearray` must not
/// change what was written), checked as every write checks values.
#[pyfunction]
pub fn value_snapshot<'py>(value: &Bound<'py, PyAny>) -> Result<Bound<'py, PyBytes>, BindingError> {
    if let Ok(bytes) = value.cast_exact::<PyBytes>() {
        return Ok(bytes.clone());
    }
    Ok(PyBytes::new(value.py(), &value_from_py(value)?))
}

/// A value as `(encoding, bytes)` (copied: the bytes object is a temporary of the tuple).
pub fn encoded_value(obj: &Bound<'_, PyAny>) -> Result<(Encoding, Vec<u8>), BindingError> {
    let bad = || type_error("values must be (encoding, bytes) pairs".into());
    let tuple = obj.cast::<PyTuple>().map_err(|_| bad())?;
    if tuple.len() != 2 {
        return Err(bad());
    }
    let code: u8 = tuple.get_item(0)?.extract().map_err(|_| bad())?;
    let data = tuple.get_item(1)?;
    let bytes = data.cast::<PyBytes>().map_err(|_| bad())?;
    Ok((Encoding(code), bytes.as_bytes().to_vec()))
}

/// Metadata filter clauses `[(field, [accepted values])]` from Python (`where=` of the
/// vector and text searches).
pub fn filter_from_py(clauses: &Bound<'_, PyList>) -> Result<Filter, BindingError> {
    let mut parsed = Vec::with_capacity(clauses.len());
    for clause in clauses.iter() {
        let (field, values): (String, Bound<'_, PyList>) = clause.extract()?;
        let mut accepted = Vec::with_capacity(values.len());
        for value in values.iter() {
            accepted.push(if value.is_none() {
                FilterValue::Null
            } else if value.is_instance_of::<PyBool>() {
                FilterValue::Int(i64::from(value.extract::<bool>()?))
            } else if value.is_instance_of::<PyInt>() {
                FilterValue::Int(value.extract::<i64>().map_err(|_| {
                    BindingError::Vault(kvault::Error::InvalidArgument(format!(
                        "filter value for {field:?} does not fit in 64 bits"
                    )))
                })?)
            } else if value.is_instance_of::<PyFloat>() {
                FilterValue::Real(value.extract()?)
            } else if let Ok(text) = value.cast::<PyString>() {
                FilterValue::Text(text.to_cow()?.into_owned())
            } else {
                return Err(type_error(format!(
                    "filter values must be str, int, float, bool or None, not {}",
                    type_name(&value)
                )));
            });
        }
        parsed.push((field, accepted));
    }
    Ok(Filter::new(parsed)?)
}

/// Adds this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(raw_key_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(value_snapshot, m)?)?;
    Ok(())
}
