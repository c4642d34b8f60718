//! # text: ambervault's text tables
//!
//! A text table holds documents of (one or more named texts, a value, optional metadata JSON)
//! in the vault file and finds them by words: SQLite's FTS5 index over the texts, ranked by
//! BM25, with a choice of tokenizer (Unicode words with diacritics folded, Porter stemming, or
//! trigrams for substring and typo-tolerant search). Plain-word queries are quoted so no input
//! is ever FTS5 syntax; raw FTS5 queries pass through, and a malformed one is an
//! `InvalidArgument`. Results can carry the texts, highlighted texts or snippets, can be paged
//! and filtered on metadata.
//!
//! A [`TextTable`] is a handle; every operation borrows the vault's [`kvault::Store`], so a
//! table's writes (rows and index together) join the vault's transactions with blobs, columns
//! and vectors.
//!
//! ```
//! use kvault::{Encoding, Vault};
//! use text::{NewDoc, SearchOptions, TextTable, Tokenizer};
//!
//! # fn main() -> kvault::Result<()> {
//! let vault = Vault::open_in_memory()?;
//! let table = vault.with(|s| {
//!     TextTable::open(s, "notes", Some((vec!["content".into()], Tokenizer::Porter)))
//! })?;
//! let doc = |text| NewDoc { texts: text, value: b"v", encoding: Encoding::RAW, metadata: None };
//! let ids = vault.with(|s| {
//!     table.insert_many(s, &[doc(&["the cats are running"]), doc(&["a quiet dog"])])
//! })?;
//! let hits = vault.with(|s| table.search(s, "cat runs", &SearchOptions::default()))?;
//! assert_eq!(hits.len(), 1);
//! assert_eq!(hits[0].id, ids[0]);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod check;
mod query;
mod schema;
mod search;
mod table;
mod tokenizer;

pub use check::TextKind;
pub use query::{fts5_query, QueryMode};
pub use schema::{text_table_names, validate_columns, Registry, MAX_COLUMNS, TABLES};
pub use search::{Hit, Markers, SearchOptions, Snippet, TextOutput, MAX_SNIPPET_TOKENS};
pub use table::{Doc, DocUpdate, NewDoc, TextTable, MAX_VALUE_BYTES};
pub use tokenizer::Tokenizer;
