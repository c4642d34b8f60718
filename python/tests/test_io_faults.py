"""I/O faults: a full disk, a file deleted or truncated under an open vault. Each gives a clear
exception, never a crash, and the vault reopens with every write acknowledged before the fault."""

from __future__ import annotations

import json
import os
import sys

import pytest

from ambervault import ColumnVault, IoError, KVault, VaultError
from helpers import run_python

DISK_FULL = r"""
import json, resource, signal, sys, ambervault
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # get EFBIG instead of being killed
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
kv = ambervault.KVault(sys.argv[1], chunk_size=4096)
col = ambervault.ColumnVault(kv).ensure("log", "bytes")
acked, error = 0, None
try:
    for i in range(100000):
        kv[f"k{i}"] = bytes([i % 256]) * 5000
        col.append(bytes([i % 256]) * 300)
        acked = i + 1
except ambervault.VaultError as e:
    error = [type(e).__name__, isinstance(e, OSError), str(e)]
# The vault still answers reads after the failed write.
ok = all(kv[f"k{i}"] == bytes([i % 256]) * 5000 for i in range(acked))
print(json.dumps({"acked": acked, "error": error, "reads_ok": ok}))
"""


@pytest.mark.parametrize("limit", [1 << 20, 3 << 20])
def test_full_disk_is_a_clear_error_and_loses_nothing_acknowledged(tmp_path, limit):
    path = tmp_path / "full.db"
    result = run_python(DISK_FULL, str(path), str(limit))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["error"] is not None, "the size limit was never reached"
    name, is_oserror, _message = report["error"]
    assert name == "IoError" and is_oserror, report
    assert report["reads_ok"]
    with KVault(path, chunk_size=4096) as kv:
        assert kv.check() == []
        log = ColumnVault(kv)["log"]
        acked = report["acked"]
        for i in range(acked):
            assert kv[f"k{i}"] == bytes([i % 256]) * 5000
        assert len(log) in (acked, acked + 1)
        assert len(kv) in (acked, acked + 1)
        kv["after"] = b"space again"  # writable again once space is back


def test_deleted_file_refuses_writes_clearly(tmp_path):
    path = tmp_path / "gone.db"
    kv = KVault(path)
    kv["before"] = b"1"
    os.remove(path)
    with pytest.raises(IoError, match="deleted or replaced"):
        kv["after"] = b"2"
    with pytest.raises(IoError, match="deleted or replaced"):
        kv.put_many([("x", b"y")])
    assert kv["before"] == b"1"  # reads of what it had still work
    kv.close()
    with KVault(path) as fresh:  # the path now holds a new, empty vault: nothing half-written
        assert len(fresh) == 0 and fresh.check() == []


def test_replaced_file_refuses_writes_clearly(tmp_path):
    path = tmp_path / "v.db"
    kv = KVault(path)
    kv["a"] = b"1"
    KVault(tmp_path / "other.db").close()
    os.replace(tmp_path / "other.db", path)
    with pytest.raises(IoError, match="deleted or replaced"):
        kv["b"] = b"2"
    kv.close()


@pytest.mark.parametrize("change", ["remove", "replace", "link_then_remove"])
def test_a_change_after_writes_began_refuses_writes(tmp_path, change):
    # The first write learns which file the name leads to (SQLite's check of the path); later
    # ones look the name up in its directory, while other names there change: any change of
    # what the name itself leads to must be seen.
    path = tmp_path / "v.db"
    kv = KVault(path)
    KVault(tmp_path / "other.db").close()
    kv["a"] = b"1"
    (tmp_path / "beside.txt").write_bytes(b"another name changes")
    kv["b"] = b"2"
    if change == "remove":
        os.remove(path)
    elif change == "replace":
        os.replace(tmp_path / "other.db", path)
    else:  # the file is kept under another name, but its WAL is found by the old one
        os.link(path, tmp_path / "kept.db")
        os.remove(path)
    with pytest.raises(IoError, match="deleted or replaced"):
        kv["c"] = b"3"
    assert kv["b"] == b"2"
    kv.close()


def test_truncated_file_gives_errors_not_crashes(tmp_path):
    path = tmp_path / "t.db"
    with KVault(path) as kv:
        kv.put_many([(f"k{i}", os.urandom(500)) for i in range(2000)])
        kv.checkpoint()
    code = r"""
import os, sys, ambervault
kv = ambervault.KVault(sys.argv[1])
os.truncate(sys.argv[1], os.path.getsize(sys.argv[1]) // 3)
outcomes = set()
for op in (lambda: len(kv), lambda: list(kv), lambda: kv.get("k1999"),
           lambda: kv.put("new", b"x"), lambda: kv.check()):
    try:
        op()
        outcomes.add("ok")
    except ambervault.VaultError as e:
        outcomes.add(type(e).__name__)
print(sorted(outcomes))
"""
    result = run_python(code, str(path))
    assert result.returncode == 0, result.stderr  # no segfault, no unhandled exception
    outcomes = eval(result.stdout)
    assert outcomes and set(outcomes) <= {"ok", "CorruptionError", "IoError", "VaultError"}
    assert issubclass(IoError, VaultError)


SNAPSHOT_READER = r"""
import sys, ambervault
reader = ambervault.KVault(sys.argv[1], read_only=True)
reader._file.native.begin_snapshot()  # held until stdin closes
print("ready", flush=True)
sys.stdin.read()
"""

FAILED_SYNC = r"""
import json, os, subprocess, sys, time
import ambervault
from ambervault._ambervault import powerloss_fail_db_syncs

def checkpoint_thread_alive():
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass
    return "amber-ckpt" in names

def wait_until(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()

def value(prefix, i):
    return f"{prefix}{i}:".encode() * 80

path, reader_code = sys.argv[1], sys.argv[2]
kv = ambervault.KVault(path)
kv.put_many({f"bulk{i}": value("bulk", i) for i in range(10000)})  # starts the thread
started = wait_until(checkpoint_thread_alive)  # it names itself once it runs
kv.checkpoint()  # an empty WAL: the small commits below stay in it (too few to copy)
for i in range(300):
    kv[f"s{i}"] = value("s", i)
# A reader in another process holds the snapshot of those commits: the next bulk write's pass
# stops short of it, so SQLite syncs nothing of the database itself, and the thread's own sync
# of what the pass copied is the one that fails.
reader = subprocess.Popen([sys.executable, "-c", reader_code, path], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
assert reader.stdout.readline().strip() == "ready"
if not powerloss_fail_db_syncs(True):
    raise SystemExit("the power-loss recorder is not active (needs a test-hooks build)")
kv.put_many({f"more{i}": value("more", i) for i in range(10000)})
ended = wait_until(lambda: not checkpoint_thread_alive())
# Writes go on while syncs fail, and are read back.
for i in range(300):
    kv[f"after{i}"] = value("after", i)
during = all(kv[f"after{i}"] == value("after", i) for i in range(300))
reader.stdin.close()
reader.wait()
powerloss_fail_db_syncs(False)
kv.put_many({f"last{i}": value("last", i) for i in range(10000)})
kv.close()
kv = ambervault.KVault(path)
expected = {("bulk", 10000), ("s", 300), ("more", 10000), ("after", 300), ("last", 10000)}
reopened = all(kv[f"{p}{i}"] == value(p, i) for p, n in expected for i in range(n))
print(json.dumps({"started": started, "ended": ended, "during": during, "reopened": reopened,
                  "len": len(kv), "check": kv.check()}))
"""


# The checkpoint thread is seen by its name in /proc/self/task, which only Linux has (as
# checkpoint_tests.rs does); CI runs on Linux, so the test always runs there.
@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="finds the checkpoint thread by name in /proc/self/task (Linux only)",
)
def test_a_failed_sync_of_the_checkpoint_thread_ends_it_and_loses_nothing(tmp_path):
    """Linux reports a failed write-back once per open file, so the checkpoint thread must not
    go on syncing through its connection after one; writes carry on and survive a reopen."""
    path = tmp_path / "v.db"
    env = {"AMBERVAULT_TEST_POWERLOSS_LOG": str(tmp_path / "events.log")}
    result = run_python(FAILED_SYNC, str(path), SNAPSHOT_READER, env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["started"], "the bulk write did not start the checkpoint thread"
    assert out["ended"], "the checkpoint thread went on after its sync failed"
    assert out["during"] and out["reopened"], out
    assert out["len"] == 30600
    assert out["check"] == []
