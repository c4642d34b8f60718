"""Column caches: batched appends, reads that see them, multi-column atomic flushes, and
interaction with the other operations."""

from __future__ import annotations

import threading
import time

import pytest

from ambervault import ColumnVault, InvalidArgument


def on_disk(path, name):
    """Length of a column as another connection sees it (what a crash now would leave)."""
    with ColumnVault(path) as other:
        return len(other[name])


@pytest.fixture
def path(tmp_path):
    return tmp_path / "c.db"


def test_appends_are_held_then_flushed_together(path):
    with ColumnVault(path) as cv:
        t = cv.create_column("t", "i64")
        v = cv.create_column("v", "f64")
        cv.enable_cache(cap_bytes=1 << 20, flush_threshold=1 << 19)
        for i in range(100):
            t.append(i)
            v.append(i / 2)
        assert on_disk(path, "t") == 0
        assert cv.flush_cache() == 200
        assert cv.flush_cache() == 0
        assert on_disk(path, "t") == on_disk(path, "v") == 100
        cv.disable_cache()


def test_reads_and_other_operations_see_pending_appends(path):
    with ColumnVault(path) as cv:
        c = cv.create_column("c", "i64")
        with cv.cache():
            c.extend([0, 1, 2])
            c.append(3)
            assert len(c) == 4 and c[3] == 3 and list(c) == [0, 1, 2, 3]
            c.append(4)
            c[0] = 99
            assert c[:] == [99, 1, 2, 3, 4]
            c.append(5)
            del c[1]
            c.append(6)
            c.insert(0, -1)
            assert list(c) == [-1, 99, 2, 3, 4, 5, 6]
            c.append(7)
            c.clear()
            c.append(8)
        assert list(c) == [8]


def test_flush_threshold_and_oversized_values(path):
    with ColumnVault(path) as cv:
        logs = cv.create_column("logs", "bytes")
        cv.enable_cache(cap_bytes=1000, flush_threshold=500)
        for _ in range(4):
            logs.append(b"x" * 100)
        assert on_disk(path, "logs") == 0
        logs.append(b"y" * 200)  # crosses the threshold: everything is flushed
        assert on_disk(path, "logs") == 5
        logs.append(b"small")
        logs.append(b"z" * 5000)  # larger than the cache: flushed in order, then written
        assert on_disk(path, "logs") == 7
        assert logs[-1] == b"z" * 5000 and logs[-2] == b"small"
        cv.disable_cache()


def test_bad_values_are_refused_at_append_time(path):
    with ColumnVault(path) as cv:
        c = cv.create_column("c", "u8")
        with cv.cache():
            c.append(1)
            with pytest.raises(OverflowError):
                c.append(256)
            with pytest.raises(TypeError):
                c.extend([2, "x"])
        assert list(c) == [1]


def test_mutable_buffers_are_snapshotted(path):
    with ColumnVault(path) as cv:
        c = cv.create_column("c", "bytes")
        data = bytearray(b"before")
        with cv.cache():
            c.append(data)
            data[:] = b"after!"
        assert c[0] == b"before"


def test_column_level_cache(path):
    with ColumnVault(path) as cv:
        a = cv.create_column("a", "i32")
        b = cv.create_column("b", "i32")
        with a.cache(cap_bytes=4096):
            a.extend(range(10))
            b.append(1)  # not cached: durable now
            assert on_disk(path, "a") == 0 and on_disk(path, "b") == 1
        assert on_disk(path, "a") == 10
        a.enable_cache()
        a.append(10)
        assert a.flush_cache() == 1
        a.disable_cache()


def test_delete_column_drops_its_pending_appends(path):
    with ColumnVault(path) as cv:
        c = cv.create_column("c", "i64")
        keep = cv.create_column("keep", "i64")
        cv.enable_cache()
        c.extend(range(10))
        keep.append(1)
        assert cv.delete_column("c") is True
        assert cv.disable_cache() == 1
        assert "c" not in cv and list(keep) == [1]


def test_idle_daemon_flushes_and_close_flushes(path):
    cv = ColumnVault(path)
    c = cv.create_column("c", "i64")
    cv.enable_cache(flush_interval=0.1)
    c.append(1)
    deadline = time.monotonic() + 5
    while on_disk(path, "c") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert on_disk(path, "c") == 1
    with cv.lock_cache():
        c.append(2)
        time.sleep(0.4)
        assert on_disk(path, "c") == 1
    c.append(3)
    cv.close()
    assert on_disk(path, "c") == 3


def test_threads_appending_under_a_cache(path):
    with ColumnVault(path) as cv:
        c = cv.create_column("c", "i64")
        cv.enable_cache(cap_bytes=4096, flush_threshold=1024)

        def work(t):
            for i in range(500):
                c.append(t * 1000 + i)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cv.disable_cache()
        assert sorted(c) == sorted(t * 1000 + i for t in range(4) for i in range(500))


def test_bad_cache_settings(path):
    with ColumnVault(path) as cv:
        with pytest.raises(InvalidArgument):
            cv.enable_cache(cap_bytes=0)
        with pytest.raises(TypeError):
            cv.enable_cache(flush_threshold="x")
        assert cv.flush_cache() == 0


@pytest.mark.parametrize(
    "dtype,values",
    [
        ("f64", [0.5, 1, -2.25, True, 1e300]),  # ints and bools take the general path
        ("i64", [1, 2**63 - 1, -(2**63), 3, True]),
        ("bytes", [b"", b"abc", bytearray(b"mutable"), memoryview(b"view"), b"\x00" * 300]),
        ("str", ["", "ascii", "日本語", "mixed é", "x" * 300]),
    ],
)
def test_cached_appends_of_every_kind_match_a_list(path, dtype, values):
    # The fast path (float/int/bytes/ASCII str) and the general path interleave in one batch;
    # sizes must be accounted the same way so thresholds flush at the right time.
    with ColumnVault(path) as cv:
        col = cv.create_column("c", dtype)
        expected = []
        seen = set()
        with cv.cache(cap_bytes=4096, flush_threshold=120):
            for _ in range(20):
                for v in values:
                    col.append(v)
                    expected.append(bytes(v) if isinstance(v, (bytearray, memoryview)) else v)
                seen.add(on_disk(path, "c"))
                assert cv._cache.nbytes < 4096
        assert len(seen) > 2  # the threshold fired several times along the way
        assert on_disk(path, "c") == len(expected)
        assert list(col) == expected


def test_out_of_range_and_wrong_types_never_enter_the_cache(path):
    with ColumnVault(path) as cv:
        ints = cv.create_column("i", "i64")
        texts = cv.create_column("s", "str")
        with cv.cache():
            ints.append(1)
            with pytest.raises(OverflowError):
                ints.append(2**63)
            with pytest.raises(TypeError):
                ints.append(1.5)
            texts.append("ok")
            with pytest.raises(TypeError):
                texts.append(b"bytes are not str")
            with pytest.raises(TypeError):
                texts.extend(["fine", 5])
        assert list(ints) == [1] and list(texts) == ["ok"]
