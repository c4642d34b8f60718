//! Read leases (`StoreOptions::read_lease`): reads in quick succession share one read
//! transaction. They must still see every commit, never hold a write, and give way to
//! explicit transactions; an idle lease holds back other connections' checkpoints until it is
//! ended, which is why whoever enables leases must end them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kvault::{KeyKind, Kv, StoreOptions};

fn leased(path: &Path, limit: Duration) -> Kv {
    let options = StoreOptions {
        read_lease: Some(limit),
        ..StoreOptions::default()
    };
    Kv::open_with(path, options, "kv", 1 << 20).unwrap()
}

fn plain(path: &Path) -> Kv {
    Kv::open_with(path, StoreOptions::default(), "kv", 1 << 20).unwrap()
}

/// A file vault with leases of at most `limit`, holding "a" = "1" and a lease from reading it.
fn holding_a_lease(limit: Duration) -> (tempfile::TempDir, PathBuf, Kv) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let vault = leased(&path, limit);
    vault.put(b"a", b"1").unwrap();
    assert_eq!(vault.get(b"a").unwrap().unwrap(), b"1");
    assert!(vault.store().has_read_lease());
    (dir, path, vault)
}

#[test]
fn reads_share_a_lease_and_still_see_other_connections_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let reader = leased(&path, Duration::from_secs(60));
    let writer = plain(&path);
    writer.put(b"k", b"1").unwrap();
    assert_eq!(reader.get(b"k").unwrap().unwrap(), b"1");
    assert!(reader.store().has_read_lease());
    for round in 2..6u8 {
        let value = [b'0' + round];
        writer.put(b"k", &value).unwrap();
        assert_eq!(reader.get(b"k").unwrap().unwrap(), value, "round {round}");
        assert!(reader.store().has_read_lease());
    }
    writer.put(b"new", b"x").unwrap();
    let table = reader.table().clone();
    assert!(table.exists(&mut reader.store(), b"new").unwrap());
    assert_eq!(reader.len().unwrap(), 2);
    assert_eq!(table.version(&mut reader.store(), b"k").unwrap(), Some(5));
}

#[test]
fn a_write_ends_the_lease_and_is_committed_at_once() {
    let (_dir, path, vault) = holding_a_lease(Duration::from_secs(60));
    vault.put(b"a", b"2").unwrap();
    assert!(!vault.store().has_read_lease());
    // Visible to another connection without any further call on the writer.
    assert_eq!(plain(&path).get(b"a").unwrap().unwrap(), b"2");
    // Its own next read sees it too.
    assert_eq!(vault.get(b"a").unwrap().unwrap(), b"2");
}

#[test]
fn a_write_made_inside_a_lease_read_is_committed_not_left_open() {
    let (_dir, path, vault) = holding_a_lease(Duration::from_secs(60));
    let table = vault.table().name().to_owned();
    vault
        .store()
        .read_latest(|conn| {
            conn.execute(
                &format!("DELETE FROM \"{table}\" WHERE key = CAST('a' AS BLOB)"),
                [],
            )?;
            Ok(())
        })
        .unwrap();
    assert!(!vault.store().has_read_lease());
    assert_eq!(plain(&path).get(b"a").unwrap(), None);
}

#[test]
fn explicit_transactions_end_the_lease_first() {
    let (_dir, path, vault) = holding_a_lease(Duration::from_secs(60));
    vault.store().begin().unwrap();
    assert!(!vault.store().has_read_lease());
    let table = vault.table().clone();
    table
        .put(&mut vault.store(), b"b", KeyKind::Bytes, b"2")
        .unwrap();
    // Reads inside the transaction see its writes and take no lease.
    assert_eq!(vault.get(b"b").unwrap().unwrap(), b"2");
    assert!(!vault.store().has_read_lease());
    vault.store().commit().unwrap();
    assert_eq!(plain(&path).get(b"b").unwrap().unwrap(), b"2");
}

#[test]
fn old_leases_are_not_reused_and_can_be_ended_when_idle() {
    let limit = Duration::from_millis(20);
    let (_dir, _path, vault) = holding_a_lease(limit);
    std::thread::sleep(limit + Duration::from_millis(10));
    // The read renews the lease: a young one survives the idle check.
    assert_eq!(vault.get(b"a").unwrap().unwrap(), b"1");
    assert!(vault.store().end_read_lease_older_than(limit));
    std::thread::sleep(limit + Duration::from_millis(10));
    assert!(!vault.store().end_read_lease_older_than(limit));
    assert!(!vault.store().has_read_lease());
}

/// The reason leases must be ended: while one is open, another connection cannot finish a
/// checkpoint (the WAL is not emptied); once it ends, it can.
#[test]
fn an_open_lease_holds_back_checkpoints_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let reader = leased(&path, Duration::from_secs(60));
    let mut writer = plain(&path);
    writer.put(b"a", b"1").unwrap();
    writer.store().checkpoint().unwrap();
    reader.get(b"a").unwrap();
    writer.put(b"a", b"2").unwrap();
    let truncate = |vault: &Kv| -> i64 {
        vault
            .store()
            .conn()
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap()
    };
    let wal = path.with_extension("db-wal");
    assert_eq!(truncate(&mut writer), 1, "busy while the lease is open");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    reader.store().end_read_lease();
    assert_eq!(truncate(&mut writer), 0);
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
}

#[test]
fn stores_without_a_commit_token_read_without_leases() {
    let options = StoreOptions {
        read_lease: Some(Duration::from_secs(60)),
        ..StoreOptions::default()
    };
    let vault = Kv::open_with(":memory:", options, "kv", 1 << 20).unwrap();
    vault.put(b"a", b"1").unwrap();
    assert_eq!(vault.get(b"a").unwrap().unwrap(), b"1");
    assert!(!vault.store().has_read_lease());
}
