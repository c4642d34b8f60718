//! Tails: the last data and index bytes kept in the metadata row, moved into the chunks when
//! they fill or before other writes, and reported by the check when they do not fit.

mod common;

use columnar::{
    ChunkPlan, Column, DType, Elements, Error, ReadOut, COLUMNS_TABLE, INDEX_TAIL_BYTES,
    TAIL_BYTES, VAR_TAIL_BYTES,
};
use common::{chunk_sizes, i64s, read_i64s, read_var, store};

#[test]
fn small_appends_stay_in_the_tail_until_it_is_full() {
    let mut s = store();
    let col = Column::create(&mut s, "t", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
    let per_tail = TAIL_BYTES / 8;
    let mut model = Vec::new();
    for v in 0..per_tail as i64 {
        col.append(&mut s, Elements::Fixed(&i64s(&[v * 3])))
            .unwrap();
        model.push(v * 3);
    }
    let meta = col.meta(&mut s).unwrap();
    assert_eq!(meta.tail.len() as u64, TAIL_BYTES);
    assert_eq!(chunk_sizes(&mut s), Vec::<i64>::new());
    // Point reads, cached reads and windows are served from the tail.
    assert_eq!(read_i64s(&mut s, &col), model);
    let ReadOut::Fixed(raw) = col.read_index(&mut s, -1).unwrap() else {
        panic!()
    };
    assert_eq!(raw, i64s(&[model[model.len() - 1]]));
    // One more element does not fit: the tail moves into the chunks, and the element starts
    // the next tail.
    col.append(&mut s, Elements::Fixed(&i64s(&[-1]))).unwrap();
    model.push(-1);
    let meta = col.meta(&mut s).unwrap();
    assert_eq!(&meta.tail[..], &i64s(&[-1])[..]);
    assert_eq!(meta.data_bytes, TAIL_BYTES + 8);
    let stored: i64 = chunk_sizes(&mut s).iter().sum();
    assert!(stored as u64 >= TAIL_BYTES);
    assert_eq!(read_i64s(&mut s, &col), model);
    // Elements larger than a tail go to the chunks, after the tail.
    let large: Vec<i64> = (0..TAIL_BYTES as i64 / 8 + 1).map(|v| -v).collect();
    col.append(&mut s, Elements::Fixed(&i64s(&large))).unwrap();
    model.extend(&large);
    assert!(col.meta(&mut s).unwrap().tail.is_empty());
    assert_eq!(read_i64s(&mut s, &col), model);
    // The next small append starts a new tail after the sealed bytes.
    col.append(&mut s, Elements::Fixed(&i64s(&[7, 8]))).unwrap();
    model.extend([7, 8]);
    assert_eq!(read_i64s(&mut s, &col), model);
    let ReadOut::Fixed(raw) = col.read(&mut s, per_tail - 2, per_tail + 3).unwrap() else {
        panic!()
    };
    assert_eq!(
        raw,
        i64s(&model[per_tail as usize - 2..per_tail as usize + 3])
    );
    assert_eq!(Column::check(&mut s).unwrap(), Vec::<String>::new());
}

#[test]
fn writes_other_than_appends_move_the_tail_into_the_chunks_first() {
    let mut s = store();
    let col = Column::create(&mut s, "w", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
    let mut model: Vec<i64> = (0..10).collect();
    col.append(&mut s, Elements::Fixed(&i64s(&model))).unwrap();
    assert_eq!(col.meta(&mut s).unwrap().tail.len(), 80);
    col.set(&mut s, 9, Elements::Fixed(&i64s(&[99]))).unwrap();
    model[9] = 99;
    let meta = col.meta(&mut s).unwrap();
    assert!(meta.tail.is_empty());
    assert_eq!(chunk_sizes(&mut s), vec![64, 128]);
    assert_eq!(read_i64s(&mut s, &col), model);
    col.append(&mut s, Elements::Fixed(&i64s(&[10, 11])))
        .unwrap();
    model.extend([10, 11]);
    col.insert(&mut s, 11, Elements::Fixed(&i64s(&[-5])))
        .unwrap();
    model.insert(11, -5);
    col.append(&mut s, Elements::Fixed(&i64s(&[12]))).unwrap();
    model.push(12);
    let ReadOut::Fixed(raw) = col.pop(&mut s, 12).unwrap() else {
        panic!()
    };
    assert_eq!(raw, i64s(&[model.remove(12)]));
    col.append(&mut s, Elements::Fixed(&i64s(&[13, 14])))
        .unwrap();
    model.extend([13, 14]);
    col.delete_range(&mut s, 0, 3).unwrap();
    model.drain(0..3);
    assert_eq!(read_i64s(&mut s, &col), model);
    assert_eq!(Column::check(&mut s).unwrap(), Vec::<String>::new());
}

#[test]
fn a_tail_that_does_not_fit_its_column_is_reported() {
    let mut s = store();
    let col = Column::create(&mut s, "c", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
    col.append(&mut s, Elements::Fixed(&i64s(&[1, 2]))).unwrap();
    s.conn()
        .unwrap()
        .execute(&format!("UPDATE {COLUMNS_TABLE} SET tail = x'010203'"), [])
        .unwrap();
    let problems = Column::check(&mut s).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("3-byte tail"), "{problems:?}");
    assert!(matches!(col.read(&mut s, 0, 2), Err(Error::Corrupted(_))));
}

#[test]
fn small_variable_appends_stay_in_the_tails_until_one_is_full() {
    let mut s = store();
    let col = Column::create(&mut s, "l", DType::Bytes, ChunkPlan::new(64, 512).unwrap()).unwrap();
    let mut model: Vec<Vec<u8>> = Vec::new();
    for i in 0..10u8 {
        let item = vec![i; 20];
        col.append(&mut s, Elements::Var(&[&item])).unwrap();
        model.push(item);
    }
    let meta = col.meta(&mut s).unwrap();
    assert_eq!((meta.tail.len(), meta.index_tail.len()), (200, 80));
    assert_eq!(chunk_sizes(&mut s), Vec::<i64>::new());
    assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model);
    assert_eq!(read_var(&mut s, &col, 3, 5), model[3..5].to_vec());
    // Data that does not fit moves both tails into the chunks; the element starts the next
    // tails.
    let big = vec![0xAB; VAR_TAIL_BYTES as usize - 100];
    col.append(&mut s, Elements::Var(&[&big])).unwrap();
    model.push(big.clone());
    let meta = col.meta(&mut s).unwrap();
    assert_eq!(&meta.tail[..], &big[..]);
    assert_eq!(
        &meta.index_tail[..],
        &(200 + big.len() as u64).to_le_bytes()[..]
    );
    // 200 data bytes and 80 index bytes were sealed.
    assert_eq!(chunk_sizes(&mut s), vec![64, 128, 256, 64, 128]);
    assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model);
    // So do index entries that do not fit, even of empty elements.
    let per_index_tail = INDEX_TAIL_BYTES / 8;
    for _ in 1..per_index_tail {
        col.append(&mut s, Elements::Var(&[b""])).unwrap();
        model.push(Vec::new());
    }
    let meta = col.meta(&mut s).unwrap();
    assert_eq!(meta.index_tail.len() as u64, INDEX_TAIL_BYTES);
    assert_eq!(&meta.tail[..], &big[..]);
    col.append(&mut s, Elements::Var(&[b"last"])).unwrap();
    model.push(b"last".to_vec());
    let meta = col.meta(&mut s).unwrap();
    assert_eq!((&meta.tail[..], meta.index_tail.len()), (&b"last"[..], 8));
    assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model);
    // An element larger than a tail goes to the chunks with the tails before it.
    let huge = vec![0xCD; VAR_TAIL_BYTES as usize + 1];
    col.append(&mut s, Elements::Var(&[&huge])).unwrap();
    model.push(huge);
    let meta = col.meta(&mut s).unwrap();
    assert!(meta.tail.is_empty() && meta.index_tail.is_empty());
    assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model);
    // Middle operations move the tails first.
    col.append(&mut s, Elements::Var(&[b"x", b"yz"])).unwrap();
    model.extend([b"x".to_vec(), b"yz".to_vec()]);
    col.set(&mut s, 1, Elements::Var(&[b"longer than before"]))
        .unwrap();
    model[1] = b"longer than before".to_vec();
    let n = model.len() as u64;
    col.delete_range(&mut s, n - 2, n - 1).unwrap();
    model.remove(model.len() - 2);
    assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model);
    assert_eq!(Column::check(&mut s).unwrap(), Vec::<String>::new());
}

#[test]
fn an_index_tail_that_disagrees_with_the_data_tail_is_reported() {
    let mut s = store();
    let col = Column::create(&mut s, "d", DType::Bytes, ChunkPlan::new(64, 512).unwrap()).unwrap();
    col.append(&mut s, Elements::Var(&[b"abc", b"defg"]))
        .unwrap();
    // Larger than a tail: it goes to the chunks, with the two elements before it.
    col.append(&mut s, Elements::Var(&[&[7u8; 4000]])).unwrap();
    col.append(&mut s, Elements::Var(&[b"hi", b"jk"])).unwrap();
    assert_eq!(Column::check(&mut s).unwrap(), Vec::<String>::new());
    // Claim that only the last element is in the tail: its 4 bytes no longer match.
    let end = 4007u64 + 4;
    s.conn()
        .unwrap()
        .execute(
            &format!("UPDATE {COLUMNS_TABLE} SET index_tail = ?1"),
            [end.to_le_bytes().to_vec()],
        )
        .unwrap();
    let problems = Column::check(&mut s).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("its tail starts at byte")),
        "{problems:?}"
    );
}

#[test]
fn an_empty_overwrite_keeps_tails_and_metadata_in_step() {
    // Overwriting nothing still loads the column sealed (its tail moved into the chunks); the
    // metadata must record that, or a later write finds the tail bytes twice.
    let mut s = store();
    let col = Column::create(&mut s, "t", DType::I64, ChunkPlan::new(64, 512).unwrap()).unwrap();
    col.append(&mut s, Elements::Fixed(&i64s(&[1, 2, 3])))
        .unwrap();
    assert!(!col.meta(&mut s).unwrap().tail.is_empty());
    col.set(&mut s, 1, Elements::Fixed(&[])).unwrap();
    col.delete_range(&mut s, 0, 1).unwrap();
    col.append(&mut s, Elements::Fixed(&i64s(&[4]))).unwrap();
    assert_eq!(read_i64s(&mut s, &col), vec![2, 3, 4]);
    assert_eq!(Column::check(&mut s).unwrap(), Vec::<String>::new());
}

/// One-by-one appends of variable-width elements (the durable log-line path: one `UPDATE` that
/// writes the element's end offset from the row's own data size) match a model through many
/// moves of the tails into the chunks, as items and as packed single elements, with offsets
/// past 64 KiB so every byte of the end offsets that can be non-zero is exercised.
#[test]
fn one_by_one_variable_appends_match_a_model_across_many_tail_moves() {
    let mut s = store();
    let col = Column::create(
        &mut s,
        "log",
        DType::Bytes,
        ChunkPlan::new(64, 4096).unwrap(),
    )
    .unwrap();
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut seed = 0x9e37_79b9_u64;
    let mut next = |bound: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % bound
    };
    let mut total = 0usize;
    while total < 200_000 {
        let len = next(240) as usize;
        let item: Vec<u8> = (0..len).map(|i| (i as u64 * 7 + next(256)) as u8).collect();
        let packed = next(2) == 0;
        let new_len = if packed {
            col.append(
                &mut s,
                Elements::Packed {
                    data: &item,
                    ends: &[item.len()],
                },
            )
            .unwrap()
        } else {
            col.append(&mut s, Elements::Var(&[&item])).unwrap()
        };
        total += item.len();
        model.push(item);
        assert_eq!(new_len, model.len() as u64);
    }
    let meta = col.meta(&mut s).unwrap();
    assert_eq!(meta.data_bytes, total as u64);
    assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model);
    let n = model.len() as u64;
    assert_eq!(
        read_var(&mut s, &col, n - 40, n),
        model[model.len() - 40..].to_vec()
    );
    assert_eq!(Column::check(&mut s).unwrap(), Vec::<String>::new());
}
