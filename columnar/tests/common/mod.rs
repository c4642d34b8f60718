//! Helpers shared by the column test files.

// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use columnar::{Column, ReadOut, CHUNKS_TABLE};
use kvault::{Location, Store, StoreOptions};

/// A fresh in-memory store.
pub fn store() -> Store {
    Store::open(Location::Memory, StoreOptions::default()).unwrap()
}

/// `i64` values encoded as a fixed-width column stores them.
pub fn i64s(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Every element of an `i64` column.
pub fn read_i64s(store: &mut Store, col: &Column) -> Vec<i64> {
    match col.read(store, 0, u64::MAX).unwrap() {
        ReadOut::Fixed(raw) => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        ReadOut::Var { .. } => panic!("fixed column read as variable"),
    }
}

/// Elements `start..stop` of a variable-width column, one `Vec` each.
pub fn read_var(store: &mut Store, col: &Column, start: u64, stop: u64) -> Vec<Vec<u8>> {
    match col.read(store, start, stop).unwrap() {
        ReadOut::Var { ends, data } => {
            let mut prev = 0usize;
            ends.iter()
                .map(|&e| {
                    let item = data[prev..e as usize].to_vec();
                    prev = e as usize;
                    item
                })
                .collect()
        }
        ReadOut::Fixed(_) => panic!("variable column read as fixed"),
    }
}

/// Lengths of all chunk rows, in rowid order.
pub fn chunk_sizes(store: &mut Store) -> Vec<i64> {
    let conn = store.conn().unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT length(data) FROM {CHUNKS_TABLE} ORDER BY id"
        ))
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// WAL frames (4 KiB pages) that `write` adds to the log of the file store at `path`.
pub fn wal_frames_of(path: &std::path::Path, write: impl FnOnce()) -> u64 {
    let wal = path.with_extension("db-wal");
    let before = std::fs::metadata(&wal).unwrap().len();
    write();
    let after = std::fs::metadata(&wal).unwrap().len();
    (after - before) / (4096 + 24)
}

/// Deterministic pseudo-random numbers (no extra dependency).
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number below `bound`.
    pub fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}
