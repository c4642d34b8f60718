//! Element operations against a `Vec` model: random middle operations on fixed and
//! variable columns, packed elements, and Python slice rules.

mod common;

use columnar::{
    ChunkPlan, Column, DType, Elements, Error, ReadOut, INDEX_TAIL_BYTES, TAIL_BYTES,
    VAR_TAIL_BYTES,
};
use common::{chunk_sizes, i64s, read_i64s, read_var, store, Lcg};

#[test]
fn fixed_column_matches_a_vec_under_random_operations() {
    let mut s = store();
    let col = Column::create(&mut s, "n", DType::I64, ChunkPlan::new(16, 128).unwrap()).unwrap();
    let mut model: Vec<i64> = Vec::new();
    let mut rng = Lcg(7);
    for step in 0..400 {
        let len = model.len() as u64;
        match rng.next(6) {
            0 | 1 => {
                let values: Vec<i64> = (0..rng.next(20))
                    .map(|_| rng.next(1000) as i64 - 500)
                    .collect();
                col.append(&mut s, Elements::Fixed(&i64s(&values))).unwrap();
                model.extend(values);
            }
            2 if len > 0 => {
                let i = rng.next(len);
                let v = step as i64;
                col.set(&mut s, i, Elements::Fixed(&i64s(&[v]))).unwrap();
                model[i as usize] = v;
            }
            3 => {
                let at = rng.next(len + 1);
                let values: Vec<i64> = (0..rng.next(4) + 1)
                    .map(|k| -(step as i64) - k as i64)
                    .collect();
                col.insert(&mut s, at, Elements::Fixed(&i64s(&values)))
                    .unwrap();
                model.splice(at as usize..at as usize, values);
            }
            4 if len > 0 => {
                let a = rng.next(len);
                let b = (a + rng.next(5)).min(len);
                col.delete_range(&mut s, a, b).unwrap();
                model.drain(a as usize..b as usize);
            }
            _ if len > 0 => {
                let i = rng.next(len);
                let ReadOut::Fixed(raw) = col.pop(&mut s, i).unwrap() else {
                    panic!()
                };
                assert_eq!(
                    i64::from_le_bytes(raw.try_into().unwrap()),
                    model.remove(i as usize)
                );
            }
            _ => {}
        }
        assert_eq!(read_i64s(&mut s, &col), model, "step {step}");
        let meta = col.meta(&mut s).unwrap();
        assert_eq!(meta.len, model.len() as u64);
        let plan = ChunkPlan::new(16, 128).unwrap();
        assert_eq!(meta.data_bytes, meta.len * 8);
        assert!(meta.tail.len() as u64 <= TAIL_BYTES);
        // The chunks hold exactly the bytes before the tail.
        assert_eq!(
            chunk_sizes(&mut s).len() as u64,
            plan.chunks_for(meta.data_bytes - meta.tail.len() as u64)
        );
        assert_eq!(Column::check(&mut s).unwrap(), Vec::<String>::new());
    }
}

#[test]
fn variable_column_matches_a_vec_under_random_operations() {
    let mut s = store();
    let col = Column::create(&mut s, "b", DType::Bytes, ChunkPlan::new(16, 256).unwrap()).unwrap();
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut rng = Lcg(11);
    for step in 0..400u64 {
        let len = model.len() as u64;
        let item = |rng: &mut Lcg| vec![(step % 256) as u8; rng.next(60) as usize];
        match rng.next(5) {
            0 | 1 => {
                let items: Vec<Vec<u8>> = (0..rng.next(6)).map(|_| item(&mut rng)).collect();
                let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
                col.append(&mut s, Elements::Var(&refs)).unwrap();
                model.extend(items);
            }
            2 if len > 0 => {
                let i = rng.next(len);
                let new = item(&mut rng);
                col.set(&mut s, i, Elements::Var(&[&new])).unwrap();
                model[i as usize] = new;
            }
            3 => {
                let at = rng.next(len + 1);
                let new = item(&mut rng);
                col.insert(&mut s, at, Elements::Var(&[&new])).unwrap();
                model.insert(at as usize, new);
            }
            _ if len > 0 => {
                let a = rng.next(len);
                let b = (a + rng.next(4)).min(len);
                col.delete_range(&mut s, a, b).unwrap();
                model.drain(a as usize..b as usize);
            }
            _ => {}
        }
        assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model, "step {step}");
        let meta = col.meta(&mut s).unwrap();
        assert_eq!(
            meta.data_bytes,
            model.iter().map(|m| m.len() as u64).sum::<u64>()
        );
        assert!(meta.tail.len() as u64 <= VAR_TAIL_BYTES);
        assert!(meta.index_tail.len() as u64 <= INDEX_TAIL_BYTES);
        assert_eq!(
            Column::check(&mut s).unwrap(),
            Vec::<String>::new(),
            "step {step}"
        );
    }
}

#[test]
fn packed_elements_append_insert_and_set_like_items() {
    let mut s = store();
    let plan = ChunkPlan::new(16, 64).unwrap();
    let col = Column::create(&mut s, "v", DType::Bytes, plan).unwrap();
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
    col.append(&mut s, packed).unwrap();
    let mut model = items.clone();
    // The same packed elements inserted in the middle and written over a range.
    col.insert(&mut s, 10, packed).unwrap();
    model.splice(10..10, items.iter().cloned());
    col.set(&mut s, 40, packed).unwrap();
    model.splice(40..90, items.iter().cloned());
    assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model);
    // Bad ends are refused and write nothing.
    for bad in [vec![5, 3, data.len()], vec![1, 2]] {
        let err = col
            .append(
                &mut s,
                Elements::Packed {
                    data: &data,
                    ends: &bad,
                },
            )
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    assert_eq!(read_var(&mut s, &col, 0, u64::MAX), model);
    // Packed elements do not fit a fixed-width column.
    let fixed = Column::create(&mut s, "f", DType::I64, plan).unwrap();
    assert!(fixed.append(&mut s, packed).is_err());
}

#[test]
fn slices_follow_python_rules_and_large_reads_fill_the_callers_buffer() {
    let mut s = store();
    let col = Column::create(&mut s, "x", DType::I64, ChunkPlan::new(64, 4096).unwrap()).unwrap();
    let values: Vec<i64> = (0..5000).collect();
    col.append(&mut s, Elements::Fixed(&i64s(&values))).unwrap();
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
        match col.read_slice(&mut s, start, stop).unwrap() {
            ReadOut::Fixed(raw) => assert_eq!(raw, want, "{start:?}:{stop:?}"),
            ReadOut::Var { .. } => panic!("fixed column read as variable"),
        }
        let mut sizes = Vec::new();
        let filled = col
            .read_slice_into(&mut s, start, stop, |n| {
                sizes.push(n);
                vec![0xAAu8; n]
            })
            .unwrap();
        assert_eq!(filled, want);
        assert_eq!(sizes, vec![want.len()]);
        assert!(
            col.read_slice_if_within(&mut s, start, stop, 256)
                .unwrap()
                .is_none()
                == (want.len() > 256)
        );
    }
    let var = Column::create(&mut s, "v", DType::Bytes, ChunkPlan::new(64, 4096).unwrap()).unwrap();
    assert!(matches!(
        var.read_slice_into(&mut s, None, None, |n| vec![0u8; n]),
        Err(Error::InvalidArgument(_))
    ));
}
