"""I/O faults: a full disk, a file deleted or truncated under an open vault. Each gives a clear
exception, never a crash, and the vault reopens with every write acknowledged before the fault."""

from __future__ import annotations

import json
import os
import time

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
def test_a_change_in_a_quiet_directory_refuses_writes(tmp_path, change):
    # Writes skip the path check while the directory's names have not changed for a while
    # (its modification time set an hour back here): any change of a name must end that.
    path = tmp_path / "v.db"
    kv = KVault(path)
    KVault(tmp_path / "other.db").close()
    old = time.time() - 3600
    os.utime(tmp_path, (old, old))
    kv["a"] = b"1"
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
