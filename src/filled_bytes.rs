//! New `bytes` objects filled by Rust without being zeroed first.
//!
//! `PyBytes::new_with` zeroes the object before handing it over, and a read then overwrites
//! every byte: for a 100 KB get that was 8% of the time. CPython makes a bytes object with
//! uninitialised contents when asked for one without a source; nothing in Python can reach it
//! until it is returned, so it is filled (or dropped) before anyone could read it.

use std::mem::MaybeUninit;

use pyo3::exceptions::{PyOverflowError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::raw_buffer::advise_huge_pages;

/// From this size a new object's memory is often fresh (glibc maps large allocations on their
/// own), and its first touch costs a fault per 4 KiB page unless marked for huge pages: a
/// 64 MiB get took 47-55 ms with those faults, 21-25 ms without.
const HUGE_PAGES_FROM: usize = 4 << 20;

/// A new `bytes` object whose bytes are not filled yet: for a read that fills several objects
/// at once (with the GIL released). Only its owner can reach it; dropping it unfilled is safe.
pub struct UnfilledBytes<'py> {
    object: Bound<'py, PyBytes>,
    len: usize,
}

impl<'py> UnfilledBytes<'py> {
    /// A bytes object of `len` uninitialised bytes (marked for huge pages from
    /// [`HUGE_PAGES_FROM`]).
    pub fn new(py: Python<'py>, len: usize) -> PyResult<Self> {
        let size = ffi::Py_ssize_t::try_from(len)
            .map_err(|_| PyOverflowError::new_err(format!("{len} bytes is too large for bytes")))?;
        // SAFETY: a null source asks CPython for a bytes object of `size` uninitialised bytes;
        // the result is a new reference or null with an exception set.
        let object = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyBytes_FromStringAndSize(std::ptr::null(), size),
            )?
            .cast_into_unchecked::<PyBytes>()
        };
        let mut unfilled = Self { object, len };
        if len >= HUGE_PAGES_FROM {
            advise_huge_pages(unfilled.buffer());
        }
        Ok(unfilled)
    }

    /// The object's bytes, to be filled.
    pub fn buffer(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: the object is a bytes object of `len` bytes (plus CPython's trailing zero)
        // that only `self` can reach; the slice borrows `self`, so it cannot outlive it.
        unsafe {
            let data = ffi::PyBytes_AsString(self.object.as_ptr()).cast::<MaybeUninit<u8>>();
            std::slice::from_raw_parts_mut(data, self.len)
        }
    }

    /// The object, for Python to use.
    ///
    /// # Safety
    /// Every byte of [`UnfilledBytes::buffer`] must have been written.
    pub unsafe fn assume_filled(self) -> Bound<'py, PyBytes> {
        self.object
    }
}

/// A new `bytes` object of `len` bytes, filled by `fill`.
///
/// `fill` gets the object's unfilled bytes and returns the part it filled, which must start
/// where they start: all of them gives the object itself; a shorter part (a reader that found
/// fewer bytes) is copied into a new object of that length. The outer error is Python's (no
/// memory); the inner one is `fill`'s, after which the object is dropped unseen.
pub fn filled_bytes<'py, E>(
    py: Python<'py>,
    len: usize,
    fill: impl for<'a> FnOnce(&'a mut [MaybeUninit<u8>]) -> Result<&'a mut [u8], E>,
) -> PyResult<Result<Bound<'py, PyBytes>, E>> {
    let mut object = UnfilledBytes::new(py, len)?;
    let unfilled = object.buffer();
    let start = unfilled.as_ptr().cast::<u8>();
    let filled = match fill(unfilled) {
        Ok(filled) => filled,
        Err(err) => return Ok(Err(err)),
    };
    if filled.as_ptr() != start && !filled.is_empty() {
        return Err(PyRuntimeError::new_err(
            "a read filled bytes other than the start of its buffer",
        ));
    }
    if filled.len() == len {
        // SAFETY: `fill` returned the whole buffer, from its start, as filled.
        return Ok(Ok(unsafe { object.assume_filled() }));
    }
    Ok(Ok(PyBytes::new(py, filled)))
}
