//! Compressed chunks in key-value tables: round trips, mixed codecs in one file, seeks into
//! compressed values, incompressible data stored as it is, damage found by `check()`.

use kvault::codec::Compression;
use kvault::{Error, Kv, StoreOptions, Vault, BASE_FORMAT_VERSION, COMPRESSION_FORMAT_VERSION};

/// Text-like bytes that compress well (a log).
fn log_lines(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 80);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "2026-12-02T13:{:02}:{:02} INFO worker={} step={} loss={:.4}\n",
                i % 60,
                i % 7,
                i % 5,
                i,
                1.0 / (1.0 + i as f64)
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// Bytes that do not compress (already compressed media).
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn stored_codecs(kv: &Kv) -> Vec<i64> {
    let t = kv.table().name().to_string();
    let mut store = kv.store();
    let conn = store.conn().unwrap();
    let mut stmt = conn
        .prepare(&format!("SELECT codec FROM \"{t}__content\" ORDER BY cid"))
        .unwrap();
    let codes = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<Vec<i64>>>()
        .unwrap();
    codes
}

fn open(path: &std::path::Path, chunk: usize) -> Kv {
    Kv::open_with(path, StoreOptions::default(), "kv", chunk).unwrap()
}

#[test]
fn compressed_values_round_trip_and_take_less_space() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(&dir.path().join("v.db"), 64 << 10);
    assert_eq!(kv.table().compression(), None);
    kv.table()
        .set_compression(&mut kv.store(), Compression::parse("zstd").unwrap())
        .unwrap();
    let value = log_lines(1_000_000, 1);
    kv.put(b"log", &value).unwrap();
    assert_eq!(kv.get(b"log").unwrap().unwrap(), value);
    let stats = kv.table().stats(&mut kv.store()).unwrap();
    assert_eq!(stats.chunk_bytes, value.len() as u64);
    assert!(
        stats.content_bytes * 4 < stats.chunk_bytes,
        "{} stored for {}",
        stats.content_bytes,
        stats.chunk_bytes
    );
    assert!(stored_codecs(&kv).iter().all(|&c| c == 1));
    assert_eq!(kv.vault().check().unwrap(), Vec::<String>::new());
    assert_eq!(
        kv.store().format_version().unwrap(),
        COMPRESSION_FORMAT_VERSION
    );
}

#[test]
fn a_file_without_compression_keeps_its_format_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(&dir.path().join("v.db"), 1024);
    kv.put(b"k", &log_lines(10_000, 2)).unwrap();
    assert_eq!(kv.store().format_version().unwrap(), BASE_FORMAT_VERSION);
    let columns: i64 = kv
        .store()
        .conn()
        .unwrap()
        .query_row(
            "SELECT count(*) FROM pragma_table_info('kv__content') WHERE name = 'codec'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(columns, 0);
}

#[test]
fn codecs_mix_in_one_file_and_every_value_reads_back_after_the_setting_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let mut expected = Vec::new();
    {
        let kv = open(&path, 4096);
        for (i, setting) in ["none", "zstd:1", "zstd:19:0.2", "lz4"].iter().enumerate() {
            kv.table()
                .set_compression(&mut kv.store(), Compression::parse(setting).unwrap())
                .unwrap();
            let value = log_lines(50_000 + i * 777, i as u64);
            let key = format!("v{i}");
            kv.put(key.as_bytes(), &value).unwrap();
            expected.push((key, value));
        }
    }
    // Reopened: the last setting is the recorded one, and every value reads by its own code.
    let kv = open(&path, 4096);
    assert_eq!(kv.table().compression(), Compression::parse("lz4").unwrap());
    for (key, value) in &expected {
        assert_eq!(&kv.get(key.as_bytes()).unwrap().unwrap(), value, "{key}");
    }
    let codes = stored_codecs(&kv);
    for code in [0, 1, 2] {
        assert!(codes.contains(&code), "{codes:?}");
    }
    assert_eq!(kv.vault().check().unwrap(), Vec::<String>::new());
}

#[test]
fn incompressible_chunks_are_stored_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(&dir.path().join("v.db"), 16 << 10);
    kv.table()
        .set_compression(&mut kv.store(), Compression::parse("zstd").unwrap())
        .unwrap();
    let media = noise(200_000, 7);
    kv.put(b"jpeg", &media).unwrap();
    assert_eq!(kv.get(b"jpeg").unwrap().unwrap(), media);
    assert!(stored_codecs(&kv).iter().all(|&c| c == 0));
}

#[test]
fn seeks_into_compressed_values_read_the_right_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(&dir.path().join("v.db"), 10_000);
    kv.table()
        .set_compression(&mut kv.store(), Compression::parse("zstd").unwrap())
        .unwrap();
    let value = log_lines(123_457, 3);
    kv.put(b"k", &value).unwrap();
    let mut reader = kv.reader(b"k").unwrap().unwrap();
    for (pos, len) in [
        (0u64, 10usize),
        (9_995, 10),
        (50_000, 30_000),
        (123_450, 100),
        (77, 1),
    ] {
        reader.seek(pos);
        let mut buf = vec![0u8; len];
        let n = reader.read(&mut kv.store(), &mut buf).unwrap();
        let end = (pos as usize + len).min(value.len());
        assert_eq!(&buf[..n], &value[pos as usize..end], "at {pos}");
    }
}

#[test]
fn deduplicated_chunks_are_shared_across_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(&dir.path().join("v.db"), 8192);
    let value = log_lines(8192 * 5, 4);
    kv.put(b"plain", &value).unwrap();
    kv.table()
        .set_compression(&mut kv.store(), Compression::parse("zstd").unwrap())
        .unwrap();
    kv.put(b"again", &value).unwrap();
    let stats = kv.table().stats(&mut kv.store()).unwrap();
    assert_eq!(stats.unique_chunks, 5, "the second copy adds no contents");
    assert_eq!(kv.get(b"again").unwrap().unwrap(), value);
    assert!(kv.delete(b"plain").unwrap());
    assert_eq!(kv.get(b"again").unwrap().unwrap(), value);
    assert_eq!(kv.vault().check().unwrap(), Vec::<String>::new());
}

#[test]
fn a_handle_opened_before_compression_started_reads_compressed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let old = open(&path, 4096);
    old.put(b"before", &log_lines(20_000, 5)).unwrap();
    // Another vault on the same file (as another process) turns compression on and writes.
    let other = Vault::open_with(&path, StoreOptions::default()).unwrap();
    let writer = other.kv_with("kv", 4096).unwrap();
    writer
        .table()
        .set_compression(&mut writer.store(), Compression::parse("zstd").unwrap())
        .unwrap();
    let value = log_lines(30_000, 6);
    writer.put(b"after", &value).unwrap();
    assert_eq!(old.get(b"after").unwrap().unwrap(), value);
    let mut reader = old.reader(b"after").unwrap().unwrap();
    reader.seek(12_345);
    let mut buf = [0u8; 100];
    assert_eq!(reader.read(&mut old.store(), &mut buf).unwrap(), 100);
    assert_eq!(&buf[..], &value[12_345..12_445]);
}

#[test]
fn damaged_compressed_contents_are_reported_and_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(&dir.path().join("v.db"), 4096);
    kv.table()
        .set_compression(&mut kv.store(), Compression::parse("zstd").unwrap())
        .unwrap();
    kv.put(b"k", &log_lines(40_000, 8)).unwrap();
    kv.store()
        .conn()
        .unwrap()
        .execute_batch(
            "UPDATE kv__content SET data = substr(data, 1, length(data) / 2) \
             WHERE cid = (SELECT min(cid) FROM kv__content)",
        )
        .unwrap();
    assert!(matches!(kv.get(b"k"), Err(Error::Corrupted(_))));
    let problems = kv.vault().check().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("do not match their BLAKE3 hash")),
        "{problems:?}"
    );
    kv.store()
        .conn()
        .unwrap()
        .execute_batch("UPDATE kv__content SET codec = 99")
        .unwrap();
    let err = kv.get(b"k").unwrap_err();
    assert!(err.to_string().contains("compression code 99"), "{err}");
}

#[test]
fn bad_settings_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(&dir.path().join("v.db"), 4096);
    for bad in ["brotli", "zstd:99", "lz4:5", "zstd:3:-1"] {
        assert!(matches!(
            Compression::parse(bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    let mut setting = Compression::parse("zstd").unwrap().unwrap();
    setting.min_saving = 2.0;
    assert!(kv
        .table()
        .set_compression(&mut kv.store(), Some(setting))
        .is_err());
    assert_eq!(kv.table().compression(), None);
    assert_eq!(kv.store().format_version().unwrap(), BASE_FORMAT_VERSION);
}
