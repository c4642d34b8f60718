"""Packed columns (dtypes ``msgpack``, ``json``, ``cbor``): nested values round-trip through
every read path, every list operation behaves like a Python list, a value that cannot be packed
writes nothing, a reopened file decodes the same, and the cache and transactions work."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ambervault import ColumnVault, InvalidArgument, KVault
from ambervault.columns import Column, PackedColumn
from helpers import same_value

PACKED = ["msgpack", "json", "cbor"]


_same = same_value


def _all_same(xs, ys) -> bool:
    return len(xs) == len(ys) and all(_same(x, y) for x, y in zip(xs, ys))


# Values each encoding holds and gives back as the same type and value. NaN is left out of the
# model tests only because NaN != NaN would break list comparisons (its round trip is tested).
_floats = st.floats(allow_nan=False)
_msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # any size: beyond 64 bits through the big-int extension
    | _floats
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.dates()
    | st.datetimes()
    | st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=5, minutes=30))))
)
_msgpack_keys = (
    st.text(max_size=8)
    | st.integers()
    | st.binary(max_size=8)
    | st.tuples(st.integers(), st.text(max_size=4))
)
_json_scalars = st.none() | st.booleans() | st.integers() | _floats | st.text(max_size=20)
_cbor_scalars = (
    st.none() | st.booleans() | st.integers() | _floats | st.text(max_size=20) | st.binary(max_size=20)
)

VALUES = {
    "msgpack": st.recursive(
        _msgpack_scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.lists(inner, max_size=4).map(tuple)
            | st.dictionaries(_msgpack_keys, inner, max_size=4)
        ),
        max_leaves=12,
    ),
    "json": st.recursive(
        _json_scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    ),
    "cbor": st.recursive(
        _cbor_scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=8) | st.integers(-1000, 1000), inner, max_size=4)
        ),
        max_leaves=12,
    ),
}

# One fixed nested value per dtype, for the operation tests.
SAMPLES = {
    "msgpack": [
        {"a": [1, 2.5, None], "t": (1, ("x", b"\x00\xff")), 7: {"deep": [True, False]}},
        2**100,
        dt.date(2024, 2, 29),
        dt.datetime(2024, 2, 29, 12, 30, 1, 123456),
        "text é",
        b"raw",
        [],
        {},
        None,
    ],
    "json": [{"a": [1, 2.5, None], "b": {"deep": [True, False, "é"]}}, 2**100, "text", [], {}, None, -0.5],
    "cbor": [{"a": [1, 2.5, None], 7: {"deep": [True, b"\x00"]}}, 2**100, -(2**70), "text", b"raw", [], None],
}

# Values each encoding cannot hold, with the error.
BAD = {
    "msgpack": [(object(), TypeError), ({1, 2}, TypeError), (1 + 2j, TypeError)],
    "json": [(object(), TypeError), (b"bytes", TypeError), ({(1, 2): "tuple key"}, TypeError)],
    "cbor": [(object(), TypeError), (lambda: None, TypeError)],
}


@pytest.fixture
def cv(tmp_path):
    vault = ColumnVault(tmp_path / "p.db", min_chunk_bytes=64, max_chunk_bytes=512)
    yield vault
    vault.close()


@pytest.mark.parametrize("dtype", PACKED)
def test_dtype_is_named_stored_and_reported(cv, dtype):
    col = cv.create_column("c", dtype)
    assert isinstance(col, PackedColumn) and isinstance(col, Column)
    assert col.dtype == dtype
    assert cv.list_columns() == [("c", dtype, 0)]
    assert cv.ensure("c", dtype) is col
    with pytest.raises(InvalidArgument):
        cv.ensure("c", "bytes")
    # Plain variable-width columns keep the unpacked class.
    assert type(cv.create_column("b", "bytes")) is Column


@pytest.mark.parametrize("dtype", PACKED)
def test_samples_round_trip_through_every_read_path(cv, dtype):
    col = cv.create_column("c", dtype)
    values = SAMPLES[dtype]
    col.extend(values)
    assert _all_same([col[i] for i in range(len(values))], values)
    assert _all_same([col[i - len(values)] for i in range(len(values))], values)
    assert _all_same(col[:], values)
    assert _all_same(col[::-2], values[::-2])
    assert _all_same(list(col), values)
    assert _all_same(list(reversed(col)), values[::-1])
    assert _all_same(list(col.to_numpy()), values)


@pytest.mark.parametrize("dtype", PACKED)
def test_nan_and_infinities_round_trip(cv, dtype):
    col = cv.create_column("c", dtype)
    col.extend([float("nan"), [float("inf"), float("-inf")], -0.0])
    assert math.isnan(col[0])
    assert col[1] == [float("inf"), float("-inf")]
    assert math.copysign(1, col[2]) == -1


@pytest.mark.parametrize("dtype", PACKED)
def test_property_nested_values_round_trip(tmp_path_factory, dtype):
    path = tmp_path_factory.mktemp(dtype) / "prop.db"

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(values=st.lists(VALUES[dtype], max_size=6))
    def check(values):
        with ColumnVault(path) as vault:
            if "c" in vault:
                vault.delete_column("c")
            col = vault.create_column("c", dtype)
            col.extend(values)
            assert _all_same(col[:], values)
            assert _all_same(list(col), values)
        # A fresh handle on the file decodes the same way (the dtype name is in the file).
        with ColumnVault(path) as vault:
            assert _all_same(list(vault["c"]), values)

    check()


def test_what_round_trips_differs_per_encoding_as_documented(cv):
    value = {"t": (1, 2), 3: "int key"}
    cv.create_column("m", "msgpack").append(value)
    cv.create_column("j", "json").append(value)
    cv.create_column("c", "cbor").append(value)
    assert _same(cv["m"][0], value)  # tuples and int keys kept
    assert cv["j"][0] == {"t": [1, 2], "3": "int key"}  # JSON: tuples are arrays, keys text
    assert cv["c"][0] == {"t": [1, 2], 3: "int key"}  # CBOR: tuples are arrays, int keys kept


@pytest.mark.parametrize("dtype", PACKED)
def test_every_list_operation_matches_a_list(cv, dtype):
    col = cv.create_column("c", dtype)
    model = list(SAMPLES[dtype])
    col.extend(model)
    other = SAMPLES[dtype][0]

    def check():
        assert len(col) == len(model)
        assert _all_same(list(col), model)

    col.append([1, {"x": 2}])
    model.append([1, {"x": 2}])
    check()
    col[1] = {"replaced": [1, 2, 3]}
    model[1] = {"replaced": [1, 2, 3]}
    col[-1] = "last"
    model[-1] = "last"
    check()
    col[2:4] = [[1], [2, [3]]]
    model[2:4] = [[1], [2, [3]]]
    col[::3] = [{"s": i} for i in range(len(model[::3]))]
    model[::3] = [{"s": i} for i in range(len(model[::3]))]
    check()
    for s in (slice(None), slice(1, -1), slice(None, None, 2), slice(None, None, -3), slice(5, 1, -1)):
        assert _all_same(col[s], model[s])
    col.insert(0, {"first": None})
    model.insert(0, {"first": None})
    col.insert(-2, [None])
    model.insert(-2, [None])
    col.insert(100, "end")
    model.insert(100, "end")
    check()
    assert _same(col.pop(), model.pop())
    assert _same(col.pop(0), model.pop(0))
    assert _same(col.pop(-3), model.pop(-3))
    check()
    del col[1]
    del model[1]
    del col[-1]
    del model[-1]
    del col[::2]
    del model[::2]
    check()
    col.extend([other, other, [1]])
    model.extend([other, other, [1]])
    assert col.index(other) == model.index(other)
    assert col.index([1]) == model.index([1])
    assert col.count(other) == model.count(other) == 2
    assert col.count("absent") == 0
    with pytest.raises(ValueError):
        col.index("absent")
    col.remove([1])
    model.remove([1])
    col += [{"plus": True}]
    model += [{"plus": True}]
    check()
    assert col == model
    array = col.to_numpy()
    assert array.dtype == object and array.shape == (len(model),)
    assert _all_same(list(array), model)
    assert _all_same(list(col.to_numpy(1, 3)), model[1:3])
    assert _all_same(list(np.asarray(col)), model)
    with pytest.raises(IndexError):
        col[len(model)]
    with pytest.raises(IndexError):
        col[len(model)] = 1
    col.clear()
    assert len(col) == 0 and list(col) == []
    with pytest.raises(IndexError):
        col.pop()


@pytest.mark.parametrize("dtype", PACKED)
def test_equal_length_lists_stay_one_element_each_in_to_numpy(cv, dtype):
    col = cv.create_column("c", dtype)
    col.extend([[1, 2], [3, 4]])
    array = col.to_numpy()
    assert array.shape == (2,)
    assert array[0] == [1, 2] and array[1] == [3, 4]


@pytest.mark.parametrize("dtype", PACKED)
def test_a_bad_element_writes_nothing(cv, dtype):
    col = cv.create_column("c", dtype)
    col.extend(["keep", {"k": [1]}])
    for bad, error in BAD[dtype]:
        with pytest.raises(error):
            col.append(bad)
        with pytest.raises(error):
            col.extend([1, 2, bad, 3])
        with pytest.raises(error):
            col[0] = bad
        with pytest.raises(error):
            col[0:2] = ["fine", bad]
        with pytest.raises(error):
            col.insert(0, bad)
        assert list(col) == ["keep", {"k": [1]}]
    with pytest.raises(ValueError, match="length mismatch"):
        col[0:2] = [1]
    assert list(col) == ["keep", {"k": [1]}]


@pytest.mark.parametrize("dtype", PACKED)
def test_cyclic_values_raise_instead_of_crashing(cv, dtype):
    col = cv.create_column("c", dtype)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError):
        col.append(cyclic)
    assert len(col) == 0


@pytest.mark.parametrize("dtype", PACKED)
def test_reopening_the_file_decodes_the_same(tmp_path, dtype):
    path = tmp_path / "r.db"
    with ColumnVault(path) as vault:
        vault.create_column("c", dtype).extend(SAMPLES[dtype])
    with ColumnVault(path, read_only=True) as vault:
        col = vault["c"]
        assert isinstance(col, PackedColumn) and col.dtype == dtype
        assert _all_same(list(col), SAMPLES[dtype])


@pytest.mark.parametrize("dtype", PACKED)
@pytest.mark.parametrize("where", ["vault", "column"])
def test_cache_holds_packed_elements(cv, dtype, where):
    col = cv.create_column("c", dtype)
    plain = cv.create_column("n", "i64")
    owner = cv if where == "vault" else col
    owner.enable_cache(cap_bytes=4096, flush_threshold=2048)
    values = [{"i": i, "nested": [i, str(i)]} for i in range(50)]
    for v in values[:10]:
        col.append(v)
    col.extend(values[10:])
    if where == "vault":
        plain.extend(range(50))
    # The encoded elements are held natively as bytes until a flush; reads see them.
    assert col[0] == values[0] and col[-1] == values[-1]
    assert list(col) == values
    with pytest.raises(TypeError):
        col.append(object())
    with pytest.raises(TypeError):
        col.extend([{"ok": 1}, object()])
    owner.flush_cache()
    assert list(col) == values
    # More appends than the cache can hold go through the slow path in order.
    big = [{"blob": "x" * 3000, "i": i} for i in range(3)]
    col.extend(big)
    owner.disable_cache()
    assert list(col) == values + big
    if where == "vault":
        assert list(plain) == list(range(50))


@pytest.mark.parametrize("dtype", PACKED)
def test_cache_through_cache_context(cv, dtype):
    col = cv.create_column("c", dtype)
    with col.cache(cap_bytes=1 << 16):
        col.extend([[1, [2]], {"a": None}])
        col.append("s")
    assert col[:] == [[1, [2]], {"a": None}, "s"]
    with cv.cache():
        col.append({"b": 1})
    assert col[-1] == {"b": 1}


@pytest.mark.parametrize("dtype", PACKED)
def test_transactions_commit_and_roll_back(tmp_path, dtype):
    kv = KVault(tmp_path / "t.db")
    vault = ColumnVault(kv)
    col = vault.create_column("c", dtype)
    with vault.transaction():
        col.append({"a": [1]})
        col.extend([[2], "three"])
        kv["k"] = b"v"
    assert col[:] == [{"a": [1]}, [2], "three"]
    with pytest.raises(RuntimeError), vault.transaction():
        col.append({"gone": True})
        col[0] = "gone"
        raise RuntimeError("roll back")
    assert col[:] == [{"a": [1]}, [2], "three"]
    vault.close()
    kv.close()


def machine_for(dtype):
    values = VALUES[dtype]
    slices = st.builds(
        slice,
        st.none() | st.integers(-8, 8),
        st.none() | st.integers(-8, 8),
        st.none() | st.sampled_from([1, 2, -1, -2]),
    )

    class PackedMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            self.vault = ColumnVault(":memory:", min_chunk_bytes=32, max_chunk_bytes=256)
            self.col = self.vault.create_column("c", dtype)
            self.model = []

        @rule(vs=st.lists(values, max_size=4))
        def extend(self, vs):
            self.col.extend(vs)
            self.model.extend(vs)

        @rule(v=values)
        def append(self, v):
            self.col.append(v)
            self.model.append(v)

        @rule(s=slices)
        def read_slice(self, s):
            assert _all_same(self.col[s], self.model[s])

        @rule(s=slices, data=st.data())
        def set_slice(self, s, data):
            n = len(self.model[s])
            vs = data.draw(st.lists(values, min_size=n, max_size=n))
            self.col[s] = vs
            self.model[s] = vs

        @rule(s=slices)
        def del_slice(self, s):
            del self.col[s]
            del self.model[s]

        @rule(i=st.integers(-10, 10), v=values)
        def insert(self, i, v):
            self.col.insert(i, v)
            self.model.insert(i, v)

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def pop(self, data):
            i = data.draw(st.integers(-len(self.model), len(self.model) - 1))
            assert _same(self.col.pop(i), self.model.pop(i))

        @rule()
        def toggle_cache(self):
            if self.vault._cache is None:
                self.vault.enable_cache(cap_bytes=300, flush_threshold=100)
            else:
                self.vault.disable_cache()

        @invariant()
        def same_as_model(self):
            if hasattr(self, "col"):
                assert len(self.col) == len(self.model)
                assert _all_same(list(self.col), self.model)

        def teardown(self):
            if hasattr(self, "vault"):
                self.vault.close()

    return PackedMachine


@pytest.mark.parametrize("dtype", PACKED)
def test_packed_column_behaves_like_a_list(dtype):
    machine = machine_for(dtype)
    machine.TestCase.settings = settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    machine.TestCase("runTest").runTest()
