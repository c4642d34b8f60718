"""Typed values: every supported value comes back as the same type and value through every
read path (get, [], get_many, values, items, the write-back cache, transactions); the encoding
is kept beside the value, so raw bytes stay raw; pickle is used only with an explicit opt-in;
a value that cannot be stored raises a clear error and writes nothing."""

from __future__ import annotations

import datetime as dt
import io
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ambervault
from ambervault import Cbor, Json, KVault, MsgPack, Pickle
from helpers import same_value

# The round-trip table of docs/kvault.md: value -> what comes back (None: the value itself).
ROUND_TRIP = [
    (b"\x00raw\xff", None),
    (bytearray(b"ba"), b"ba"),
    (memoryview(b"mv"), b"mv"),
    ("text", None),
    ("", None),
    ("unicode é ✓ 🎉", None),
    (0, None),
    (-1, None),
    (2**63 - 1, None),
    (-(2**63), None),
    (2**64 - 1, None),
    (2**200, None),
    (-(2**200) - 7, None),
    (1.5, None),
    (float("inf"), None),
    (float("-inf"), None),
    (True, None),
    (False, None),
    (None, None),
    ([1, "a", None], None),
    ((1, ("nested", b"x")), None),
    ({"a": 1, "b": [1.5, {"c": (2, 3)}]}, None),
    ({1: "int key", (1, 2): "tuple key", b"k": "bytes key"}, None),
    ({"big": [2**100, -(2**70)]}, None),
    (dt.date(2024, 2, 29), None),
    (dt.datetime(2024, 2, 29, 12, 30, 1, 123456), None),
    (dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))), None),
]


@pytest.fixture
def vault(tmp_path):
    v = KVault(tmp_path / "v.db", chunk_size=4096)
    yield v
    v.close()


_same = same_value


@pytest.mark.parametrize("value,expected", ROUND_TRIP, ids=lambda v: type(v).__name__)
def test_every_row_of_the_round_trip_table(vault, value, expected):
    want = value if expected is None else expected
    vault["k"] = value
    assert _same(vault["k"], want)
    assert _same(vault.get_many(["k"])[0], want)
    assert _same(dict(vault.items())["k"], want)
    # A fresh handle on the file reads it the same way.
    again = KVault(vault.path, chunk_size=4096)
    assert _same(again["k"], want)
    again.close()


def test_nan_and_negative_zero_keep_their_bits(vault):
    vault["nan"] = float("nan")
    vault["negzero"] = -0.0
    assert math.isnan(vault["nan"])
    assert vault["negzero"] == 0.0 and math.copysign(1, vault["negzero"]) == -1


def test_raw_bytes_are_stored_exactly_and_reported_raw(vault):
    # Bytes that look like a MessagePack value stay bytes: the encoding is beside the value.
    packed_looking = b"\x93\x01\x02\x03"
    vault["b"] = packed_looking
    assert vault["b"] == packed_looking
    assert vault.info("b")["encoding"] == "raw"
    vault["n"] = [1, 2, 3]
    assert vault.info("n")["encoding"] == "msgpack"


def test_encoded_values_are_invisible_to_streams_except_as_their_bytes(vault):
    vault["v"] = {"a": 1}
    with vault.open("v") as f:
        stored = f.read()
    assert stored and stored != b"{'a': 1}"
    out = io.BytesIO()
    assert vault.get_to_file("v", out) == len(stored)
    assert vault.info("v")["size"] == len(stored)


def test_get_decode_returns_raw_text(vault):
    vault["t"] = "héllo".encode()
    assert vault.get("t", decode=True) == "héllo"
    vault["s"] = "already text"
    assert vault.get("s", decode=True) == "already text"


def test_numpy_arrays_keep_dtype_shape_and_byte_order(vault):
    arrays = [
        np.arange(12, dtype="<f4").reshape(3, 4),
        np.arange(6, dtype=">i8").reshape(2, 3),
        np.asfortranarray(np.arange(6, dtype="u2").reshape(2, 3)),
        np.zeros((0, 5), dtype="f8"),
        np.array([b"ab", b"c"], dtype="S2"),
        np.array(["x", "yz"], dtype="<U2"),
        np.array([(1, 2.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
    ]
    for i, array in enumerate(arrays):
        vault[f"a{i}"] = array
        back = vault[f"a{i}"]
        assert isinstance(back, np.ndarray)
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
        assert vault.info(f"a{i}")["encoding"] == "numpy"


def test_large_arrays_are_chunked_like_large_bytes(vault):
    big = np.random.default_rng(1).standard_normal((300, 100))  # 240 KB > chunk_size
    vault["big"] = big
    assert vault.info("big")["chunked"]
    np.testing.assert_array_equal(vault["big"], big)


def test_numpy_scalars_come_back_as_numpy_scalars(vault):
    for i, scalar in enumerate([np.float32(1.5), np.int64(-3), np.bool_(True), np.uint8(7)]):
        vault[f"s{i}"] = scalar
        back = vault[f"s{i}"]
        assert type(back) is type(scalar) and back == scalar


def test_numpy_arrays_inside_containers_round_trip(vault):
    """An embedding stored beside its fields (kohakuvault packs arrays inside dicts too)."""
    embedding = np.arange(6, dtype="<f4").reshape(2, 3)
    vault["doc"] = {"embedding": embedding, "ids": [np.arange(3, dtype=">i8")], "name": "a"}
    back = vault["doc"]
    assert back["name"] == "a"
    assert back["embedding"].dtype == np.dtype("<f4") and back["embedding"].shape == (2, 3)
    np.testing.assert_array_equal(back["embedding"], embedding)
    assert back["ids"][0].dtype == np.dtype(">i8")
    with pytest.raises(TypeError, match="dtype object"):
        vault["bad"] = {"o": np.array([object()], dtype=object)}
    assert "bad" not in vault


def test_object_arrays_are_refused_and_nothing_is_written(vault):
    with pytest.raises(TypeError, match="dtype object"):
        vault["o"] = np.array([object()], dtype=object)
    assert "o" not in vault


@pytest.mark.parametrize(
    "bad,error",
    [({1, 2}, TypeError), (object(), TypeError), ({"k": object()}, TypeError), (1j, TypeError)],
    ids=["set", "object", "nested object", "complex"],
)
def test_values_that_cannot_be_stored_are_refused_and_nothing_is_written(vault, bad, error):
    vault["k"] = b"old"
    with pytest.raises(error, match="Pickle"):
        vault["k"] = bad
    with pytest.raises(error):
        vault.put_many([("k", b"new"), ("k2", bad)])
    assert vault["k"] == b"old" and "k2" not in vault


def test_cyclic_and_absurdly_deep_values_raise_instead_of_crashing(vault):
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError):
        vault["c"] = cyclic
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(ValueError):
        vault["d"] = deep
    deep_tuple: tuple = ()
    for _ in range(10_000):
        deep_tuple = (deep_tuple,)
    with pytest.raises(ValueError):
        vault["t"] = deep_tuple
    assert len(vault) == 0


def test_pickle_needs_the_opt_in_to_write_and_to_read(tmp_path):
    path = tmp_path / "p.db"
    plain = KVault(path)
    with pytest.raises(TypeError, match="allow_pickle=True"):
        plain["p"] = Pickle({1, 2})
    assert "p" not in plain
    plain.close()
    trusting = KVault(path, allow_pickle=True)
    trusting["p"] = Pickle({1, 2})
    assert trusting["p"] == {1, 2}
    assert trusting.info("p")["encoding"] == "pickle"
    trusting.close()
    again = KVault(path)
    with pytest.raises(TypeError, match="allow_pickle=True"):
        again["p"]
    assert again.info("p")["encoding"] == "pickle"  # metadata reads never unpickle
    again.close()


def test_wrappers_choose_the_encoding(vault):
    vault["m"] = MsgPack({"a": (1, 2)})
    vault["j"] = Json({"a": [1, 2], "t": "é"})
    vault["c"] = Cbor({"a": [1, 2]})
    assert vault["m"] == {"a": (1, 2)}
    assert vault["j"] == {"a": [1, 2], "t": "é"}
    assert vault["c"] == {"a": [1, 2]}
    assert [vault.info(k)["encoding"] for k in "mjc"] == ["msgpack", "json", "cbor"]
    with vault.open("j") as f:
        assert f.read() == '{"a": [1, 2], "t": "é"}'.encode()


def test_auto_pack_off_accepts_only_bytes_and_still_reads_typed_values(vault):
    vault["typed"] = {"x": 1}
    assert vault.auto_pack_enabled()
    vault.disable_auto_pack()
    assert not vault.auto_pack_enabled()
    with pytest.raises(TypeError, match="auto-pack"):
        vault["s"] = "text"
    vault["b"] = b"ok"
    assert vault["typed"] == {"x": 1}
    vault.enable_auto_pack()
    vault["s"] = "text"
    assert vault["s"] == "text"
    off = KVault(":memory:", auto_pack=False)
    with pytest.raises(TypeError):
        off["k"] = 5


def test_header_switches_are_recorded_and_change_no_bytes(vault):
    assert vault.headers_enabled()  # kohakuvault's default
    vault.disable_headers()
    assert not vault.headers_enabled()
    vault.enable_headers()
    assert vault.headers_enabled()
    vault["raw"] = b"\xff\xd8jpeg"
    with vault.open("raw") as f:
        assert f.read() == b"\xff\xd8jpeg"


def test_typed_values_through_the_cache_transactions_and_conditions(vault):
    with vault.cache():
        vault["a"] = {"n": 1}
        assert vault["a"] == {"n": 1}
        got = vault["a"]
        got["n"] = 99  # a read gives a fresh object: the cached value is not changed
        assert vault["a"] == {"n": 1}
        assert vault.get_many(["a", "zz"]) == [{"n": 1}, None]
    assert vault["a"] == {"n": 1}
    with pytest.raises(RuntimeError), vault.transaction():
        vault["a"] = [1]
        raise RuntimeError
    assert vault["a"] == {"n": 1}
    version = vault.version("a")
    vault.put("a", ("swapped",), if_version=version)
    assert vault["a"] == ("swapped",)
    with pytest.raises(ambervault.Conflict):
        vault.put("a", "lost", if_version=version)
    assert vault.setdefault("new", [1, 2]) == [1, 2]
    assert vault.pop("new") == [1, 2]
    assert sorted(vault.values(), key=repr) == [("swapped",)]


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.dates()
    | st.datetimes()
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(value=_values)
def test_any_nested_value_round_trips(value):
    vault = KVault(":memory:", chunk_size=4096)
    vault["k"] = value
    assert _same(vault["k"], value)
    vault.put_many([("m", value)])
    assert _same(vault["m"], value)
    vault.close()


def test_kohakuvault_constructor_arguments_are_accepted_and_checked(tmp_path):
    v = KVault(tmp_path / "k.db", reader_cache_kb=8192, reader_idle_limit=8)
    v["k"] = 1
    assert v["k"] == 1
    v.close()
    with pytest.raises(ambervault.InvalidArgument):
        KVault(tmp_path / "bad.db", reader_idle_limit=-1)
    with pytest.raises(TypeError):
        KVault(tmp_path / "bad.db", reader_cache_kb="big")
    assert not (tmp_path / "bad.db").exists()
