"""SIGKILL while a table with history overwrites and deletes values (``harness.KILLS`` kill
points): after reopening, ``check()`` is clean and the history of every key holds every
acknowledged version, byte-exact, in order, with its deletions."""

from __future__ import annotations

import hashlib
import random

from harness import KILLS, run_until_killed

from ambervault import DELETED, KVault

CHUNK = 4096
KEYS = 4


def val(i: int) -> bytes:
    # Inline and chunked sizes.
    return hashlib.shake_256(b"%d" % i).digest(50 + (i * 3571) % 10_000)


def writes(path, ack):
    kv = KVault(path, chunk_size=CHUNK, history="all")
    i = 0
    while True:
        key = f"k{i % KEYS}"
        if i % 7 == 6:
            kv.delete(key)
        else:
            kv[key] = val(i)
        ack(i)
        i += 1


def expected(acked: int) -> dict:
    """Per key, newest first: the value written at op i, or DELETED."""
    log: dict = {f"k{k}": [] for k in range(KEYS)}
    for i in range(acked):
        key = f"k{i % KEYS}"
        if i % 7 == 6:
            if log[key] and log[key][-1] is not DELETED:
                log[key].append(DELETED)
        else:
            log[key].append(val(i))
    return {k: list(reversed(v)) for k, v in log.items()}


def test_kill_while_history_keeps_versions(tmp_path):
    rng = random.Random("history-seed")
    for k in range(KILLS):
        path = tmp_path / f"{k}.db"
        acked = run_until_killed(lambda ack, p=path: writes(p, ack), rng)
        with KVault(path, chunk_size=CHUNK) as kv:
            assert kv.check() == []
            for key, want in expected(acked).items():
                got = [value for _, _, value in kv.history(key)]
                # The operation in flight at the kill may have landed too (one more entry).
                assert got[len(got) - len(want) :] == want, key
                assert len(got) - len(want) in (0, 1)
