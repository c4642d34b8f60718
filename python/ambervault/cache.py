"""The write-back cache shared by KVault and by ColumnVault's columns.

Writes are held in memory and written in one transaction when the cache reaches its flush
threshold, when it would exceed its capacity, when the optional background thread finds it idle
for ``flush_interval`` seconds, or when flushed explicitly. What the cache holds is lost if the
process crashes before a flush: that is the trade it makes for speed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .exceptions import DatabaseBusy, InvalidArgument


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value <= 0:
        raise InvalidArgument(f"{name} must be positive, not {value}")
    return value


class BatchingCache:
    """Size thresholds, the idle-flush daemon and locking shared by the key-value and the
    column caches. Subclasses hold the pending writes and implement :meth:`flush`."""

    def __init__(
        self,
        cap_bytes: int,
        flush_threshold: int,
        flush_interval: Optional[float],
        auto_flush: bool = True,
    ) -> None:
        self.cap_bytes = _check_size("cap_bytes", cap_bytes)
        self.flush_threshold = _check_size("flush_threshold", flush_threshold)
        if flush_interval is not None:
            if isinstance(flush_interval, bool) or not isinstance(flush_interval, (int, float)):
                raise TypeError("flush_interval must be a number of seconds or None")
            if not flush_interval > 0:
                raise InvalidArgument(f"flush_interval must be positive, not {flush_interval}")
        self.flush_interval = flush_interval
        self.auto_flush = auto_flush
        self._nbytes = 0
        self._locks = 0
        # How many `lock_cache()` blocks hold the cache (a subset of `_locks`, which counts
        # transactions too).
        self._held = 0
        # Set (under the lock) by `disable_cache` after its final flush: nothing more is cached.
        self.closed = False
        self._last_write = time.monotonic()
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.start_daemon()

    # -- to implement -------------------------------------------------------------------------
    def flush(self) -> int:
        """Write everything pending in one atomic batch; returns how many items were written."""
        raise NotImplementedError

    def _forget(self) -> None:
        """Drop everything pending without writing it."""
        raise NotImplementedError

    def _pending(self) -> bool:
        raise NotImplementedError

    def discard_pending(self) -> None:
        """Drop everything pending without writing it (a rolled-back transaction)."""
        with self.lock:
            self._forget()
            self._nbytes = 0

    # -- daemon -------------------------------------------------------------------------------
    def start_daemon(self) -> None:
        """Start the idle-flush thread if a flush interval is set."""
        if self.flush_interval is None or not self.auto_flush:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_daemon, name="ambervault-cache-flush", daemon=True)
        self._thread.start()

    def _run_daemon(self) -> None:
        interval = float(self.flush_interval or 1.0)
        poll = max(0.01, interval / 5)
        while not self._stop.wait(poll):
            with self.lock:
                idle = time.monotonic() - self._last_write
                if self._pending() and self._locks == 0 and idle >= interval:
                    try:
                        self.flush()
                    except Exception:
                        # Kept in the cache; the next flush (or close) retries and reports.
                        pass

    def stop_daemon(self) -> None:
        """Stop the idle-flush thread (without flushing)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def forget_after_fork(self) -> None:
        """In a fork child: drop the parent's pending writes (the parent flushes them)."""
        self.lock = threading.RLock()
        self._forget()
        self._nbytes = 0
        self._locks = 0
        self._held = 0
        self._thread = None
        self.start_daemon()

    @property
    def locked(self) -> bool:
        """Whether a ``lock_cache()`` block holds the cache."""
        return self._held > 0

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._nbytes

    def _admit(self, size: int) -> bool:
        """Make room for ``size`` more bytes (caller holds the lock). Returns False when the item
        is larger than the whole cache and must be written directly (after this flush)."""
        self._last_write = time.monotonic()
        if size > self.cap_bytes:
            self.flush()
            return False
        if self._nbytes + size > self.cap_bytes:
            self.flush()
        return True

    def _added(self, size: int) -> None:
        """Account for ``size`` bytes just added; flush at the threshold (caller holds the lock)."""
        self._nbytes += size
        if self.auto_flush and self._locks == 0 and self._nbytes >= self.flush_threshold:
            self.flush()

    # -- locking ------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Hold off automatic flushes (threshold and idle thread) until :meth:`release`."""
        self.lock.acquire()
        self._locks += 1

    def release(self) -> None:
        """Undo one :meth:`acquire`."""
        self._locks -= 1
        self.lock.release()


class WriteBackCache(BatchingCache):
    """Latest value per key, flushed in batches through ``flush_fn(items)``, each item
    ``(key, value, expires_at_ms, encoding)`` (the value's bytes and their encoding code).

    All methods are thread-safe. ``flush_fn`` must be atomic: after it returns, every pair is
    stored; if it raises, none is, and the cache keeps them.
    """

    def __init__(
        self,
        flush_fn: Callable[[List[Tuple[Any, bytes, Optional[int], int]]], None],
        cap_bytes: int,
        flush_threshold: int,
        flush_interval: Optional[float],
        auto_flush: bool = True,
    ) -> None:
        self._flush_fn = flush_fn
        self._entries: Dict[bytes, Tuple[Any, bytes, Optional[int], int]] = {}
        super().__init__(cap_bytes, flush_threshold, flush_interval, auto_flush)

    def _forget(self) -> None:
        self._entries.clear()

    def _pending(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, raw_key: bytes) -> Optional[Tuple[Any, bytes, Optional[int], int]]:
        """The cached ``(key, value, expires_at_ms, encoding)`` of ``raw_key``, or None."""
        return self._entries.get(raw_key)

    def __contains__(self, raw_key: bytes) -> bool:
        return raw_key in self._entries

    def put(
        self,
        raw_key: bytes,
        key: Any,
        value: bytes,
        expires_at_ms: Optional[int] = None,
        encoding: int = 0,
    ) -> bool:
        """Cache a write. Returns False (caching nothing) when the value is larger than the
        whole cache: the caller then writes it directly, after this flush of older entries."""
        size = len(raw_key) + len(value)
        with self.lock:
            if self.closed:
                # Disabled while this write waited for the lock: it goes to the table.
                return False
            old = self._entries.pop(raw_key, None)
            if old is not None:
                self._nbytes -= len(raw_key) + len(old[1])
            if not self._admit(size):
                return False
            self._entries[raw_key] = (key, value, expires_at_ms, encoding)
            self._added(size)
            return True

    def discard(self, raw_key: bytes) -> bool:
        """Forget a cached write (the key is being deleted or replaced directly)."""
        with self.lock:
            old = self._entries.pop(raw_key, None)
            if old is None:
                return False
            self._nbytes -= len(raw_key) + len(old[1])
            return True

    def clear(self) -> None:
        """Forget every cached write."""
        with self.lock:
            self._entries.clear()
            self._nbytes = 0

    def flush(self) -> int:
        """Write every cached entry in one atomic batch; returns how many were written."""
        with self.lock:
            if not self._entries:
                return 0
            pairs = list(self._entries.values())
            self._flush_fn(pairs)
            self._entries.clear()
            self._nbytes = 0
            return len(pairs)


class CacheControls:
    """The cache controls shared by KVault, ColumnVault and Column: ``enable_cache``,
    ``flush_cache``, ``disable_cache``, ``cache()`` and ``lock_cache()`` over ``self._cache``.
    The class using it provides ``_new_cache``."""

    _cache: Optional[BatchingCache]

    def _new_cache(
        self, cap_bytes: int, flush_threshold: int, flush_interval: Optional[float], auto_flush: bool
    ) -> BatchingCache:
        raise NotImplementedError

    def enable_cache(
        self,
        cap_bytes: int = 64 << 20,
        flush_threshold: int = 16 << 20,
        flush_interval: Optional[float] = None,
        auto_flush: bool = True,
    ) -> None:
        """Hold writes in memory and write them in batches (one transaction each).

        A batch is written when the cache reaches ``flush_threshold`` bytes, before it would
        exceed ``cap_bytes``, after ``flush_interval`` idle seconds (if set), and on
        :meth:`flush_cache`, :meth:`disable_cache` and ``close()``. Items larger than
        ``cap_bytes`` skip the cache. Reads see cached writes. **Cached writes are lost if the
        process crashes before they are flushed.** Enabling again replaces the settings
        (flushing what is cached first).
        """
        new = self._new_cache(cap_bytes, flush_threshold, flush_interval, auto_flush)
        if self._cache is not None:
            self.disable_cache()
        self._cache = new

    def flush_cache(self) -> int:
        """Write pending appends now (one transaction); returns how many elements."""
        cache = self._cache
        return 0 if cache is None else cache.flush()

    def disable_cache(self) -> int:
        """Flush and stop caching; returns how many elements were flushed.

        Refused with :class:`DatabaseBusy` inside a :meth:`lock_cache` block (the cache stays
        enabled, holding its writes). A write that another thread makes meanwhile is either
        flushed here or, if it arrives after the final flush, written directly: never lost."""
        cache = self._cache
        if cache is None:
            return 0
        if cache.locked:
            raise DatabaseBusy("cannot disable the cache while it is locked (inside lock_cache())")
        cache.stop_daemon()
        # Through flush_cache, so a subclass's flush_cache sees this flush too.
        written = self.flush_cache()
        with cache.lock:
            written += cache.flush()
            cache.closed = True
        if self._cache is cache:
            self._cache = None
        return written

    @contextlib.contextmanager
    def cache(
        self,
        cap_bytes: int = 64 << 20,
        flush_threshold: int = 16 << 20,
        flush_interval: Optional[float] = None,
        auto_flush: bool = True,
    ) -> Iterator[Any]:
        """Context manager: cache writes inside the block; flush and disable at its end (also
        when the block raises, so writes made before the error are kept).

        >>> import ambervault
        >>> v = ambervault.KVault(":memory:")
        >>> with v.cache(cap_bytes=1 << 20):
        ...     for i in range(3):
        ...         v[f"k{i}"] = b"x"
        >>> len(v), v.flush_cache()
        (3, 0)
        """
        self.enable_cache(cap_bytes, flush_threshold, flush_interval, auto_flush)
        try:
            yield self
        finally:
            self.disable_cache()

    @contextlib.contextmanager
    def lock_cache(self) -> Iterator[Any]:
        """Context manager: no automatic flush happens inside the block, and operations that
        would write around the cache or end it (``put_many``, ``update``, ``disable_cache``)
        are refused with :class:`DatabaseBusy`."""
        cache = self._cache
        if cache is None:
            yield self
            return
        cache.acquire()
        cache._held += 1
        try:
            yield self
        finally:
            cache._held -= 1
            cache.release()
