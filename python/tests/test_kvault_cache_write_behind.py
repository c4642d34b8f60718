"""The key-value cache's background writer: batches handed off as the cache fills are read
while in flight, are written before anything that must follow them, and are kept (and reported
by the next flush) when their write fails."""

from __future__ import annotations

import threading
import time

import pytest

from ambervault import DatabaseBusy, KVault
from helpers import WriteLock, eventually, on_disk


def value(i):
    return bytes([i % 251]) * 60


def fill_one_batch(vault):
    """Sixteen puts of 63 bytes: the last reaches a 1,000-byte threshold and is handed off."""
    for i in range(16):
        vault[f"k{i:02d}"] = value(i)


def batch_held_back(vault, path):
    """Another process takes the file's write lock, then one batch is handed off: the writer
    waits for the lock (until the retries run out). Returns the lock to release."""
    lock = WriteLock(path)
    vault.enable_cache(cap_bytes=1 << 20, flush_threshold=1000)
    fill_one_batch(vault)
    return lock


def test_batches_are_written_in_the_background_and_counted_by_the_next_flush(db_path):
    with KVault(db_path) as vault:
        vault.enable_cache(cap_bytes=1 << 20, flush_threshold=4096)
        for i in range(300):
            vault[f"k{i:03d}"] = value(i)
            assert vault[f"k{i:03d}"] == value(i)  # cached, in flight or written
        assert eventually(lambda: on_disk(db_path, "k000") == value(0))
        assert all(vault[f"k{i:03d}"] == value(i) for i in range(300))
        assert vault.flush_cache() == 300
        assert vault.flush_cache() == 0 and len(vault._cache) == 0
        with KVault(db_path) as other:
            assert [other[f"k{i:03d}"] for i in range(300)] == [value(i) for i in range(300)]


def test_a_batch_in_flight_is_read_and_a_direct_delete_lands_after_it(db_path):
    with KVault(db_path, retries=8, backoff_base=0.02) as vault:
        lock = batch_held_back(vault, db_path)
        time.sleep(0.05)  # the writer now waits for the other connection's lock
        assert len(vault._cache) == 16 and vault._cache.nbytes == 16 * 63
        # Served by the cache: a read that reaches the file waits while the writer holds it.
        assert [vault[f"k{i:02d}"] for i in range(16)] == [value(i) for i in range(16)]
        assert "k03" in vault and b"zz" not in vault._cache
        timer = lock.release_after(0.3)
        assert vault.get_many(["k05", "zz"]) == [value(5), None]
        # Waits for the batch (written once the lock is released), then deletes: the delete
        # must not be overwritten by the batch landing after it.
        del vault["k03"]
        timer.join()
        assert "k03" not in vault and on_disk(db_path, "k03") is None
        assert on_disk(db_path, "k04") == value(4)
        assert vault.flush_cache() == 16  # the batch, written in the background


def test_a_newer_write_of_a_key_in_flight_wins(db_path):
    with KVault(db_path, retries=8, backoff_base=0.02) as vault:
        lock = batch_held_back(vault, db_path)
        vault["k07"] = b"newer"  # cached while the older write of k07 is in flight
        assert vault["k07"] == b"newer"
        lock.release_after(0.2).join()
        assert vault.flush_cache() == 17
        assert on_disk(db_path, "k07") == b"newer" and on_disk(db_path, "k08") == value(8)


def test_a_failed_background_write_keeps_the_batch_and_the_next_flush_reports_it(db_path):
    with KVault(db_path, retries=0, backoff_base=0.001) as vault:
        lock = batch_held_back(vault, db_path)
        time.sleep(0.3)  # the writer gives up: the file stays locked
        vault["k07"] = b"newer"
        assert [vault[f"k{i:02d}"] for i in range(16) if i != 7] == [value(i) for i in range(16) if i != 7]
        assert vault["k07"] == b"newer"
        with pytest.raises(DatabaseBusy):
            vault.flush_cache()
        # Nothing lost and nothing written: every write still cached, the newest per key.
        assert len(vault._cache) == 16 and vault["k07"] == b"newer"
        lock.release()
        assert vault.flush_cache() == 16
        assert on_disk(db_path, "k07") == b"newer" and on_disk(db_path, "k15") == value(15)
        # Batches go to the background again after a flush succeeded.
        fill_one_batch(vault)
        assert eventually(lambda: on_disk(db_path, "k07") == value(7))


def test_a_transaction_waits_for_the_batch_in_flight(db_path):
    with KVault(db_path, retries=8, backoff_base=0.02) as vault:
        lock = batch_held_back(vault, db_path)
        timer = lock.release_after(0.3)
        with vault.transaction():
            vault.put("k00", b"in the transaction", if_version=1)
        timer.join()
        assert on_disk(db_path, "k00") == b"in the transaction"
        assert on_disk(db_path, "k01") == value(1)


def test_close_waits_for_the_batch_in_flight(db_path):
    vault = KVault(db_path, retries=8, backoff_base=0.02)
    lock = batch_held_back(vault, db_path)
    vault["last"] = b"after the batch"
    lock.release_after(0.2)
    vault.close()
    with KVault(db_path) as other:
        assert [other[f"k{i:02d}"] for i in range(16)] == [value(i) for i in range(16)]
        assert other["last"] == b"after the batch"


def test_puts_from_many_threads_with_batches_in_flight_all_land(db_path):
    with KVault(db_path) as vault:
        vault.enable_cache(cap_bytes=64 << 10, flush_threshold=8 << 10)

        def put(t):
            for i in range(500):
                vault[f"t{t}:{i:03d}"] = f"{t}:{i}".encode() * 8

        threads = [threading.Thread(target=put, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert vault.flush_cache() == 2000
        with KVault(db_path) as other:
            assert len(other) == 2000
            expected = {f"t{t}:{i:03d}": f"{t}:{i}".encode() * 8 for t in range(4) for i in range(500)}
            assert all(other[key] == want for key, want in expected.items())
