//! `RawBuffer`: bytes owned by Rust that numpy wraps without a copy.
//!
//! The abi3 (limited) API has no buffer protocol for our own classes before Python 3.11, but
//! numpy also accepts any object with an `__array_interface__`; the array keeps the object
//! alive as its base. Large column reads fill such a buffer with the GIL released, and the
//! allocation is marked for transparent huge pages, as numpy does for its own large arrays, so
//! first-touch page faults cost a fraction of what 4 KiB pages cost.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A zero-filled heap buffer, written once by Rust before Python sees it.
#[pyclass(frozen, module = "ambervault._ambervault")]
pub struct RawBuffer {
    // The allocation is reached only through this raw pointer (never through a Rust
    // reference once handed to Python), so numpy may write to it.
    ptr: usize,
    len: usize,
}

impl RawBuffer {
    /// `len` zero bytes, marked for huge pages: the buffer to fill (with the GIL released, as
    /// nothing in Python can see it yet) before wrapping it with `RawBuffer::from`.
    pub fn zeroed(len: usize) -> Box<[u8]> {
        // vec! of zeros maps fresh zero pages for large sizes: no memset.
        let mut bytes = vec![0u8; len].into_boxed_slice();
        advise_huge_pages(&mut bytes[..]);
        bytes
    }
}

impl From<Box<[u8]>> for RawBuffer {
    fn from(bytes: Box<[u8]>) -> Self {
        let len = bytes.len();
        let ptr = Box::into_raw(bytes).cast::<u8>() as usize;
        Self { ptr, len }
    }
}

impl Drop for RawBuffer {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr as *mut u8, self.len);
        // SAFETY: ptr/len came from Box::into_raw of a boxed slice of exactly this length and
        // are freed only here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

#[pymethods]
impl RawBuffer {
    /// numpy's array interface: a 1-D, writable array of `len` unsigned bytes.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let interface = PyDict::new(py);
        interface.set_item("shape", (self.len,))?;
        interface.set_item("typestr", "|u1")?;
        interface.set_item("data", (self.ptr, false))?;
        interface.set_item("version", 3)?;
        Ok(interface)
    }

    fn __len__(&self) -> usize {
        self.len
    }
}

/// Marks the whole 2 MiB pages inside a fresh buffer for transparent huge pages, so that its
/// first touch faults a huge page at a time (a hint: the contents do not change).
#[cfg(target_os = "linux")]
pub fn advise_huge_pages<T>(buffer: &mut [T]) {
    const HUGE: usize = 2 << 20;
    let start = buffer.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let end = (start + std::mem::size_of_val(buffer)) & !(HUGE - 1);
    if end > aligned {
        // SAFETY: the range lies inside the caller's buffer; MADV_HUGEPAGE is only a hint and
        // changes no contents. Failure (e.g. THP disabled) is harmless and ignored.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

/// Marks a fresh buffer for huge pages: nothing to do off Linux.
#[cfg(not(target_os = "linux"))]
pub fn advise_huge_pages<T>(_buffer: &mut [T]) {}

/// Adds `RawBuffer` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RawBuffer>()
}

/// The memory of a C-contiguous `numpy.ndarray`, borrowed without a copy; `None` for any other
/// object (the caller then copies it through `memoryview`).
///
/// Sound to read for as long as the caller holds `array`: numpy frees or reallocates an array's
/// data only when nothing else references it (`ndarray.resize` refuses while we do). Another
/// thread writing into the array meanwhile makes the stored contents unspecified, as with any
/// numpy consumer that releases the GIL, but cannot make the read touch freed memory.
pub fn ndarray_bytes<'a>(array: &'a Bound<'_, PyAny>) -> PyResult<Option<&'a [u8]>> {
    let ty = array.get_type();
    if ty.name()?.to_cow()? != "ndarray" || ty.module()?.to_cow()? != "numpy" {
        return Ok(None);
    }
    let interface = array.getattr("__array_interface__")?;
    if !interface.get_item("strides")?.is_none() {
        return Ok(None); // not C-contiguous
    }
    let (address, _read_only): (usize, bool) = interface.get_item("data")?.extract()?;
    let nbytes: usize = array.getattr("nbytes")?.extract()?;
    if nbytes == 0 {
        return Ok(Some(&[]));
    }
    if address == 0 {
        return Ok(None);
    }
    // SAFETY: a live, C-contiguous ndarray's data pointer addresses `nbytes` readable bytes,
    // kept allocated by the reference the caller holds (see above).
    Ok(Some(unsafe {
        std::slice::from_raw_parts(address as *const u8, nbytes)
    }))
}
