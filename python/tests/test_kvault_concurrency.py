"""Threads sharing one vault, several processes on one file, fork children and pickled vaults."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time

import pytest

from ambervault import KVault
from helpers import run_python


def test_threads_share_one_vault(db_path):
    with KVault(db_path, chunk_size=4096) as vault:
        errors = []

        def work(t):
            try:
                for i in range(200):
                    key = f"t{t}:{i}"
                    value = bytes([t]) * (i * 50)
                    vault[key] = value
                    assert vault[key] == value
                    if i % 10 == 0:
                        list(vault.keys(prefix=f"t{t}:"))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(vault) == 1200


def test_gil_is_released_during_sqlite_work(db_path):
    # While one thread streams a large value out of the vault, another thread keeps running
    # Python code; with the GIL held for the whole read it could not tick at all.
    with KVault(db_path, chunk_size=1 << 20) as vault:
        vault["big"] = os.urandom(1 << 20) * 96
        ticks = 0
        stop = threading.Event()

        def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                time.sleep(0)

        t = threading.Thread(target=ticker)
        t.start()
        before = ticks
        for _ in range(3):
            assert len(vault["big"]) == 96 << 20
        during = ticks - before
        stop.set()
        t.join()
        assert during > 100


WRITER = """
import sys, ambervault
path, worker = sys.argv[1], int(sys.argv[2])
v = ambervault.KVault(path, retries=50, backoff_base=0.005, chunk_size=2048)
for i in range(150):
    v[f"w{worker}:{i}"] = bytes([worker]) * (i * 37 % 5000)
    if i % 25 == 0:
        v.put_many([(f"w{worker}:batch{i}:{j}", b"b" * j) for j in range(20)])
v.close()
print("done")
"""


def test_several_processes_write_one_file(db_path):
    KVault(db_path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path), str(w)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.strip() == "done"
    with KVault(db_path) as vault:
        assert len(vault) == 4 * (150 + 6 * 20)
        for w in range(4):
            for i in range(150):
                assert vault[f"w{w}:{i}"] == bytes([w]) * (i * 37 % 5000)
        assert vault.stats()["pending_uploads"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_vault_keeps_working_in_a_forked_child(db_path):
    vault = KVault(db_path)
    vault["parent"] = b"p"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must reopen transparently, not reuse the parent's connection
        code = 1
        try:
            assert vault["parent"] == b"p"
            vault["child"] = b"c"
            code = 0
        finally:
            os.write(write_fd, b"ok" if code == 0 else b"no")
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    assert os.read(read_fd, 2) == b"ok"
    assert os.waitstatus_to_exitcode(status) == 0
    assert vault["child"] == b"c"
    vault["after"] = b"a"  # the parent's connection is unharmed
    vault.close()
    with KVault(db_path) as again:
        assert sorted(again) == ["after", "child", "parent"]


def _read_in_worker(vault, key, queue):
    queue.put(vault[key])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_workers_receive_the_vault(db_path, method):
    # The DataLoader pattern: the vault object is handed to worker processes.
    vault = KVault(db_path)
    vault["sample"] = b"tensor bytes"
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=_read_in_worker, args=(vault, "sample", queue))
    proc.start()
    assert queue.get(timeout=60) == b"tensor bytes"
    proc.join(60)
    assert proc.exitcode == 0
    vault.close()


def test_fork_child_does_not_replay_parent_cache(db_path):
    code = """
import os, sys, ambervault
v = ambervault.KVault(sys.argv[1])
v.enable_cache()
v["k"] = b"parent-cached"
pid = os.fork()
if pid == 0:
    ok = v.flush_cache() == 0 and v.get("k") is None
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), v.flush_cache())
"""
    result = run_python(code, str(db_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1"]


def test_a_fork_child_caches_into_its_own_cache(db_path):
    # `vault[k] = v` reaches the native cache through a bound method: in the child it must be
    # the child's new cache, not the parent's (whose writes the parent flushes).
    code = """
import os, sys, ambervault
v = ambervault.KVault(sys.argv[1])
v.enable_cache()
v["k"] = b"parent-cached"
pid = os.fork()
if pid == 0:
    v["c"] = b"child-cached"
    ok = v.flush_cache() == 1 and v.get("k") is None and v.get("c") == b"child-cached"
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), v.flush_cache(), v.get("c"))
"""
    result = run_python(code, str(db_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1", "b'child-cached'"]
