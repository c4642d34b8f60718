"""ColumnVault and Column: the list protocol per dtype family against a plain list, errors,
the vault's column management, numpy paths and persistence."""

from __future__ import annotations

import math
from collections.abc import MutableSequence

import numpy as np
import pytest

from ambervault import ColumnVault, InvalidArgument, KVault, NotFound
from helpers import run_python

SAMPLES = {
    "i64": [0, 1, -1, 2**63 - 1, -(2**63), 42],
    "i8": [0, 127, -128, 5],
    "u16": [0, 65535, 7],
    "u64": [0, 2**64 - 1, 3],
    "f64": [0.0, -1.5, 1e300, math.inf, 2.25],
    "f32": [0.0, 1.5, -2.25, 2.0**100],  # exactly representable in f32
    "bool": [True, False, True],
    "bytes:4": [b"ab\x00\x00", b"wxyz", b"\x00\x00\x00\x00"],
    "bytes": [b"", b"short", b"x" * 5000, b"\x00\xff"],
    "str": ["", "hello", "日本語", "emoji 🎞" * 100],
}


@pytest.fixture
def cv(tmp_path):
    vault = ColumnVault(tmp_path / "c.db", min_chunk_bytes=64, max_chunk_bytes=1024)
    yield vault
    vault.close()


@pytest.mark.parametrize("dtype", SAMPLES)
def test_list_protocol_matches_a_list(cv, dtype):
    col = cv.create_column("c", dtype)
    assert isinstance(col, MutableSequence)
    values = SAMPLES[dtype]
    model = []
    for v in values:
        col.append(v)
        model.append(v)
    col.extend(values)
    model.extend(values)
    assert len(col) == len(model)
    assert list(col) == model and col == model
    for i in range(-len(model), len(model)):
        assert col[i] == model[i]
    for s in [
        slice(None),
        slice(1, 4),
        slice(-3, None),
        slice(None, None, 2),
        slice(None, None, -1),
        slice(5, 1, -2),
        slice(100, 200),
        slice(3, 3),
    ]:
        assert col[s] == model[s], s
    col[1] = values[-1]
    model[1] = values[-1]
    col[-1] = values[0]
    model[-1] = values[0]
    col[2:4] = values[:2]
    model[2:4] = values[:2]
    col[::3] = model[::3][::-1]
    model[::3] = model[::3][::-1]
    assert list(col) == model
    del col[0]
    del model[0]
    del col[-2]
    del model[-2]
    del col[1:3]
    del model[1:3]
    del col[::2]
    del model[::2]
    assert list(col) == model
    col.insert(0, values[1])
    model.insert(0, values[1])
    col.insert(-1, values[2])
    model.insert(-1, values[2])
    col.insert(100, values[0])
    model.insert(100, values[0])
    assert col.pop() == model.pop()
    assert col.pop(0) == model.pop(0)
    assert list(col) == model
    assert list(reversed(col)) == list(reversed(model))
    assert col.count(model[0]) == model.count(model[0])
    assert col.index(model[-1]) == model.index(model[-1])
    col += [values[0]]
    model += [values[0]]
    assert list(col) == model
    col.clear()
    assert len(col) == 0 and list(col) == []
    col.append(values[0])
    assert list(col) == [values[0]]


def test_fixed_bytes_pads_and_rejects_long_values(cv):
    col = cv.create_column("h", "bytes:10")
    col.append(b"hello")
    assert col[0] == b"hello\x00\x00\x00\x00\x00"
    with pytest.raises(ValueError, match="longer"):
        col.append(b"x" * 11)
    with pytest.raises(ValueError, match="longer"):
        col.extend([b"ok", b"y" * 11])
    assert len(col) == 1
    with pytest.raises(InvalidArgument, match="accepted dtypes"):
        cv.create_column("z", "bytes:0")


@pytest.mark.parametrize(
    "dtype, bad, error",
    [
        ("i64", "1", TypeError),
        ("i64", 1.5, TypeError),
        ("i64", None, TypeError),
        ("i64", 2**63, OverflowError),
        ("i8", 128, OverflowError),
        ("u8", -1, OverflowError),
        ("u64", 2**64, OverflowError),
        ("f32", 1e39, OverflowError),
        ("f64", "1.0", TypeError),
        ("f64", b"1", TypeError),
        ("bool", 2, TypeError),
        ("bool", "yes", TypeError),
        ("bytes", "text", TypeError),
        ("bytes", 5, TypeError),
        ("str", b"bytes", TypeError),
        ("str", "\ud800", UnicodeEncodeError),
    ],
)
def test_bad_elements_raise_and_write_nothing(cv, dtype, bad, error):
    col = cv.create_column("c", dtype)
    good = SAMPLES.get(dtype, [0, 1])[0] if dtype in SAMPLES else 0
    col.append(good)
    with pytest.raises(error):
        col.append(bad)
    with pytest.raises(error):
        col.extend([good, bad])
    with pytest.raises(error):
        col[0] = bad
    with pytest.raises(error):
        col.insert(0, bad)
    assert len(col) == 1 and col[0] == good


def test_index_errors_and_messages(cv):
    col = cv.create_column("x", "i64")
    col.extend([1, 2, 3])
    for bad in (3, -4, 10**20):
        with pytest.raises(IndexError, match="out of range"):
            col[bad]
    with pytest.raises(IndexError, match="out of range"):
        col[5] = 1
    with pytest.raises(IndexError, match="out of range"):
        del col[-5]
    with pytest.raises(TypeError, match="indices must be integers or slices"):
        col["a"]
    with pytest.raises(TypeError, match="indices must be integers or slices"):
        col[1.5] = 3
    with pytest.raises(ValueError, match="length mismatch"):
        col[0:2] = [1]
    with pytest.raises(ValueError, match="length mismatch"):
        col[::2] = [1, 2, 3]
    with pytest.raises(ValueError, match="not in column"):
        col.index(99)
    cv.create_column("e", "f64")
    with pytest.raises(IndexError, match="empty"):
        cv["e"].pop()
    assert list(col) == [1, 2, 3]
    assert col[np.int64(1)] == 2  # numpy integers are indices too


def test_column_vault_management(cv):
    a = cv.create_column("a", "i64")
    with pytest.raises(InvalidArgument, match="already exists"):
        cv.create_column("a", "f64")
    assert cv["a"] is a
    assert cv.ensure("a", "i64") is a
    with pytest.raises(InvalidArgument, match="dtype"):
        cv.ensure("a", "f64")
    s = cv.ensure("s", "str:utf8")
    assert s.dtype == "str" and cv.ensure("s", "str") is s
    assert "a" in cv and "zz" not in cv
    with pytest.raises(NotFound):
        cv["zz"]
    with pytest.raises(InvalidArgument, match="accepted dtypes"):
        cv.create_column("m", "pickle")
    a.extend([1, 2])
    assert cv.list_columns() == [("a", "i64", 2), ("s", "str", 0)]
    cv.rename_column("a", "b")
    assert a.name == "b" and cv["b"] is a and "a" not in cv
    assert list(a) == [1, 2]
    with pytest.raises(InvalidArgument):
        cv.rename_column("b", "s")
    with pytest.raises(NotFound):
        cv.rename_column("nope", "x")
    assert cv.delete_column("b") is True
    assert cv.delete_column("b") is False
    with pytest.raises(NotFound):
        len(a)
    with pytest.raises(NotFound):
        cv["b"]


def test_columns_share_a_file_and_connection_with_kvault(tmp_path):
    path = tmp_path / "both.db"
    kv = KVault(path)
    cv = ColumnVault(kv)
    kv["image"] = b"png"
    cv.create_column("t", "f64").extend([1.0, 2.0])
    kv.close()
    kv2 = KVault(path)
    cv2 = ColumnVault(kv2)
    assert kv2["image"] == b"png" and list(cv2["t"]) == [1.0, 2.0]
    kv2.close()


def test_persistence_in_a_new_process(tmp_path):
    path = tmp_path / "p.db"
    with ColumnVault(path) as cv:
        cv.create_column("n", "i32").extend(range(1000))
        cv.create_column("s", "str").extend(f"line {i}" for i in range(500))
    code = """
import sys, ambervault
cv = ambervault.ColumnVault(sys.argv[1])
assert list(cv["n"]) == list(range(1000))
assert cv["s"][499] == "line 499" and len(cv["s"]) == 500
print(cv.list_columns())
"""
    result = run_python(code, str(path))
    assert result.returncode == 0, result.stderr
    assert "('n', 'i32', 1000)" in result.stdout


def test_numpy_paths(cv):
    col = cv.create_column("f", "f64")
    data = np.linspace(0, 1, 5000)
    col.extend(data)
    out = col.to_numpy()
    assert out.dtype == np.float64 and np.array_equal(out, data)
    assert np.array_equal(np.asarray(col), data)
    assert np.array_equal(col.to_numpy(10, 20), data[10:20])
    assert np.array_equal(col.to_numpy(-5), data[-5:])
    out[0] = 99.0  # the array is writable and independent of the column
    assert col[0] == 0.0
    col[100:200] = np.zeros(100)
    assert col[150] == 0.0 and col[200] == data[200]
    ints = cv.create_column("i", "i16")
    ints.extend(np.arange(10, dtype=np.int64))  # range-checked, not wrapped
    with pytest.raises(OverflowError):
        ints.extend(np.array([40000], dtype=np.int64))
    with pytest.raises(TypeError):
        ints.extend(np.array([1.5]))
    assert list(ints) == list(range(10))
    assert ints.to_numpy().dtype == np.int16
    flags = cv.create_column("b", "bool")
    flags.extend(np.array([True, False]))
    assert flags.to_numpy().tolist() == [True, False]
    fixed = cv.create_column("h", "bytes:3")
    fixed.extend(np.array([b"ab", b"xyz"], dtype="S3"))
    assert list(fixed) == [b"ab\x00", b"xyz"]
    var = cv.create_column("v", "bytes")
    var.extend([b"a", b"bc"])
    assert var.to_numpy().tolist() == [b"a", b"bc"]


def test_ten_million_f64_round_trip_through_numpy(tmp_path):
    with ColumnVault(tmp_path / "big.db") as cv:
        col = cv.create_column("x", "f64")
        data = np.random.default_rng(1).standard_normal(10_000_000)
        col.extend(data)
        assert len(col) == 10_000_000
        assert np.array_equal(col.to_numpy(), data)
        assert col[-1] == data[-1] and col[5_000_000] == data[5_000_000]


def test_elements_larger_than_a_chunk_span_boundaries(cv):
    col = cv.create_column("v", "bytes")  # chunks of 64..1024 bytes
    items = [bytes([i]) * (i * 97) for i in range(40)]
    col.extend(items)
    assert list(col) == items
    col[5] = b"z" * 3000
    items[5] = b"z" * 3000
    assert col[4:7] == items[4:7]


def test_cached_reads_see_commits_of_other_processes(tmp_path):
    # Cache hits and windows (read with cached metadata) are confirmed current from the WAL
    # index header, without a read transaction. Commits by another process (small ones, a
    # bulk one that goes to the background checkpoint, appends that change the length, and a
    # checkpoint that rewinds the WAL) must all show up at once.
    path = tmp_path / "shared.db"
    cv = ColumnVault(path)
    col = cv.create_column("x", "i64")
    col.extend(range(1000))
    writer = """
import sys, numpy as np, ambervault
cv = ambervault.ColumnVault(sys.argv[1])
col = cv["x"]
step = int(sys.argv[2])
col[5] = -step
if step % 3 == 0:
    col[500:1000] = np.full(500, step, dtype="i8")
if step % 2 == 0:
    col.extend([step] * 7)
if step % 4 == 0:
    cv.checkpoint()
cv.close()
"""
    expected = np.arange(1000, dtype="i8")
    for step in range(1, 13):
        assert col[5] in (5, -(step - 1))  # the cache is warm
        assert (col.to_numpy(0, 1000) == expected[:1000]).all()  # a window: no read transaction
        assert col.to_numpy(900).tolist() == expected[900:].tolist()
        result = run_python(writer, str(path), str(step))
        assert result.returncode == 0, result.stderr
        expected[5] = -step
        if step % 3 == 0:
            expected[500:1000] = step
        if step % 2 == 0:
            expected = np.append(expected, [step] * 7)
        # The window first, while the cached metadata is what the commit made stale.
        assert col.to_numpy(900).tolist() == expected[900:].tolist()  # bounds from the length
        assert (col.to_numpy(0, 1000) == expected[:1000]).all()
        assert col[5] == -step
        assert col[999] == expected[999]
        assert col.to_numpy(998, 1000).tolist() == expected[998:1000].tolist()
    cv.close()


def test_cached_reads_see_other_connections_and_rollbacks(tmp_path):
    # Point reads go through a per-connection block cache; it must never serve stale bytes.
    path = tmp_path / "shared.db"
    a = ColumnVault(path)
    b = ColumnVault(path)
    col_a = a.create_column("x", "i64")
    col_a.extend(range(100))
    col_b = b["x"]
    assert col_a[5] == 5 and col_b[5] == 5  # both caches warm
    col_b[5] = -5  # another connection commits
    assert col_a[5] == -5
    del col_b[0]  # shifts everything: lengths and bytes change under a's cache
    assert len(col_a) == 99 and col_a[4] == -5 and col_a[-1] == 99
    kv = KVault(tmp_path / "t.db")
    col = ColumnVault(kv).create_column("y", "f64")
    col.extend([1.0, 2.0])
    t = kv.transaction()
    col[0] = 9.0
    assert col[0] == 9.0  # read inside the transaction, through the cache
    t.rollback()
    assert col[0] == 1.0 and col.to_numpy(0, 1)[0] == 1.0
    a.close()
    b.close()
    kv.close()
