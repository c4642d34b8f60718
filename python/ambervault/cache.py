"""The write-back cache shared by KVault and by ColumnVault's columns.

Writes are held in memory and written in one transaction when the cache reaches its flush
threshold, when it would exceed its capacity, when the optional background thread finds it idle
for ``flush_interval`` seconds, or when flushed explicitly. The key-value cache also hands
batches to a background writer as it fills (see :meth:`CacheControls.enable_cache`). What the
cache holds is lost if the process crashes before a flush: that is the trade it makes for speed.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import Any, Callable, Iterator, List, Optional, Tuple

from ._ambervault import CacheLock, KVaultCore, PendingWrites
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
        self.lock: Any = self._new_lock()
        self._init_pending()
        self._nbytes = 0
        self._locks = 0
        # How many `lock_cache()` blocks hold the cache (a subset of `_locks`, which counts
        # transactions too).
        self._held = 0
        # Set (under the lock) by `disable_cache` after its final flush: nothing more is cached.
        self.closed = False
        self._last_write = time.monotonic()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.start_daemon()

    # -- to implement -------------------------------------------------------------------------
    def _new_lock(self) -> Any:
        """The lock guarding the cache: reentrant, with ``acquire``/``release`` and ``with``."""
        return threading.RLock()

    def _init_pending(self) -> None:
        """Set up the (empty) pending writes; runs once the lock exists."""

    def _idle_seconds(self) -> float:
        """Seconds since the last write (the idle thread flushes past ``flush_interval``)."""
        return time.monotonic() - self._last_write

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
                idle = self._idle_seconds()
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
        self.lock = self._new_lock()
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
    """Latest write per key of a key-value table, flushed in batches through the table's
    ``put_many``, each write ``(key, value bytes, expires_at_ms, encoding)``.

    The writes are held natively (:class:`PendingWrites`): a cached put converts its key once,
    takes the cache's native lock (:class:`CacheLock`, reentrant, waiting with the GIL released)
    and hands batches to the background writer (or flushes at the cap) itself, without a Python
    frame per write. Taking the lock from Python settles the batch in flight first. This class
    keeps the idle-flush thread and the cache controls. All methods are thread-safe; a flush is
    atomic: if it fails, nothing is written and the cache keeps every write.
    """

    def __init__(
        self,
        core: KVaultCore,
        cap_bytes: int,
        flush_threshold: int,
        flush_interval: Optional[float],
        auto_flush: bool = True,
        before_flush: Optional[Callable[[], Any]] = None,
    ) -> None:
        self._core = core
        self._before_flush = before_flush
        # The put count the idle thread saw last (see `_idle_seconds`).
        self._seen_puts = 0
        # Whose `cached_put` is this cache's native put (see `bind_put`).
        self._bound: weakref.WeakSet[Any] = weakref.WeakSet()
        super().__init__(cap_bytes, flush_threshold, flush_interval, auto_flush)

    def _new_lock(self) -> Any:
        return CacheLock()

    def _init_pending(self) -> None:
        self._buffer = PendingWrites(
            self._core, self.lock, self.cap_bytes, self.flush_threshold, self.auto_flush, self._before_flush
        )
        self._seen_puts = 0

    def _forget(self) -> None:
        # A new buffer rather than clearing the old one: after a fork the old one's mutexes may
        # have been held by a parent thread (its background writer among them).
        closed = self._buffer.closed
        self._init_pending()
        self._buffer.closed = closed
        for holder in self._bound:
            holder.cached_put = self._buffer.put

    def bind_put(self, holder: Any) -> None:
        """Set ``holder.cached_put`` to this cache's native put, now and whenever the buffer
        is replaced (in a fork child), so a put never reaches the parent's buffer."""
        self._bound.add(holder)
        holder.cached_put = self._buffer.put

    def discard_pending(self) -> None:
        with self.lock:
            self._buffer.clear()

    def _pending(self) -> bool:
        return len(self._buffer) > 0

    def _idle_seconds(self) -> float:
        # Puts are counted rather than timed; the first poll that sees the count unchanged
        # starts the idle time (so a flush never comes early).
        now = time.monotonic()
        puts = self._buffer.puts
        if puts != self._seen_puts:
            self._seen_puts = puts
            self._last_write = now
        return now - self._last_write

    @property  # type: ignore[override]
    def closed(self) -> bool:
        """Set (under the lock) by ``disable_cache`` after its final flush: nothing more is
        cached (puts return False and are written directly)."""
        return self._buffer.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self._buffer.closed = value

    @property
    def nbytes(self) -> int:
        """Bytes held (keys plus values)."""
        return self._buffer.nbytes

    def acquire(self) -> None:
        super().acquire()
        self._buffer.locks = self._locks

    def release(self) -> None:
        self._buffer.locks = self._locks - 1
        super().release()

    def __len__(self) -> int:
        return len(self._buffer)

    def entry(self, raw_key: bytes) -> Optional[Tuple[Any, bytes, Optional[int], int]]:
        """The cached ``(key, value, expires_at_ms, encoding)`` of ``raw_key``, or None."""
        return self._buffer.entry(raw_key)

    def __contains__(self, raw_key: bytes) -> bool:
        return raw_key in self._buffer

    def keys(self) -> List[bytes]:
        """The raw keys cached, in the order they will be written."""
        return self._buffer.keys()

    def put(self, key: Any, value: Any, expires_at_ms: Optional[int] = None, encoding: int = 0) -> bool:
        """Cache a write (a bytes-like value, copied unless it is ``bytes``). Returns False
        (caching nothing) when the write is larger than the whole cache or the cache is closed:
        the caller then writes it directly (after the flush of older writes)."""
        return self._buffer.put(key, value, expires_at_ms, encoding)

    def discard(self, raw_key: bytes) -> bool:
        """Forget a cached write (the key is being deleted or replaced directly)."""
        with self.lock:
            return self._buffer.discard(raw_key)

    def clear(self) -> None:
        """Forget every cached write."""
        with self.lock:
            self._buffer.clear()

    def flush(self) -> int:
        """Write every cached entry in one atomic batch (after the batch in flight); returns
        how many were written, in the background since the last flush included."""
        with self.lock:
            if len(self._buffer) and self._before_flush is not None:
                self._before_flush()
            # Also when empty: the count includes what the background writer wrote.
            return self._buffer.flush()


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

        A key-value cache also writes in the background: once it holds a sixteenth of
        ``flush_threshold`` (at least 1 MiB, at most ``flush_threshold``), a put hands what it
        holds to a writer thread, which writes it in one transaction while the puts go on. One
        batch is in flight at a time; a put that reaches ``flush_threshold`` waits for it.
        :meth:`flush_cache` waits for the batch in flight and writes the rest. If a background
        write fails, its writes stay cached and the next flush writes them or raises the error.
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
