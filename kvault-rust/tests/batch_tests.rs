//! `put_many` writes runs of small values with multi-row inserts. These tests hold it to the
//! meaning of a batch: the same end state as the same puts made one by one (values, key kinds,
//! sizes, versions, expiry), all or nothing on an error.

use kvault::{Error, KeyKind, Kv, PutItem, PutOptions, StoreOptions};
use proptest::prelude::*;

/// Values up to this many bytes are stored inline (the chunk size given to `open_with`).
const CHUNK: usize = 64;

fn vault() -> Kv {
    Kv::open_with(":memory:", StoreOptions::default(), "kv", CHUNK).unwrap()
}

/// One row as a batch must leave it; timestamps differ between two vaults, so they are left
/// out, except that an expiry time is compared as given.
type Row = (Vec<u8>, i64, i64, i64, Option<i64>, Option<Vec<u8>>);

fn rows(vault: &Kv) -> Vec<(Row, Vec<u8>)> {
    let table = vault.table().name().to_owned();
    let listed: Vec<Row> = {
        let mut store = vault.store();
        let conn = store.conn().unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT key, key_kind, size, version, expires_at, inline_data FROM \"{table}\" \
                 ORDER BY key"
            ))
            .unwrap();
        let found = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<Result<Vec<Row>, _>>()
            .unwrap();
        found
    };
    listed
        .into_iter()
        .map(|row| {
            // Expired rows are invisible to `get`; their stored state is compared above.
            let value = vault.get(&row.0).unwrap().unwrap_or_default();
            (row, value)
        })
        .collect()
}

fn value_of(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + seed * 13) as u8).collect()
}

/// One put of a generated batch: key number, value length, kind, expiry choice.
type Op = (u8, usize, bool, u8);

fn expiry(choice: u8) -> Option<i64> {
    match choice {
        // Already expired: the next put of the key restarts its version.
        0 => Some(1),
        1 => Some(i64::MAX / 2),
        _ => None,
    }
}

fn apply_both(batches: &[Vec<Op>]) {
    let batched = vault();
    let single = vault();
    for (b, ops) in batches.iter().enumerate() {
        let keys: Vec<Vec<u8>> = ops
            .iter()
            .map(|op| format!("k{}", op.0).into_bytes())
            .collect();
        let values: Vec<Vec<u8>> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| value_of(op.1, b * 1000 + i))
            .collect();
        let items: Vec<PutItem<'_>> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let kind = if op.2 { KeyKind::Str } else { KeyKind::Bytes };
                PutItem::new(&keys[i], kind, &values[i]).expiring(expiry(op.3))
            })
            .collect();
        let table = batched.table().clone();
        table.put_many(&mut batched.store(), &items).unwrap();
        let table = single.table().clone();
        for &PutItem {
            key,
            kind,
            value,
            expires_at_ms,
            ..
        } in &items
        {
            let options = PutOptions {
                expires_at_ms,
                ..PutOptions::default()
            };
            table
                .put_with(&mut single.store(), key, kind, value, options)
                .unwrap();
        }
        assert_eq!(rows(&batched), rows(&single), "after batch {b}");
    }
}

#[test]
fn new_keys_in_full_groups_and_a_partial_one() {
    let ops: Vec<Op> = (0..100u8).map(|k| (k, 10, k % 2 == 0, 2)).collect();
    apply_both(&[ops]);
}

#[test]
fn existing_keys_and_repeats_inside_a_group_count_as_updates() {
    let first: Vec<Op> = (0..40u8).map(|k| (k, 5, false, 2)).collect();
    // Keys 30..70 overlap the first batch; key 100 comes three times in one group.
    let mut second: Vec<Op> = (30..70u8).map(|k| (k, 20, true, 2)).collect();
    second[3] = (100, 1, false, 2);
    second[9] = (100, 2, false, 2);
    second[20] = (100, 3, true, 2);
    apply_both(&[first, second]);
    let vault = vault();
    let items: Vec<PutItem<'_>> = vec![PutItem::new(b"same", KeyKind::Bytes, b"v"); 32];
    let table = vault.table().clone();
    table.put_many(&mut vault.store(), &items).unwrap();
    assert_eq!(
        table.version(&mut vault.store(), b"same").unwrap(),
        Some(32)
    );
}

#[test]
fn chunked_and_expiring_items_keep_their_place_in_the_batch() {
    let mut ops: Vec<Op> = (0..70u8).map(|k| (k % 50, 8, false, 2)).collect();
    ops[10] = (60, 500, false, 2); // chunked, between two runs of inline values
    ops[40] = (61, 8, false, 1); // expires later
    ops[45] = (60, 9, true, 2); // the chunked key again, now inline
    ops[50] = (62, 8, false, 0); // already expired
    ops[69] = (62, 8, false, 2); // and written again: its version restarts
    apply_both(&[ops]);
}

#[test]
fn an_error_inside_a_group_leaves_nothing_of_the_batch() {
    let vault = vault();
    vault.put(b"k5", b"before").unwrap();
    let table = vault.table().clone();
    vault
        .store()
        .conn()
        .unwrap()
        .execute_batch(&format!(
            "CREATE TRIGGER refuse AFTER INSERT ON \"{}\" WHEN new.key = CAST('boom' AS BLOB) \
             BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END;",
            table.name()
        ))
        .unwrap();
    let keys: Vec<Vec<u8>> = (0..70).map(|i| format!("k{i}").into_bytes()).collect();
    // "boom" first inside the first full group, then in the partial group at the end.
    for position in [3usize, 66] {
        let mut items: Vec<PutItem<'_>> = keys
            .iter()
            .map(|k| PutItem::new(k, KeyKind::Bytes, b"new"))
            .collect();
        items[position].key = b"boom";
        let err = table.put_many(&mut vault.store(), &items).unwrap_err();
        assert!(
            matches!(&err, Error::Sqlite(e) if e.to_string().contains("refused by test trigger")),
            "{err:?}"
        );
        assert_eq!(vault.len().unwrap(), 1, "position {position}");
        assert_eq!(vault.get(b"k5").unwrap().unwrap(), b"before");
    }
    // The store is usable and the savepoint is gone: a later batch commits.
    let items: Vec<PutItem<'_>> = keys
        .iter()
        .map(|k| PutItem::new(k, KeyKind::Bytes, b"new"))
        .collect();
    table.put_many(&mut vault.store(), &items).unwrap();
    assert_eq!(vault.len().unwrap(), 70);
    assert_eq!(vault.get(b"k5").unwrap().unwrap(), b"new");
    assert_eq!(table.version(&mut vault.store(), b"k5").unwrap(), Some(2));
}

/// A batch: mostly small values without expiry (so full groups form), with a few chunked or
/// expiring puts placed among them.
fn batch() -> impl Strategy<Value = Vec<Op>> {
    let plain = (
        0u8..48,
        prop_oneof![Just(0usize), Just(3), Just(CHUNK)],
        any::<bool>(),
    )
        .prop_map(|(key, len, text)| (key, len, text, 2u8));
    let special = (
        any::<prop::sample::Index>(),
        0u8..48,
        prop_oneof![Just(3usize), Just(CHUNK + 1), Just(200)],
        any::<bool>(),
        0u8..3,
    );
    (
        proptest::collection::vec(plain, 0..120),
        proptest::collection::vec(special, 0..4),
    )
        .prop_map(|(mut ops, specials)| {
            for (at, key, len, text, expires) in specials {
                let position = at.index(ops.len() + 1);
                ops.insert(position, (key, len, text, expires));
            }
            ops
        })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Random batches (new and existing keys, repeats, chunked values, expiry) end as the same
    /// puts made one by one.
    #[test]
    fn batches_match_single_puts(batches in proptest::collection::vec(batch(), 1..4)) {
        apply_both(&batches);
    }
}
