"""Bundles (issue 20): ``KVault.export_bundle``, ``ambervault.validate_bundle`` and
``KVault.import_bundle``.

A bundle must carry every value exactly as stored (encoding code and bytes, never re-encoded),
large values streamed, and the time expiring keys had left; an import must make the target's
keys under the bundle's prefix exactly the bundle's and leave the rest alone; any change to a
bundle after export (a value, a checksum record, a key, the manifest, the file itself) must be
refused with a :class:`BundleError` naming it, and a refused import must change nothing. The
crash tests (SIGKILL during export and import) are in ``crash/test_bundles_crash.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from ambervault import (
    BundleError,
    ClosedError,
    InvalidArgument,
    Json,
    KVault,
    ReadOnlyError,
    validate_bundle,
)
from ambervault._bundle_apply import apply_bundle
from ambervault._bundle_format import RootDigest, key_kind, manifest_digest
from ambervault._bundle_reader import BundleReader
from helpers import same_value

CHUNK = 1024


class Clock:
    """An injected clock (epoch seconds) the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def stored(kv: KVault) -> dict:
    """Every live key with its key type, encoding, stored bytes and expiry: what an import must
    reproduce exactly."""
    state = {}
    for key in kv.keys():
        info = kv.info(key)
        with kv.open(key) as f:
            data = f.read()
        state[key] = (type(key), info["encoding"], data, info["expires_at_ms"])
    return state


def versions(kv: KVault) -> dict:
    return {key: kv.version(key) for key in kv.keys()}


def file_digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def source(tmp_path):
    """A vault with raw, typed, chunked, tuple-keyed, bytes-keyed and expiring values."""
    clock = Clock(1_000.0)
    kv = KVault(tmp_path / "source.db", chunk_size=CHUNK, clock=clock)
    kv["img/small"] = os.urandom(100)
    kv["img/large"] = os.urandom(40 * CHUNK + 17)  # chunked: 41 chunks
    kv["doc/text"] = "héllo"
    kv["doc/dict"] = {"n": 1, "tags": ("a", "b"), "nested": {"x": [1.5, None]}}
    kv["doc/json"] = Json({"kept": "as json"})  # re-encoding would make it MessagePack
    kv["arr/matrix"] = np.arange(3000, dtype=np.float32).reshape(30, 100)  # typed and chunked
    kv[("org", 1)] = b"tuple key"
    kv[b"\xff\x00bytes"] = b"bytes key"
    kv.put("ttl/live", b"expires later", ttl=100)
    kv.put("ttl/dead", b"expires before the export", ttl=10)
    clock.now = 1_030.0
    yield kv
    kv.close()


@pytest.fixture
def bundle(source, tmp_path):
    path = tmp_path / "source.bundle"
    source.export_bundle(path)
    return path


# -- export and round trip -------------------------------------------------------------------------
def test_export_summary_matches_validation_and_the_file_is_one_vault_file(source, tmp_path):
    out = tmp_path / "out" / "all.bundle"
    out.parent.mkdir()
    summary = source.export_bundle(out)
    want = stored(source)
    assert summary["keys"] == len(want) == 9  # the expired key is not exported
    assert summary["bytes"] == sum(len(v[2]) for v in want.values())
    assert summary["source_table"] == "kvault" and summary["prefix"] is None
    assert summary["created_at_ms"] == 1_030_000 and summary["format_version"] == 1
    assert os.listdir(out.parent) == ["all.bundle"]  # no temporary or side file left
    checked = validate_bundle(out)
    assert checked == summary
    # The bundle is an ambervault file: its values read back as the source's.
    with KVault(out, read_only=True) as values:
        assert sorted(values.keys(), key=repr) == sorted(want, key=repr)
        assert same_value(values["doc/dict"], source["doc/dict"])
        assert values["img/large"] == source["img/large"]
        assert values.info("img/large")["chunked"] and values.info("arr/matrix")["chunked"]
        assert values.expires_at("ttl/live") is None  # the bundle keeps it; its record has the TTL
    assert os.listdir(out.parent) == ["all.bundle"]


def test_round_trip_keeps_every_value_exactly_as_stored(source, bundle, tmp_path):
    target = KVault(tmp_path / "target.db", chunk_size=4 * CHUNK, clock=Clock(5_000.0))
    summary = target.import_bundle(bundle)
    assert (summary["added"], summary["changed"], summary["deleted"], summary["unchanged"]) == (9, 0, 0, 0)
    want, got = stored(source), stored(target)
    assert got.keys() == want.keys()
    for key, (kind, encoding, data, _) in want.items():
        assert got[key][:3] == (kind, encoding, data), key
    assert target.info("doc/json")["encoding"] == "json"
    assert target.info("arr/matrix")["encoding"] == "numpy"
    assert same_value(target["doc/dict"], source["doc/dict"])
    np.testing.assert_array_equal(target["arr/matrix"], source["arr/matrix"])
    assert target["arr/matrix"].dtype == np.float32
    assert target[b"\xff\x00bytes"] == b"bytes key" and target[("org", 1)] == b"tuple key"
    assert target.check() == []
    target.close()


def test_expiring_keys_keep_the_time_they_had_left(source, bundle, tmp_path):
    # ttl/live was written at 1000 s with 100 s to live and exported at 1030 s: 70 s left.
    target = KVault(tmp_path / "target.db", clock=Clock(5_000.0))
    target.import_bundle(bundle)
    assert target.expires_at("ttl/live") == 5_070.0
    assert target.expires_at("img/small") is None
    assert "ttl/dead" not in target
    # Re-importing an identical value only moves its expiry; the value is not rewritten.
    before = target.version("ttl/live")
    target._clock.now = 5_050.0  # type: ignore[attr-defined]
    assert target.import_bundle(bundle)["unchanged"] == 9
    assert target.expires_at("ttl/live") == 5_120.0
    assert target.version("ttl/live") == before
    target.close()


def test_prefix_export_holds_only_those_keys(source, tmp_path):
    out = tmp_path / "img.bundle"
    summary = source.export_bundle(out, prefix="img/")
    assert summary["keys"] == 2 and summary["prefix"] == "img/"
    with KVault(out, read_only=True) as values:
        assert sorted(values.keys()) == ["img/large", "img/small"]
    tuples = tmp_path / "org.bundle"
    assert source.export_bundle(tuples, prefix=("org",))["keys"] == 1
    assert validate_bundle(tuples)["prefix"] == ("org",)


def test_export_includes_writes_held_in_the_write_back_cache(tmp_path):
    with KVault(tmp_path / "c.db") as kv:
        kv.enable_cache()
        kv["cached"] = b"not flushed yet"
        out = tmp_path / "c.bundle"
        assert kv.export_bundle(out)["keys"] == 1
    with KVault(out, read_only=True) as values:
        assert values["cached"] == b"not flushed yet"


def test_an_empty_selection_exports_an_empty_valid_bundle(source, tmp_path):
    out = tmp_path / "none.bundle"
    assert source.export_bundle(out, prefix="nothing/")["keys"] == 0
    assert validate_bundle(out)["bytes"] == 0


def test_large_values_are_streamed_in_pieces_not_read_whole(tmp_path):
    size = 12 << 20
    with KVault(tmp_path / "big.db", chunk_size=64 << 10) as kv:
        kv.put_file("movie", (os.urandom(1 << 20) for _ in range(size >> 20)))
        out = tmp_path / "big.bundle"
        tracemalloc.start()
        try:
            kv.export_bundle(out)
            _, export_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            with KVault(tmp_path / "copy.db", chunk_size=64 << 10) as copy:
                copy.import_bundle(out)
                _, import_peak = tracemalloc.get_traced_memory()
                assert copy.info("movie")["size"] == size
                assert copy.open("movie").read() == kv.open("movie").read()
        finally:
            tracemalloc.stop()
    # A whole-value read would hold 12 MiB of Python bytes at once.
    assert export_peak < size // 4, export_peak
    assert import_peak < size // 4, import_peak


# -- import: add, change, delete, leave alone ------------------------------------------------------
def test_import_adds_changes_deletes_and_leaves_identical_values_unwritten(source, tmp_path):
    out = tmp_path / "img.bundle"
    source.export_bundle(out, prefix="img/")
    target = KVault(tmp_path / "target.db", chunk_size=CHUNK)
    target["img/small"] = source["img/small"]  # identical: kept
    target["img/large"] = b"an older picture"  # different: replaced
    target["img/stale"] = b"not in the bundle"  # under the prefix: deleted
    target["doc/mine"] = b"another prefix"  # outside: untouched
    target["imgX"] = b"a near miss of the prefix"  # outside too
    before = versions(target)
    summary = target.import_bundle(out)
    assert (summary["added"], summary["changed"], summary["deleted"], summary["unchanged"]) == (0, 1, 1, 1)
    assert summary["bytes_written"] == len(source["img/large"])
    assert sorted(target.keys()) == ["doc/mine", "img/large", "img/small", "imgX"]
    assert target["img/large"] == source["img/large"]
    assert target.version("img/small") == before["img/small"]  # not rewritten
    assert target.version("img/large") == before["img/large"] + 1
    assert target["doc/mine"] == b"another prefix" and target["imgX"] == b"a near miss of the prefix"
    assert target.version("doc/mine") == before["doc/mine"]
    assert target.check() == []
    target.close()


def test_import_without_prefix_makes_the_whole_table_equal(source, bundle, tmp_path):
    target = KVault(tmp_path / "target.db")
    target["zzz"] = b"extra"
    target["doc/text"] = b"same bytes, other encoding"
    target.import_bundle(bundle)
    assert {k: v[:3] for k, v in stored(target).items()} == {k: v[:3] for k, v in stored(source).items()}
    target.close()


def test_import_rewrites_a_value_stored_under_another_encoding_or_key_type(tmp_path):
    with KVault(tmp_path / "s.db") as kv:
        kv["k"] = b"\xa1x"  # raw bytes that happen to be MessagePack for "x"
        kv[b"b"] = b"1"
        out = tmp_path / "s.bundle"
        kv.export_bundle(out)
    with KVault(tmp_path / "t.db") as target:
        target.put("k", "x")  # MessagePack "x": the same bytes, encoded
        target["b"] = b"1"  # the same entry, but a str key
        with target.open("k") as f:
            assert f.read() == b"\xa1x"
        summary = target.import_bundle(out)
        assert summary["changed"] == 2 and summary["unchanged"] == 0
        assert target["k"] == b"\xa1x" and target.info("k")["encoding"] == "raw"
        assert list(target.keys()) == [b"b", "k"]


def test_import_lands_after_writes_held_in_the_write_back_cache(source, tmp_path):
    out = tmp_path / "img.bundle"
    source.export_bundle(out, prefix="img/")
    with KVault(tmp_path / "t.db") as target:
        target.enable_cache()
        target["img/cached"] = b"written before the import, not flushed yet"
        target["doc/cached"] = b"outside the prefix"
        assert target.import_bundle(out)["deleted"] == 1
        assert sorted(target.keys()) == ["doc/cached", "img/large", "img/small"]
        target.flush_cache()
        assert sorted(target.keys()) == ["doc/cached", "img/large", "img/small"]


def test_import_into_a_transaction_joins_it(source, bundle, tmp_path):
    target = KVault(tmp_path / "target.db")
    target["keep"] = b"1"
    t = target.transaction()
    target.import_bundle(bundle)
    assert len(target) == 9
    t.rollback()
    assert list(target.keys()) == ["keep"]
    target.close()


def test_a_value_that_differs_from_its_record_rolls_the_whole_import_back(source, bundle, tmp_path):
    # apply_bundle checks every value again as it copies it: bypass validation to reach that check.
    tamper_value(bundle, "ttl/live")  # the last key in order: every other key is written first
    target = KVault(tmp_path / "target.db")
    target["img/small"] = b"old"
    target["other"] = b"x"
    before, before_versions = stored(target), versions(target)
    with BundleReader(bundle) as reader, pytest.raises(BundleError, match="ttl/live"):
        apply_bundle(target, reader)
    assert stored(target) == before and versions(target) == before_versions
    assert target.check() == []
    target.close()


# -- tampering -------------------------------------------------------------------------------------
def sql(path, statement: str, *args) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(statement, args)
        conn.commit()
    finally:
        conn.close()


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def tamper_value(path, key: str) -> None:
    conn = sqlite3.connect(path)
    try:
        (data,) = conn.execute("SELECT inline_data FROM kvault WHERE key = ?", (key.encode(),)).fetchone()
        conn.execute("UPDATE kvault SET inline_data = ? WHERE key = ?", (flip(data), key.encode()))
        conn.commit()
    finally:
        conn.close()


def tamper_chunk(path) -> None:
    conn = sqlite3.connect(path)
    try:
        (blob_id,) = conn.execute("SELECT blob_id FROM kvault WHERE key = ?", (b"img/large",)).fetchone()
        (cid,) = conn.execute(
            "SELECT cid FROM kvault__chunks WHERE id = ?", ((blob_id << 32) + 3,)
        ).fetchone()
        (data,) = conn.execute("SELECT data FROM kvault__content WHERE cid = ?", (cid,)).fetchone()
        conn.execute("UPDATE kvault__content SET data = ? WHERE cid = ?", (flip(data, 500), cid))
        conn.commit()
    finally:
        conn.close()


def tamper_record(path) -> None:
    conn = sqlite3.connect(path)
    try:
        (data,) = conn.execute(
            "SELECT inline_data FROM bundle_checksums WHERE key = ?", (b"doc/text",)
        ).fetchone()
        conn.execute(
            "UPDATE bundle_checksums SET inline_data = ? WHERE key = ?",
            (flip(data, len(data) - 1), b"doc/text"),
        )
        conn.commit()
    finally:
        conn.close()


def edit_manifest(path, recompute: bool = False, **changes) -> None:
    with KVault(path, table="bundle_manifest", enable_wal=False) as kv:
        manifest = kv["manifest"]
        manifest.update(changes)
        if recompute:
            manifest["manifest_digest"] = manifest_digest(manifest)
        kv["manifest"] = manifest


def add_consistent_extra_key(path) -> None:
    # The value and its record both check out on their own; only the totals and root cannot.
    with KVault(path, enable_wal=False) as values, KVault(path, table="bundle_checksums") as records:
        values["img/zzz"] = values["img/small"]
        records["img/zzz"] = records["img/small"]


def drop_manifest(path) -> None:
    with KVault(path, table="bundle_manifest", enable_wal=False) as kv:
        del kv["manifest"]


TAMPERINGS = {
    "flipped byte of an inline value": (
        lambda p: tamper_value(p, "img/small"),
        "'img/small' does not match its checksum",
    ),
    "flipped byte of a chunk": (tamper_chunk, "'img/large' does not match its checksum"),
    "edited checksum record": (tamper_record, "'doc/text' does not match its checksum"),
    "deleted value row": (
        lambda p: sql(p, "DELETE FROM kvault WHERE key = ?", b"doc/text"),
        "'doc/text' has a checksum record but no value",
    ),
    "deleted checksum row": (
        lambda p: sql(p, "DELETE FROM bundle_checksums WHERE key = ?", b"doc/text"),
        "'doc/text' has a value but no checksum record",
    ),
    "extra key with a consistent record": (add_consistent_extra_key, "holds 10 keys, its manifest says 9"),
    "changed encoding": (
        lambda p: sql(p, "UPDATE kvault SET encoding = 2 WHERE key = ?", b"img/small"),
        "'img/small' has encoding 2; its record says 0",
    ),
    "changed key type": (
        lambda p: sql(p, "UPDATE kvault SET key_kind = 0 WHERE key = ?", b"doc/text"),
        "is stored as 'doc/text'",
    ),
    "expiry given to a value": (
        lambda p: sql(p, "UPDATE kvault SET expires_at = 9000000000000000 WHERE key = ?", b"doc/text"),
        "given an expiry",
    ),
    "edited manifest": (lambda p: edit_manifest(p, keys=8), "manifest was changed after export"),
    "edited manifest with its digest recomputed": (
        lambda p: edit_manifest(p, recompute=True, keys=8),
        "holds 9 keys, its manifest says 8",
    ),
    "edited root digest": (
        lambda p: edit_manifest(p, recompute=True, digest="0" * 64),
        "do not match the manifest's root digest",
    ),
    "manifest of a newer format": (
        lambda p: edit_manifest(p, recompute=True, format_version=2),
        "format version 2",
    ),
    "no manifest (an unfinished export)": (drop_manifest, "has no manifest"),
    "truncated file": (
        lambda p: os.truncate(p, os.path.getsize(p) // 2),
        "damaged",
    ),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_a_tampered_bundle_is_refused_naming_what_is_wrong(bundle, name):
    tamper, message = TAMPERINGS[name]
    assert validate_bundle(bundle)["keys"] == 9
    tamper(bundle)
    with pytest.raises(BundleError, match=message):
        validate_bundle(bundle)


@pytest.mark.parametrize("name", ["flipped byte of a chunk", "deleted checksum row", "edited manifest"])
def test_import_refuses_a_tampered_bundle_and_changes_nothing(bundle, tmp_path, name):
    tamper, message = TAMPERINGS[name]
    tamper(bundle)
    target = KVault(tmp_path / "target.db", chunk_size=CHUNK)
    target["img/small"] = b"mine"
    target["zzz"] = os.urandom(5 * CHUNK)
    before, before_versions = stored(target), versions(target)
    with pytest.raises(BundleError, match=message):
        target.import_bundle(bundle)
    assert stored(target) == before and versions(target) == before_versions
    assert target.check() == []
    target.close()


def test_the_checksums_are_not_a_signature(bundle):
    """What docs/bundles.md says: whoever can write the file can rewrite a value, its record, the
    root digest and the manifest consistently, and the bundle validates."""
    forged_bytes = validate_bundle(bundle)["bytes"] - 100 + len(b"forged")
    with KVault(bundle, enable_wal=False) as values, KVault(bundle, table="bundle_checksums") as records:
        values.put("img/small", b"forged")
        record = bytearray(records["img/small"])
        record[-32:] = hashlib.sha256(b"forged").digest()
        record[2:10] = len(b"forged").to_bytes(8, "little")
        records["img/small"] = bytes(record)
    with pytest.raises(BundleError, match=f"values hold {forged_bytes} bytes"):
        validate_bundle(bundle)
    with BundleReader(bundle) as reader:
        entries = list(reader.entries())
    root = RootDigest()
    for key, raw, entry in entries:
        root.add(raw, key_kind(key), entry)
    edit_manifest(bundle, recompute=True, digest=root.hexdigest(), bytes=root.bytes)
    assert validate_bundle(bundle)["digest"] == root.hexdigest()


def test_a_consistent_bundle_with_a_key_outside_its_prefix_is_refused(source, tmp_path):
    # Even with every digest recomputed, an import must never reach outside the prefix.
    out = tmp_path / "img.bundle"
    source.export_bundle(out, prefix="img/")
    with KVault(out, enable_wal=False) as values, KVault(out, table="bundle_checksums") as records:
        values["doc/evil"] = values["img/small"]
        records["doc/evil"] = records["img/small"]
    with BundleReader(out) as reader:
        root = RootDigest()
        for key, raw, entry in reader.entries():
            root.add(raw, key_kind(key), entry)
    edit_manifest(out, recompute=True, digest=root.hexdigest(), keys=root.keys, bytes=root.bytes)
    with pytest.raises(BundleError, match="1 keys of the bundle are outside its prefix 'img/'"):
        validate_bundle(out)
    with KVault(tmp_path / "t.db") as target:
        target["doc/evil"] = b"mine"
        with pytest.raises(BundleError):
            target.import_bundle(out)
        assert dict(target.items()) == {"doc/evil": b"mine"}


def test_files_that_are_not_bundles_are_refused(tmp_path, source):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    empty = tmp_path / "empty.bundle"
    empty.write_bytes(b"")
    plain = tmp_path / "plain.db"
    sql(plain, "CREATE TABLE t (x)")
    vault = tmp_path / "vault.db"
    with KVault(vault) as kv:
        kv["k"] = b"v"
    for path, message in (
        (text, "not a SQLite file"),
        (empty, "not a SQLite file"),
        (plain, "no table"),
        (vault, "no table 'bundle_checksums'"),
        (tmp_path, "not a file"),
    ):
        with pytest.raises(BundleError, match=message):
            validate_bundle(path)
    with pytest.raises(FileNotFoundError):
        validate_bundle(tmp_path / "missing.bundle")
    assert text.read_text() == "hello\n" * 100 and empty.read_bytes() == b""


def test_validation_only_reads(bundle):
    before = file_digest(bundle)
    validate_bundle(bundle)
    with BundleReader(bundle) as reader:
        reader.validate()
    assert file_digest(bundle) == before
    assert [name for name in os.listdir(bundle.parent) if name.startswith("source.bundle")] == [
        "source.bundle"
    ]


# -- arguments -------------------------------------------------------------------------------------
def test_export_refuses_to_overwrite_unless_asked(source, bundle):
    before = file_digest(bundle)
    with pytest.raises(FileExistsError):
        source.export_bundle(bundle)
    assert file_digest(bundle) == before
    source["new"] = b"1"
    assert source.export_bundle(bundle, overwrite=True)["keys"] == 10
    assert validate_bundle(bundle)["keys"] == 10
    with pytest.raises(InvalidArgument, match="vault being exported"):
        source.export_bundle(source.path, overwrite=True)
    assert source["new"] == b"1"


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"prefix": 3.5}, TypeError),
        ({"prefix": ["img/"]}, TypeError),
        ({"overwrite": "yes"}, TypeError),
        ({"progress": "stderr"}, TypeError),
    ],
)
def test_export_refuses_bad_arguments_and_writes_nothing(source, tmp_path, kwargs, error):
    out = tmp_path / "bad.bundle"
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error):
        source.export_bundle(out, **kwargs)
    assert sorted(os.listdir(tmp_path)) == before


def test_export_refuses_bad_paths(source, tmp_path):
    with pytest.raises(TypeError):
        source.export_bundle(None)
    with pytest.raises(FileNotFoundError):
        source.export_bundle(tmp_path / "no" / "such" / "dir.bundle")
    with pytest.raises(IsADirectoryError):
        source.export_bundle(tmp_path, overwrite=True)
    source.close()
    with pytest.raises(ClosedError):
        source.export_bundle(tmp_path / "closed.bundle")


def test_import_refuses_bad_targets_and_arguments(bundle, tmp_path):
    path = tmp_path / "ro.db"
    with KVault(path) as kv:
        kv["k"] = b"v"
    with KVault(path, read_only=True) as ro, pytest.raises(ReadOnlyError):
        ro.import_bundle(bundle)
    closed = KVault(path)
    closed.close()
    with pytest.raises(ClosedError):
        closed.import_bundle(bundle)
    with KVault(path) as kv:
        with pytest.raises(TypeError):
            kv.import_bundle(bundle, progress=42)
        with pytest.raises(FileNotFoundError):
            kv.import_bundle(tmp_path / "missing.bundle")
        with pytest.raises(TypeError):
            kv.import_bundle(None)
        assert dict(kv.items()) == {"k": b"v"}
    with KVault(bundle, enable_wal=False) as itself, pytest.raises(InvalidArgument, match="itself"):
        itself.import_bundle(bundle)


def test_progress_is_called_once_per_key_and_stage(source, tmp_path):
    calls = []
    out = tmp_path / "p.bundle"
    source.export_bundle(out, progress=lambda stage, n: calls.append((stage, n)))
    assert [c[0] for c in calls] == ["export"] * 9
    assert sum(c[1] for c in calls) == validate_bundle(out)["bytes"]
    calls.clear()
    with KVault(tmp_path / "t.db") as target:
        target["zzz"] = b"deleted"
        target.import_bundle(out, progress=lambda stage, n: calls.append((stage, n)))
    assert [c[0] for c in calls] == ["validate"] * 9 + ["import"] * 10


# -- command line ----------------------------------------------------------------------------------
def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ambervault", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_cli_export_validate_import(source, tmp_path):
    source.close()
    out = tmp_path / "cli.bundle"
    exported = run("bundle-export", source.path, out, "--prefix", "img/", "--json")
    assert exported.returncode == 0, exported.stderr
    summary = json.loads(exported.stdout)
    assert summary["keys"] == 2 and summary["prefix"] == "img/"
    text = run("bundle-validate", out)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"ok: {out}\n2 keys") and summary["digest"] in text.stdout
    assert json.loads(run("bundle-validate", out, "--json").stdout) == summary
    again = run("bundle-export", source.path, out)
    assert again.returncode == 3 and "exists" in again.stderr and again.stderr.count("\n") == 1
    target = tmp_path / "target.db"
    with KVault(target, table="pics") as kv:
        kv["img/old"] = b"x"
        kv["other"] = b"y"
    imported = run("bundle-import", target, out, "--table", "pics", "--json")
    assert imported.returncode == 0, imported.stderr
    counts = json.loads(imported.stdout)
    assert (counts["added"], counts["deleted"], counts["unchanged"]) == (2, 1, 0)
    with KVault(target, table="pics") as kv:
        assert sorted(kv.keys()) == ["img/large", "img/small", "other"]
    quiet = run("bundle-import", target, out, "--table", "pics", "-q")
    assert quiet.returncode == 0 and "2 unchanged" in quiet.stdout and quiet.stderr == ""


def test_cli_exit_codes_on_a_tampered_or_missing_bundle(bundle, tmp_path):
    tamper_chunk(bundle)
    bad = run("bundle-validate", bundle)
    assert bad.returncode == 1
    assert bad.stderr.startswith("ambervault: bundle rejected: ") and "img/large" in bad.stderr
    assert bad.stderr.count("\n") == 1
    target = tmp_path / "target.db"
    with KVault(target) as kv:
        kv["mine"] = b"kept"
    refused = run("bundle-import", target, bundle)
    assert refused.returncode == 1 and "bundle rejected" in refused.stderr
    with KVault(target) as kv:
        assert dict(kv.items()) == {"mine": b"kept"}
    fresh = tmp_path / "fresh.db"
    assert run("bundle-import", fresh, bundle).returncode == 1
    assert not fresh.exists()  # a refused import into a new file leaves no file
    missing = run("bundle-validate", tmp_path / "missing.bundle")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    text = tmp_path / "t.txt"
    text.write_text("not a bundle")
    assert run("bundle-validate", text).returncode == 1
