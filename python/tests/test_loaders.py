"""KeyDataset, and many worker processes reading one vault: forked and spawned from a parent that
holds the vault open (with a read lease and cached writes) and keeps writing while they read."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import pickle
from typing import Any, List, Optional, Tuple

import pytest

import ambervault
from ambervault import InvalidArgument, KeyDataset, KVault, NotFound

WORKERS = 4
VALUES = 48
VALUE_BYTES = 100_000
# A hung worker fails the test after this many seconds instead of blocking the run.
TIMEOUT = 120


def value_of(i: int) -> bytes:
    return hashlib.shake_256(b"value %d" % i).digest(VALUE_BYTES)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fill(vault: KVault, n: int = VALUES) -> List[str]:
    """``n`` values of 100 KB under ``sample:NNN``; returns the keys in order."""
    keys = [f"sample:{i:03d}" for i in range(n)]
    vault.put_many([(k, value_of(i)) for i, k in enumerate(keys)])
    return keys


# -- what worker processes run (module level, so that spawn can import it) ----------------------
_DATASET: Optional[KeyDataset] = None
_VAULT: Optional[KVault] = None


def _init_worker(dataset: KeyDataset) -> None:
    global _DATASET
    _DATASET = dataset


def _read_item(i: int) -> Tuple[int, int, str]:
    assert _DATASET is not None
    return i, os.getpid(), digest(_DATASET[i])


def _read_batch(indices: List[int]) -> List[Tuple[int, int, str]]:
    assert _DATASET is not None
    return [(i, os.getpid(), digest(v)) for i, v in zip(indices, _DATASET.__getitems__(indices))]


def _probe(key: str) -> Any:
    assert _DATASET is not None
    return _DATASET._handle().get(key)


def _read_inherited_vault(key: str) -> Tuple[int, str]:
    assert _VAULT is not None
    return os.getpid(), digest(_VAULT[key])


def _read_pickled(blob: bytes, indices: List[int], queue: Any) -> None:
    dataset = pickle.loads(blob)
    queue.put([(i, os.getpid(), digest(dataset[i])) for i in indices])


def check_results(results: List[Tuple[int, int, str]], expected: int) -> None:
    assert sorted(i for i, _, _ in results) == sorted(list(range(expected)) * (len(results) // expected))
    for i, _, got in results:
        assert got == digest(value_of(i)), f"item {i} read wrong bytes"
    pids = {pid for _, pid, _ in results}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= WORKERS


# -- many workers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_read_every_value_while_the_parent_writes(db_path, method):
    vault = KVault(db_path)
    keys = fill(vault)
    dataset = KeyDataset(vault)
    assert list(dataset.keys) == keys
    # State the workers inherit (fork) or must not depend on (spawn): writes held in the
    # parent's write-back cache, and a read lease taken by a read just before the workers start.
    vault.enable_cache(flush_interval=None)
    vault["pending"] = b"parent only"
    assert vault["sample:000"] == value_of(0)
    ctx = mp.get_context(method)
    with ctx.Pool(WORKERS, initializer=_init_worker, initargs=(dataset,)) as pool:
        try:
            singles = pool.map_async(_read_item, list(range(VALUES)) * 3, chunksize=1)
            batches = pool.map_async(_read_batch, [list(range(i, i + 8)) for i in range(0, VALUES, 8)])
            # The parent keeps writing (new keys, rewrites of keys outside the dataset, through
            # the cache and around it) and reading while the workers read.
            rounds = 0
            while not (singles.ready() and batches.ready()) or rounds < 20:
                vault.put(f"parent:{rounds % 5}", os.urandom(VALUE_BYTES))
                vault.put_many([(f"batch:{rounds}", os.urandom(1000))])
                assert vault[f"sample:{rounds % VALUES:03d}"] == value_of(rounds % VALUES)
                rounds += 1
            check_results(singles.get(TIMEOUT), VALUES)
            check_results([r for batch in batches.get(TIMEOUT) for r in batch], VALUES)
            # The parent's cached write stayed in the parent: no worker wrote it.
            assert pool.map_async(_probe, ["pending"] * WORKERS).get(TIMEOUT) == [None] * WORKERS
        finally:
            pool.terminate()
    assert vault.flush_cache() > 0
    assert vault["pending"] == b"parent only"
    vault.close()
    with KVault(db_path) as again:
        assert again.check() == []
        assert len(again) == VALUES + 1 + 5 + rounds


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_open_a_pickled_dataset(db_path, method):
    # Each worker receives the dataset as pickled bytes, even when forked: it must reopen the
    # file from the path and arguments alone.
    vault = KVault(db_path, chunk_size=16384)  # chunked values
    fill(vault)
    blob = pickle.dumps(KeyDataset(vault))
    assert len(blob) < 4096  # keys, path and arguments, not values or a connection
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_read_pickled, args=(blob, list(range(w, VALUES, WORKERS)), queue))
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    try:
        vault["while reading"] = os.urandom(VALUE_BYTES)
        results = [r for _ in procs for r in queue.get(timeout=TIMEOUT)]
    finally:
        for proc in procs:
            proc.join(TIMEOUT)
            if proc.exitcode is None:
                proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * WORKERS
    check_results(results, VALUES)
    assert len({pid for _, pid, _ in results}) == WORKERS
    vault.close()


def test_forked_workers_can_use_the_inherited_vault(db_path):
    # Without a KeyDataset: each fork child reopens the inherited vault's connection itself.
    global _VAULT
    _VAULT = vault = KVault(db_path)
    keys = fill(vault)
    assert vault[keys[0]] == value_of(0)  # a read lease is open at the fork
    try:
        with mp.get_context("fork").Pool(WORKERS) as pool:
            try:
                pending = pool.map_async(_read_inherited_vault, keys * 2, chunksize=1)
                for i in range(20):
                    vault[f"parent:{i}"] = os.urandom(VALUE_BYTES)
                results = pending.get(TIMEOUT)
            finally:
                pool.terminate()
    finally:
        _VAULT = None
    assert [d for _, d in results] == [digest(value_of(i)) for i in range(VALUES)] * 2
    assert os.getpid() not in {pid for pid, _ in results}
    assert vault["parent:19"] is not None
    vault.close()


# -- the dataset itself ----------------------------------------------------------------------------
def test_items_by_position(vault):
    vault.update({"b": b"2", "a": b"1", "c": {"n": 3}})
    ds = KeyDataset(vault)
    assert ds.keys == ("a", "b", "c") and len(ds) == 3
    assert [ds[0], ds[1], ds[2]] == [b"1", b"2", {"n": 3}]
    assert ds[-1] == {"n": 3}
    assert list(ds) == [b"1", b"2", {"n": 3}]  # iteration ends at IndexError
    assert ds.__getitems__([2, 0, 0]) == [{"n": 3}, b"1", b"1"]
    import numpy as np

    assert ds[np.int64(1)] == b"2"  # any integer type, as samplers produce
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds.__getitems__([0, 5])
    with pytest.raises(TypeError):
        ds["a"]  # type: ignore[index]
    with pytest.raises(TypeError):
        ds[1.0]  # type: ignore[index]


def test_given_keys_order_and_transform(vault):
    vault.update({("img", 1): b"abc", ("img", 2): b"de", "other": b"x"})
    ds = KeyDataset(vault, [("img", 2), ("img", 1), ("img", 2)], transform=len)
    assert [ds[0], ds[1], ds[2]] == [2, 3, 2]
    assert ds.__getitems__([1, 2]) == [3, 2]
    assert KeyDataset(vault, vault.keys(prefix=("img",))).keys == (("img", 1), ("img", 2))
    with pytest.raises(TypeError, match="callable"):
        KeyDataset(vault, transform=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single key"):
        KeyDataset(vault, "abc")


def test_keys_are_a_snapshot(vault):
    vault.update({"a": b"1", "b": b"2"})
    ds = KeyDataset(vault)
    vault["c"] = b"3"
    vault["a"] = b"new"
    assert len(ds) == 2 and ds[0] == b"new"  # same keys, current values
    del vault["b"]
    with pytest.raises(NotFound):
        ds[1]
    with pytest.raises(NotFound):
        ds.__getitems__([0, 1])


def test_decode_false_returns_the_stored_bytes(vault):
    vault["raw"] = b"bytes"
    vault["typed"] = {"n": 1}
    raw = KeyDataset(vault, decode=False)
    assert raw[0] == b"bytes"
    assert isinstance(raw[1], bytes) and raw[1] != b""
    assert raw.__getitems__([0, 1]) == [raw[0], raw[1]]
    assert KeyDataset(vault)[1] == {"n": 1}


def test_reads_see_the_parents_cached_writes(vault):
    vault["k"] = b"old"
    vault.enable_cache(flush_interval=None)
    vault["k"] = b"cached"
    assert KeyDataset(vault, ["k"])[0] == b"cached"
    assert KeyDataset(vault, ["k"], decode=False)[0] == b"cached"
    assert KeyDataset(vault, ["k"], decode=False).__getitems__([0]) == [b"cached"]


def test_from_a_path_opens_lazily_and_closes(db_path):
    with KVault(db_path, table="media") as vault:
        vault["x"] = b"1"
    ds = KeyDataset(db_path, ["x"], table="media", read_only=True)
    assert ds._vault is None  # nothing opened until the first read
    assert ds[0] == b"1" and ds.table == "media" and ds.path == str(db_path)
    handle = ds._vault
    assert handle is not None and handle.read_only
    ds.close()
    assert handle.closed
    assert ds[0] == b"1"  # reopened
    ds.close()
    assert "keys=1" in repr(ds)
    assert KeyDataset(db_path, table="media").keys == ("x",)


def test_a_given_vault_is_not_closed(vault):
    vault["x"] = b"1"
    ds = KeyDataset(vault)
    ds.close()
    assert not vault.closed
    assert ds[0] == b"1"  # reopened from the path


def test_pickle_carries_path_arguments_and_keys(vault, db_path):
    vault.update({"a": b"1", "b": b"2"})
    ds = KeyDataset(vault, ["b"], transform=bytes.upper)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._vault is None
    assert copy.keys == ("b",) and copy[0] == b"2".upper()
    assert copy._vault is not vault and copy._vault is not None
    copy.close()


def test_refused_arguments(vault):
    with pytest.raises(InvalidArgument, match="in-memory"):
        KeyDataset(KVault(":memory:"))
    with pytest.raises(InvalidArgument, match="in-memory"):
        KeyDataset(":memory:", ["a"])
    with pytest.raises(InvalidArgument, match="table"):
        KeyDataset(vault, [], table="other")
    with pytest.raises(TypeError, match="only accepted with a path"):
        KeyDataset(vault, [], read_only=True)
    with pytest.raises(TypeError):
        KeyDataset(3, [])  # type: ignore[arg-type]


def test_exported():
    assert ambervault.KeyDataset is KeyDataset
