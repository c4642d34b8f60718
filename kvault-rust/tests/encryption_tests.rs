//! Encryption at rest (the `encryption` feature, SQLCipher): keys, refusals that write nothing,
//! the SQLite features the crates rely on, and a build without the feature refusing a key.

use kvault::{Error, Key, Location, Store, StoreOptions};

fn keyed(key: Key) -> StoreOptions {
    StoreOptions {
        key: Some(key),
        ..StoreOptions::default()
    }
}

fn passphrase(text: &str) -> Key {
    Key::passphrase(text).unwrap()
}

#[test]
fn keys_are_checked_and_never_printed() {
    assert!(matches!(
        Key::passphrase(""),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(Key::raw(&[1; 31]), Err(Error::InvalidArgument(_))));
    let raw = Key::raw(&[0xAB; 32]).unwrap();
    assert!(raw.is_raw());
    let shown = format!("{:?} {:?}", raw, passphrase("hunter2"));
    assert!(
        !shown.contains("hunter2") && !shown.contains("AB"),
        "{shown}"
    );
    assert!(!format!("{:?}", keyed(passphrase("hunter2"))).contains("hunter2"));
}

#[cfg(not(feature = "encryption"))]
#[test]
fn a_build_without_encryption_refuses_a_key_and_creates_nothing() {
    assert!(!kvault::encryption_available());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let err = Store::open(Location::File(path.clone()), keyed(passphrase("k"))).unwrap_err();
    assert!(matches!(err, Error::EncryptionUnavailable), "{err}");
    assert!(err.to_string().contains("no encryption"));
    assert!(!path.exists());
}

#[cfg(feature = "encryption")]
mod with_encryption {
    use super::*;
    use kvault::Vault;

    fn files(path: &std::path::Path) -> Vec<Option<Vec<u8>>> {
        ["", "-wal"]
            .iter()
            .map(|suffix| std::fs::read(format!("{}{suffix}", path.display())).ok())
            .collect()
    }

    #[test]
    fn the_sqlite_features_the_crates_use_are_compiled_in() {
        assert!(kvault::encryption_available());
        let mut store = Store::open_in_memory().unwrap();
        let conn = store.conn().unwrap();
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for wanted in ["ENABLE_FTS5", "HAS_CODEC", "THREADSAFE=1", "ENABLE_STAT4"] {
            assert!(
                options.iter().any(|o| o == wanted),
                "{wanted} missing from {options:?}"
            );
        }
        conn.execute_batch(
            "CREATE VIRTUAL TABLE t USING fts5(body, tokenize='porter'); \
             INSERT INTO t VALUES ('encrypted cats running');",
        )
        .unwrap();
        let hits: i64 = conn
            .query_row("SELECT count(*) FROM t WHERE t MATCH 'run'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(hits, 1);
        let json: i64 = conn
            .query_row("SELECT json_extract('{\"a\": 2}', '$.a')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(json, 2);
        let cipher: String = conn
            .query_row("PRAGMA cipher_version", [], |r| r.get(0))
            .unwrap();
        eprintln!("SQLite {}, SQLCipher {cipher}", kvault::sqlite_version());
    }

    #[test]
    fn an_encrypted_vault_round_trips_and_refuses_other_keys_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let marker = b"PLAINTEXT-MARKER-rust".repeat(100);
        {
            let vault = Vault::open_with(&path, keyed(passphrase("right"))).unwrap();
            let kv = vault.kv("kv").unwrap();
            kv.put(b"small", &marker).unwrap();
            kv.put(b"big", &marker.repeat(1000)).unwrap();
            let on_disk = files(&path);
            for data in on_disk.iter().flatten() {
                assert!(!data.windows(marker.len()).any(|w| w == &marker[..]));
            }
            // Refused while another connection holds the file, and after it closed.
            for key in [Some(passphrase("wrong")), Some(Key::raw(&[7; 32]).unwrap())] {
                let options = StoreOptions {
                    key,
                    ..StoreOptions::default()
                };
                let err = Store::open(Location::File(path.clone()), options).unwrap_err();
                assert!(matches!(err, Error::WrongKey(_)), "{err}");
            }
            assert!(vault.check().unwrap().is_empty());
        }
        let before = files(&path);
        let err =
            Store::open(Location::File(path.clone()), keyed(passphrase("wrong"))).unwrap_err();
        assert!(matches!(err, Error::WrongKey(_)), "{err}");
        let err = Store::open(Location::File(path.clone()), StoreOptions::default()).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupted(m) if m.contains("open it with its key")),
            "{err}"
        );
        assert_eq!(files(&path), before);
        let vault = Vault::open_with(&path, keyed(passphrase("right"))).unwrap();
        let kv = vault.kv("kv").unwrap();
        assert_eq!(kv.get(b"small").unwrap().unwrap(), marker);
        assert_eq!(kv.get(b"big").unwrap().unwrap().len(), marker.len() * 1000);
        // Made like a plain file: incremental auto-vacuum from its first page.
        let auto_vacuum: i64 = vault
            .store()
            .conn()
            .unwrap()
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto_vacuum, 2);
    }

    #[test]
    fn each_encrypted_file_has_its_own_random_salt() {
        // The first 16 bytes of an encrypted file are the salt of its key derivation (and of
        // the MAC key). Files created with one passphrase must still get different keys.
        let dir = tempfile::tempdir().unwrap();
        let mut salts = Vec::new();
        for name in ["a.db", "b.db", "c.db"] {
            let path = dir.path().join(name);
            let vault = Vault::open_with(&path, keyed(passphrase("same"))).unwrap();
            vault.kv("kv").unwrap().put(b"k", &[1; 10_000]).unwrap();
            vault.close().unwrap();
            let salt = std::fs::read(&path).unwrap()[..16].to_vec();
            assert_ne!(salt, vec![0; 16], "{name} has an all-zero salt");
            salts.push(salt);
        }
        salts.sort();
        salts.dedup();
        assert_eq!(salts.len(), 3, "two files share a salt");
    }

    #[test]
    fn a_key_for_a_plain_file_and_odd_page_sizes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.db");
        Vault::open(&path)
            .unwrap()
            .kv("kv")
            .unwrap()
            .put(b"k", b"v")
            .unwrap();
        let before = files(&path);
        let err = Store::open(Location::File(path.clone()), keyed(passphrase("k"))).unwrap_err();
        assert!(
            matches!(&err, Error::WrongKey(m) if m.contains("not encrypted")),
            "{err}"
        );
        assert_eq!(files(&path), before);
        let options = StoreOptions {
            page_size: 8192,
            ..keyed(passphrase("k"))
        };
        let fresh = dir.path().join("fresh.db");
        let err = Store::open(Location::File(fresh.clone()), options).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(!fresh.exists());
        let err = Store::open(Location::Memory, keyed(passphrase("k"))).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }

    #[test]
    fn rekey_and_backup_keep_the_file_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let vault = Vault::open_with(&path, keyed(passphrase("old"))).unwrap();
        let kv = vault.kv("kv").unwrap();
        kv.put(b"k", &[5; 100_000]).unwrap();
        vault.rekey(Key::raw(&[9; 32]).unwrap()).unwrap();
        kv.put(b"after", b"rekey").unwrap();
        let copy = dir.path().join("copy.db");
        vault.backup_to(&copy).unwrap();
        vault.close().unwrap();
        for file in [&path, &copy] {
            let err =
                Store::open(Location::File(file.clone()), keyed(passphrase("old"))).unwrap_err();
            assert!(matches!(err, Error::WrongKey(_)), "{err}");
            let vault = Vault::open_with(file, keyed(Key::raw(&[9; 32]).unwrap())).unwrap();
            let kv = vault.kv("kv").unwrap();
            assert_eq!(kv.get(b"after").unwrap().unwrap(), b"rekey");
            assert_eq!(kv.get(b"k").unwrap().unwrap(), vec![5; 100_000]);
            assert!(vault.check().unwrap().is_empty());
        }
        let plain = Vault::open(dir.path().join("plain.db")).unwrap();
        let err = plain.rekey(passphrase("new")).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
}
