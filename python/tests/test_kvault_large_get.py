"""Gets of values larger than 1 MiB: located, checked against their last chunk, then read
whole into a new bytes object with the GIL released (one copy). Damage to the recorded size
gets the typed error before anything is allocated for it, a value whose chunks are gone is
refused, and a value replaced while it is read is never returned mixed."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

import ambervault
from ambervault import CorruptionError, ValueChangedError
from helpers import damage_rows, patterned

MIB = 1 << 20


@pytest.mark.parametrize("size", [MIB + 1, 3 * MIB + 12345, 9 * MIB])
def test_large_values_read_back_exactly(tmp_path: Path, size: int) -> None:
    value = patterned(size, 3)
    with ambervault.KVault(tmp_path / "v.db") as kv:
        kv["big"] = value
        kv.put("typed", {"blob": value[:MIB], "n": 1})
        assert kv["big"] == value
        assert kv.get("big") == value
        assert kv["typed"] == {"blob": value[:MIB], "n": 1}  # encoded values take the same path


def test_large_compressed_values_read_back_exactly(tmp_path: Path) -> None:
    value = b"ambervault " * (300 * 1024)  # 3.3 MB in 4 chunks, each compressed
    with ambervault.KVault(tmp_path / "v.db", compression="zstd") as kv:
        kv["big"] = value
        conn = sqlite3.connect(tmp_path / "v.db")
        codecs = [codec for (codec,) in conn.execute("SELECT codec FROM kvault__content")]
        conn.close()
        assert len(codecs) == 4 and all(codec != 0 for codec in codecs)  # the decompressing path
        assert kv["big"] == value


@pytest.mark.parametrize(
    "damage, error, message",
    [
        # One byte more than the chunks hold: refused by the check of the last chunk.
        ("size = size + 1", CorruptionError, "last chunk of blob \\d+ has 100 bytes, its size implies 101"),
        # A chunk more than there are.
        ("size = size + 1048576", CorruptionError, "fewer chunks than its size needs"),
        # A size no file could hold: refused before a byte is allocated for it.
        ("size = 1 << 50", CorruptionError, "fewer chunks than its size needs"),
    ],
)
def test_damaged_size_of_a_large_value_is_refused(
    tmp_path: Path, damage: str, error: type, message: str
) -> None:
    path = tmp_path / "v.db"
    with ambervault.KVault(path) as kv:
        kv["big"] = patterned(3 * MIB + 100, 5)
        kv["small"] = b"fine"
    damage_rows(path, f"UPDATE kvault SET {damage} WHERE key = CAST('big' AS BLOB)")
    with ambervault.KVault(path) as kv:
        with pytest.raises(error, match=message):
            kv["big"]
        assert kv["small"] == b"fine"


def test_large_value_with_a_missing_chunk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with ambervault.KVault(path) as kv:
        kv["big"] = patterned(3 * MIB, 7)
        kv["other"] = patterned(200_000, 8)
    conn = sqlite3.connect(path)
    (blob,) = conn.execute("SELECT blob_id FROM kvault WHERE key = CAST('big' AS BLOB)").fetchone()
    conn.close()
    damage_rows(path, f"DELETE FROM kvault__chunks WHERE id = {int(blob) << 32 | 1}")
    with ambervault.KVault(path) as kv:
        with pytest.raises(ValueChangedError):
            kv["big"]
        with pytest.raises(ValueChangedError):  # a batched read too, after the others
            kv.get_many(["other", "big"])
        assert kv.get_many(["other"]) == [patterned(200_000, 8)]


def test_large_values_replaced_while_read_are_never_mixed(tmp_path: Path) -> None:
    versions = [patterned(2 * MIB + 100, seed) for seed in range(4)]
    with ambervault.KVault(tmp_path / "v.db") as kv:
        kv["big"] = versions[0]
        stop = threading.Event()

        def replace() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                kv["big"] = versions[i % len(versions)]

        writer = threading.Thread(target=replace)
        writer.start()
        try:
            seen = set()
            for _ in range(200):
                got = kv["big"]
                assert got in versions  # a whole version, never a mix of two
                seen.add(versions.index(got))
        finally:
            stop.set()
            writer.join()
        assert len(seen) > 1  # the reads did overlap the replacements
