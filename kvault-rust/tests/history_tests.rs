//! Value history: versions kept by triggers on every write path, tombstones, reads by version
//! and by time, chunk and content sharing, pruning, and turning history off.

use kvault::{Clock, Dedup, History, HistoryEntry, Kv, PolicyChange, Vault, VersionEnd};

fn kv_with_history(history: History, chunk_size: usize) -> Kv {
    let vault = Vault::open_in_memory().unwrap();
    vault.set_clock(Clock::fixed(1_000));
    let kv = vault.kv_with("h", chunk_size).unwrap();
    kv.set_cache_policy(PolicyChange {
        history: Some(history),
        ..Default::default()
    })
    .unwrap();
    kv
}

fn at(kv: &Kv, ms: i64) {
    kv.vault().set_clock(Clock::fixed(ms));
}

fn values(entries: &[HistoryEntry]) -> Vec<(i64, Option<Vec<u8>>)> {
    entries
        .iter()
        .map(|e| match e {
            HistoryEntry::Value { version, value, .. } => (*version, Some(value.bytes.clone())),
            HistoryEntry::Tombstone { version, .. } => (*version, None),
        })
        .collect()
}

#[test]
fn every_replaced_and_deleted_value_is_kept() {
    let kv = kv_with_history(History::All, 1 << 20);
    at(&kv, 1_000);
    kv.put(b"k", b"one").unwrap();
    at(&kv, 2_000);
    kv.put(b"k", b"two").unwrap();
    at(&kv, 3_000);
    assert!(kv.delete(b"k").unwrap());
    at(&kv, 4_000);
    kv.put(b"k", b"again").unwrap();
    let h = kv.table().history(&mut kv.store(), b"k", None).unwrap();
    assert_eq!(
        values(&h),
        vec![
            (1, Some(b"again".to_vec())),
            (2, None),
            (2, Some(b"two".to_vec())),
            (1, Some(b"one".to_vec())),
        ]
    );
    match &h[1] {
        HistoryEntry::Tombstone { at_ms, end, .. } => {
            assert_eq!((*at_ms, *end), (3_000, VersionEnd::Deleted));
        }
        other => panic!("expected a tombstone, got {other:?}"),
    }
    let table = kv.table();
    let mut store = kv.store();
    assert_eq!(
        table
            .get_as_of(&mut store, b"k", 1_500)
            .unwrap()
            .unwrap()
            .bytes,
        b"one"
    );
    assert_eq!(
        table
            .get_as_of(&mut store, b"k", 2_999)
            .unwrap()
            .unwrap()
            .bytes,
        b"two"
    );
    assert!(table.get_as_of(&mut store, b"k", 3_500).unwrap().is_none());
    assert_eq!(
        table
            .get_as_of(&mut store, b"k", 9_999)
            .unwrap()
            .unwrap()
            .bytes,
        b"again"
    );
    assert!(table.get_as_of(&mut store, b"k", 999).unwrap().is_none());
    // Version numbers restart after a delete; the newest with the number wins.
    assert_eq!(
        table
            .get_version(&mut store, b"k", 2)
            .unwrap()
            .unwrap()
            .bytes,
        b"two"
    );
    assert_eq!(
        table
            .get_version(&mut store, b"k", 1)
            .unwrap()
            .unwrap()
            .bytes,
        b"again"
    );
    assert!(table.get_version(&mut store, b"k", 3).unwrap().is_none());
    drop(store);
    assert!(kv.vault().check().unwrap().is_empty());
}

#[test]
fn keys_as_of_lists_what_existed_then() {
    let kv = kv_with_history(History::All, 1 << 20);
    at(&kv, 1_000);
    kv.put(b"a", b"1").unwrap();
    kv.put(b"b", b"1").unwrap();
    at(&kv, 2_000);
    kv.delete(b"a").unwrap();
    kv.put(b"c", b"1").unwrap();
    let keys = |t| -> Vec<Vec<u8>> {
        kv.table()
            .keys_as_of(&mut kv.store(), t, None, 100)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys(1_500), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(keys(2_500), vec![b"b".to_vec(), b"c".to_vec()]);
    assert!(keys(500).is_empty());
}

#[test]
fn history_keeps_at_most_n_versions_and_releases_the_rest() {
    let kv = kv_with_history(History::Last(2), 64);
    // Chunked values with distinct chunks: what is released must go from the content store.
    let value = |i: u32| -> Vec<u8> {
        (0..300u32)
            .map(|j| ((i * 1000 + j).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    };
    for i in 0..6u32 {
        at(&kv, 1_000 + i64::from(i));
        kv.put(b"big", &value(i)).unwrap();
    }
    let h = kv.table().history(&mut kv.store(), b"big", None).unwrap();
    assert_eq!(h.len(), 3, "the current value and two kept versions");
    assert_eq!(values(&h)[2].1.as_deref(), Some(&value(3)[..]));
    let (rows, bytes) = kv.table().history_stats(&mut kv.store()).unwrap();
    assert_eq!((rows, bytes), (2, 600));
    let stats = kv.table().stats(&mut kv.store()).unwrap();
    assert_eq!(
        stats.content_bytes, 900,
        "three versions' chunks, nothing more"
    );
    assert!(kv.vault().check().unwrap().is_empty());
    // Off: every kept version goes, with its chunks.
    kv.set_cache_policy(PolicyChange {
        history: Some(History::Off),
        ..Default::default()
    })
    .unwrap();
    let stats = kv.table().stats(&mut kv.store()).unwrap();
    assert_eq!(stats.content_bytes, 300);
    kv.put(b"big", &value(9)).unwrap();
    assert_eq!(
        kv.table().stats(&mut kv.store()).unwrap().content_bytes,
        300
    );
    assert!(kv.vault().check().unwrap().is_empty());
}

#[test]
fn an_unchanged_large_value_costs_nothing_extra_in_history() {
    let kv = kv_with_history(History::All, 64);
    let big: Vec<u8> = (0..640u32)
        .map(|j| (j.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    kv.put(b"model", &big).unwrap();
    let before = kv.table().stats(&mut kv.store()).unwrap().content_bytes;
    at(&kv, 2_000);
    kv.put(b"model", &big).unwrap();
    let after = kv.table().stats(&mut kv.store()).unwrap().content_bytes;
    assert_eq!(
        before, after,
        "the kept version shares every chunk's content"
    );
    assert_eq!(
        kv.table()
            .history(&mut kv.store(), b"model", None)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn shared_small_values_stay_referenced_by_history() {
    let kv = kv_with_history(History::All, 1 << 20);
    kv.set_cache_policy(PolicyChange {
        dedup: Some(Dedup::All),
        ..Default::default()
    })
    .unwrap();
    kv.put(b"a", b"first").unwrap();
    at(&kv, 2_000);
    kv.put(b"a", b"second").unwrap();
    at(&kv, 3_000);
    kv.delete(b"a").unwrap();
    let h = kv.table().history(&mut kv.store(), b"a", None).unwrap();
    assert_eq!(
        values(&h),
        vec![
            (2, None),
            (2, Some(b"second".to_vec())),
            (1, Some(b"first".to_vec()))
        ]
    );
    assert!(kv.vault().check().unwrap().is_empty());
    assert_eq!(
        kv.table().sweep(&mut kv.store()).unwrap(),
        0,
        "history's contents are in use"
    );
    assert_eq!(
        kv.table()
            .history(&mut kv.store(), b"a", None)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        kv.table()
            .prune_history(&mut kv.store(), Some(0), None)
            .unwrap(),
        2
    );
    assert_eq!(kv.table().stats(&mut kv.store()).unwrap().unique_chunks, 0);
    assert!(kv.vault().check().unwrap().is_empty());
}

#[test]
fn prune_history_by_age() {
    let kv = kv_with_history(History::All, 1 << 20);
    for i in 0..5 {
        at(&kv, 1_000 * (i + 1));
        kv.put(b"k", format!("v{i}").as_bytes()).unwrap();
    }
    at(&kv, 10_000);
    // Versions ended at 2, 3, 4 and 5 s; older than 6.5 s: those ended at <= 3.5 s.
    assert_eq!(
        kv.table()
            .prune_history(&mut kv.store(), None, Some(6_500))
            .unwrap(),
        2
    );
    assert_eq!(
        kv.table()
            .history(&mut kv.store(), b"k", None)
            .unwrap()
            .len(),
        3
    );
    assert!(kv
        .table()
        .prune_history(&mut kv.store(), None, Some(-1))
        .is_err());
}

#[test]
fn history_and_a_byte_limit_are_refused_together() {
    let kv = kv_with_history(History::Last(3), 1 << 20);
    let err = kv
        .set_cache_policy(PolicyChange {
            max_bytes: Some(Some(1000)),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, kvault::Error::InvalidArgument(_)));
    let (policy, _) = kv.table().cache_policy(&mut kv.store()).unwrap();
    assert_eq!((policy.max_bytes, policy.history), (None, History::Last(3)));
}
