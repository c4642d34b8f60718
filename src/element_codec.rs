//! Element codec: Python objects <-> the little-endian element bytes of a column (`Encoded`
//! for writes, `decode`/`decode_all` for reads, `raw_bytes` for buffers given whole). Shared by
//! `columns_py` (the column cores) and `pending_py` (the column write cache).

use std::borrow::Cow;

use columnar::{DType, Elements, ReadOut, TextEncoding};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyUnicodeEncodeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString};

use crate::convert::{type_name, value_from_py};
use crate::errors::BindingError;
use crate::raw_buffer::ndarray_bytes;

/// Encoded elements. Variable-width items borrow the bytes of `bytes` objects the caller holds
/// references to (immutable, so safe to read with the GIL released); others are copied once.
pub(crate) enum Encoded<'a> {
    Fixed(Vec<u8>),
    Var(Vec<Cow<'a, [u8]>>),
}

impl Encoded<'_> {
    /// Calls `f` with these elements as the `columnar` crate takes them.
    pub(crate) fn with_elements<T>(&self, f: impl FnOnce(Elements<'_>) -> T) -> T {
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
        DType::F16 => {
            // Finite values beyond f16's largest (65504) are refused rather than rounded to
            // infinity, as f32 does; smaller ones round to nearest (half's conversion).
            let v = extract_float(value, dtype)?;
            if v.is_finite() && v.abs() > f64::from(half::f16::MAX) {
                return Err(overflow(value, dtype));
            }
            out.extend_from_slice(&half::f16::from_f64(v).to_le_bytes());
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
        DType::FixedStr(fixed) => {
            let text = value
                .cast::<PyString>()
                .map_err(|_| wrong_type(value, dtype, "str values"))?;
            let text = text.to_cow()?;
            match fixed.encoding() {
                None => fixed.pad_into(text.as_bytes(), out)?,
                Some(encoding) => fixed.pad_into(&encode_text(encoding, &text)?, out)?,
            }
        }
        DType::Vector(shape) => {
            // The Python layer (columns.py) hands over each tensor already converted to its
            // little-endian bytes; anything of another size is refused rather than padded,
            // since a short tensor is a shape error, not a short string.
            let bytes =
                value_from_py(value).map_err(|_| wrong_type(value, dtype, "numpy arrays"))?;
            if bytes.len() != shape.width() {
                return Err(BindingError::Py(PyValueError::new_err(format!(
                    "a {} element is {} bytes, not {}",
                    dtype.name(),
                    shape.width(),
                    bytes.len()
                ))));
            }
            out.extend_from_slice(&bytes);
        }
        DType::Bytes | DType::Str | DType::Text(_) | DType::MsgPack | DType::Json | DType::Cbor => {
            unreachable!("variable-width dtype in encode_fixed")
        }
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
    if let DType::Text(encoding) = dtype {
        let text = value
            .cast::<PyString>()
            .map_err(|_| wrong_type(value, dtype, "str values"))?;
        return Ok(Cow::Owned(encode_text(encoding, &text.to_cow()?)?));
    }
    // Packed dtypes arrive here already packed by the Python layer (columns.py), so the core
    // stores them like `bytes`.
    value_from_py(value).map_err(|_| wrong_type(value, dtype, "bytes-like values"))
}

/// `text` in `encoding`, or Python's `UnicodeEncodeError` (a `ValueError`) at the first
/// character it cannot hold.
fn encode_text(encoding: TextEncoding, text: &str) -> Result<Vec<u8>, BindingError> {
    let limit = match encoding {
        TextEncoding::Utf16 => {
            return Ok(text.encode_utf16().flat_map(u16::to_le_bytes).collect());
        }
        TextEncoding::Latin1 => 0xFF,
        TextEncoding::Ascii => 0x7F,
    };
    let mut out = Vec::with_capacity(text.len());
    for (position, c) in text.chars().enumerate() {
        match u8::try_from(u32::from(c)) {
            Ok(byte) if u32::from(byte) <= limit => out.push(byte),
            _ => {
                // Python's codec names, so the error reads like `str.encode`'s.
                let codec = if limit == 0xFF { "latin-1" } else { "ascii" };
                return Err(BindingError::Py(PyUnicodeEncodeError::new_err((
                    codec,
                    text.to_string(),
                    position,
                    position + 1,
                    if limit == 0xFF {
                        "character outside Latin-1, ordinal not in range(256)".to_string()
                    } else {
                        "non-ASCII character, ordinal not in range(128)".to_string()
                    },
                ))));
            }
        }
    }
    Ok(out)
}

/// The text of a `str:<encoding>` element (`None`: bytes that encoding cannot have written).
fn decode_text(encoding: TextEncoding, raw: &[u8]) -> Option<String> {
    match encoding {
        TextEncoding::Utf16 => {
            if !raw.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = raw
                .chunks_exact(2)
                .map(|p| u16::from_le_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        TextEncoding::Latin1 => Some(raw.iter().map(|&b| char::from(b)).collect()),
        TextEncoding::Ascii => raw
            .is_ascii()
            .then(|| raw.iter().map(|&b| char::from(b)).collect()),
    }
}

/// References to a list's items, for variable-width dtypes whose encoding borrows them (fixed
/// widths copy each value out at once and need none).
pub(crate) fn hold_items<'py>(dtype: DType, values: &Bound<'py, PyList>) -> Vec<Bound<'py, PyAny>> {
    if dtype.fixed_width().is_some() {
        Vec::new()
    } else {
        values.iter().collect()
    }
}

/// Encodes a list; `held` is `hold_items(dtype, values)`.
pub(crate) fn encode_list<'a>(
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
pub(crate) fn encode_values<'a>(
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
        DType::F16 => half::f16::from_le_bytes(arr(raw))
            .to_f64()
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
        // Packed dtypes are returned still packed; the Python layer unpacks them.
        // So are vectors, which the Python layer turns into numpy arrays.
        DType::FixedBytes(_)
        | DType::Vector(_)
        | DType::Bytes
        | DType::MsgPack
        | DType::Json
        | DType::Cbor => PyBytes::new(py, raw).into_any().unbind(),
        DType::Text(encoding) => match decode_text(encoding, raw) {
            Some(text) => PyString::new(py, &text).into_any().unbind(),
            None => {
                return Err(crate::errors::CorruptionError::new_err(format!(
                    "a {} column holds bytes that are not {}",
                    dtype.name(),
                    encoding.name()
                )))
            }
        },
        DType::FixedStr(fixed) => {
            let encoded = fixed.unpad(raw);
            let text = match fixed.encoding() {
                None => std::str::from_utf8(encoded).ok().map(str::to_owned),
                Some(encoding) => decode_text(encoding, encoded),
            };
            match text {
                Some(text) => PyString::new(py, &text).into_any().unbind(),
                None => {
                    return Err(crate::errors::CorruptionError::new_err(format!(
                        "a {} column holds bytes that are not {}",
                        dtype.name(),
                        fixed.encoding().map_or("utf8", TextEncoding::name)
                    )))
                }
            }
        }
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

/// Decodes every element of a read into Python objects.
pub(crate) fn decode_all(py: Python<'_>, dtype: DType, out: &ReadOut) -> PyResult<Vec<Py<PyAny>>> {
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
pub(crate) fn raw_bytes<'a>(raw: &'a Bound<'_, PyAny>) -> Result<Cow<'a, [u8]>, BindingError> {
    match ndarray_bytes(raw)? {
        Some(bytes) => Ok(Cow::Borrowed(bytes)),
        None => value_from_py(raw),
    }
}
