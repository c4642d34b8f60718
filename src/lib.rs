//! `ambervault._ambervault`: the PyO3 extension. Thin glue only: argument conversion, GIL
//! release around SQLite work, and error mapping. Storage logic lives in `kvault-rust/`.

use pyo3::prelude::*;

mod columns_py;
mod convert;
mod errors;
mod inspect_py;
mod kvault_py;
mod raw_buffer;
mod shared;

#[pymodule]
fn _ambervault(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("FORMAT_VERSION", kvault::FORMAT_VERSION)?;
    m.add("SQLITE_VERSION", rusqlite_version())?;
    kvault_py::register(m)?;
    columns_py::register(m)?;
    inspect_py::register(m)?;
    raw_buffer::register(m)?;
    Ok(())
}

fn rusqlite_version() -> String {
    kvault::sqlite_version().to_string()
}
