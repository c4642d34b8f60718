"""SIGKILL during TextVault.insert_many (and deletes): after reopening, every acknowledged
batch is searchable in full, an unacknowledged one is there in full or not at all (rows and
index alike), and ``check()`` finds the index in step with the rows."""

from __future__ import annotations

import random

from harness import KILLS, run_until_killed

from ambervault import KVault, TextVault

BATCH = 60


def batch(i: int):
    return [(f"batch{i} item{j} some shared words", {"batch": i, "j": j}, {"batch": i}) for j in range(BATCH)]


def test_kill_during_insert_many_is_all_or_nothing(tmp_path):
    rng = random.Random(19)
    for round_ in range(max(KILLS // 2, 3)):
        path = tmp_path / f"t{round_}.db"
        TextVault(path, tokenizer="porter").close()

        def work(ack, path=path):
            tv = TextVault(path)
            i = 0
            while True:
                tv.insert_many(batch(i))
                ack(i)
                i += 1

        acked = run_until_killed(work, rng)
        with TextVault(path) as tv:
            n = len(tv)
            assert n % BATCH == 0
            present = n // BATCH
            assert acked <= present <= acked + 1
            assert tv.count_matches("shared") == n
            for i in range(present + 1):
                # Rows, index and metadata of a batch: all there, or none of them.
                expected = BATCH if i < present else 0
                assert tv.count_matches(f"batch{i}") == expected
                assert len(tv.search("shared", k=BATCH + 1, where={"batch": i})) == expected
        with KVault(path) as kv:
            assert kv.check() == []


def test_kill_during_deletes(tmp_path):
    rng = random.Random(20)
    for round_ in range(max(KILLS // 4, 3)):
        path = tmp_path / f"d{round_}.db"
        with TextVault(path) as tv:
            for i in range(30):
                tv.insert_many(batch(i))

        def work(ack, path=path):
            tv = TextVault(path)
            for i in range(30):
                tv.delete_many(range(i * BATCH + 1, (i + 1) * BATCH + 1))
                ack(i)
            while True:
                pass

        acked = run_until_killed(work, rng)
        with TextVault(path) as tv:
            remaining = len(tv)
            assert remaining % BATCH == 0
            gone = 30 - remaining // BATCH
            assert acked <= gone <= acked + 1
            for i in range(30):
                assert tv.count_matches(f"batch{i}") == (0 if i < gone else BATCH)
        with KVault(path) as kv:
            assert kv.check() == []
