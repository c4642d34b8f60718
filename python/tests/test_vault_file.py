"""The open file shared by KVault and ColumnVault: one clock for every write path, one
transaction over both, and column stores that travel to other processes by pickling (they
reopen the file by path, as a DataLoader worker or a multiprocessing child does)."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest

import ambervault

T = 4102444800.0  # 2100-01-01, far from the system clock


def test_the_injected_clock_times_batched_chunked_and_streamed_writes(tmp_path):
    vault = ambervault.KVault(tmp_path / "v.db", chunk_size=1024, clock=lambda: T)
    vault.put_many([("batch", b"x"), ("batch_big", b"y" * 5000)])
    vault.put("chunked", b"z" * 5000)
    with vault.open("streamed", "wb") as out:
        out.write(b"w" * 5000)
    for key in ("batch", "batch_big", "chunked", "streamed"):
        info = vault.info(key)
        assert info is not None
        assert (info["created_at_ms"], info["updated_at_ms"]) == (int(T * 1000),) * 2, key
    vault.close()


def test_expiry_follows_the_injected_clock_on_batched_and_chunked_writes(tmp_path):
    now = [T]
    vault = ambervault.KVault(tmp_path / "v.db", chunk_size=1024, clock=lambda: now[0])
    vault.put_many([("a", b"1"), ("big", b"2" * 5000)], ttl=10)
    assert vault.version("a") == 1 and vault.version("big") == 1
    now[0] = T + 11  # expired by the injected clock only
    assert "a" not in vault and "big" not in vault
    vault.put_many([("a", b"3"), ("big", b"4" * 5000)])
    # An expired entry counts as absent: its version starts again.
    assert vault.version("a") == 1 and vault.version("big") == 1
    vault.close()


def test_columns_of_a_kvault_share_its_clock_and_transaction(tmp_path):
    vault = ambervault.KVault(tmp_path / "v.db", clock=lambda: T)
    cv = ambervault.ColumnVault(vault)
    col = cv.create_column("x", "i64")
    with vault.transaction():
        vault["k"] = b"v"
        col.append(1)
    with pytest.raises(RuntimeError), cv.transaction():
        vault["k"] = b"w"
        col.append(2)
        raise RuntimeError("roll back both")
    assert vault["k"] == b"v" and list(col) == [1]
    assert vault.check() == [] and cv.check() == []
    vault.close()
    with pytest.raises(ambervault.ClosedError):
        col.append(3)


def _column_sum(column: ambervault.Column) -> int:
    return sum(column)


def test_column_vault_and_column_pickle_and_reopen_in_a_spawned_child(tmp_path):
    cv = ambervault.ColumnVault(tmp_path / "c.db")
    col = cv.create_column("n", "i32")
    col.extend(range(100))
    again = pickle.loads(pickle.dumps(cv))
    assert again.path == cv.path and list(again["n"][:3]) == [0, 1, 2]
    again.close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(_column_sum, (col,)) == sum(range(100))
    cv.close()


def test_a_column_of_a_kvault_pickles_by_path(tmp_path):
    vault = ambervault.KVault(tmp_path / "v.db")
    col = ambervault.ColumnVault(vault).create_column("s", "str")
    col.extend(["a", "b"])
    clone = pickle.loads(pickle.dumps(col))
    assert list(clone) == ["a", "b"]
    vault.close()


def test_in_memory_column_stores_refuse_pickling():
    cv = ambervault.ColumnVault(":memory:")
    with pytest.raises(TypeError, match="in-memory"):
        pickle.dumps(cv)
