//! Compressed columns: random operations against a model with `check()` after each, point
//! reads touching one chunk, settings changed on a full column, and handles that opened the
//! column before it was compressed.

mod common;

use columnar::{ChunkPlan, Column, DType, Elements, ReadOut, CHUNKS_TABLE, PACKED_TABLE};
use common::{i64s, read_i64s, read_var, store, Lcg};
use kvault::codec::Compression;
use kvault::{Store, StoreOptions};

fn zstd() -> Option<Compression> {
    Compression::parse("zstd").unwrap()
}

fn packed_rows(s: &mut Store) -> Vec<(i64, i64)> {
    let conn = s.conn().unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT codec, length(data) FROM {PACKED_TABLE} ORDER BY id"
        ))
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A slowly varying sensor signal, as integers (a realistic timeseries).
fn signal(n: usize, phase: usize) -> Vec<i64> {
    (0..n)
        .map(|i| ((((i + phase) as f64) * 0.002).sin() * 1000.0) as i64 + (i % 3) as i64)
        .collect()
}

#[test]
fn compressed_fixed_column_matches_a_vec_under_random_operations() {
    for setting in ["zstd", "lz4", "pco"] {
        let mut s = store();
        let col =
            Column::create(&mut s, "n", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
        col.set_compression(&mut s, Compression::parse(setting).unwrap())
            .unwrap();
        let mut model: Vec<i64> = Vec::new();
        let mut rng = Lcg(3);
        for step in 0..300 {
            let len = model.len() as u64;
            match rng.next(6) {
                0..=2 => {
                    let values = signal(rng.next(200) as usize, step);
                    col.append(&mut s, Elements::Fixed(&i64s(&values))).unwrap();
                    model.extend(values);
                }
                3 if len > 0 => {
                    let i = rng.next(len);
                    col.set(&mut s, i, Elements::Fixed(&i64s(&[-7]))).unwrap();
                    model[i as usize] = -7;
                }
                4 => {
                    let at = rng.next(len + 1);
                    let values = signal(rng.next(30) as usize + 1, 5);
                    col.insert(&mut s, at, Elements::Fixed(&i64s(&values)))
                        .unwrap();
                    model.splice(at as usize..at as usize, values);
                }
                _ if len > 0 => {
                    let a = rng.next(len);
                    let b = (a + rng.next(90)).min(len);
                    col.delete_range(&mut s, a, b).unwrap();
                    model.drain(a as usize..b as usize);
                }
                _ => {}
            }
            assert_eq!(read_i64s(&mut s, &col), model, "{setting} step {step}");
            if !model.is_empty() {
                let i = rng.next(model.len() as u64);
                let ReadOut::Fixed(raw) = col.read(&mut s, i, i + 1).unwrap() else {
                    panic!()
                };
                assert_eq!(
                    i64::from_le_bytes(raw.try_into().unwrap()),
                    model[i as usize]
                );
            }
            assert_eq!(
                Column::check(&mut s).unwrap(),
                Vec::<String>::new(),
                "step {step}"
            );
        }
        let rows = packed_rows(&mut s);
        assert!(
            rows.iter().any(|&(code, len)| code != 0 && len < 512),
            "{rows:?}"
        );
    }
}

#[test]
fn compressed_variable_column_matches_a_vec_under_random_operations() {
    let mut s = store();
    let col = Column::create(&mut s, "b", DType::Str, ChunkPlan::new(64, 1024).unwrap()).unwrap();
    col.set_compression(&mut s, zstd()).unwrap();
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut rng = Lcg(19);
    for step in 0..300u64 {
        let len = model.len() as u64;
        let line = |rng: &mut Lcg| {
            format!(
                "{step} INFO request path=/api/v1/items/{} status=200",
                rng.next(50)
            )
            .into_bytes()
        };
        match rng.next(5) {
            0..=2 => {
                let items: Vec<Vec<u8>> = (0..rng.next(40)).map(|_| line(&mut rng)).collect();
                let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
                col.append(&mut s, Elements::Var(&refs)).unwrap();
                model.extend(items);
            }
            3 if len > 0 => {
                let i = rng.next(len);
                let new = line(&mut rng);
                col.set(&mut s, i, Elements::Var(&[&new])).unwrap();
                model[i as usize] = new;
            }
            _ if len > 0 => {
                let a = rng.next(len);
                let b = (a + rng.next(10)).min(len);
                col.delete_range(&mut s, a, b).unwrap();
                model.drain(a as usize..b as usize);
            }
            _ => {}
        }
        assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model, "step {step}");
        assert_eq!(
            Column::check(&mut s).unwrap(),
            Vec::<String>::new(),
            "step {step}"
        );
    }
    assert!(packed_rows(&mut s).iter().any(|&(code, _)| code != 0));
}

#[test]
fn changing_the_setting_repacks_and_keeps_the_values() {
    let mut s = store();
    let col = Column::create(
        &mut s,
        "t",
        DType::F64,
        ChunkPlan::new(4096, 65536).unwrap(),
    )
    .unwrap();
    let values: Vec<u8> = (0..200_000)
        .flat_map(|i| (((i as f64) * 0.001).sin() * 20.0 + 20.0).to_le_bytes())
        .collect();
    col.append(&mut s, Elements::Fixed(&values)).unwrap();
    let raw_rows = common::chunk_sizes(&mut s).len();
    col.set_compression(&mut s, zstd()).unwrap();
    let stored: i64 = packed_rows(&mut s).iter().map(|r| r.1).sum();
    // Full-precision floats: the shuffled sign, exponent and high mantissa bytes compress.
    assert!(
        stored * 10 < values.len() as i64 * 9,
        "{stored} of {}",
        values.len()
    );
    assert!(common::chunk_sizes(&mut s).len() < raw_rows);
    let ReadOut::Fixed(back) = col.read(&mut s, 0, u64::MAX).unwrap() else {
        panic!()
    };
    assert_eq!(back, values);
    col.set_compression(&mut s, Compression::parse("lz4").unwrap())
        .unwrap();
    assert!(packed_rows(&mut s)
        .iter()
        .all(|&(code, _)| code & 0xff == 2));
    col.set_compression(&mut s, None).unwrap();
    assert!(packed_rows(&mut s).is_empty());
    let ReadOut::Fixed(back) = col.read(&mut s, 0, u64::MAX).unwrap() else {
        panic!()
    };
    assert_eq!(back, values);
    assert_eq!(Column::check(&mut s).unwrap(), Vec::<String>::new());
    assert!(col.meta(&mut s).unwrap().compression.is_none());
}

#[test]
fn a_handle_from_before_compression_reads_and_writes_packed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let open = || {
        Store::open(
            kvault::Location::File(path.clone()),
            StoreOptions::default(),
        )
        .unwrap()
    };
    let mut first = open();
    let col = Column::create(
        &mut first,
        "n",
        DType::I64,
        ChunkPlan::new(512, 4096).unwrap(),
    )
    .unwrap();
    let mut model = signal(5000, 0);
    col.append(&mut first, Elements::Fixed(&i64s(&model)))
        .unwrap();
    let mut second = open();
    let other = Column::find(&mut second, "n").unwrap().unwrap();
    other.set_compression(&mut second, zstd()).unwrap();
    drop(second);
    // The first store's handle reads, then writes into a packed chunk and appends.
    assert_eq!(read_i64s(&mut first, &col), model);
    col.set(&mut first, 10, Elements::Fixed(&i64s(&[42])))
        .unwrap();
    model[10] = 42;
    let more = signal(3000, 9);
    col.append(&mut first, Elements::Fixed(&i64s(&more)))
        .unwrap();
    model.extend(more);
    assert_eq!(read_i64s(&mut first, &col), model);
    assert_eq!(Column::check(&mut first).unwrap(), Vec::<String>::new());
    assert!(!packed_rows(&mut first).is_empty());
}

#[test]
fn damaged_packed_chunks_are_reported_and_never_returned() {
    let mut s = store();
    let col = Column::create(&mut s, "n", DType::I64, ChunkPlan::new(512, 512).unwrap()).unwrap();
    col.set_compression(&mut s, zstd()).unwrap();
    col.append(&mut s, Elements::Fixed(&i64s(&signal(2000, 0))))
        .unwrap();
    s.conn()
        .unwrap()
        .execute_batch(&format!(
            "UPDATE {PACKED_TABLE} SET data = substr(data, 1, 5) WHERE id = (SELECT min(id) FROM {PACKED_TABLE})"
        ))
        .unwrap();
    assert!(col.read(&mut s, 0, 10).is_err());
    // A long read (whole chunks decompressed in parallel) reports it too.
    assert!(col.read(&mut s, 0, 2000).is_err());
    let problems = Column::check(&mut s).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("does not decompress")),
        "{problems:?}"
    );
}

#[test]
fn bad_settings_change_nothing() {
    let mut s = store();
    let col = Column::create(&mut s, "n", DType::I64, ChunkPlan::new(512, 512).unwrap()).unwrap();
    col.append(&mut s, Elements::Fixed(&i64s(&signal(2000, 0))))
        .unwrap();
    let mut bad = zstd().unwrap();
    bad.min_saving = -0.5;
    assert!(col.set_compression(&mut s, Some(bad)).is_err());
    assert!(col.meta(&mut s).unwrap().compression.is_none());
    assert!(packed_rows(&mut s).is_empty());
}

#[test]
fn long_reads_mix_packed_and_plain_chunks_and_partial_ends() {
    // Noise does not compress: its chunks are packed with code 0 (as they are), so one can be
    // moved back to the plain table by SQL, as a handle from before compression would leave it.
    let mut s = store();
    let col = Column::create(&mut s, "n", DType::I64, ChunkPlan::new(512, 512).unwrap()).unwrap();
    col.set_compression(&mut s, zstd()).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut values: Vec<i64> = signal(3000, 0);
    values.extend((0..3000).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as i64
    }));
    col.append(&mut s, Elements::Fixed(&i64s(&values))).unwrap();
    let conn = s.conn().unwrap();
    let moved: i64 = conn
        .query_row(
            &format!("SELECT id FROM {PACKED_TABLE} WHERE codec = 0 ORDER BY id LIMIT 1 OFFSET 5"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO {CHUNKS_TABLE} (id, data) SELECT id, data FROM {PACKED_TABLE} WHERE id = {moved};
         DELETE FROM {PACKED_TABLE} WHERE id = {moved};"
    ))
    .unwrap();
    assert_eq!(read_i64s(&mut s, &col), values);
    for (a, b) in [(3, 5997), (64, 6000), (0, 4000), (1000, 5000)] {
        let ReadOut::Fixed(raw) = col.read(&mut s, a, b).unwrap() else {
            panic!()
        };
        assert_eq!(raw, i64s(&values[a as usize..b as usize]), "{a}..{b}");
    }
}
