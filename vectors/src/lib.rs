//! # vectors: ambervault's vector collections
//!
//! A collection holds items of (vector, value, optional key, optional metadata JSON) in the
//! vault file and finds the nearest items to a query: exactly, with SIMD kernels in parallel,
//! or approximately through an HNSW graph (hnswlib's) that is stored in the same file and
//! caught up from the rows after a crash or another process's writes. Metadata filters select
//! by `json_extract` equality; selective ones are answered exactly.
//!
//! A [`VectorTable`] is a handle; every operation borrows the vault's [`kvault::Store`], so a
//! collection's writes join the vault's transactions with blobs and columns.
//!
//! ```
//! use kvault::{Encoding, Vault};
//! use vectors::{IndexConfig, Metric, NewItem, SearchOptions, Spec, VectorTable, VectorType};
//!
//! # fn main() -> kvault::Result<()> {
//! let vault = Vault::open_in_memory()?;
//! let spec = Spec::new(2, VectorType::F32, Metric::L2)?;
//! let table = vault.with(|s| VectorTable::open(s, "points", Some((spec, IndexConfig::default()))))?;
//! let bytes = |v: [f32; 2]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
//! let (a, b) = (bytes([0.0, 0.0]), bytes([3.0, 4.0]));
//! let item = |vector| NewItem { key: None, vector, value: b"v", encoding: Encoding::RAW, metadata: None };
//! let ids = vault.with(|s| table.insert_many(s, &[item(&a), item(&b)]))?;
//! let hits = vault.with(|s| table.search(s, &bytes([3.0, 3.0]), &SearchOptions { k: 1, ..Default::default() }))?;
//! assert_eq!(hits[0][0].id, ids[1]);
//! assert_eq!(hits[0][0].distance, 1.0);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod check;
mod cores;
mod flat;
mod hnsw;
mod kernels;
mod parts;
mod schema;
mod search;
mod spec;
mod state;
mod table;
mod topk;

pub use check::VectorsKind;
pub use kernels::Kernels;
/// Metadata filters live in `kvault`, shared with the other table kinds whose items carry
/// metadata.
pub use kvault::{Filter, FilterValue};
pub use schema::{vector_table_names, IndexConfig, IndexKind, Registry, AUTO_HNSW_MIN};
pub use search::SearchOptions;
pub use spec::{Metric, Spec, VectorType, MAX_DIMENSIONS};
pub use table::{Item, ItemUpdate, NewItem, TableInfo, VectorTable, MAX_VALUE_BYTES};
pub use topk::Hit;
