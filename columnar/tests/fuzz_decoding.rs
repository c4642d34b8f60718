//! Property-based fuzzing of the column decoding paths: chunk addressing for any chunk plan,
//! and reading columns whose stored metadata, index offsets or chunks were damaged at random.
//! Every outcome must be a value or an error, never a panic. Run longer with
//! `PROPTEST_CASES=5000 cargo test -p columnar --test fuzz_decoding`.

use columnar::{ChunkPlan, Column, DType, Elements, ReadOut, CHUNKS_TABLE, COLUMNS_TABLE};
use kvault::Store;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn chunk_addressing_is_a_bijection(min in 1u64..5000, extra in 0u64..100_000, offset in 0u64..10_000_000) {
        let plan = ChunkPlan::new(min, min + extra).unwrap();
        let (chunk, within) = plan.locate(offset);
        prop_assert!(within < plan.capacity(chunk));
        prop_assert_eq!(plan.start(chunk) + within, offset);
        prop_assert!(plan.chunks_for(offset + 1) == chunk + 1);
    }

    #[test]
    fn damaged_variable_columns_never_panic(
        items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..30),
        damage in proptest::collection::vec((0usize..8, any::<u64>()), 1..4),
        start in 0u64..40,
        len in 0u64..40,
    ) {
        let mut store = Store::open_in_memory().unwrap();
        let plan = ChunkPlan::new(16, 128).unwrap();
        let col = Column::create(&mut store, "v", DType::Bytes, plan).unwrap();
        let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
        col.append(&mut store, Elements::Var(&refs)).unwrap();
        {
            let conn = store.conn().unwrap();
            for (kind, noise) in &damage {
                let sql = match kind {
                    // Overwrite an index entry (end offset) with arbitrary bytes.
                    0 | 1 => format!(
                        "UPDATE {CHUNKS_TABLE} SET data = randomblob(length(data)) WHERE id = {}",
                        ((col.id << 1) | 1) << 32
                    ),
                    2 => format!("UPDATE {COLUMNS_TABLE} SET length = {} WHERE col_id = {}", noise % 100, col.id),
                    3 => format!("UPDATE {COLUMNS_TABLE} SET data_bytes = {} WHERE col_id = {}", noise % 5000, col.id),
                    4 => format!("DELETE FROM {CHUNKS_TABLE} WHERE id = (SELECT max(id) FROM {CHUNKS_TABLE})"),
                    5 => format!("UPDATE {CHUNKS_TABLE} SET data = x'00' WHERE id = (SELECT min(id) FROM {CHUNKS_TABLE})"),
                    6 => format!("UPDATE {COLUMNS_TABLE} SET dtype = 'bytes:{}' WHERE col_id = {}", noise % 20, col.id),
                    _ => format!("UPDATE {COLUMNS_TABLE} SET min_chunk = {} WHERE col_id = {}", noise % 64, col.id),
                };
                conn.execute_batch(&sql).unwrap();
            }
        }
        // Any result is fine; a panic is not. Reads that succeed must be internally consistent.
        if let Ok(ReadOut::Var { ends, data }) = col.read(&mut store, start, start + len) {
            let mut previous = 0;
            for end in ends {
                prop_assert!(end >= previous && end as usize <= data.len());
                previous = end;
            }
        }
        let _ = col.read_index(&mut store, start as i64);
        let _ = col.append(&mut store, Elements::Var(&[b"more"]));
        let _ = col.delete_range(&mut store, start, start + len);
        let _ = Column::check(&mut store);
    }
}
