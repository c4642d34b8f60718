//! Vector collections against a brute-force model: writes, exact and HNSW search, filters,
//! transactions, another connection's writes, the stored graph and `check()`.

use std::sync::Arc;

use kvault::{Encoding, KeyKind, Store, Vault};
use vectors::{
    Filter, FilterValue, IndexConfig, IndexKind, ItemUpdate, Metric, NewItem, SearchOptions, Spec,
    VectorTable, VectorType, VectorsKind,
};

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Deterministic clustered data: `n` vectors of `d` dimensions around 16 centres.
fn dataset(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..16)
        .map(|_| (0..d).map(|_| next() * 4.0).collect())
        .collect();
    (0..n)
        .map(|i| centres[i % 16].iter().map(|c| c + next()).collect())
        .collect()
}

fn brute_force(data: &[(i64, Vec<f32>)], q: &[f32], k: usize) -> Vec<i64> {
    let mut all: Vec<(f32, i64)> = data
        .iter()
        .map(|(id, x)| {
            (
                x.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                *id,
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

fn item(vector: &[u8]) -> NewItem<'_> {
    NewItem {
        key: None,
        vector,
        value: b"v",
        encoding: Encoding::RAW,
        metadata: None,
    }
}

fn open(vault: &Vault, name: &str, d: usize, kind: IndexKind) -> VectorTable {
    let spec = Spec::new(d, VectorType::F32, Metric::L2).unwrap();
    let config = IndexConfig {
        kind,
        ..IndexConfig::default()
    };
    vault
        .with(|s| VectorTable::open(s, name, Some((spec, config))))
        .unwrap()
}

/// A vault at `path` with an HNSW collection "emb" holding `data`, and the items' ids.
fn filled(path: &std::path::Path, d: usize, data: &[Vec<f32>]) -> (Vault, VectorTable, Vec<i64>) {
    let vault = Vault::open(path).unwrap();
    vault.attach(Arc::new(VectorsKind));
    let table = open(&vault, "emb", d, IndexKind::Hnsw);
    let encoded: Vec<Vec<u8>> = data.iter().map(|v| bytes(v)).collect();
    let items: Vec<NewItem<'_>> = encoded.iter().map(|v| item(v)).collect();
    let ids = vault.with(|s| table.insert_many(s, &items)).unwrap();
    (vault, table, ids)
}

fn search(vault: &Vault, table: &VectorTable, q: &[f32], options: SearchOptions<'_>) -> Vec<i64> {
    vault
        .with(|s| table.search(s, &bytes(q), &options))
        .unwrap()
        .remove(0)
        .into_iter()
        .map(|h| h.id)
        .collect()
}

#[test]
fn writes_reads_and_exact_search_follow_a_model() {
    let vault = Vault::open_in_memory().unwrap();
    let table = open(&vault, "docs", 8, IndexKind::Flat);
    let data = dataset(600, 8, 1);
    let encoded: Vec<Vec<u8>> = data.iter().map(|v| bytes(v)).collect();
    let items: Vec<NewItem<'_>> = encoded.iter().map(|v| item(v)).collect();
    let ids = vault.with(|s| table.insert_many(s, &items)).unwrap();
    assert_eq!(ids, (1..=600).collect::<Vec<i64>>());
    let mut model: Vec<(i64, Vec<f32>)> = ids.iter().copied().zip(data.clone()).collect();

    // Deletes and updates, then the same searches as the model.
    let gone: Vec<i64> = (1..=600).step_by(7).collect();
    assert_eq!(
        vault.with(|s| table.delete(s, &gone)).unwrap(),
        gone.len() as u64
    );
    model.retain(|(id, _)| !gone.contains(id));
    let moved = vec![9.0f32; 8];
    let update = ItemUpdate {
        vector: Some(&bytes(&moved)),
        ..ItemUpdate::default()
    };
    assert!(vault.with(|s| table.update(s, 2, update)).unwrap());
    assert!(
        !vault.with(|s| table.update(s, 1, update)).unwrap(),
        "1 was deleted"
    );
    model.iter_mut().find(|(id, _)| *id == 2).unwrap().1 = moved.clone();
    assert_eq!(vault.with(|s| table.count(s)).unwrap(), model.len() as u64);

    for q in dataset(20, 8, 2).iter().chain([&moved]) {
        let got = search(
            &vault,
            &table,
            q,
            SearchOptions {
                k: 10,
                ..Default::default()
            },
        );
        assert_eq!(got, brute_force(&model, q, 10));
    }
    // k beyond the count gives everything; k = 0 nothing.
    let all = search(
        &vault,
        &table,
        &moved,
        SearchOptions {
            k: 10_000,
            ..Default::default()
        },
    );
    assert_eq!(all.len(), model.len());
    assert!(search(
        &vault,
        &table,
        &moved,
        SearchOptions {
            k: 0,
            ..Default::default()
        }
    )
    .is_empty());
    let stored = vault.with(|s| table.get(s, 2)).unwrap().unwrap();
    assert_eq!(stored.vector, bytes(&moved));
    assert!(vault.with(|s| table.get(s, 1)).unwrap().is_none());
    assert!(vault.check().unwrap().is_empty());
}

#[test]
fn bad_vectors_are_refused_and_nothing_is_written() {
    let vault = Vault::open_in_memory().unwrap();
    let spec = Spec::new(3, VectorType::F32, Metric::Cosine).unwrap();
    let table = vault
        .with(|s| VectorTable::open(s, "c", Some((spec, IndexConfig::default()))))
        .unwrap();
    let good = bytes(&[1.0, 0.0, 0.0]);
    for bad in [
        bytes(&[0.0, 0.0, 0.0]),
        bytes(&[f32::NAN, 1.0, 0.0]),
        bytes(&[1.0, 2.0]),
    ] {
        let err = vault
            .with(|s| table.insert_many(s, &[item(&good), item(&bad)]))
            .unwrap_err();
        assert!(matches!(err, kvault::Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().starts_with("item 1:"), "{err}");
    }
    let bad_json = NewItem {
        metadata: Some("{not json"),
        ..item(&good)
    };
    let err = vault
        .with(|s| table.insert_many(s, &[item(&good), bad_json]))
        .unwrap_err();
    assert!(matches!(err, kvault::Error::InvalidArgument(_)), "{err}");
    assert_eq!(vault.with(|s| table.count(s)).unwrap(), 0);
    // Another spec for the same name is an error, not a reinterpretation.
    let other = Spec::new(4, VectorType::F32, Metric::Cosine).unwrap();
    assert!(vault
        .with(|s| VectorTable::open(s, "c", Some((other, IndexConfig::default()))))
        .is_err());
    assert!(vault
        .with(|s| VectorTable::open(s, "missing", None))
        .is_err());
}

#[test]
fn keys_replace_their_item_and_metadata_filters_are_exact() {
    let vault = Vault::open_in_memory().unwrap();
    let table = open(&vault, "tagged", 4, IndexKind::Hnsw);
    let data = dataset(3000, 4, 3);
    let encoded: Vec<Vec<u8>> = data.iter().map(|v| bytes(v)).collect();
    let meta: Vec<String> = (0..3000)
        .map(|i| {
            format!(
                r#"{{"lang": "{}", "n": {}}}"#,
                if i % 100 == 0 { "en" } else { "de" },
                i % 3
            )
        })
        .collect();
    let keys: Vec<Vec<u8>> = (0..3000).map(|i| format!("k{i}").into_bytes()).collect();
    let items: Vec<NewItem<'_>> = (0..3000)
        .map(|i| NewItem {
            key: Some((&keys[i], KeyKind::Str)),
            metadata: Some(&meta[i]),
            ..item(&encoded[i])
        })
        .collect();
    let ids = vault.with(|s| table.insert_many(s, &items)).unwrap();
    // Re-inserting a key replaces that item and keeps its id.
    let again = vault
        .with(|s| {
            table.insert_many(
                s,
                &[NewItem {
                    value: b"new",
                    ..items[5]
                }],
            )
        })
        .unwrap();
    assert_eq!(again, vec![ids[5]]);
    assert_eq!(vault.with(|s| table.count(s)).unwrap(), 3000);
    let found = vault.with(|s| table.get_by_key(s, b"k5")).unwrap().unwrap();
    assert_eq!((found.id, found.value.as_slice()), (ids[5], &b"new"[..]));

    // A selective filter (30 English items) returns exactly the nearest matching ones.
    let english = Filter::new(vec![("lang".into(), vec![FilterValue::Text("en".into())])]).unwrap();
    let model: Vec<(i64, Vec<f32>)> = (0..3000)
        .filter(|i| i % 100 == 0)
        .map(|i| (ids[i], data[i].clone()))
        .collect();
    for q in dataset(10, 4, 4) {
        let got = search(
            &vault,
            &table,
            &q,
            SearchOptions {
                k: 5,
                filter: Some(&english),
                ..Default::default()
            },
        );
        assert_eq!(got, brute_force(&model, &q, 5));
    }
    // `in` and AND: n in (1, 2) and lang == en.
    let both = Filter::new(vec![
        ("lang".into(), vec![FilterValue::Text("en".into())]),
        ("n".into(), vec![FilterValue::Int(1), FilterValue::Int(2)]),
    ])
    .unwrap();
    let model: Vec<(i64, Vec<f32>)> = (0..3000)
        .filter(|i| i % 100 == 0 && i % 3 != 0)
        .map(|i| (ids[i], data[i].clone()))
        .collect();
    let q = &data[100];
    let got = search(
        &vault,
        &table,
        q,
        SearchOptions {
            k: 100,
            filter: Some(&both),
            ..Default::default()
        },
    );
    assert_eq!(got, brute_force(&model, q, 100));
}

#[test]
fn the_graph_finds_what_brute_force_finds_and_is_stored_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let d = 16;
    let data = dataset(5000, d, 5);
    let queries = dataset(50, d, 6);
    let model: Vec<(i64, Vec<f32>)>;
    {
        let (vault, table, ids) = filled(&path, d, &data);
        model = ids.into_iter().zip(data.clone()).collect();
        let mut found = 0;
        for q in &queries {
            let options = SearchOptions {
                k: 10,
                ef_search: Some(128),
                ..Default::default()
            };
            let got = search(&vault, &table, q, options);
            let truth = brute_force(&model, q, 10);
            found += got.iter().filter(|id| truth.contains(id)).count();
        }
        let recall = found as f64 / (10 * queries.len()) as f64;
        assert!(recall >= 0.95, "recall@10 = {recall}");
        // The graph built by the first search was stored.
        let info = vault.with(|s| table.info(s)).unwrap();
        assert!(info.index_bytes > 0 && info.registry.index_seq == Some(info.registry.seq));
        assert!(vault.check().unwrap().is_empty());
        vault.close().unwrap();
    }
    // Reopened: the stored graph is loaded (not rebuilt) and answers like before.
    let vault = Vault::open(&path).unwrap();
    vault.attach(Arc::new(VectorsKind));
    let table = vault.with(|s| VectorTable::open(s, "emb", None)).unwrap();
    let q = &queries[0];
    let got = search(
        &vault,
        &table,
        q,
        SearchOptions {
            k: 10,
            ..Default::default()
        },
    );
    assert!(
        got.iter()
            .filter(|id| brute_force(&model, q, 10).contains(id))
            .count()
            >= 8
    );
    let info = vault.with(|s| table.info(s)).unwrap();
    assert_eq!(info.loaded, vec!["hnsw"]);
    // Damage the stored graph: check() reports it.
    vault
        .with(|s: &mut Store| {
            s.write(|c| {
                c.execute(
                    "UPDATE ambervault_vector_index SET data = zeroblob(100)",
                    [],
                )?;
                Ok(())
            })
        })
        .unwrap();
    let problems = vault.check().unwrap();
    assert!(problems.iter().any(|p| p.contains("emb")), "{problems:?}");
}

#[test]
fn another_connections_writes_are_replayed_and_rollbacks_never_reach_the_engines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let d = 4;
    let reader_vault = Vault::open(&path).unwrap();
    let writer_vault = Vault::open(&path).unwrap();
    let reader = open(&reader_vault, "t", d, IndexKind::Hnsw);
    let writer = writer_vault
        .with(|s| VectorTable::open(s, "t", None))
        .unwrap();
    let data = dataset(400, d, 7);
    let encoded: Vec<Vec<u8>> = data.iter().map(|v| bytes(v)).collect();
    let items: Vec<NewItem<'_>> = encoded.iter().map(|v| item(v)).collect();
    let ids = writer_vault
        .with(|s| writer.insert_many(s, &items[..200]))
        .unwrap();
    let q = &data[10];
    // The reader's graph is built now, then follows the writer's inserts and deletes.
    assert_eq!(
        search(
            &reader_vault,
            &reader,
            q,
            SearchOptions {
                k: 1,
                ..Default::default()
            }
        ),
        vec![ids[10]]
    );
    let more = writer_vault
        .with(|s| writer.insert_many(s, &items[200..]))
        .unwrap();
    let q2 = &data[300];
    assert_eq!(
        search(
            &reader_vault,
            &reader,
            q2,
            SearchOptions {
                k: 1,
                ..Default::default()
            }
        ),
        vec![more[100]]
    );
    writer_vault
        .with(|s| writer.delete(s, &[more[100]]))
        .unwrap();
    let after = search(
        &reader_vault,
        &reader,
        q2,
        SearchOptions {
            k: 400,
            ..Default::default()
        },
    );
    assert!(!after.contains(&more[100]));
    assert_eq!(after.len(), 399);

    // Inside a transaction the reader sees its own insert; after the rollback it is gone.
    let tx = reader_vault.transaction().unwrap();
    let probe = bytes(&[50.0, 50.0, 50.0, 50.0]);
    let new_id = reader_vault
        .with(|s| reader.insert_many(s, &[item(&probe)]))
        .unwrap()[0];
    let inside = search(
        &reader_vault,
        &reader,
        &[50.0; 4],
        SearchOptions {
            k: 1,
            ..Default::default()
        },
    );
    assert_eq!(inside, vec![new_id]);
    tx.rollback().unwrap();
    let outside = search(
        &reader_vault,
        &reader,
        &[50.0; 4],
        SearchOptions {
            k: 1,
            ..Default::default()
        },
    );
    assert_ne!(outside, vec![new_id]);
    assert!(reader_vault
        .with(|s| reader.get(s, new_id))
        .unwrap()
        .is_none());
}

#[test]
fn a_graph_stored_by_usearch_is_rebuilt_and_stored_again_in_the_current_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let d = 8;
    let data = dataset(3000, d, 11);
    let model: Vec<(i64, Vec<f32>)>;
    {
        let (vault, table, ids) = filled(&path, d, &data);
        model = ids.into_iter().zip(data.clone()).collect();
        search(&vault, &table, &data[0], SearchOptions::default());
        // Replace the stored graph by one in USearch's layout, as earlier versions wrote it:
        // a u32 row count, a u32 row width, the rows, then a header starting "usearch".
        let mut old = Vec::new();
        old.extend_from_slice(&2u32.to_le_bytes());
        old.extend_from_slice(&4u32.to_le_bytes());
        old.extend_from_slice(&[7; 8]);
        old.extend_from_slice(b"usearch");
        old.extend_from_slice(&[0; 57]);
        vault
            .with(|s: &mut Store| {
                s.write(|c| {
                    c.execute("DELETE FROM ambervault_vector_index", [])?;
                    c.execute(
                        "INSERT INTO ambervault_vector_index (name, part, data) VALUES ('emb', 0, ?1)",
                        [&old],
                    )?;
                    Ok(())
                })
            })
            .unwrap();
        // Not damage: check() accepts it (the next search rebuilds the graph).
        assert!(vault.check().unwrap().is_empty());
        vault.close().unwrap();
    }
    let vault = Vault::open(&path).unwrap();
    vault.attach(Arc::new(VectorsKind));
    let table = vault.with(|s| VectorTable::open(s, "emb", None)).unwrap();
    let q = &data[17];
    let options = SearchOptions {
        k: 5,
        ef_search: Some(64),
        ..Default::default()
    };
    let got = search(&vault, &table, q, options);
    assert_eq!(got, brute_force(&model, q, 5));
    let first: Vec<u8> = vault
        .with(|s: &mut Store| {
            s.read(|c| {
                Ok(c.query_row(
                    "SELECT substr(data, 1, 8) FROM ambervault_vector_index WHERE part = 0",
                    [],
                    |r| r.get(0),
                )?)
            })
        })
        .unwrap();
    assert_eq!(first, b"AVHNSW01");
    assert!(vault.check().unwrap().is_empty());
}
