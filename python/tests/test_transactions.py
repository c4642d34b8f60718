"""Explicit transactions: all-or-nothing across KV writes, streams and columns, isolation from
other connections, nesting, caches, threads, and SIGKILL inside a transaction."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
import time

import pytest

from ambervault import ClosedError, ColumnVault, KVault, NotFound


@pytest.fixture
def pair(tmp_path):
    kv = KVault(tmp_path / "t.db", chunk_size=64)
    cv = ColumnVault(kv)
    yield kv, cv, tmp_path / "t.db"
    kv.close()


def outside(path):
    """What another connection sees."""
    with KVault(path, chunk_size=64) as other:
        cols = ColumnVault(other)
        return dict(other.items()), {name: list(cols[name]) for name, _, _ in cols.list_columns()}


def test_commit_makes_everything_visible_at_once(pair):
    kv, cv, path = pair
    log = cv.create_column("log", "str")
    with kv.transaction():
        kv["a"] = b"1"
        kv.put_file("video", io.BytesIO(b"v" * 1000))  # a chunked stream inside
        log.extend(["x", "y"])
        assert kv["a"] == b"1" and list(log) == ["x", "y"]  # reads see the transaction's writes
        assert outside(path) == ({}, {"log": []})  # nobody else does
    assert outside(path) == ({"a": b"1", "video": b"v" * 1000}, {"log": ["x", "y"]})


def test_exception_rolls_back_everything(pair):
    kv, cv, _path = pair
    kv["keep"] = b"old"
    n = cv.create_column("n", "i64")
    with pytest.raises(RuntimeError):
        with kv.transaction():
            kv["keep"] = b"new"
            del kv["keep"]
            kv["other"] = b"x" * 500
            n.extend(range(100))
            raise RuntimeError("boom")
    assert dict(kv.items()) == {"keep": b"old"}
    assert len(n) == 0
    assert kv.stats()["chunks"] == 0 and kv.check() == []


def test_explicit_commit_and_rollback_and_nesting(pair):
    kv, cv, _path = pair
    t = kv.transaction()
    kv["a"] = b"1"
    inner = kv.transaction()
    kv["b"] = b"2"
    inner.rollback()
    kv["c"] = b"3"
    t.commit()
    assert sorted(kv) == ["a", "c"]
    with pytest.raises(ClosedError):
        t.commit()
    t2 = cv.transaction()  # the KVault's transaction: spans both
    kv["d"] = b"4"
    cv.create_column("late", "i64").append(1)
    t2.rollback()
    assert "d" not in kv and "late" not in cv


def test_cache_flushes_into_the_transaction(pair):
    kv, cv, path = pair
    kv.enable_cache()
    col = cv.create_column("c", "i64")
    cv.enable_cache()
    kv["before"] = b"b"  # flushed when the transaction starts
    with pytest.raises(ValueError):
        with kv.transaction():
            kv["inside"] = b"i"
            col.append(1)
            raise ValueError
    assert kv.get("inside") is None and len(col) == 0
    assert outside(path)[0] == {"before": b"b"}
    with kv.transaction():
        kv["inside"] = b"i"
        col.append(2)
    assert outside(path) == ({"before": b"b", "inside": b"i"}, {"c": [2]})
    kv.disable_cache()
    cv.disable_cache()


def test_other_threads_wait_for_the_transaction(pair):
    kv, _cv, _path = pair
    seen = []

    def other_thread():
        kv["from_thread"] = b"t"  # must not land inside the open transaction
        seen.append(time.monotonic())

    t = kv.transaction()
    kv["a"] = b"1"
    worker = threading.Thread(target=other_thread)
    worker.start()
    time.sleep(0.3)
    assert seen == []  # still waiting
    opened = time.monotonic()
    t.rollback()
    worker.join(10)
    assert seen and seen[0] >= opened
    assert sorted(kv) == ["from_thread"]  # the thread's write survived the rollback


KILLED = r"""
import sys, ambervault
kv = ambervault.KVault(sys.argv[1], chunk_size=64)
cv = ambervault.ColumnVault(kv)
col = cv.ensure("c", "i64")
kv["committed"] = b"yes"
col.append(1)
t = kv.transaction()
kv["uncommitted"] = b"x" * 1000
col.extend(range(500))
del kv["committed"]
print("inside", flush=True)
sys.stdin.readline()
"""


def test_sigkill_inside_a_transaction_leaves_none_of_it(tmp_path):
    path = tmp_path / "k.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "inside"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with KVault(path, chunk_size=64) as kv:
        assert dict(kv.items()) == {"committed": b"yes"}
        assert list(ColumnVault(kv)["c"]) == [1]
        assert kv.check() == []
        assert kv.stats()["chunks"] == 0


def test_a_column_created_in_a_rolled_back_transaction_is_gone_for_its_handles():
    kv = KVault(":memory:")
    cv = ColumnVault(kv)
    with pytest.raises(RuntimeError):
        with kv.transaction():
            stale = cv.create_column("a", "i64")
            stale.append(1)
            raise RuntimeError("undo")
    assert "a" not in cv
    with pytest.raises(NotFound):
        cv["a"]
    # The rolled-back column's id is given out again: the stale handle must not reach it.
    other = cv.create_column("b", "i64")
    other.extend([7, 8])
    with pytest.raises(NotFound):
        stale.append(2)
    with pytest.raises(NotFound):
        len(stale)
    assert list(other) == [7, 8]
    again = cv.create_column("a", "f64")
    assert cv["a"] is again and again.dtype == "f64"
    with pytest.raises(NotFound):
        stale.append(3)
    assert len(again) == 0 and list(cv["b"]) == [7, 8]
