"""Tuple keys: composite keys of str, bytes, int and nested tuples, stored in an encoding whose
byte order is the tuples' order, so scans return them in Python's sort order and a tuple prefix
selects exactly its partition. They come back as the tuples they were and live beside str and
bytes keys in one table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ambervault
from ambervault import KVault


@pytest.fixture
def vault():
    v = KVault(":memory:")
    yield v
    v.close()


def test_tuple_keys_store_values_and_come_back_as_tuples(vault):
    vault[("org#acme", "user#123")] = {"name": "Ann"}
    vault[("org#acme", "user#7")] = {"name": "Bo"}
    vault["plain"] = b"str key"
    vault[b"raw"] = b"bytes key"
    assert vault[("org#acme", "user#123")] == {"name": "Ann"}
    assert ("org#acme", "user#7") in vault
    assert set(vault) == {("org#acme", "user#123"), ("org#acme", "user#7"), "plain", b"raw"}
    assert vault.info(("org#acme", "user#7"))["encoding"] == "msgpack"
    assert vault.delete(("org#acme", "user#7"))
    assert ("org#acme", "user#7") not in vault


def test_a_prefix_selects_exactly_its_partition_in_order(vault):
    for org in ("acme", "acmecorp", "beta"):
        for user in (10, 2, -5, 2**70):
            vault[(org, user)] = f"{org}/{user}"
    vault[("acme",)] = "the partition's own row"
    got = list(vault.items(prefix=("acme",)))
    assert [k for k, _ in got] == [("acme",), ("acme", -5), ("acme", 2), ("acme", 10), ("acme", 2**70)]
    assert got[1][1] == "acme/-5"
    assert len(vault.keys(prefix=("acme",))) == 5
    assert next(iter(vault.keys(prefix=("beta",), reverse=True))) == ("beta", 2**70)


def test_range_scans_take_tuple_bounds(vault):
    for day in range(1, 11):
        vault[("log", 2024, day)] = day
    window = list(vault.keys(start=("log", 2024, 3), end=("log", 2024, 6)))
    assert window == [("log", 2024, 3), ("log", 2024, 4), ("log", 2024, 5)]


@pytest.mark.parametrize(
    "bad",
    [(1.5,), ("a", None), (True,), ("a", ["list"]), ("a", {"d": 1}), ((1, (2.0,)),)],
    ids=["float", "none", "bool", "list", "dict", "nested float"],
)
def test_unsupported_tuple_items_are_type_errors_and_write_nothing(vault, bad):
    with pytest.raises(TypeError, match="tuple key items"):
        vault[bad] = b"v"
    assert len(vault) == 0


def test_an_empty_tuple_is_refused(vault):
    with pytest.raises(ambervault.InvalidArgument):
        vault[()] = b"v"
    assert len(vault) == 0


def test_tuple_keys_through_the_write_back_cache(vault):
    with vault.cache():
        vault[("a", 1)] = [1]
        assert vault[("a", 1)] == [1]
        assert vault.get_many([("a", 1), ("a", 2)]) == [[1], None]
    assert vault[("a", 1)] == [1]


_item = st.one_of(st.integers(), st.text(max_size=6), st.binary(max_size=6))
# Tuples of one shape per position, so that Python can compare them: (int, str, bytes) prefixes.
_keys = st.lists(
    st.tuples(st.integers(), st.text(max_size=6), st.binary(max_size=6)).flatmap(
        lambda t: st.integers(min_value=1, max_value=3).map(lambda n: t[:n])
    ),
    min_size=1,
    max_size=25,
    unique=True,
)


@settings(deadline=None)
@given(keys=_keys)
def test_scan_order_is_python_tuple_order(keys):
    vault = KVault(":memory:")
    vault.put_many([(k, b"") for k in keys])
    assert list(vault) == sorted(keys)
    assert list(vault.keys(reverse=True)) == sorted(keys, reverse=True)
    vault.close()


@given(key=st.recursive(_item, lambda inner: st.tuples(inner) | st.tuples(inner, inner), max_leaves=8))
def test_any_tuple_key_round_trips(key):
    key = key if isinstance(key, tuple) else (key,)
    vault = KVault(":memory:")
    vault[key] = b"v"
    assert list(vault) == [key]
    vault.close()
