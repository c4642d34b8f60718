//! Chunk planning: chunk growth, elements addressed across chunk boundaries, and the
//! row cap new columns get (and older plans keep).

mod common;

use columnar::{ChunkPlan, Column, DType, Elements, ReadOut, MAX_ROW_BYTES};
use common::{chunk_sizes, i64s, read_i64s, read_var, store};

#[test]
fn chunks_start_small_and_double_to_the_cap() {
    let mut s = store();
    let col = Column::create(&mut s, "x", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
    col.append(&mut s, Elements::Fixed(&i64s(&[1]))).unwrap();
    // A tiny column has no chunk yet: its bytes are in its metadata row's tail.
    assert_eq!(chunk_sizes(&mut s), Vec::<i64>::new());
    let values: Vec<i64> = (0..300).collect();
    col.append(&mut s, Elements::Fixed(&i64s(&values))).unwrap();
    // 301 * 8 = 2408 bytes: 64 + 128 + 256 + 512 + 512 + 512 + 512 = 2496
    assert_eq!(chunk_sizes(&mut s), vec![64, 128, 256, 512, 512, 512, 512]);
    let mut expected = vec![1];
    expected.extend(values);
    assert_eq!(read_i64s(&mut s, &col), expected);
}

#[test]
fn elements_spanning_chunk_boundaries_read_back_exactly() {
    let mut s = store();
    // 10-byte elements in chunks of 16, 32, 64: most elements straddle a boundary.
    let col = Column::create(
        &mut s,
        "h",
        DType::FixedBytes(10),
        ChunkPlan::new(16, 64).unwrap(),
    )
    .unwrap();
    let raw: Vec<u8> = (0..1000u32)
        .flat_map(|i| {
            let mut e = [0u8; 10];
            e[..4].copy_from_slice(&i.to_le_bytes());
            e[9] = (i % 251) as u8;
            e
        })
        .collect();
    col.append(&mut s, Elements::Fixed(&raw)).unwrap();
    for (start, stop) in [
        (0u64, 1u64),
        (1, 2),
        (5, 9),
        (99, 1000),
        (999, 1000),
        (0, 1000),
    ] {
        let ReadOut::Fixed(got) = col.read(&mut s, start, stop).unwrap() else {
            panic!()
        };
        assert_eq!(
            got,
            raw[start as usize * 10..stop as usize * 10],
            "{start}..{stop}"
        );
    }
    let var = Column::create(&mut s, "v", DType::Bytes, ChunkPlan::new(16, 64).unwrap()).unwrap();
    let items: Vec<Vec<u8>> = (0..200usize)
        .map(|i| vec![(i % 256) as u8; i % 150])
        .collect();
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    var.append(&mut s, Elements::Var(&refs)).unwrap();
    assert_eq!(read_var(&mut s, &var, 0, 200), items);
    assert_eq!(read_var(&mut s, &var, 37, 41), items[37..41].to_vec());
}

#[test]
fn chunk_rows_are_capped_however_large_max_chunk_is() {
    // Deep offsets in big rows are slow to reach (SQLite walks the overflow chain), so new
    // columns store rows of at most MAX_ROW_BYTES whatever max_chunk asks for.
    let mut s = store();
    let plan = ChunkPlan::new(16 << 10, 16 << 20).unwrap();
    let col = Column::create(&mut s, "big", DType::I64, plan).unwrap();
    let meta = col.meta(&mut s).unwrap();
    assert_eq!(meta.plan.max(), MAX_ROW_BYTES);
    let values: Vec<i64> = (0..100_000).collect();
    col.append(&mut s, Elements::Fixed(&i64s(&values))).unwrap();
    let sizes = chunk_sizes(&mut s);
    assert!(
        sizes.iter().all(|&n| n as u64 <= MAX_ROW_BYTES),
        "{sizes:?}"
    );
    assert!(sizes.iter().sum::<i64>() >= 800_000);
    assert_eq!(read_i64s(&mut s, &col), values);
    // The stored plan is what later opens use.
    let found = Column::find(&mut s, "big")
        .unwrap()
        .unwrap()
        .meta(&mut s)
        .unwrap();
    assert_eq!(found.plan, meta.plan);
}

#[test]
fn columns_stored_with_large_chunks_keep_working() {
    // Files may hold columns whose stored plan has chunks larger than today's cap: the plan in
    // the file is authoritative, so they read and grow as before.
    let mut s = store();
    let col = Column::create(&mut s, "old", DType::I64, ChunkPlan::new(64, 64).unwrap()).unwrap();
    s.conn()
        .unwrap()
        .execute(
            "UPDATE ambervault_columns SET min_chunk = 1024, max_chunk = 4194304",
            [],
        )
        .unwrap();
    let mut model: Vec<i64> = Vec::new();
    for round in 0..5 {
        let batch: Vec<i64> = (0..40_000).map(|i| i * 7 + round).collect();
        col.append(&mut s, Elements::Fixed(&i64s(&batch))).unwrap();
        model.extend(&batch);
    }
    assert!(chunk_sizes(&mut s)
        .iter()
        .any(|&n| n as u64 > MAX_ROW_BYTES));
    assert_eq!(read_i64s(&mut s, &col), model);
    col.set(&mut s, 150_001, Elements::Fixed(&i64s(&[-1])))
        .unwrap();
    model[150_001] = -1;
    assert_eq!(read_i64s(&mut s, &col), model);
}
