//! Durability: columns survive a reopen, and a durable small append commits one page.

mod common;

use columnar::{ChunkPlan, Column, DType, Elements};
use common::{i64s, read_i64s, wal_frames_of};
use kvault::{Location, Store, StoreOptions};

#[test]
fn columns_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let col = {
        let mut s = Store::open(Location::File(path.clone()), StoreOptions::default()).unwrap();
        let col = Column::create(&mut s, "x", DType::I64, ChunkPlan::new(16, 64).unwrap()).unwrap();
        col.append(
            &mut s,
            Elements::Fixed(&i64s(&(0..100).collect::<Vec<_>>())),
        )
        .unwrap();
        col
    };
    let mut s = Store::open(Location::File(path), StoreOptions::default()).unwrap();
    assert_eq!(read_i64s(&mut s, &col), (0..100).collect::<Vec<_>>());
}

#[test]
fn a_durable_one_element_append_commits_one_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pages.db");
    let mut s = Store::open(Location::File(path.clone()), StoreOptions::default()).unwrap();
    Column::ensure_schema(&mut s).unwrap();
    let col = Column::create(
        &mut s,
        "p",
        DType::F64,
        ChunkPlan::new(4096, 65536).unwrap(),
    )
    .unwrap();
    // Start past the first chunk so the appends write into a partly used chunk, as usual.
    let first: Vec<u8> = (0..5000).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    col.append(&mut s, Elements::Fixed(&first)).unwrap();
    for round in 0..3 {
        let frames = wal_frames_of(&path, || {
            for i in 0..20 {
                let v = f64::from(round * 20 + i).to_le_bytes();
                col.append(&mut s, Elements::Fixed(&v)).unwrap();
            }
        });
        assert_eq!(frames, 20, "WAL frames for 20 appends");
    }
    // The 128th element since the last seal moves the tail: a few pages, once.
    let meta = col.meta(&mut s).unwrap();
    assert_eq!(meta.len, 5060);
    assert_eq!(meta.tail.len(), 60 * 8);
}

#[test]
fn a_durable_one_line_append_commits_one_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.db");
    let mut s = Store::open(Location::File(path.clone()), StoreOptions::default()).unwrap();
    let col = Column::create(
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
    col.append(&mut s, Elements::Var(&refs)).unwrap();
    let frames = wal_frames_of(&path, || {
        for i in 0..20 {
            let line = format!("event {i}: ok");
            col.append(&mut s, Elements::Var(&[line.as_bytes()]))
                .unwrap();
        }
    });
    assert_eq!(frames, 20, "WAL frames for 20 appends");
}
