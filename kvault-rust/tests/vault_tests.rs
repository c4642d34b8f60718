//! The shared open file (`Vault`): one connection for every table and thread, explicit
//! transactions as guards that other threads wait for, read leases ended by the vault itself
//! when it goes idle, and file-level `check` over every attached table kind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvault::{Clock, KeyKind, Store, StoreOptions, TableKind, Vault};

fn leased_vault(dir: &tempfile::TempDir) -> Vault {
    let options = StoreOptions {
        read_lease: Some(Duration::from_millis(2)),
        ..StoreOptions::default()
    };
    Vault::open_with(dir.path().join("v.db"), options).unwrap()
}

#[test]
fn an_idle_read_lease_is_ended_by_the_vault_without_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let vault = leased_vault(&dir);
    let kv = vault.kv("kv").unwrap();
    kv.put(b"a", b"1").unwrap();
    assert_eq!(kv.get(b"a").unwrap().unwrap(), b"1");
    assert!(vault.store().has_read_lease());
    // Nothing else is called: the reaper must end the lease once it is idle and old enough.
    let deadline = Instant::now() + Duration::from_secs(5);
    while vault.store().has_read_lease() {
        assert!(Instant::now() < deadline, "the idle lease was never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_dropped_transaction_rolls_back_and_a_committed_one_spans_tables() {
    let vault = Vault::open_in_memory().unwrap();
    let media = vault.kv("media").unwrap();
    let meta = vault.kv("meta").unwrap();
    {
        let _tx = vault.transaction().unwrap();
        media.put(b"a", b"1").unwrap();
        meta.put(b"a", b"x").unwrap();
    }
    assert_eq!(media.get(b"a").unwrap(), None);
    assert_eq!(meta.get(b"a").unwrap(), None);
    let tx = vault.transaction().unwrap();
    media.put(b"a", b"1").unwrap();
    let inner = vault.transaction().unwrap();
    assert_eq!(inner.depth(), 2);
    meta.put(b"a", b"x").unwrap();
    inner.rollback().unwrap();
    tx.commit().unwrap();
    assert_eq!(media.get(b"a").unwrap().unwrap(), b"1");
    assert_eq!(meta.get(b"a").unwrap(), None);
    assert_eq!(vault.transaction_depth(), 0);
}

#[test]
fn another_thread_waits_for_an_open_transaction_to_end() {
    let vault = Vault::open_in_memory().unwrap();
    let kv = vault.kv("kv").unwrap();
    let tx = vault.transaction().unwrap();
    kv.put(b"k", b"inside").unwrap();
    let other = kv.clone();
    let reader = std::thread::spawn(move || other.get(b"k").unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !reader.is_finished(),
        "the other thread ran inside the transaction"
    );
    tx.rollback().unwrap();
    assert_eq!(reader.join().unwrap(), None);
}

#[test]
fn the_vault_clock_times_every_table() {
    let vault = Vault::open_in_memory().unwrap();
    let kv = vault.kv("kv").unwrap();
    let t = 4_102_444_800_000; // 2100-01-01
    vault.set_clock(Clock::fixed(t));
    assert_eq!(vault.now_ms(), t);
    kv.put(b"k", b"v").unwrap();
    let info = kv.table().info(&mut kv.store(), b"k").unwrap().unwrap();
    assert_eq!((info.created_at_ms, info.updated_at_ms), (t, t));
    vault.set_clock(Clock::system());
    assert!(vault.now_ms() < t);
}

struct Broken;

impl TableKind for Broken {
    fn key(&self) -> String {
        "broken".into()
    }
    fn check_order(&self) -> u32 {
        9
    }
    fn check(&self, _store: &mut Store) -> kvault::Result<Vec<String>> {
        Ok(vec!["broken: always".into()])
    }
}

#[test]
fn check_covers_every_attached_table_kind_once() {
    let vault = Vault::open_in_memory().unwrap();
    let kv = vault.kv("kv").unwrap();
    kv.table()
        .put(&mut kv.store(), b"k", KeyKind::Str, b"v")
        .unwrap();
    assert_eq!(vault.check().unwrap(), Vec::<String>::new());
    vault.attach(Arc::new(Broken));
    vault.attach(Arc::new(Broken));
    assert_eq!(vault.check().unwrap(), vec!["broken: always".to_string()]);
}

#[test]
fn closing_through_one_handle_closes_the_file_for_all() {
    let vault = Vault::open_in_memory().unwrap();
    let kv = vault.kv("kv").unwrap();
    let clone = vault.clone();
    assert!(clone.same_file(&vault));
    clone.close().unwrap();
    assert!(vault.is_closed());
    assert!(matches!(kv.get(b"k"), Err(kvault::Error::Closed(_))));
}
