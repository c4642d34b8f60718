"""History workloads (issue 20): what keeping earlier versions costs writes.

``kv_overwrite_history_<single|batched>``: ``n`` puts of 100-byte values that each replace an
existing key (``n // 20`` keys written first, untimed, then overwritten twenty times over, so
every timed put moves a version into the history and, with ``history=10``, the second half of
the puts also drop the oldest kept version of their key), one by one (each its own durable transaction) or
in ``put_many`` batches of 10,000. Systems: ``ambervault`` (no history, the baseline) and
``ambervault-history10`` (``KVault(history=10)``). Target: at most 1.5x the baseline's time.

The bound SQLite sets: ``sqlite3-update`` is the stdlib module doing the same overwrites (an ``UPDATE``
of a WITHOUT ROWID row, one transaction per put or per 10,000); ``sqlite3-update-history`` adds the
least a history can do, a ``BEFORE UPDATE`` trigger appending the old row to a table indexed by
``(key, hid)`` (no count limit, no chunk or content bookkeeping). Their ratio is what keeping
one row per replaced value costs SQLite itself.

Every workload function returns ``(seconds, operations, extras)``.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Tuple

HISTORY_SYSTEMS = {"ambervault": 0, "ambervault-history10": 10}
BOUND_SYSTEMS = ["sqlite3-update", "sqlite3-update-history"]
Result = Tuple[float, int, Dict[str, Any]]


def sqlite_overwrite(system: str, batched: bool) -> Callable[[str, int], Result]:
    def run(d: str, n: int) -> Result:
        import sqlite3

        c = sqlite3.connect(os.path.join(d, "s.db"), isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("CREATE TABLE t (key BLOB PRIMARY KEY, v BLOB, version INT, updated_at INT) WITHOUT ROWID")
        if system == "sqlite3-update-history":
            c.executescript(
                "CREATE TABLE h (hid INTEGER PRIMARY KEY, key BLOB, v BLOB, version INT, written_at INT);"
                "CREATE INDEX h_by_key ON h (key, hid);"
                "CREATE TRIGGER keep BEFORE UPDATE OF updated_at ON t BEGIN "
                "INSERT INTO h (key, v, version, written_at) "
                "VALUES (old.key, old.v, old.version, old.updated_at); END;"
            )
        keys = [b"key:%08d" % i for i in range(max(1, n // 20))]
        c.execute("BEGIN")
        c.executemany("INSERT INTO t VALUES (?, ?, 1, 0)", [(k, b"v" * 100) for k in keys])
        c.execute("COMMIT")
        update = "UPDATE t SET v = ?, version = version + 1, updated_at = ? WHERE key = ?"
        rows = [(b"%08d" % i + b"v" * 92, i, keys[i % len(keys)]) for i in range(n)]
        start = time.perf_counter()
        if batched:
            for i in range(0, n, 10_000):
                c.execute("BEGIN")
                c.executemany(update, rows[i : i + 10_000])
                c.execute("COMMIT")
        else:
            for row in rows:
                c.execute("BEGIN")
                c.execute(update, row)
                c.execute("COMMIT")
        seconds = time.perf_counter() - start
        kept = c.execute("SELECT count(*) FROM h").fetchone()[0] if system == "sqlite3-update-history" else 0
        c.close()
        return seconds, n, {"history_rows": kept}

    return run


def kv_overwrite(system: str, batched: bool) -> Callable[[str, int], Result]:
    if system in BOUND_SYSTEMS:
        return sqlite_overwrite(system, batched)

    def run(d: str, n: int) -> Result:
        from ambervault import KVault

        v = KVault(os.path.join(d, "a.db"), history=HISTORY_SYSTEMS[system])
        keys = [b"key:%08d" % i for i in range(max(1, n // 20))]
        v.put_many([(k, b"v" * 100) for k in keys])
        items = [(keys[i % len(keys)], b"%08d" % i + b"v" * 92) for i in range(n)]
        start = time.perf_counter()
        if batched:
            for i in range(0, n, 10_000):
                v.put_many(items[i : i + 10_000])
        else:
            put = v.put
            for k, value in items:
                put(k, value)
        seconds = time.perf_counter() - start
        stats = v.stats()
        v.close()
        return seconds, n, {"history_rows": stats["history_rows"]}

    return run


HISTORY_WORKLOADS: Dict[str, Tuple[List[str], Callable[[str], Any], Tuple[int, int], str]] = {
    f"kv_overwrite_history_{mode}": (
        [*HISTORY_SYSTEMS, *BOUND_SYSTEMS],
        (lambda b: lambda s: kv_overwrite(s, b))(mode == "batched"),
        (5_000, 100_000) if mode == "single" else (20_000, 200_000),
        "puts",
    )
    for mode in ("single", "batched")
}
HISTORY_SIZE_LABELS = {
    "kv_overwrite_history_single": "{n:,} durable overwrites of 100 B values, one by one",
    "kv_overwrite_history_batched": "{n:,} overwrites of 100 B values, put_many by 10,000",
}
HISTORY_NOTES = {
    "ambervault-history10": "ambervault with KVault(history=10)",
    "sqlite3-update": "stdlib sqlite3: UPDATE of the row (WAL, synchronous=NORMAL)",
    "sqlite3-update-history": "stdlib sqlite3: the same plus a trigger appending the old row to an indexed table",
}
HISTORY_EXTRA_COLUMNS: Dict[str, List[Tuple[str, str, str]]] = {
    name: [("history_rows", "kept versions", "int")] for name in HISTORY_WORKLOADS
}
