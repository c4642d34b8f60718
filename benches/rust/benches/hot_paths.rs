//! Micro-benchmarks of the hot paths: `cargo bench -p ambervault-bench`.

use columnar::{ChunkPlan, Columns, DType, Elements};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kvault::{StoreOptions, Vault};

fn kv(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut vault = Vault::open_with(
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
    let col = Columns::create(&mut store, "x", DType::F64, plan).unwrap();
    let raw: Vec<u8> = (0..1_000_000u64)
        .flat_map(|v| (v as f64).to_le_bytes())
        .collect();
    Columns::append(&mut store, col.id, "x", Elements::Fixed(&raw)).unwrap();
    let mut i = 0u64;
    c.bench_function("column point read (1M f64)", |b| {
        b.iter(|| {
            i = (i + 7919) % 1_000_000;
            black_box(Columns::read(&mut store, col.id, "x", i, i + 1).unwrap());
        });
    });
    c.bench_function("column append f64", |b| {
        b.iter(|| {
            Columns::append(
                &mut store,
                col.id,
                "x",
                Elements::Fixed(&1.5f64.to_le_bytes()),
            )
            .unwrap()
        });
    });
    c.bench_function("column 1000-element window", |b| {
        b.iter(|| {
            i = (i + 7919) % 900_000;
            black_box(Columns::read(&mut store, col.id, "x", i, i + 1000).unwrap());
        });
    });
}

criterion_group!(benches, kv, columns);
criterion_main!(benches);
