//! Searches: an FTS5 `MATCH` ranked by BM25, restricted to one column or by a metadata filter,
//! paged by `k` and `offset`, with the texts, highlighted texts or a snippet of each hit.
//!
//! One statement answers a search: the index is the outer loop and yields matches in rank
//! order (FTS5 consumes `ORDER BY rank`), each joined to its row, so the filter, snippets and
//! values are computed only for rows that are returned (or skipped by `offset`).

use kvault::{Encoding, Error, Filter, Result, Store};
use rusqlite::types::Value;
use rusqlite::Connection;

use crate::query::{fts5_query, query_error, QueryMode};
use crate::schema::ident;
use crate::table::TextTable;

/// Most tokens FTS5 puts in a snippet.
pub const MAX_SNIPPET_TOKENS: usize = 64;

/// Highlight markers put around each matched term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Markers<'a> {
    /// Before a match.
    pub start: &'a str,
    /// After a match.
    pub end: &'a str,
}

/// Which texts each hit carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextOutput<'a> {
    /// None.
    #[default]
    None,
    /// Every column's text as stored.
    Plain,
    /// Every column's text with the matched terms between markers.
    Highlighted(Markers<'a>),
}

/// A fragment of one column around the best matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snippet<'a> {
    /// The column (None: the searched column, or the first).
    pub column: Option<&'a str>,
    /// Markers around matched terms.
    pub markers: Markers<'a>,
    /// Put where the fragment cuts the text.
    pub ellipsis: &'a str,
    /// Tokens in the fragment (1 to [`MAX_SNIPPET_TOKENS`]).
    pub tokens: usize,
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchOptions<'a> {
    /// Most hits returned.
    pub k: usize,
    /// Best hits skipped first (for paging).
    pub offset: usize,
    /// Match only this column's text.
    pub column: Option<&'a str>,
    /// How the input becomes an FTS5 query.
    pub mode: QueryMode,
    /// Only documents whose metadata the filter accepts.
    pub filter: Option<&'a Filter>,
    /// The texts each hit carries.
    pub texts: TextOutput<'a>,
    /// A snippet for each hit.
    pub snippet: Option<Snippet<'a>>,
}

impl Default for SearchOptions<'_> {
    fn default() -> Self {
        Self {
            k: 10,
            offset: 0,
            column: None,
            mode: QueryMode::All,
            filter: None,
            texts: TextOutput::None,
            snippet: None,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The document's id.
    pub id: i64,
    /// Its BM25 relevance (higher is better; FTS5's rank negated).
    pub score: f64,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The value's encoding.
    pub encoding: Encoding,
    /// Metadata JSON text.
    pub metadata: Option<String>,
    /// The texts (plain or highlighted) when asked for, else empty.
    pub texts: Vec<String>,
    /// The snippet when asked for.
    pub snippet: Option<String>,
}

impl TextTable {
    fn column_index(&self, column: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "column {column:?} not found; text table {:?} has columns {:?}",
                    self.names.name, self.columns
                ))
            })
    }

    /// `"fts" MATCH` or `"fts"."column" MATCH`.
    fn match_target(&self, column: Option<&str>) -> Result<String> {
        let fts = ident(&self.names.fts);
        Ok(match column {
            Some(column) => {
                self.column_index(column)?;
                format!("{fts}.{}", ident(column))
            }
            None => fts,
        })
    }

    /// The `k` best documents matching `query`, best first.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown column, a snippet of 0 or over
    /// [`MAX_SNIPPET_TOKENS`] tokens, or (in [`QueryMode::Raw`]) a malformed FTS5 query;
    /// SQLite errors.
    pub fn search(
        &self,
        store: &mut Store,
        query: &str,
        options: &SearchOptions<'_>,
    ) -> Result<Vec<Hit>> {
        let target = self.match_target(options.column)?;
        let snippet_column = match options.snippet {
            Some(snippet) => {
                if snippet.tokens == 0 || snippet.tokens > MAX_SNIPPET_TOKENS {
                    return Err(Error::InvalidArgument(format!(
                        "snippets hold 1 to {MAX_SNIPPET_TOKENS} tokens, not {}",
                        snippet.tokens
                    )));
                }
                match snippet.column.or(options.column) {
                    Some(column) => Some(self.column_index(column)?),
                    None => Some(0),
                }
            }
            None => None,
        };
        let Some(fts_query) = fts5_query(query, options.mode, self.tokenizer) else {
            return Ok(Vec::new());
        };
        if options.k == 0 {
            return Ok(Vec::new());
        }
        let fts = ident(&self.names.fts);
        let mut params: Vec<Value> = vec![
            Value::Text(fts_query),
            Value::Integer(i64::try_from(options.k).unwrap_or(i64::MAX)),
            Value::Integer(i64::try_from(options.offset).unwrap_or(i64::MAX)),
        ];
        let mut select = vec![
            format!("{fts}.rowid"),
            format!("{fts}.rank"),
            "i.__value".to_string(),
            "i.__encoding".to_string(),
            "i.__metadata".to_string(),
        ];
        let param = |value: Value, params: &mut Vec<Value>| {
            params.push(value);
            format!("?{}", params.len())
        };
        match options.texts {
            TextOutput::None => {}
            TextOutput::Plain => {
                select.extend(self.columns.iter().map(|c| format!("i.{}", ident(c))));
            }
            TextOutput::Highlighted(markers) => {
                let start = param(Value::Text(markers.start.into()), &mut params);
                let end = param(Value::Text(markers.end.into()), &mut params);
                select.extend(
                    (0..self.columns.len())
                        .map(|i| format!("highlight({fts}, {i}, {start}, {end})")),
                );
            }
        }
        if let (Some(snippet), Some(column)) = (options.snippet, snippet_column) {
            let start = param(Value::Text(snippet.markers.start.into()), &mut params);
            let end = param(Value::Text(snippet.markers.end.into()), &mut params);
            let ellipsis = param(Value::Text(snippet.ellipsis.into()), &mut params);
            select.push(format!(
                "snippet({fts}, {column}, {start}, {end}, {ellipsis}, {})",
                snippet.tokens
            ));
        }
        let condition = match options.filter {
            Some(filter) if !filter.is_empty() => {
                let (sql, filter_params) = filter.sql("i.__metadata", params.len() + 1);
                params.extend(filter_params);
                format!(" AND {sql}")
            }
            _ => String::new(),
        };
        let sql = format!(
            "SELECT {} FROM {fts} CROSS JOIN {} i ON i.__id = {fts}.rowid
             WHERE {target} MATCH ?1{condition} ORDER BY {fts}.rank LIMIT ?2 OFFSET ?3",
            select.join(", "),
            ident(&self.names.items),
        );
        let with_texts = !matches!(options.texts, TextOutput::None);
        let n = self.columns.len();
        store.read(|conn| {
            self.registry(conn)?;
            let mut stmt = conn.prepare_cached(&sql)?;
            let query_text = match &params[0] {
                Value::Text(t) => t.as_str(),
                _ => "",
            };
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params.iter()))
                .map_err(|e| query_error(e, query_text))?;
            let mut hits = Vec::new();
            while let Some(row) = rows.next().map_err(|e| query_error(e, query_text))? {
                let mut texts = Vec::new();
                if with_texts {
                    for i in 0..n {
                        texts.push(row.get::<_, String>(5 + i)?);
                    }
                }
                let snippet = match snippet_column {
                    Some(_) => Some(row.get::<_, String>(5 + texts.len())?),
                    None => None,
                };
                hits.push(Hit {
                    id: row.get(0)?,
                    score: -row.get::<_, f64>(1)?,
                    value: row.get(2)?,
                    encoding: Encoding::from_i64(row.get(3)?)?,
                    metadata: row.get(4)?,
                    texts,
                    snippet,
                });
            }
            Ok(hits)
        })
    }

    /// How many documents match `query` (in `column`, accepted by `filter`).
    ///
    /// # Errors
    /// As [`TextTable::search`].
    pub fn count_matches(
        &self,
        store: &mut Store,
        query: &str,
        mode: QueryMode,
        column: Option<&str>,
        filter: Option<&Filter>,
    ) -> Result<u64> {
        let target = self.match_target(column)?;
        let Some(fts_query) = fts5_query(query, mode, self.tokenizer) else {
            return Ok(0);
        };
        let fts = ident(&self.names.fts);
        let mut params = vec![Value::Text(fts_query.clone())];
        let (join, condition) = match filter {
            Some(filter) if !filter.is_empty() => {
                let (sql, filter_params) = filter.sql("i.__metadata", 2);
                params.extend(filter_params);
                (
                    format!(
                        " CROSS JOIN {} i ON i.__id = {fts}.rowid",
                        ident(&self.names.items)
                    ),
                    format!(" AND {sql}"),
                )
            }
            _ => (String::new(), String::new()),
        };
        let sql = format!("SELECT count(*) FROM {fts}{join} WHERE {target} MATCH ?1{condition}");
        store.read(|conn| {
            self.registry(conn)?;
            count(conn, &sql, &params).map_err(|e| query_error(e, &fts_query))
        })
    }
}

fn count(conn: &Connection, sql: &str, params: &[Value]) -> rusqlite::Result<u64> {
    let n: i64 = conn
        .prepare_cached(sql)?
        .query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}
