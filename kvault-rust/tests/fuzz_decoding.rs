//! Property-based fuzzing of the key-value decoding paths: opening arbitrary and bit-flipped
//! files (header, meta and schema parsing), and reassembling values whose chunk and content rows
//! were damaged. Every outcome must be a value or an error, never a panic, and a value that is
//! returned must have its recorded length. Run longer with
//! `PROPTEST_CASES=5000 cargo test -p kvault --test fuzz_decoding`.

use kvault::{KeyKind, Kv, StoreOptions};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn exercise(vault: &Kv) {
    let _ = vault.len();
    let table = vault.table().clone();
    let _ = table.scan_keys(&mut vault.store(), &kvault::KeyRange::default(), 100);
    for key in [b"small".as_slice(), b"big", b"other"] {
        if let Ok(Some(value)) = vault.get(key) {
            if let Ok(Some(info)) = table.info(&mut vault.store(), key) {
                assert_eq!(
                    value.len() as u64,
                    info.size,
                    "a returned value has its recorded size"
                );
            }
        }
        if let Ok(Some(mut reader)) = vault.reader(key) {
            let mut buf = vec![0u8; 100];
            reader.seek(5);
            let _ = reader.read(&mut vault.store(), &mut buf);
        }
    }
    let _ = vault.put(b"new", &[1u8; 300]);
    let _ = vault.delete(b"big");
    let _ = table.check(&mut vault.store());
    let _ = vault.store().integrity_problems();
}

fn sample_file(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("sample.db");
    {
        let vault = Kv::open_with(&path, StoreOptions::default(), "kvault", 64).unwrap();
        vault.put(b"small", b"hello").unwrap();
        vault
            .put(
                b"big",
                &(0..1000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
            )
            .unwrap();
        vault.put(b"other", &[7u8; 200]).unwrap();
        vault.store().checkpoint().unwrap();
    }
    std::fs::read(&path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_are_refused_or_opened_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("random.db");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(vault) = Kv::open(&path) {
            exercise(&vault);
        }
    }

    #[test]
    fn bit_flipped_vaults_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = sample_file(dir.path());
        for (at, mask) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        let path = dir.path().join("flipped.db");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(vault) = Kv::open_with(&path, StoreOptions::default(), "kvault", 64) {
            exercise(&vault);
        }
    }

    #[test]
    fn damaged_chunk_rows_never_panic(kind in 0usize..6, value_len in 65usize..2000) {
        let vault = Kv::open_with(":memory:", StoreOptions::default(), "kvault", 64).unwrap();
        let value: Vec<u8> = (0..value_len).map(|i| (i * 7 % 256) as u8).collect();
        let table = vault.table().clone();
        table.put(&mut vault.store(), b"big", KeyKind::Bytes, &value).unwrap();
        let sql = match kind {
            0 => "DELETE FROM kvault__chunks WHERE id = (SELECT min(id) FROM kvault__chunks)",
            1 => "UPDATE kvault__content SET data = x'0102' WHERE cid = (SELECT min(cid) FROM kvault__content)",
            2 => "UPDATE kvault__chunks SET cid = 999999",
            3 => "UPDATE kvault SET size = size * 3 WHERE key = x'626967'",
            4 => "UPDATE kvault SET chunk_size = 0 WHERE key = x'626967'",
            _ => "UPDATE kvault SET chunk_size = -5, size = -1 WHERE key = x'626967'",
        };
        vault.store().conn().unwrap().execute_batch(sql).unwrap();
        exercise(&vault);
    }
}
