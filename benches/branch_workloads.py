"""Branch workloads (issue 20): what a fork and a diff cost on a large table.

``kv_fork``: a table of ``n`` keys with 100-byte values (and 1% of them 256 KiB values, chunked),
then one timed fork. ``ambervault``: ``create_branch`` (one copied key row per key, chunked
values shared); ``file-copy``: what a user without branches does, a checkpoint and a copy of
the whole vault file. Target: a fork of 1M keys in under 2 s.

``kv_diff_1pct``: two branches of ``n`` keys that differ in 1% of them (0.5% changed, 0.25%
added, 0.25% deleted on the branch), then one timed diff, counted. ``ambervault``:
``vault.diff("main", "dev").summary()``; ``full-scan``: both branches' items read in key
order and compared in Python (what a diff without change tracking must do).

Every workload function returns ``(seconds, operations, extras)``.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable, Dict, List, Tuple

Result = Tuple[float, int, Dict[str, Any]]
BIG = 256 << 10


def _filled(d: str, n: int) -> Any:
    from ambervault import KVault

    v = KVault(os.path.join(d, "a.db"))
    for i in range(0, n, 10_000):
        v.put_many([(b"key:%09d" % j, b"%09d" % j + b"v" * 91) for j in range(i, min(n, i + 10_000))])
    big = os.urandom(BIG)
    for j in range(0, n, 100):
        v.put(b"key:%09d" % j, big[:-1] + bytes([j % 251]))
    return v


def kv_fork(system: str) -> Callable[[str, int], Result]:
    def run(d: str, n: int) -> Result:
        v = _filled(d, n)
        v.checkpoint()
        start = time.perf_counter()
        if system == "ambervault":
            v.create_branch("dev")
        else:
            v.checkpoint()
            shutil.copyfile(os.path.join(d, "a.db"), os.path.join(d, "copy.db"))
        seconds = time.perf_counter() - start
        v.checkpoint()
        size = os.path.getsize(os.path.join(d, "a.db"))
        v.close()
        return seconds, n, {"file_mib": size / (1 << 20)}

    return run


def kv_diff(system: str) -> Callable[[str, int], Result]:
    def run(d: str, n: int) -> Result:
        v = _filled(d, n)
        dev = v.create_branch("dev")
        step = 100
        dev.put_many([(b"key:%09d" % j, b"changed") for j in range(1, n, step * 2)])
        dev.put_many([(b"new:%09d" % j, b"added") for j in range(0, n, step * 4)])
        for j in range(3, n, step * 4):
            dev.delete(b"key:%09d" % j)
        start = time.perf_counter()
        if system == "ambervault":
            summary = v.diff("main", "dev").summary()
            differing = sum(summary.values())
        else:
            differing = _full_scan_diff(v.items(), dev.items())
        seconds = time.perf_counter() - start
        v.close()
        return seconds, n, {"differing": differing}

    return run


def _full_scan_diff(a: Any, b: Any) -> int:
    """Keys that differ between two sorted item streams."""
    sentinel = (None, None)
    left, right = iter(a), iter(b)
    x, y = next(left, sentinel), next(right, sentinel)
    differing = 0
    while x is not sentinel or y is not sentinel:
        if y is sentinel or (x is not sentinel and x[0] < y[0]):
            differing += 1
            x = next(left, sentinel)
        elif x is sentinel or y[0] < x[0]:
            differing += 1
            y = next(right, sentinel)
        else:
            differing += x[1] != y[1]
            x, y = next(left, sentinel), next(right, sentinel)
    return differing


BRANCH_WORKLOADS: Dict[str, Tuple[List[str], Callable[[str], Any], Tuple[int, int], str]] = {
    "kv_fork": (["ambervault", "file-copy"], kv_fork, (100_000, 1_000_000), "keys"),
    "kv_diff_1pct": (["ambervault", "full-scan"], kv_diff, (100_000, 1_000_000), "keys"),
}
BRANCH_SIZE_LABELS = {
    "kv_fork": "a fork of {n:,} keys (100 B values, 1% of 256 KiB)",
    "kv_diff_1pct": "a diff of two {n:,}-key branches differing in 1%",
}
BRANCH_NOTES = {
    "file-copy": "checkpoint + shutil.copyfile of the vault file (a branch without branches)",
    "full-scan": "both branches' items in key order, compared in Python",
}
BRANCH_EXTRA_COLUMNS: Dict[str, List[Tuple[str, str, str]]] = {
    "kv_fork": [("file_mib", "file MiB", "f3")],
    "kv_diff_1pct": [("differing", "differing keys", "int")],
}
