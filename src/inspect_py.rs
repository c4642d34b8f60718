//! `inspect(path)`: a read-only summary of a vault file for tools (the CLI's `info`).

use kvault::{KvTable, Location, Store, StoreOptions};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::BindingError;

/// Everything `inspect` reports, gathered without the GIL.
struct Summary {
    format_version: i64,
    page_size: i64,
    page_count: i64,
    free_pages: i64,
    tables: Vec<(String, kvault::TableStats)>,
    columns: Vec<columnar::ColumnMeta>,
}

/// Opens `path` read-only and summarises it: format version, pages, key-value tables with
/// their statistics, and columns.
#[pyfunction]
#[pyo3(signature = (path, key=None))]
pub fn inspect<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    key: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyDict>, BindingError> {
    let key = key.map(crate::vault_py::to_key).transpose()?;
    let summary = py.detach(move || -> Result<Summary, BindingError> {
        let options = StoreOptions {
            read_only: true,
            key,
            ..StoreOptions::default()
        };
        let mut store = Store::open(Location::from_path(&path), options)?;
        let format_version = store.format_version()?;
        let (page_size, page_count, free_pages) = store.page_stats()?;
        let mut tables = Vec::new();
        for name in kvault::kv_table_names(&mut store)? {
            let table = KvTable::open(&mut store, &name, kvault::DEFAULT_CHUNK_SIZE)?;
            tables.push((name, table.stats(&mut store)?));
        }
        let columns = columnar::Column::list(&mut store)?;
        Ok(Summary {
            format_version,
            page_size,
            page_count,
            free_pages,
            tables,
            columns,
        })
    })?;
    let out = PyDict::new(py);
    out.set_item("format_version", summary.format_version)?;
    out.set_item("page_size", summary.page_size)?;
    out.set_item("page_count", summary.page_count)?;
    out.set_item("free_pages", summary.free_pages)?;
    let tables = PyList::empty(py);
    for (name, stats) in summary.tables {
        let t = PyDict::new(py);
        t.set_item("name", name)?;
        t.set_item("keys", stats.keys)?;
        t.set_item("logical_bytes", stats.logical_bytes)?;
        t.set_item("stored_bytes", stats.inline_bytes + stats.content_bytes)?;
        t.set_item("chunks", stats.chunks)?;
        t.set_item("unique_chunks", stats.unique_chunks)?;
        t.set_item("pending_uploads", stats.pending_uploads)?;
        t.set_item("expired_keys", stats.expired_keys)?;
        tables.append(t)?;
    }
    out.set_item("tables", tables)?;
    let columns = PyList::empty(py);
    for meta in summary.columns {
        let c = PyDict::new(py);
        c.set_item("name", meta.name)?;
        c.set_item("dtype", meta.dtype.name())?;
        c.set_item("length", meta.len)?;
        c.set_item("bytes", meta.data_bytes)?;
        columns.append(c)?;
    }
    out.set_item("columns", columns)?;
    Ok(out)
}

/// Adds this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    Ok(())
}
