"""Bad input: every refusal is a clear exception of the documented class, and changes nothing.
File-corruption cases run in a child process so a crash could not take the test run down."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from ambervault import (
    CorruptionError,
    DatabaseBusy,
    IncompatibleFormatError,
    IoError,
    KVault,
    ReadOnlyError,
    VaultError,
    WrongKeyError,
)
from helpers import TEST_KEY, run_python

# Skipped only under make test-encryption (AMBERVAULT_TEST_KEY encrypts every vault): these
# tests damage or build the file with the stdlib sqlite3, which cannot read SQLCipher pages. CI
# runs them.
uses_plain_sqlite = pytest.mark.skipif(
    TEST_KEY is not None,
    reason="AMBERVAULT_TEST_KEY encrypts the vault, and the stdlib sqlite3 these tests use cannot read it",
)
# With a key, a file that is not a vault (or whose first page is damaged) cannot be told from a
# wrong key: WrongKeyError (docs/encryption.md).
NOT_A_VAULT = WrongKeyError if TEST_KEY else CorruptionError


def test_non_sqlite_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "photo.jpg"
    content = os.urandom(64 << 10)
    path.write_bytes(content)
    with pytest.raises(NOT_A_VAULT, match="not a"):
        KVault(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


@uses_plain_sqlite
def test_foreign_sqlite_application_is_refused(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA application_id = 12345")
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    with pytest.raises(CorruptionError, match="another application"):
        KVault(path)


@uses_plain_sqlite
def test_plain_sqlite_file_gains_a_vault_table(tmp_path):
    path = tmp_path / "plain.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes(x)")
    con.execute("INSERT INTO notes VALUES (1)")
    con.commit()
    con.close()
    with KVault(path) as vault:
        vault["k"] = b"v"
    con = sqlite3.connect(path)
    assert con.execute("SELECT x FROM notes").fetchall() == [(1,)]
    con.close()


@uses_plain_sqlite
def test_newer_format_is_refused(db_path):
    KVault(db_path).close()
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA user_version = 999")
    con.close()
    with pytest.raises(IncompatibleFormatError, match="newer"):
        KVault(db_path)


def test_directory_and_missing_parent(tmp_path):
    with pytest.raises(IoError, match="directory") as info:
        KVault(tmp_path)
    assert isinstance(info.value, OSError)
    with pytest.raises(IoError, match="does not exist") as info:
        KVault(tmp_path / "no" / "such" / "dir" / "v.db")
    assert info.value.errno == 2
    assert not (tmp_path / "no").exists()


def test_read_only_flag_reads_and_refuses_writes(db_path):
    with KVault(db_path) as vault:
        vault["k"] = b"v"
    with KVault(db_path, read_only=True) as vault:
        assert vault.read_only
        assert vault["k"] == b"v"
        for write in (
            lambda: vault.put("k", b"w"),
            lambda: vault.delete("k"),
            lambda: vault.put_many([("a", b"b")]),
            lambda: vault.open("x", "wb"),
            lambda: vault.clear(),
        ):
            with pytest.raises(ReadOnlyError):
                write()
    with KVault(db_path) as vault:
        assert dict(vault.items()) == {"k": b"v"}


def test_read_only_of_missing_file_creates_nothing(db_path):
    with pytest.raises(IoError, match="does not exist"):
        KVault(db_path, read_only=True)
    assert not db_path.exists()


UNPRIVILEGED = """
import os, sys
import ambervault  # imported first: after dropping root, root's Python tree may be unreadable
if os.getuid() == 0:
    os.setgid(65534); os.setuid(65534)   # drop root so file permissions apply
assert not os.access(sys.argv[1], os.W_OK)
"""


def _prepare_readonly_tree(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "v.db"
    with KVault(path) as vault:
        vault["k"] = b"v"
        vault["big"] = b"B" * (3 << 20)
    os.chmod(path, 0o444)
    os.chmod(folder, 0o555)
    os.chmod(tmp_path, 0o755)
    for parent in list(tmp_path.parents)[:-1]:
        if not os.access(parent, os.X_OK, effective_ids=False) or parent.stat().st_mode & 0o001 == 0:
            os.chmod(parent, parent.stat().st_mode | 0o001)
    return path


def test_read_only_file_in_read_only_directory(tmp_path):
    path = _prepare_readonly_tree(tmp_path)
    code = (
        UNPRIVILEGED
        + """
v = ambervault.KVault(sys.argv[1], read_only=True)
assert v["k"] == b"v" and len(v["big"]) == 3 << 20
try:
    v["k"] = b"w"
except ambervault.ReadOnlyError as e:
    print("refused:", e)
w = ambervault.KVault(sys.argv[1])          # without read_only: opens read-only by itself
assert w.read_only and w["k"] == b"v"
try:
    w["x"] = b"y"
except ambervault.ReadOnlyError as e:
    print("refused:", e)
"""
    )
    result = run_python(code, str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("refused:") == 2


@pytest.mark.parametrize("damage", ["truncate_half", "truncate_header", "flip_bits", "zero_page"])
def test_damaged_files_give_errors_not_crashes(tmp_path, damage):
    path = tmp_path / "v.db"
    with KVault(path, chunk_size=4096) as vault:
        for i in range(200):
            vault[f"key{i}"] = os.urandom(300)
        vault["big"] = os.urandom(100_000)
        vault.checkpoint()
    data = bytearray(path.read_bytes())
    if damage == "truncate_half":
        data = data[: len(data) // 2]
    elif damage == "truncate_header":
        data = data[:50]
    elif damage == "flip_bits":
        for offset in range(4096, len(data), 997):
            data[offset] ^= 0xA5
    elif damage == "zero_page":
        data[4096 : 4096 * 3] = bytes(8192)
    path.write_bytes(bytes(data))
    code = """
import sys, ambervault
try:
    v = ambervault.KVault(sys.argv[1])
    n = len(v)
    for k in list(v.keys()):
        v.get(k)
    v["new"] = b"x"
    print("survived", n)
except ambervault.VaultError as e:
    print("refused", type(e).__name__, e)
"""
    result = run_python(code, str(path))
    assert result.returncode == 0, result.stderr  # no segfault, no abort, no traceback
    assert result.stdout.startswith(("survived", "refused"))
    if result.stdout.startswith("refused"):
        refusals = ("CorruptionError", "VaultError") + (("WrongKeyError",) if TEST_KEY else ())
        assert any(name in result.stdout for name in refusals), result.stdout


@uses_plain_sqlite
def test_busy_database_raises_database_busy_after_retries(db_path):
    # The lock is held by another process: two SQLite libraries in one process (Python's
    # sqlite3 and ambervault's bundled copy) cannot see each other's POSIX locks.
    KVault(db_path).close()
    blocker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "c.execute('ROLLBACK')\n",
            str(db_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert blocker.stdout.readline().strip() == "locked"
        with KVault(db_path, retries=2, backoff_base=0.01) as vault:
            started = time.monotonic()
            with pytest.raises(DatabaseBusy, match="busy"):
                vault["k"] = b"v"
            assert time.monotonic() - started >= 0.03  # it did back off and retry
            with pytest.raises(DatabaseBusy):
                vault.put_many([("a", b"1")])
            assert vault.get("k") is None  # reads still work under a writer (WAL)
    finally:
        blocker.communicate("go\n", timeout=30)
    with KVault(db_path) as vault:
        assert len(vault) == 0
        vault["k"] = b"v"  # the lock is gone: writes work again
        assert vault["k"] == b"v"


def test_every_error_is_a_vault_error_or_builtin(db_path):
    assert issubclass(CorruptionError, VaultError)
    assert issubclass(ReadOnlyError, IoError)


def test_every_exception_class_is_exported():
    from ambervault import exceptions

    classes = {
        name
        for name, obj in vars(exceptions).items()
        if isinstance(obj, type) and issubclass(obj, VaultError)
    }
    assert classes <= set(exceptions.__all__)
    assert "Conflict" in exceptions.__all__
