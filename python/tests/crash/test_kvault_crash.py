"""SIGKILL in the middle of writes: acknowledged writes survive, unacknowledged ones are either
absent or complete (never partial), and a killed stream's chunks are reclaimed on reopen.

A child process writes and prints one line per acknowledged operation; the parent kills it
with SIGKILL at a random moment, then reopens the file and checks every acknowledgement.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time

import pytest
from harness import KILLS

from ambervault import KVault

CHILD = r"""
import hashlib, io, sys, ambervault
path, mode = sys.argv[1], sys.argv[2]
v = ambervault.KVault(path, chunk_size=4096)

def value(tag, i, n):
    return hashlib.shake_256(f"{tag}:{i}".encode()).digest(n)

i = 0
while True:
    if mode == "stream":
        data = value("s", i, 200_000 + i)
        v.put_file("video", io.BytesIO(data))
    elif mode == "writer":
        with v.open("video", "wb") as w:
            data = value("w", i, 150_000 + i)
            for j in range(0, len(data), 10_000):
                w.write(data[j:j + 10_000])
    elif mode == "small":
        v[f"k{i % 50}"] = value("p", i, 100 + i % 900)
        if i % 7 == 0:
            v.delete(f"k{(i * 3) % 50}")
    elif mode == "batch":
        v.put_many([(f"b{j}", value("b", i * 10 + j, 5000 + j)) for j in range(10)])
    print(i, flush=True)
    i += 1
"""


def expected_stream(mode, i):
    if mode == "stream":
        return hashlib.shake_256(f"s:{i}".encode()).digest(200_000 + i)
    return hashlib.shake_256(f"w:{i}".encode()).digest(150_000 + i)


def run_and_kill(path, mode, rng):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait for a few acknowledgements, then kill at a random moment.
    seen = []
    for _ in range(rng.randint(1, 4)):
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        seen.append(int(line))
    time.sleep(rng.uniform(0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Read the rest through proc.stdout: readline() may already hold later lines in its buffer,
    # which communicate() (reading the pipe directly) would miss.
    rest = proc.stdout.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc, seen + [int(x) for x in rest.split()]


@pytest.mark.parametrize("mode", ["stream", "writer"])
def test_killed_streams_leave_a_complete_value_and_no_leftovers(tmp_path, mode):
    rng = random.Random(1234)
    for round_ in range(KILLS):
        path = tmp_path / f"{mode}{round_}.db"
        proc, _ = run_and_kill(path, mode, rng)
        assert proc.returncode == -signal.SIGKILL
        with KVault(path, chunk_size=4096) as v:
            got = v["video"]  # at least one stream was acknowledged before the kill
            # Whatever is there is one complete streamed value, never a torn mix.
            assert any(got == expected_stream(mode, i) for i in range(2000)), len(got)
            stats = v.stats()
            assert stats["pending_uploads"] == 0
            assert stats["chunks"] == -(-len(got) // 4096)
            assert v.check() == []  # no reference without its stored content


def test_killed_small_writes_keep_every_acknowledged_write(tmp_path):
    rng = random.Random(99)
    for round_ in range(KILLS):
        path = tmp_path / f"small{round_}.db"
        _, acked = run_and_kill(path, "small", rng)
        last = max(acked, default=0)
        with KVault(path, chunk_size=4096) as v:
            # Replay the child's acknowledged operations on a dict; the vault must match it,
            # except that the single unacknowledged operation may or may not have landed.
            model = {}
            for i in range(last + 1):
                model[f"k{i % 50}"] = hashlib.shake_256(f"p:{i}".encode()).digest(100 + i % 900)
                if i % 7 == 0:
                    model.pop(f"k{(i * 3) % 50}", None)
            actual = dict(v.items())
            diff = {k for k in set(model) | set(actual) if model.get(k) != actual.get(k)}
            assert len(diff) <= 2, diff  # only the in-flight op (a put and maybe a delete)
            for k in diff:
                i = last + 1
                assert actual.get(k) in (None, hashlib.shake_256(f"p:{i}".encode()).digest(100 + i % 900))


def test_killed_batches_are_all_or_nothing(tmp_path):
    rng = random.Random(7)
    for round_ in range(KILLS):
        path = tmp_path / f"batch{round_}.db"
        _, acked = run_and_kill(path, "batch", rng)
        with KVault(path, chunk_size=4096) as v:
            values = [v[f"b{j}"] for j in range(10)]
            # All ten keys come from the same batch i, and i >= the last acknowledged batch.
            batch_ids = set()
            for j, got in enumerate(values):
                matches = [
                    i
                    for i in range(max(acked, default=0), max(acked, default=0) + 2)
                    if got == hashlib.shake_256(f"b:{i * 10 + j}".encode()).digest(5000 + j)
                ]
                assert matches, f"b{j} is from no batch at or after the last acknowledged one"
                batch_ids.add(matches[0])
            assert len(batch_ids) == 1
