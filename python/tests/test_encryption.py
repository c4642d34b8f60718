"""Encryption at rest (SQLCipher, the `encryption` build feature).

In a build with encryption (``make test-encryption``) every test here runs; ``make
test-encryption`` also sets ``AMBERVAULT_EXPECT_ENCRYPTION=1``, so a build that lost the feature
fails instead of skipping them. In the default build only the tests of the refusal run: a key
given to a build without encryption raises ``EncryptionUnavailableError`` and creates nothing.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ambervault
from ambervault import (
    ColumnVault,
    CorruptionError,
    EncryptionUnavailableError,
    InvalidArgument,
    KVault,
    TextVault,
    VectorKVault,
    WrongKeyError,
)
from helpers import REPO, run_python

ENCRYPTED = ambervault.encryption_available()
# The default build (CI's) has no SQLCipher: these tests run in `make test-encryption`, whose
# AMBERVAULT_EXPECT_ENCRYPTION=1 turns a missing feature into a failure (below), never a skip.
needs_encryption = pytest.mark.skipif(
    not ENCRYPTED,
    reason="needs the `encryption` build (SQLCipher, OpenSSL: 5-6 min to build); make test-encryption",
)
# The refusal a build without the feature gives to `key=`; an encrypted build has no such refusal.
without_encryption = pytest.mark.skipif(
    ENCRYPTED, reason="tests the refusal of key= by a build without encryption; this build encrypts"
)

PASSPHRASE = "correct horse battery staple"
RAW_KEY = bytes(range(32))
MARKER = b"PLAINTEXT-MARKER-7f3a"


@pytest.fixture(autouse=True)
def _no_test_key(monkeypatch):
    # The suites run with AMBERVAULT_TEST_KEY encrypt every file opened without a key; the tests
    # here give their keys (or deliberately none) themselves.
    monkeypatch.delenv("AMBERVAULT_TEST_KEY", raising=False)


def files_of(path: Path) -> dict:
    """The bytes of the vault file and its WAL (absent: None)."""
    out = {}
    for suffix in ("", "-wal"):
        p = Path(str(path) + suffix)
        out[suffix] = p.read_bytes() if p.exists() else None
    return out


def test_encryption_available_is_a_bool():
    assert isinstance(ENCRYPTED, bool)


def test_build_has_encryption_when_expected():
    """``make test-encryption`` must test an encrypted build, never skip these tests."""
    if os.environ.get("AMBERVAULT_EXPECT_ENCRYPTION") == "1":
        assert ENCRYPTED, "AMBERVAULT_EXPECT_ENCRYPTION=1 but this build has no encryption"


@pytest.mark.parametrize("key", ["", b"", b"short", bytes(33), b"x" * 31])
def test_bad_key_values_are_refused_before_anything_is_created(tmp_path, key):
    path = tmp_path / "v.db"
    with pytest.raises(InvalidArgument):
        KVault(path, key=key)
    assert not path.exists()


@pytest.mark.parametrize("key", [123, 1.5, ["k"], object()])
def test_bad_key_types_are_type_errors(tmp_path, key):
    path = tmp_path / "v.db"
    with pytest.raises(TypeError):
        KVault(path, key=key)
    assert not path.exists()


@without_encryption
@pytest.mark.parametrize(
    "opener",
    [
        lambda p, k: KVault(p, key=k),
        lambda p, k: ColumnVault(p, key=k),
        lambda p, k: VectorKVault(p, dimensions=2, key=k),
        lambda p, k: TextVault(p, key=k),
    ],
    ids=["KVault", "ColumnVault", "VectorKVault", "TextVault"],
)
@pytest.mark.parametrize("key", [PASSPHRASE, RAW_KEY], ids=["passphrase", "raw"])
def test_a_build_without_encryption_refuses_a_key_and_creates_nothing(tmp_path, opener, key):
    path = tmp_path / "v.db"
    with pytest.raises(EncryptionUnavailableError, match="no encryption"):
        opener(path, key)
    assert not path.exists()
    # An existing plain vault is left alone too.
    with KVault(path) as v:
        v["k"] = b"v"
    before = files_of(path)
    with pytest.raises(EncryptionUnavailableError):
        opener(path, key)
    assert files_of(path) == before


@without_encryption
def test_rekey_without_encryption_is_refused(tmp_path):
    with KVault(tmp_path / "v.db") as v, pytest.raises(EncryptionUnavailableError):
        v.rekey(PASSPHRASE)


def test_encryption_unavailable_is_an_invalid_argument_and_wrong_key_is_not_corruption():
    assert issubclass(EncryptionUnavailableError, InvalidArgument)
    assert issubclass(WrongKeyError, ambervault.VaultError)
    # Code that recreates damaged files must never discard an encrypted vault over a wrong key.
    assert not issubclass(WrongKeyError, CorruptionError)


# -- with encryption ------------------------------------------------------------------------------


@needs_encryption
@pytest.mark.parametrize("key", [PASSPHRASE, RAW_KEY], ids=["passphrase", "raw"])
def test_round_trip_of_small_chunked_streamed_and_typed_values(tmp_path, key):
    path = tmp_path / "v.db"
    big = os.urandom(3 << 20)
    with KVault(path, key=key, chunk_size=64 << 10) as v:
        v["small"] = b"tiny"
        v["chunked"] = big[:500_000]
        v.put_file("streamed", io.BytesIO(big))
        v[("user", 1)] = {"name": "Ada", "tags": ["x"]}
        with v.open("written", "wb") as w:
            for i in range(0, len(big), 100_000):
                w.write(big[i : i + 100_000])
    with KVault(path, key=key, chunk_size=64 << 10) as v:
        assert v["small"] == b"tiny"
        assert v["chunked"] == big[:500_000]
        out = io.BytesIO()
        v.get_to_file("streamed", out)
        assert out.getvalue() == big
        with v.open("written") as r:
            r.seek(1 << 20)
            assert r.read(1000) == big[1 << 20 : (1 << 20) + 1000]
        assert v[("user", 1)] == {"name": "Ada", "tags": ["x"]}
        assert v.check() == []


@needs_encryption
def test_columns_vectors_and_text_in_an_encrypted_file(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "v.db"
    with KVault(path, key=PASSPHRASE) as kv:
        cv = ColumnVault(kv)
        col = cv.ensure("loss", "f64")
        col.extend([0.5, 0.25, 0.125] * 10_000)
        names = cv.ensure("names", "str")
        names.extend(["alpha", "beta"])
        vk = VectorKVault(kv, dimensions=3)
        vk.insert([1.0, 0.0, 0.0], b"x")
        tv = TextVault(kv, tokenizer="porter")
        tv.insert("encrypted cats are running", {"page": 1})
    with ColumnVault(path, key=PASSPHRASE) as cv:
        assert len(cv["loss"]) == 30_000
        assert cv["loss"].to_numpy()[-1] == 0.125
        assert list(cv["names"]) == ["alpha", "beta"]
        assert cv.check() == []
    vk = VectorKVault(path, dimensions=3, key=PASSPHRASE)
    assert vk.search(np.array([0.9, 0.1, 0.0], dtype=np.float32), k=1)[0][2] == b"x"
    vk.close()
    tv = TextVault(path, key=PASSPHRASE)
    assert [value for _, _, value in tv.search("cat runs")] == [{"page": 1}]
    tv.close()
    assert TextVault.tables(path, key=PASSPHRASE) == ["text_vault"]
    with pytest.raises(CorruptionError):
        TextVault.tables(path)


def _write_markers(v: KVault) -> None:
    for i in range(200):
        v[MARKER + b"-key-%d" % i] = MARKER * 20  # inline values
    v["chunked"] = MARKER * 100_000  # chunked, 2 MB
    ColumnVault(v).ensure("text", "str").extend([MARKER.decode()] * 1000)


@needs_encryption
def test_no_plaintext_in_the_file_or_its_wal(tmp_path):
    # The same writes in a plain file show the marker: the search below would find it.
    plain = tmp_path / "plain.db"
    with KVault(plain) as v:
        _write_markers(v)
        assert MARKER in Path(str(plain) + "-wal").read_bytes() + plain.read_bytes()

    path = tmp_path / "v.db"
    v = KVault(path, key=PASSPHRASE, chunk_size=64 << 10)
    _write_markers(v)
    on_disk = files_of(path)
    assert on_disk["-wal"], "expected the writes in the WAL"
    for name, data in on_disk.items():
        assert data is not None and MARKER not in data, f"plaintext in the file{name}"
        assert b"SQLite format 3" not in data[:100]
    v.checkpoint()
    v.close()
    data = path.read_bytes()
    assert MARKER not in data
    assert not data.startswith(b"SQLite format 3\x00")
    with KVault(path, key=PASSPHRASE) as v:
        assert v[MARKER + b"-key-7"] == MARKER * 20
        assert v.check() == []


@needs_encryption
def test_each_file_gets_its_own_random_salt(tmp_path):
    # The first 16 bytes are the salt of the key derivation: one passphrase, different keys.
    heads = set()
    for name in ("a.db", "b.db", "c.db"):
        with KVault(tmp_path / name, key=PASSPHRASE) as v, ColumnVault(v) as cv:
            v["k"] = os.urandom(10_000)
            cv.ensure("c", "f64").extend([1.0] * 1000)
        head = (tmp_path / name).read_bytes()[:16]
        assert head != bytes(16)
        heads.add(head)
    assert len(heads) == 3


def _leave_a_wal(path: Path, key) -> None:
    """A process writes to ``path`` and dies without closing: its WAL stays behind."""
    result = run_python(
        """
        import os, sys, ambervault
        key = sys.argv[2] if sys.argv[3] == "str" else bytes.fromhex(sys.argv[2])
        v = ambervault.KVault(sys.argv[1], key=key)
        for i in range(50):
            v[f"k{i}"] = os.urandom(3000)
        v["last"] = b"acknowledged"
        os._exit(0)
        """,
        str(path),
        key if isinstance(key, str) else key.hex(),
        "str" if isinstance(key, str) else "bytes",
    )
    assert result.returncode == 0, result.stderr


@needs_encryption
def test_wrong_or_missing_key_is_refused_and_changes_no_byte(tmp_path):
    path = tmp_path / "v.db"
    _leave_a_wal(path, PASSPHRASE)
    before = files_of(path)
    assert before["-wal"], "the dead writer's WAL should still be there"
    with pytest.raises(WrongKeyError, match="key does not open"):
        KVault(path, key="wrong passphrase")
    assert files_of(path) == before
    with pytest.raises(WrongKeyError):
        KVault(path, key=RAW_KEY)
    with pytest.raises(WrongKeyError):
        ColumnVault(path, key="wrong", read_only=True)
    assert files_of(path) == before
    # Without a key an encrypted file cannot be told from random bytes: a CorruptionError that
    # points at the key.
    with pytest.raises(CorruptionError, match="encrypted vault, open it with its key"):
        KVault(path)
    with pytest.raises(CorruptionError, match="key"):
        KVault(path, read_only=True)
    assert files_of(path) == before
    # The right key opens it, with every acknowledged write.
    with KVault(path, key=PASSPHRASE) as v:
        assert v["last"] == b"acknowledged"
        assert len(v) == 51
        assert v.check() == []


@needs_encryption
def test_a_key_for_a_plain_file_is_refused_and_changes_no_byte(tmp_path):
    path = tmp_path / "v.db"
    v = KVault(path)
    v["k"] = b"v"
    before = files_of(path)
    with pytest.raises(WrongKeyError, match="not encrypted"):
        KVault(path, key=PASSPHRASE)
    with pytest.raises(WrongKeyError, match="not encrypted"):
        KVault(path, key=RAW_KEY, read_only=True)
    assert files_of(path) == before
    v.close()
    before = files_of(path)
    with pytest.raises(WrongKeyError, match="not encrypted"):
        KVault(path, key=PASSPHRASE)
    assert files_of(path) == before
    with KVault(path) as v:
        assert v["k"] == b"v"


@needs_encryption
def test_a_raw_key_and_its_passphrase_spelling_are_different_keys(tmp_path):
    path = tmp_path / "v.db"
    with KVault(path, key=RAW_KEY) as v:
        v["k"] = b"v"
    with pytest.raises(WrongKeyError):
        KVault(path, key=RAW_KEY.hex())
    with KVault(path, key=bytearray(RAW_KEY), read_only=True) as v:
        assert v["k"] == b"v"
        assert v.read_only


@needs_encryption
def test_in_memory_vaults_take_no_key():
    with pytest.raises(InvalidArgument, match="needs a file"):
        KVault(":memory:", key=PASSPHRASE)


@needs_encryption
def test_the_key_stays_out_of_repr_and_survives_pickling(tmp_path):
    path = tmp_path / "v.db"
    with KVault(path, key=PASSPHRASE) as v:
        v["k"] = b"v"
        for text in (repr(v), str(v), repr(v._open_args), repr(v._file), repr(v._file.open_args)):
            assert PASSPHRASE not in text
        copy = pickle.loads(pickle.dumps(v))
        try:
            assert copy["k"] == b"v"
        finally:
            copy.close()
        branch = v.create_branch("dev")
        branch["b"] = b"on dev"
        copy = pickle.loads(pickle.dumps(branch))
        try:
            assert copy["b"] == b"on dev"
        finally:
            copy.close()
    with ColumnVault(path, key=PASSPHRASE) as cv:
        cv.ensure("c", "i64").extend([1, 2, 3])
        copy = pickle.loads(pickle.dumps(cv))
        try:
            assert list(copy["c"]) == [1, 2, 3]
        finally:
            copy.close()
    dataset = ambervault.KeyDataset(path, key=PASSPHRASE)
    assert PASSPHRASE not in repr(dataset)
    assert pickle.loads(pickle.dumps(dataset))[0] in (b"v",)


@needs_encryption
def test_backup_snapshot_and_fork_use_the_key(tmp_path):
    path = tmp_path / "v.db"
    with KVault(path, key=PASSPHRASE) as v:
        v["k"] = MARKER
        v.backup(tmp_path / "copy.db")
        with v.snapshot() as snap:
            v["k"] = b"changed"
            assert snap["k"] == MARKER
        pid = os.fork()
        if pid == 0:  # the child reopens the file (a fork never uses the inherited connection)
            ok = v["k"] == b"changed"
            v["child"] = b"wrote"
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert v["child"] == b"wrote"
    copy = tmp_path / "copy.db"
    assert MARKER not in copy.read_bytes()
    with pytest.raises(CorruptionError):
        KVault(copy)
    with KVault(copy, key=PASSPHRASE) as c:
        assert c["k"] == MARKER
        assert c.check() == []


@needs_encryption
def test_bulk_writes_are_checkpointed_by_the_keyed_checkpoint_thread(tmp_path):
    path = tmp_path / "v.db"
    with KVault(path, key=RAW_KEY) as v:
        v["big"] = os.urandom(8 << 20)  # one bulk commit: its checkpoint goes to the thread
        deadline = time.monotonic() + 30
        while path.stat().st_size < (8 << 20) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 8 << 20, "the checkpoint thread did not copy the WAL"
        assert v.check() == []


@needs_encryption
def test_rekey(tmp_path):
    path = tmp_path / "v.db"
    with KVault(path, key=PASSPHRASE) as v:
        v["k"] = b"v"
        v["big"] = os.urandom(2 << 20)
        other = ColumnVault(v)
        other.ensure("c", "i32").extend(range(1000))
        v.rekey(RAW_KEY)
        v["after"] = b"new key"
        copy = pickle.loads(pickle.dumps(v))  # reopens with the new key
        assert copy["after"] == b"new key"
        copy.close()
        assert v.check() == []
    with pytest.raises(WrongKeyError):
        KVault(path, key=PASSPHRASE)
    with KVault(path, key=RAW_KEY) as v:
        assert v["k"] == b"v" and v["after"] == b"new key"
        assert list(ColumnVault(v)["c"])[-1] == 999
        with v.transaction(), pytest.raises(InvalidArgument, match="transaction"):
            v.rekey(PASSPHRASE)
    with KVault(tmp_path / "plain.db") as plain, pytest.raises(InvalidArgument, match="without a key"):
        plain.rekey(PASSPHRASE)


@needs_encryption
def test_async_vault_takes_the_key(tmp_path):
    import asyncio

    from ambervault.aio import AsyncKVault

    path = tmp_path / "v.db"

    async def main() -> bytes:
        async with AsyncKVault(path, key=PASSPHRASE) as vault:
            await vault.put("k", b"async")
            return await vault.get("k")

    assert asyncio.run(main()) == b"async"
    with KVault(path, key=PASSPHRASE) as v:
        assert v["k"] == b"async"


@needs_encryption
def test_the_cli_reads_the_key_from_the_environment(tmp_path):
    path = tmp_path / "v.db"
    with KVault(path, key=PASSPHRASE) as v:
        v["k"] = b"v"
    run = [sys.executable, "-m", "ambervault", "ls", str(path)]
    refused = subprocess.run(run, capture_output=True, text=True)
    assert refused.returncode != 0
    listed = subprocess.run(
        run, capture_output=True, text=True, env={**os.environ, "AMBERVAULT_KEY": PASSPHRASE}
    )
    assert listed.returncode == 0, listed.stderr
    assert "k" in listed.stdout


def test_the_example_takes_the_branch_of_this_build(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "encryption.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "AMBERVAULT_TEST_KEY"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("done")
    if ENCRYPTED:
        assert "wrong key refused" in result.stdout
    else:
        assert "this build has no encryption" in result.stdout


@needs_encryption
def test_migrating_into_an_encrypted_vault(tmp_path):
    kohakuvault = pytest.importorskip("kohakuvault", reason="kohakuvault==1.1.0 is in requirements-dev.txt")
    old = tmp_path / "old.db"
    kv = kohakuvault.KVault(str(old))
    kv["secret"] = MARKER * 10
    kv.close()
    summary = ambervault.migrate_kohakuvault(old, tmp_path / "new.db", key=PASSPHRASE)
    assert summary.tables
    assert MARKER not in (tmp_path / "new.db").read_bytes()
    with KVault(tmp_path / "new.db", key=PASSPHRASE) as new:
        assert new["secret"] == MARKER * 10


@needs_encryption
def test_creation_is_atomic_and_cleans_up_what_a_crash_left(tmp_path):
    # The first page is written and synced under a temporary name, then linked in: the path
    # never holds a partial first page (a torn one would make the file unopenable for good).
    path = tmp_path / "new.db"
    stale = tmp_path / ".new.db.creating-1-2"
    stale.write_bytes(b"x" * 512)
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    recent = tmp_path / ".new.db.creating-3-4"  # maybe another process creating it right now
    recent.write_bytes(b"y")
    with KVault(path, key=RAW_KEY) as kv:
        kv["a"] = b"1"
    assert sorted(p.name for p in tmp_path.iterdir() if ".creating-" in p.name) == [recent.name]
    size = os.path.getsize(path)
    assert size >= 4096 and size % 4096 == 0
    with KVault(path, key=RAW_KEY) as kv:
        assert kv["a"] == b"1" and kv.check() == []


@needs_encryption
def test_a_stale_wal_of_a_deleted_file_is_not_applied_to_a_new_one(tmp_path):
    path = tmp_path / "v.db"
    kv = KVault(path, key=RAW_KEY)
    kv["old"] = b"1"
    os.remove(path)  # the WAL and its index stay behind
    kv.close()
    with KVault(path, key=RAW_KEY) as fresh:
        assert len(fresh) == 0 and fresh.check() == []
        fresh["new"] = b"2"
    with KVault(path, key=RAW_KEY) as again:
        assert dict(again.items()) == {"new": b"2"}
