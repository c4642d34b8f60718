"""The write-back cache: batching, visibility of cached writes, flush triggers and lifecycle."""

from __future__ import annotations

import io
import threading
import time

import pytest

from ambervault import InvalidArgument, KVault
from helpers import eventually, on_disk


def test_cached_writes_are_batched_and_visible_to_reads(db_path):
    with KVault(db_path) as vault:
        vault.enable_cache(cap_bytes=1 << 20, flush_threshold=1 << 19)
        vault["a"] = b"1"
        vault[b"b"] = bytearray(b"2")
        assert on_disk(db_path, "a") is None
        assert vault["a"] == b"1" and vault.get("b") == b"2"
        assert "a" in vault and vault.exists(b"b")
        assert vault.get_many(["a", "b", "c"]) == [b"1", b"2", None]
        assert vault.flush_cache() == 2
        assert vault.flush_cache() == 0
        assert on_disk(db_path, "a") == b"1"


def test_len_and_iteration_see_cached_writes(vault):
    vault["old"] = b"x"
    vault.enable_cache()
    vault["new"] = b"y"
    assert len(vault) == 2
    assert sorted(vault) == ["new", "old"]
    assert dict(vault.items(prefix="n")) == {"new": b"y"}


def test_delete_of_a_cached_key_wins(db_path):
    with KVault(db_path) as vault:
        vault["k"] = b"stored"
        vault.enable_cache()
        vault["k"] = b"cached"
        assert vault.delete("k") is True
        vault.flush_cache()
        assert "k" not in vault
        vault["only-cached"] = b"v"
        assert vault.delete("only-cached") is True
        assert vault.delete("only-cached") is False
        vault.disable_cache()
    assert on_disk(db_path, "k") is None


def test_stream_after_cached_write_is_not_overwritten_by_flush(vault):
    vault.enable_cache()
    vault["k"] = b"cached"
    vault.put_file("k", io.BytesIO(b"streamed"))
    vault.flush_cache()
    assert vault["k"] == b"streamed"
    vault["k"] = b"cached again"
    with vault.open("k", "wb") as w:
        w.write(b"writer")
    vault.disable_cache()
    assert vault["k"] == b"writer"


def test_values_larger_than_cap_bypass_cache(db_path):
    with KVault(db_path) as vault:
        vault.enable_cache(cap_bytes=1000, flush_threshold=800)
        vault["small"] = b"s" * 10
        vault["large"] = b"L" * 5000
        assert on_disk(db_path, "large") == b"L" * 5000
        assert on_disk(db_path, "small") == b"s" * 10  # flushed first, keeping write order
        vault.disable_cache()


def test_threshold_and_capacity_trigger_flushes(db_path):
    with KVault(db_path) as vault:
        vault.enable_cache(cap_bytes=10_000, flush_threshold=3000)
        for i in range(5):
            vault[f"k{i}"] = b"x" * 1000
        # The third write reached the threshold and handed k0..k2 to the background writer.
        assert eventually(lambda: on_disk(db_path, "k2") == b"x" * 1000)
        assert on_disk(db_path, "k4") is None
        vault.disable_cache()
        assert on_disk(db_path, "k4") == b"x" * 1000


def test_auto_flush_false_defers_until_exit(db_path):
    with KVault(db_path) as vault:
        with vault.cache(cap_bytes=1 << 20, flush_threshold=10, auto_flush=False):
            for i in range(50):
                vault[f"k{i}"] = b"0123456789"
            assert on_disk(db_path, "k0") is None
        assert on_disk(db_path, "k49") == b"0123456789"


def test_cache_context_flushes_even_on_error(db_path):
    with KVault(db_path) as vault:
        with pytest.raises(ZeroDivisionError):
            with vault.cache():
                vault["k"] = b"v"
                raise ZeroDivisionError("simulated failure inside the block")
        assert on_disk(db_path, "k") == b"v"


def test_close_flushes(db_path):
    vault = KVault(db_path)
    vault.enable_cache()
    vault["k"] = b"v"
    vault.close()
    assert on_disk(db_path, "k") == b"v"


def test_idle_daemon_flushes_and_lock_cache_holds_it(db_path):
    with KVault(db_path) as vault:
        vault.enable_cache(flush_interval=0.1)
        vault["a"] = b"1"
        deadline = time.monotonic() + 5
        while on_disk(db_path, "a") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert on_disk(db_path, "a") == b"1"
        with vault.lock_cache():
            vault["b"] = b"2"
            time.sleep(0.4)
            assert on_disk(db_path, "b") is None
        deadline = time.monotonic() + 5
        while on_disk(db_path, "b") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert on_disk(db_path, "b") == b"2"
        vault.disable_cache()


def test_cache_is_thread_safe(db_path):
    with KVault(db_path) as vault:
        vault.enable_cache(cap_bytes=50_000, flush_threshold=20_000)

        def writer(t):
            for i in range(500):
                vault[f"t{t}-{i}"] = b"v" * 50

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        vault.disable_cache()
        assert len(vault) == 2000


def test_bad_cache_settings_are_refused(vault):
    with pytest.raises(InvalidArgument):
        vault.enable_cache(cap_bytes=0)
    with pytest.raises(TypeError):
        vault.enable_cache(cap_bytes="big")
    with pytest.raises(InvalidArgument):
        vault.enable_cache(flush_interval=-1)
    vault["k"] = b"v"  # still uncached and working
    assert vault["k"] == b"v"


def test_type_errors_are_raised_at_put_time_with_cache(vault):
    vault.enable_cache()
    with pytest.raises(TypeError):
        vault["k"] = {1, 2}  # not storable
    with pytest.raises(TypeError):
        vault[3] = b"v"
    vault.disable_auto_pack()
    with pytest.raises(TypeError):
        vault["k"] = "text"
    assert vault.flush_cache() == 0


def test_batches_are_refused_inside_lock_cache_and_write_nothing(db_path):
    from ambervault import DatabaseBusy

    with KVault(db_path) as vault:
        vault["a"] = b"committed"
        vault.enable_cache()
        vault["a"] = b"pending"
        with vault.lock_cache():
            with pytest.raises(DatabaseBusy, match="locked"):
                vault.put_many([("a", b"batch"), ("b", b"batch")])
            with pytest.raises(DatabaseBusy, match="locked"):
                vault.update(b=b"batch")
            with pytest.raises(DatabaseBusy, match="locked"):
                vault.setdefault("missing", b"x")
            assert vault.setdefault("a", b"x") == b"pending"  # present: nothing to insert
            vault["c"] = b"cached"  # single writes are still cached
        assert on_disk(db_path, "a") == b"committed" and on_disk(db_path, "b") is None
        assert vault.get_many(["a", "b", "c", "missing"]) == [b"pending", None, b"cached", None]
        # Outside the lock a batch is written at once and replaces the cached write of its key.
        vault.put_many([("a", b"batch")])
        assert on_disk(db_path, "a") == b"batch" and vault["a"] == b"batch"
        assert vault.flush_cache() == 1  # only "c" was left
        assert on_disk(db_path, "a") == b"batch"


def test_disable_cache_inside_lock_cache_is_refused_and_keeps_the_writes(db_path):
    from ambervault import DatabaseBusy

    with KVault(db_path) as vault:
        vault.enable_cache()
        with vault.lock_cache():
            vault["k"] = b"pending"
            with pytest.raises(DatabaseBusy, match="locked"):
                vault.disable_cache()
            assert vault._cache is not None and vault["k"] == b"pending"
            assert on_disk(db_path, "k") is None
        assert vault.disable_cache() == 1
        assert vault._cache is None and on_disk(db_path, "k") == b"pending"


def test_disable_cache_goes_through_flush_cache():
    flushes = []

    class Observed(KVault):
        def flush_cache(self):
            flushes.append(len(self._cache))
            return super().flush_cache()

    vault = Observed(":memory:")
    vault.enable_cache()
    vault["k"] = b"v"
    assert vault.disable_cache() == 1
    assert flushes == [1] and vault["k"] == b"v"


def test_a_write_racing_disable_cache_is_written_not_lost(db_path):
    with KVault(db_path) as vault:
        vault.enable_cache()
        cache = vault._cache
        vault["early"] = b"cached"
        cache.lock.acquire()  # hold the writer below at the cache until disable_cache is done
        try:
            writer = threading.Thread(target=vault.__setitem__, args=("late", b"keep"))
            writer.start()
            time.sleep(0.2)
            assert vault.disable_cache() == 1
            assert cache.closed
        finally:
            cache.lock.release()
        writer.join(5)
        assert not writer.is_alive()
        assert len(cache) == 0  # the late write went to the table, not into the dropped cache
        assert on_disk(db_path, "early") == b"cached" and on_disk(db_path, "late") == b"keep"


def test_native_cache_keeps_the_latest_write_per_key_in_write_order(vault):
    vault.enable_cache()
    cache = vault._cache
    vault["a"] = b"1"
    vault[b"b"] = b"2"
    vault["a"] = b"3"  # rewritten: moves to the end, counted once
    value = bytearray(b"4")
    vault[("t", 1)] = value
    value[0] = ord("x")  # a mutable value is snapshotted when cached
    assert len(cache) == 3 and cache.keys()[:2] == [b"b", b"a"]
    assert cache.nbytes == 2 + 2 + len(cache.keys()[2]) + 1
    assert cache.entry(b"a") == ("a", b"3", None, 0) and cache.entry(b"zz") is None
    assert vault[("t", 1)] == b"4"
    with pytest.raises(TypeError):
        vault[1.5] = b"bad key"  # type: ignore[index]
    assert len(cache) == 3 and vault.flush_cache() == 3 and cache.nbytes == 0
    assert vault["a"] == b"3" and vault["b"] == b"2"


def test_threshold_flush_is_native_and_atomic_on_failure(db_path):
    with KVault(db_path) as vault:
        vault.enable_cache(cap_bytes=10_000, flush_threshold=1_000)
        for i in range(30):
            vault[f"k{i:02d}"] = b"v" * 60  # 63 bytes each: a batch every 16 puts
        assert eventually(lambda: on_disk(db_path, "k15") == b"v" * 60)
        assert len(vault._cache) == 30 - 16 and on_disk(db_path, "k16") is None
        vault.close()
        assert on_disk(db_path, "k29") == b"v" * 60


def test_a_subclass_overriding_put_sees_item_assignment():
    seen = []

    class Observed(KVault):
        def put(self, key, value, *args, **kwargs):
            seen.append(key)
            super().put(key, value, *args, **kwargs)

    vault = Observed(":memory:")
    vault.enable_cache()
    vault["k"] = b"v"
    assert seen == ["k"] and vault["k"] == b"v"


def test_cache_lock_is_reentrant_and_waits_without_the_gil():
    from ambervault._ambervault import CacheLock

    lock = CacheLock()
    with lock:
        assert lock.acquire() and lock.acquire(blocking=False)
        lock.release()
        lock.release()
        other = []
        t = threading.Thread(target=lambda: other.append(lock.acquire(timeout=0.05)))
        t.start()
        t.join(5)
        assert other == [False]
    with pytest.raises(RuntimeError):
        lock.release()
    t = threading.Thread(target=lambda: other.append(lock.acquire(blocking=False)))
    t.start()
    t.join(5)
    assert other == [False, True]


def test_item_assignment_follows_the_current_cache_and_default_ttl(db_path):
    # `vault[k] = v` binds the cache's native put once per cache: a new cache, no cache, and a
    # default TTL set while a cache is on must each still be honoured.
    with KVault(db_path) as vault:
        vault.enable_cache(flush_threshold=1 << 20)
        vault["a"] = b"1"
        first = vault._cache
        vault.disable_cache()
        vault.enable_cache(flush_threshold=1 << 20)
        assert vault._cache is not first
        vault["b"] = b"2"
        with KVault(db_path, read_only=True) as other:
            assert other.get("b") is None and vault["b"] == b"2"  # held by the new cache
        vault.disable_cache()
        vault["c"] = b"3"  # no cache: written at once
        with KVault(db_path, read_only=True) as other:
            assert other.get("b") == b"2" and other.get("c") == b"3"
        vault.enable_cache(flush_threshold=1 << 20)
        vault.default_ttl = 3600
        vault["d"] = b"4"
        vault.flush_cache()
        expires = vault.expires_at("d")
        assert expires is not None and 3500 < expires - time.time() <= 3600
    with KVault(db_path) as vault:
        assert [vault[k] for k in "abcd"] == [b"1", b"2", b"3", b"4"]
