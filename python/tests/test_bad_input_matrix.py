"""Bad input matrix: every public call with wrong types, out-of-range numbers, oversized keys,
and on closed objects. Each gets the documented exception, and nothing is written."""

from __future__ import annotations

import io

import pytest

from ambervault import ClosedError, ColumnVault, InvalidArgument, KVault

BAD_KEYS = [1, 1.5, None, ["k"], ("k", 1.5), {"k": 1}, bytearray(b"k"), memoryview(b"k"), object()]

# (call, expected exception) with the key replaced by a bad one.
KEY_CALLS = {
    "put": lambda v, k: v.put(k, b"v"),
    "setitem": lambda v, k: v.__setitem__(k, b"v"),
    "get": lambda v, k: v.get(k),
    "getitem": lambda v, k: v[k],
    "delete": lambda v, k: v.delete(k),
    "delitem": lambda v, k: v.__delitem__(k),
    "exists": lambda v, k: v.exists(k),
    "contains": lambda v, k: k in v,
    "info": lambda v, k: v.info(k),
    "version": lambda v, k: v.version(k),
    "touch": lambda v, k: v.touch(k, 5),
    "expires_at": lambda v, k: v.expires_at(k),
    "put_file": lambda v, k: v.put_file(k, io.BytesIO(b"data")),
    "get_to_file": lambda v, k: v.get_to_file(k, io.BytesIO()),
    "open_rb": lambda v, k: v.open(k),
    "open_wb": lambda v, k: v.open(k, "wb"),
    "put_many": lambda v, k: v.put_many([(k, b"v")]),
    "get_many": lambda v, k: v.get_many([k]),
    "keys_prefix": lambda v, k: list(v.keys(prefix=k)),
    "keys_start": lambda v, k: list(v.keys(start=k)),
    "items_end": lambda v, k: list(v.items(end=k)),
}


@pytest.fixture
def vault(tmp_path):
    v = KVault(tmp_path / "m.db", chunk_size=64)
    v["existing"] = b"old"
    yield v
    v.close()


def snapshot(v):
    return dict(v.items()), v.stats()["chunks"]


# None means "no bound" for scan arguments: valid there, so not part of the matrix.
SCAN_BOUNDS = {"keys_prefix", "keys_start", "items_end"}
KEY_CASES = [
    pytest.param(call, bad, id=f"{call}-{type(bad).__name__}")
    for call in KEY_CALLS
    for bad in BAD_KEYS
    if not (bad is None and call in SCAN_BOUNDS)
]


@pytest.mark.parametrize("call, bad", KEY_CASES)
def test_wrong_key_types_are_type_errors(vault, call, bad):
    before = snapshot(vault)
    with pytest.raises(TypeError):
        KEY_CALLS[call](vault, bad)
    assert snapshot(vault) == before


# With auto-pack off (kohakuvault's bytes-only mode) only bytes-like values are accepted; with it
# on (the default), values that cannot be stored are still refused.
NOT_BYTES = ["text", 5, 2.5, None, [1, 2], {"a": 1}, object(), memoryview(b"abcdef")[::2]]
UNSTORABLE = [object(), {1, 2}, 1j, {"k": object()}, memoryview(b"abcdef")[::2]]
VALUE_CALLS = [
    lambda v, x: v.put("existing", x),
    lambda v, x: v.__setitem__("existing", x),
    lambda v, x: v.put_many([("new", b"ok"), ("existing", x)]),
    lambda v, x: v.update({"new": b"ok", "existing": x}),
]
# Streams always take raw bytes, whatever auto-pack says.
STREAM_CALL = lambda v, x: v.put_file("existing", [b"ok", x])  # noqa: E731


def _refused_and_nothing_written(vault, call, bad):
    before = snapshot(vault)
    with pytest.raises(TypeError):
        call(vault, bad)
    after = snapshot(vault)
    # update() is documented as batches, not one transaction: only items before the bad one
    # may have landed; the bad key itself keeps its old value.
    assert after[0]["existing"] == b"old"
    assert after == before or set(after[0]) - set(before[0]) <= {"new"}


@pytest.mark.parametrize("bad", NOT_BYTES, ids=lambda b: type(b).__name__)
@pytest.mark.parametrize("call", [*VALUE_CALLS, STREAM_CALL])
def test_without_auto_pack_non_bytes_values_are_type_errors_and_write_nothing(vault, call, bad):
    vault.disable_auto_pack()
    _refused_and_nothing_written(vault, call, bad)


@pytest.mark.parametrize("bad", UNSTORABLE, ids=lambda b: type(b).__name__)
@pytest.mark.parametrize("call", VALUE_CALLS)
def test_unstorable_values_are_type_errors_and_write_nothing(vault, call, bad):
    _refused_and_nothing_written(vault, call, bad)


@pytest.mark.parametrize("bad", NOT_BYTES, ids=lambda b: type(b).__name__)
def test_streams_take_only_bytes(vault, bad):
    _refused_and_nothing_written(vault, STREAM_CALL, bad)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda v: v.put(b"k" * ((1 << 20) + 1), b"v"), InvalidArgument),
        (lambda v: v.put("k", b"v", ttl=float("nan")), InvalidArgument),
        (lambda v: v.put("k", b"v", ttl=float("inf")), InvalidArgument),
        (lambda v: v.set_limits(max_bytes=-1), InvalidArgument),
        (lambda v: v.set_limits(max_bytes=1.5), TypeError),
        (lambda v: v.set_limits(eviction="random"), InvalidArgument),
        (lambda v: v.set_limits(dedup="some"), InvalidArgument),
        (lambda v: v.set_limits(default_ttl=float("nan")), InvalidArgument),
        (lambda v: v.set_limits(default_ttl=-1), InvalidArgument),
        (lambda v: v.prune(max_age=-1), InvalidArgument),
        (lambda v: v.prune(max_idle=float("nan")), InvalidArgument),
        (lambda v: v.put("k", b"v", ttl=-3), InvalidArgument),
        (lambda v: v.put("k", b"v", ttl="1"), TypeError),
        (lambda v: v.put("k", b"v", if_version="1"), TypeError),
        (lambda v: v.put_file("k", io.BytesIO(b"abc"), size=-1), InvalidArgument),
        (lambda v: v.put_file("k", io.BytesIO(b"abc"), size=10), InvalidArgument),
        (lambda v: v.put_file("k", io.BytesIO(b"abc"), chunk_size=0), InvalidArgument),
        (lambda v: v.put_file("k", io.BytesIO(b"abc"), chunk_size=1 << 40), InvalidArgument),
        (lambda v: v.get_to_file("existing", io.BytesIO(), chunk_size=0), InvalidArgument),
        (lambda v: v.open("existing", "r+b"), InvalidArgument),
        (lambda v: v.keys(limit=-1), InvalidArgument),
        (lambda v: v.keys(limit="3"), TypeError),
        (lambda v: v.enable_cache(cap_bytes=-1), InvalidArgument),
        (lambda v: v.enable_cache(flush_interval=0), InvalidArgument),
        (lambda v: v.touch("existing", -1), InvalidArgument),
    ],
)
def test_out_of_range_arguments(vault, call, error):
    before = snapshot(vault)
    with pytest.raises(error):
        call(vault)
    assert snapshot(vault) == before


def test_nul_non_utf8_and_unicode_keys_round_trip(vault):
    keys = [b"\x00", b"a\x00b", b"\xff\xfe\xfd", "n\x00l", "ключ", "🎞" * 100, "a\u0301"]
    for i, key in enumerate(keys):
        vault[key] = bytes([i]) * 100
    for i, key in enumerate(keys):
        assert vault[key] == bytes([i]) * 100
    assert vault.check() == []


def test_every_call_on_a_closed_vault_is_a_closed_error(tmp_path):
    v = KVault(tmp_path / "c.db")
    v["k"] = b"v"
    v.close()
    calls = [
        lambda: v.put("k", b"v"),
        lambda: v.get("k"),
        lambda: v["k"],
        lambda: v.delete("k"),
        lambda: "k" in v,
        lambda: len(v),
        lambda: list(v),
        lambda: list(v.items()),
        lambda: v.put_many([("a", b"b")]),
        lambda: v.get_many(["k"]),
        lambda: v.put_file("k", io.BytesIO(b"x")),
        lambda: v.get_to_file("k", io.BytesIO()),
        lambda: v.open("k"),
        lambda: v.open("k", "wb"),
        lambda: v.info("k"),
        lambda: v.version("k"),
        lambda: v.touch("k", 1),
        lambda: v.prune(),
        lambda: v.stats(),
        lambda: v.check(),
        lambda: v.backup(tmp_path / "b.db"),
        lambda: v.optimize(),
        lambda: v.checkpoint(),
        lambda: v.transaction(),
        lambda: v.enable_cache(),
        lambda: v.clear(),
    ]
    for call in calls:
        with pytest.raises(ClosedError):
            call()
    assert not (tmp_path / "b.db").exists()


def test_closed_column_vault_and_columns(tmp_path):
    cv = ColumnVault(tmp_path / "c.db")
    col = cv.create_column("c", "i64")
    col.append(1)
    cv.close()
    for call in (
        lambda: cv.create_column("d", "i64"),
        lambda: cv["c"],
        lambda: cv.list_columns(),
        lambda: cv.check(),
        lambda: len(col),
        lambda: col.append(2),
        lambda: col[0],
        lambda: list(col),
    ):
        with pytest.raises(ClosedError):
            call()


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda cv, c: cv.create_column(5, "i64"), TypeError),
        (lambda cv, c: cv.create_column("", "i64"), InvalidArgument),
        (lambda cv, c: cv.create_column("x", 64), TypeError),
        (lambda cv, c: cv.create_column("x", "int64"), InvalidArgument),
        (lambda cv, c: cv.create_column("x", "bytes:-1"), InvalidArgument),
        (lambda cv, c: cv[3], TypeError),
        (lambda cv, c: cv.rename_column("c", 3), TypeError),
        (lambda cv, c: c.insert("0", 1), TypeError),
        (lambda cv, c: c.pop("0"), TypeError),
        (lambda cv, c: c.extend([1, 2**70]), OverflowError),
        (lambda cv, c: c.__setitem__(slice(0, 2), [1]), ValueError),
        (lambda cv, c: c.to_numpy("a"), TypeError),
        (lambda cv, c: ColumnVault(tmp_path_holder[0], min_chunk_bytes=0), InvalidArgument),
        (
            lambda cv, c: ColumnVault(tmp_path_holder[0], min_chunk_bytes=10, max_chunk_bytes=5),
            InvalidArgument,
        ),
        (lambda cv, c: ColumnVault(3.5), TypeError),
    ],
)
def test_column_bad_arguments(tmp_path, call, error):
    tmp_path_holder[:] = [tmp_path / "other.db"]
    with ColumnVault(tmp_path / "c.db") as cv:
        c = cv.create_column("c", "i64")
        c.extend([1, 2, 3])
        with pytest.raises(error):
            call(cv, c)
        assert list(c) == [1, 2, 3]
        assert cv.list_columns() == [("c", "i64", 3)]


tmp_path_holder: list = [None]
