//! Branches: forks share chunked values, writes stay on their branch, diffs find exactly the
//! differing keys, merges apply changes and settle conflicts by strategy, deletes release what
//! only the branch held, and `check()` stays clean throughout.

use kvault::{
    Change, Clock, Dedup, Error, History, Kv, MergeStrategy, PolicyChange, Vault, MAIN_BRANCH,
};

fn vault_kv(chunk_size: usize) -> Kv {
    let vault = Vault::open_in_memory().unwrap();
    vault.set_clock(Clock::fixed(1_000));
    vault.kv_with("t", chunk_size).unwrap()
}

fn at(kv: &Kv, ms: i64) {
    kv.vault().set_clock(Clock::fixed(ms));
}

fn clean(kv: &Kv) {
    assert_eq!(kv.vault().check().unwrap(), Vec::<String>::new());
}

fn chunks(kv: &Kv) -> u64 {
    kv.table().stats(&mut kv.store()).unwrap().chunks
}

fn diff(kv: &Kv, a: &str, b: &str) -> Vec<(Vec<u8>, Change)> {
    let mut cursor = kv.table().diff(&mut kv.store(), a, b).unwrap();
    let mut out = Vec::new();
    loop {
        let page = cursor.next_page(&mut kv.store(), 3).unwrap();
        if page.is_empty() && cursor.remaining() == 0 {
            break;
        }
        out.extend(page.into_iter().map(|e| (e.key, e.change)));
    }
    out
}

#[test]
fn a_fork_shares_values_and_writes_stay_on_their_branch() {
    let kv = vault_kv(64);
    kv.put(b"small", b"s").unwrap();
    kv.put(b"big", &[7u8; 1000]).unwrap();
    let before = chunks(&kv);
    let dev = kv.create_branch("dev").unwrap();
    assert_eq!(chunks(&kv), before, "a fork copies no chunk");
    assert_eq!(dev.get(b"big").unwrap().unwrap(), vec![7u8; 1000]);
    assert_eq!(dev.table().branch_name(), "dev");

    dev.put(b"small", b"dev").unwrap();
    dev.put(b"new", b"n").unwrap();
    assert!(dev.delete(b"big").unwrap());
    assert_eq!(kv.get(b"small").unwrap().unwrap(), b"s");
    assert_eq!(kv.get(b"new").unwrap(), None);
    assert_eq!(kv.get(b"big").unwrap().unwrap(), vec![7u8; 1000]);
    assert_eq!(chunks(&kv), before, "main still holds the blob");
    kv.put(b"main_only", b"m").unwrap();
    assert_eq!(dev.get(b"main_only").unwrap(), None);
    clean(&kv);

    let names: Vec<String> = kv
        .table()
        .branches(&mut kv.store())
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, [MAIN_BRANCH, "dev"]);
}

#[test]
fn deleting_a_branch_releases_only_what_it_alone_held() {
    let kv = vault_kv(64);
    kv.put(b"shared", &[1u8; 640]).unwrap();
    let dev = kv.create_branch("dev").unwrap();
    dev.put(b"own", &[2u8; 640]).unwrap();
    let with_own = chunks(&kv);
    kv.table().delete_branch(&mut kv.store(), "dev").unwrap();
    assert_eq!(chunks(&kv), with_own - 10);
    assert_eq!(kv.get(b"shared").unwrap().unwrap(), vec![1u8; 640]);
    assert!(dev.get(b"own").is_err(), "a deleted branch's handle fails");
    clean(&kv);
    // The last branch gone, the table is plain again: a delete releases the chunks.
    assert!(kv.delete(b"shared").unwrap());
    assert_eq!(chunks(&kv), 0);
    assert_eq!(kv.table().branches(&mut kv.store()).unwrap().len(), 1);
    clean(&kv);
}

#[test]
fn a_value_deleted_on_main_lives_on_in_the_branch() {
    let kv = vault_kv(64);
    kv.put(b"v", &[3u8; 300]).unwrap();
    let dev = kv.create_branch("dev").unwrap();
    assert!(kv.delete(b"v").unwrap());
    kv.put(b"v2", &[4u8; 300]).unwrap();
    assert_eq!(dev.get(b"v").unwrap().unwrap(), vec![3u8; 300]);
    clean(&kv);
    assert!(dev.delete(b"v").unwrap());
    assert_eq!(chunks(&kv), 5, "only v2's chunks are left");
    clean(&kv);
}

#[test]
fn bad_names_and_misuse_are_refused_without_changes() {
    let kv = vault_kv(64);
    for bad in ["", " x", "x ", "a\nb", &"n".repeat(129)] {
        assert!(matches!(
            kv.table().create_branch(&mut kv.store(), bad, None),
            Err(Error::InvalidArgument(_))
        ));
    }
    kv.create_branch("dev").unwrap();
    let refused = |r: kvault::Result<_>| matches!(r, Err(Error::InvalidArgument(_)));
    assert!(refused(
        kv.table()
            .create_branch(&mut kv.store(), "dev", None)
            .map(|_| ())
    ));
    assert!(refused(
        kv.table()
            .create_branch(&mut kv.store(), "x", Some("nope"))
            .map(|_| ())
    ));
    assert!(refused(
        kv.table().delete_branch(&mut kv.store(), MAIN_BRANCH)
    ));
    assert!(refused(kv.table().delete_branch(&mut kv.store(), "nope")));
    assert!(refused(kv.branch("nope").map(|_| ())));
    kv.table()
        .create_branch(&mut kv.store(), "child", Some("dev"))
        .unwrap();
    assert!(refused(kv.table().delete_branch(&mut kv.store(), "dev")));
    // A byte limit and branches exclude each other.
    assert!(refused(
        kv.set_cache_policy(PolicyChange {
            max_bytes: Some(Some(1 << 20)),
            ..Default::default()
        })
        .map(|_| ())
    ));
    assert_eq!(kv.table().branches(&mut kv.store()).unwrap().len(), 3);
    clean(&kv);
}

#[test]
fn a_cache_with_a_byte_limit_cannot_fork() {
    let kv = vault_kv(64);
    kv.set_cache_policy(PolicyChange {
        max_bytes: Some(Some(1 << 20)),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        kv.table().create_branch(&mut kv.store(), "dev", None),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(kv.table().branches(&mut kv.store()).unwrap().len(), 1);
}

#[test]
fn diff_lists_exactly_the_differing_keys() {
    let kv = vault_kv(64);
    for i in 0..20u8 {
        kv.put(&[b'k', i], &[i; 10]).unwrap();
    }
    kv.put(b"big", &[9u8; 500]).unwrap();
    let dev = kv.create_branch("dev").unwrap();
    assert!(diff(&kv, MAIN_BRANCH, "dev").is_empty());
    dev.put(&[b'k', 1], b"changed").unwrap();
    dev.put(&[b'k', 2], &[2u8; 10]).unwrap(); // rewritten with the same value
    dev.delete(&[b'k', 3]).unwrap();
    dev.put(b"added", b"a").unwrap();
    dev.put(b"big", &[9u8; 500]).unwrap(); // same bytes, a new blob: equal by content
    kv.put(&[b'k', 4], b"main changed").unwrap();
    let d = diff(&kv, MAIN_BRANCH, "dev");
    assert_eq!(
        d,
        vec![
            (b"added".to_vec(), Change::Added),
            (vec![b'k', 1], Change::Changed),
            (vec![b'k', 3], Change::Removed),
            (vec![b'k', 4], Change::Changed),
        ]
    );
    let reverse = diff(&kv, "dev", MAIN_BRANCH);
    assert_eq!(reverse.len(), 4);
    assert!(reverse.contains(&(b"added".to_vec(), Change::Removed)));
    let mut cursor = kv
        .table()
        .diff(&mut kv.store(), MAIN_BRANCH, "dev")
        .unwrap();
    let summary = cursor.summary(&mut kv.store()).unwrap();
    assert_eq!((summary.added, summary.removed, summary.changed), (1, 1, 2));
}

#[test]
fn diff_between_sibling_and_nested_branches() {
    let kv = vault_kv(64);
    kv.put(b"a", b"1").unwrap();
    let one = kv.create_branch("one").unwrap();
    kv.put(b"b", b"2").unwrap(); // after one's fork, before two's
    let two = kv.create_branch("two").unwrap();
    one.put(b"c", b"3").unwrap();
    let nested = one.create_branch("nested").unwrap();
    nested.put(b"d", b"4").unwrap();
    two.delete(b"a").unwrap();
    assert_eq!(
        diff(&kv, "one", "two"),
        vec![
            (b"a".to_vec(), Change::Removed),
            (b"b".to_vec(), Change::Added),
            (b"c".to_vec(), Change::Removed),
        ]
    );
    assert_eq!(
        diff(&kv, "nested", "two"),
        vec![
            (b"a".to_vec(), Change::Removed),
            (b"b".to_vec(), Change::Added),
            (b"c".to_vec(), Change::Removed),
            (b"d".to_vec(), Change::Removed),
        ]
    );
    assert_eq!(
        diff(&kv, MAIN_BRANCH, "nested"),
        vec![
            (b"b".to_vec(), Change::Removed),
            (b"c".to_vec(), Change::Added),
            (b"d".to_vec(), Change::Added),
        ]
    );
}

#[test]
fn merge_applies_changes_and_settles_conflicts() {
    let kv = vault_kv(64);
    for k in [b"same", b"keep", b"both", b"gone"] {
        kv.put(k, b"base").unwrap();
    }
    kv.put(b"big", &[5u8; 300]).unwrap();
    let dev = kv.create_branch("dev").unwrap();
    at(&kv, 2_000);
    dev.put(b"new", b"from dev").unwrap();
    dev.put(b"big", &[6u8; 300]).unwrap();
    dev.delete(b"gone").unwrap();
    dev.put(b"both", b"dev").unwrap();
    at(&kv, 3_000);
    kv.put(b"both", b"main, later").unwrap();
    kv.put(b"keep", b"main").unwrap();

    // Fail on conflict: nothing changes.
    let err = kv
        .table()
        .merge(
            &mut kv.store(),
            "dev",
            MAIN_BRANCH,
            MergeStrategy::FailOnConflict,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict(ref m) if m.contains("both")),
        "{err}"
    );
    assert_eq!(kv.get(b"new").unwrap(), None);

    let report = kv
        .table()
        .merge(
            &mut kv.store(),
            "dev",
            MAIN_BRANCH,
            MergeStrategy::LastWriterWins,
        )
        .unwrap();
    assert_eq!(
        (
            report.added,
            report.changed,
            report.deleted,
            report.conflicts
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(kv.get(b"new").unwrap().unwrap(), b"from dev");
    assert_eq!(kv.get(b"big").unwrap().unwrap(), vec![6u8; 300]);
    assert_eq!(kv.get(b"gone").unwrap(), None);
    assert_eq!(kv.get(b"both").unwrap().unwrap(), b"main, later");
    assert_eq!(kv.get(b"keep").unwrap().unwrap(), b"main");
    assert_eq!(kv.get(b"same").unwrap().unwrap(), b"base");
    clean(&kv);

    // A second merge finds nothing new; a later dev write is the only change.
    let again = kv
        .table()
        .merge(
            &mut kv.store(),
            "dev",
            MAIN_BRANCH,
            MergeStrategy::FailOnConflict,
        )
        .unwrap();
    assert_eq!((again.added, again.changed, again.deleted), (0, 0, 0));
    at(&kv, 4_000);
    dev.put(b"both", b"dev again").unwrap();
    let third = kv
        .table()
        .merge(
            &mut kv.store(),
            "dev",
            MAIN_BRANCH,
            MergeStrategy::FailOnConflict,
        )
        .unwrap();
    assert_eq!(third.changed, 1);
    assert_eq!(kv.get(b"both").unwrap().unwrap(), b"dev again");

    // Main into dev: main's own changes arrive; what dev already has is left alone.
    let down = kv
        .table()
        .merge(
            &mut kv.store(),
            MAIN_BRANCH,
            "dev",
            MergeStrategy::SourceWins,
        )
        .unwrap();
    assert_eq!(dev.get(b"keep").unwrap().unwrap(), b"main");
    assert_eq!(dev.get(b"both").unwrap().unwrap(), b"dev again");
    assert!(down.changed >= 1);
    assert!(diff(&kv, MAIN_BRANCH, "dev").is_empty());
    clean(&kv);
}

#[test]
fn report_strategy_leaves_conflicts_to_the_caller() {
    let kv = vault_kv(64);
    kv.put(b"x", b"base").unwrap();
    let dev = kv.create_branch("dev").unwrap();
    dev.put(b"x", b"dev").unwrap();
    dev.put(b"y", b"dev").unwrap();
    kv.put(b"x", b"main").unwrap();
    let report = kv
        .table()
        .merge(&mut kv.store(), "dev", MAIN_BRANCH, MergeStrategy::Report)
        .unwrap();
    assert_eq!(report.unresolved.len(), 1);
    assert_eq!(report.unresolved[0].0, b"x");
    assert_eq!(report.added, 1);
    assert_eq!(kv.get(b"x").unwrap().unwrap(), b"main");
}

#[test]
fn merges_work_only_between_parent_and_child() {
    let kv = vault_kv(64);
    kv.create_branch("a").unwrap();
    kv.create_branch("b").unwrap();
    for (s, t) in [("a", "b"), ("a", "a"), ("a", "zzz")] {
        assert!(matches!(
            kv.table()
                .merge(&mut kv.store(), s, t, MergeStrategy::SourceWins),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn history_keeps_merged_and_branch_shared_values() {
    let kv = vault_kv(64);
    kv.set_cache_policy(PolicyChange {
        history: Some(History::All),
        ..Default::default()
    })
    .unwrap();
    kv.put(b"v", &[1u8; 200]).unwrap();
    let dev = kv.create_branch("dev").unwrap();
    at(&kv, 2_000);
    dev.put(b"v", &[2u8; 200]).unwrap();
    kv.table()
        .merge(
            &mut kv.store(),
            "dev",
            MAIN_BRANCH,
            MergeStrategy::SourceWins,
        )
        .unwrap();
    let h = kv.table().history(&mut kv.store(), b"v", None).unwrap();
    assert_eq!(
        h.len(),
        2,
        "the merge replaced a version, which history kept"
    );
    clean(&kv);
    // Dev lets go of the merged blob: main still has it.
    dev.put(b"v", b"small").unwrap();
    assert_eq!(kv.get(b"v").unwrap().unwrap(), vec![2u8; 200]);
    clean(&kv);
    // History off drops kept versions; what branches hold stays.
    kv.set_cache_policy(PolicyChange {
        history: Some(History::Off),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(kv.get(b"v").unwrap().unwrap(), vec![2u8; 200]);
    clean(&kv);
    kv.table().delete_branch(&mut kv.store(), "dev").unwrap();
    kv.delete(b"v").unwrap();
    assert_eq!(chunks(&kv), 0);
    clean(&kv);
}

#[test]
fn shared_small_values_count_branch_references() {
    let kv = vault_kv(64);
    kv.set_cache_policy(PolicyChange {
        dedup: Some(Dedup::All),
        ..Default::default()
    })
    .unwrap();
    kv.put(b"a", b"same").unwrap();
    kv.put(b"b", b"same").unwrap();
    let dev = kv.create_branch("dev").unwrap();
    clean(&kv);
    dev.put(b"a", b"other").unwrap();
    kv.delete(b"a").unwrap();
    kv.delete(b"b").unwrap();
    assert_eq!(dev.get(b"b").unwrap().unwrap(), b"same");
    clean(&kv);
    assert_eq!(kv.table().sweep(&mut kv.store()).unwrap(), 0);
    assert_eq!(dev.get(b"b").unwrap().unwrap(), b"same");
    kv.table().delete_branch(&mut kv.store(), "dev").unwrap();
    clean(&kv);
}

#[test]
fn branch_handles_refuse_history_and_policy_calls() {
    let kv = vault_kv(64);
    let dev = kv.create_branch("dev").unwrap();
    assert!(matches!(
        dev.table().get_as_of(&mut dev.store(), b"k", 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        dev.set_cache_policy(PolicyChange::default()),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_fork_inside_a_rolled_back_transaction_leaves_nothing() {
    let kv = vault_kv(64);
    kv.put(b"a", &[1u8; 300]).unwrap();
    kv.vault().begin().unwrap();
    kv.table()
        .create_branch(&mut kv.store(), "dev", None)
        .unwrap();
    kv.branch("dev").unwrap().put(b"b", b"x").unwrap();
    kv.vault().rollback().unwrap();
    assert_eq!(kv.table().branches(&mut kv.store()).unwrap().len(), 1);
    assert!(kv.branch("dev").is_err());
    clean(&kv);
}
