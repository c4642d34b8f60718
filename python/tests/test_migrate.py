"""Moving in from kohakuvault: files written by the real kohakuvault 1.1.0 (installed from PyPI
as a test-only dependency) are copied into new ambervault files, and every value and column
element must read back as kohakuvault read it, except where kohakuvault's own reading is
documented to be wrong (``docs/compatibility.md``)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import ambervault
from ambervault import InvalidArgument, KVault, NotFound, migrate_kohakuvault
from ambervault.migrate import MigrationSummary
from helpers import same_value

kohakuvault = pytest.importorskip("kohakuvault", reason="kohakuvault==1.1.0 is in requirements-dev.txt")


def test_the_real_kohakuvault_1_1_0_writes_the_old_files():
    # The shim of scripts/run_kohakuvault_tests.py must not be what these tests import.
    assert kohakuvault.__version__ == "1.1.0"
    assert not hasattr(kohakuvault, "VaultError")


# Values kohakuvault's auto-pack stores, and how kohakuvault itself reads each back.
TYPED = {
    "str": "héllo wörld",
    "empty_str": "",
    "int": 42,
    "negative": -7,
    "zero": 0,
    "float": 3.25,
    "whole_float": 2.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "bool": True,
    "list": [1, "two", None, 3.5, [4]],
    "dict": {"name": "Alice", "tags": ["a", "b"], "n": {"x": 1}},
    "bytes": b"\x00raw\xffbytes",
    "empty_bytes": b"",
    "f32_matrix": np.arange(12, dtype=np.float32).reshape(3, 4),
    "f64_vector": np.linspace(0, 1, 5),
    "i8": np.array([-1, 2, -3], dtype=np.int8),
    "u16": np.array([1, 65535], dtype=np.uint16),
    "i64_3d": np.arange(24, dtype=np.int64).reshape(2, 3, 4),
    "u64": np.array([2**64 - 1], dtype=np.uint64),
}
WRAPPED = {
    "json": (kohakuvault.Json, {"a": [1, 2], "b": "c"}, "json"),
    "msgpack": (kohakuvault.MsgPack, [1, {"k": None}], "msgpack"),
    "cbor": (kohakuvault.Cbor, {"x": [1, 2.5, "y"]}, "cbor"),
}
# What kohakuvault pickles: None, tuples, sets, objects it cannot pack, and Pickle(...).
PICKLED = {
    "none": None,
    "tuple": (1, "a"),
    "set": {1, 2, 3},
    "f16_array": np.array([1.5], dtype=np.float16),
    "complex": 1 + 2j,
}


def assert_same(ours, theirs):
    if isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert np.array_equal(ours, theirs)
    else:
        assert same_value(ours, theirs), (ours, theirs)


def write_old(path, table="kv", headers=True, auto_pack=True):
    """An old file with every value type kohakuvault writes; returns what kohakuvault reads."""
    kv = kohakuvault.KVault(str(path), table=table)
    if not headers:
        kv.disable_headers()
    if not auto_pack:
        kv.disable_auto_pack()
        for key, value in TYPED.items():
            if isinstance(value, bytes):
                kv[key] = value
        kv[b"\xff\x00binary key"] = b"v"
    else:
        for key, value in TYPED.items():
            kv[key] = value
        for key, (wrap, value, _) in WRAPPED.items():
            kv[key] = wrap(value)
        for key, value in PICKLED.items():
            kv[key] = value
        kv["wrapped_pickle"] = kohakuvault.Pickle({"p": 1})
    seen = {bytes(k): kv[k] for k in kv.keys()}
    kv.close()
    return seen


@pytest.fixture
def old(tmp_path):
    path = tmp_path / "old.db"
    return path, write_old(path)


def test_kv_values_read_back_as_kohakuvault_read_them(old, tmp_path):
    path, seen = old
    new = tmp_path / "new.db"
    summary = migrate_kohakuvault(path, new)
    assert isinstance(summary, MigrationSummary)
    assert [(t.name, t.new_name) for t in summary.tables] == [("kv", "kvault")]
    copied = len(TYPED) + len(WRAPPED)
    assert summary.keys == copied
    with KVault(new) as kv:  # kohakuvault's default table is ambervault's default table
        assert len(kv) == copied
        for key, value in seen.items():
            if key.decode() in PICKLED or key == b"wrapped_pickle":
                assert key not in kv
                continue
            assert_same(kv[key], value)
            # Keys come back as kohakuvault returned them: bytes.
        assert all(type(k) is bytes for k in kv)
        assert kv.info("str")["encoding"] == "msgpack"
        assert kv.info("bytes")["encoding"] == "raw"
        assert kv.info("f32_matrix")["encoding"] == "numpy"
        for key, (_, _, encoding) in WRAPPED.items():
            assert kv.info(key)["encoding"] == encoding  # an explicit encoding is kept
        assert kv["bool"] == 1 and type(kv["bool"]) is int  # kohakuvault stored True as an i64
    assert summary.tables[0].encodings == {
        "cbor": 1,
        "datapacker array": 6,
        "datapacker float": 4,
        "datapacker int": 4,
        "json": 1,
        "msgpack": 3,
        "raw (no header)": 2,
        "utf8-text": 2,
    }


def test_pickles_are_skipped_and_reported_without_the_flag(old, tmp_path):
    path, _ = old
    summary = migrate_kohakuvault(path, tmp_path / "new.db")
    [skipped] = summary.skipped
    assert skipped.count == len(PICKLED) + 1 and summary.skipped_count == len(PICKLED) + 1
    assert "pickle" in skipped.reason and "--allow-pickle" in skipped.reason
    assert sorted(skipped.examples) == sorted(repr(k.encode()) for k in [*PICKLED, "wrapped_pickle"])
    assert any("skipped 6 values in table kv: pickle" in line for line in summary.lines())


def test_pickles_are_copied_with_the_flag_and_never_unpickled(old, tmp_path, monkeypatch):
    path, seen = old
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("the migration unpickled a value")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    summary = migrate_kohakuvault(path, tmp_path / "new.db", allow_pickle=True)
    monkeypatch.undo()
    assert summary.skipped == []
    assert summary.tables[0].encodings["pickle"] == len(PICKLED) + 1
    with KVault(tmp_path / "new.db", allow_pickle=True) as kv:
        for key in PICKLED:
            assert kv.info(key)["encoding"] == "pickle"
            assert_same(kv[key], seen[key.encode()])
        assert kv["wrapped_pickle"] == {"p": 1}
    with KVault(tmp_path / "new.db") as kv:  # without the opt-in, still refused when read
        with pytest.raises(TypeError, match="allow_pickle"):
            kv["none"]


def test_numbers_and_scalars_kohakuvault_reads_back_wrong_are_copied_as_written(tmp_path):
    old = tmp_path / "old.db"
    kv = kohakuvault.KVault(str(old))
    written = {
        "ms_timestamp": 1_700_000_000_123,  # kohakuvault reads a denormal float
        "negative_big": -5_000_000_000_000,  # kohakuvault reads nan
        "negative_zero": -0.0,  # kohakuvault reads -2**63
        "f32_scalar": np.float32(1.5),  # kohakuvault reads bytes or a str
        "i64_scalar": np.int64(7),  # kohakuvault reads array([7])
        "empty_array": np.zeros(0, dtype=np.float32),  # kohakuvault reads a str
        "small": 12345,  # read right by both
    }
    for key, value in written.items():
        kv[key] = value
    theirs = {key: kv[key] for key in written}
    kv.close()
    assert theirs["ms_timestamp"] != written["ms_timestamp"] and math.isnan(theirs["negative_big"])
    assert theirs["negative_zero"] == -(2**63)
    summary = migrate_kohakuvault(old, tmp_path / "new.db")
    with KVault(tmp_path / "new.db") as new:
        for key, value in written.items():
            assert_same(new[key], value)
        assert new.info("f32_scalar")["encoding"] == "numpy-scalar"
    noted = {example for note in summary.notes for example in note.examples}
    assert noted == {repr(k.encode()) for k in written if k != "small"}


def test_headers_off_and_auto_pack_off_stay_raw_bytes(tmp_path):
    for headers, auto_pack in [(False, True), (True, False), (False, False)]:
        old = tmp_path / f"old-{headers}-{auto_pack}.db"
        kv = kohakuvault.KVault(str(old))
        if not headers:
            kv.disable_headers()
        if not auto_pack:
            kv.disable_auto_pack()
        values = {"bytes": b"\x89PNG\r\n", "empty": b""}
        if auto_pack:
            values.update(text="héllo", n=5, x=1.5, d={"a": 1})
        for key, value in values.items():
            kv[key] = value
        theirs = {k: kv[k] for k in values}
        kv.close()
        new = tmp_path / f"new-{headers}-{auto_pack}.db"
        summary = migrate_kohakuvault(old, new)
        assert summary.keys == len(values) and summary.skipped == []
        with KVault(new) as kv:
            for key in values:
                assert_same(kv[key], theirs[key])
                if not headers:
                    # Written without a header, kohakuvault reads them as bytes: so do we.
                    assert type(kv[key]) is bytes and kv.info(key)["encoding"] == "raw"
        if not headers and auto_pack:
            assert theirs["text"] == "héllo".encode() and theirs["n"] == (5).to_bytes(8, "little")


def test_multiple_tables_and_non_default_names(tmp_path):
    old = tmp_path / "old.db"
    seen_media = write_old(old, table="media", headers=True)
    seen_raw = write_old(old, table="kv", auto_pack=False)
    kv = kohakuvault.KVault(str(old), table="kvault")  # already named like ambervault's default
    kv["x"] = "y"
    kv.close()
    summary = migrate_kohakuvault(old, tmp_path / "new.db", allow_pickle=True)
    # kv keeps its name when the old file has a kvault table too.
    assert sorted((t.name, t.new_name, t.keys) for t in summary.tables) == [
        ("kv", "kv", len(seen_raw)),
        ("kvault", "kvault", 1),
        ("media", "media", len(seen_media)),
    ]
    with KVault(tmp_path / "new.db", table="media", allow_pickle=True) as kv:
        assert len(kv) == len(seen_media)
        for key, value in seen_media.items():
            assert_same(kv[key], value)
    with KVault(tmp_path / "new.db", table="kv") as kv:
        assert dict(kv.items()) == seen_raw
    with KVault(tmp_path / "new.db") as kv:
        assert dict(kv.items()) == {b"x": "y"}


def test_bytes_that_look_like_headers(tmp_path):
    old = tmp_path / "old.db"
    kv = kohakuvault.KVault(str(old))
    kv.disable_headers()  # these bytes are stored as given

    def header(encoding):
        return b"\x89K\x01" + bytes([encoding]) + b"\x00\x00\x00\x00VK"

    kv["raw_header"] = header(0) + b"payload"
    kv["broken_magic"] = b"\x89K\x01\x04\x00\x00\x00\x00XXrest"
    kv["bad_json"] = header(3) + b"{not json"
    kv["bad_version"] = b"\x89K\x07\x04\x00\x00\x00\x00VKrest"
    assert kv["raw_header"] == b"payload"  # kohakuvault strips a raw header...
    for key in ("broken_magic", "bad_json", "bad_version"):
        with pytest.raises((ValueError, kohakuvault.KohakuVaultError)):  # ...and cannot read the others
            kv[key]
    kv.close()
    summary = migrate_kohakuvault(old, tmp_path / "new.db")
    with KVault(tmp_path / "new.db") as new:
        assert new["raw_header"] == b"payload"
        assert new["broken_magic"] == b"\x89K\x01\x04\x00\x00\x00\x00XXrest"
        assert new["bad_json"] == header(3) + b"{not json"
        assert new["bad_version"] == b"\x89K\x07\x04\x00\x00\x00\x00VKrest"
    assert summary.skipped == []
    noted = {example: note.reason for note in summary.notes for example in note.examples}
    assert set(noted) == {"b'broken_magic'", "b'bad_json'", "b'bad_version'"}
    assert (
        "closing magic" in noted["b'broken_magic'"]
        and "json value that does not decode" in noted["b'bad_json'"]
    )
    assert "unknown version 7" in noted["b'bad_version'"]


def test_tables_ambervault_cannot_name_are_reported(tmp_path):
    old = tmp_path / "old.db"
    for table in ("ok", "has__dunder", "ambervault_x"):
        kv = kohakuvault.KVault(str(old), table=table)
        kv["k"] = b"v"
        kv.close()
    summary = migrate_kohakuvault(old, tmp_path / "new.db")
    assert [t.name for t in summary.tables] == ["ok"]
    assert {s.what for s in summary.skipped} == {"table has__dunder", "table ambervault_x"}
    assert all("not a valid ambervault table name" in s.reason for s in summary.skipped)


def test_large_values_are_streamed_in_constant_memory(tmp_path):
    old = tmp_path / "old.db"
    kv = kohakuvault.KVault(str(old))
    big = os.urandom(1 << 20) * 40  # 40 MiB of raw bytes
    kv["big_raw"] = big
    kv.enable_headers()
    array = np.random.default_rng(1).random((1000, 300))  # 2.4 MB typed value (read whole)
    kv["big_array"] = array
    kv["big_text"] = "ü" * 200_000
    kv.close()
    tracemalloc.start()
    try:
        summary = migrate_kohakuvault(old, tmp_path / "new.db")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak} bytes while copying a 40 MiB value"
    assert summary.value_bytes == len(big) + (10 + 2 + 8 + array.nbytes) + (10 + 400_000)
    with KVault(tmp_path / "new.db") as kv:
        assert kv.info("big_raw")["size"] == len(big) and kv.info("big_raw")["chunked"]
        assert kv["big_raw"] == big
        assert_same(kv["big_array"], array)
        assert kv["big_text"] == "ü" * 200_000


# Every column dtype kohakuvault 1.1.0 supports, with the ambervault dtype it becomes.
COLUMNS = {
    "bool": ([True, False, True], "bool"),
    "i8": ([-128, 0, 127], "i8"),
    "i16": ([-(2**15), 2**15 - 1], "i16"),
    "i32": ([-(2**31), 2**31 - 1], "i32"),
    "i64": ([-(2**63), 0, 2**63 - 1], "i64"),
    "u8": ([0, 255], "u8"),
    "u16": ([0, 65535], "u16"),
    "u32": ([0, 2**32 - 1], "u32"),
    "u64": ([0, 2**64 - 1], "u64"),
    "f16": ([1.5, -2.0], "f16"),
    "f32": ([1.25, float("inf")], "f32"),
    "f64": ([math.pi, -0.0], "f64"),
    "vec:f32:3": ([np.array([1, 2, 3], np.float32)], "vec:f32:3"),
    "vec:i16:2:2": ([np.array([[1, -2], [3, 4]], np.int16)] * 2, "vec:i16:2:2"),
    "str": (["a", "héllo", ""], "str"),
    "string": (["s"], "str"),
    "str:utf8": (["ü"], "str"),
    "str:utf16le": (["x", "é€"], "str:utf16"),
    "str:utf16be": (["y€"], "str"),
    "str:ascii": (["abc"], "str:ascii"),
    "str:latin1": (["é"], "str:latin1"),
    "str:cp1252": (["€"], "str"),
    "str:16": (["fixed", "ü", ""], "str:16"),
    "str:8:utf16le": (["hi"], "str:8:utf16"),
    "str:6:latin1": (["é"], "str:6:latin1"),
    "str:4:utf16be": (["y"], "str"),
    "bytes": ([b"a", b"", b"\x00\xff"], "bytes"),
    "bytes:4": ([b"ab", b"abcd"], "bytes:4"),
    "msgpack": ([{"a": 1}, [1, "x", None], 2.5], "msgpack"),
    "msgpack:32": ([{"a": [1, 2]}], "msgpack"),
    "cbor": ([{"a": 1.5}, "x"], "cbor"),
    "cbor:16": ([[1, 2]], "cbor"),
}
UNSUPPORTED = {
    "vec:f32": ([np.zeros((2, 2), np.float32)], "variable-shape arrays"),
    "vec:bool:2": ([np.array([True, False])], "no vec: column of bool"),
}


def test_every_column_dtype(tmp_path):
    old = tmp_path / "old.db"
    cv = kohakuvault.ColumnVault(str(old))
    theirs = {}
    for dtype, (values, _) in {**COLUMNS, **UNSUPPORTED}.items():
        col = cv.create_column(f"c_{dtype}", dtype)
        col.extend(values)
        theirs[dtype] = list(col)
    cv.close()
    summary = migrate_kohakuvault(old, tmp_path / "new.db")
    assert {c.name: c.new_dtype for c in summary.columns} == {f"c_{d}": t for d, (_, t) in COLUMNS.items()}
    assert summary.elements == sum(len(v) for v, _ in COLUMNS.values())
    reasons = {s.what.split()[1]: s.reason for s in summary.skipped}
    assert set(reasons) == {f"c_{d}" for d in UNSUPPORTED}
    for dtype, (_, why) in UNSUPPORTED.items():
        assert why in reasons[f"c_{dtype}"]
    notes = {c.dtype: c.note for c in summary.columns}
    assert notes["str:16"] is None and notes["str"] is None
    assert "no fixed-width text in utf-16-be" in notes["str:4:utf16be"]
    assert "utf-16-be" in notes["str:utf16be"]
    with ambervault.ColumnVault(tmp_path / "new.db") as new:
        for dtype, (_, target) in COLUMNS.items():
            col = new[f"c_{dtype}"]
            assert col.dtype == target
            got = list(col)
            assert len(got) == len(theirs[dtype])
            for ours, kohaku in zip(got, theirs[dtype]):
                assert_same(ours, kohaku)


def test_columns_spanning_many_blocks(tmp_path):
    old = tmp_path / "old.db"
    cv = kohakuvault.ColumnVault(str(old))
    ints = cv.create_column("ints", "i64", block_bytes=4096)
    ints.extend(np.arange(100_000, dtype=np.int64))
    text = cv.create_column("text", "str", block_bytes=4096)
    words = [f"word {i} " * (i % 7) for i in range(20_000)]
    text.extend(words)
    blobs = cv.create_column("blobs", "bytes")
    large = [os.urandom(5 << 20), b"x", os.urandom(3 << 20)]  # elements larger than a read piece
    blobs.extend(large)
    cv.close()
    summary = migrate_kohakuvault(old, tmp_path / "new.db")
    assert {c.name: c.elements for c in summary.columns} == {"ints": 100_000, "text": 20_000, "blobs": 3}
    with ambervault.ColumnVault(tmp_path / "new.db") as new:
        assert np.array_equal(new["ints"].to_numpy(), np.arange(100_000))
        assert list(new["text"]) == words
        assert list(new["blobs"]) == large


def test_kv_tables_and_columns_in_one_file(tmp_path):
    old = tmp_path / "old.db"
    seen = write_old(old)
    cv = kohakuvault.ColumnVault(str(old))
    cv.create_column("loss", "f64").extend([1.0, 0.5])
    cv.close()
    summary = migrate_kohakuvault(old, tmp_path / "new.db", allow_pickle=True)
    assert summary.keys == len(seen) and summary.elements == 2
    with KVault(tmp_path / "new.db", allow_pickle=True) as kv:
        assert len(kv) == len(seen)
        cols = ambervault.ColumnVault(kv)
        assert list(cols["loss"]) == [1.0, 0.5]


def test_cli_migrate(old, tmp_path):
    path, seen = old
    new = tmp_path / "cli.db"
    result = subprocess.run(
        [sys.executable, "-m", "ambervault", "migrate", str(path), str(new)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress line when stderr is not a terminal
    out = result.stdout
    assert f"migrated {path} -> {new}" in out
    assert f"table kv -> kvault: {len(TYPED) + len(WRAPPED)} keys" in out
    assert "skipped 6 values in table kv: pickle-encoded" in out
    with KVault(new) as kv:
        assert kv["dict"] == seen[b"dict"]

    again = tmp_path / "cli2.db"
    result = subprocess.run(
        [sys.executable, "-m", "ambervault", "migrate", str(path), str(again), "--allow-pickle", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["keys"] == len(seen) and data["skipped"] == [] and data["skipped_count"] == 0
    assert data["tables"][0]["encodings"]["pickle"] == len(PICKLED) + 1

    refused = subprocess.run(
        [sys.executable, "-m", "ambervault", "migrate", str(path), str(again)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 3
    assert refused.stderr.startswith("ambervault: error:") and "already exists" in refused.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "ambervault", "migrate", str(tmp_path / "nope.db"), str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert not (tmp_path / "x.db").exists()


def test_progress_line(old, tmp_path, capsys):
    path, _ = old
    migrate_kohakuvault(path, tmp_path / "quiet.db")
    assert capsys.readouterr().err == ""  # stderr is not a terminal here
    migrate_kohakuvault(path, tmp_path / "loud.db", progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rmigrating: ") and err.endswith("\n")
    total = len(TYPED) + len(WRAPPED) + len(PICKLED) + 1
    assert f"{total}/{total} items" in err


def leftovers(directory):
    """The files in ``directory``, without the empty ``-wal``/``-shm`` files SQLite itself may
    leave beside a WAL-mode file it read with a read-only connection (the old file here); the
    migration's own files (``NEW``, its temporary name and their side files) are all counted."""
    names = sorted(p.name for p in directory.iterdir())
    for name in names:
        if name.endswith(("-wal", "-shm")) and name[:-4] in ("old.db", "amber.db"):
            assert os.path.getsize(directory / name) == 0 or name.endswith("-shm")
    return [n for n in names if not (n.endswith(("-wal", "-shm")) and n[:-4] in ("old.db", "amber.db"))]


def test_refusals_leave_nothing_behind(old, tmp_path):
    path, _ = old
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"keep me")
    before = leftovers(tmp_path)
    with pytest.raises(InvalidArgument, match="already exists"):
        migrate_kohakuvault(path, existing)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(NotFound, match="does not exist"):
        migrate_kohakuvault(tmp_path / "missing.db", tmp_path / "a.db")
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    with pytest.raises(InvalidArgument, match="not a SQLite database"):
        migrate_kohakuvault(text, tmp_path / "a.db")
    with KVault(tmp_path / "amber.db") as kv:
        kv["k"] = b"v"
    with pytest.raises(InvalidArgument, match="already an ambervault file"):
        migrate_kohakuvault(tmp_path / "amber.db", tmp_path / "a.db")
    import sqlite3

    plain = sqlite3.connect(tmp_path / "plain.db")
    plain.execute("CREATE TABLE t (x)")
    plain.commit()
    plain.close()
    with pytest.raises(InvalidArgument, match="not a kohakuvault file"):
        migrate_kohakuvault(tmp_path / "plain.db", tmp_path / "a.db")
    with pytest.raises(InvalidArgument, match="is a directory"):
        migrate_kohakuvault(tmp_path, tmp_path / "a.db")
    with pytest.raises(InvalidArgument, match="directory of"):
        migrate_kohakuvault(path, tmp_path / "no" / "such" / "dir.db")
    assert not (tmp_path / "a.db").exists()
    assert leftovers(tmp_path) == sorted([*before, "notes.txt", "amber.db", "plain.db"])


def test_a_failure_midway_leaves_no_partial_file(old, tmp_path, monkeypatch):
    path, _ = old
    from ambervault import migrate

    calls = []

    def fail_on_first_batch(self):
        calls.append(1)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(migrate._ValueCopier, "flush", fail_on_first_batch)
    before = leftovers(tmp_path)
    with pytest.raises(OSError, match="simulated"):
        migrate_kohakuvault(path, tmp_path / "new.db")
    assert calls and leftovers(tmp_path) == before


def test_the_old_file_is_not_modified(old, tmp_path):
    path, seen = old
    before = path.read_bytes()
    migrate_kohakuvault(path, tmp_path / "new.db", allow_pickle=True)
    assert path.read_bytes() == before
    kv = kohakuvault.KVault(str(path))  # still a kohakuvault file, unchanged
    assert {bytes(k) for k in kv.keys()} == set(seen)
    kv.close()


def test_vector_and_text_indexes_are_reported(tmp_path):
    old = tmp_path / "old.db"
    kv = kohakuvault.KVault(str(old))
    kv["a"] = b"1"
    kv.close()
    vk = kohakuvault.VectorKVault(str(old), table="vecs", dimensions=3)
    vk.insert(np.array([1, 2, 3], np.float32), b"payload")
    vk.close()
    tv = kohakuvault.TextVault(str(old), table="docs")
    tv.insert("some text", b"value")
    del tv
    summary = migrate_kohakuvault(old, tmp_path / "new.db")
    assert summary.keys == 1
    reasons = {s.what: s.reason for s in summary.skipped}
    assert set(reasons) == {"table vecs", "table docs"}
    assert "vector index" in reasons["table vecs"] and "vecs_values" in reasons["table vecs"]
    assert "full-text index" in reasons["table docs"]
