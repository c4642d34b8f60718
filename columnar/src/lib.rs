//! # columnar: ambervault's typed, growable columns
//!
//! Named columns of fixed-width elements (`i8` ... `u64`, `f32`, `f64`, `bool`, `bytes:N`) or
//! variable-width ones (`bytes`, `str`), stored as chunk rows in the same SQLite file as the
//! key-value store and operated on through the same [`kvault::Store`] (one connection, one
//! transaction can span both). Chunks grow from `min_chunk` to `max_chunk` bytes; elements may
//! span chunk boundaries; appends write only the tail chunk.
//!
//! A [`Column`] is a handle (id, name, dtype); every operation borrows the store.
//!
//! ```
//! use columnar::{ChunkPlan, Column, DType, Elements, ReadOut};
//! use kvault::Store;
//!
//! # fn main() -> columnar::Result<()> {
//! let mut store = Store::open_in_memory()?;
//! let plan = ChunkPlan::new(128 << 10, 16 << 20)?;
//! let temps = Column::create(&mut store, "temps", DType::F64, plan)?;
//! let raw: Vec<u8> = [23.5f64, 24.1, 25.0].iter().flat_map(|v| v.to_le_bytes()).collect();
//! temps.append(&mut store, Elements::Fixed(&raw))?;
//! let ReadOut::Fixed(bytes) = temps.read(&mut store, 1, 2)? else {
//!     unreachable!()
//! };
//! assert_eq!(f64::from_le_bytes(bytes.try_into().unwrap()), 24.1);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod block_cache;
mod check;
mod column;
mod dtype;
mod elements;
mod error;
mod kind;
mod meta;
mod ops;
mod packed;
mod read_cache;
mod schema;
mod slice;
mod stream;
mod tail_room;

pub use column::Column;
pub use dtype::{
    DType, FixedText, TextEncoding, VecShape, ACCEPTED_DTYPES, MAX_FIXED_BYTES, MAX_VEC_DIMS,
};
pub use elements::{Elements, ReadOut};
pub use error::{Error, Result};
pub use kind::ColumnsKind;
pub use meta::{ColumnMeta, INDEX_TAIL_BYTES, TAIL_BYTES, VAR_TAIL_BYTES};
pub use packed::{Packing, PACKED_TABLE};
pub use schema::COLUMNS_TABLE;
pub use stream::{ChunkPlan, Stream, StreamReader, CHUNKS_TABLE, MAX_CHUNK_BYTES, MAX_ROW_BYTES};
