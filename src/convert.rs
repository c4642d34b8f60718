//! Conversions at the Python boundary: keys and values.

use std::borrow::Cow;

use kvault::KeyKind;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

use crate::errors::{type_error, BindingError};

/// A key as bytes plus the type it was given as. `str` keys are their UTF-8 bytes.
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
    Err(type_error(format!(
        "keys must be str or bytes, not {}",
        type_name(obj)
    )))
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

/// A key as Python gets it back: `str` if it was written as `str`, else `bytes`.
pub fn key_to_py(py: Python<'_>, key: &[u8], kind: KeyKind) -> PyResult<Py<PyAny>> {
    Ok(match kind {
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

/// Adds this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(raw_key_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(value_snapshot, m)?)?;
    Ok(())
}
