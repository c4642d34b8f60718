//! `VectorTableCore`: the native half of `VectorKVault`, a `vectors::VectorTable` on the shared
//! open file. Vectors cross as bytes in the collection's stored form (numpy makes them);
//! values as `(encoding, bytes)` from the Python codec.

use std::sync::Arc;

use kvault::{Encoding, KeyKind, Vault};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use vectors::{
    Filter, IndexConfig, IndexKind, Item, ItemUpdate, Metric, NewItem, SearchOptions, Spec,
    VectorTable, VectorType, VectorsKind,
};

use crate::convert::{encoded_value, filter_from_py, key_from_py, key_to_py, non_negative};
use crate::errors::BindingError;
use crate::vault_py::{run, PyVault};

/// A vector collection on an open vault file.
#[pyclass(module = "ambervault._ambervault", name = "VectorTableCore", frozen)]
pub struct PyVectorTable {
    vault: Vault,
    table: VectorTable,
}

fn invalid(message: String) -> BindingError {
    BindingError::Vault(kvault::Error::InvalidArgument(message))
}

fn item_to_py(py: Python<'_>, item: Item) -> PyResult<Py<PyAny>> {
    let key = match &item.key {
        Some((key, kind)) => key_to_py(py, key, *kind)?,
        None => py.None(),
    };
    Ok((
        item.id,
        key,
        PyBytes::new(py, &item.vector),
        item.encoding.0,
        PyBytes::new(py, &item.value),
        item.metadata,
    )
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

#[pymethods]
impl PyVectorTable {
    /// Opens collection `name` on `vault`, creating it when missing. Arguments left as None
    /// take the stored values (or the defaults for a new collection); given ones must match a
    /// stored collection.
    #[new]
    #[pyo3(signature = (vault, name, dimensions=None, vector_type=None, metric=None, index=None,
                        connectivity=None, ef_construction=None, ef_search=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        vault: &Bound<'_, PyVault>,
        name: String,
        dimensions: Option<i64>,
        vector_type: Option<&str>,
        metric: Option<&str>,
        index: Option<&str>,
        connectivity: Option<i64>,
        ef_construction: Option<i64>,
        ef_search: Option<i64>,
    ) -> Result<Self, BindingError> {
        let vault = vault.get().vault().clone();
        vault.attach(Arc::new(VectorsKind));
        let dimensions: Option<usize> = dimensions
            .map(|d| non_negative("dimensions", d))
            .transpose()?;
        let vector_type = vector_type.map(VectorType::parse).transpose()?;
        let metric = metric.map(Metric::parse).transpose()?;
        let defaults = IndexConfig::default();
        let config = IndexConfig {
            kind: index.map_or(Ok(defaults.kind), IndexKind::parse)?,
            connectivity: connectivity
                .map_or(Ok(defaults.connectivity), |v| non_negative("M", v))?,
            ef_construction: ef_construction.map_or(Ok(defaults.ef_construction), |v| {
                non_negative("ef_construction", v)
            })?,
            ef_search: ef_search
                .map_or(Ok(defaults.ef_search), |v| non_negative("ef_search", v))?,
        };
        let table = run(py, &vault, |store| -> kvault::Result<VectorTable> {
            if let Some(found) = VectorTable::find(store, &name)? {
                let spec = found.spec();
                let want = Spec::new(
                    dimensions.unwrap_or(spec.dimensions),
                    vector_type.unwrap_or(spec.vector_type),
                    metric.unwrap_or(spec.metric),
                )?;
                if want != spec {
                    // Let `open` word the mismatch.
                    return VectorTable::open(store, &name, Some((want, config)));
                }
                return Ok(found);
            }
            let vector_type = vector_type.unwrap_or(VectorType::F32);
            let metric = metric.unwrap_or(if vector_type == VectorType::Bit {
                Metric::Hamming
            } else {
                Metric::Cosine
            });
            let spec = Spec::new(dimensions.unwrap_or(768), vector_type, metric)?;
            VectorTable::open(store, &name, Some((spec, config)))
        })?;
        Ok(Self { vault, table })
    }

    /// Deletes collection `name` of `vault`; whether it existed.
    #[staticmethod]
    fn drop_table(
        py: Python<'_>,
        vault: &Bound<'_, PyVault>,
        name: String,
    ) -> Result<bool, BindingError> {
        let vault = vault.get().vault().clone();
        run(py, &vault, |s| VectorTable::drop_table(s, &name))
    }

    /// Names of the vector collections of `vault`.
    #[staticmethod]
    fn names(py: Python<'_>, vault: &Bound<'_, PyVault>) -> Result<Vec<String>, BindingError> {
        let vault = vault.get().vault().clone();
        run(py, &vault, vectors::vector_table_names)
    }

    /// `(dimensions, vector_type, metric, index, M, ef_construction, ef_search)`.
    #[getter]
    fn spec(
        &self,
    ) -> (
        usize,
        &'static str,
        &'static str,
        &'static str,
        usize,
        usize,
        usize,
    ) {
        let spec = self.table.spec();
        let index = self.table.index_config();
        (
            spec.dimensions,
            spec.vector_type.name(),
            spec.metric.name(),
            index.kind.name(),
            index.connectivity,
            index.ef_construction,
            index.ef_search,
        )
    }

    /// Bytes of one stored vector.
    #[getter]
    fn vector_bytes(&self) -> usize {
        self.table.spec().vector_bytes()
    }

    /// Inserts `n` items in one transaction: `vectors` is `n` stored vectors back to back,
    /// `values` `n` `(encoding, bytes)` pairs, `keys` and `metadata` (JSON text) optional
    /// lists of `n`. Returns the ids.
    #[pyo3(signature = (vectors, values, keys=None, metadata=None))]
    fn insert_many(
        &self,
        py: Python<'_>,
        vectors: &[u8],
        values: &Bound<'_, PyList>,
        keys: Option<&Bound<'_, PyList>>,
        metadata: Option<Vec<Option<String>>>,
    ) -> Result<Vec<i64>, BindingError> {
        let width = self.table.spec().vector_bytes();
        let n = values.len();
        if vectors.len() != n * width {
            return Err(invalid(format!(
                "{n} values need {n} vectors ({} bytes), got {} bytes",
                n * width,
                vectors.len()
            )));
        }
        let values: Vec<(Encoding, Vec<u8>)> = values
            .iter()
            .map(|v| encoded_value(&v))
            .collect::<Result<_, _>>()?;
        let keys: Option<Vec<(Vec<u8>, KeyKind)>> = match keys {
            Some(keys) if keys.len() != n => {
                return Err(invalid(format!(
                    "{n} values need {n} keys, got {}",
                    keys.len()
                )))
            }
            Some(keys) => Some(
                keys.iter()
                    .map(|k| key_from_py(&k).map(|(b, kind)| (b.into_owned(), kind)))
                    .collect::<Result<_, _>>()?,
            ),
            None => None,
        };
        if metadata.as_ref().is_some_and(|m| m.len() != n) {
            return Err(invalid(format!("{n} values need {n} metadata entries")));
        }
        let items: Vec<NewItem<'_>> = (0..n)
            .map(|i| NewItem {
                key: keys.as_ref().map(|k| (&*k[i].0, k[i].1)),
                vector: &vectors[i * width..(i + 1) * width],
                value: &values[i].1,
                encoding: values[i].0,
                metadata: metadata.as_ref().and_then(|m| m[i].as_deref()),
            })
            .collect();
        run(py, &self.vault, |s| self.table.insert_many(s, &items))
    }

    /// Changes item `id`; whether it exists. `metadata` is JSON text; `clear_metadata` removes it.
    #[pyo3(signature = (id, vector=None, value=None, metadata=None, clear_metadata=false))]
    fn update(
        &self,
        py: Python<'_>,
        id: i64,
        vector: Option<&[u8]>,
        value: Option<&Bound<'_, PyAny>>,
        metadata: Option<String>,
        clear_metadata: bool,
    ) -> Result<bool, BindingError> {
        let value = value.map(encoded_value).transpose()?;
        let update = ItemUpdate {
            vector,
            value: value.as_ref().map(|(e, b)| (b.as_slice(), *e)),
            metadata: if clear_metadata {
                Some(None)
            } else {
                metadata.as_deref().map(Some)
            },
        };
        run(py, &self.vault, |s| self.table.update(s, id, update))
    }

    /// Deletes items by id; how many existed.
    fn delete(&self, py: Python<'_>, ids: Vec<i64>) -> Result<u64, BindingError> {
        run(py, &self.vault, |s| self.table.delete(s, &ids))
    }

    /// Deletes items by key; how many existed.
    fn delete_keys(&self, py: Python<'_>, keys: &Bound<'_, PyList>) -> Result<u64, BindingError> {
        let keys: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| key_from_py(&k).map(|(b, _)| b.into_owned()))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        run(py, &self.vault, |s| self.table.delete_keys(s, &refs))
    }

    /// Deletes every item; how many there were.
    fn clear(&self, py: Python<'_>) -> Result<u64, BindingError> {
        run(py, &self.vault, |s| self.table.clear(s))
    }

    /// `(id, key, vector, encoding, value, metadata)` of item `id`, or None.
    fn get(&self, py: Python<'_>, id: i64) -> Result<Option<Py<PyAny>>, BindingError> {
        let item = run(py, &self.vault, |s| self.table.get(s, id))?;
        Ok(item.map(|i| item_to_py(py, i)).transpose()?)
    }

    /// As `get`, by key.
    fn get_by_key(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
    ) -> Result<Option<Py<PyAny>>, BindingError> {
        let (key, _) = key_from_py(key)?;
        let key = key.into_owned();
        let item = run(py, &self.vault, |s| self.table.get_by_key(s, &key))?;
        Ok(item.map(|i| item_to_py(py, i)).transpose()?)
    }

    /// Number of items.
    fn count(&self, py: Python<'_>) -> Result<u64, BindingError> {
        run(py, &self.vault, |s| self.table.count(s))
    }

    /// Whether item `id` exists.
    fn exists(&self, py: Python<'_>, id: i64) -> Result<bool, BindingError> {
        run(py, &self.vault, |s| self.table.exists(s, id))
    }

    /// Up to `limit` `(id, key)` pairs with ids above `after`.
    fn ids(
        &self,
        py: Python<'_>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Py<PyAny>)>, BindingError> {
        let limit = non_negative::<usize>("limit", limit)?;
        let rows = run(py, &self.vault, |s| self.table.ids(s, after, limit))?;
        rows.into_iter()
            .map(|(id, key)| {
                let key = match key {
                    Some((k, kind)) => key_to_py(py, &k, kind)?,
                    None => py.None(),
                };
                Ok((id, key))
            })
            .collect()
    }

    /// The `k` nearest items to one query: a list of
    /// `(id, distance, key, encoding, value, metadata)`, nearest first.
    #[pyo3(signature = (query, k, metric=None, exact=false, filter=None, ef_search=None))]
    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        py: Python<'_>,
        query: &[u8],
        k: i64,
        metric: Option<&str>,
        exact: bool,
        filter: Option<&Bound<'_, PyList>>,
        ef_search: Option<i64>,
    ) -> Result<Vec<Py<PyAny>>, BindingError> {
        let filter = filter.map(filter_from_py).transpose()?;
        let options = self.options(k, metric, exact, filter.as_ref(), ef_search)?;
        let found = run(py, &self.vault, |s| {
            self.table.search_items(s, query, &options)
        })?;
        found
            .into_iter()
            .map(|(hit, item)| {
                let key = match &item.key {
                    Some((key, kind)) => key_to_py(py, key, *kind)?,
                    None => py.None(),
                };
                Ok((
                    hit.id,
                    hit.distance,
                    key,
                    item.encoding.0,
                    PyBytes::new(py, &item.value),
                    item.metadata,
                )
                    .into_pyobject(py)?
                    .into_any()
                    .unbind())
            })
            .collect()
    }

    /// The `k` nearest ids to each of `m` queries: `(ids, distances)` as little-endian int64
    /// and float32 bytes of shape `(m, k)`, padded with -1 and infinity where fewer exist.
    #[pyo3(signature = (queries, k, metric=None, exact=false, filter=None, ef_search=None))]
    #[allow(clippy::too_many_arguments)]
    fn search_many<'py>(
        &self,
        py: Python<'py>,
        queries: &[u8],
        k: i64,
        metric: Option<&str>,
        exact: bool,
        filter: Option<&Bound<'_, PyList>>,
        ef_search: Option<i64>,
    ) -> Result<(Bound<'py, PyBytes>, Bound<'py, PyBytes>), BindingError> {
        let filter = filter.map(filter_from_py).transpose()?;
        let options = self.options(k, metric, exact, filter.as_ref(), ef_search)?;
        let results = run(py, &self.vault, |s| self.table.search(s, queries, &options))?;
        let k = options.k;
        let mut ids = Vec::with_capacity(results.len() * k * 8);
        let mut distances = Vec::with_capacity(results.len() * k * 4);
        for hits in &results {
            for i in 0..k {
                let (id, d) = hits
                    .get(i)
                    .map_or((-1i64, f32::INFINITY), |h| (h.id, h.distance));
                ids.extend_from_slice(&id.to_le_bytes());
                distances.extend_from_slice(&d.to_le_bytes());
            }
        }
        Ok((PyBytes::new(py, &ids), PyBytes::new(py, &distances)))
    }

    /// Builds the HNSW graph from the rows and stores it in the file.
    fn build_index(&self, py: Python<'_>) -> Result<(), BindingError> {
        run(py, &self.vault, |s| self.table.build_index(s))
    }

    /// Stores the loaded graph if it changed since last stored (`only_if_due`: once the
    /// changes reach a tenth of its size); whether it was.
    #[pyo3(signature = (only_if_due=false))]
    fn store_index(&self, py: Python<'_>, only_if_due: bool) -> Result<bool, BindingError> {
        run(py, &self.vault, |s| self.table.store_index(s, only_if_due))
    }

    /// A summary dict: count, sequence, stored graph size, memory of the loaded engines.
    fn info<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyDict>, BindingError> {
        let info = run(py, &self.vault, |s| self.table.info(s))?;
        let dict = PyDict::new(py);
        let reg = &info.registry;
        dict.set_item("count", reg.items)?;
        dict.set_item("dimensions", reg.spec.dimensions)?;
        dict.set_item("vector_type", reg.spec.vector_type.name())?;
        dict.set_item("metric", reg.spec.metric.name())?;
        dict.set_item("index", reg.index.kind.name())?;
        dict.set_item("M", reg.index.connectivity)?;
        dict.set_item("ef_construction", reg.index.ef_construction)?;
        dict.set_item("ef_search", reg.index.ef_search)?;
        dict.set_item("sequence", reg.seq)?;
        dict.set_item("index_sequence", reg.index_seq)?;
        dict.set_item("index_bytes", info.index_bytes)?;
        dict.set_item("memory_bytes", info.memory_bytes)?;
        dict.set_item("loaded", info.loaded)?;
        dict.set_item("kernels", vectors::Kernels::get().name)?;
        Ok(dict)
    }
}

impl PyVectorTable {
    fn options<'f>(
        &self,
        k: i64,
        metric: Option<&str>,
        exact: bool,
        filter: Option<&'f Filter>,
        ef_search: Option<i64>,
    ) -> Result<SearchOptions<'f>, BindingError> {
        if k < 0 {
            return Err(invalid(format!("k must be >= 0, not {k}")));
        }
        Ok(SearchOptions {
            k: usize::try_from(k).unwrap_or(usize::MAX).min(1 << 24),
            metric: metric.map(Metric::parse).transpose()?,
            exact,
            filter,
            ef_search: ef_search
                .map(|v| non_negative("ef_search", v))
                .transpose()?,
        })
    }
}

/// Adds the vector classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVectorTable>()?;
    Ok(())
}
