//! `TextTableCore`: the native half of `TextVault`, a `text::TextTable` on the shared open
//! file. Texts cross as lists of `str` (one per column, flattened for batches); values as
//! encoding codes plus `bytes` from the Python codec; metadata as JSON text.

use std::sync::Arc;

use kvault::{Encoding, Filter, Vault};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use text::{
    Doc, DocUpdate, Hit, Markers, NewDoc, QueryMode, SearchOptions, Snippet, TextKind, TextOutput,
    TextTable, Tokenizer,
};

use crate::convert::{encoded_value, filter_from_py, non_negative, type_name};
use crate::errors::{type_error, BindingError};
use crate::vault_py::{run, PyVault};

/// A text table on an open vault file.
#[pyclass(module = "ambervault._ambervault", name = "TextTableCore", frozen)]
pub struct PyTextTable {
    vault: Vault,
    table: TextTable,
}

fn invalid(message: String) -> BindingError {
    BindingError::Vault(kvault::Error::InvalidArgument(message))
}

/// The strings of a list (texts), refusing anything else.
fn strings(list: &Bound<'_, PyList>) -> Result<Vec<String>, BindingError> {
    list.iter()
        .map(|item| match item.cast::<PyString>() {
            Ok(text) => Ok(text.to_cow()?.into_owned()),
            Err(_) => Err(type_error(format!(
                "texts must be str, not {}",
                type_name(&item)
            ))),
        })
        .collect()
}

fn doc_to_py(py: Python<'_>, doc: Doc) -> PyResult<Py<PyAny>> {
    Ok((
        doc.id,
        doc.texts,
        doc.encoding.0,
        PyBytes::new(py, &doc.value),
        doc.metadata,
    )
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

fn hit_to_py(py: Python<'_>, hit: Hit, with_texts: bool) -> PyResult<Py<PyAny>> {
    let texts = if with_texts { Some(hit.texts) } else { None };
    Ok((
        hit.id,
        hit.score,
        hit.encoding.0,
        PyBytes::new(py, &hit.value),
        hit.metadata,
        texts,
        hit.snippet,
    )
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

#[pymethods]
impl PyTextTable {
    /// Opens text table `name` on `vault`, creating it when missing (with `columns`, default
    /// `["content"]`, and `tokenizer`, default `"unicode61"`). Given arguments must match an
    /// existing table.
    #[new]
    #[pyo3(signature = (vault, name, columns=None, tokenizer=None))]
    fn new(
        py: Python<'_>,
        vault: &Bound<'_, PyVault>,
        name: String,
        columns: Option<Vec<String>>,
        tokenizer: Option<&str>,
    ) -> Result<Self, BindingError> {
        let vault = vault.get().vault().clone();
        vault.attach(Arc::new(TextKind));
        let tokenizer = tokenizer.map(Tokenizer::parse).transpose()?;
        if let Some(columns) = &columns {
            text::validate_columns(columns)?;
        }
        let table = run(py, &vault, |store| -> kvault::Result<TextTable> {
            if let Some(found) = TextTable::find(store, &name)? {
                let want = (
                    columns.clone().unwrap_or_else(|| found.columns().to_vec()),
                    tokenizer.unwrap_or(found.tokenizer()),
                );
                // `open` words a mismatch (or returns the same table).
                return TextTable::open(store, &name, Some(want));
            }
            let columns = columns.clone().unwrap_or_else(|| vec!["content".into()]);
            TextTable::open(store, &name, Some((columns, tokenizer.unwrap_or_default())))
        })?;
        Ok(Self { vault, table })
    }

    /// Deletes text table `name` of `vault`; whether it existed.
    #[staticmethod]
    fn drop_table(
        py: Python<'_>,
        vault: &Bound<'_, PyVault>,
        name: String,
    ) -> Result<bool, BindingError> {
        let vault = vault.get().vault().clone();
        run(py, &vault, |s| TextTable::drop_table(s, &name))
    }

    /// Names of the text tables of `vault`.
    #[staticmethod]
    fn names(py: Python<'_>, vault: &Bound<'_, PyVault>) -> Result<Vec<String>, BindingError> {
        let vault = vault.get().vault().clone();
        run(py, &vault, text::text_table_names)
    }

    /// The text columns.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.table.columns().to_vec()
    }

    /// The tokenizer's name.
    #[getter]
    fn tokenizer(&self) -> &'static str {
        self.table.tokenizer().name()
    }

    /// Inserts `n` documents in one transaction: `texts` holds `n * len(columns)` strings
    /// (row by row), `encodings` `n` codes, `values` `n` `bytes`, `metadata` an optional list
    /// of `n` JSON texts. Returns the ids.
    #[pyo3(signature = (texts, encodings, values, metadata=None))]
    fn insert_many(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyList>,
        encodings: &[u8],
        values: &Bound<'_, PyList>,
        metadata: Option<Vec<Option<String>>>,
    ) -> Result<Vec<i64>, BindingError> {
        let n = values.len();
        let width = self.table.columns().len();
        if texts.len() != n * width || encodings.len() != n {
            return Err(invalid(format!(
                "{n} values need {} texts and {n} encodings, got {} and {}",
                n * width,
                texts.len(),
                encodings.len()
            )));
        }
        if metadata.as_ref().is_some_and(|m| m.len() != n) {
            return Err(invalid(format!("{n} values need {n} metadata entries")));
        }
        let texts = strings(texts)?;
        let values: Vec<Bound<'_, PyBytes>> = values
            .iter()
            .map(|v| {
                v.cast_into::<PyBytes>().map_err(|e| {
                    type_error(format!(
                        "values must be bytes, not {}",
                        type_name(e.into_inner().as_any())
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let docs: Vec<NewDoc<'_>> = (0..n)
            .map(|i| NewDoc {
                texts: &text_refs[i * width..(i + 1) * width],
                value: values[i].as_bytes(),
                encoding: Encoding(encodings[i]),
                metadata: metadata.as_ref().and_then(|m| m[i].as_deref()),
            })
            .collect();
        run(py, &self.vault, |s| self.table.insert_many(s, &docs))
    }

    /// Stores a document under its exact texts (replacing the value and metadata of the first
    /// document with these texts, or inserting); returns its id.
    #[pyo3(signature = (texts, value, metadata=None))]
    fn put(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyList>,
        value: &Bound<'_, PyAny>,
        metadata: Option<String>,
    ) -> Result<i64, BindingError> {
        let texts = strings(texts)?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (encoding, value) = encoded_value(value)?;
        let doc = NewDoc {
            texts: &refs,
            value: &value,
            encoding,
            metadata: metadata.as_deref(),
        };
        run(py, &self.vault, |s| self.table.put(s, &doc))
    }

    /// Changes document `id`; whether it exists. `value` is `(encoding, bytes)`, `metadata`
    /// JSON text; `clear_metadata` removes it.
    #[pyo3(signature = (id, texts=None, value=None, metadata=None, clear_metadata=false))]
    fn update(
        &self,
        py: Python<'_>,
        id: i64,
        texts: Option<&Bound<'_, PyList>>,
        value: Option<&Bound<'_, PyAny>>,
        metadata: Option<String>,
        clear_metadata: bool,
    ) -> Result<bool, BindingError> {
        let texts = texts.map(strings).transpose()?;
        let refs: Option<Vec<&str>> = texts
            .as_ref()
            .map(|t| t.iter().map(String::as_str).collect());
        let value = value.map(encoded_value).transpose()?;
        let update = DocUpdate {
            texts: refs.as_deref(),
            value: value.as_ref().map(|(e, b)| (b.as_slice(), *e)),
            metadata: if clear_metadata {
                Some(None)
            } else {
                metadata.as_deref().map(Some)
            },
        };
        run(py, &self.vault, |s| self.table.update(s, id, update))
    }

    /// Deletes documents by id; how many existed.
    fn delete(&self, py: Python<'_>, ids: Vec<i64>) -> Result<u64, BindingError> {
        run(py, &self.vault, |s| self.table.delete(s, &ids))
    }

    /// Deletes every document; how many there were.
    fn clear(&self, py: Python<'_>) -> Result<u64, BindingError> {
        run(py, &self.vault, |s| self.table.clear(s))
    }

    /// Rebuilds the full-text index from the stored texts.
    fn rebuild(&self, py: Python<'_>) -> Result<(), BindingError> {
        run(py, &self.vault, |s| self.table.rebuild(s))
    }

    /// Merges the full-text index's segments.
    fn optimize(&self, py: Python<'_>) -> Result<(), BindingError> {
        run(py, &self.vault, |s| self.table.optimize(s))
    }

    /// `(id, texts, encoding, value, metadata)` of document `id`, or None.
    fn get(&self, py: Python<'_>, id: i64) -> Result<Option<Py<PyAny>>, BindingError> {
        let doc = run(py, &self.vault, |s| self.table.get(s, id))?;
        Ok(doc.map(|d| doc_to_py(py, d)).transpose()?)
    }

    /// As `get`, for the first document whose texts equal `texts` exactly.
    fn get_by_text(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyList>,
    ) -> Result<Option<Py<PyAny>>, BindingError> {
        let texts = strings(texts)?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let doc = run(py, &self.vault, |s| self.table.get_by_text(s, &refs))?;
        Ok(doc.map(|d| doc_to_py(py, d)).transpose()?)
    }

    /// Number of documents.
    fn count(&self, py: Python<'_>) -> Result<u64, BindingError> {
        run(py, &self.vault, |s| self.table.count(s))
    }

    /// Whether document `id` exists.
    fn exists(&self, py: Python<'_>, id: i64) -> Result<bool, BindingError> {
        run(py, &self.vault, |s| self.table.exists(s, id))
    }

    /// Up to `limit` ids after skipping `offset`, ascending.
    fn ids(&self, py: Python<'_>, limit: i64, offset: i64) -> Result<Vec<i64>, BindingError> {
        let limit = non_negative::<usize>("limit", limit)?;
        let offset = non_negative::<usize>("offset", offset)?;
        run(py, &self.vault, |s| self.table.ids(s, limit, offset))
    }

    /// Up to `limit` ids above `after`, ascending.
    fn ids_after(&self, py: Python<'_>, after: i64, limit: i64) -> Result<Vec<i64>, BindingError> {
        let limit = non_negative::<usize>("limit", limit)?;
        run(py, &self.vault, |s| self.table.ids_after(s, after, limit))
    }

    /// The best `k` documents for `query` after skipping `offset`: a list of
    /// `(id, score, encoding, value, metadata, texts or None, snippet or None)`. `mode` is
    /// `"all"`, `"any"`, `"phrase"` or `"raw"`; `texts` asks for each hit's texts,
    /// `highlight=(start, end)` for them with matches marked; `snippet=(column, tokens, start,
    /// end, ellipsis)` for a fragment.
    #[pyo3(signature = (query, k, offset=0, column=None, mode="all", filter=None, texts=false,
                        highlight=None, snippet=None))]
    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        py: Python<'_>,
        query: &str,
        k: i64,
        offset: i64,
        column: Option<&str>,
        mode: &str,
        filter: Option<&Bound<'_, PyList>>,
        texts: bool,
        highlight: Option<(String, String)>,
        snippet: Option<(Option<String>, i64, String, String, String)>,
    ) -> Result<Vec<Py<PyAny>>, BindingError> {
        let k = non_negative::<usize>("k", k)?;
        let offset = non_negative::<usize>("offset", offset)?;
        let mode = QueryMode::parse(mode)?;
        let filter: Option<Filter> = filter.map(filter_from_py).transpose()?;
        let text_output = match &highlight {
            Some((start, end)) => TextOutput::Highlighted(Markers { start, end }),
            None if texts => TextOutput::Plain,
            None => TextOutput::None,
        };
        let snippet = match &snippet {
            Some((column, tokens, start, end, ellipsis)) => Some(Snippet {
                column: column.as_deref(),
                markers: Markers { start, end },
                ellipsis,
                tokens: non_negative("snippet_tokens", *tokens)?,
            }),
            None => None,
        };
        let options = SearchOptions {
            k,
            offset,
            column,
            mode,
            filter: filter.as_ref(),
            texts: text_output,
            snippet,
        };
        let hits = run(py, &self.vault, |s| self.table.search(s, query, &options))?;
        let with_texts = !matches!(text_output, TextOutput::None);
        hits.into_iter()
            .map(|hit| Ok(hit_to_py(py, hit, with_texts)?))
            .collect()
    }

    /// How many documents match `query` (in `column`, accepted by `filter`).
    #[pyo3(signature = (query, mode="all", column=None, filter=None))]
    fn count_matches(
        &self,
        py: Python<'_>,
        query: &str,
        mode: &str,
        column: Option<&str>,
        filter: Option<&Bound<'_, PyList>>,
    ) -> Result<u64, BindingError> {
        let mode = QueryMode::parse(mode)?;
        let filter: Option<Filter> = filter.map(filter_from_py).transpose()?;
        run(py, &self.vault, |s| {
            self.table
                .count_matches(s, query, mode, column, filter.as_ref())
        })
    }

    /// A summary dict: table, columns, tokenizer, count.
    fn info<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyDict>, BindingError> {
        let reg = run(py, &self.vault, |s| self.table.info(s))?;
        let dict = PyDict::new(py);
        dict.set_item("table", self.table.name())?;
        dict.set_item("columns", reg.columns)?;
        dict.set_item("tokenizer", reg.tokenizer.name())?;
        dict.set_item("count", reg.items)?;
        Ok(dict)
    }
}

/// Adds the text classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTextTable>()?;
    Ok(())
}
