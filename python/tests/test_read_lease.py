"""Read leases: reads in quick succession share one read transaction (no WAL read lock each).
They must see other connections' commits at once, and a vault that goes idle must let go of
its snapshot within milliseconds, or other connections could not finish a checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ambervault import ColumnVault, KVault


def _truncating_checkpoint(path) -> tuple:
    """A full checkpoint by a connection in another process: (busy, wal frames, frames
    copied). Another process, because POSIX file locks do not conflict within one process,
    so a second SQLite library in this one would not see the vault's locks at all."""
    script = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "print(*conn.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    return tuple(int(x) for x in out.stdout.split())


def _wal_size(path) -> int:
    wal = f"{path}-wal"
    return os.path.getsize(wal) if os.path.exists(wal) else 0


def _settle_after_idle(path, tries: int = 20) -> tuple:
    """Checkpoints until it completes; the reaper ends an idle lease within a few ms, so one
    try is normally enough (each starts a process, which takes far longer than that)."""
    result = None
    for _ in range(tries):
        result = _truncating_checkpoint(path)
        if result[0] == 0:
            break
        time.sleep(0.05)
    return result


def test_reads_see_another_vaults_writes_at_once(db_path):
    with KVault(db_path) as reader, KVault(db_path) as writer:
        for i in range(200):
            writer["k"] = b"%d" % i
            assert reader["k"] == b"%d" % i
            assert reader.get("k") == b"%d" % i
        writer["other"] = b"x"
        assert "other" in reader
        assert len(reader) == 2


def test_column_reads_see_another_stores_appends_at_once(tmp_path):
    path = tmp_path / "c.db"
    with ColumnVault(path) as writer_cv, ColumnVault(path) as reader_cv:
        writer = writer_cv.create_column("x", "f64")
        writer.extend([float(i) for i in range(5000)])
        reader = reader_cv["x"]
        for i in range(100):
            writer.append(float(5000 + i))
            assert len(reader) == 5001 + i
            assert reader[-1] == float(5000 + i)
            window = reader.to_numpy(len(reader) - 1000, len(reader))
            assert window[-1] == float(5000 + i)
            assert window[0] == float(4001 + i)


def test_an_idle_vault_lets_other_connections_checkpoint(db_path):
    with KVault(db_path) as reader, KVault(db_path) as writer:
        writer["a"] = b"1"
        writer.checkpoint()
        for _ in range(10):
            assert reader["a"] == b"1"
        writer["a"] = b"2"  # a frame in the WAL that a full checkpoint must copy back
        busy, _, _ = _settle_after_idle(db_path)
        assert busy == 0
        assert _wal_size(db_path) == 0
        assert reader["a"] == b"2"


def test_an_idle_column_store_lets_other_connections_checkpoint(tmp_path):
    path = tmp_path / "c.db"
    with ColumnVault(path) as cv, KVault(path) as writer:
        col = cv.create_column("x", "f64")
        col.extend([float(i) for i in range(100_000)])
        cv.checkpoint()
        for start in range(0, 90_000, 9_000):
            assert col.to_numpy(start, start + 1000)[0] == float(start)
        writer["a"] = b"1"
        busy, _, _ = _settle_after_idle(str(path))
        assert busy == 0
        assert _wal_size(str(path)) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_a_forked_child_ends_its_idle_leases_too(db_path):
    vault = KVault(db_path)
    vault["a"] = b"1"
    assert vault["a"] == b"1"  # the parent holds a lease at the fork
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # The inherited vault reopens its connection in the child (and takes no leases
            # there: the new connection has no commit token); a vault opened in the child
            # leases, and its reaper, started in the child, ends the lease when it goes idle.
            with KVault(db_path) as writer, KVault(db_path) as reader:
                assert vault["a"] == b"1"
                assert reader["a"] == b"1"
                writer["a"] = b"2"
                assert vault["a"] == b"2"
                assert reader["a"] == b"2"
                busy, _, _ = _settle_after_idle(str(db_path))
                code = 0 if busy == 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert vault["a"] == b"2"
    vault.close()


_FORK_WHILE_REAPING = """
import os, sys, time
from ambervault import KVault

vault = KVault(sys.argv[1])
vault["a"] = b"1"
assert vault["a"] == b"1"  # takes a lease and wakes the reaper
time.sleep(0.05)  # the reaper now holds the store's lock (for 300 ms, by the test hook)
pid = os.fork()
if pid == 0:
    ok = False
    try:
        ok = vault["a"] == b"1"
    finally:
        os._exit(0 if ok else 3)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.01)
os.kill(pid, 9)
sys.exit(4)  # the child hung on a lock it inherited held
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_fork_waits_for_the_reaper_to_let_go_of_the_store(db_path):
    """A fork child inherits locks as they were: a fork taken while the reaper held the
    store's lock must not leave the child waiting forever."""
    env = dict(os.environ, AMBERVAULT_TEST_REAPER_HOLD_MS="300")
    done = subprocess.run(
        [sys.executable, "-c", _FORK_WHILE_REAPING, str(db_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
