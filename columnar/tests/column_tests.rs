//! Column behaviour through the public Rust API: chunk growth, element addressing across chunk
//! boundaries, middle operations on fixed and variable columns against a `Vec` model, metadata
//! operations, and persistence.

use columnar::{
    ChunkPlan, Columns, DType, Elements, Error, ReadOut, CHUNKS_TABLE, COLUMNS_TABLE,
    INDEX_TAIL_BYTES, MAX_ROW_BYTES, TAIL_BYTES,
};
use kvault::{Location, Store, StoreOptions};

fn store() -> Store {
    Store::open(Location::Memory, StoreOptions::default()).unwrap()
}

fn i64s(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn read_i64s(store: &mut Store, id: i64, name: &str) -> Vec<i64> {
    match Columns::read(store, id, name, 0, u64::MAX).unwrap() {
        ReadOut::Fixed(raw) => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        ReadOut::Var { .. } => panic!("fixed column read as variable"),
    }
}

fn read_var(store: &mut Store, id: i64, name: &str, start: u64, stop: u64) -> Vec<Vec<u8>> {
    match Columns::read(store, id, name, start, stop).unwrap() {
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

fn chunk_sizes(store: &mut Store) -> Vec<i64> {
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
fn wal_frames_of(path: &std::path::Path, write: impl FnOnce()) -> u64 {
    let wal = path.with_extension("db-wal");
    let before = std::fs::metadata(&wal).unwrap().len();
    write();
    let after = std::fs::metadata(&wal).unwrap().len();
    (after - before) / (4096 + 24)
}

/// Deterministic pseudo-random numbers (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

#[test]
fn chunks_start_small_and_double_to_the_cap() {
    let mut s = store();
    let col = Columns::create(&mut s, "x", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
    Columns::append(&mut s, col.id, "x", Elements::Fixed(&i64s(&[1]))).unwrap();
    // A tiny column has no chunk yet: its bytes are in its metadata row's tail.
    assert_eq!(chunk_sizes(&mut s), Vec::<i64>::new());
    let values: Vec<i64> = (0..300).collect();
    Columns::append(&mut s, col.id, "x", Elements::Fixed(&i64s(&values))).unwrap();
    // 301 * 8 = 2408 bytes: 64 + 128 + 256 + 512 + 512 + 512 + 512 = 2496
    assert_eq!(chunk_sizes(&mut s), vec![64, 128, 256, 512, 512, 512, 512]);
    let mut expected = vec![1];
    expected.extend(values);
    assert_eq!(read_i64s(&mut s, col.id, "x"), expected);
}

#[test]
fn elements_spanning_chunk_boundaries_read_back_exactly() {
    let mut s = store();
    // 10-byte elements in chunks of 16, 32, 64: most elements straddle a boundary.
    let col = Columns::create(
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
    Columns::append(&mut s, col.id, "h", Elements::Fixed(&raw)).unwrap();
    for (start, stop) in [
        (0u64, 1u64),
        (1, 2),
        (5, 9),
        (99, 1000),
        (999, 1000),
        (0, 1000),
    ] {
        let ReadOut::Fixed(got) = Columns::read(&mut s, col.id, "h", start, stop).unwrap() else {
            panic!()
        };
        assert_eq!(
            got,
            raw[start as usize * 10..stop as usize * 10],
            "{start}..{stop}"
        );
    }
    let var = Columns::create(&mut s, "v", DType::Bytes, ChunkPlan::new(16, 64).unwrap()).unwrap();
    let items: Vec<Vec<u8>> = (0..200usize)
        .map(|i| vec![(i % 256) as u8; i % 150])
        .collect();
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    Columns::append(&mut s, var.id, "v", Elements::Var(&refs)).unwrap();
    assert_eq!(read_var(&mut s, var.id, "v", 0, 200), items);
    assert_eq!(
        read_var(&mut s, var.id, "v", 37, 41),
        items[37..41].to_vec()
    );
}

#[test]
fn fixed_column_matches_a_vec_under_random_operations() {
    let mut s = store();
    let col = Columns::create(&mut s, "n", DType::I64, ChunkPlan::new(16, 128).unwrap()).unwrap();
    let mut model: Vec<i64> = Vec::new();
    let mut rng = Lcg(7);
    for step in 0..400 {
        let len = model.len() as u64;
        match rng.next(6) {
            0 | 1 => {
                let values: Vec<i64> = (0..rng.next(20))
                    .map(|_| rng.next(1000) as i64 - 500)
                    .collect();
                Columns::append(&mut s, col.id, "n", Elements::Fixed(&i64s(&values))).unwrap();
                model.extend(values);
            }
            2 if len > 0 => {
                let i = rng.next(len);
                let v = step as i64;
                Columns::set(&mut s, col.id, "n", i, Elements::Fixed(&i64s(&[v]))).unwrap();
                model[i as usize] = v;
            }
            3 => {
                let at = rng.next(len + 1);
                let values: Vec<i64> = (0..rng.next(4) + 1)
                    .map(|k| -(step as i64) - k as i64)
                    .collect();
                Columns::insert(&mut s, col.id, "n", at, Elements::Fixed(&i64s(&values))).unwrap();
                model.splice(at as usize..at as usize, values);
            }
            4 if len > 0 => {
                let a = rng.next(len);
                let b = (a + rng.next(5)).min(len);
                Columns::delete_range(&mut s, col.id, "n", a, b).unwrap();
                model.drain(a as usize..b as usize);
            }
            _ if len > 0 => {
                let i = rng.next(len);
                let ReadOut::Fixed(raw) = Columns::pop(&mut s, col.id, "n", i).unwrap() else {
                    panic!()
                };
                assert_eq!(
                    i64::from_le_bytes(raw.try_into().unwrap()),
                    model.remove(i as usize)
                );
            }
            _ => {}
        }
        assert_eq!(read_i64s(&mut s, col.id, "n"), model, "step {step}");
        let meta = Columns::meta(&mut s, col.id, "n").unwrap();
        assert_eq!(meta.len, model.len() as u64);
        let plan = ChunkPlan::new(16, 128).unwrap();
        assert_eq!(meta.data_bytes, meta.len * 8);
        assert!(meta.tail.len() as u64 <= TAIL_BYTES);
        // The chunks hold exactly the bytes before the tail.
        assert_eq!(
            chunk_sizes(&mut s).len() as u64,
            plan.chunks_for(meta.data_bytes - meta.tail.len() as u64)
        );
        assert_eq!(Columns::check(&mut s).unwrap(), Vec::<String>::new());
    }
}

#[test]
fn variable_column_matches_a_vec_under_random_operations() {
    let mut s = store();
    let col = Columns::create(&mut s, "b", DType::Bytes, ChunkPlan::new(16, 256).unwrap()).unwrap();
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut rng = Lcg(11);
    for step in 0..400u64 {
        let len = model.len() as u64;
        let item = |rng: &mut Lcg| vec![(step % 256) as u8; rng.next(60) as usize];
        match rng.next(5) {
            0 | 1 => {
                let items: Vec<Vec<u8>> = (0..rng.next(6)).map(|_| item(&mut rng)).collect();
                let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
                Columns::append(&mut s, col.id, "b", Elements::Var(&refs)).unwrap();
                model.extend(items);
            }
            2 if len > 0 => {
                let i = rng.next(len);
                let new = item(&mut rng);
                Columns::set(&mut s, col.id, "b", i, Elements::Var(&[&new])).unwrap();
                model[i as usize] = new;
            }
            3 => {
                let at = rng.next(len + 1);
                let new = item(&mut rng);
                Columns::insert(&mut s, col.id, "b", at, Elements::Var(&[&new])).unwrap();
                model.insert(at as usize, new);
            }
            _ if len > 0 => {
                let a = rng.next(len);
                let b = (a + rng.next(4)).min(len);
                Columns::delete_range(&mut s, col.id, "b", a, b).unwrap();
                model.drain(a as usize..b as usize);
            }
            _ => {}
        }
        assert_eq!(
            read_var(&mut s, col.id, "b", 0, u64::MAX),
            model,
            "step {step}"
        );
        let meta = Columns::meta(&mut s, col.id, "b").unwrap();
        assert_eq!(
            meta.data_bytes,
            model.iter().map(|m| m.len() as u64).sum::<u64>()
        );
        assert!(meta.tail.len() as u64 <= TAIL_BYTES);
        assert!(meta.index_tail.len() as u64 <= INDEX_TAIL_BYTES);
        assert_eq!(
            Columns::check(&mut s).unwrap(),
            Vec::<String>::new(),
            "step {step}"
        );
    }
}

#[test]
fn metadata_operations() {
    let mut s = store();
    let plan = ChunkPlan::new(128 << 10, 16 << 20).unwrap();
    let a = Columns::create(&mut s, "a", DType::F64, plan).unwrap();
    assert!(matches!(
        Columns::create(&mut s, "a", DType::I64, plan),
        Err(Error::ColumnExists(_))
    ));
    Columns::create(&mut s, "b", DType::Str, plan).unwrap();
    Columns::rename(&mut s, "a", "c").unwrap();
    assert_eq!(Columns::find(&mut s, "c").unwrap().unwrap().id, a.id);
    assert!(Columns::find(&mut s, "a").unwrap().is_none());
    assert!(matches!(
        Columns::rename(&mut s, "c", "b"),
        Err(Error::ColumnExists(_))
    ));
    assert!(matches!(
        Columns::rename(&mut s, "zz", "y"),
        Err(Error::ColumnNotFound(_))
    ));
    let names: Vec<String> = Columns::list(&mut s)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, vec!["b", "c"]);
    Columns::append(&mut s, a.id, "c", Elements::Fixed(&1.5f64.to_le_bytes())).unwrap();
    assert!(Columns::delete(&mut s, "c").unwrap());
    assert!(!Columns::delete(&mut s, "c").unwrap());
    assert!(chunk_sizes(&mut s).is_empty());
    assert!(matches!(
        Columns::meta(&mut s, a.id, "c"),
        Err(Error::ColumnNotFound(_))
    ));
    assert!(matches!(
        Columns::append(&mut s, a.id, "c", Elements::Fixed(&[0; 8])),
        Err(Error::ColumnNotFound(_))
    ));
}

#[test]
fn bad_elements_write_nothing() {
    let mut s = store();
    let col = Columns::create(&mut s, "x", DType::I32, ChunkPlan::new(64, 64).unwrap()).unwrap();
    Columns::append(&mut s, col.id, "x", Elements::Fixed(&[1, 0, 0, 0])).unwrap();
    assert!(matches!(
        Columns::append(&mut s, col.id, "x", Elements::Fixed(&[1, 2, 3])),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Columns::append(&mut s, col.id, "x", Elements::Var(&[b"a"])),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Columns::set(&mut s, col.id, "x", 1, Elements::Fixed(&[0; 4])),
        Err(Error::IndexOutOfRange { index: 1, len: 1 })
    ));
    assert_eq!(Columns::meta(&mut s, col.id, "x").unwrap().len, 1);
}

#[test]
fn append_many_spans_columns_in_one_transaction() {
    let mut s = store();
    let plan = ChunkPlan::new(64, 64).unwrap();
    let t = Columns::create(&mut s, "t", DType::I64, plan).unwrap();
    let v = Columns::create(&mut s, "v", DType::Bytes, plan).unwrap();
    let lens = Columns::append_many(
        &mut s,
        &[
            (t.id, "t", Elements::Fixed(&i64s(&[1, 2]))),
            (v.id, "v", Elements::Var(&[b"a", b"b"])),
        ],
    )
    .unwrap();
    assert_eq!(lens, vec![2, 2]);
    // The second batch is malformed: the first column's part must not land either.
    let err = Columns::append_many(
        &mut s,
        &[
            (t.id, "t", Elements::Fixed(&i64s(&[3]))),
            (v.id, "v", Elements::Fixed(&[1])),
        ],
    );
    assert!(err.is_err());
    assert_eq!(Columns::meta(&mut s, t.id, "t").unwrap().len, 2);
}

#[test]
fn columns_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let id = {
        let mut s = Store::open(Location::File(path.clone()), StoreOptions::default()).unwrap();
        let col =
            Columns::create(&mut s, "x", DType::I64, ChunkPlan::new(16, 64).unwrap()).unwrap();
        Columns::append(
            &mut s,
            col.id,
            "x",
            Elements::Fixed(&i64s(&(0..100).collect::<Vec<_>>())),
        )
        .unwrap();
        col.id
    };
    let mut s = Store::open(Location::File(path), StoreOptions::default()).unwrap();
    assert_eq!(read_i64s(&mut s, id, "x"), (0..100).collect::<Vec<_>>());
}

#[test]
fn chunk_rows_are_capped_however_large_max_chunk_is() {
    // Deep offsets in big rows are slow to reach (SQLite walks the overflow chain), so new
    // columns store rows of at most MAX_ROW_BYTES whatever max_chunk asks for.
    let mut s = store();
    let plan = ChunkPlan::new(16 << 10, 16 << 20).unwrap();
    let meta = Columns::create(&mut s, "big", DType::I64, plan).unwrap();
    assert_eq!(meta.plan.max(), MAX_ROW_BYTES);
    let values: Vec<i64> = (0..100_000).collect();
    Columns::append(&mut s, meta.id, "big", Elements::Fixed(&i64s(&values))).unwrap();
    let sizes = chunk_sizes(&mut s);
    assert!(
        sizes.iter().all(|&n| n as u64 <= MAX_ROW_BYTES),
        "{sizes:?}"
    );
    assert!(sizes.iter().sum::<i64>() >= 800_000);
    assert_eq!(read_i64s(&mut s, meta.id, "big"), values);
    // The stored plan is what later opens use.
    let found = Columns::find(&mut s, "big").unwrap().unwrap();
    assert_eq!(found.plan, meta.plan);
}

#[test]
fn columns_stored_with_large_chunks_keep_working() {
    // Files may hold columns whose stored plan has chunks larger than today's cap: the plan in
    // the file is authoritative, so they read and grow as before.
    let mut s = store();
    let meta = Columns::create(&mut s, "old", DType::I64, ChunkPlan::new(64, 64).unwrap()).unwrap();
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
        Columns::append(&mut s, meta.id, "old", Elements::Fixed(&i64s(&batch))).unwrap();
        model.extend(&batch);
    }
    assert!(chunk_sizes(&mut s)
        .iter()
        .any(|&n| n as u64 > MAX_ROW_BYTES));
    assert_eq!(read_i64s(&mut s, meta.id, "old"), model);
    Columns::set(
        &mut s,
        meta.id,
        "old",
        150_001,
        Elements::Fixed(&i64s(&[-1])),
    )
    .unwrap();
    model[150_001] = -1;
    assert_eq!(read_i64s(&mut s, meta.id, "old"), model);
}

#[test]
fn slices_follow_python_rules_and_large_reads_fill_the_callers_buffer() {
    let mut s = store();
    let meta = Columns::create(&mut s, "x", DType::I64, ChunkPlan::new(64, 4096).unwrap()).unwrap();
    let values: Vec<i64> = (0..5000).collect();
    Columns::append(&mut s, meta.id, "x", Elements::Fixed(&i64s(&values))).unwrap();
    let cases: [(Option<i64>, Option<i64>); 6] = [
        (None, None),
        (Some(-10), None),
        (Some(3), Some(-3)),
        (Some(i64::MIN), Some(i64::MAX)),
        (Some(4000), Some(10)),
        (Some(-1), Some(-1)),
    ];
    for (start, stop) in cases {
        let resolve = |b: i64| -> usize {
            if b < 0 {
                (5000 + b).max(0) as usize
            } else {
                (b as usize).min(5000)
            }
        };
        let a = start.map_or(0, resolve);
        let b = stop.map_or(5000, resolve).max(a);
        let want = i64s(&values[a..b]);
        match Columns::read_slice(&mut s, meta.id, "x", start, stop).unwrap() {
            ReadOut::Fixed(raw) => assert_eq!(raw, want, "{start:?}:{stop:?}"),
            ReadOut::Var { .. } => panic!("fixed column read as variable"),
        }
        let mut sizes = Vec::new();
        let filled = Columns::read_slice_into(&mut s, meta.id, "x", start, stop, |n| {
            sizes.push(n);
            vec![0xAAu8; n]
        })
        .unwrap();
        assert_eq!(filled, want);
        assert_eq!(sizes, vec![want.len()]);
        assert!(
            Columns::read_slice_upto(&mut s, meta.id, "x", start, stop, 256)
                .unwrap()
                .is_none()
                == (want.len() > 256)
        );
    }
    let var =
        Columns::create(&mut s, "v", DType::Bytes, ChunkPlan::new(64, 4096).unwrap()).unwrap();
    assert!(matches!(
        Columns::read_slice_into(&mut s, var.id, "v", None, None, |n| vec![0u8; n]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn packed_elements_append_insert_and_set_like_items() {
    let mut s = store();
    let plan = ChunkPlan::new(16, 64).unwrap();
    let meta = Columns::create(&mut s, "v", DType::Bytes, plan).unwrap();
    let items: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i % 7) * 9]).collect();
    let mut data = Vec::new();
    let mut ends = Vec::new();
    for item in &items {
        data.extend_from_slice(item);
        ends.push(data.len());
    }
    let packed = Elements::Packed {
        data: &data,
        ends: &ends,
    };
    Columns::append(&mut s, meta.id, "v", packed).unwrap();
    let mut model = items.clone();
    // The same packed elements inserted in the middle and written over a range.
    Columns::insert(&mut s, meta.id, "v", 10, packed).unwrap();
    model.splice(10..10, items.iter().cloned());
    Columns::set(&mut s, meta.id, "v", 40, packed).unwrap();
    model.splice(40..90, items.iter().cloned());
    assert_eq!(read_var(&mut s, meta.id, "v", 0, u64::MAX), model);
    // Bad ends are refused and write nothing.
    for bad in [vec![5, 3, data.len()], vec![1, 2]] {
        let err = Columns::append(
            &mut s,
            meta.id,
            "v",
            Elements::Packed {
                data: &data,
                ends: &bad,
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    assert_eq!(read_var(&mut s, meta.id, "v", 0, u64::MAX), model);
    // Packed elements do not fit a fixed-width column.
    let fixed = Columns::create(&mut s, "f", DType::I64, plan).unwrap();
    assert!(Columns::append(&mut s, fixed.id, "f", packed).is_err());
}

#[test]
fn small_appends_stay_in_the_tail_until_it_is_full() {
    let mut s = store();
    let col = Columns::create(&mut s, "t", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
    let per_tail = TAIL_BYTES / 8;
    let mut model = Vec::new();
    for v in 0..per_tail as i64 {
        Columns::append(&mut s, col.id, "t", Elements::Fixed(&i64s(&[v * 3]))).unwrap();
        model.push(v * 3);
    }
    let meta = Columns::meta(&mut s, col.id, "t").unwrap();
    assert_eq!(meta.tail.len() as u64, TAIL_BYTES);
    assert_eq!(chunk_sizes(&mut s), Vec::<i64>::new());
    // Point reads, cached reads and windows are served from the tail.
    assert_eq!(read_i64s(&mut s, col.id, "t"), model);
    let ReadOut::Fixed(raw) = Columns::read_index(&mut s, col.id, "t", -1).unwrap() else {
        panic!()
    };
    assert_eq!(raw, i64s(&[model[model.len() - 1]]));
    // One more element does not fit: the tail moves into the chunks with it.
    Columns::append(&mut s, col.id, "t", Elements::Fixed(&i64s(&[-1]))).unwrap();
    model.push(-1);
    let meta = Columns::meta(&mut s, col.id, "t").unwrap();
    assert!(meta.tail.is_empty());
    let stored: i64 = chunk_sizes(&mut s).iter().sum();
    assert!(stored as u64 >= TAIL_BYTES + 8);
    assert_eq!(read_i64s(&mut s, col.id, "t"), model);
    // The next small append starts a new tail after the sealed bytes.
    Columns::append(&mut s, col.id, "t", Elements::Fixed(&i64s(&[7, 8]))).unwrap();
    model.extend([7, 8]);
    assert_eq!(read_i64s(&mut s, col.id, "t"), model);
    let ReadOut::Fixed(raw) =
        Columns::read(&mut s, col.id, "t", per_tail - 2, per_tail + 3).unwrap()
    else {
        panic!()
    };
    assert_eq!(raw, i64s(&model[per_tail as usize - 2..]));
    assert_eq!(Columns::check(&mut s).unwrap(), Vec::<String>::new());
}

#[test]
fn writes_other_than_appends_move_the_tail_into_the_chunks_first() {
    let mut s = store();
    let col = Columns::create(&mut s, "w", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
    let mut model: Vec<i64> = (0..10).collect();
    Columns::append(&mut s, col.id, "w", Elements::Fixed(&i64s(&model))).unwrap();
    assert_eq!(Columns::meta(&mut s, col.id, "w").unwrap().tail.len(), 80);
    Columns::set(&mut s, col.id, "w", 9, Elements::Fixed(&i64s(&[99]))).unwrap();
    model[9] = 99;
    let meta = Columns::meta(&mut s, col.id, "w").unwrap();
    assert!(meta.tail.is_empty());
    assert_eq!(chunk_sizes(&mut s), vec![64, 128]);
    assert_eq!(read_i64s(&mut s, col.id, "w"), model);
    Columns::append(&mut s, col.id, "w", Elements::Fixed(&i64s(&[10, 11]))).unwrap();
    model.extend([10, 11]);
    Columns::insert(&mut s, col.id, "w", 11, Elements::Fixed(&i64s(&[-5]))).unwrap();
    model.insert(11, -5);
    Columns::append(&mut s, col.id, "w", Elements::Fixed(&i64s(&[12]))).unwrap();
    model.push(12);
    let ReadOut::Fixed(raw) = Columns::pop(&mut s, col.id, "w", 12).unwrap() else {
        panic!()
    };
    assert_eq!(raw, i64s(&[model.remove(12)]));
    Columns::append(&mut s, col.id, "w", Elements::Fixed(&i64s(&[13, 14]))).unwrap();
    model.extend([13, 14]);
    Columns::delete_range(&mut s, col.id, "w", 0, 3).unwrap();
    model.drain(0..3);
    assert_eq!(read_i64s(&mut s, col.id, "w"), model);
    assert_eq!(Columns::check(&mut s).unwrap(), Vec::<String>::new());
}

#[test]
fn a_durable_one_element_append_commits_one_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pages.db");
    let mut s = Store::open(Location::File(path.clone()), StoreOptions::default()).unwrap();
    Columns::ensure_schema(&mut s).unwrap();
    let col = Columns::create(
        &mut s,
        "p",
        DType::F64,
        ChunkPlan::new(4096, 65536).unwrap(),
    )
    .unwrap();
    // Start past the first chunk so the appends write into a partly used chunk, as usual.
    let first: Vec<u8> = (0..5000).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    Columns::append(&mut s, col.id, "p", Elements::Fixed(&first)).unwrap();
    for round in 0..3 {
        let frames = wal_frames_of(&path, || {
            for i in 0..20 {
                let v = f64::from(round * 20 + i).to_le_bytes();
                Columns::append(&mut s, col.id, "p", Elements::Fixed(&v)).unwrap();
            }
        });
        assert_eq!(frames, 20, "WAL frames for 20 appends");
    }
    // The 128th element since the last seal moves the tail: a few pages, once.
    let meta = Columns::meta(&mut s, col.id, "p").unwrap();
    assert_eq!(meta.len, 5060);
    assert_eq!(meta.tail.len(), 60 * 8);
}

#[test]
fn a_tail_that_does_not_fit_its_column_is_reported() {
    let mut s = store();
    let col = Columns::create(&mut s, "c", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
    Columns::append(&mut s, col.id, "c", Elements::Fixed(&i64s(&[1, 2]))).unwrap();
    s.conn()
        .unwrap()
        .execute(&format!("UPDATE {COLUMNS_TABLE} SET tail = x'010203'"), [])
        .unwrap();
    let problems = Columns::check(&mut s).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("3-byte tail"), "{problems:?}");
    assert!(matches!(
        Columns::read(&mut s, col.id, "c", 0, 2),
        Err(Error::Corrupted(_))
    ));
}

#[test]
fn a_columns_table_without_tails_gains_the_column_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut s = Store::open(Location::File(path.clone()), StoreOptions::default()).unwrap();
        Columns::ensure_schema(&mut s).unwrap();
        let col =
            Columns::create(&mut s, "o", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
        Columns::append(
            &mut s,
            col.id,
            "o",
            Elements::Fixed(&i64s(&(0..200).collect::<Vec<_>>())),
        )
        .unwrap();
        // As a development build before tails wrote it.
        s.conn()
            .unwrap()
            .execute_batch(&format!(
                "ALTER TABLE {COLUMNS_TABLE} DROP COLUMN tail; \
                 ALTER TABLE {COLUMNS_TABLE} DROP COLUMN index_tail;"
            ))
            .unwrap();
    }
    let mut s = Store::open(Location::File(path), StoreOptions::default()).unwrap();
    Columns::ensure_schema(&mut s).unwrap();
    let meta = Columns::find(&mut s, "o").unwrap().unwrap();
    assert_eq!(
        read_i64s(&mut s, meta.id, "o"),
        (0..200).collect::<Vec<_>>()
    );
    Columns::append(&mut s, meta.id, "o", Elements::Fixed(&i64s(&[200]))).unwrap();
    assert_eq!(
        read_i64s(&mut s, meta.id, "o"),
        (0..201).collect::<Vec<_>>()
    );
    assert_eq!(Columns::check(&mut s).unwrap(), Vec::<String>::new());
}

#[test]
fn small_variable_appends_stay_in_the_tails_until_one_is_full() {
    let mut s = store();
    let col = Columns::create(&mut s, "l", DType::Bytes, ChunkPlan::new(64, 512).unwrap()).unwrap();
    let mut model: Vec<Vec<u8>> = Vec::new();
    for i in 0..10u8 {
        let item = vec![i; 20];
        Columns::append(&mut s, col.id, "l", Elements::Var(&[&item])).unwrap();
        model.push(item);
    }
    let meta = Columns::meta(&mut s, col.id, "l").unwrap();
    assert_eq!((meta.tail.len(), meta.index_tail.len()), (200, 80));
    assert_eq!(chunk_sizes(&mut s), Vec::<i64>::new());
    assert_eq!(read_var(&mut s, col.id, "l", 0, u64::MAX), model);
    assert_eq!(read_var(&mut s, col.id, "l", 3, 5), model[3..5].to_vec());
    // Data that does not fit moves both tails into the chunks.
    let big = vec![0xAB; 900];
    Columns::append(&mut s, col.id, "l", Elements::Var(&[&big])).unwrap();
    model.push(big);
    let meta = Columns::meta(&mut s, col.id, "l").unwrap();
    assert!(meta.tail.is_empty() && meta.index_tail.is_empty());
    assert_eq!(read_var(&mut s, col.id, "l", 0, u64::MAX), model);
    // So do index entries that do not fit, even of empty elements.
    let per_index_tail = INDEX_TAIL_BYTES / 8;
    for _ in 0..per_index_tail {
        Columns::append(&mut s, col.id, "l", Elements::Var(&[b""])).unwrap();
        model.push(Vec::new());
    }
    let meta = Columns::meta(&mut s, col.id, "l").unwrap();
    assert_eq!(meta.index_tail.len() as u64, INDEX_TAIL_BYTES);
    assert!(meta.tail.is_empty());
    Columns::append(&mut s, col.id, "l", Elements::Var(&[b"last"])).unwrap();
    model.push(b"last".to_vec());
    let meta = Columns::meta(&mut s, col.id, "l").unwrap();
    assert!(meta.index_tail.is_empty());
    assert_eq!(read_var(&mut s, col.id, "l", 0, u64::MAX), model);
    // Middle operations move the tails first.
    Columns::append(&mut s, col.id, "l", Elements::Var(&[b"x", b"yz"])).unwrap();
    model.extend([b"x".to_vec(), b"yz".to_vec()]);
    Columns::set(
        &mut s,
        col.id,
        "l",
        1,
        Elements::Var(&[b"longer than before"]),
    )
    .unwrap();
    model[1] = b"longer than before".to_vec();
    let n = model.len() as u64;
    Columns::delete_range(&mut s, col.id, "l", n - 2, n - 1).unwrap();
    model.remove(model.len() - 2);
    assert_eq!(read_var(&mut s, col.id, "l", 0, u64::MAX), model);
    assert_eq!(Columns::check(&mut s).unwrap(), Vec::<String>::new());
}

#[test]
fn a_durable_one_line_append_commits_one_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.db");
    let mut s = Store::open(Location::File(path.clone()), StoreOptions::default()).unwrap();
    let col = Columns::create(
        &mut s,
        "log",
        DType::Str,
        ChunkPlan::new(4096, 65536).unwrap(),
    )
    .unwrap();
    let first: Vec<Vec<u8>> = (0..3000)
        .map(|i| format!("line {i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = first.iter().map(Vec::as_slice).collect();
    Columns::append(&mut s, col.id, "log", Elements::Var(&refs)).unwrap();
    let frames = wal_frames_of(&path, || {
        for i in 0..20 {
            let line = format!("event {i}: ok");
            Columns::append(&mut s, col.id, "log", Elements::Var(&[line.as_bytes()])).unwrap();
        }
    });
    assert_eq!(frames, 20, "WAL frames for 20 appends");
}

#[test]
fn an_index_tail_that_disagrees_with_the_data_tail_is_reported() {
    let mut s = store();
    let col = Columns::create(&mut s, "d", DType::Bytes, ChunkPlan::new(64, 512).unwrap()).unwrap();
    Columns::append(&mut s, col.id, "d", Elements::Var(&[b"abc", b"defg"])).unwrap();
    Columns::append(&mut s, col.id, "d", Elements::Var(&[&[7u8; 2000]])).unwrap();
    Columns::append(&mut s, col.id, "d", Elements::Var(&[b"hi", b"jk"])).unwrap();
    assert_eq!(Columns::check(&mut s).unwrap(), Vec::<String>::new());
    // Claim that only the last element is in the tail: its 4 bytes no longer match.
    let end = 2007u64 + 4;
    s.conn()
        .unwrap()
        .execute(
            &format!("UPDATE {COLUMNS_TABLE} SET index_tail = ?1"),
            [end.to_le_bytes().to_vec()],
        )
        .unwrap();
    let problems = Columns::check(&mut s).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("its tail starts at byte")),
        "{problems:?}"
    );
}
