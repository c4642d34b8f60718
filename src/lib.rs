//! `ambervault._ambervault`: the PyO3 extension. Thin glue only: argument conversion, GIL
//! release around SQLite work, and error mapping. Storage logic lives in the pure-Rust crates
//! (`kvault-rust/`: the vault file and key-value tables; `columnar/`: columns). One file per
//! native class family: `vault_py` (the open file), `kvault_py` (key-value tables and their
//! streams), `columns_py` (columns), `pending_py` (the column write cache), `write_cache_py` (the key-value write cache, its writes in `cache_writes` and its background writer in `write_behind`), `inspect_py`,
//! `raw_buffer`, `vectors_py` (vector collections), `text_py` (text tables); `element_codec` converts column elements (Python objects <-> element bytes).

use pyo3::prelude::*;

mod branches_py;
mod cache_writes;
mod columns_py;
mod convert;
mod element_codec;
mod errors;
mod filled_bytes;
mod inspect_py;
mod kvault_py;
mod pending_py;
mod raw_buffer;
mod text_py;
mod vault_py;
mod vectors_py;
mod write_behind;
mod write_cache_py;

#[pymodule]
fn _ambervault(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("FORMAT_VERSION", kvault::FORMAT_VERSION)?;
    m.add("SQLITE_VERSION", rusqlite_version())?;
    // Test builds (`make develop`): the Python side then honours test-only switches such as
    // AMBERVAULT_TEST_KEY. Release wheels have none.
    m.add("TEST_HOOKS", cfg!(feature = "test-hooks"))?;
    convert::register(m)?;
    vault_py::register(m)?;
    kvault_py::register(m)?;
    branches_py::register(m)?;
    columns_py::register(m)?;
    pending_py::register(m)?;
    inspect_py::register(m)?;
    raw_buffer::register(m)?;
    vectors_py::register(m)?;
    text_py::register(m)?;
    write_cache_py::register(m)?;
    m.add_function(wrap_pyfunction!(powerloss_mark, m)?)?;
    m.add_function(wrap_pyfunction!(powerloss_fail_db_syncs, m)?)?;
    Ok(())
}

/// Adds event `n` (an acknowledged operation) to the power-loss test log; False when nothing
/// is being recorded (always in release builds).
#[pyfunction]
fn powerloss_mark(n: u64) -> bool {
    kvault::powerloss_mark(n)
}

/// Makes every sync of a database file fail while `on` (the power-loss test VFS, test builds
/// only); False when that VFS is not installed (always in release builds).
#[pyfunction]
fn powerloss_fail_db_syncs(on: bool) -> bool {
    kvault::powerloss_fail_db_syncs(on)
}

fn rusqlite_version() -> String {
    kvault::sqlite_version().to_string()
}
