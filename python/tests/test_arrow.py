"""Columns and key-value scans as Arrow data: exact round trips for every dtype, zero-copy for
fixed widths, ``from_arrow``/``extend`` that write nothing on error, Parquet in row groups in
constant memory, and the Arrow C stream read by DuckDB and Polars."""

from __future__ import annotations

import datetime
import tracemalloc

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from ambervault import ColumnVault, InvalidArgument, NotFound, _arrow  # noqa: E402

FIXED = {
    "i8": ("int8", np.int8),
    "i16": ("int16", np.int16),
    "i32": ("int32", np.int32),
    "i64": ("int64", np.int64),
    "u8": ("uint8", np.uint8),
    "u16": ("uint16", np.uint16),
    "u32": ("uint32", np.uint32),
    "u64": ("uint64", np.uint64),
    "f16": ("halffloat", np.float16),
    "f32": ("float", np.float32),
    "f64": ("double", np.float64),
}


@pytest.fixture
def cv(db_path):
    vault = ColumnVault(db_path)
    yield vault
    vault.close()


def _values(npdtype, n, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(npdtype).kind == "f":
        return (rng.standard_normal(n) * 100).astype(npdtype)
    info = np.iinfo(npdtype)
    return rng.integers(info.min, info.max, n, dtype=npdtype, endpoint=True)


class _Spy:
    """Records what ``Column.to_numpy`` returned, so the Arrow buffer can be compared with it."""

    def __init__(self, monkeypatch):
        from ambervault.columns import Column, VecColumn

        self.arrays = []
        for cls in (Column, VecColumn):
            original = cls.to_numpy

            def spy(col, *args, _original=original, **kwargs):
                array = _original(col, *args, **kwargs)
                self.arrays.append(array)
                return array

            monkeypatch.setattr(cls, "to_numpy", spy)


# -- Column.to_arrow --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", sorted(FIXED))
def test_fixed_width_round_trip_and_type(cv, dtype):
    arrow_name, npdtype = FIXED[dtype]
    values = _values(npdtype, 5000)
    col = cv.create_column("x", dtype)
    col.extend(values)
    array = col.to_arrow()
    assert str(array.type) == arrow_name
    assert array.null_count == 0
    np.testing.assert_array_equal(array.to_numpy(), values)
    assert array.to_numpy().dtype == np.dtype(npdtype)
    np.testing.assert_array_equal(col.to_arrow(10, 20).to_numpy(), values[10:20])
    np.testing.assert_array_equal(col.to_arrow(-3).to_numpy(), values[-3:])


@pytest.mark.parametrize("n", [1000, 500_000])  # a small read (bytearray) and a large one (native)
def test_fixed_width_is_zero_copy(cv, monkeypatch, n):
    col = cv.create_column("x", "f64")
    col.extend(np.arange(n, dtype=np.float64))
    spy = _Spy(monkeypatch)
    before = pa.total_allocated_bytes()
    array = col.to_arrow()
    assert pa.total_allocated_bytes() == before  # pyarrow allocated nothing: no second copy
    (read,) = spy.arrays
    assert array.buffers()[1].address == read.ctypes.data
    assert array.to_pylist()[-1] == n - 1


def test_bytes_n_is_zero_copy_fixed_size_binary(cv, monkeypatch):
    col = cv.create_column("h", "bytes:4")
    col.extend([b"abcd", b"xy", b"\x00\x01\x02\x03"])
    spy = _Spy(monkeypatch)
    array = col.to_arrow()
    assert array.type == pa.binary(4)
    assert array.buffers()[1].address == spy.arrays[0].ctypes.data
    assert array.to_pylist() == [b"abcd", b"xy\x00\x00", b"\x00\x01\x02\x03"]


def test_bool_is_arrow_bool(cv):
    col = cv.create_column("b", "bool")
    col.extend([True, False, True, True])
    array = col.to_arrow()
    assert array.type == pa.bool_()
    assert array.to_pylist() == [True, False, True, True]


def test_vec_is_nested_fixed_size_list_without_copy(cv, monkeypatch):
    col = cv.create_column("emb", "vec:i16:2:3")
    rows = _values(np.int16, 7 * 6, seed=3).reshape(7, 2, 3)
    col.extend(rows)
    spy = _Spy(monkeypatch)
    array = col.to_arrow()
    assert array.type == pa.list_(pa.list_(pa.int16(), 3), 2)
    assert array.to_pylist() == rows.tolist()
    assert array.flatten().flatten().buffers()[1].address == spy.arrays[0].ctypes.data
    one = cv.create_column("v", "vec:f32:4")
    one.extend(np.eye(4, dtype=np.float32))
    assert one.to_arrow().type == pa.list_(pa.float32(), 4)
    assert one.to_arrow(1, 2).to_pylist() == [[0.0, 1.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("dtype", "values", "arrow_type"),
    [
        ("str", ["a", "", "日本語", "x" * 1000], pa.string()),
        ("str:utf16", ["a", "", "日本語 🎉"], pa.string()),
        ("str:latin1", ["café", ""], pa.string()),
        ("str:ascii", ["plain", "text"], pa.string()),
        ("str:8", ["ab", "日本", ""], pa.string()),
        ("bytes", [b"", b"\x00\xff", b"z" * 5000], pa.binary()),
    ],
)
def test_variable_and_text_dtypes(cv, dtype, values, arrow_type):
    col = cv.create_column("t", dtype)
    col.extend(values)
    array = col.to_arrow()
    assert array.type == arrow_type
    assert array.to_pylist() == values
    assert col.to_arrow(1).to_pylist() == values[1:]


def test_large_offsets_become_large_types(cv, monkeypatch):
    text = cv.create_column("t", "str")
    text.extend(["abc", "de"])
    blob = cv.create_column("b", "bytes")
    blob.extend([b"abc", b"de"])
    assert text.to_arrow().type == pa.string()
    monkeypatch.setattr(_arrow, "OFFSET_LIMIT", 4)  # the 5 stored bytes now exceed it
    assert text.to_arrow().type == pa.large_string()
    assert blob.to_arrow().type == pa.large_binary()
    assert text.to_arrow().to_pylist() == ["abc", "de"]
    assert cv.to_arrow().schema.field("b").type == pa.large_binary()


def test_packed_columns(cv):
    events = cv.create_column("e", "msgpack")
    values = [{"step": 1, "tags": ("a",)}, [1, None, 2.5], datetime.date(2024, 1, 2)]
    events.extend(values)
    array = events.to_arrow()
    assert array.type == pa.binary()
    assert [events._unpack(b) for b in array.to_pylist()] == values
    with pytest.raises(InvalidArgument, match="msgpack"):
        events.to_arrow(decode=True)  # mixed types: pyarrow cannot type them
    js = cv.create_column("j", "json")
    js.extend([{"a": 1}, {"a": 2}])
    assert js.to_arrow().type == pa.string()
    assert js.to_arrow(decode=True).to_pylist() == [{"a": 1}, {"a": 2}]
    table = cv.to_arrow(["j"])
    assert table.schema.field("j").metadata == {b"ambervault.dtype": b"json"}


def test_empty_column(cv):
    for dtype in ("f32", "str", "vec:u8:2", "bool"):
        col = cv.create_column(dtype, dtype)
        assert len(col.to_arrow()) == 0


# -- ColumnVault.to_arrow -----------------------------------------------------------------------------


def test_vault_table(cv):
    cv.create_column("step", "i64").extend(range(100))
    cv.create_column("loss", "f32").extend(np.linspace(1, 0, 100, dtype=np.float32))
    cv.create_column("tag", "str").extend([f"t{i}" for i in range(100)])
    table = cv.to_arrow()
    assert table.column_names == ["loss", "step", "tag"]
    assert table.num_rows == 100
    assert table.schema.field("step").metadata == {b"ambervault.dtype": b"i64"}
    assert cv.to_arrow(["tag", "step"]).column_names == ["tag", "step"]
    np.testing.assert_array_equal(table.column("loss").to_numpy(), cv["loss"].to_numpy())
    with pytest.raises(NotFound):
        cv.to_arrow(["nope"])
    with pytest.raises(InvalidArgument, match="twice"):
        cv.to_arrow(["step", "step"])


def test_vault_table_needs_equal_lengths(cv):
    cv.create_column("a", "i32").extend([1, 2, 3])
    cv.create_column("b", "i32").extend([1, 2])
    with pytest.raises(InvalidArgument, match=r"a=3, b=2"):
        cv.to_arrow()
    with pytest.raises(InvalidArgument, match=r"a=3, b=2"):
        cv.to_reader()
    assert cv.to_arrow(["a"]).num_rows == 3


def test_cached_appends_are_included(cv):
    col = cv.create_column("x", "i64")
    with cv.cache():
        col.extend([1, 2, 3])
        assert cv.to_arrow().column("x").to_pylist() == [1, 2, 3]
        assert col.to_arrow().to_pylist() == [1, 2, 3]


# -- from_arrow and extend -----------------------------------------------------------------------------


def _all_dtypes(cv):
    n = 50
    rng = np.random.default_rng(1)
    for dtype, (_, npdtype) in FIXED.items():
        cv.create_column(dtype, dtype).extend(_values(npdtype, n))
    cv.create_column("bool", "bool").extend(rng.integers(0, 2, n).astype(bool))
    cv.create_column("bytes:3", "bytes:3").extend([bytes([i, 1, 2]) for i in range(n)])
    cv.create_column("vec", "vec:f32:2:2").extend(rng.standard_normal((n, 2, 2)).astype(np.float32))
    cv.create_column("str", "str").extend([f"s{i}é" for i in range(n)])
    cv.create_column("str:utf16", "str:utf16").extend([f"u{i}🎉" for i in range(n)])
    cv.create_column("str:6", "str:6").extend([f"w{i}" for i in range(n)])
    cv.create_column("bytes", "bytes").extend([bytes(i) for i in range(n)])
    cv.create_column("msgpack", "msgpack").extend([{"i": i, "t": (i,)} for i in range(n)])
    cv.create_column("json", "json").extend([[i, "x"] for i in range(n)])


def _same_columns(a, b):
    assert a.list_columns() == b.list_columns()
    for name, _, _ in a.list_columns():
        x, y = a[name], b[name]
        if name in ("msgpack", "json"):
            assert x[:] == y[:]
        else:
            np.testing.assert_array_equal(x.to_numpy(), y.to_numpy())


def test_from_arrow_round_trips_every_dtype(cv, tmp_path):
    _all_dtypes(cv)
    table = cv.to_arrow()
    with ColumnVault(tmp_path / "copy.db") as copy:
        copy.from_arrow(table)
        _same_columns(cv, copy)
        copy.from_arrow(table)  # appends to the existing columns
        assert {length for _, _, length in copy.list_columns()} == {100}
        assert copy["msgpack"][50] == {"i": 0, "t": (0,)}


def test_from_arrow_maps_plain_arrow_types(cv):
    table = pa.table(
        {
            "i": pa.array([1, 2], pa.int64()),
            "u": pa.array([1, 2], pa.uint16()),
            "h": pa.array([1.5, 2.5], pa.float16()),
            "b": pa.array([True, False]),
            "s": pa.array(["x", "y"], pa.large_string()),
            "d": pa.array(["x", "x"]).dictionary_encode(),
            "bin": pa.array([b"1", b"22"]),
            "fsb": pa.array([b"ab", b"cd"], pa.binary(2)),
            "vec": pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64(), 2)),
        }
    )
    cv.from_arrow(table)
    dtypes = {name: dtype for name, dtype, _ in cv.list_columns()}
    assert dtypes == {
        "i": "i64",
        "u": "u16",
        "h": "f16",
        "b": "bool",
        "s": "str",
        "d": "str",
        "bin": "bytes",
        "fsb": "bytes:2",
        "vec": "vec:f64:2",
    }
    assert cv["d"][:] == ["x", "x"]
    assert cv["fsb"][:] == [b"ab", b"cd"]
    np.testing.assert_array_equal(cv["vec"].to_numpy(), [[1, 2], [3, 4]])
    cv.from_arrow(pa.table({"new": pa.array(["a", "b"])}), dtypes={"new": "str:4"})
    assert cv["new"].dtype == "str:4"


def _state(cv):
    return cv.list_columns(), {name: cv[name][:] for name, _, _ in cv.list_columns()}


@pytest.mark.parametrize(
    ("table", "error", "match"),
    [
        (
            lambda: pa.table({"x": [1, 2], "when": pa.array([1, 2], pa.timestamp("s"))}),
            InvalidArgument,
            "when",
        ),
        (lambda: pa.table({"x": [1, None]}), InvalidArgument, "null"),
        (lambda: pa.table({"x": [1, 2], "n": pa.array([1, None])}), InvalidArgument, "null"),
        (lambda: pa.table({"x": [1, 2**40]}), OverflowError, "range"),  # existing i32 column
        (lambda: pa.table({"new": [1, 2], "x": [1, 2**40]}), OverflowError, "range"),  # after a create
        (lambda: pa.table({"x": pa.array([1.5, 2.0])}), TypeError, "float"),
        (lambda: pa.table({"l": pa.array([[1], [2, 3]])}), InvalidArgument, "list"),
    ],
)
def test_from_arrow_errors_write_nothing(cv, table, error, match):
    cv.create_column("x", "i32").extend([7])
    before = _state(cv)
    with pytest.raises(error, match=match):
        cv.from_arrow(table())
    assert _state(cv) == before
    assert "new" not in cv
    assert cv.check() == []
    cv.from_arrow(pa.table({"x": pa.array([8], pa.int64())}))  # still usable; int64 -> i32 fits
    assert cv["x"][:] == [7, 8]


def test_from_arrow_dtype_conflict(cv):
    cv.create_column("x", "i32")
    with pytest.raises(InvalidArgument, match="exists with dtype i32"):
        cv.from_arrow(pa.table({"x": [1]}), dtypes={"x": "f64"})
    with pytest.raises(InvalidArgument, match="does not have"):
        cv.from_arrow(pa.table({"x": [1]}), dtypes={"y": "f64"})
    with pytest.raises(TypeError, match="from_arrow takes"):
        cv.from_arrow(42)


def test_from_arrow_polars_frame(cv):
    pl = pytest.importorskip("polars")
    cv.from_arrow(pl.DataFrame({"a": [1, 2], "s": ["x", "yé"], "f": [0.5, 1.5]}))
    assert cv.list_columns() == [("a", "i64", 2), ("f", "f64", 2), ("s", "str", 2)]
    assert cv["s"][:] == ["x", "yé"]


def test_from_arrow_record_batch_and_stream(cv, tmp_path):
    cv.from_arrow(pa.record_batch({"a": pa.array([1, 2], pa.int8())}))
    with ColumnVault(tmp_path / "other.db") as other:
        other.from_arrow(cv)  # anything with __arrow_c_stream__
        assert other["a"][:] == [1, 2] and other["a"].dtype == "i8"


class _CoreSpy:
    """Forwards to a ColumnCore, recording the buffers extend_raw is given."""

    def __init__(self, core):
        self._core = core
        self.raw = []

    def extend_raw(self, raw):
        self.raw.append(raw)
        return self._core.extend_raw(raw)

    def __getattr__(self, name):
        return getattr(self._core, name)


def test_extend_arrow_fixed_width_is_bulk_and_zero_copy(cv):
    col = cv.create_column("x", "f64")
    spy = _CoreSpy(col._core)
    col._core = spy
    array = pa.array(np.arange(100_000, dtype=np.float64))
    col.extend(array)
    (raw,) = spy.raw
    assert raw.ctypes.data == array.buffers()[1].address  # the Arrow memory, not a copy
    col.extend(array.slice(10, 5))
    assert col[-5:] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert len(col) == 100_005


def test_extend_arrow_kinds(cv):
    h = cv.create_column("h", "bytes:4")
    h.extend(pa.array([b"ab", b"cd", b"zz"], pa.binary(2)).slice(1))  # narrower: zero-padded
    h.extend(pa.array([b"abcd"], pa.binary(4)))
    assert h[:] == [b"cd\x00\x00", b"zz\x00\x00", b"abcd"]
    with pytest.raises(ValueError, match="longer"):
        h.extend(pa.array([b"abcde"], pa.binary(5)))
    v = cv.create_column("v", "vec:u8:2:2")
    v.extend(pa.array([[[1, 2], [3, 4]]], pa.list_(pa.list_(pa.uint8(), 2), 2)))
    np.testing.assert_array_equal(v[0], [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="shape"):
        v.extend(pa.array([[1, 2, 3]], pa.list_(pa.uint8(), 3)))
    s = cv.create_column("s", "str")
    s.extend(pa.chunked_array([["a", "b"], ["c"]]))
    assert s[:] == ["a", "b", "c"]
    m = cv.create_column("m", "msgpack")
    m.extend(pa.array([{"a": 1}, {"a": 2}]))
    assert m[:] == [{"a": 1}, {"a": 2}]
    b = cv.create_column("b", "bool")
    b.extend(pa.array([True, False, True]))
    assert b[:] == [True, False, True]


def test_extend_chunked_array_is_atomic(cv):
    col = cv.create_column("x", "u8")
    col.extend([1])
    with pytest.raises(OverflowError):
        col.extend(pa.chunked_array([pa.array([2, 3]), pa.array([4, 300])]))
    with pytest.raises(InvalidArgument, match="null"):
        col.extend(pa.chunked_array([pa.array([2, 3]), pa.array([4, None])]))
    assert col[:] == [1]
    col.extend(pa.chunked_array([pa.array([2, 3]), pa.array([4])]))
    assert col[:] == [1, 2, 3, 4]


# -- Parquet --------------------------------------------------------------------------------------------


def test_parquet_round_trip_in_row_groups(cv, tmp_path):
    _all_dtypes(cv)
    out = tmp_path / "all.parquet"
    assert cv.to_parquet(out, row_group_rows=16) == 50
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == 4
    back = pq.read_table(out)
    assert back.equals(cv.to_arrow())
    assert not (tmp_path / "all.parquet.part").exists()
    with ColumnVault(tmp_path / "from_parquet.db") as copy:
        copy.from_arrow(back)
        _same_columns(cv, copy)
    assert cv["f64"].to_parquet(tmp_path / "one.parquet", compression="zstd") == 50
    one = pq.read_table(tmp_path / "one.parquet")
    assert one.column_names == ["f64"]
    np.testing.assert_array_equal(one.column("f64").to_numpy(), cv["f64"].to_numpy())


def test_parquet_error_leaves_no_file(cv, tmp_path):
    cv.create_column("a", "i8").extend([1])
    cv.create_column("b", "i8")
    with pytest.raises(InvalidArgument, match="a=1, b=0"):
        cv.to_parquet(tmp_path / "x.parquet")
    assert list(tmp_path.glob("x.parquet*")) == []
    with pytest.raises(InvalidArgument):
        cv.to_parquet(tmp_path / "x.parquet", row_group_rows=0)


def test_parquet_streams_in_constant_memory(cv, tmp_path, monkeypatch):
    n = 600_000
    cv.create_column("x", "f64").extend(np.arange(n, dtype=np.float64))  # 4.8 MB
    text = cv.create_column("t", "str")
    for start in range(0, n, 100_000):
        text.extend([f"line {i:08d} " + "x" * 40 for i in range(start, start + 100_000)])  # ~60 MB as str
    reads = []
    original = _arrow.column_slice

    def counting(col, start, stop, typ, decode=False):
        array = original(col, start, stop, typ, decode)
        reads.append(len(array))
        return array

    monkeypatch.setattr(_arrow, "column_slice", counting)
    rows = 20_000  # reads of 160 KB for x: bytearrays, which tracemalloc sees too
    tracemalloc.start()
    try:
        cv.to_parquet(tmp_path / "big.parquet", row_group_rows=rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(reads) == rows and len(reads) == 2 * n // rows
    # The whole text column as Python strings is ~60 MB; one row group of it ~2 MB.
    assert peak < 8 << 20, peak
    meta = pq.ParquetFile(tmp_path / "big.parquet").metadata
    assert meta.num_rows == n and meta.num_row_groups == n // rows
    back = pq.read_table(tmp_path / "big.parquet", columns=["x"])
    np.testing.assert_array_equal(back.column("x").to_numpy(), np.arange(n, dtype=np.float64))


# -- the Arrow C stream: DuckDB, Polars, pyarrow ---------------------------------------------------------


def _metrics(cv, n=200_000):
    rng = np.random.default_rng(5)
    loss = rng.random(n)
    cv.create_column("loss", "f64").extend(loss)
    cv.create_column("step", "i64").extend(np.arange(n))
    cv.create_column("tag", "str").extend([f"t{i % 7}" for i in range(n)])
    return loss


def test_stream_reads_in_batches(cv, monkeypatch):
    _metrics(cv, 10_000)
    sizes = []
    original = _arrow.column_slice

    def counting(col, start, stop, typ, decode=False):
        sizes.append(stop - start)
        return original(col, start, stop, typ, decode)

    monkeypatch.setattr(_arrow, "column_slice", counting)
    reader = cv.to_reader(batch_rows=3000)
    assert sizes == []  # nothing read before the consumer asks
    batches = list(reader)
    assert [b.num_rows for b in batches] == [3000, 3000, 3000, 1000]
    assert max(sizes) == 3000
    table = pa.RecordBatchReader.from_stream(cv).read_all()
    assert table.equals(cv.to_arrow())
    column_table = pa.RecordBatchReader.from_stream(cv["loss"]).read_all()
    assert column_table.column_names == ["loss"]


def test_stream_covers_rows_present_when_made(cv):
    col = cv.create_column("x", "i64")
    col.extend(range(10))
    reader = cv.to_reader(batch_rows=4)
    col.extend(range(10, 20))
    assert reader.read_all().column("x").to_pylist() == list(range(10))


def test_duckdb_reads_the_vault(cv):
    duckdb = pytest.importorskip("duckdb")
    loss = _metrics(cv)
    tbl = cv  # noqa: F841 - found by DuckDB's replacement scan
    avg, total, n = duckdb.sql("select avg(loss), sum(step), count(*) from tbl").fetchall()[0]
    assert avg == pytest.approx(loss.mean(), rel=1e-12)
    assert total == int(np.arange(len(loss)).sum()) and n == len(loss)
    by_tag = duckdb.sql("select tag, count(*) from tbl group by tag order by tag").fetchall()
    tags = np.array([f"t{i % 7}" for i in range(len(loss))])
    assert by_tag == [(t, int((tags == t).sum())) for t in sorted(set(tags))]
    arrow_table = cv.to_arrow()  # noqa: F841
    assert duckdb.sql("select max(loss) from arrow_table").fetchall()[0][0] == loss.max()
    col = cv["loss"]  # noqa: F841
    assert duckdb.sql("select min(loss) from col").fetchall()[0][0] == loss.min()


def test_polars_reads_the_vault(cv):
    pl = pytest.importorskip("polars")
    loss = _metrics(cv, 50_000)
    frame = pl.DataFrame(cv)
    assert frame.columns == ["loss", "step", "tag"]
    np.testing.assert_array_equal(frame["loss"].to_numpy(), loss)
    np.testing.assert_array_equal(frame["step"].to_numpy(), np.arange(len(loss)))
    assert frame["loss"].mean() == pytest.approx(loss.mean(), rel=1e-12)
    same = pl.from_arrow(cv.to_arrow())
    assert same.equals(frame)
    # A Column is also a Sequence, which Polars' DataFrame constructor prefers: pass its reader.
    assert pl.DataFrame(cv["step"].to_reader())["step"].sum() == int(np.arange(len(loss)).sum())


def test_pandas_via_arrow(cv):
    pd = pytest.importorskip("pandas")
    loss = _metrics(cv, 1000)
    frame = cv.to_arrow().to_pandas()
    assert isinstance(frame, pd.DataFrame)
    np.testing.assert_array_equal(frame["loss"].to_numpy(), loss)


# -- KVault.to_arrow ---------------------------------------------------------------------------------------


def test_kv_to_arrow_str_keys_and_encodings(vault):
    vault["a"] = b"raw"
    vault["b"] = {"x": 1}
    vault["c"] = "text"
    vault["skip"] = b"no"
    table = vault.to_arrow(end="d")
    assert table.column_names == ["key", "value", "encoding"]
    assert table.schema.field("key").type == pa.string()
    assert table.schema.field("value").type == pa.binary()
    assert table.column("key").to_pylist() == ["a", "b", "c"]
    assert table.column("encoding").to_pylist() == ["raw", "msgpack", "msgpack"]
    assert table.schema.field("encoding").type == pa.dictionary(pa.int32(), pa.string())
    assert table.column("value")[0].as_py() == b"raw"
    decoded = vault.to_arrow(prefix="c", decode=True)
    assert decoded.column_names == ["key", "value"]
    assert decoded.column("value").to_pylist() == ["text"]
    with pytest.raises(InvalidArgument, match="decode=False"):
        vault.to_arrow(end="d", decode=True)  # bytes, dict and str in one column
    assert vault.to_arrow(limit=2, reverse=True).column("key").to_pylist() == ["skip", "c"]


def test_kv_to_arrow_key_types(vault):
    vault[b"\x01k"] = b"1"
    vault[b"\x01j"] = b"2"
    assert vault.to_arrow().schema.field("key").type == pa.binary()
    vault[("user", "ann")] = b"3"
    with pytest.raises(InvalidArgument, match="bytes, tuple"):
        vault.to_arrow()
    only_tuples = vault.to_arrow(prefix=("user",))
    assert only_tuples.column("key").to_pylist() == [["user", "ann"]]
    vault[("user", 5)] = b"4"
    with pytest.raises(InvalidArgument, match="tuple keys"):
        vault.to_arrow(prefix=("user",))
    empty = vault.to_arrow(prefix="nothing")
    assert empty.num_rows == 0 and empty.schema.field("key").type == pa.string()


def test_kv_to_arrow_refuses_large_values_before_reading(vault, monkeypatch):
    vault["small"] = b"x" * 10
    vault["big"] = b"y" * 100_000
    calls = []
    native = vault._native
    monkeypatch.setattr(
        type(vault), "_native", property(lambda self: _GetManySpy(native, calls)), raising=True
    )
    with pytest.raises(InvalidArgument, match="ambervault export"):
        vault.to_arrow(max_value_bytes=50_000)
    assert calls == []  # refused before any value was read
    table = vault.to_arrow(max_value_bytes=None)
    assert table.column("value").to_pylist() == [b"y" * 100_000, b"x" * 10]


class _GetManySpy:
    def __init__(self, native, calls):
        self._native = native
        self._calls = calls

    def get_many(self, keys):
        self._calls.append(keys)
        return self._native.get_many(keys)

    def __getattr__(self, name):
        return getattr(self._native, name)
