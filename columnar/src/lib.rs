//! # columnar: ambervault's typed, growable columns
//!
//! Named columns of fixed-width elements (`i8` ... `u64`, `f32`, `f64`, `bool`, `bytes:N`) or
//! variable-width ones (`bytes`, `str`), stored as chunk rows in the same SQLite file as the
//! key-value store and operated on through the same [`kvault::Store`] (one connection, one
//! transaction can span both). Chunks grow from `min_chunk` to `max_chunk` bytes; elements may
//! span chunk boundaries; appends write only the tail chunk.
//!
//! ```
//! use columnar::{ChunkPlan, Columns, DType, Elements, ReadOut};
//! use kvault::Store;
//!
//! # fn main() -> columnar::Result<()> {
//! let mut store = Store::open_in_memory()?;
//! let plan = ChunkPlan::new(128 << 10, 16 << 20)?;
//! let temps = Columns::create(&mut store, "temps", DType::F64, plan)?;
//! let raw: Vec<u8> = [23.5f64, 24.1, 25.0].iter().flat_map(|v| v.to_le_bytes()).collect();
//! Columns::append(&mut store, temps.id, "temps", Elements::Fixed(&raw))?;
//! let ReadOut::Fixed(bytes) = Columns::read(&mut store, temps.id, "temps", 1, 2)? else {
//!     unreachable!()
//! };
//! assert_eq!(f64::from_le_bytes(bytes.try_into().unwrap()), 24.1);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod block_cache;
mod column;
mod dtype;
mod error;
mod stream;

pub use column::{
    ColumnMeta, Columns, Elements, ReadOut, COLUMNS_TABLE, INDEX_TAIL_BYTES, TAIL_BYTES,
};
pub use dtype::{DType, ACCEPTED_DTYPES, MAX_FIXED_BYTES};
pub use error::{Error, Result};
pub use stream::{ChunkPlan, Stream, StreamReader, CHUNKS_TABLE, MAX_CHUNK_BYTES, MAX_ROW_BYTES};
