//! Cache policies: byte limits with each eviction order, deduplicated small values, pruning
//! by age and idleness, and what eviction must never touch.

use kvault::{Clock, Dedup, Eviction, Kv, PolicyChange, Vault};

fn kv_at(clock_ms: i64) -> Kv {
    let vault = Vault::open_in_memory().unwrap();
    vault.set_clock(Clock::fixed(clock_ms));
    vault.kv("cache").unwrap()
}

fn limit(kv: &Kv, max: u64, eviction: Eviction) {
    kv.set_cache_policy(PolicyChange {
        max_bytes: Some(Some(max)),
        eviction: Some(eviction),
        ..Default::default()
    })
    .unwrap();
}

fn tick(kv: &Kv, ms: i64) {
    kv.vault().set_clock(Clock::fixed(ms));
}

fn keys(kv: &Kv) -> Vec<Vec<u8>> {
    let mut store = kv.store();
    let page = kv
        .table()
        .scan_keys(&mut store, &Default::default(), 1000)
        .unwrap();
    page.into_iter().map(|(k, _)| k).collect()
}

fn stored_bytes(kv: &Kv) -> u64 {
    let stats = kv.table().stats(&mut kv.store()).unwrap();
    stats.inline_bytes + stats.content_bytes
}

#[test]
fn least_recently_stored_evicts_the_oldest_write() {
    let kv = kv_at(1_000);
    limit(&kv, 300, Eviction::LeastRecentlyStored);
    for (i, key) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
        tick(&kv, 1_000 + i as i64);
        kv.put(*key, &[i as u8; 100]).unwrap();
    }
    assert_eq!(keys(&kv), vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
    assert!(stored_bytes(&kv) <= 300);
    let (_, counters) = kv.table().cache_policy(&mut kv.store()).unwrap();
    assert_eq!(counters.evictions, 1);
    assert_eq!(counters.stored_bytes, stored_bytes(&kv));
}

#[test]
fn least_recently_used_keeps_what_was_read() {
    let kv = kv_at(1_000);
    limit(&kv, 300, Eviction::LeastRecentlyUsed);
    for (i, key) in [b"a", b"b", b"c"].iter().enumerate() {
        tick(&kv, 1_000 + i as i64);
        kv.put(*key, &[1; 100]).unwrap();
    }
    tick(&kv, 2_000);
    assert!(kv.get(b"a").unwrap().is_some());
    tick(&kv, 2_001);
    kv.put(b"d", &[2; 100]).unwrap();
    // "b" was used least recently: "a" was read after it.
    assert_eq!(keys(&kv), vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]);
    let (_, counters) = kv.table().cache_policy(&mut kv.store()).unwrap();
    assert_eq!((counters.hits, counters.misses), (1, 0));
}

#[test]
fn least_frequently_used_keeps_what_is_read_often() {
    let kv = kv_at(1_000);
    limit(&kv, 300, Eviction::LeastFrequentlyUsed);
    for key in [b"a", b"b", b"c"] {
        kv.put(key, &[1; 100]).unwrap();
    }
    for _ in 0..3 {
        kv.get(b"a").unwrap();
        kv.get(b"c").unwrap();
    }
    kv.get(b"b").unwrap();
    assert!(kv.get(b"missing").unwrap().is_none());
    kv.put(b"d", &[2; 100]).unwrap();
    assert_eq!(keys(&kv), vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]);
    let (_, counters) = kv.table().cache_policy(&mut kv.store()).unwrap();
    assert_eq!((counters.hits, counters.misses), (7, 1));
}

#[test]
fn expired_keys_go_before_live_ones() {
    let kv = kv_at(1_000);
    limit(&kv, 250, Eviction::LeastRecentlyStored);
    kv.put(b"old", &[1; 100]).unwrap();
    tick(&kv, 1_001);
    let opts = kvault::PutOptions {
        expires_at_ms: Some(1_500),
        ..Default::default()
    };
    kv.table()
        .put_with(
            &mut kv.store(),
            b"short",
            kvault::KeyKind::Bytes,
            &[2; 100],
            opts,
        )
        .unwrap();
    tick(&kv, 2_000);
    kv.put(b"new", &[3; 100]).unwrap();
    assert_eq!(keys(&kv), vec![b"new".to_vec(), b"old".to_vec()]);
    let (_, counters) = kv.table().cache_policy(&mut kv.store()).unwrap();
    assert_eq!(counters.evictions, 0, "an expired key is not an eviction");
}

#[test]
fn a_write_never_evicts_its_own_keys_and_a_lower_limit_evicts_at_once() {
    let kv = kv_at(1_000);
    limit(&kv, 1_000, Eviction::LeastRecentlyStored);
    // One batch larger than the limit: its own keys stay until a later write.
    let values: Vec<Vec<u8>> = (0..15u8).map(|i| vec![i; 100]).collect();
    let names: Vec<Vec<u8>> = (0..15u8).map(|i| vec![b'k', i]).collect();
    let items: Vec<kvault::PutItem<'_>> = names
        .iter()
        .zip(&values)
        .map(|(k, v)| kvault::PutItem {
            key: k,
            kind: kvault::KeyKind::Bytes,
            value: v,
            expires_at_ms: None,
            encoding: kvault::Encoding::RAW,
        })
        .collect();
    kv.table().put_many(&mut kv.store(), &items).unwrap();
    assert_eq!(keys(&kv).len(), 15);
    limit(&kv, 500, Eviction::LeastRecentlyStored);
    assert_eq!(keys(&kv).len(), 5);
    assert!(stored_bytes(&kv) <= 500);
}

#[test]
fn an_open_reader_pins_its_value() {
    let vault = Vault::open_in_memory().unwrap();
    let kv = vault.kv_with("cache", 64).unwrap();
    limit(&kv, 1_000, Eviction::LeastRecentlyStored);
    // Distinct bytes in every chunk, so deduplication does not shrink what is stored.
    let noise = |seed: u32| -> Vec<u8> {
        (0..600u32)
            .map(|i| ((i + seed * 1000).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    };
    vault.set_clock(Clock::fixed(1));
    kv.put(b"big", &noise(1)).unwrap();
    let mut reader = kv.reader(b"big").unwrap().unwrap();
    vault.set_clock(Clock::fixed(2));
    kv.put(b"next", &noise(2)).unwrap();
    assert_eq!(keys(&kv), vec![b"big".to_vec(), b"next".to_vec()]);
    let mut all = vec![0; 600];
    assert_eq!(reader.read(&mut kv.store(), &mut all).unwrap(), 600);
    assert_eq!(all, noise(1));
    drop(reader);
    vault.set_clock(Clock::fixed(3));
    kv.put(b"last", &[9; 10]).unwrap();
    assert_eq!(keys(&kv), vec![b"last".to_vec(), b"next".to_vec()]);
}

#[test]
fn eviction_waits_for_an_explicit_transaction_to_commit() {
    let kv = kv_at(1_000);
    limit(&kv, 200, Eviction::LeastRecentlyStored);
    let tx = kv.vault().transaction().unwrap();
    for (i, key) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
        tick(&kv, 1_000 + i as i64);
        kv.put(*key, &[1; 100]).unwrap();
    }
    assert_eq!(
        keys(&kv).len(),
        4,
        "nothing is evicted inside the transaction"
    );
    tx.commit().unwrap();
    assert_eq!(keys(&kv), vec![b"c".to_vec(), b"d".to_vec()]);
}

#[test]
fn small_values_are_stored_once_with_dedup_all() {
    let kv = kv_at(1_000);
    kv.set_cache_policy(PolicyChange {
        dedup: Some(Dedup::All),
        ..Default::default()
    })
    .unwrap();
    for i in 0..100u32 {
        kv.put(format!("k{i}").as_bytes(), b"the same 17 bytes")
            .unwrap();
    }
    kv.put(b"other", b"different").unwrap();
    let stats = kv.table().stats(&mut kv.store()).unwrap();
    assert_eq!(stats.inline_bytes, 0);
    assert_eq!(stats.unique_chunks, 2);
    assert_eq!(stats.content_bytes, 17 + 9);
    assert_eq!(kv.get(b"k42").unwrap().unwrap(), b"the same 17 bytes");
    assert_eq!(kv.table().count_unique_values(&mut kv.store()).unwrap(), 2);
    assert!(kv.vault().check().unwrap().is_empty());
    // Replacing and deleting drop references; the last one drops the content.
    kv.put(b"k0", b"new value").unwrap();
    for i in 1..100u32 {
        assert!(kv.delete(format!("k{i}").as_bytes()).unwrap());
    }
    let stats = kv.table().stats(&mut kv.store()).unwrap();
    assert_eq!(stats.unique_chunks, 2, "'new value' and 'different' remain");
    assert!(kv.vault().check().unwrap().is_empty());
    // Back to inline storage for new writes: old rows still read.
    kv.set_cache_policy(PolicyChange {
        dedup: Some(Dedup::Large),
        ..Default::default()
    })
    .unwrap();
    kv.put(b"inline", b"the same 17 bytes").unwrap();
    assert_eq!(kv.get(b"k0").unwrap().unwrap(), b"new value");
    assert_eq!(kv.table().sweep(&mut kv.store()).unwrap(), 0);
    assert!(kv.vault().check().unwrap().is_empty());
}

#[test]
fn sweep_drops_unreferenced_contents() {
    let kv = kv_at(1_000);
    kv.set_cache_policy(PolicyChange {
        dedup: Some(Dedup::All),
        ..Default::default()
    })
    .unwrap();
    kv.put(b"a", b"x").unwrap();
    // A content row nothing refers to (as an interrupted write of another program could
    // leave it).
    kv.store()
        .write(|conn| {
            conn.execute(
                "INSERT INTO cache__content (hash, refs, data) VALUES (x'00', 0, x'01')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    assert_eq!(kv.table().sweep(&mut kv.store()).unwrap(), 1);
    assert_eq!(kv.get(b"a").unwrap().unwrap(), b"x");
    assert!(kv.vault().check().unwrap().is_empty());
}

#[test]
fn prune_by_age_and_idleness() {
    let kv = kv_at(10_000);
    limit(&kv, 1 << 20, Eviction::LeastRecentlyUsed);
    kv.put(b"old", b"1").unwrap();
    tick(&kv, 20_000);
    kv.put(b"read", b"2").unwrap();
    kv.put(b"idle", b"3").unwrap();
    tick(&kv, 25_000);
    kv.get(b"read").unwrap();
    tick(&kv, 30_000);
    // Older than 15 s: "old" only.
    assert_eq!(
        kv.table()
            .prune_by(&mut kv.store(), Some(15_000), None)
            .unwrap(),
        1
    );
    // Not used for 8 s: "idle" (written at 20 s); "read" was read at 25 s.
    assert_eq!(
        kv.table()
            .prune_by(&mut kv.store(), None, Some(8_000))
            .unwrap(),
        1
    );
    assert_eq!(keys(&kv), vec![b"read".to_vec()]);
    assert!(kv
        .table()
        .prune_by(&mut kv.store(), Some(-1), None)
        .is_err());
}

#[test]
fn the_policy_is_stored_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    {
        let kv = Kv::open(&path).unwrap();
        kv.set_cache_policy(PolicyChange {
            max_bytes: Some(Some(4096)),
            eviction: Some(Eviction::LeastFrequentlyUsed),
            default_ttl_ms: Some(Some(60_000)),
            dedup: Some(Dedup::All),
            history: None,
        })
        .unwrap();
    }
    let kv = Kv::open(&path).unwrap();
    let (policy, _) = kv.table().cache_policy(&mut kv.store()).unwrap();
    assert_eq!(policy.max_bytes, Some(4096));
    assert_eq!(policy.eviction, Eviction::LeastFrequentlyUsed);
    assert_eq!(policy.default_ttl_ms, Some(60_000));
    assert_eq!(policy.dedup, Dedup::All);
    assert!(kv
        .set_cache_policy(PolicyChange {
            default_ttl_ms: Some(Some(-5)),
            ..Default::default()
        })
        .is_err());
    assert!(Eviction::parse("random").is_err());
    let (after, _) = kv.table().cache_policy(&mut kv.store()).unwrap();
    assert_eq!(after, policy, "a refused change changes nothing");
}

#[test]
fn dedup_none_stores_every_chunk_on_its_own() {
    let vault = Vault::open_in_memory().unwrap();
    let kv = vault.kv_with("cache", 64).unwrap();
    kv.put(b"a", &[5; 640]).unwrap();
    let shared = kv.table().stats(&mut kv.store()).unwrap();
    assert_eq!(
        shared.unique_chunks, 1,
        "ten equal chunks share one content"
    );
    kv.set_cache_policy(PolicyChange {
        dedup: Some(Dedup::None),
        ..Default::default()
    })
    .unwrap();
    kv.put(b"b", &[5; 640]).unwrap();
    let stats = kv.table().stats(&mut kv.store()).unwrap();
    assert_eq!(stats.unique_chunks, 11);
    assert_eq!(kv.get(b"b").unwrap().unwrap(), vec![5; 640]);
    assert!(kv.delete(b"b").unwrap());
    assert_eq!(kv.table().stats(&mut kv.store()).unwrap().unique_chunks, 1);
    assert!(vault.check().unwrap().is_empty());
}

#[test]
fn the_maintenance_thread_writes_recorded_reads() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::open(dir.path().join("v.db")).unwrap();
    kv.set_cache_policy(PolicyChange {
        eviction: Some(Eviction::LeastRecentlyUsed),
        ..Default::default()
    })
    .unwrap();
    kv.put(b"k", b"v").unwrap();
    assert_eq!(
        kv.table()
            .access_row(&mut kv.store(), b"k")
            .unwrap()
            .unwrap()
            .1,
        0
    );
    kv.get(b"k").unwrap();
    kv.get(b"k").unwrap();
    // No write follows: the vault's maintenance thread writes the two reads on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut uses = 0;
    while std::time::Instant::now() < deadline {
        uses = kv
            .table()
            .access_row(&mut kv.store(), b"k")
            .unwrap()
            .unwrap()
            .1;
        if uses == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(uses, 2);
    assert_eq!(kv.table().unwritten_counts(), (0, 0));
}
