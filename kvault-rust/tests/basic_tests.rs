//! Behaviour of the key-value table through the public Rust API: inline and chunked values,
//! replacement, deletion, scans, format checks and bad input.

use kvault::{
    BlobWriter, Condition, Encoding, Error, KeyKind, KeyRange, Kv, KvTable, Location, PutItem,
    PutOptions, Store, StoreOptions, StoredValue, APPLICATION_ID,
};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn chunk_rows(vault: &Kv) -> i64 {
    let name = format!("{}__chunks", vault.table().name());
    vault
        .store()
        .conn()
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn inline_and_chunked_values_round_trip_at_every_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Kv::open_with(dir.path().join("v.db"), StoreOptions::default(), "kv", 100).unwrap();
    for len in [0usize, 1, 99, 100, 101, 199, 200, 201, 1000, 12_345] {
        let value = pattern(len, len as u8);
        let key = format!("k{len}");
        vault.put(key.as_bytes(), &value).unwrap();
        assert_eq!(
            vault.get(key.as_bytes()).unwrap().unwrap(),
            value,
            "len {len}"
        );
    }
    // 12_345 bytes at 100 per chunk = 124 chunks; 1000 = 10; 201 = 3; 200 = 2; 199 = 2; 101 = 2
    assert_eq!(chunk_rows(&vault), 124 + 10 + 3 + 2 + 2 + 2);
}

#[test]
fn overwrite_and_delete_release_chunks() {
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 10).unwrap();
    vault.put(b"a", &pattern(95, 1)).unwrap();
    assert_eq!(chunk_rows(&vault), 10);
    vault.put(b"a", &pattern(25, 2)).unwrap();
    assert_eq!(chunk_rows(&vault), 3);
    vault.put(b"a", b"small").unwrap();
    assert_eq!(chunk_rows(&vault), 0);
    vault.put(b"a", &pattern(31, 3)).unwrap();
    assert_eq!(vault.get(b"a").unwrap().unwrap(), pattern(31, 3));
    assert!(vault.delete(b"a").unwrap());
    assert!(!vault.delete(b"a").unwrap());
    assert_eq!(chunk_rows(&vault), 0);
    assert_eq!(vault.get(b"a").unwrap(), None);
}

#[test]
fn reader_seeks_and_reads_ranges() {
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 7).unwrap();
    let value = pattern(100, 9);
    vault.put(b"v", &value).unwrap();
    let mut reader = vault.reader(b"v").unwrap().unwrap();
    assert_eq!(reader.size(), 100);
    for (start, len) in [
        (0u64, 3usize),
        (5, 10),
        (13, 1),
        (14, 30),
        (95, 10),
        (99, 1),
        (100, 5),
    ] {
        reader.seek(start);
        let mut buf = vec![0u8; len];
        let n = reader.read(&mut vault.store(), &mut buf).unwrap();
        let end = (start as usize + len).min(100);
        assert_eq!(n, end.saturating_sub(start as usize));
        assert_eq!(&buf[..n], &value[start as usize..end]);
    }
}

/// Reads that continue the previous one (served from a kept chunk) and reads after seeks
/// (straight from the file, only the bytes asked for), mixed at random over a value of many
/// chunks in a file, return exactly the model's bytes.
#[test]
fn reader_mixes_sequential_and_random_reads_like_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let vault = Kv::open_with(path.to_str().unwrap(), StoreOptions::default(), "kv", 1000).unwrap();
    let value = pattern(25_731, 4);
    vault.put(b"v", &value).unwrap();
    let mut reader = vault.reader(b"v").unwrap().unwrap();
    let mut seed = 0x1234_5678_u64;
    let mut next = |bound: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % bound
    };
    let mut pos = 0u64;
    for step in 0..2000 {
        if next(3) == 0 {
            pos = next(value.len() as u64 + 10);
            reader.seek(pos);
        }
        let len = 1 + next(2500) as usize;
        let mut buf = vec![0u8; len];
        let n = reader.read(&mut vault.store(), &mut buf).unwrap();
        let start = (pos as usize).min(value.len());
        let end = (start + len).min(value.len());
        assert_eq!(n, end - start, "step {step}");
        assert_eq!(&buf[..n], &value[start..end], "step {step}");
        pos += n as u64;
        assert_eq!(reader.position(), pos, "step {step}");
    }
}

#[test]
fn reader_fails_cleanly_when_value_is_replaced() {
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 4).unwrap();
    vault.put(b"v", &pattern(40, 1)).unwrap();
    let mut reader = vault.reader(b"v").unwrap().unwrap();
    let mut buf = [0u8; 4];
    reader.read(&mut vault.store(), &mut buf).unwrap();
    vault.put(b"v", &pattern(40, 2)).unwrap();
    let err = reader.read(&mut vault.store(), &mut buf).unwrap_err();
    assert!(matches!(err, Error::ValueChanged), "{err:?}");
}

#[test]
fn writer_value_is_invisible_until_finished_and_abort_leaves_nothing() {
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 8).unwrap();
    vault.put(b"k", b"old").unwrap();
    let mut writer = vault.writer();
    writer.write(&mut vault.store(), &pattern(50, 4)).unwrap();
    assert_eq!(vault.get(b"k").unwrap().unwrap(), b"old");
    writer.abort(&mut vault.store()).unwrap();
    assert_eq!(vault.get(b"k").unwrap().unwrap(), b"old");
    assert_eq!(chunk_rows(&vault), 0);

    let mut writer = vault.writer();
    for piece in pattern(50, 5).chunks(3) {
        writer.write(&mut vault.store(), piece).unwrap();
    }
    assert_eq!(
        writer
            .finish(&mut vault.store(), b"k", KeyKind::Str)
            .unwrap(),
        50
    );
    assert_eq!(vault.get(b"k").unwrap().unwrap(), pattern(50, 5));
}

#[test]
fn put_many_is_all_or_nothing() {
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 16).unwrap();
    let big = pattern(100, 1);
    let too_long_key = vec![b'x'; kvault::MAX_KEY_LEN + 1];
    let table = vault.table().clone();
    let bad: Vec<PutItem<'_>> = vec![
        PutItem::new(b"a", KeyKind::Bytes, b"1"),
        PutItem::new(&too_long_key, KeyKind::Bytes, &big),
    ];
    assert!(matches!(
        table.put_many(&mut vault.store(), &bad),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(vault.len().unwrap(), 0);
    let good: Vec<PutItem<'_>> = vec![
        PutItem::new(b"a", KeyKind::Bytes, b"1"),
        PutItem::new(b"b", KeyKind::Str, &big),
    ];
    table.put_many(&mut vault.store(), &good).unwrap();
    assert_eq!(vault.get(b"b").unwrap().unwrap(), big);
    assert_eq!(vault.len().unwrap(), 2);
}

#[test]
fn scans_are_bytewise_ordered_and_prefix_bounded() {
    let mut vault = Kv::open_in_memory().unwrap();
    let keys: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"a\x00".to_vec(),
        b"a\xff".to_vec(),
        b"a\xff\xff".to_vec(),
        b"ab".to_vec(),
        b"b".to_vec(),
        vec![0xFF],
        vec![0xFF, 0x00],
    ];
    for key in keys.iter().rev() {
        vault.put(key, b"v").unwrap();
    }
    let table = vault.table().clone();
    let scan = |vault: &Kv, prefix: Option<&[u8]>, page: usize| {
        let mut out = Vec::new();
        let mut range = KeyRange {
            prefix: prefix.map(<[u8]>::to_vec),
            ..KeyRange::default()
        };
        loop {
            let rows = table.scan_keys(&mut vault.store(), &range, page).unwrap();
            if rows.is_empty() {
                break out;
            }
            range.after = Some(rows.last().unwrap().0.clone());
            out.extend(rows.into_iter().map(|(k, _)| k));
        }
    };
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(scan(&mut vault, None, 3), sorted);
    assert_eq!(
        scan(&mut vault, Some(b"a\xff"), 1),
        vec![b"a\xff".to_vec(), b"a\xff\xff".to_vec()]
    );
    assert_eq!(
        scan(&mut vault, Some(&[0xFF]), 2),
        vec![vec![0xFF], vec![0xFF, 0x00]]
    );
    let under_a = KeyRange {
        prefix: Some(b"a".to_vec()),
        ..KeyRange::default()
    };
    assert_eq!(table.count_range(&mut vault.store(), &under_a).unwrap(), 5);
}

#[test]
fn format_markers_are_written_and_newer_versions_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    {
        let vault = Kv::open(&path).unwrap();
        vault.put(b"x", b"y").unwrap();
        let mut store = vault.store();
        let conn = store.conn().unwrap();
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    let err = Kv::open(&path).unwrap_err();
    assert!(
        matches!(err, Error::IncompatibleFormat { found: 99, .. }),
        "{err:?}"
    );
}

/// New files keep a map of page parents (incremental auto-vacuum), set before their first
/// page; a SQLite file made elsewhere keeps its own mode when it becomes a vault. Range reads
/// at every offset of a chunked value read the right bytes through the map.
#[test]
fn new_files_use_incremental_auto_vacuum_and_older_files_keep_their_mode() {
    let dir = tempfile::tempdir().unwrap();
    let auto_vacuum = |path: &std::path::Path| -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap()
    };
    let new = dir.path().join("new.db");
    let value = pattern(3 << 20, 7);
    {
        let vault = Kv::open_with(&new, StoreOptions::default(), "kv", 64 << 10).unwrap();
        vault.put(b"big", &value).unwrap();
        let mut reader = vault.reader(b"big").unwrap().unwrap();
        for start in [
            0usize,
            1,
            4091,
            4092,
            65_535,
            65_536,
            1 << 20,
            (3 << 20) - 10,
        ] {
            let mut got = vec![0u8; 9000.min(value.len() - start)];
            reader.seek(start as u64);
            assert_eq!(
                reader.read(&mut vault.store(), &mut got).unwrap(),
                got.len()
            );
            assert_eq!(got, value[start..start + got.len()], "at {start}");
        }
    }
    assert_eq!(auto_vacuum(&new), 2, "INCREMENTAL");
    let older = dir.path().join("older.db");
    {
        let conn = rusqlite::Connection::open(&older).unwrap();
        conn.execute_batch("CREATE TABLE notes (x); INSERT INTO notes VALUES (1);")
            .unwrap();
    }
    {
        let vault = Kv::open(&older).unwrap();
        vault.put(b"k", &value[..100_000]).unwrap();
        assert_eq!(vault.get(b"k").unwrap().as_deref(), Some(&value[..100_000]));
    }
    assert_eq!(auto_vacuum(&older), 0, "NONE, as made");
}

#[test]
fn non_sqlite_files_are_refused_without_being_modified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content =
        b"this is not a database, just some text that is long enough to matter".repeat(100);
    std::fs::write(&path, &content).unwrap();
    let err = Kv::open(&path).unwrap_err();
    assert!(matches!(err, Error::Corrupted(_)), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(!dir.path().join("notes.txt-wal").exists());
}

#[test]
fn paths_that_cannot_hold_a_vault_are_clear_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Kv::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::IsADirectory),
        "{err:?}"
    );
    let err = Kv::open(dir.path().join("missing/v.db")).unwrap_err();
    assert!(
        matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
}

#[test]
fn read_only_store_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    Kv::open(&path).unwrap().put(b"k", b"v").unwrap();
    let options = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let vault = Kv::open_with(&path, options.clone(), "kvault", 1 << 20).unwrap();
    assert_eq!(vault.get(b"k").unwrap().unwrap(), b"v");
    assert!(matches!(vault.put(b"k", b"w"), Err(Error::ReadOnly(_))));
    assert!(matches!(
        Kv::open_with(&path, options, "other", 1 << 20),
        Err(Error::ReadOnly(_))
    ));
}

#[test]
fn several_tables_share_one_store() {
    let mut store = Store::open(Location::Memory, StoreOptions::default()).unwrap();
    let a = KvTable::open(&mut store, "a", 1 << 20).unwrap();
    let b = KvTable::open(&mut store, "b", 1 << 20).unwrap();
    a.put(&mut store, b"k", KeyKind::Bytes, b"from a").unwrap();
    b.put(&mut store, b"k", KeyKind::Bytes, b"from b").unwrap();
    assert_eq!(a.get(&mut store, b"k").unwrap().unwrap(), b"from a");
    assert_eq!(b.get(&mut store, b"k").unwrap().unwrap(), b"from b");
}

#[test]
fn busy_writers_back_off_then_report_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let options = StoreOptions {
        retries: 2,
        backoff_base: 0.01,
        ..StoreOptions::default()
    };
    let holder = Kv::open_with(&path, options.clone(), "kvault", 1 << 20).unwrap();
    let other = Kv::open_with(&path, options, "kvault", 1 << 20).unwrap();
    holder
        .store()
        .conn()
        .unwrap()
        .execute_batch("BEGIN IMMEDIATE")
        .unwrap();
    let started = std::time::Instant::now();
    let err = other.put(b"k", b"v").unwrap_err();
    assert!(matches!(err, Error::Busy { retries: 2, .. }), "{err:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));
    holder
        .store()
        .conn()
        .unwrap()
        .execute_batch("COMMIT")
        .unwrap();
    other.put(b"k", b"v").unwrap();
    assert_eq!(holder.get(b"k").unwrap().unwrap(), b"v");
}

#[test]
fn ranges_combine_prefix_start_end_and_reverse() {
    let mut vault = Kv::open_in_memory().unwrap();
    for k in [b"a1", b"a2", b"a3", b"b1", b"b2"] {
        vault.put(k, b"v").unwrap();
    }
    let table = vault.table().clone();
    let scan = |vault: &Kv, range: KeyRange| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut range = range;
        loop {
            let page = table.scan_keys(&mut vault.store(), &range, 2).unwrap();
            if page.is_empty() {
                break out;
            }
            range.after = Some(page.last().unwrap().0.clone());
            out.extend(page.into_iter().map(|(k, _)| k));
        }
    };
    let keys = |v: &[&[u8]]| v.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    let r = KeyRange {
        start: Some(b"a2".to_vec()),
        end: Some(b"b2".to_vec()),
        ..KeyRange::default()
    };
    assert_eq!(scan(&mut vault, r.clone()), keys(&[b"a2", b"a3", b"b1"]));
    let rev = KeyRange { reverse: true, ..r };
    assert_eq!(scan(&mut vault, rev), keys(&[b"b1", b"a3", b"a2"]));
    let p = KeyRange {
        prefix: Some(b"a".to_vec()),
        start: Some(b"a2".to_vec()),
        reverse: true,
        ..KeyRange::default()
    };
    assert_eq!(scan(&mut vault, p.clone()), keys(&[b"a3", b"a2"]));
    assert_eq!(table.count_range(&mut vault.store(), &p).unwrap(), 2);
}

#[test]
fn expiry_hides_keys_and_prune_removes_them() {
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 8).unwrap();
    let table = vault.table().clone();
    let s = &mut vault.store();
    s.set_clock(kvault::Clock::fixed(1_000));
    let opts = PutOptions {
        expires_at_ms: Some(2_000),
        ..PutOptions::default()
    };
    table
        .put_with(s, b"short", KeyKind::Bytes, b"inline", opts)
        .unwrap();
    table
        .put_with(s, b"big", KeyKind::Bytes, &[7u8; 100], opts)
        .unwrap();
    table.put(s, b"forever", KeyKind::Bytes, b"x").unwrap();
    assert_eq!(table.len(s).unwrap(), 3);
    s.set_clock(kvault::Clock::fixed(2_000));
    assert_eq!(table.get(s, b"short").unwrap(), None);
    assert_eq!(table.get(s, b"big").unwrap(), None);
    assert!(!table.exists(s, b"short").unwrap());
    assert_eq!(table.len(s).unwrap(), 1);
    assert!(!table.delete(s, b"short").unwrap()); // expired: not there for callers
    assert!(!table.touch(s, b"big", None).unwrap());
    assert_eq!(table.prune(s).unwrap(), 1); // "big" (short was deleted above)
    assert_eq!(table.stats(s).unwrap().chunks, 0);
    // Writing over an expired key starts it afresh.
    table
        .put_with(
            s,
            b"k",
            KeyKind::Bytes,
            b"1",
            PutOptions {
                expires_at_ms: Some(2_500),
                ..opts
            },
        )
        .unwrap();
    table.put(s, b"k", KeyKind::Bytes, b"2").unwrap();
    assert_eq!(table.version(s, b"k").unwrap(), Some(2));
    assert!(table.touch(s, b"k", Some(2_100)).unwrap());
    s.set_clock(kvault::Clock::fixed(3_000));
    table.put(s, b"k", KeyKind::Bytes, b"3").unwrap();
    assert_eq!(table.version(s, b"k").unwrap(), Some(1));
}

#[test]
fn conditional_writes_compare_versions() {
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 8).unwrap();
    let table = vault.table().clone();
    let s = &mut vault.store();
    let absent = PutOptions {
        condition: Condition::IfAbsent,
        ..PutOptions::default()
    };
    table
        .put_with(s, b"k", KeyKind::Bytes, b"1", absent)
        .unwrap();
    assert!(matches!(
        table.put_with(s, b"k", KeyKind::Bytes, b"2", absent),
        Err(Error::Conflict(_))
    ));
    let v1 = PutOptions {
        condition: Condition::IfVersion(1),
        ..PutOptions::default()
    };
    table
        .put_with(s, b"k", KeyKind::Bytes, &[9u8; 50], v1)
        .unwrap(); // chunked, CAS in the switch
    assert!(matches!(
        table.put_with(s, b"k", KeyKind::Bytes, b"3", v1),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        table.put_with(s, b"k", KeyKind::Bytes, &[1u8; 50], v1),
        Err(Error::Conflict(_))
    ));
    assert_eq!(table.get(s, b"k").unwrap().unwrap(), vec![9u8; 50]);
    assert_eq!(table.version(s, b"k").unwrap(), Some(2));
    let stats = table.stats(s).unwrap();
    assert_eq!((stats.chunks, stats.pending_uploads), (7, 0)); // the refused upload left nothing
}

#[test]
fn explicit_transactions_commit_roll_back_and_nest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let vault = Kv::open_with(&path, StoreOptions::default(), "kv", 8).unwrap();
    vault.store().begin().unwrap();
    vault.put(b"a", b"1").unwrap();
    vault.put(b"big", &[5u8; 40]).unwrap(); // a chunked write inside the transaction
    vault.store().begin().unwrap();
    vault.put(b"b", b"2").unwrap();
    vault.store().rollback().unwrap(); // inner savepoint only
    assert_eq!(vault.get(b"a").unwrap().unwrap(), b"1"); // reads see the transaction's writes
    assert_eq!(vault.get(b"b").unwrap(), None);
    let reader = Kv::open_with(&path, StoreOptions::default(), "kv", 8).unwrap();
    assert_eq!(reader.get(b"a").unwrap(), None); // not visible before commit
    vault.store().commit().unwrap();
    assert_eq!(reader.get(b"a").unwrap().unwrap(), b"1");
    assert_eq!(reader.get(b"big").unwrap().unwrap(), vec![5u8; 40]);
    vault.store().begin().unwrap();
    vault.put(b"a", b"changed").unwrap();
    vault.store().rollback().unwrap();
    assert_eq!(vault.get(b"a").unwrap().unwrap(), b"1");
    assert!(matches!(
        vault.store().commit(),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn identical_chunks_are_stored_once_and_reference_counted() {
    let mut vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 8).unwrap();
    let table = vault.table().clone();
    let rows = |vault: &Kv, t: &str| -> i64 {
        vault
            .store()
            .conn()
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))
            .unwrap()
    };
    let movie = pattern(20, 1); // 3 chunks of 8, 8, 4 bytes
    vault.put(b"a", &movie).unwrap();
    vault.put(b"b", &movie).unwrap();
    vault.put(b"c", &[7u8; 16]).unwrap(); // two identical chunks inside one value
    assert_eq!(rows(&mut vault, "kv__chunks"), 8);
    assert_eq!(rows(&mut vault, "kv__content"), 4);
    let stats = table.stats(&mut vault.store()).unwrap();
    assert_eq!((stats.logical_bytes, stats.content_bytes), (56, 28));
    assert!(vault.delete(b"a").unwrap());
    assert_eq!(rows(&mut vault, "kv__content"), 4);
    assert_eq!(vault.get(b"b").unwrap().unwrap(), movie);
    vault.put(b"b", b"small").unwrap(); // overwrite releases its references
    assert_eq!(rows(&mut vault, "kv__content"), 1);
    assert!(vault.delete(b"c").unwrap());
    assert_eq!(rows(&mut vault, "kv__content"), 0);
    assert!(table.check(&mut vault.store()).unwrap().is_empty());
}

#[test]
fn injected_clock_times_batched_chunked_and_streamed_writes() {
    // Far in the future (2100), so the injected clock and the system's disagree on expiry.
    const T: i64 = 4_102_444_800_000;
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 8).unwrap();
    let table = vault.table().clone();
    let s = &mut vault.store();
    let big = pattern(20, 3); // chunked: larger than the 8-byte chunks
    let group: Vec<Vec<u8>> = (0..32).map(|i| format!("g{i:02}").into_bytes()).collect();
    let write_all = |s: &mut Store, value: &[u8]| {
        // Inline and chunked items through put_many, a run long enough for a grouped insert,
        // a chunked put and a streamed upload.
        let mut items: Vec<PutItem<'_>> = vec![
            PutItem::new(b"many_inline", KeyKind::Bytes, b"x"),
            PutItem::new(b"many_chunked", KeyKind::Bytes, &big),
        ];
        items.extend(group.iter().map(|k| PutItem::new(k, KeyKind::Bytes, b"y")));
        table.put_many(s, &items).unwrap();
        table.put(s, b"chunked", KeyKind::Bytes, value).unwrap();
        let mut writer = BlobWriter::new(table.clone(), None);
        writer.write(s, value).unwrap();
        writer.finish(s, b"streamed", KeyKind::Bytes).unwrap();
    };
    let keys: [&[u8]; 5] = [
        b"many_inline",
        b"many_chunked",
        b"g31",
        b"chunked",
        b"streamed",
    ];
    s.set_clock(kvault::Clock::fixed(T));
    write_all(s, &big);
    for key in keys {
        let info = table.info(s, key).unwrap().unwrap();
        let found = (info.created_at_ms, info.updated_at_ms, info.version);
        assert_eq!(found, (T, T, 1), "{}", String::from_utf8_lossy(key));
        assert!(table.touch(s, key, Some(T + 10)).unwrap());
    }
    // Expired by the injected clock only: every path must write over them as if absent.
    s.set_clock(kvault::Clock::fixed(T + 100));
    write_all(s, &big);
    for key in keys {
        let info = table.info(s, key).unwrap().unwrap();
        let found = (info.created_at_ms, info.updated_at_ms, info.version);
        assert_eq!(
            found,
            (T + 100, T + 100, 1),
            "{}",
            String::from_utf8_lossy(key)
        );
        assert_eq!(info.expires_at_ms, None);
    }
    assert!(table.check(s).unwrap().is_empty());
}

#[test]
fn scan_items_pages_by_count_and_by_bytes() {
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 8).unwrap();
    let table = vault.table().clone();
    let s = &mut vault.store();
    let entries: Vec<(Vec<u8>, Vec<u8>)> = [("a", 3), ("b", 20), ("c", 5), ("d", 0), ("e", 9)]
        .iter()
        .map(|&(k, len)| (k.as_bytes().to_vec(), pattern(len, len as u8)))
        .collect();
    for (key, value) in &entries {
        table.put(s, key, KeyKind::Str, value).unwrap();
    }
    let item = |i: usize| {
        let value = StoredValue {
            bytes: entries[i].1.clone(),
            encoding: Encoding::RAW,
        };
        (entries[i].0.clone(), KeyKind::Str, value)
    };
    let all = KeyRange::default();
    // The first item always counts, however small the byte budget.
    let page = table.scan_items(s, &all, 10, 0).unwrap();
    assert_eq!(page.items, vec![item(0)]);
    assert_eq!(page.last_key.as_deref(), Some(&b"a"[..]));
    // The budget is checked before each item: 3 bytes < 4, so "b" (20 bytes) still comes.
    let page = table.scan_items(s, &all, 10, 4).unwrap();
    assert_eq!(page.items, vec![item(0), item(1)]);
    assert_eq!(page.last_key.as_deref(), Some(&b"b"[..]));
    // The key limit bounds a page; a limit of 0 is taken as 1.
    let page = table.scan_items(s, &all, 3, usize::MAX).unwrap();
    assert_eq!(page.items, vec![item(0), item(1), item(2)]);
    assert_eq!(
        table.scan_items(s, &all, 0, usize::MAX).unwrap().items,
        vec![item(0)]
    );
    // Paging by `after` visits every item once, in either direction.
    for reverse in [false, true] {
        let mut range = KeyRange {
            reverse,
            ..KeyRange::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = table.scan_items(s, &range, 2, 10).unwrap();
            seen.extend(page.items);
            match page.last_key {
                Some(last) => range.after = Some(last),
                None => break,
            }
        }
        let mut expected: Vec<_> = (0..entries.len()).map(item).collect();
        if reverse {
            expected.reverse();
        }
        assert_eq!(seen, expected);
    }
    // Expired keys are not items.
    assert!(table.touch(s, b"a", Some(1)).unwrap());
    let page = table.scan_items(s, &all, 1, usize::MAX).unwrap();
    assert_eq!(page.items, vec![item(1)]);
}

#[test]
fn the_encoding_is_stored_beside_the_value_on_every_write_path_and_returned_by_every_read() {
    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 8).unwrap();
    let table = vault.table().clone();
    let s = &mut vault.store();
    let packed = Encoding(1);
    let json = Encoding(2);
    let typed = |encoding| PutOptions {
        encoding,
        ..PutOptions::default()
    };
    let big = pattern(30, 9); // chunked: larger than the 8-byte chunks
    table
        .put_with(s, b"inline", KeyKind::Str, b"\x93\x01", typed(packed))
        .unwrap();
    table
        .put_with(s, b"chunked", KeyKind::Str, &big, typed(json))
        .unwrap();
    let group: Vec<Vec<u8>> = (0..40).map(|i| format!("g{i:02}").into_bytes()).collect();
    let mut items: Vec<PutItem<'_>> = group
        .iter()
        .enumerate()
        .map(|(i, k)| PutItem::new(k, KeyKind::Bytes, b"v").encoded(Encoding(i as u8 % 3)))
        .collect();
    items.push(PutItem::new(b"many_chunked", KeyKind::Bytes, &big).encoded(json));
    items.push(
        PutItem::new(b"many_expiring", KeyKind::Bytes, b"e")
            .encoded(packed)
            .expiring(Some(i64::MAX)),
    );
    table.put_many(s, &items).unwrap();
    let mut writer = BlobWriter::new(table.clone(), None);
    writer.write(s, &big).unwrap();
    writer
        .finish_with(s, b"streamed", KeyKind::Bytes, typed(packed))
        .unwrap();

    let expect = [
        (&b"inline"[..], packed),
        (b"chunked", json),
        (b"g00", Encoding(0)),
        (b"g01", Encoding(1)),
        (b"g38", Encoding(2)),
        (b"many_chunked", json),
        (b"many_expiring", packed),
        (b"streamed", packed),
    ];
    for (key, encoding) in expect {
        let value = table.get_value(s, key).unwrap().unwrap();
        assert_eq!(value.encoding, encoding, "{key:?}");
        assert_eq!(table.info(s, key).unwrap().unwrap().encoding, encoding);
        let reader = kvault::BlobReader::open(&table, s, key).unwrap().unwrap();
        assert_eq!(reader.encoding(), encoding);
    }
    assert_eq!(table.get_value(s, b"chunked").unwrap().unwrap().bytes, big);
    let keys: Vec<&[u8]> = expect.iter().map(|(k, _)| *k).collect();
    let many = table.get_many_values(s, &keys).unwrap();
    let encodings: Vec<Encoding> = many.iter().map(|v| v.as_ref().unwrap().encoding).collect();
    assert_eq!(encodings, expect.map(|(_, e)| e).to_vec());
    let page = table
        .scan_items(s, &KeyRange::default(), 100, usize::MAX)
        .unwrap();
    let chunked = page.items.iter().find(|(k, _, _)| k == b"chunked").unwrap();
    assert_eq!(chunked.2.encoding, json);
    // A raw overwrite is raw again.
    table.put(s, b"inline", KeyKind::Str, b"raw").unwrap();
    assert_eq!(
        table.get_value(s, b"inline").unwrap().unwrap().encoding,
        Encoding::RAW
    );
}

#[test]
fn located_values_read_into_caller_buffers_from_one_snapshot() {
    use kvault::ValueLocation;
    use std::mem::MaybeUninit;

    let vault = Kv::open_with(":memory:", StoreOptions::default(), "kv", 16).unwrap();
    let (a, b) = (pattern(40, 1), pattern(17, 2));
    vault.put(b"a", &a).unwrap();
    vault.put(b"b", &b).unwrap();
    vault.put(b"small", b"tiny").unwrap();
    let table = vault.table();
    let mut store = vault.store();
    let s = &mut *store;
    let (_, located) = table
        .locate_many(s, &[&b"a"[..], b"missing", b"small", b"b"])
        .unwrap();
    assert!(located[1].is_none());
    assert_eq!(
        located[2],
        Some((ValueLocation::Inline(b"tiny".to_vec()), Encoding::RAW))
    );
    let blob = |i: usize| match &located[i] {
        Some((ValueLocation::Chunked(blob), _)) => *blob,
        other => panic!("not chunked: {other:?}"),
    };
    let (blob_a, blob_b) = (blob(0), blob(3));
    let mut out_a = vec![MaybeUninit::new(0xAA); 40];
    let mut out_b = vec![MaybeUninit::new(0xAA); 17];
    table
        .read_values_into(
            s,
            &mut [(&blob_a, &mut out_a[..]), (&blob_b, &mut out_b[..])],
        )
        .unwrap();
    // SAFETY: initialised when made, and filled by the read.
    let filled = |out: &[MaybeUninit<u8>]| -> Vec<u8> {
        out.iter().map(|b| unsafe { b.assume_init() }).collect()
    };
    assert_eq!((filled(&out_a), filled(&out_b)), (a.clone(), b));
    // A buffer of the wrong size is refused before anything is read.
    let mut short = [MaybeUninit::new(0); 39];
    assert!(matches!(
        table.read_values_into(s, &mut [(&blob_a, &mut short[..])]),
        Err(Error::InvalidArgument(_))
    ));
    // Once the value is replaced, its located chunks are gone: the read says so.
    drop(store);
    vault.put(b"a", &pattern(40, 3)).unwrap();
    let mut store = vault.store();
    assert!(matches!(
        table.read_values_into(&mut store, &mut [(&blob_a, &mut out_a[..])]),
        Err(Error::ValueChanged)
    ));
}

/// `(refs, chunk rows naming it)` of every content row, in content-id order.
fn content_refs(vault: &Kv) -> Vec<(i64, i64)> {
    let t = vault.table().name().to_string();
    let mut store = vault.store();
    let conn = store.conn().unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT refs, (SELECT count(*) FROM \"{t}__chunks\" k WHERE k.cid = c.cid) \
             FROM \"{t}__content\" c ORDER BY cid"
        ))
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    rows
}

#[test]
fn new_content_is_stored_with_its_reference_counted_once() {
    use kvault::codec::Compression;
    // Small chunks take the cached statement; 256 KiB and more the borrowed insert; the
    // compressed table the coded statement.
    for (chunk, compression) in [(100, None), (300 << 10, None), (300 << 10, Some("zstd"))] {
        let dir = tempfile::tempdir().unwrap();
        let vault = Kv::open_with(
            dir.path().join("v.db"),
            StoreOptions::default(),
            "kv",
            chunk,
        )
        .unwrap();
        if let Some(codec) = compression {
            vault
                .table()
                .set_compression(&mut vault.store(), Compression::parse(codec).unwrap())
                .unwrap();
        }
        let a: Vec<u8> = (0..3).flat_map(|i| pattern(chunk, i)).collect();
        vault.put(b"a", &a).unwrap();
        assert_eq!(content_refs(&vault), vec![(1, 1); 3], "chunk {chunk}");
        // The same chunks again: deduplicated, one more reference each.
        vault.put(b"b", &a).unwrap();
        assert_eq!(content_refs(&vault), vec![(2, 2); 3], "chunk {chunk}");
        // A value repeating one new chunk: stored once, counted per chunk row.
        let same: Vec<u8> = (0..4).flat_map(|_| pattern(chunk, 9)).collect();
        let mut writer = BlobWriter::new(vault.table().clone(), None);
        writer.write(&mut vault.store(), &same).unwrap();
        writer
            .finish_with(
                &mut vault.store(),
                b"c",
                KeyKind::Bytes,
                PutOptions::default(),
            )
            .unwrap();
        assert_eq!(
            content_refs(&vault),
            vec![(2, 2), (2, 2), (2, 2), (4, 4)],
            "chunk {chunk}"
        );
        assert_eq!(vault.get(b"c").unwrap().unwrap(), same);
        assert!(vault.delete(b"a").unwrap());
        assert_eq!(content_refs(&vault), vec![(1, 1), (1, 1), (1, 1), (4, 4)]);
        assert!(vault.delete(b"b").unwrap());
        assert!(vault.delete(b"c").unwrap());
        assert_eq!(content_refs(&vault), vec![]);
        // Content ids freed at the end are chosen again, as SQLite would: values still read.
        vault.put(b"d", &a).unwrap();
        assert_eq!(vault.get(b"d").unwrap().unwrap(), a);
        assert_eq!(content_refs(&vault), vec![(1, 1); 3]);
        assert_eq!(vault.vault().check().unwrap(), Vec::<String>::new());
    }
}
