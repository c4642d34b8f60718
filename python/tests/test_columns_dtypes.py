"""Column dtypes beyond the scalars: ``vec:<elem>:<dims>`` tensors (and, as they land, ``f16``
and ``str:<encoding>``). For each: round trips through every read path, list operations against
a Python list model, the numpy bulk paths, bad input writes nothing, and a reopened file reads
the same."""

from __future__ import annotations

import numpy as np
import pytest

from ambervault import ColumnVault, InvalidArgument
from ambervault._ambervault import inspect
from ambervault.columns import VecColumn

# -- vec ---------------------------------------------------------------------------------------


def _rows(n: int, shape, dtype="<f4", seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, *shape)) * 100).astype(dtype)


def _check_model(col, model) -> None:
    """The column holds exactly the arrays of ``model`` (a list), through every read path."""
    assert len(col) == len(model)
    for got, want in zip(col, model):
        np.testing.assert_array_equal(got, want)
    for i in range(-len(model), len(model)):
        np.testing.assert_array_equal(col[i], model[i])
    whole = col.to_numpy()
    assert whole.shape == (len(model), *col.shape)
    if model:
        np.testing.assert_array_equal(whole, np.stack(model))
    got_slice = col[1:-1]
    assert isinstance(got_slice, list) and len(got_slice) == len(model[1:-1])
    for got, want in zip(got_slice, model[1:-1]):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(reversed(col), reversed(model)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("dtype", "shape", "npdtype"),
    [
        ("vec:f32:384", (384,), "<f4"),
        ("vec:u8:28:28", (28, 28), "<u1"),
        ("vec:i16:2:3:4", (2, 3, 4), "<i2"),
        ("vec:f64:1", (1,), "<f8"),
        ("vec:u64:3", (3,), "<u8"),
    ],
)
def test_vec_round_trip_and_reopen(db_path, dtype, shape, npdtype):
    with ColumnVault(db_path) as cv:
        col = cv.create_column("v", dtype)
        assert isinstance(col, VecColumn) and col.shape == shape and col.dtype == dtype
        rows = _rows(5, shape, npdtype)
        col.append(rows[0])
        col.extend(rows[1:3])  # bulk raw path
        col.extend([rows[3], rows[4]])  # list of arrays
        item = col[0]
        assert item.shape == shape and item.dtype == np.dtype(npdtype)
        item[...] = 0  # writable, and independent of the column
        _check_model(col, list(rows))
    with ColumnVault(db_path) as cv:
        col = cv["v"]
        assert isinstance(col, VecColumn)
        _check_model(col, list(rows))
        assert col.to_numpy(1, 3).shape == (2, *shape)


def test_vec_bulk_extend_uses_the_raw_path(monkeypatch):
    cv = ColumnVault(":memory:")
    col = cv.create_column("v", "vec:f32:4")
    calls = []
    real = col._core.extend_raw
    monkeypatch.setattr(col, "_core", _Spy(col._core, calls, real))
    col.extend(np.arange(40, dtype="<f4").reshape(10, 4))
    assert calls == [40 * 4]
    np.testing.assert_array_equal(col.to_numpy(), np.arange(40, dtype="<f4").reshape(10, 4))


class _Spy:
    """Wraps a column core, recording the byte size of every ``extend_raw`` call."""

    def __init__(self, core, calls, real):
        self._core, self._calls, self._real = core, calls, real

    def extend_raw(self, raw):
        self._calls.append(memoryview(raw).nbytes)
        return self._real(raw)

    def __getattr__(self, name):
        return getattr(self._core, name)


def test_vec_casts_without_loss_and_refuses_lossy_ones():
    cv = ColumnVault(":memory:")
    f = cv.create_column("f", "vec:f32:3")
    f.append([1, 2, 3])  # a list of ints: converted exactly
    f.append(np.array([1, 2, 3], dtype=np.int64))
    f.extend(np.ones((2, 3), dtype=np.float64))
    u = cv.create_column("u", "vec:u8:2")
    u.append(np.array([0, 255], dtype=np.int64))
    for bad, err in [
        (np.array([1.0e39, 0, 0]), OverflowError),
        (np.array(["a", "b", "c"]), TypeError),
    ]:
        with pytest.raises(err):
            f.append(bad)
    for bad, err in [
        (np.array([0, 256]), OverflowError),
        (np.array([-1, 0]), OverflowError),
        (np.array([0.5, 1.0]), TypeError),
    ]:
        with pytest.raises(err):
            u.append(bad)
        with pytest.raises(err):
            u.extend(bad.reshape(1, 2))
    assert len(f) == 4 and len(u) == 1


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(4, dtype="<f4"),
        np.zeros((3, 1), dtype="<f4"),
        np.zeros((), dtype="<f4"),
        [1.0, 2.0],
        [[1.0, 2.0, 3.0]],
    ],
)
def test_vec_wrong_shape_writes_nothing(bad):
    cv = ColumnVault(":memory:")
    col = cv.create_column("v", "vec:f32:3")
    col.append([0, 0, 0])
    with pytest.raises(ValueError, match="shape"):
        col.append(bad)
    with pytest.raises(ValueError, match="shape"):
        col.extend([np.ones(3), bad])  # the good first row is not written either
    with pytest.raises(ValueError, match="shape"):
        col.insert(0, bad)
    with pytest.raises(ValueError, match="shape"):
        col[0] = bad
    for rows in (np.zeros((2, 4)), np.zeros((2, 3, 1)), np.zeros(3), np.zeros((2, 1, 3))):
        with pytest.raises(ValueError, match="shape"):
            col.extend(rows)
    assert len(col) == 1
    np.testing.assert_array_equal(col[0], np.zeros(3, dtype="<f4"))


def test_vec_list_operations_match_a_list_model():
    cv = ColumnVault(":memory:")
    col = cv.create_column("v", "vec:i32:2:2")
    rng = np.random.default_rng(1)
    model: list = []

    def row():
        return rng.integers(-1000, 1000, (2, 2)).astype("<i4")

    for step in range(200):
        op = rng.integers(0, 8)
        if op == 0 or not model:
            r = row()
            col.append(r)
            model.append(r)
        elif op == 1:
            rows = np.stack([row() for _ in range(rng.integers(0, 4))]) if rng.integers(0, 2) else []
            rows = rows if len(rows) else np.zeros((0, 2, 2), dtype="<i4")
            col.extend(rows)
            model.extend(list(rows))
        elif op == 2:
            i = int(rng.integers(-len(model), len(model)))
            r = row()
            col[i] = r
            model[i] = r
        elif op == 3:
            i = int(rng.integers(-len(model) - 2, len(model) + 2))
            r = row()
            col.insert(i, r)
            model.insert(i, r)
        elif op == 4:
            i = int(rng.integers(-len(model), len(model)))
            np.testing.assert_array_equal(col.pop(i), model.pop(i))
        elif op == 5:
            i = int(rng.integers(-len(model), len(model)))
            del col[i]
            del model[i]
        elif op == 6:
            a, b = sorted(int(x) for x in rng.integers(0, len(model) + 1, 2))
            rows = np.stack([row() for _ in range(b - a)]) if b > a else np.zeros((0, 2, 2), "<i4")
            col[a:b] = rows  # same-length slice assignment from an array: the raw path
            model[a:b] = list(rows)
        else:
            del col[::3]
            del model[::3]
        if step % 20 == 0:
            _check_model(col, model)
    _check_model(col, model)
    if model:
        assert col.index(model[-1]) == next(i for i, m in enumerate(model) if np.array_equal(m, model[-1]))
        assert col.count(model[0]) == sum(np.array_equal(m, model[0]) for m in model)
        assert col == model
    with pytest.raises(ValueError):
        col.index(np.full((2, 2), 5000))


def test_vec_works_with_the_cache_and_transactions(db_path):
    with ColumnVault(db_path) as cv:
        col = cv.create_column("v", "vec:f32:8")
        rows = _rows(50, (8,))
        with col.cache():
            for r in rows[:25]:
                col.append(r)
            col.extend(rows[25:])
            np.testing.assert_array_equal(col.to_numpy(), rows)
        with pytest.raises(RuntimeError), cv.transaction():
            col.extend(rows)
            raise RuntimeError
        assert len(col) == 50


@pytest.mark.parametrize(
    "bad",
    [
        "vec:",
        "vec:f32",
        "vec:f32:0",
        "vec:f32:3:0",
        "vec:bool:3",
        "vec:f32:-1",
        "vec:u8:65536:65536",
        "vec:str:2",
    ],
)
def test_vec_bad_dtypes_are_refused(bad):
    cv = ColumnVault(":memory:")
    with pytest.raises(InvalidArgument, match="accepted dtypes"):
        cv.create_column("v", bad)
    assert "v" not in cv


def test_vec_needs_numpy(monkeypatch):
    import ambervault.columns as columns

    monkeypatch.setattr(columns, "_numpy", None)

    def refuse():
        raise ImportError("this operation needs numpy: pip install numpy")

    monkeypatch.setattr(columns, "_np", refuse)
    cv = ColumnVault(":memory:")
    with pytest.raises(ImportError, match="numpy"):
        cv.create_column("v", "vec:f32:3")
    assert "v" not in cv


def test_empty_array_slice_assignment_writes_nothing():
    # Regression: an empty array assigned to an empty slice went to the native set_raw with
    # zero bytes, after which the next delete failed.
    cv = ColumnVault(":memory:")
    for col, empty in (
        (cv.create_column("x", "i32"), np.zeros(0, "<i4")),
        (cv.create_column("v", "vec:f32:2"), np.zeros((0, 2))),
    ):
        col.extend(np.ones((2, *empty.shape[1:]), empty.dtype))
        col[1:1] = empty
        del col[0]
        assert len(col) == 1
    assert cv.check() == []


# -- f16 ---------------------------------------------------------------------------------------

_F16_VALUES = [0.0, -0.0, 1.0, -2.5, 0.1, 65504.0, -65504.0, 6.1e-05, 5.96e-08, float("inf"), float("-inf")]


def _f16(x: float) -> float:
    """What an f16 column gives back for ``x``: numpy's round to nearest half."""
    return float(np.float16(x))


def test_f16_round_trip_and_reopen(db_path):
    with ColumnVault(db_path) as cv:
        col = cv.create_column("h", "f16")
        assert col._width == 2
        col.extend(_F16_VALUES)
        col.append(3)  # ints accepted, like f32
        col.append(float("nan"))
        want = [_f16(x) for x in [*_F16_VALUES, 3]]
        assert col[:-1] == want and all(type(v) is float for v in col[:-1])
        assert np.isnan(col[-1])
        array = col.to_numpy()
        assert array.dtype == np.dtype("<f2")
        np.testing.assert_array_equal(array[:-1], np.array(want, dtype="<f2"))
    with ColumnVault(db_path) as cv:
        col = cv["h"]
        assert col.dtype == "f16" and col[:-1] == want


def test_f16_out_of_range_and_wrong_types_write_nothing():
    cv = ColumnVault(":memory:")
    col = cv.create_column("h", "f16")
    col.append(1.5)
    for bad, err in [
        (65536.0, OverflowError),
        (-1e6, OverflowError),
        (1e300, OverflowError),
        ("1", TypeError),
        (None, TypeError),
    ]:
        with pytest.raises(err):
            col.append(bad)
        with pytest.raises(err):
            col.extend([2.0, bad])
        with pytest.raises(err):
            col[0] = bad
    with pytest.raises(OverflowError):
        col.extend(np.array([1.0, 1e6]))
    with pytest.raises(TypeError):
        col.extend(np.array(["a"]))
    assert list(col) == [1.5]


def test_f16_bulk_paths_and_list_model():
    cv = ColumnVault(":memory:")
    col = cv.create_column("h", "f16")
    rng = np.random.default_rng(2)
    values = (rng.standard_normal(1000) * 1000).astype("<f2")
    col.extend(values)  # raw path
    col.extend(values.astype(np.float64))  # converted without overflow
    col.extend(np.arange(10, dtype=np.int32))
    model = [float(v) for v in values] * 2 + [float(i) for i in range(10)]
    assert list(col) == model
    col[0:3] = np.array([1, 2, 3], dtype="<f2")
    model[0:3] = [1.0, 2.0, 3.0]
    col.insert(5, 0.5)
    model.insert(5, 0.5)
    del col[::7]
    del model[::7]
    assert col.pop() == model.pop() and col.pop(3) == model.pop(3)
    assert list(col) == model and list(reversed(col)) == model[::-1]
    np.testing.assert_array_equal(col.to_numpy(10, 20), np.array(model[10:20], dtype="<f2"))
    assert col.index(model[7]) == model.index(model[7]) and col.count(model[0]) == model.count(model[0])


def test_f16_with_the_cache():
    cv = ColumnVault(":memory:")
    col = cv.create_column("h", "f16")
    with col.cache():
        col.extend([0.25, 0.5])
        with pytest.raises(OverflowError):
            col.append(1e5)
        col.append(0.75)
    assert list(col) == [0.25, 0.5, 0.75]


def test_vec_f16():
    cv = ColumnVault(":memory:")
    col = cv.create_column("v", "vec:f16:2:2")
    col.extend(np.ones((3, 2, 2), "<f2"))
    col.append([[1.5, 2], [3, 4]])
    with pytest.raises(OverflowError):
        col.append([[1e6, 0], [0, 0]])
    assert col.to_numpy().dtype == np.dtype("<f2") and col.to_numpy().shape == (4, 2, 2)
    np.testing.assert_array_equal(col[-1], np.array([[1.5, 2], [3, 4]], "<f2"))


# -- str:<encoding> ----------------------------------------------------------------------------

_TEXTS = {
    "str:utf8": ["", "plain", "naïve café", "日本語", "emoji 🎉", "\x00nul"],
    "str:utf16": ["", "plain", "naïve café", "日本語", "emoji 🎉", "\x00nul"],
    "str:latin1": ["", "plain", "naïve café", "ÿ\xa0\x80", "\x00nul"],
    "str:ascii": ["", "plain", "tab\tand\nnewline", "\x7f", "\x00nul"],
}
_CODECS = {"str:utf8": "utf-8", "str:utf16": "utf-16-le", "str:latin1": "latin-1", "str:ascii": "ascii"}


@pytest.mark.parametrize("dtype", list(_TEXTS))
def test_str_encodings_round_trip_and_reopen(db_path, dtype):
    texts = _TEXTS[dtype]
    with ColumnVault(db_path) as cv:
        col = cv.create_column("s", dtype)
        assert col.dtype == ("str" if dtype == "str:utf8" else dtype)
        col.extend(texts)
        col.append(texts[2])
        assert list(col) == [*texts, texts[2]] and col[2] == texts[2]
        assert list(col.to_numpy()) == [*texts, texts[2]]
    with ColumnVault(db_path) as cv:
        assert list(cv["s"]) == [*texts, texts[2]]
    # Stored in the encoding itself (no BOM for utf16): the file's byte size per element is
    # what Python's codec gives.
    info = {name: (dt, n) for name, dt, n in ColumnVault(db_path).list_columns()}
    assert info["s"][1] == len(texts) + 1


@pytest.mark.parametrize("dtype", ["str:utf16", "str:latin1"])
def test_str_encodings_store_the_encoded_bytes(tmp_path, dtype):
    # Compared against a bytes column holding Python's own encoding: same data stream size.
    text = "naïve café " * 50
    sizes = {}
    for kind in (dtype, "bytes"):
        path = tmp_path / f"{kind.replace(':', '_')}.db"
        with ColumnVault(path) as cv:
            col = cv.create_column("s", kind)
            col.append(text if kind == dtype else text.encode(_CODECS[dtype]))
        sizes[kind] = next(c for c in inspect(str(path))["columns"] if c["name"] == "s")["bytes"]
    assert sizes[dtype] == sizes["bytes"] == len(text.encode(_CODECS[dtype]))


@pytest.mark.parametrize(
    ("dtype", "bad"),
    [
        ("str:ascii", "café"),
        ("str:ascii", "\x80"),
        ("str:latin1", "€"),
        ("str:latin1", "日本"),
        ("str:utf16", "\ud800"),
    ],
)
def test_str_not_encodable_writes_nothing(dtype, bad):
    cv = ColumnVault(":memory:")
    col = cv.create_column("s", dtype)
    col.append("ok")
    with pytest.raises(ValueError):  # UnicodeEncodeError is a ValueError
        col.append(bad)
    with pytest.raises(UnicodeEncodeError):
        col.extend(["fine", bad])
    with pytest.raises(UnicodeEncodeError):
        col[0] = bad
    with pytest.raises(UnicodeEncodeError):
        col.insert(0, bad)
    with pytest.raises(TypeError):
        col.append(b"bytes")
    with col.cache():
        with pytest.raises(UnicodeEncodeError):
            col.append(bad)
    assert list(col) == ["ok"]


@pytest.mark.parametrize("dtype", ["str:utf16", "str:latin1", "str:ascii"])
def test_str_encodings_list_model(dtype):
    cv = ColumnVault(":memory:")
    col = cv.create_column("s", dtype)
    pool = _TEXTS[dtype]
    rng = np.random.default_rng(3)
    model: list = []
    for _ in range(150):
        op = rng.integers(0, 6)
        t = pool[int(rng.integers(0, len(pool)))] + str(int(rng.integers(0, 9)))
        if op == 0 or not model:
            col.append(t)
            model.append(t)
        elif op == 1:
            col.extend([t, t[::-1]])
            model.extend([t, t[::-1]])
        elif op == 2:
            i = int(rng.integers(-len(model), len(model)))
            col[i] = t
            model[i] = t
        elif op == 3:
            i = int(rng.integers(-len(model) - 1, len(model) + 1))
            col.insert(i, t)
            model.insert(i, t)
        elif op == 4:
            i = int(rng.integers(-len(model), len(model)))
            assert col.pop(i) == model.pop(i)
        else:
            del col[::4]
            del model[::4]
        assert list(col) == model
    assert col[1:-1] == model[1:-1] and col[::-2] == model[::-2]
    if model:
        assert col.index(model[-1]) == model.index(model[-1]) and col.count(model[0]) == model.count(model[0])


def test_unknown_str_encodings_are_refused():
    cv = ColumnVault(":memory:")
    for bad in ["str:utf-16", "str:UTF16", "str:utf32", "str:", "str:latin-1"]:
        with pytest.raises(InvalidArgument, match="accepted dtypes"):
            cv.create_column("s", bad)


# -- str:N (fixed-width text) ------------------------------------------------------------------

_FIXED = {
    "str:12": ("utf-8", ["", "plain", "naïve café", "日本語", "a\x00b", "exactly12by"]),
    "str:12:utf16": ("utf-16-le", ["", "plain", "日本語", "🎉", "a\x00b", "sixchr"]),
    "str:6:latin1": ("latin-1", ["", "ÿ\xa0\x80", "café", "a\x00b", "6chars"]),
    "str:6:ascii": ("ascii", ["", "tab\tn", "\x7f", "a\x00b", "6chars"]),
}


@pytest.mark.parametrize("dtype", list(_FIXED))
def test_fixed_str_round_trip_width_and_reopen(db_path, dtype):
    codec, texts = _FIXED[dtype]
    width = int(dtype.split(":")[1])
    assert all(len(t.encode(codec)) <= width for t in texts)
    with ColumnVault(db_path) as cv:
        col = cv.create_column("s", dtype)
        assert col.dtype == dtype
        col.extend(texts)
        col.append(texts[2])
        assert list(col) == [*texts, texts[2]] and col[2] == texts[2] and col[-1] == texts[2]
        assert col[1:-1] == [*texts[1:], texts[2]][:-1]
        array = col.to_numpy()
        assert array.dtype == object and list(array) == [*texts, texts[2]]
    with ColumnVault(db_path) as cv:
        assert list(cv["s"]) == [*texts, texts[2]]
    # Every element takes exactly N bytes in the file, however short its text.
    sizes = {c["name"]: c["bytes"] for c in inspect(str(db_path))["columns"]}
    assert sizes["s"] == width * (len(texts) + 1)


def test_fixed_str_aliases_store_the_canonical_dtype():
    cv = ColumnVault(":memory:")
    for given, stored in [("str:32:utf8", "str:32"), ("str:8:utf16le", "str:8:utf16"), ("str:007", "str:7")]:
        assert cv.create_column(given.replace(":", "_"), given).dtype == stored


def test_fixed_str_pads_with_zero_bytes(tmp_path):
    # The same text in a bytes:8 column given the padded bytes fills the file identically.
    sizes = {}
    for kind, value in [("str:8", "héllo"), ("bytes:8", "héllo".encode())]:
        path = tmp_path / f"{kind.replace(':', '_')}.db"
        with ColumnVault(path) as cv:
            cv.create_column("s", kind).append(value)
        sizes[kind] = next(c for c in inspect(str(path))["columns"] if c["name"] == "s")["bytes"]
    assert sizes["str:8"] == sizes["bytes:8"] == 8
    cv = ColumnVault(":memory:")
    col = cv.create_column("s", "str:8")
    col.append("héllo")
    assert col._core.get_raw(0, 1) == "héllo".encode() + b"\x00\x00"


@pytest.mark.parametrize(
    ("dtype", "bad", "error", "match"),
    [
        ("str:4", "hello", ValueError, "5 encoded bytes is longer than the str:4 column's fixed width of 4"),
        ("str:4", "日本", ValueError, "6 encoded bytes"),  # two characters, six UTF-8 bytes
        ("str:4:utf16", "abc", ValueError, "6 encoded bytes.*str:4:utf16"),
        ("str:4", "ab\x00", ValueError, "U\\+0000"),
        ("str:4", "\x00", ValueError, "U\\+0000"),
        ("str:4:utf16", "a\x00", ValueError, "U\\+0000"),
        ("str:4:ascii", "café", UnicodeEncodeError, "ascii"),
        ("str:4:latin1", "€", UnicodeEncodeError, "latin-1"),
        ("str:4", b"ab", TypeError, "takes str values, not bytes"),
        ("str:4", 5, TypeError, "takes str values, not int"),
        ("str:4", None, TypeError, "takes str values"),
    ],
)
def test_fixed_str_bad_values_write_nothing(dtype, bad, error, match):
    cv = ColumnVault(":memory:")
    col = cv.create_column("s", dtype)
    col.extend(["o", "k"])
    with pytest.raises(error, match=match):
        col.append(bad)
    with pytest.raises(error, match=match):
        col.extend(["f", bad])
    with pytest.raises(error, match=match):
        col[0] = bad
    with pytest.raises(error, match=match):
        col[0:2] = ["f", bad]
    with pytest.raises(error, match=match):
        col.insert(0, bad)
    with col.cache():
        with pytest.raises(error, match=match):
            col.append(bad)
    assert list(col) == ["o", "k"]


@pytest.mark.parametrize(
    "bad", ["str:0", "str:-1", "str:4:", "str:4:utf-8", "str:3:utf16", "str:4:x", "str:16777217"]
)
def test_fixed_str_bad_dtypes_are_refused(bad):
    cv = ColumnVault(":memory:")
    with pytest.raises(InvalidArgument, match="accepted dtypes"):
        cv.create_column("s", bad)
    assert cv.list_columns() == []


def test_fixed_str_numpy_arrays_are_encoded_not_copied_raw():
    cv = ColumnVault(":memory:")
    col = cv.create_column("s", "str:4")
    col.extend(np.array(["ab", "cd", "é"]))
    col[0:2] = np.array(["x", "y"])
    assert list(col) == ["x", "y", "é"]
    with pytest.raises(ValueError, match="longer"):
        col.extend(np.array(["fine", "too long"]))
    # Raw element bytes could hold bytes that are not text: the native core refuses them.
    with pytest.raises(TypeError, match="raw element bytes"):
        col._core.extend_raw(b"\xff\xff\xff\xff")
    with pytest.raises(TypeError, match="raw element bytes"):
        col._core.set_raw(0, b"\xff\xff\xff\xff")
    assert list(col) == ["x", "y", "é"]


def test_fixed_str_list_model_and_cache():
    cv = ColumnVault(":memory:")
    col = cv.create_column("s", "str:6")
    rng = np.random.default_rng(5)
    pool = ["", "a", "bb", "日本", "x\x00y", "sixsix"]
    model: list = []
    with col.cache():
        for _ in range(120):
            op = rng.integers(0, 5)
            t = pool[int(rng.integers(0, len(pool)))]
            if op == 0 or not model:
                col.append(t)
                model.append(t)
            elif op == 1:
                i = int(rng.integers(-len(model), len(model)))
                col[i] = t
                model[i] = t
            elif op == 2:
                i = int(rng.integers(-len(model) - 1, len(model) + 1))
                col.insert(i, t)
                model.insert(i, t)
            elif op == 3:
                i = int(rng.integers(-len(model), len(model)))
                assert col.pop(i) == model.pop(i)
            else:
                del col[::3]
                del model[::3]
            assert list(col) == model
    assert list(col) == model and col.count("a") == model.count("a")
