"""SIGKILL during eviction and during ``sweep()`` (``harness.KILLS`` kill points each): after
reopening, ``check()`` is clean, every value still there is byte-exact (nothing referenced is
lost), the newest acknowledged write is there, and the byte limit holds again after the next
write."""

from __future__ import annotations

import hashlib
import random

from harness import KILLS, run_until_killed

from ambervault import KVault

CHUNK = 4096
LIMIT = 60_000


def val(i: int) -> bytes:
    # Inline and chunked sizes; chunked ones share their first chunk (deduplicated content
    # that eviction must release only with its last reference).
    size = 100 + (i * 7919) % 12_000
    shared = b"S" * CHUNK if size > CHUNK else b""
    return (shared + hashlib.shake_256(b"%d" % i).digest(size))[:size]


def evicting_writes(path, ack):
    kv = KVault(path, chunk_size=CHUNK, max_bytes=LIMIT, eviction="least-recently-stored")
    i = 0
    while True:
        kv[f"k{i:05d}"] = val(i)
        ack(i)
        i += 1


def shared_writes_and_sweeps(path, ack):
    kv = KVault(path, chunk_size=CHUNK, dedup="all", max_bytes=LIMIT, eviction="least-recently-used")
    i = 0
    while True:
        kv[f"k{i:05d}"] = b"small %d" % (i % 5)
        if i % 3 == 0:
            kv.get(f"k{i - 1:05d}")
            kv.delete(f"k{i - 2:05d}")
        if i % 4 == 0:
            kv.sweep()
        ack(i)
        i += 1


def check_after(path, acked: int, expected) -> None:
    with KVault(path, chunk_size=CHUNK) as kv:
        assert kv.check() == []
        for key in kv.keys():
            i = int(key[1:])
            assert kv[key] == expected(i), key
        if acked:
            newest = f"k{acked - 1:05d}"
            assert kv.get(newest) == expected(acked - 1)
        kv["after"] = b"z" * 10
        assert kv.stats()["stored_bytes"] <= LIMIT
        assert kv.check() == []


def run(tmp_path, name, work, expected) -> None:
    rng = random.Random(f"{name}-seed")
    for k in range(KILLS):
        path = tmp_path / f"{k}.db"
        acked = run_until_killed(lambda ack, p=path: work(p, ack), rng)
        check_after(path, acked, expected)


def test_kill_during_eviction(tmp_path):
    run(tmp_path, "evict", evicting_writes, val)


def test_kill_during_sweep(tmp_path):
    run(tmp_path, "sweep", shared_writes_and_sweeps, lambda i: b"small %d" % (i % 5))
