"""The KVault mapping API: keys, values, dict protocol, scans, batches and lifecycle."""

from __future__ import annotations

import array
import os
import pickle
from collections.abc import MutableMapping

import pytest

import ambervault
from ambervault import ClosedError, InvalidArgument, KVault, NotFound


def test_is_a_mutable_mapping(vault):
    assert isinstance(vault, MutableMapping)


def test_str_and_bytes_keys_are_the_same_entry_and_keep_their_type(vault):
    vault["k"] = b"from str"
    assert vault[b"k"] == b"from str"
    assert list(vault) == ["k"]
    vault[b"k"] = b"from bytes"
    assert vault["k"] == b"from bytes"
    assert list(vault) == [b"k"]
    assert len(vault) == 1


def test_unicode_nul_and_binary_keys_round_trip(vault):
    keys = ["ключ", "emoji 🎞", "nul\x00inside", b"\x00\xff\xfe", b"", ""]
    for i, key in enumerate(keys[:-1]):
        vault[key] = bytes([i])
    for i, key in enumerate(keys[:-1]):
        assert vault[key] == bytes([i])
    assert set(vault.keys()) == set(keys[:-1])
    assert vault[""] == bytes([4])  # "" and b"" are the same empty key


@pytest.mark.parametrize("bad_key", [1, 1.5, None, ("a", 1.5), bytearray(b"k"), memoryview(b"k")])
def test_other_key_types_are_type_errors_and_write_nothing(vault, bad_key):
    with pytest.raises(TypeError, match=r"keys must be str, bytes or tuple|tuple key items"):
        vault[bad_key] = b"v"
    with pytest.raises(TypeError):
        vault.get(bad_key)
    assert len(vault) == 0


def test_surrogate_str_key_is_rejected_cleanly(vault):
    with pytest.raises(UnicodeEncodeError):
        vault["\ud800"] = b"v"
    assert len(vault) == 0


def test_key_size_limit(vault):
    big = b"k" * (1 << 20)
    vault[big] = b"ok"
    assert vault[big] == b"ok"
    with pytest.raises(InvalidArgument, match="at most"):
        vault[big + b"x"] = b"v"
    assert len(vault) == 1


@pytest.mark.parametrize(
    "value",
    [
        b"plain",
        bytearray(b"mutable"),
        memoryview(b"view"),
        array.array("d", [1.5, 2.5]),
        b"",
        b"\x00" * 10,
        b"\x93\x01\x02packed-looking msgpack-ish header",
        b"\x89PNG\r\n\x1a\n",
    ],
)
def test_values_are_stored_byte_exact(vault, value):
    vault["k"] = value
    expected = bytes(memoryview(value).cast("B"))
    got = vault["k"]
    assert type(got) is bytes
    assert got == expected


def test_bytearray_is_snapshotted_at_put(vault):
    data = bytearray(b"before")
    vault["k"] = data
    data[:] = b"after!"
    assert vault["k"] == b"before"


@pytest.mark.parametrize("bad", ["text", 1, None, 1.0, [1, 2], object()])
def test_without_auto_pack_non_bytes_values_are_type_errors_naming_the_type(vault, bad):
    vault.disable_auto_pack()
    with pytest.raises(TypeError, match=type(bad).__name__):
        vault["k"] = bad
    assert "k" not in vault


@pytest.mark.parametrize("bad", [object(), {1, 2}, 1j])
def test_unstorable_values_are_type_errors_naming_the_type(vault, bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        vault["k"] = bad
    assert "k" not in vault


def test_non_contiguous_buffer_is_refused(vault):
    view = memoryview(bytes(range(10)))[::2]
    with pytest.raises(TypeError, match="contiguous"):
        vault["k"] = view
    assert "k" not in vault


def test_dict_protocol(vault):
    model = {}
    for i in range(20):
        vault[f"k{i:02}"] = bytes([i])
        model[f"k{i:02}"] = bytes([i])
    assert len(vault) == 20
    assert dict(vault.items()) == model
    assert sorted(vault.values()) == sorted(model.values())
    assert vault.pop("k00") == b"\x00"
    assert vault.pop("k00", b"dflt") == b"dflt"
    with pytest.raises(KeyError):
        vault.pop("k00")
    assert vault.setdefault("new", b"d") == b"d"
    assert vault.setdefault("new", b"other") == b"d"
    key, value = vault.popitem()
    assert key == "k01" and value == b"\x01"
    vault.update({"u1": b"1"}, u2=b"2")
    vault.update([("u3", b"3")])
    assert vault["u1"] + vault["u2"] + vault["u3"] == b"123"
    assert vault == dict(vault.items())
    vault.clear()
    assert len(vault) == 0 and list(vault) == []


def test_missing_keys(vault):
    with pytest.raises(NotFound) as info:
        vault["missing"]
    assert isinstance(info.value, KeyError)
    assert info.value.args == ("missing",)
    with pytest.raises(KeyError):
        del vault["missing"]
    assert vault.get("missing") is None
    assert vault.get("missing", b"d") == b"d"
    assert vault.delete("missing") is False
    assert vault.exists("missing") is False


def test_prefix_and_limit_scans(vault):
    for key in ["img:1", "img:2", "img:10", "txt:1", b"img:\xff", "imh"]:
        vault[key] = b"v"
    assert list(vault.keys(prefix="img:")) == ["img:1", "img:10", "img:2", b"img:\xff"]
    assert list(vault.keys(prefix=b"img:", limit=2)) == ["img:1", "img:10"]
    assert len(vault.keys(prefix="img:")) == 4
    assert len(vault.keys(prefix="img:", limit=3)) == 3
    assert [k for k, _ in vault.items(prefix="txt")] == ["txt:1"]
    assert list(vault.values(prefix="nothing")) == []
    assert list(vault.keys(limit=0)) == []
    assert "img:1" in vault.keys(prefix="img:")
    assert "txt:1" not in vault.keys(prefix="img:")
    with pytest.raises(InvalidArgument):
        vault.keys(limit=-1)


def test_scans_page_through_many_keys(vault):
    vault.put_many([(f"{i:06}", str(i).encode()) for i in range(2500)])
    keys = list(vault.keys())
    assert keys == [f"{i:06}" for i in range(2500)]
    items = list(vault.items(prefix="0012"))
    assert items == [(f"0012{i:02}", str(1200 + i).encode()) for i in range(100)]


def test_scan_survives_deletes_during_iteration(vault):
    vault.put_many([(f"{i:05}", b"v") for i in range(3000)])
    seen = []
    for key in vault.keys():
        seen.append(key)
        if key == "00010":
            for j in range(11, 2000):
                del vault[f"{j:05}"]
    # Weakly consistent, like a dict view over a live store: no key twice, order kept, every
    # key that existed throughout is seen, and keys deleted before their page was read are not.
    assert seen == sorted(set(seen))
    kept = {f"{i:05}" for i in range(11)} | {f"{i:05}" for i in range(2000, 3000)}
    assert kept <= set(seen) <= {f"{i:05}" for i in range(3000)}
    assert f"{1500:05}" not in seen


def test_put_many_and_get_many(vault):
    vault.put_many({"a": b"1", b"b": bytearray(b"2")})
    vault.put_many([("c", memoryview(b"3"))])
    assert vault.get_many(["a", "b", "c", "zz"]) == [b"1", b"2", b"3", None]


def test_put_many_with_a_bad_item_writes_nothing(vault):
    vault["keep"] = b"old"
    with pytest.raises(TypeError):
        vault.put_many([("keep", b"new"), ("x", object())])
    with pytest.raises(TypeError):
        vault.put_many([("keep", b"new"), (5, b"v")])
    with pytest.raises(TypeError):
        vault.put_many([("keep", b"new", b"extra")])
    assert vault["keep"] == b"old"
    assert len(vault) == 1


def test_large_values_are_chunked_and_round_trip(db_path):
    with KVault(db_path, chunk_size=1000) as vault:
        data = bytes(range(256)) * 40  # 10,240 bytes: 11 chunks
        vault["big"] = data
        assert vault["big"] == data
        assert vault.info("big")["chunked"] is True
        vault.put_many([("b1", data), ("b2", data[:900]), ("b3", b"x"), ("b4", data[:1000])])
        assert vault.get_many(["b1", "b2", "b3", "b4"]) == [data, data[:900], b"x", data[:1000]]
        assert vault.info("b2")["chunked"] is False
        # A value whose key row would not fit a 4 KiB page's row goes to the chunk store, even
        # below the chunk size (docs/format.md).
        assert vault.info("b4")["chunked"] is True


def test_info_tracks_versions_and_times(vault):
    vault["k"] = b"abc"
    first = vault.info("k")
    vault["k"] = b"abcdef"
    second = vault.info("k")
    assert (first["size"], first["version"]) == (3, 1)
    assert (second["size"], second["version"]) == (6, 2)
    assert second["created_at_ms"] == first["created_at_ms"]
    assert second["updated_at_ms"] >= first["updated_at_ms"]
    assert vault.info("missing") is None


def test_reopen_keeps_everything(db_path):
    with KVault(db_path) as vault:
        vault["s"] = b"1"
        vault[b"b"] = b"2"
    with KVault(db_path) as vault:
        assert dict(vault.items()) == {"s": b"1", b"b": b"2"}


def test_tables_share_a_file_without_mixing(db_path):
    a = KVault(db_path, table="media")
    b = KVault(db_path, table="other")
    a["k"] = b"a"
    b["k"] = b"b"
    assert (a["k"], b["k"]) == (b"a", b"b")
    assert len(a) == len(b) == 1
    a.close()
    b.close()


@pytest.mark.parametrize(
    "table",
    ['kvault"; DROP TABLE kvault; --', "a b", "", "1x", "sqlite_master", "x__chunks", "é"],
)
def test_table_names_cannot_inject_sql(db_path, table):
    with KVault(db_path) as vault:
        vault["k"] = b"v"
    with pytest.raises(InvalidArgument, match="table name"):
        KVault(db_path, table=table)
    with KVault(db_path) as vault:
        assert vault["k"] == b"v"


def test_memory_vaults_are_private(tmp_path):
    a = KVault(":memory:")
    b = KVault(":memory:")
    a["k"] = b"v"
    assert "k" not in b
    assert not (tmp_path / ":memory:").exists()


def test_pathlike_and_str_paths(tmp_path):
    with KVault(tmp_path / "p.db") as vault:
        vault["k"] = b"v"
    with KVault(str(tmp_path / "p.db")) as vault:
        assert vault["k"] == b"v"
    with pytest.raises(TypeError, match="path"):
        KVault(123)


def test_close_is_idempotent_and_use_after_close_is_clear(db_path):
    vault = KVault(db_path)
    vault["k"] = b"v"
    vault.close()
    vault.close()
    assert vault.closed
    for op in (
        lambda: vault["k"],
        lambda: vault.put("k", b"v"),
        lambda: len(vault),
        lambda: list(vault),
        lambda: vault.open("k"),
        lambda: vault.enable_cache(),
    ):
        with pytest.raises(ClosedError, match="closed"):
            op()


def test_context_manager_closes(db_path):
    with KVault(db_path) as vault:
        vault["k"] = b"v"
    assert vault.closed


def test_pickle_reopens_by_path(db_path):
    vault = KVault(db_path, table="t1", chunk_size=4096)
    vault["k"] = b"v"
    clone = pickle.loads(pickle.dumps(vault))
    assert clone["k"] == b"v"
    assert clone.table == "t1" and clone.chunk_size == 4096
    clone.close()
    vault.close()
    with pytest.raises(TypeError, match="in-memory"):
        pickle.dumps(KVault(":memory:"))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"chunk_size": 0}, InvalidArgument),
        ({"chunk_size": -5}, InvalidArgument),
        ({"chunk_size": 1 << 40}, InvalidArgument),
        ({"chunk_size": "big"}, TypeError),
        ({"retries": -1}, InvalidArgument),
        ({"backoff_base": -1.0}, InvalidArgument),
        ({"backoff_base": "x"}, TypeError),
        ({"page_size": 1000}, InvalidArgument),
        ({"synchronous": "sometimes"}, InvalidArgument),
        ({"table": 5}, TypeError),
    ],
)
def test_bad_constructor_arguments_create_nothing(db_path, kwargs, error):
    with pytest.raises(error):
        KVault(db_path, **kwargs)
    assert not db_path.exists()


def test_synchronous_full_is_accepted(db_path):
    with KVault(db_path, synchronous="full") as vault:
        vault["k"] = b"v"
        assert vault["k"] == b"v"


def test_optimize_shrinks_file_after_deletes(db_path):
    with KVault(db_path, chunk_size=64 << 10) as vault:
        vault["big"] = os.urandom(8 << 20)  # distinct chunks: nothing to deduplicate
        vault.checkpoint()
        before = db_path.stat().st_size
        del vault["big"]
        vault.optimize()
        after = db_path.stat().st_size
    assert before > 8 << 20
    assert after < 1 << 20


def test_exceptions_are_importable_under_kohakuvault_names():
    assert ambervault.KohakuVaultError is ambervault.VaultError
    assert issubclass(ambervault.NotFound, KeyError)
    assert issubclass(ambervault.InvalidArgument, ValueError)
    assert issubclass(ambervault.IoError, OSError)
    for name in ("NotFound", "DatabaseBusy", "InvalidArgument", "IoError"):
        assert issubclass(getattr(ambervault, name), ambervault.VaultError)


def test_get_many_default_duplicates_and_stored_none(vault):
    vault.put_many([(b"a", b"old"), ("none", None), ("a", b"new")])
    marker = object()
    assert vault.get_many(("a", "missing", b"a", "none"), marker) == [b"new", marker, b"new", None]
    assert vault.get_many([]) == []


def test_batches_take_lists_or_tuples_and_leave_other_iterables_unread(vault):
    def pairs():
        raise AssertionError("the generator was read")
        yield ("k", b"v")

    with pytest.raises(TypeError, match="list or tuple"):
        vault.put_many(pairs())
    with pytest.raises(TypeError, match="list or tuple"):
        vault.get_many(iter(["k"]))
    with pytest.raises(TypeError, match="list or tuple"):
        vault.put_many({("k", b"v")})
    assert len(vault) == 0
    vault.put_many((("k", b"v"),))
    vault.update(("g", b"x") for _ in range(3))  # update takes any iterable
    assert vault.get_many(("k", "g")) == [b"v", b"x"]


def test_update_commits_batches_of_1024(vault):
    def pairs():
        for i in range(1024):
            yield str(i), i
        yield "in-the-second-batch", b"no"
        yield ("malformed",)

    with pytest.raises(ValueError):
        vault.update(pairs())
    assert len(vault) == 1024 and "in-the-second-batch" not in vault


def test_pop_and_setdefault(vault):
    marker = object()
    with pytest.raises(NotFound):
        vault.pop("missing")
    assert vault.pop("missing", marker) is marker
    vault["none"] = None
    assert vault.pop("none", marker) is None and "none" not in vault
    assert vault.setdefault("d") is None and "d" in vault and vault["d"] is None
    assert vault.setdefault("m", {"a": 1}) == {"a": 1}
    assert vault.setdefault("m", object()) == {"a": 1}  # an unused default is never encoded
    vault.enable_cache()
    vault["pending"] = [1, 2]
    assert vault.setdefault("pending", "other") == [1, 2]
    assert vault.pop("pending") == [1, 2]
    vault.flush_cache()
    assert "pending" not in vault


@pytest.mark.parametrize("operation", ["pop", "setdefault"])
def test_pop_and_setdefault_are_atomic_across_handles(tmp_path, operation):
    import threading

    path = tmp_path / "atomic.db"
    for round_ in range(10):
        with KVault(path) as first, KVault(path) as second:
            first.clear()
            if operation == "pop":
                first["key"] = b"once"
            barrier = threading.Barrier(2)
            results = [None, None]

            def call(i, vault, barrier=barrier, results=results):
                barrier.wait(timeout=5)
                if operation == "pop":
                    results[i] = vault.pop("key", None)
                else:
                    results[i] = vault.setdefault("key", f"from {i}")

            threads = [threading.Thread(target=call, args=(i, v)) for i, v in enumerate((first, second))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            if operation == "pop":
                assert sorted(results, key=repr) == [None, b"once"], round_
                assert "key" not in first
            else:
                assert results[0] == results[1] == first["key"], round_


def test_reader_cache_kb_must_be_positive(tmp_path):
    with pytest.raises(InvalidArgument, match="positive"):
        KVault(tmp_path / "bad.db", reader_cache_kb=0)
    assert not (tmp_path / "bad.db").exists()
    KVault(tmp_path / "ok.db", reader_idle_limit=0).close()
