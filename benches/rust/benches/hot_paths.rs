//! Micro-benchmarks of the hot paths: `cargo bench -p ambervault-bench`.

use columnar::{ChunkPlan, Column, DType, Elements};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kvault::{Kv, StoreOptions};

fn kv(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Kv::open_with(
        dir.path().join("b.db"),
        StoreOptions::default(),
        "kvault",
        1 << 20,
    )
    .unwrap();
    let keys: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    for k in &keys {
        vault.put(k, &[7u8; 100]).unwrap();
    }
    let mut i = 0usize;
    c.bench_function("kv get 100B", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(vault.get(&keys[i]).unwrap());
        });
    });
    c.bench_function("kv put 100B (durable, WAL NORMAL)", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            vault.put(&keys[i], &[9u8; 100]).unwrap();
        });
    });
    let big = vec![3u8; 1 << 20];
    c.bench_function("kv put 1MiB", |b| {
        b.iter(|| vault.put(b"big", &big).unwrap())
    });
    c.bench_function("kv get 1MiB", |b| {
        b.iter(|| black_box(vault.get(b"big").unwrap()))
    });
}

fn columns(c: &mut Criterion) {
    let mut store = kvault::Store::open_in_memory().unwrap();
    let plan = ChunkPlan::new(128 << 10, 16 << 20).unwrap();
    let col = Column::create(&mut store, "x", DType::F64, plan).unwrap();
    let raw: Vec<u8> = (0..1_000_000u64)
        .flat_map(|v| (v as f64).to_le_bytes())
        .collect();
    col.append(&mut store, Elements::Fixed(&raw)).unwrap();
    let mut i = 0u64;
    c.bench_function("column point read (1M f64)", |b| {
        b.iter(|| {
            i = (i + 7919) % 1_000_000;
            black_box(col.read(&mut store, i, i + 1).unwrap());
        });
    });
    c.bench_function("column append f64", |b| {
        b.iter(|| {
            col.append(&mut store, Elements::Fixed(&1.5f64.to_le_bytes()))
                .unwrap()
        });
    });
    c.bench_function("column 1000-element window", |b| {
        b.iter(|| {
            i = (i + 7919) % 900_000;
            black_box(col.read(&mut store, i, i + 1000).unwrap());
        });
    });
}

/// The paths a file changes: durable appends (one page through the column's tail) and bulk
/// extends (the WAL written in large pieces).
fn columns_on_file(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = kvault::Store::open(
        kvault::Location::File(dir.path().join("c.db")),
        StoreOptions::default(),
    )
    .unwrap();
    let plan = ChunkPlan::new(128 << 10, 16 << 20).unwrap();
    let col = Column::create(&mut store, "x", DType::F64, plan).unwrap();
    let log = Column::create(&mut store, "log", DType::Str, plan).unwrap();
    c.bench_function("column append f64 (durable file, WAL NORMAL)", |b| {
        b.iter(|| {
            col.append(&mut store, Elements::Fixed(&2.5f64.to_le_bytes()))
                .unwrap()
        });
    });
    let line = b"2026-11-22T07:00:00Z worker=3 event=done elapsed_ms=17";
    c.bench_function("column append log line (durable file, WAL NORMAL)", |b| {
        b.iter(|| log.append(&mut store, Elements::Var(&[line])).unwrap());
    });
    let raw: Vec<u8> = (0..1_000_000u64)
        .flat_map(|v| (v as f64).to_le_bytes())
        .collect();
    let mut group = c.benchmark_group("bulk");
    group.sample_size(20);
    group.bench_function("column extend 1M f64 (file)", |b| {
        b.iter(|| col.append(&mut store, Elements::Fixed(&raw)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, kv, columns, columns_on_file);
criterion_main!(benches);
