"""Batched reads, get_many and item scans (items(), values()): every value of a batch or page
located from one snapshot, chunked ones then read straight into their bytes objects (one copy).
Results equal one get per key; damage gets the typed error; values replaced while a batch is
read come back whole and from one moment."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import pytest

import ambervault
from ambervault import CorruptionError
from helpers import damage_rows, patterned

MIB = 1 << 20


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_get_many_returns_what_one_get_per_key_returns(tmp_path: Path, compression: Optional[str]) -> None:
    values = {
        "empty": b"",
        "inline": b"small value",
        "one-chunk": patterned(100_000, 1),
        "chunks": patterned(3 * MIB + 17, 2),
        "exactly-a-chunk": patterned(MIB, 3),
        "large": patterned(9 * MIB + 1, 4),
    }
    with ambervault.KVault(tmp_path / "v.db", compression=compression) as kv:
        for key, value in values.items():
            kv[key] = value
        kv.put("typed", {"blob": values["chunks"], "n": 7})  # encoded and chunked
        kv.put("typed-inline", [1, "two"])
        keys = ["missing", *values, "typed", "again-missing", "typed-inline", "chunks"]
        got = kv.get_many(keys)
        assert got == [kv.get(k) for k in keys]
        assert got[1 : 1 + len(values)] == list(values.values())
        assert got[0] is None and got[-3] is None
        assert got[-4] == {"blob": values["chunks"], "n": 7}
        assert got[-2] == [1, "two"]
        assert got[-1] == values["chunks"]
        assert all(type(v) is bytes for v in got[1 : 1 + len(values)])
        assert kv.get_many([]) == []


def test_get_many_counts_hits_and_misses(tmp_path: Path) -> None:
    with ambervault.KVault(tmp_path / "v.db", max_bytes=1 << 30, eviction="least-recently-used") as kv:
        kv["a"] = patterned(200_000, 1)
        kv["b"] = b"inline"
        before = kv.stats()
        kv.get_many(["a", "b", "nope", "a"])
        after = kv.stats()
        assert after["hits"] - before["hits"] == 3
        assert after["misses"] - before["misses"] == 1


@pytest.mark.parametrize(
    "damage, message",
    [
        ("size = size + 1", "last chunk of blob \\d+ has 100 bytes, its size implies 101"),
        ("size = 1 << 50", "fewer chunks than its size needs"),
    ],
)
def test_get_many_refuses_a_damaged_size_before_allocating(tmp_path: Path, damage: str, message: str) -> None:
    path = tmp_path / "v.db"
    with ambervault.KVault(path) as kv:
        kv["big"] = patterned(3 * MIB + 100, 5)
        kv["fine"] = patterned(2 * MIB, 6)
    damage_rows(path, f"UPDATE kvault SET {damage} WHERE key = CAST('big' AS BLOB)")
    with ambervault.KVault(path) as kv:
        with pytest.raises(CorruptionError, match=message):
            kv.get_many(["fine", "big"])
        assert kv.get_many(["fine"]) == [patterned(2 * MIB, 6)]


@pytest.mark.parametrize(
    "read",
    [lambda kv: tuple(kv.get_many(["a", "b"])), lambda kv: tuple(kv.values())],
    ids=["get_many", "values"],
)
def test_values_written_together_are_read_from_one_moment(tmp_path: Path, read) -> None:
    """A writer replaces two chunked values in one transaction, over and over; every get_many,
    and every scan (one page), returns both from the same transaction, each whole (a
    replacement between locating and reading sends the call back to one snapshot)."""
    versions = [(patterned(300_000 + seed, seed), patterned(2 * MIB + seed, seed + 50)) for seed in range(4)]
    with ambervault.KVault(tmp_path / "v.db") as kv:
        kv["a"], kv["b"] = versions[0]
        stop = threading.Event()

        def replace() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                with kv.transaction():
                    kv["a"], kv["b"] = versions[i % len(versions)]

        writer = threading.Thread(target=replace)
        writer.start()
        try:
            seen = set()
            for _ in range(200):
                pair = read(kv)
                assert pair in versions  # whole values, both from one transaction
                seen.add(versions.index(pair))
        finally:
            stop.set()
            writer.join()
        assert len(seen) > 1  # the reads did overlap the replacements


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_item_scans_return_what_one_get_per_key_returns(tmp_path: Path, compression: Optional[str]) -> None:
    """Values of every kind, over more than one page (pages stop after 16 MiB of values)."""
    with ambervault.KVault(tmp_path / "v.db", compression=compression) as kv:
        expected = {}
        for i in range(9):
            expected[f"big:{i}"] = patterned(3 * MIB + i, i)
        expected["mid:0"] = patterned(100_000, 20)
        expected["mid:1"] = b""
        expected["mid:2"] = b"inline"
        for key, value in expected.items():
            kv[key] = value
        kv.put("typed", {"blob": patterned(2 * MIB, 30)})
        expected["typed"] = {"blob": patterned(2 * MIB, 30)}
        items = list(kv.items())
        assert [k for k, _ in items] == sorted(expected)
        assert items == [(k, kv[k]) for k in sorted(expected)]
        assert dict(items) == expected
        assert list(kv.values()) == [expected[k] for k in sorted(expected)]
        assert list(kv.items(prefix="mid:")) == [(k, expected[k]) for k in ("mid:0", "mid:1", "mid:2")]
        assert [k for k, _ in kv.items(prefix="big:", reverse=True)] == [
            f"big:{i}" for i in reversed(range(9))
        ]


def test_item_scans_refuse_a_damaged_size(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with ambervault.KVault(path) as kv:
        kv["a"] = patterned(2 * MIB, 1)
        kv["b"] = patterned(3 * MIB + 100, 2)
    damage_rows(path, "UPDATE kvault SET size = 1 << 50 WHERE key = CAST('b' AS BLOB)")
    with ambervault.KVault(path) as kv:
        with pytest.raises(CorruptionError, match="fewer chunks than its size needs"):
            list(kv.items())
        assert list(kv.items(prefix="a")) == [("a", patterned(2 * MIB, 1))]
