//! WAL checkpoints: bulk writes are copied back by a background thread, small commits keep the
//! WAL short, closing leaves no WAL behind, and a process killed mid-checkpoint loses nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kvault::{KeyKind, Kv, PutItem, StoreOptions};

const PAGE_FRAME_BYTES: u64 = 4096 + 24;

fn key(batch: usize, i: usize) -> Vec<u8> {
    format!("b{batch:03}-k{i:06}").into_bytes()
}

/// An 800-byte value, distinct per (batch, i), stored inline (it fits a 4 KiB page's row).
fn value(batch: usize, i: usize) -> Vec<u8> {
    let seed = (batch * 31 + i) as u8;
    let mut v: Vec<u8> = format!("{batch:06}:{i:08}").into_bytes();
    v.extend((v.len()..800).map(|j| (j as u8).wrapping_mul(7) ^ seed));
    v
}

/// Writes one batch of `n` 800-byte values in one transaction (about n/4.5 WAL frames).
fn put_batch(vault: &Kv, batch: usize, n: usize) {
    let keys: Vec<Vec<u8>> = (0..n).map(|i| key(batch, i)).collect();
    let values: Vec<Vec<u8>> = (0..n).map(|i| value(batch, i)).collect();
    let items: Vec<PutItem<'_>> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| PutItem::new(k, KeyKind::Bytes, v))
        .collect();
    let table = vault.table().clone();
    table.put_many(&mut vault.store(), &items).unwrap();
}

fn check_batch(vault: &Kv, batch: usize, n: usize) {
    for i in 0..n {
        assert_eq!(
            vault.get(&key(batch, i)).unwrap().as_deref(),
            Some(value(batch, i).as_slice()),
            "batch {batch} item {i}"
        );
    }
}

/// A new vault in its own temporary directory (kept alive by the returned guard).
fn fresh_vault() -> (tempfile::TempDir, PathBuf, Kv) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let vault = Kv::open(&db).unwrap();
    (dir, db, vault)
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[cfg(target_os = "linux")]
fn checkpoint_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "amber-ckpt")
        .count()
}

#[test]
fn a_bulk_write_is_copied_back_without_the_writer() {
    let (_dir, db, vault) = fresh_vault();
    put_batch(&vault, 0, 20_000); // about 17 MB: 4,000 frames in one commit
    assert!(vault.store().wait_for_checkpoints(Duration::from_secs(30)));
    // The pages reached the main file although the writer neither closed nor checkpointed.
    assert!(file_len(&db) >= 16_000_000, "main file {}", file_len(&db));
    assert!(file_len(&wal_path(&db)) > 0, "the WAL is still in use");
    check_batch(&vault, 0, 20_000);
}

/// Child side of the thread test: alone in its process, so the thread count is its own.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "child process of the_thread_starts_with_a_bulk_write_and_ends_on_close"]
fn thread_child() {
    let Ok(path) = std::env::var("KVAULT_CHECKPOINT_THREAD_PATH") else {
        return; // Not the child: nothing to do.
    };
    let db = PathBuf::from(path);
    let vault = Kv::open(&db).unwrap();
    for i in 0..50 {
        vault.put(format!("small{i}").as_bytes(), b"x").unwrap();
    }
    assert_eq!(checkpoint_threads(), 0, "small commits need no thread");
    put_batch(&vault, 0, 5_000);
    // The thread names itself once it runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while checkpoint_threads() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(checkpoint_threads(), 1, "a bulk write starts the thread");
    put_batch(&vault, 1, 5_000);
    assert_eq!(checkpoint_threads(), 1, "one thread per vault");
    vault.close().unwrap();
    assert_eq!(checkpoint_threads(), 0, "closing ends the thread");
    assert!(!wal_path(&db).exists(), "closing must remove the WAL");
}

#[cfg(target_os = "linux")]
#[test]
fn the_thread_starts_with_a_bulk_write_and_ends_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "thread_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KVAULT_CHECKPOINT_THREAD_PATH", dir.path().join("v.db"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A filter that matched nothing would also exit 0: the child must really have run.
    assert!(
        stdout.contains("test thread_child ... ok"),
        "the child test did not run: {stdout}"
    );
}

#[test]
fn small_commits_keep_the_wal_short() {
    let (_dir, db, vault) = fresh_vault();
    let mut longest = 0;
    for i in 0..20_000u32 {
        vault.put(format!("k{i}").as_bytes(), &[7u8; 100]).unwrap();
        if i % 500 == 0 {
            longest = longest.max(file_len(&wal_path(&db)));
        }
    }
    longest = longest.max(file_len(&wal_path(&db)));
    // Without checkpoints the 20,000 commits would leave more than 40,000 frames (160 MB).
    assert!(
        longest < 3 * 1000 * PAGE_FRAME_BYTES,
        "WAL grew to {longest} bytes"
    );
    assert_eq!(vault.len().unwrap(), 20_000);
}

#[test]
fn back_to_back_bulk_commits_keep_the_wal_bounded() {
    let (_dir, db, vault) = fresh_vault();
    let mut longest = 0;
    for batch in 0..300 {
        // 200 values of 800 bytes: about 45 frames, a bulk commit; 55 MB of frames in all.
        put_batch(&vault, batch, 200);
        longest = longest.max(file_len(&wal_path(&db)));
    }
    // Once the WAL holds INLINE_CHECKPOINT_FRAMES, a commit waits for the thread and copies the
    // rest itself, so the next one rewinds the WAL.
    let bound = (kvault::INLINE_CHECKPOINT_FRAMES as u64 + 1000) * PAGE_FRAME_BYTES;
    assert!(
        longest <= bound,
        "WAL grew to {longest} bytes (bound {bound})"
    );
    for batch in [0, 170, 299] {
        check_batch(&vault, batch, 200);
    }
}

#[test]
fn reads_during_background_checkpoints_see_every_commit() {
    let (_dir, db, vault) = fresh_vault();
    for batch in 0..6 {
        put_batch(&vault, batch, 3_000);
        // Read right away, while the thread is likely still copying.
        check_batch(&vault, batch, 3_000);
        vault
            .put(format!("after{batch}").as_bytes(), b"small")
            .unwrap();
    }
    for batch in 0..6 {
        check_batch(&vault, batch, 3_000);
    }
    vault.close().unwrap();
    let reopened = Kv::open(&db).unwrap();
    for batch in 0..6 {
        check_batch(&reopened, batch, 3_000);
    }
    assert_eq!(reopened.len().unwrap(), 6 * 3_000 + 6);
}

/// Child side of the crash test: writes bulk batches and SIGKILLs itself right after the last
/// one is acknowledged, while its checkpoint is in flight.
#[cfg(unix)]
#[test]
#[ignore = "child process of a_process_killed_during_a_checkpoint_loses_no_acknowledged_write"]
fn checkpoint_crash_child() {
    let Ok(path) = std::env::var("KVAULT_CHECKPOINT_CRASH_PATH") else {
        return; // Not the child: nothing to do.
    };
    let vault = Kv::open(Path::new(&path)).unwrap();
    for batch in 0..4 {
        put_batch(&vault, batch, 4_000);
    }
    // SAFETY: sending SIGKILL to ourselves; nothing runs after it.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL returned");
}

#[cfg(unix)]
#[test]
fn a_process_killed_during_a_checkpoint_loses_no_acknowledged_write() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "checkpoint_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KVAULT_CHECKPOINT_CRASH_PATH", &db)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let vault = Kv::open(&db).unwrap();
    for batch in 0..4 {
        check_batch(&vault, batch, 4_000);
    }
    let mut store = vault.store();
    let conn = store.conn().unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn the_commit_token_changes_with_every_commit_of_any_connection() {
    let (_dir, db, vault) = fresh_vault();
    vault.put(b"a", b"1").unwrap();
    let first = vault
        .store()
        .commit_token()
        .expect("a writable WAL vault has a token");
    assert_eq!(vault.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        vault.store().commit_token(),
        Some(first),
        "reads change nothing"
    );

    let other = Kv::open(&db).unwrap();
    other.put(b"a", b"2").unwrap();
    let second = vault.store().commit_token().unwrap();
    assert_ne!(second, first, "another connection's commit");

    vault.put(b"b", b"3").unwrap();
    let third = vault.store().commit_token().unwrap();
    assert_ne!(third, second, "this connection's commit");

    // A truncating checkpoint rewinds the WAL; the next commit starts it over.
    other.store().checkpoint().unwrap();
    other.put(b"c", b"4").unwrap();
    assert_ne!(vault.store().commit_token().unwrap(), third);

    let read_only = Kv::open_with(
        &db,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
        "kvault",
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        read_only.store().commit_token(),
        None,
        "read-only stores fall back"
    );
    vault.close().unwrap();
    assert_eq!(
        vault.store().commit_token(),
        None,
        "closed stores have none"
    );
}

#[test]
#[cfg(target_os = "linux")]
fn external_checkpoints_leave_the_wal_to_another_program() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    let options = StoreOptions {
        checkpoints: kvault::Checkpoints::External,
        ..StoreOptions::default()
    };
    let vault = Kv::open_with(&db, options, "kvault", 1 << 20).unwrap();
    assert_eq!(
        vault.store().options().retries,
        kvault::EXTERNAL_MIN_RETRIES,
        "a replicator's lock is waited for longer"
    );
    for batch in 0..20 {
        put_batch(&vault, batch, 200);
    }
    for i in 0..3000u32 {
        vault.put(format!("k{i}").as_bytes(), &[7u8; 100]).unwrap();
    }
    // Neither a checkpoint thread nor SQLite's autocheckpoint copied anything back: the main
    // file holds none of the ~3.5 MB written (checked on the file, not by counting threads,
    // which other tests of this binary start and stop meanwhile), and every frame is still in
    // the WAL, until the other program (here: `checkpoint()`) runs.
    assert!(file_len(&db) < 1 << 20, "main file {}", file_len(&db));
    let wal = file_len(&wal_path(&db));
    assert!(wal > 3000 * PAGE_FRAME_BYTES, "WAL is only {wal} bytes");
    vault.store().checkpoint().unwrap();
    assert_eq!(file_len(&wal_path(&db)), 0);
    assert!(file_len(&db) > 3_000_000, "main file {}", file_len(&db));
    for batch in [0, 19] {
        check_batch(&vault, batch, 200);
    }
    assert!(kvault::Checkpoints::parse("sometimes").is_err());
}

/// Pages of `path` in the page cache that are dirty or being written back, by Linux's
/// `cachestat` (6.5 and later; the libc crate has no binding for it on x86_64 yet).
#[cfg(target_os = "linux")]
fn unsynced_pages(path: &Path) -> u64 {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    let file = std::fs::File::open(path).unwrap();
    let range = Range { off: 0, len: 0 }; // 0: to the end of the file
    let mut stat = Stat::default();
    // SAFETY: cachestat reads `range` and writes `stat`, both valid for the call.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            &raw const range,
            &raw mut stat,
            0,
        )
    };
    assert_eq!(rc, 0, "cachestat: {}", std::io::Error::last_os_error());
    stat.nr_dirty + stat.nr_writeback
}

#[cfg(target_os = "linux")]
#[test]
fn the_thread_syncs_what_a_pass_that_ends_short_copied() {
    // On the target directory's disk: on tmpfs every page counts as dirty.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = dir.path().join("v.db");
    let vault = Kv::open(&db).unwrap();
    // Small commits, too few frames to ask for a pass.
    for i in 0..300 {
        vault.put(&key(0, i), &value(0, i)).unwrap();
    }
    let wal = db.with_extension("db-wal");
    let frames = (std::fs::metadata(&wal).unwrap().len() - 32) / PAGE_FRAME_BYTES;
    assert!((100..1000).contains(&frames), "{frames} frames");
    // A reader holding the snapshot of those commits: the pass the next bulk write asks for
    // copies them and stops there, as a pass beside a stream of small commits stops short of
    // the frames committed meanwhile. SQLite syncs the database file only after a pass that
    // copied the whole WAL.
    let reader = rusqlite::Connection::open(&db).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let tables: i64 = reader
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert!(tables > 0);
    put_batch(&vault, 1, 10_000);
    assert!(vault.store().wait_for_checkpoints(Duration::from_secs(60)));
    // Left unsynced, the copied pages would be written back by the sync of whichever small
    // commit finishes the copy inline (14-22 ms after a 16 MB extend on a disk).
    assert_eq!(unsynced_pages(&db), 0);
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    check_batch(&vault, 1, 10_000);
    for i in 0..300 {
        assert_eq!(
            vault.get(&key(0, i)).unwrap().as_deref(),
            Some(value(0, i).as_slice())
        );
    }
    assert_eq!(vault.len().unwrap(), 10_300);
}
