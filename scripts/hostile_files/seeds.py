"""Seed vault files for the fuzzer: written through the public API with a fixed clock, so the
same build writes the same bytes and a case number names the same damage on every run.

Each seed covers a part of the format: key-value tables with inline, chunked, deduplicated,
expiring and typed values and history; a cache-policy table (dedup of every value, a byte limit,
least-recently-used eviction, a default TTL); columns of every dtype family, with chunk rows,
tails and index tails.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

import ambervault

#: The seeds' clock (2026-01-01 UTC). TTLs are decades long, so nothing expires while a child
#: reads the file with the real clock.
SEED_TIME = 1_767_225_600.0
LONG_TTL = 20 * 365 * 24 * 3600.0


@dataclass(frozen=True)
class TableSpec:
    """A key-value table of a seed and the chunk size its values were written with."""

    name: str
    chunk_size: int


@dataclass(frozen=True)
class Seed:
    """A seed file and what is in it (the child opens exactly these tables)."""

    name: str
    path: str
    tables: Tuple[TableSpec, ...]
    has_columns: bool

    def to_json(self) -> Dict[str, Any]:
        """The seed as a JSON-ready dict (for the child's spec)."""
        return asdict(self)


def _clock() -> float:
    return SEED_TIME


def _pattern(n: int, salt: int) -> bytes:
    """``n`` bytes that differ from every other salt's and never repeat a chunk, so a chunk
    moved to another place reads as a different value."""
    return bytes((i * 31 + salt * 7 + (i >> 8)) & 0xFF for i in range(n))


def _write_kv_history(path: Path) -> Tuple[TableSpec, ...]:
    main = TableSpec("kvault", 256)
    big = TableSpec("big", 8192)
    with ambervault.KVault(path, chunk_size=main.chunk_size, history=3, clock=_clock) as kv:
        kv["inline"] = b"hello, world"
        kv[b"\x00bytes-key\xff"] = b"\x00\x01\x02"
        kv[("user", 42, b"raw")] = "tuple key"
        kv["empty"] = b""
        kv["one-chunk"] = _pattern(256, 1)
        kv["chunked"] = _pattern(256 * 5 + 17, 2)
        kv["dup-a"] = _pattern(1000, 3)
        kv["dup-b"] = _pattern(1000, 3)
        kv["msgpack"] = {"a": (1, 2), "when": dt.datetime(2025, 5, 4, 3, 2, 1), "big": 1 << 80}
        kv["list"] = [1, 2.5, None, True, "x", b"y"]
        kv["json"] = ambervault.Json({"k": [1, 2, 3], "s": "text"})
        kv["cbor"] = ambervault.Cbor({"k": [1, 2, 3], "b": b"\x01"})
        kv["array"] = np.arange(24, dtype=np.int32).reshape(4, 6)
        kv["scalar"] = np.float64(2.5)
        kv["date"] = dt.date(2024, 2, 29)
        kv.put("ttl", _pattern(700, 4), ttl=LONG_TTL)
        kv.put("ttl-inline", b"expiring", ttl=LONG_TTL)
        # History rows: an overwritten chunked value, an overwritten inline one, a deleted key.
        kv["versions"] = _pattern(600, 5)
        kv["versions"] = _pattern(900, 6)
        kv["versions"] = b"small now"
        kv["deleted"] = b"gone soon"
        del kv["deleted"]
        kv.checkpoint()
    with ambervault.KVault(path, table=big.name, chunk_size=big.chunk_size, dedup="none", clock=_clock) as kv:
        # Rows longer than a page: their bytes continue on overflow pages.
        kv["large"] = _pattern(20_000, 7)
        kv["also-large"] = _pattern(9_000, 8)
        kv["small"] = b"s"
        kv.checkpoint()
    return (main, big)


def _write_kv_cache(path: Path) -> Tuple[TableSpec, ...]:
    cache = TableSpec("cache", 64)
    lfu = TableSpec("lfu", 512)
    with ambervault.KVault(
        path,
        table=cache.name,
        chunk_size=cache.chunk_size,
        dedup="all",
        max_bytes=1 << 20,
        eviction="least-recently-used",
        default_ttl=LONG_TTL,
        clock=_clock,
    ) as kv:
        for i in range(12):
            kv[f"k{i:02d}"] = b"shared value" if i % 3 == 0 else _pattern(20 + 30 * i, 10 + i)
        kv["typed"] = {"n": 1, "t": ("a", "b")}
        for key in ("k01", "k04", "k07"):
            kv.get(key)  # recorded reads for the eviction order
        kv.checkpoint()
    with ambervault.KVault(
        path,
        table=lfu.name,
        chunk_size=lfu.chunk_size,
        eviction="least-frequently-used",
        max_bytes=1 << 20,
        clock=_clock,
    ) as kv:
        for i in range(6):
            kv[f"v{i}"] = _pattern(300 * i + 5, 30 + i)
        for i in range(12):  # a deleted run leaves free pages behind
            kv[f"tmp{i}"] = _pattern(2000, 40 + i)
        for i in range(12):
            del kv[f"tmp{i}"]
        kv.checkpoint()
    return (cache, lfu)


def _column_values() -> Dict[str, Tuple[str, List[Any]]]:
    """Column name -> (dtype, values): more bytes than a tail holds (1 KiB, or 64 index
    entries), so every stream has chunk rows at the seeds' small chunk sizes."""
    n = 1100
    m = 70
    return {
        "i8": ("i8", [(i * 37) % 256 - 128 for i in range(n)]),
        "i16": ("i16", [(i * 797) % 65536 - 32768 for i in range(n)]),
        "i32": ("i32", [i * 123457 - (1 << 30) for i in range(n)]),
        "i64": ("i64", [i * (1 << 40) - (1 << 62) for i in range(n)]),
        "u8": ("u8", [(i * 11) % 256 for i in range(n)]),
        "u16": ("u16", [(i * 1021) % 65536 for i in range(n)]),
        "u32": ("u32", [(i * 4_000_037) % (1 << 32) for i in range(n)]),
        "u64": ("u64", [(i * (1 << 57)) % (1 << 64) for i in range(n)]),
        "f16": ("f16", [i / 8 - 4 for i in range(n)]),
        "f32": ("f32", [i * 0.25 - 3.5 for i in range(n)]),
        "f64": ("f64", [i * 1.1e-3 - 1e3 for i in range(n)]),
        "bool": ("bool", [i % 3 == 0 for i in range(n)]),
        "fixed_bytes": ("bytes:6", [_pattern(i % 7, i) for i in range(n)]),
        "fixed_str": ("str:8", ["é" * (i % 4) + str(i % 100) for i in range(n)]),
        "fixed_utf16": ("str:8:utf16", [chr(0x3B1 + i % 20) * (1 + i % 3) for i in range(n)]),
        "vec": ("vec:f32:3", [np.array([i, -i, i / 2], dtype=np.float32) for i in range(n)]),
        "vec2d": ("vec:u8:2:2", [np.array([[i % 256, 1], [2, i % 7]], dtype=np.uint8) for i in range(n)]),
        "bytes": ("bytes", [_pattern(i % 40, i) for i in range(m)]),
        "str": ("str", ["línea " * (i % 5) + str(i) for i in range(m)]),
        "utf16": ("str:utf16", ["ω" * (i % 6) for i in range(m)]),
        "latin1": ("str:latin1", ["ÿé" * (i % 4) for i in range(m)]),
        "ascii": ("str:ascii", ["abc"[: i % 4] for i in range(m)]),
        "msgpack": (
            "msgpack",
            [{"i": i, "t": (i, str(i)), "d": dt.date(2020, 1, 1 + i % 28)} for i in range(m)],
        ),
        "json": ("json", [{"i": i, "l": [i, None, True]} for i in range(m)]),
        "cbor": ("cbor", [{"i": i, "b": _pattern(i % 5, i)} for i in range(m)]),
    }


def _write_columns(path: Path) -> Tuple[TableSpec, ...]:
    kvt = TableSpec("kvault", 1024)
    with ambervault.KVault(path, chunk_size=kvt.chunk_size, clock=_clock) as kv:
        kv["note"] = "a key-value table beside the columns"
        kv["blob"] = _pattern(3000, 50)
        with ambervault.ColumnVault(kv, min_chunk_bytes=64, max_chunk_bytes=256) as cv:
            for name, (dtype, values) in _column_values().items():
                column = cv.create_column(name, dtype)
                column.extend(values)  # into chunk rows
                column.append(values[1])  # into the tail (and index tail)
                column.append(values[2])
            gone = cv.create_column("deleted", "i64")
            gone.extend(range(500))
            cv.delete_column("deleted")  # free pages, and chunk ids no column owns
        with ambervault.ColumnVault(kv, min_chunk_bytes=8192, max_chunk_bytes=16384) as cv:
            # Chunk rows longer than a page (overflow pages).
            cv.create_column("wide", "f64").extend([i * 0.5 for i in range(3000)])
            cv.create_column("wide_str", "str").extend([f"item {i}" * 3 for i in range(1200)])
        kv.checkpoint()
    return (kvt,)


def _text(n: int, salt: int) -> bytes:
    """``n`` bytes of text that compresses (a log), different for every salt."""
    return "".join(f"{salt}:{i} INFO step done\n" for i in range(n // 10 + 1)).encode()[:n]


def _write_compressed(path: Path) -> Tuple[TableSpec, ...]:
    zstd = TableSpec("kvault", 2048)
    lz4 = TableSpec("fast", 4096)
    with ambervault.KVault(path, chunk_size=zstd.chunk_size, compression="zstd", clock=_clock) as kv:
        kv["inline"] = b"never compressed"
        kv["text"] = _text(2048 * 4 + 100, 1)  # compressed chunks
        kv["noise"] = _pattern(5000, 2)  # stored as it is beside them
        kv["dup"] = _text(2048 * 2, 1)  # shares the first chunks of "text"
        kv["typed"] = {"rows": [{"i": i, "s": "x" * 20} for i in range(200)]}
        with ambervault.ColumnVault(kv, min_chunk_bytes=256, max_chunk_bytes=1024) as cv:
            readings = [20 + (i % 50) / 100 for i in range(600)]
            cv.create_column("f64", "f64", compression="zstd").extend(readings)
            cv.create_column("i32", "i32", compression="lz4").extend(list(range(0, 3000, 3)))
            lines = [f"line {i % 9}" for i in range(400)]
            cv.create_column("str", "str", compression="zstd").extend(lines)
        kv.checkpoint()
    with ambervault.KVault(
        path, table=lz4.name, chunk_size=lz4.chunk_size, compression="lz4", clock=_clock
    ) as kv:
        kv["text"] = _text(4096 * 3, 3)
        kv.checkpoint()
    return (zstd, lz4)


_WRITERS: Dict[str, Tuple[Callable[[Path], Tuple[TableSpec, ...]], bool]] = {
    "kv_history": (_write_kv_history, False),
    "kv_cache": (_write_kv_cache, False),
    "columns": (_write_columns, True),
    "compressed": (_write_compressed, True),
}


def build_seeds(directory: Path) -> List[Seed]:
    """Write every seed file into ``directory`` (replacing older ones) and describe them."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = []
    for name, (write, has_columns) in _WRITERS.items():
        path = directory / f"{name}.db"
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if leftover.exists():
                os.remove(leftover)
        tables = write(path)
        seeds.append(Seed(name, str(path), tables, has_columns))
    (directory / "seeds.json").write_text(json.dumps([s.to_json() for s in seeds], indent=1))
    return seeds
